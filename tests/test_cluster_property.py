"""Property: any sequence of faults (stop/start node, readiness flips, scale, delete pod, advance the clock)
leaves the store consistent with what the controllers promise:

- every endpoint in a controller-managed slice is an existing pod with that IP, selected by the Service;
  ready = pod Ready and not terminating; serving = pod Ready; terminating = pod terminating
  (EndpointSlice controller podToEndpoint);
- every Running, non-terminating pod selected by a Service appears in exactly one of its slices;
- no two pod-network pods share an IP, and each IP lies in its node's podCIDR (host-local IPAM);
- a Deployment always has exactly `replicas` non-terminating pods (unschedulable ones stay Pending), and
  once every node is back and every deadline has passed, all of them Running;
- a terminating pod whose node is stopped is never removed except by a force delete (grace 0): only its
  kubelet can confirm a graceful deletion (docs: Force Delete StatefulSet Pods).
"""
from __future__ import annotations

import ipaddress

from hypothesis import given, settings, strategies as st

from netsim.control.cluster import Cluster
from netsim.control.manifests import load

NODES = ["node-1", "node-2", "node-3"]

action = st.one_of(
    st.tuples(st.just("stop"), st.sampled_from(NODES)),
    st.tuples(st.just("start"), st.sampled_from(NODES)),
    st.tuples(st.just("ready"), st.integers(0, 20), st.booleans()),
    st.tuples(st.just("scale"), st.sampled_from(["httpd-app", "coredns"]), st.integers(0, 5)),
    st.tuples(st.just("delete"), st.integers(0, 20), st.sampled_from([0.0, 30.0])),
    st.tuples(st.just("advance"), st.sampled_from([1.0, 5.0, 29.0, 45.0, 60.0, 300.0])),
)


def apply(c: Cluster, act: tuple) -> None:
    kind = act[0]
    pods = sorted(c.pods(), key=lambda p: p.key)
    if kind == "stop":
        c.stop_node(act[1])
    elif kind == "start":
        c.start_node(act[1])
    elif kind == "ready" and pods:
        p = pods[act[1] % len(pods)]
        c.set_pod_ready(p.namespace, p.name, act[2])
    elif kind == "scale":
        ns = "kube-system" if act[1] == "coredns" else "default"
        c.scale(ns, act[1], act[2])
    elif kind == "delete" and pods:
        p = pods[act[1] % len(pods)]
        c.delete_pod(p.namespace, p.name, grace_period=act[2])
    elif kind == "advance":
        c.advance(act[1])


def check_invariants(c: Cluster) -> None:
    pods = {p.key: p for p in c.pods()}
    ips = [p.ip for p in pods.values() if p.ip and not p.host_network]
    assert len(ips) == len(set(ips)), "duplicate pod IP"
    for p in pods.values():
        if p.ip and not p.host_network:
            assert ipaddress.ip_address(p.ip) in ipaddress.ip_network(c.node(p.node_name).pod_cidr)
            assert c.pod_by_ip(p.ip) is p
        if p.phase == "Running":
            assert p.node_name in NODES
    for svc in c.services():
        if svc.selector is None:
            continue
        listed: dict[str, int] = {}
        for s in c.endpoint_slices(svc.namespace, svc.name):
            if s.managed_by != "endpointslice-controller.k8s.io":
                continue
            for e in s.endpoints:
                key = f"{e.target_ref[1]}/{e.target_ref[2]}"
                pod = pods.get(key)
                assert pod is not None, f"endpoint for a missing pod {key}"
                assert e.addresses == [pod.ip]
                assert all(pod.labels.get(k) == v for k, v in svc.selector.items())
                assert e.serving == pod.ready and e.terminating == pod.terminating
                assert e.ready == (svc.publish_not_ready_addresses or (pod.ready and not pod.terminating))
                listed[key] = listed.get(key, 0) + 1
        selected = {p.key for p in c.select_pods(svc.namespace, svc.selector) if p.ip and p.phase == "Running"}
        assert set(listed) == selected and all(n == 1 for n in listed.values())
    for w in c.workloads():
        live = [p for p in pods.values() if p.owner == (w.kind, w.name) and not p.terminating]
        # a DaemonSet (kubeadm's kube-proxy tolerates everything): one pod per node
        want = len(NODES) if w.kind == "DaemonSet" else w.replicas
        assert len(live) == want, (w.name, len(live), want)   # pending ones count too


@settings(max_examples=60, deadline=None)
@given(st.lists(action, max_size=12))
def test_fault_sequences_keep_the_store_consistent(actions):
    c = load("example:httpd-app")
    for act in actions:
        held = {p.key for p in c.pods() if p.terminating and not c.node(p.node_name).running}
        pods = sorted(c.pods(), key=lambda p: p.key)
        if act[0] == "delete" and act[2] == 0.0 and pods:
            held.discard(pods[act[1] % len(pods)].key)          # force delete: the one way out
        apply(c, act)
        check_invariants(c)
        assert held <= {p.key for p in c.pods()}, "a graceful deletion completed without its kubelet"
    # let every deadline pass with all nodes back: the cluster converges
    for n in NODES:
        c.start_node(n)
    c.advance(400)
    check_invariants(c)
    for w in c.workloads():
        live = [p for p in c.pods(w.namespace) if p.owner == (w.kind, w.name)]
        assert len(live) == (len(NODES) if w.kind == "DaemonSet" else w.replicas) and all(p.phase == "Running" and not p.terminating for p in live)
    assert all(n.ready for n in c.nodes())
