"""Long-lived state stays bounded: conntrack entries expire on the cluster clock and the load
balancer forgets idle flows, so many flows over a long (emulated) time hold only the live ones.

Expectations: the kernel's per-state timeouts (nf_conntrack_proto_tcp.c tcp_timeouts[]: SYN_SENT
120 s, SYN_RECV 60 s, ESTABLISHED 432000 s; nf_conntrack_proto_udp.c: 30 s, 120 s for a stream),
gc_worker freeing timed-out entries (nf_conntrack_core.c), nf_conntrack_max with early_drop of
entries that are not ASSURED (nf_conntrack_core.c early_drop_list, __nf_conntrack_alloc "table
full, dropping packet"); the load balancer's idle timeout is AWS NLB's documented TCP 350 s.
"""
from __future__ import annotations

import tracemalloc

from netsim.dataplane.conntrack import Conntrack
from netsim.skb.packet import Packet
from netsim.dataplane.loadbalancer import LB_IDLE_TIMEOUT
from netsim.dataplane.walker import Walker

from walker_cluster import scenario_cluster


def _open(ct: Conntrack, sport: int, now: float, *, answer: bool = False, udp: bool = False):
    if udp:
        p = Packet.udp("10.244.1.2", "10.96.0.10", sport, 53, b"q")
    else:
        p = Packet.tcp("10.244.1.2", "10.96.0.10", sport, 80, flags="S")
    e, is_reply, state = ct.classify(p, now)
    assert state == "NEW"
    ct.update(e, p, False, now)
    assert ct.confirm(e, now)
    if answer:
        r = (Packet.udp("10.96.0.10", "10.244.1.2", 53, sport, b"a") if udp
             else Packet.tcp("10.96.0.10", "10.244.1.2", 80, sport, flags="SA"))
        ct.update(e, r, True, now)
    return e


def test_entries_are_freed_when_their_state_timeout_passes():
    ct = Conntrack()
    syn = _open(ct, 40000, 0.0)                       # SYN_SENT: 120 s
    udp = _open(ct, 40001, 0.0, udp=True)             # UDP unreplied: 30 s
    assert len(ct) == 2
    _open(ct, 40002, 29.0)                            # any later use of the table collects
    assert len(ct) == 3
    _open(ct, 40003, 30.5)
    assert len(ct) == 3 and not udp.confirmed          # the UDP entry went at 30 s
    ct.update(syn, Packet.tcp("10.96.0.10", "10.244.1.2", 80, 40000, flags="SA"), True, 100.0)
    assert syn.tcp_state == "SYN_RECV"                 # refreshed: now 60 s from t=100
    assert ct.expire(159.0) == 2                      # 40002, 40003 (SYN_SENT, 120 s) are gone ...
    assert syn.confirmed                              # ... the refreshed entry is not
    assert ct.expire(160.0) == 1 and len(ct) == 0


def test_many_flows_over_hours_keep_only_the_live_entries():
    ct = Conntrack()
    traced: list[int] = []
    try:
        for i in range(7_000):
            now = float(i)                            # one new connection a second, ~2 hours
            if i == 1_000:
                tracemalloc.start()
            _open(ct, 1024 + i, now, answer=True)
            if i in (2_000, 6_999):
                traced.append(tracemalloc.get_traced_memory()[0])
            # SYN_RECV (60 s) is the longest any of these live: at most 61 entries at a time
            assert len(ct) <= 61
    finally:
        tracemalloc.stop()
    assert len(ct._table) <= 2 * 61 and len(ct._expiry) <= 2 * 61 + 1024
    # memory does not grow with the number of flows made (5,000 more flows: well under 64 bytes each)
    assert traced[1] - traced[0] < 256 * 1024


