"""Node lifecycle on the cluster clock, with exact times.

Sources: kubelet nodeStatusUpdateFrequency / node lease renewal 10 s; kube-controller-manager
--node-monitor-period 5 s, --node-monitor-grace-period (40 s up to v1.31, 50 s since v1.32, kubernetes
PR #126287), a node whose last heartbeat is more than the grace period old is marked NotReady
(probeTimestamp + grace < now, strictly) and MarkPodsNotReady flips its pods' Ready condition; the
unreachable NoExecute taint is tolerated for 300 s (DefaultTolerationSeconds admission), then the taint
eviction controller deletes the pods (pkg/controller/tainteviction). Deleting is graceful: the pods stay
Terminating until the kubelet on their node confirms, i.e. until the node is back (or a force delete).
ReplicaSets replace them at once (FilterActivePods ignores terminating pods), on Ready nodes only;
StatefulSets wait until the old pod object is gone. Tests set the grace period explicitly so they pin
the timeline, not the default.
"""
from __future__ import annotations

import pytest

from netsim.control.cluster import Cluster
from netsim.control.events import WatchEvent
from netsim.control.manifests import load


def httpd(grace: float = 40.0) -> tuple[Cluster, str, list[WatchEvent]]:
    c = load("example:httpd-app")
    c.config.node_monitor_grace_period = grace
    victim = next(p.node_name for p in c.pods("default") if p.name.startswith("httpd-app-") and p.node_name != "node-1")
    seen: list[WatchEvent] = []
    c.watch(seen.append)
    return c, victim, seen


def evictable(c: Cluster, node: str) -> list:
    """The pods on `node` that taint-based eviction deletes: not kubeadm's kube-proxy DaemonSet pod,
    which tolerates node.kubernetes.io/unreachable:NoExecute for ever (DaemonSet controller)."""
    return [p for p in c.pods() if p.node_name == node and p.owner != ("DaemonSet", "kube-proxy")]


def httpd_endpoints(c: Cluster) -> dict[str, bool]:
    return {e.addresses[0]: e.ready for s in c.endpoint_slices("default", "httpd-app") for e in s.endpoints}


def events_at(c: Cluster, reason: str) -> list[float]:
    return [e.time for e in c.event_log if e.reason == reason]


@pytest.mark.parametrize("grace, not_ready_at", [(40.0, 45.0), (50.0, 55.0)])
def test_stopped_node_goes_not_ready_on_the_first_monitor_tick_past_the_grace_period(grace, not_ready_at):
    c, victim, seen = httpd(grace)
    victim_pod = next(p for p in c.pods("default") if p.node_name == victim and p.name.startswith("httpd-app-"))
    c.stop_node(victim)
    c.advance(not_ready_at - 5)
    assert c.node(victim).ready and victim_pod.ready
    assert all(httpd_endpoints(c).values())
    assert not [e for e in seen if e.kind == "Node"]          # nothing observable before the tick
    c.advance(5)
    assert c.clock.now == not_ready_at
    assert not c.node(victim).ready and not victim_pod.ready
    assert httpd_endpoints(c)[victim_pod.ip] is False
    assert sum(httpd_endpoints(c).values()) == 1
    kinds = [(e.type, e.kind) for e in seen]
    assert ("MODIFIED", "Node") in kinds and ("MODIFIED", "Pod") in kinds and ("MODIFIED", "EndpointSlice") in kinds
    assert events_at(c, "NodeNotReady")[0] == not_ready_at


def test_default_timings_are_kube_controller_managers():
    from netsim.control.model import ClusterConfig
    cfg = ClusterConfig()
    # node-monitor-grace-period 50 s since v1.32 (PR #126287); 300 s unreachable toleration; kubelet 10 s
    assert (cfg.node_monitor_grace_period, cfg.pod_eviction_timeout, cfg.heartbeat_interval) == (50.0, 300.0, 10.0)


