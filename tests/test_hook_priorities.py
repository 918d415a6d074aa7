"""Netfilter hooks by priority, as the kernel registers them: per node and hook, the provider's
functions and the data plane's conntrack and NAT run in ascending priority (include/linux/netfilter.h
struct nf_hook_ops, "Hooks are ordered in ascending priority"; priorities from
include/uapi/linux/netfilter_ipv4.h and net/netfilter/ipvs/ip_vs_core.c ip_vs_ops4).

A function registered beside kube-proxy's iptables tables (as an nftables base chain shares a real
node with them) sees the packet exactly where its priority puts it: before conntrack it has no
entry (ctstate INVALID), between conntrack and nat it is NEW with its original destination, after
nf_nat's DNAT it carries the endpoint's address.
"""
from __future__ import annotations

from typing import Any

from netsim.skb.hook_result import ACCEPTED, HookResult, NatRequest
from netsim.dataplane.walker import Walker
from netsim.skb.netfilter import (FILTER, INPUT, IP_VS_OPS4, NAT, NF_IP_PRI_CONNTRACK, NF_IP_PRI_MANGLE,
                                  NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC, NF_IP_PRI_RAW, OUTPUT, PREROUTING,
                                  HookRegistration, NodeHooks)
from netsim.skb.packet import int2ip, ip2int

from walker_cluster import scenario_cluster


class WithExtraHooks:
    """A mode's per-node state plus registrations of the test's own on every node."""

    def __init__(self, inner: Any, extra: tuple[HookRegistration, ...]) -> None:
        self.inner = inner
        self.extra = extra
        self.ipvs = inner.ipvs

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> NodeHooks:
        got = self.inner.hooks(node, local_addrs, rng)
        return NodeHooks(got.registrations + self.extra, got.local_addresses)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def walker_with(mode: str, *extra: HookRegistration) -> Walker:
    w = Walker(scenario_cluster(proxy_mode=mode))
    w.proxy = WithExtraHooks(w.proxy, extra)
    return w


def recorder(seen: list, label: str):
    def fn(pkt: Any, now: float, steps: Any) -> HookResult:
        seen.append((label, pkt.ctstate, int2ip(pkt.dst)))
        return ACCEPTED
    return fn


def test_registrations_run_where_their_priority_puts_them_among_iptables_tables_and_conntrack() -> None:
    seen: list = []
    w = walker_with("iptables",
                    HookRegistration(PREROUTING, NF_IP_PRI_RAW - 10, "before-raw", recorder(seen, "raw-10")),
                    HookRegistration(PREROUTING, NF_IP_PRI_MANGLE + 1, "after-mangle", recorder(seen, "mangle+1")),
                    HookRegistration(PREROUTING, NF_IP_PRI_NAT_DST + 1, "after-dnat", recorder(seen, "dstnat+1")))
    c = w.cluster
    vip = c.service("default", "web").cluster_ip
    t = w.connect(w.host_for("pod/client-3"), vip, 80)
    assert t.outcome.disposition == "DELIVERED"
    first_node = [s for s in seen[:3]]
    assert [label for label, _st, _d in first_node] == ["raw-10", "mangle+1", "dstnat+1"]
    (_, before_ct, d0), (_, new, d1), (_, new2, d2) = first_node
    assert before_ct == "INVALID" and new == "NEW" == new2      # no entry before conntrack (-200)
    assert d0 == d1 == vip                                       # DNAT happens in nf_nat at -100
    endpoints = {c.pod("default", n).ip for n in ("web-1", "web-2")}
    assert d2 in endpoints and d2 == t.outcome.ip


def test_a_nat_function_of_higher_priority_is_asked_only_when_an_earlier_one_made_no_binding() -> None:
    c = scenario_cluster()
    web1 = c.pod("default", "web-1").ip
    asked: list[str] = []

    def dnat(label: str, to: str):
        def fn(pkt: Any, now: float, steps: Any) -> HookResult:
            asked.append(label)
            return HookResult("ACCEPT", NatRequest("DNAT", ip2int(to), 8080))
        return fn

    w = Walker(c, "none")                           # no kube-proxy rules: only the test's own
    w.proxy = WithExtraHooks(w.proxy, (
        HookRegistration(PREROUTING, NF_IP_PRI_NAT_DST + 10, "late", dnat("late", "10.244.9.9"), NAT),
        HookRegistration(PREROUTING, NF_IP_PRI_NAT_DST - 10, "early", dnat("early", web1), NAT)))
    t = w.connect(w.host_for("pod/client-3"), "10.96.200.1", 80)
    # nf_nat_inet_fn stops at the first binding (each node on the way asks for the connection's
    # first packet: node-3, then node-1 where it arrives already translated)
    assert asked == ["early", "early"]
    assert t.outcome.disposition == "DELIVERED" and t.outcome.ip == web1
    assert t.outcome.reply.matches_request          # conntrack undid the DNAT on the way back
    asked.clear()
    w.connect(w.host_for("pod/client-3"), "10.96.200.1", 80)
    assert asked == ["early", "early"]              # asked again only for a new connection


def test_a_filter_function_drops_at_its_hook_and_the_trace_names_it() -> None:
    def drop(pkt: Any, now: float, steps: Any) -> HookResult:
        return HookResult("DROP")
    w = walker_with("iptables", HookRegistration(INPUT, 0, "ip test-filter", drop, FILTER))
    t = w.connect(w.host_for("external"), "192.168.49.2", 22)
    assert t.outcome.disposition == "DROPPED"
    assert t.outcome.detail == "ip test-filter:INPUT"


def test_ipvs_registers_where_ip_vs_core_registers_it() -> None:
    w = Walker(scenario_cluster(proxy_mode="ipvs"))
    table = w.hooks("node-1")
    ipvs = {(r.hook, r.priority) for r in table.registrations if r.name == "ipvs"}
    assert ipvs == {(INPUT, NF_IP_PRI_NAT_SRC - 2), (INPUT, NF_IP_PRI_NAT_SRC - 1),
                    (OUTPUT, NF_IP_PRI_NAT_DST + 1), (OUTPUT, NF_IP_PRI_NAT_DST + 2), ("FORWARD", 100)}
    assert ipvs <= {(hook, prio) for _fn, hook, prio in IP_VS_OPS4}
    # the kernel's values, as netfilter_ipv4.h and ip_vs_core.c spell them
    assert (NF_IP_PRI_RAW, NF_IP_PRI_CONNTRACK, NF_IP_PRI_MANGLE, NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC) == \
        (-300, -200, -150, -100, 100)
    # kube-ipvs0's addresses route as LOCAL once the node's hooks are registered
    vip = ip2int(w.cluster.service("default", "web").cluster_ip)
    assert w.topology.hosts["node-1"].routes.is_local(vip)
