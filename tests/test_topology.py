"""Topology: interfaces, routes (longest-prefix match), flannel VXLAN / host-gw wiring, resolv.conf.

Expectations: flannel pkg/backend/vxlan/vxlan_network.go and device.go (flannel.1 /32 = subnet network address,
``<subnet> via <subnet net> dev flannel.1 onlink``), pkg/backend/hostgw/hostgw.go (host-gw ``<subnet> via <node IP>``),
kubelet ClusterFirst resolv.conf (search <ns>.svc.<domain> svc.<domain> <domain>, ndots:5).
"""
from __future__ import annotations

import pytest

from netsim.skb.packet import ip2int
from netsim.dataplane.routing import Route, RoutingTable, parse_cidr
from netsim.dataplane.topology import Topology, TopologyError, veth_name

from walker_cluster import scenario_cluster


def test_longest_prefix_match():
    rt = RoutingTable()
    rt.add(Route(0, 0, "eth0", via=ip2int("192.168.49.1")))
    rt.add(Route(*parse_cidr("10.244.0.0/16"), "flannel.1"))
    rt.add(Route(*parse_cidr("10.244.1.0/24"), "cni0"))
    assert rt.lookup(ip2int("10.244.1.7")).dev == "cni0"
    assert rt.lookup(ip2int("10.244.9.7")).dev == "flannel.1"
    assert rt.lookup(ip2int("8.8.8.8")).dev == "eth0"
    assert rt.is_local(ip2int("127.0.0.53"))            # 127/8 is RTN_LOCAL
    assert str(rt.lookup(ip2int("8.8.8.8"))) == "default via 192.168.49.1 dev eth0"


def test_node_wiring_vxlan():
    topo = Topology(scenario_cluster())
    n1 = topo.host("node-1")
    assert n1.interfaces["eth0"].ip == "192.168.49.2"
    assert n1.interfaces["cni0"].ip == "10.244.0.1" and n1.interfaces["cni0"].length == 24
    assert n1.interfaces["flannel.1"].ip == "10.244.0.0" and n1.interfaces["flannel.1"].length == 32
    routes = n1.routes.show().splitlines()
    assert "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in routes
    assert "10.244.0.0/24 dev cni0 proto kernel scope link src 10.244.0.1" in routes
    assert routes[0] == "default via 192.168.49.1 dev eth0"
    assert n1.interfaces["flannel.1"].fdb[ip2int("10.244.2.0")] == ip2int("192.168.49.4")


def test_node_wiring_host_gw():
    topo = Topology(scenario_cluster(pod_network="host-gw"))
    routes = topo.host("node-1").routes.show().splitlines()
    assert "10.244.1.0/24 via 192.168.49.3 dev eth0" in routes
    assert "flannel.1" not in topo.host("node-1").interfaces


def test_pod_wiring_and_resolv_conf():
    topo = Topology(scenario_cluster())
    pod = topo.pod_host("default", "client-1")
    eth0 = pod.interfaces["eth0"]
    assert eth0.ip == "10.244.0.5" and eth0.bridge_port == veth_name("default/client-1")
    assert eth0.bridge_port.startswith("veth") and len(eth0.bridge_port) == 12
    assert pod.routes.show().splitlines()[0] == "default via 10.244.0.1 dev eth0"
    assert not pod.forwarding
    assert pod.resolv_conf.text() == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                      "nameserver 10.96.0.10\noptions ndots:5\n")
    # the pod and its gateway share the node's cni0 segment
    assert topo.host("node-1").interfaces["cni0"].segment.neighbours[ip2int("10.244.0.5")] is eth0


def test_external_hosts():
    c = scenario_cluster()
    topo = Topology(c)
    assert topo.host("router").interfaces["eth0"].ip == "192.168.49.1"
    assert topo.host("external").interfaces["eth0"].ip == "192.168.49.100"
    lb = topo.host("loadbalancer")
    for ip in c.service("default", "web-lb").load_balancer_ips:
        assert lb.routes.is_local(ip2int(ip))
        assert topo.underlay.neighbours[ip2int(ip)] is lb.interfaces["eth0"]
    assert str(topo.host("router").routes.lookup(ip2int("203.0.113.50"))) == \
        f"203.0.113.50/32 via {lb.interfaces['eth0'].ip} dev eth0"


def test_bad_pod_network_is_a_clear_error():
    c = scenario_cluster()
    c.config.pod_network = "calico"
    with pytest.raises(TopologyError, match="pod_network: expected vxlan or host-gw"):
        Topology(c)


def test_route_lookup_cache_follows_new_routes():
    rt = RoutingTable()
    rt.add(Route(0, 0, "eth0", via=ip2int("192.168.49.1")))
    dst = ip2int("10.244.3.9")
    assert rt.lookup(dst).dev == "eth0"
    assert rt.lookup(dst).dev == "eth0"                  # answered from the cache
    rt.add(Route(*parse_cidr("10.244.3.0/24"), "flannel.1"))
    assert rt.lookup(dst).dev == "flannel.1"             # a new route invalidates it
    assert RoutingTable().lookup(dst) is None
