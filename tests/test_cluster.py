"""The Cluster API: store, watch events and fault injection (pod readiness, scale, delete, clock).

Expectations: a watch delivers ADDED/MODIFIED/DELETED per object change as the API server's watch does;
a readiness-probe failure turns the endpoint not ready (EndpointSlice controller); a deleted pod is
Terminating for terminationGracePeriodSeconds (30 s default) while its ReplicaSet creates the
replacement at once (terminating pods are not counted as active); scaling down deletes the newest pods
first (ReplicaSet getPodsToDelete ranks by creation time when all are Running and Ready).
"""
from __future__ import annotations

import pytest

from netsim.control.cluster import Cluster, ClusterError
from netsim.control.events import format_events
from netsim.control.model import ClusterConfig, ContainerPort, Deployment, Node, Pod, Service, ServicePort


def watched(c: Cluster) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    c.watch(lambda ev: seen.append((ev.type, ev.kind, getattr(ev.obj, "name", ""))))
    return seen


def web_cluster(replicas: int = 2) -> Cluster:
    c = Cluster(ClusterConfig(coredns=False, seed=3))
    c.apply([Node("node-1", "192.168.49.2"), Node("node-2", "192.168.49.3"),
             Service("web", selector={"app": "web"}, ports=[ServicePort(80, target_port=8080)]),
             Deployment("Deployment", "web", "default", replicas, {"app": "web"},
                        Pod("", labels={"app": "web"}, ports=[ContainerPort(8080)]), template_hash="abc")])
    return c


def ready_ips(c: Cluster) -> set[str]:
    return {e.addresses[0] for s in c.endpoint_slices("default", "web") for e in s.endpoints if e.ready}


def test_add_model_objects_and_query():
    c = web_cluster()
    assert [n.name for n in c.nodes()] == ["node-1", "node-2"] and c.node("node-9") is None
    pods = c.pods("default")
    assert len(pods) == 2 and all(p.name.startswith("web-abc-") for p in pods)
    assert c.pod("default", pods[0].name) is pods[0]
    assert c.pod_by_ip(pods[0].ip) is pods[0]
    assert c.service("default", "web").cluster_ip and c.services("kube-system") == []
    assert ready_ips(c) == {p.ip for p in pods}
    assert [w.name for w in c.workloads()] == ["web"]


def test_watch_sees_every_step_of_a_pod_creation():
    c = web_cluster(0)
    seen = watched(c)
    c.add(Pod("solo", labels={"app": "web"}, ports=[ContainerPort(8080)]))
    assert seen[0] == ("ADDED", "Pod", "solo")
    assert ("MODIFIED", "Pod", "solo") in seen               # bound + started: phase Running, IP set
    assert seen[-1][:2] == ("MODIFIED", "EndpointSlice")
    assert ready_ips(c) == {c.pod("default", "solo").ip}


def test_set_pod_ready_false_then_true():
    c = web_cluster()
    a, b = c.pods("default")
    seen = watched(c)
    c.set_pod_ready("default", a.name, False)
    assert ready_ips(c) == {b.ip}
    assert seen == [("MODIFIED", "Pod", a.name), ("MODIFIED", "EndpointSlice", seen[1][2])]
    c.set_pod_ready("default", a.name, False)               # no change, no events
    assert len(seen) == 2
    c.set_pod_ready("default", a.name, True)
    assert ready_ips(c) == {a.ip, b.ip}
    assert [e.reason for e in c.event_log if e.reason == "Readiness"] == ["Readiness", "Readiness"]


def test_scale_up_and_down_newest_first():
    c = web_cluster()
    first = [p.name for p in c.pods("default")]
    c.scale("default", "web", 4)
    assert len(c.pods("default")) == 4 and len(ready_ips(c)) == 4
    newest = [p.name for p in c.pods("default") if p.name not in first]
    c.scale("default", "web", 2)
    terminating = {p.name for p in c.pods("default") if p.terminating}
    assert terminating == set(newest)
    c.advance(30)
    assert {p.name for p in c.pods("default")} == set(first)
    with pytest.raises(ClusterError, match="must be greater than or equal to 0"):
        c.scale("default", "web", -1)
    with pytest.raises(ClusterError, match='workload "nope" not found'):
        c.scale("default", "nope", 1)


