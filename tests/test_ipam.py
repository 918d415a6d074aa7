"""IP address management, per allocator.

Sources: kube-controller-manager's range allocator (node i gets the i-th /--node-cidr-mask-size subnet of
--cluster-cidr); the host-local CNI IPAM plugin (gateway .1, first pod .2, continues after the last
reserved address); the API server's service IP allocator (KEP-3070: dynamic allocation prefers the upper
band, the first min(max(16, size/16), 256) addresses are kept for static requests; network and broadcast
addresses never allocated) and NodePort allocator (--service-node-port-range 30000-32767).
"""
from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsim.control.ipam import (AllocationError, ClusterIPAllocator, LoadBalancerIPAllocator, NodeCIDRAllocator,
                                 PodIPAllocator, PortAllocator)


def test_node_cidrs_in_order_and_exhaustion():
    a = NodeCIDRAllocator("10.244.0.0/22", 24)
    assert [a.allocate() for _ in range(4)] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    with pytest.raises(AllocationError, match=r"^cluster CIDR 10.244.0.0/22 has no free /24 for another node$"):
        a.allocate()
    a.release("10.244.1.0/24")
    assert a.allocate() == "10.244.1.0/24"


def test_pod_ips_host_local():
    a = PodIPAllocator("10.244.1.0/29")             # .1 gateway, .2-.6 pods, .7 broadcast
    assert [a.allocate() for _ in range(5)] == [f"10.244.1.{i}" for i in range(2, 7)]
    with pytest.raises(AllocationError, match=r"^pod CIDR 10.244.1.0/29 is full$"):
        a.allocate()
    a.release("10.244.1.3")
    assert a.allocate() == "10.244.1.3"


def test_pod_ips_of_a_range_larger_than_the_byte_map_as_of_a_small_one():
    """A podCIDR past PodIPAllocator.BYTEMAP_LIMIT (an IPv6 /64) keeps its taken addresses in a set:
    same order, same reuse after a release; releasing an address outside the range changes nothing."""
    big, small = PodIPAllocator("fd00:10:244:1::/64"), PodIPAllocator("10.244.1.0/24")
    assert big._taken is None and small._taken is not None
    for a, prefix in ((big, "fd00:10:244:1::"), (small, "10.244.1.")):
        assert [a.allocate() for _ in range(3)] == [f"{prefix}{i}" for i in (2, 3, 4)]
        a.release(f"{prefix}3")
        a.release("10.9.9.9" if a is small else "fd00::9")
        assert [a.allocate() for _ in range(2)] == [f"{prefix}{i}" for i in (5, 6)]


def test_pod_ips_continue_after_last_reserved():
    a = PodIPAllocator("10.244.0.0/24")
    first = a.allocate()
    a.release(first)
    assert a.allocate() == "10.244.0.3"             # not .2 again straight away


def test_cluster_ips_dynamic_avoid_static_band_and_are_seeded():
    net = ipaddress.ip_network("10.96.0.0/12")
    a = ClusterIPAllocator(str(net), random.Random(0))
    assert a.static_band == 256
    ips = [ipaddress.ip_address(a.allocate()) for _ in range(200)]
    assert all(int(ip) - int(net.network_address) > 256 and ip in net and ip != net.broadcast_address for ip in ips)
    assert len(set(ips)) == 200
    b = ClusterIPAllocator(str(net), random.Random(0))
    assert [ipaddress.ip_address(b.allocate()) for _ in range(200)] == ips


def test_cluster_ip_static_band_sizes():
    # ipallocator calculateRangeOffset: min(max(16, cidrSize/16), 256), 0 when cidrSize <= 16,
    # where cidrSize counts every address of the CIDR (netutils.RangeSize).
    assert ClusterIPAllocator("10.96.0.0/24", random.Random()).static_band == 16
    assert ClusterIPAllocator("10.96.0.0/20", random.Random()).static_band == 256
    assert ClusterIPAllocator("10.96.0.0/22", random.Random()).static_band == 64
    assert ClusterIPAllocator("10.96.0.0/16", random.Random()).static_band == 256    # capped
    assert ClusterIPAllocator("10.96.0.0/28", random.Random()).static_band == 0


