"""The pod network's routes and FDB held once per cluster (netsim.dataplane.routing.SharedRoutes,
topology.FdbView): every node's table must read, list and match exactly as the per-node table flannel
programs (a route and an FDB entry per other node: flannel pkg/backend/vxlan/vxlan_network.go
handleSubnetEvents, pkg/backend/hostgw), while a cluster of n nodes holds O(n) of them, not n·(n−1).
"""
from __future__ import annotations

import gc
import random

import pytest
from hypothesis import given, settings, strategies as st

from netsim.benchmarks.reach_synth import SynthKnobs, generate
from netsim.control.manifests import load_text
from netsim.dataplane.routing import Route, RoutingTable, SharedRoutes, parse_cidr
from netsim.dataplane.topology import FLANNEL_DEVICE, Topology
from netsim.skb.packet import ip2int

from walker_cluster import scenario_cluster


def per_node_tables(topo: Topology) -> dict[str, tuple[RoutingTable, dict[int, int]]]:
    """What every node held before the tables were shared: its own routes, then one route (and with
    vxlan one FDB entry) per other node with a podCIDR, added to a table of its own, in node order."""
    cluster = topo.cluster
    nodes = [n for n in cluster.nodes() if n.pod_cidr]
    out = {}
    for n in nodes:
        rt = RoutingTable()
        addr = ip2int(n.ip)
        rt.add(Route(topo.node_net, topo.node_plen, "eth0", src=addr))
        rt.add(Route(0, 0, "eth0", via=topo.router_ip, proto="static"))
        pnet, plen = parse_cidr(n.pod_cidr)
        rt.add(Route(pnet, plen, "cni0", src=pnet + 1))
        fdb: dict[int, int] = {}
        for m in nodes:
            if m.name == n.name:
                continue
            rnet, rlen = parse_cidr(m.pod_cidr)
            if topo.pod_network == "vxlan":
                rt.add(Route(rnet, rlen, FLANNEL_DEVICE, via=rnet, onlink=True, proto="flannel"))
                fdb[rnet] = ip2int(m.ip)
            else:
                rt.add(Route(rnet, rlen, "eth0", via=ip2int(m.ip), proto="flannel"))
        out[n.name] = (rt, fdb)
    return out


def probe_addresses(topo: Topology, rng: random.Random, extra: int = 200) -> list[int]:
    """Every podCIDR's gateway and a random address in it, node IPs, the external hosts, loopback,
    and random addresses anywhere."""
    addrs = [ip2int("127.0.0.1"), ip2int("8.8.8.8"), topo.router_ip, topo.client_ip, topo.lb_host_ip]
    for n in topo.cluster.nodes():
        addrs.append(ip2int(n.ip))
        if n.pod_cidr:
            net, length = parse_cidr(n.pod_cidr)
            addrs += [net, net + 1, net + rng.randrange(1 << (32 - length))]
    addrs += [rng.getrandbits(32) for _ in range(extra)]
    return addrs


def assert_same_as_per_node(topo: Topology, seed: int = 0) -> None:
    rng = random.Random(seed)
    old = per_node_tables(topo)
    assert old, "the cluster has nodes with podCIDRs"
    addrs = probe_addresses(topo, rng)
    for name, (rt, fdb) in old.items():
        h = topo.host(name)
        assert h.routes.show() == rt.show()                       # ip route
        assert list(h.routes) == list(rt)
        assert h.routes.routes == rt.routes
        for a in addrs:
            assert h.routes.lookup(a) == rt.lookup(a), (name, a)
            assert h.routes.is_local(a) == (a in h.routes.local or (a >> 24) == 127)
        if topo.pod_network == "vxlan":
            view = h.interfaces[FLANNEL_DEVICE].fdb
            assert dict(view) == fdb and list(view) == list(fdb) and len(view) == len(fdb)
            for a in addrs:
                assert view.get(a) == fdb.get(a) and (a in view) == (a in fdb)


@pytest.mark.parametrize("pod_network", ["vxlan", "host-gw"])
def test_scenario_nodes_read_as_their_own_tables(pod_network):
    assert_same_as_per_node(Topology(scenario_cluster(pod_network=pod_network)))