def test_heartbeat_just_before_the_stop_moves_the_deadline():
    # stopped at t=12: the kubelet heartbeated at t=10, so NotReady comes when 10 + 40 < now: t=55
    c, victim, _ = httpd(40.0)
    c.advance(12)
    c.stop_node(victim)
    c.advance(42)
    assert c.node(victim).ready
    c.advance(1)
    assert c.clock.now == 55 and not c.node(victim).ready


def endpoint_conditions(c: Cluster, ns: str, svc: str) -> dict[str, tuple[bool, bool, bool]]:
    """target pod name -> (ready, serving, terminating), over every slice of the Service."""
    return {e.target_ref[2]: (e.ready, e.serving, e.terminating)
            for s in c.endpoint_slices(ns, svc) for e in s.endpoints}


def test_eviction_300s_after_not_ready_leaves_pods_terminating_and_replicasets_replace_them():
    # taint_eviction.go addConditionAndDeletePod: an ordinary Delete (DeleteOptions{}: the pod's grace
    # period) with event TaintManagerEviction "Marking for deletion Pod <ns>/<name>" from the
    # taint-eviction-controller. The kubelet of an unreachable node never confirms, so the pods stay
    # Terminating ("Kubernetes (versions 1.5 or newer) will not delete Pods just because a Node is
    # unreachable", docs: Force Delete StatefulSet Pods). ReplicaSets count only active pods
    # (controller.FilterActivePods drops pods with a deletionTimestamp) and replace them at once.
    c, victim, seen = httpd(40.0)
    old = {p.name: p for p in evictable(c, victim)}
    proxy = next(p for p in c.pods("kube-system") if p.node_name == victim and p.name.startswith("kube-proxy-"))
    assert old
    c.stop_node(victim)
    c.advance(344)                                          # NotReady at 45, eviction due at 345
    assert not any(p.terminating for p in old.values())
    c.advance(1)
    assert c.clock.now == 345
    still = {p.name: p for p in evictable(c, victim)}
    assert not proxy.terminating and c.pod("kube-system", proxy.name) is proxy    # the DaemonSet pod stays
    assert still == old and all(p.terminating and not p.ready and p.phase == "Running" for p in still.values())
    evictions = [e for e in c.event_log if e.reason == "TaintManagerEviction"]
    assert {(e.time, e.source, e.message) for e in evictions} == {
        (345.0, "taint-eviction-controller", f"Marking for deletion Pod {p.key}") for p in old.values()}
    # Killing is the kubelet's event: nobody stops the containers on an unreachable node
    assert not [e for e in c.event_log if e.reason == "Killing"]
    # every Deployment is back to its replica count of active pods, all on Ready nodes, all ready
    web = [p for p in c.pods("default") if p.name.startswith("httpd-app-") and not p.terminating]
    dns = [p for p in c.pods("kube-system") if p.name.startswith("coredns-") and not p.terminating]
    assert len(web) == 2 and len(dns) == 2
    assert all(p.node_name != victim and p.phase == "Running" and p.ready for p in web + dns)
    # EndpointSlice controller (podToEndpoint): the evicted pod stays listed as terminating, not
    # ready, not serving (the node controller had already set its Ready condition false)
    conds = endpoint_conditions(c, "default", "httpd-app")
    gone = next(n for n in old if n.startswith("httpd-app-"))
    assert conds[gone] == (False, False, True)
    assert {n for n, (ready, _, _) in conds.items() if ready} == {p.name for p in web}
    assert not [e for e in seen if e.type == "DELETED" and e.kind == "Pod"]
    added = [e.obj.name for e in seen if e.type == "ADDED" and e.kind == "Pod"]
    assert len(added) == len(old)
    c.advance(3600)                                         # an hour later, still waiting for the kubelet
    assert {p.name for p in evictable(c, victim)} == set(old)