def test_delete_pod_terminates_for_grace_period_and_is_replaced_at_once():
    c = web_cluster()
    victim = c.pods("default")[0]
    seen = watched(c)
    c.delete_pod("default", victim.name)
    assert victim.terminating and c.pod("default", victim.name) is victim
    assert len([p for p in c.pods("default") if not p.terminating]) == 2       # replacement already there
    assert victim.ip not in ready_ips(c) and len(ready_ips(c)) == 2
    c.advance(29.9)
    assert c.pod("default", victim.name) is not None
    c.advance(0.1)
    assert c.pod("default", victim.name) is None and c.pod_by_ip(victim.ip) is None
    assert ("DELETED", "Pod", victim.name) in seen
    assert ("ADDED", "Pod", seen[[s[0] for s in seen].index("ADDED")][2]) in seen


def test_delete_pod_with_zero_grace_is_immediate_and_ip_is_reused_later():
    c = web_cluster(0)
    c.add(Pod("a", node_name="node-1"))
    ip = c.pod("default", "a").ip
    c.delete_pod("default", "a", grace_period=0)
    assert c.pod("default", "a") is None
    with pytest.raises(ClusterError, match='pods "a" not found in namespace default'):
        c.delete_pod("default", "a")
    c.add(Pod("b", node_name="node-1"))
    c.add(Pod("c", node_name="node-1"))
    # host-local continues after the last reserved address (round-robin), it does not reuse .2 at once
    assert ip == "10.244.0.2"
    assert (c.pod("default", "b").ip, c.pod("default", "c").ip) == ("10.244.0.3", "10.244.0.4")


def test_delete_service_releases_ip_and_node_ports_and_slices():
    c = Cluster(ClusterConfig(coredns=False))
    c.add(Node("n", "192.168.49.2"))
    c.add(Service("a", type="NodePort", cluster_ip="10.96.0.50", selector={"x": "y"},
                  ports=[ServicePort(80, node_port=30050)]))
    assert c.endpoint_slices("default", "a")
    seen = watched(c)
    c.delete_service("default", "a")
    assert c.service("default", "a") is None and c.endpoint_slices("default", "a") == []
    assert ("DELETED", "Service", "a") in seen and ("DELETED", "EndpointSlice", seen[0][2]) in seen
    c.add(Service("b", type="NodePort", cluster_ip="10.96.0.50", ports=[ServicePort(80, node_port=30050)]))
    assert c.service("default", "b").ports[0].node_port == 30050


def test_advance_moves_the_clock_and_stamps_events():
    c = web_cluster()
    c.advance(12.5)
    assert c.clock.now == 12.5
    c.delete_pod("default", c.pods("default")[0].name)
    kill = [e for e in c.event_log if e.reason == "Killing"][0]
    assert kill.time == 12.5
    assert "t+12.5s" in format_events(c.event_log)


def test_event_log_tells_the_control_plane_story_in_order():
    c = web_cluster()
    reasons = [e.reason for e in c.event_log]
    order = ["RegisteredNode", "Created", "ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Started",
             "EndpointSliceCreated", "SyncProxyRules"]
    positions = [reasons.index(r) for r in order]
    assert positions == sorted(positions)
    table = format_events(c.event_log).splitlines()
    assert table[0].split() == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SOURCE", "MESSAGE"]


def test_refusals_name_the_object():
    c = web_cluster()
    with pytest.raises(ClusterError, match=r'^Node node-1: nodes "node-1" already exists$'):
        c.add(Node("node-1", "192.168.49.9"))
    with pytest.raises(ClusterError, match=r"^Node node-3: node IP 192.168.49.2 is already used by another node$"):
        c.add(Node("node-3", "192.168.49.2"))
    with pytest.raises(ClusterError, match=r'^Service default/web: services "web" already exists$'):
        c.add(Service("web", ports=[ServicePort(80)]))
    with pytest.raises(ClusterError, match=r"^Deployment default/web: deployments.apps \"web\" already exists$"):
        c.add(Deployment("Deployment", "web", "default", 1, {"a": "b"}, Pod("", labels={"a": "b"})))
    with pytest.raises(ClusterError, match=r"unsupported object str"):
        c.add("nonsense")