@pytest.mark.parametrize("pod_network", ["vxlan", "host-gw"])
def test_synthetic_nodes_read_as_their_own_tables(pod_network):
    text = generate(SynthKnobs(nodes=40, services=20, pods=60, seed=3))
    text = text.replace("  seed: 3\n", f"  seed: 3\n  podNetwork: {pod_network}\n", 1)
    topo = Topology(load_text(text, "synth.yaml"))
    assert topo.pod_network == pod_network
    assert_same_as_per_node(topo, seed=3)


def _routes_made(n_nodes: int) -> tuple[int, int]:
    """(Route objects alive after wiring n nodes but the external hosts' own, entries in the shared
    table). Pods are wired when first looked up, so none here."""
    cluster = load_text(generate(SynthKnobs(nodes=n_nodes, services=4, pods=n_nodes, seed=5)), "synth.yaml")
    gc.collect()
    before = sum(1 for o in gc.get_objects() if type(o) is Route)
    topo = Topology(cluster)
    gc.collect()
    after = sum(1 for o in gc.get_objects() if type(o) is Route)
    edge = sum(len(topo.host(h).routes.routes) for h in ("router", "external", "loadbalancer"))
    return after - before - edge, len(topo.pod_routes)


def test_pod_network_memory_is_linear_in_nodes():
    """Per node: eth0's connected route, the default route, cni0's route, and its one lease in the
    shared table (per-node tables held n·(n−1) flannel routes: 39,800 at 200 nodes)."""
    for n in (50, 200):
        made, shared = _routes_made(n)
        assert shared == n
        assert made == 4 * n, (n, made)
    small, _ = _routes_made(50)
    big, _ = _routes_made(200)
    assert big == 4 * small


def _table(spec, late):
    """A per-node table fed by add() alone vs the same node attached to a shared table."""
    owners, own = spec
    plain: dict[str, RoutingTable] = {}
    shared = SharedRoutes()
    attached: dict[str, RoutingTable] = {}
    for o, (net, length) in own.items():
        for rt in (plain.setdefault(o, RoutingTable()), attached.setdefault(o, RoutingTable())):
            rt.add(Route(ip2int("192.168.0.0"), 16, "eth0"))
            rt.add(Route(0, 0, "eth0", via=ip2int("192.168.0.1"), proto="static"))
            rt.add(Route(net, length, "cni0", src=net + 1))
    for o, route in owners:
        shared.add_route(o, route)
        for p in own:
            if p != o:
                plain[p].add(route)
    for o, (net, length) in own.items():
        attached[o].attach(shared, o, (length, net))
    for o, route in late:
        if o in own:
            plain[o].add(route)
            attached[o].add(route)
    return plain, attached


_prefix = st.tuples(st.sampled_from([ip2int("10.244.0.0"), ip2int("10.244.1.0"), ip2int("10.244.2.0"),
                                     ip2int("10.0.0.0"), ip2int("192.168.0.0")]),
                    st.sampled_from([8, 16, 24, 32]))


@settings(max_examples=150, deadline=None)
@given(own=st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _prefix, min_size=1),
       extra=st.lists(st.tuples(st.sampled_from(["e", "f"]), _prefix), max_size=4),
       late=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), _prefix), max_size=3),
       dsts=st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_shared_routes_match_per_node_tables(own, extra, late, dsts):
    """Duplicate podCIDRs, leases of nodes without a table (e, f), routes added after attaching: the
    attached table lists and matches as the plain per-node table (a later add wins a prefix)."""
    def route(o, net, length, i):
        net &= (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        return Route(net, length, "flannel.1", via=net + i, onlink=True, proto="flannel")
    leases = [(o, route(o, *own[o], 0)) for o in own] + [(o, route(o, n, l, 1)) for o, (n, l) in extra]
    late_routes = [(o, route(o, n, l, 2)) for o, (n, l) in late]
    own = {o: (n & ((0xFFFFFFFF << (32 - l)) & 0xFFFFFFFF), l) for o, (n, l) in own.items()}
    plain, attached = _table((leases, own), late_routes)
    probes = dsts + [n + 5 for n, _ in own.values()] + [r.network for _, r in leases]
    for o in own:
        assert attached[o].routes == plain[o].routes
        assert attached[o].show() == plain[o].show()
        for d in probes:
            assert attached[o].lookup(d) == plain[o].lookup(d), (o, d)