def test_returning_node_kills_the_evicted_pods_and_they_go_after_their_grace_period():
    # kubelet pod_workers calculateEffectiveGracePeriod: the kill uses the pod's
    # deletionGracePeriodSeconds (30 s, set by the taint manager's delete); the kubelet then deletes
    # the pod object. The emulator's containers use their whole grace period, as with kubectl delete.
    c, victim, seen = httpd(40.0)
    old = {p.name for p in evictable(c, victim)}
    c.stop_node(victim)
    c.advance(400)
    c.start_node(victim)
    assert c.node(victim).ready
    kills = [e for e in c.event_log if e.reason == "Killing"]
    assert {(e.time, e.source, e.object, e.message) for e in kills} == {
        (400.0, f"kubelet/{victim}", f"pod/{n}", "Stopping container (grace period 30s)") for n in old}
    evicted = [p for p in c.pods() if p.name in old]
    assert len(evicted) == len(old) and all(p.terminating and not p.ready for p in evicted)
    c.advance(29)
    assert {p.name for p in c.pods() if p.name in old} == old
    c.advance(1)
    assert c.clock.now == 430 and not [p for p in c.pods() if p.name in old]
    assert {e.obj.name for e in seen if e.type == "DELETED" and e.kind == "Pod"} == old
    assert all(c.pod_by_ip(p.ip) is None for p in evicted)
    # no second round of replacements: the ReplicaSets were already at their counts
    assert len([p for p in c.pods("default") if p.name.startswith("httpd-app-")]) == 2


def test_start_node_before_eviction_cancels_the_scheduled_evictions():
    # taint_eviction.go processPodOnNode: the unreachable taint gone, cancelWorkWithEvent emits
    # TaintManagerEviction "Cancelling deletion of Pod <ns>/<name>" for each pod it had scheduled
    c, victim, _ = httpd(40.0)
    on_victim = {p.key for p in c.pods() if p.node_name == victim}
    c.stop_node(victim)
    c.advance(100)
    assert not c.node(victim).ready
    c.start_node(victim)
    assert c.node(victim).ready
    assert all(p.ready and not p.terminating for p in c.pods() if p.node_name == victim)
    assert all(httpd_endpoints(c).values()) and len(httpd_endpoints(c)) == 2
    evictions = [e for e in c.event_log if e.reason == "TaintManagerEviction"]
    assert {(e.time, e.message) for e in evictions} == {(100.0, f"Cancelling deletion of Pod {k}")
                                                        for k in on_victim}
    c.advance(400)
    assert not [e for e in c.event_log if e.message.startswith("Marking for deletion")]
    assert c.node(victim).ready                               # it heartbeats again


def test_start_node_before_not_ready_has_nothing_to_cancel():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(30)
    c.start_node(victim)
    assert events_at(c, "TaintManagerEviction") == [] and events_at(c, "NodeReady") == []


def test_started_node_after_eviction_takes_new_pods_again():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(345)
    c.start_node(victim)
    assert c.node(victim).ready and events_at(c, "NodeReady") == [345.0]
    c.advance(30)                                            # the evicted pods finish terminating
    c.scale("default", "httpd-app", 3)                       # the emptiest Ready node gets the new pod
    assert any(p.node_name == victim and not p.terminating
               for p in c.pods("default") if p.name.startswith("httpd-app-"))