def test_node_port_static_band():
    # portallocator calculateRangeOffset (KEP-3668): min(max(16, size/32), 128), 0 when size <= 16.
    assert PortAllocator(30000, 32767, random.Random()).static_band == 86       # 2768 / 32
    assert PortAllocator(30000, 30015, random.Random()).static_band == 0
    assert PortAllocator(30000, 30099, random.Random()).static_band == 16
    assert PortAllocator(20000, 39999, random.Random()).static_band == 128
    a = PortAllocator(30000, 32767, random.Random(4))
    assert all(a.allocate() >= 30086 for _ in range(500))


def test_cluster_ip_reserve_rules():
    a = ClusterIPAllocator("10.96.0.0/24", random.Random(1))
    a.reserve("10.96.0.10")
    with pytest.raises(AllocationError, match=r"^10.96.0.10 is already allocated$"):
        a.reserve("10.96.0.10")
    for bad in ("10.96.0.0", "10.96.0.255", "10.97.0.1"):
        with pytest.raises(AllocationError, match=r"is not in the valid range of service CIDR 10.96.0.0/24$"):
            a.reserve(bad)
    with pytest.raises(AllocationError, match=r"^'x' is not a valid IP address$"):
        a.reserve("x")
    a.release("10.96.0.10")
    a.reserve("10.96.0.10")


def test_small_service_cidr_fills_up_then_errors():
    a = ClusterIPAllocator("10.96.0.0/29", random.Random(2))        # 6 usable addresses
    got = {a.allocate() for _ in range(6)}
    assert got == {f"10.96.0.{i}" for i in range(1, 7)}
    with pytest.raises(AllocationError, match=r"^service CIDR 10.96.0.0/29 is full$"):
        a.allocate()


def test_node_ports():
    a = PortAllocator(30000, 30004, random.Random(5))
    a.reserve(30002)
    with pytest.raises(AllocationError, match=r"^provided port is already allocated$"):
        a.reserve(30002)
    with pytest.raises(AllocationError, match=r"^provided port is not in the valid range. The range of valid ports is 30000-30004$"):
        a.reserve(29999)
    got = {a.allocate() for _ in range(4)}
    assert got == {30000, 30001, 30003, 30004}
    with pytest.raises(AllocationError, match=r"^range is full$"):
        a.allocate()
    a.release(30003)
    assert a.allocate() == 30003


def test_load_balancer_pool_in_order():
    a = LoadBalancerIPAllocator("192.168.49.240/30")
    a.reserve("192.168.49.241")
    assert a.allocate() == "192.168.49.242"
    with pytest.raises(AllocationError, match=r"^load balancer pool 192.168.49.240/30 is exhausted$"):
        a.allocate()


@given(st.sampled_from([("10.244.0.0/16", 24), ("10.128.0.0/9", 24), ("10.0.0.0/8", 20), ("fd00::/56", 64)]),
       st.lists(st.tuples(st.sampled_from(["allocate", "release", "taken"]), st.integers(0, 149)), max_size=120))
def test_node_cidrs_are_the_lowest_free_subnet_in_order(net_mask, ops):
    """kube-controller-manager's range allocator hands out the lowest free /mask (its cidrset's next
    free bit); ours, scanning from a remembered low mark, equals the first free one of
    ipaddress.subnets() after any mix of allocations, releases and CIDRs marked taken (a node's own
    spec.podCIDR)."""
    net, mask = net_mask
    a = NodeCIDRAllocator(net, mask)
    subs = [str(x) for _, x in zip(range(150), ipaddress.ip_network(net).subnets(new_prefix=mask))]
    taken: set[str] = set()
    for op, i in ops:
        if op == "allocate":
            want = next(x for x in subs if x not in taken)
            assert a.allocate() == want
            taken.add(want)
        elif op == "release" and taken:
            x = sorted(taken)[i % len(taken)]
            a.release(x)
            taken.discard(x)
        elif op == "taken":
            a.used.add(subs[i])
            taken.add(subs[i])