def test_pod_on_stopped_node_stays_pending_until_the_node_starts():
    c = web_cluster(0)
    c.stop_node("node-2")
    c.add(Pod("p", node_name="node-2", labels={"app": "web"}, ports=[ContainerPort(8080)]))
    assert c.pod("default", "p").phase == "Pending" and c.pod("default", "p").ip is None
    c.start_node("node-2")
    assert c.pod("default", "p").phase == "Running" and ready_ips(c) == {c.pod("default", "p").ip}
    with pytest.raises(ClusterError, match='nodes "nope" not found'):
        c.stop_node("nope")


def test_watch_events_for_scale_stop_and_start_node():
    c = web_cluster()
    c.config.node_monitor_grace_period = 40.0
    seen = watched(c)
    c.scale("default", "web", 3)
    new = [name for t, k, name in seen if (t, k) == ("ADDED", "Pod")]
    assert len(new) == 1 and ("MODIFIED", "Pod", new[0]) in seen
    assert any(k == "EndpointSlice" for _, k, _ in seen)
    seen.clear()
    c.stop_node("node-2")
    assert seen == []                                      # a silent kubelet changes nothing by itself
    c.advance(45)
    assert ("MODIFIED", "Node", "node-2") in seen
    seen.clear()
    c.start_node("node-2")
    assert seen[0] == ("MODIFIED", "Node", "node-2")
    assert {k for _, k, _ in seen} == {"Node", "Pod", "EndpointSlice"}
    assert len(ready_ips(c)) == 3


def test_full_pod_cidr_leaves_pod_pending_with_event_then_starts_when_an_ip_frees():
    # kubelet: the host-local plugin fails, sandbox creation is retried; the pod stays ContainerCreating
    c = Cluster(ClusterConfig(coredns=False, node_cidr_mask=30))     # a /30: one pod address (.2)
    c.add(Node("n1", "192.168.49.2"))
    c.apply([Pod("a"), Pod("b")])
    a, b = c.pod("default", "a"), c.pod("default", "b")
    assert (a.phase, a.ip) == ("Running", "10.244.0.2") and (b.phase, b.ip, b.node_name) == ("Pending", None, "n1")
    failed = [e for e in c.event_log if e.reason == "FailedCreatePodSandBox"]
    assert len(failed) == 1 and failed[0].object == "pod/b" and failed[0].type == "Warning"
    assert "no IP addresses available in range set: 10.244.0.2-10.244.0.2" in failed[0].message
    c.delete_pod("default", "a", grace_period=0)
    assert (b.phase, b.ip) == ("Running", "10.244.0.2")


def test_exhausted_load_balancer_pool_leaves_external_ip_pending():
    # Kubernetes never refuses a LoadBalancer Service for want of an address; it stays <pending>
    c = Cluster(ClusterConfig(coredns=False, load_balancer_pool="192.168.49.240/30"))   # two addresses
    c.add(Node("n1", "192.168.49.2"))
    for name in ("a", "b", "c"):
        c.add(Service(name, type="LoadBalancer", ports=[ServicePort(80)]))
    assert [c.service("default", n).load_balancer_ips for n in "abc"] == [["192.168.49.241"], ["192.168.49.242"], []]
    ev = [e for e in c.event_log if e.reason == "AllocationFailed"]
    assert len(ev) == 1 and ev[0].object == "service/c" and ev[0].type == "Warning"
    c.delete_service("default", "a")
    c.add(Service("d", type="LoadBalancer", ports=[ServicePort(80)]))
    assert c.service("default", "d").load_balancer_ips == ["192.168.49.241"]


def test_snapshot_is_independent_and_drops_watchers(httpd_cluster):
    import pickle
    seen = []
    httpd_cluster.watch(seen.append)
    twin = httpd_cluster.snapshot()
    twin.scale("default", "httpd-app", 5)
    assert len([p for p in twin.pods("default") if p.owner]) == 5
    assert len([p for p in httpd_cluster.pods("default") if p.owner]) == 2
    assert seen == []                      # the twin's changes do not reach the original's watchers
    restored = pickle.loads(pickle.dumps(httpd_cluster))
    assert [p.ip for p in restored.pods()] == [p.ip for p in httpd_cluster.pods()]
