"""Random flows and cluster changes on the walker scenario cluster, for the tests that prove a cache
changes nothing (tests/test_verdict_memo.py, tests/test_hop_memo.py): the same operations are
applied with and without the cache, and everything observable is compared."""
from __future__ import annotations

from hypothesis import strategies as st

import netsim
from netsim.control.model import Service, ServicePort
from walker_cluster import SCENARIO_YAML

SOURCES = ["pod/client-1", "pod/client-3", "pod/web-1", "node/node-1", "node/node-2", "external"]

# cluster changes: (op, argument, number)
CHANGES = [
    st.tuples(st.just("advance"), st.sampled_from([1, 5, 40, 200, 11000]), st.just(0)),
    st.tuples(st.just("delete_pod"), st.sampled_from(["web-1", "web-2", "multi-a", "echo-2"]), st.just(0)),
    st.tuples(st.just("service"), st.sampled_from(["None", "ClientIP"]), st.integers(0, 50)),
    st.tuples(st.just("stop_node"), st.sampled_from(["node-2", "node-3"]), st.just(0)),
    st.tuples(st.just("not_ready"), st.sampled_from(["web-1", "web-2", "multi-b"]), st.just(0)),
]


def scenario(mode: str, pod_network: str = "vxlan") -> netsim.Emulator:
    return netsim.load(SCENARIO_YAML % {"pod_network": pod_network}, mode=mode, seed=5)


def targets(emu: netsim.Emulator, pods: bool = False) -> list[tuple[str, str]]:
    """Every Service address and port (ClusterIP, a NodePort, load-balancer and external IPs) with
    its protocol; with ``pods`` some pod addresses too."""
    out = []
    for s in emu.cluster.services():
        for p in s.ports:
            if s.cluster_ip and s.cluster_ip != "None":
                out.append((f"{s.cluster_ip}:{p.port}", p.protocol.lower()))
            if p.node_port:
                out.append((f"192.168.49.3:{p.node_port}", p.protocol.lower()))
            out += [(f"{ip}:{p.port}", p.protocol.lower()) for ip in s.load_balancer_ips + s.external_ips]
    if pods:
        out += [("10.244.0.2:8080", "tcp"), ("10.244.1.3:9090", "tcp"), ("10.244.0.4:5353", "udp")]
    return sorted(set(out))


def apply_change(emu: netsim.Emulator, op: str, a, b: int, added: list[int]) -> bool:
    """Apply one of CHANGES; False when ``op`` is not one of them. ``added`` counts new Services."""
    if op == "advance":
        emu.advance(a)
    elif op == "delete_pod":
        if emu.cluster.pod("default", a) is not None:
            emu.delete_pod(a, grace_period=0)
    elif op == "service":
        added[0] += 1
        emu.cluster.add(Service(f"extra-{added[0]}", selector={"app": "web" if b % 3 else "multi"},
                                ports=[ServicePort(80 + b % 2, "TCP", "http", "http")],
                                session_affinity=a))
    elif op == "stop_node":
        emu.stop_node(a)
    elif op == "not_ready":
        if emu.cluster.pod("default", a) is not None:
            emu.set_pod_ready(a, False)
    else:
        return False
    return True