def test_full_table_early_drops_an_unassured_entry_then_refuses_new_flows():
    ct = Conntrack(max_entries=3)
    first = _open(ct, 50000, 0.0)                      # SYN_SENT: not ASSURED
    assured = []
    for sport in (50001, 50002):
        e = _open(ct, sport, 0.0, answer=True)
        ct.update(e, Packet.tcp("10.244.1.2", "10.96.0.10", sport, 80, flags="A"), False, 0.0)
        assert e.assured
        assured.append(e)
    e4 = _open(ct, 50003, 1.0)                         # table full: the unassured entry makes room
    assert not first.confirmed and e4.confirmed and ct.early_drop == 1 and len(ct) == 3
    e5 = _open(ct, 50004, 1.0)                         # e4 is the unassured one now
    assert not e4.confirmed and e5.confirmed and ct.early_drop == 2
    for e in (e5,):
        e.assured = True
    e6, _, state = ct.classify(Packet.tcp("10.244.1.2", "10.96.0.10", 50005, 80, flags="S"), 2.0)
    assert e6 is None and state == "TABLE_FULL" and ct.drop == 1
    # a closing TCP connection may be evicted although ASSURED (tcp_can_early_drop)
    assured[0].tcp_state = "TIME_WAIT"
    assert _open(ct, 50006, 3.0).confirmed and not assured[0].confirmed


def test_walker_conntrack_and_lb_flows_stay_bounded_as_the_clock_runs():
    c = scenario_cluster()
    w = Walker(c)
    pod = w.host_for("pod/client-1")
    ext = w.host_for("external")
    cip = c.service("default", "web").cluster_ip
    lb_ip = c.service("default", "web-lb").load_balancer_ips[0]
    sizes = []
    for i in range(120):
        assert w.connect(pod, cip, 80).outcome.disposition == "DELIVERED"
        assert w.connect(ext, lb_ip, 80).outcome.disposition == "DELIVERED"
        c.advance(10)                                 # 1,200 s in all
        sizes.append((sum(len(ct) for ct in w.conntrack.values()), len(w.lb_flows)))
    ct_sizes = [s[0] for s in sizes]
    lb_sizes = [s[1] for s in sizes]
    # each connection leaves SYN_RECV entries (60 s) on the (at most 2) nodes it crossed: about
    # 6 intervals' worth; the LB keeps a flow 350 s after its last packet: 35 intervals
    assert max(ct_sizes[40:]) <= 2 * 2 * 7
    assert max(lb_sizes) <= LB_IDLE_TIMEOUT[6] / 10 + 1
    assert min(lb_sizes[40:]) >= 30                   # steady state, not growth and not forgetting early


def test_lb_flow_is_remembered_while_active_and_forgotten_when_idle():
    c = scenario_cluster()
    w = Walker(c)
    ext = w.host_for("external")
    lb_ip = c.service("default", "web-lb").load_balancer_ips[0]
    w.connect(ext, lb_ip, 80, sport=41000)
    (key, (node, expiry)), = w.lb_flows.items()
    assert expiry == c.clock.now + 350
    c.advance(300)
    w.connect(ext, lb_ip, 80, sport=41000)            # same flow again before the idle timeout
    assert w.lb_flows[key] == (node, c.clock.now + 350)
    c.advance(351)
    w.connect(ext, lb_ip, 80, sport=41001)            # any later LB use collects idle flows
    assert key not in w.lb_flows


def test_a_node_with_a_full_conntrack_table_drops_the_new_connection():
    c = scenario_cluster()
    w = Walker(c)
    pod = w.host_for("pod/client-1")
    w.conntrack_for("node-1").max_entries = 0          # full, and nothing early_drop may evict
    t = w.connect(pod, c.service("default", "web").cluster_ip, 80)
    assert t.outcome.disposition == "DROPPED" and "conntrack table full" in t.outcome.detail
    assert any("nf_conntrack: table full, dropping packet" in s.detail for s in t.request.steps("DROPPED"))
    assert w.conntrack_for("node-1").drop == 1
