"""Node lifecycle on the cluster clock, with exact times.

Sources: kubelet nodeStatusUpdateFrequency / node lease renewal 10 s; kube-controller-manager
--node-monitor-period 5 s, --node-monitor-grace-period (40 s up to v1.31, 50 s since v1.32, kubernetes
PR #126287), a node whose last heartbeat is more than the grace period old is marked NotReady
(probeTimestamp + grace < now, strictly) and MarkPodsNotReady flips its pods' Ready condition; the
unreachable NoExecute taint is tolerated for 300 s (DefaultTolerationSeconds admission), then the taint
manager deletes the pods and their ReplicaSets create replacements, which the scheduler places on Ready
nodes only. Tests set the grace period explicitly so they pin the timeline, not the default.
"""
from __future__ import annotations

import pytest

from netsim.cluster import Cluster
from netsim.events import WatchEvent
from netsim.manifests import load


def httpd(grace: float = 40.0) -> tuple[Cluster, str, list[WatchEvent]]:
    c = load("example:httpd-app")
    c.config.node_monitor_grace_period = grace
    victim = next(p.node_name for p in c.pods("default") if p.name.startswith("httpd-app-") and p.node_name != "node-1")
    seen: list[WatchEvent] = []
    c.watch(seen.append)
    return c, victim, seen


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
    from netsim.model import ClusterConfig
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


def test_eviction_300s_after_not_ready_recreates_pods_on_ready_nodes():
    c, victim, seen = httpd(40.0)
    old = {p.name for p in c.pods() if p.node_name == victim}
    assert old
    c.stop_node(victim)
    c.advance(344)                                          # NotReady at 45, eviction due at 345
    assert {p.name for p in c.pods() if p.node_name == victim} == old
    c.advance(1)
    assert c.clock.now == 345
    assert not [p for p in c.pods() if p.node_name == victim]
    assert events_at(c, "TaintManagerEviction") == [345.0] * len(old)
    # every Deployment is back to its replica count, all on Ready nodes, all ready
    web = [p for p in c.pods("default") if p.name.startswith("httpd-app-")]
    dns = [p for p in c.pods("kube-system") if p.name.startswith("coredns-")]
    assert len(web) == 2 and len(dns) == 2
    assert all(p.node_name != victim and p.phase == "Running" and p.ready for p in web + dns)
    assert set(httpd_endpoints(c)) == {p.ip for p in web} and all(httpd_endpoints(c).values())
    deleted = {e.obj.name for e in seen if e.type == "DELETED" and e.kind == "Pod"}
    assert deleted == old
    added = [e.obj.name for e in seen if e.type == "ADDED" and e.kind == "Pod"]
    assert len(added) == len(old)


def test_start_node_before_eviction_restores_ready_without_eviction():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(100)
    assert not c.node(victim).ready
    c.start_node(victim)
    assert c.node(victim).ready
    assert all(p.ready for p in c.pods() if p.node_name == victim)
    assert all(httpd_endpoints(c).values()) and len(httpd_endpoints(c)) == 2
    c.advance(400)
    assert events_at(c, "TaintManagerEviction") == []
    assert c.node(victim).ready                               # it heartbeats again


def test_started_node_after_eviction_takes_new_pods_again():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(345)
    c.start_node(victim)
    assert c.node(victim).ready and events_at(c, "NodeReady") == [345.0]
    c.scale("default", "httpd-app", 3)                       # the emptiest Ready node gets the new pod
    assert any(p.node_name == victim for p in c.pods("default") if p.name.startswith("httpd-app-"))


def test_statefulset_pod_evicted_comes_back_with_same_name():
    c = load("example:shop")
    victim = c.pod("shop", "db-0").node_name
    c.stop_node(victim)
    c.advance(354)                                          # default grace 50 s: NotReady 55, eviction 355
    assert c.pod("shop", "db-0").node_name == victim
    c.advance(1)
    db0 = c.pod("shop", "db-0")
    assert db0 is not None and db0.node_name != victim and db0.hostname == "db-0" and db0.subdomain == "db"


def test_pods_cannot_be_scheduled_onto_a_not_ready_node():
    c, victim, _ = httpd(40.0)
    c.stop_node(victim)
    c.advance(45)
    c.scale("default", "httpd-app", 6)
    assert not [p for p in c.pods("default") if p.node_name == victim and p.name.startswith("httpd-app-")
                and p.phase == "Running" and p.ready]