def test_statefulset_pod_stays_terminating_while_its_node_is_down():
    # StatefulSet controller (stateful_set_control.go): a replica whose pod object still exists is
    # not created again ("is waiting for Pod %s to Terminate"); at most one db-0 exists at a time.
    # docs "Force Delete StatefulSet Pods": the pod on an unreachable node stays Terminating until the
    # kubelet confirms or the pod is force-deleted.
    c = load("example:shop")
    db0 = c.pod("shop", "db-0")
    victim = db0.node_name
    c.stop_node(victim)
    c.advance(355)                                          # default grace 50 s: NotReady 55, eviction 355
    assert c.pod("shop", "db-0") is db0 and db0.terminating and db0.node_name == victim
    assert endpoint_conditions(c, "shop", "db")["db-0"] == (False, False, True)
    assert endpoint_conditions(c, "shop", "db")["db-1"] == (True, True, False)
    # the Deployment's pod on the same node was replaced at once
    front = [p for p in c.pods("shop") if p.name.startswith("frontend-") and not p.terminating]
    assert len(front) == 3 and all(p.node_name != victim and p.ready for p in front)
    c.advance(3600)
    assert c.pod("shop", "db-0") is db0 and db0.terminating
    # the node comes back at t=3955: the kubelet kills db-0 (30 s grace), then the controller recreates it
    c.start_node(victim)
    c.advance(29)
    assert c.pod("shop", "db-0") is db0
    c.advance(1)
    assert c.clock.now == 3985
    new = c.pod("shop", "db-0")
    assert new is not None and new is not db0 and new.uid != db0.uid and not new.terminating
    assert (new.phase, new.ready, new.hostname, new.subdomain) == ("Running", True, "db-0", "db")
    assert endpoint_conditions(c, "shop", "db")["db-0"] == (True, True, False)
    assert [e.time for e in c.event_log if e.reason == "Killing" and e.object == "pod/db-0"] == [3955.0]


def test_force_delete_frees_the_statefulset_identity_at_once():
    # `kubectl delete pod db-0 --force --grace-period=0` (docs: Force Delete StatefulSet Pods): the
    # object goes without the kubelet's confirmation and the StatefulSet creates db-0 on a Ready node
    c = load("example:shop")
    db0 = c.pod("shop", "db-0")
    victim = db0.node_name
    seen: list[WatchEvent] = []
    c.watch(seen.append)
    c.stop_node(victim)
    c.advance(355)
    c.delete_pod("shop", "db-0", force=True)
    new = c.pod("shop", "db-0")
    assert new is not None and new is not db0 and new.node_name != victim
    assert (new.phase, new.ready, new.ip != db0.ip) == ("Running", True, True)
    pod_events = [(e.type, e.obj.uid) for e in seen if e.kind == "Pod" and e.obj.name == "db-0"]
    assert pod_events.index(("DELETED", db0.uid)) < pod_events.index(("ADDED", new.uid))
    assert endpoint_conditions(c, "shop", "db")["db-0"] == (True, True, False)
    assert not [e for e in c.event_log if e.reason == "Killing" and e.object == "pod/db-0"]


def test_kubectl_delete_on_a_stopped_node_waits_for_its_kubelet():
    # graceful deletion needs the kubelet; without --force the pod stays Terminating while the node is down
    c, victim, _ = httpd(40.0)
    pod = next(p for p in c.pods("default") if p.node_name == victim and p.name.startswith("httpd-app-"))
    c.stop_node(victim)
    c.delete_pod("default", pod.name)
    assert pod.terminating and not [e for e in c.event_log if e.reason == "Killing"]
    assert len([p for p in c.pods("default") if p.name.startswith("httpd-app-") and not p.terminating]) == 2
    c.advance(100)
    assert c.pod("default", pod.name) is pod
    c.start_node(victim)                                    # t=100: killed now, gone at 130
    c.advance(30)
    assert c.pod("default", pod.name) is None


def test_pods_cannot_be_scheduled_onto_a_not_ready_node():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(45)
    c.scale("default", "httpd-app", 6)
    assert not [p for p in c.pods("default") if p.node_name == victim and p.name.startswith("httpd-app-")
                and p.phase == "Running" and p.ready]


def test_event_log_marks_the_evicted_endpoint_terminating():
    c = load("example:shop")
    c.stop_node(c.pod("shop", "db-0").node_name)
    c.advance(355)
    last = [e for e in c.event_log if e.reason == "EndpointSliceUpdated" and e.message.startswith("db: ")][-1]
    ip0, ip1 = c.pod("shop", "db-0").ip, c.pod("shop", "db-1").ip
    assert (last.time, last.message) == (355.0, f"db: 1/2 endpoints ready [{ip0}(terminating), {ip1}]")
