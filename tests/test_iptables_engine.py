"""Evaluating packets through parsed rulesets: matches, targets, traversal, index equivalence.

Semantics pinned here come from the kernel (ip_tables.c ipt_do_table, xt_statistic.c,
xt_recent.c, xt_MARK.c) iptables-extensions(8), and from runs
in a scratch netns noted per test.
"""
from __future__ import annotations

import pathlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.dataplane.conntrack import ConntrackEntry
from netsim.skb.packet import Packet, ip2int
from netsim.rules.ipset import IpsetStore
from netsim.rules.iptables import Engine, EvalContext, RecentState, parse, run_hook

DATA = pathlib.Path(__file__).parent / "data"
FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
NAT = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"


def eng(body: str, head: str = FILTER) -> Engine:
    return Engine(parse(head + body + "\nCOMMIT\n", source="t"))


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=80, flags="S", **meta) -> Packet:
    p = Packet.tcp(src, dst, sport, dport, flags)
    for k, v in meta.items():
        setattr(p, k, v)
    return p


def verdict(e: Engine, pkt, chain="INPUT", table="filter", ctx=None):
    return e.run(table, chain, pkt, ctx or EvalContext())


def hits(e: Engine, pkt, chain="INPUT", table="filter", ctx=None) -> list[str]:
    """Targets of the rules that matched, policy last."""
    return [s.target for s in verdict(e, pkt, chain, table, ctx).steps]


# --- header matches -------------------------------------------------------------------------
@pytest.mark.parametrize("rule,pkt,matched", [
    ("-s 10.0.0.0/8", tcp(src="10.9.9.9"), True),
    ("-s 10.0.0.0/8", tcp(src="11.0.0.1"), False),
    ("! -s 10.0.0.0/8", tcp(src="11.0.0.1"), True),
    ("! -s 10.0.0.0/8", tcp(src="10.0.0.1"), False),
    ("-d 10.0.0.2/32", tcp(dst="10.0.0.2"), True),
    ("! -d 10.0.0.2", tcp(dst="10.0.0.2"), False),
    ("-p tcp", tcp(), True),
    ("-p udp", tcp(), False),
    ("! -p udp", tcp(), True),
    ("-p tcp --dport 80", tcp(dport=80), True),
    ("-p tcp --dport 80:90", tcp(dport=90), True),
    ("-p tcp --dport 80:90", tcp(dport=91), False),
    ("-p tcp ! --dport 80:90", tcp(dport=91), True),
    ("-p tcp --sport 1000:", tcp(sport=1234), True),
    ("-p tcp --sport :1000", tcp(sport=1234), False),
    ("-i eth+", tcp(iif="eth0"), True),
    ("-i eth+", tcp(iif="cni0"), False),
    ("-i eth0", tcp(iif=None), False),           # OUTPUT has no input device
    ("! -i cni0", tcp(iif=None), True),          # so `! -i X` is true for host traffic (pkg/proxy/util/localdetector.go; no input device at OUTPUT)
    ("-o flannel.1", tcp(oif="flannel.1"), True),
    ("! -o veth+", tcp(oif="veth12"), False),
])
def test_header_fields(rule, pkt, matched):
    # FORWARD: the one filter chain where iptables takes both -i and -o ("Can't use -o with INPUT")
    e = eng(f"-A FORWARD {rule} -j DROP")
    assert verdict(e, pkt, "FORWARD").verdict == ("DROP" if matched else "ACCEPT")


@pytest.mark.parametrize("rule,meta,matched", [
    ("-m mark --mark 0x4000/0x4000", {"mark": 0x4001}, True),
    ("-m mark --mark 0x4000/0x4000", {"mark": 0x1}, False),
    ("-m mark ! --mark 0x4000/0x4000", {"mark": 0x1}, True),
    ("-m mark --mark 0x10", {"mark": 0x10}, True),
    ("-m mark --mark 0x10", {"mark": 0x11}, False),       # no mask: all 32 bits compared
    ("-m conntrack --ctstate NEW", {"ctstate": "NEW"}, True),
    ("-m conntrack --ctstate RELATED,ESTABLISHED", {"ctstate": "ESTABLISHED"}, True),
    ("-m conntrack --ctstate RELATED,ESTABLISHED", {"ctstate": "NEW"}, False),
    ("-m conntrack ! --ctstate RELATED,ESTABLISHED", {"ctstate": "NEW"}, True),
    ("-m conntrack --ctstate INVALID", {"ctstate": "INVALID"}, True),
    ("-m state --state NEW", {"ctstate": None}, True),     # unclassified packet = NEW
    ("-m comment --comment hello", {}, True),
    ("-m nfacct --nfacct-name ct_state_invalid_dropped_pkts", {}, True),
    ("-p tcp -m multiport --dports 53,80:90", {}, True),
    ("-p tcp -m multiport --dports 53,81:90", {}, False),
    ("-p tcp -m multiport ! --dports 53,81:90", {}, True),
    ("-p tcp -m multiport --sports 1234", {}, True),
    ("-p tcp -m multiport --ports 9,80", {}, True),
    ("-p tcp --syn", {}, True),
    ("-p tcp ! --syn", {}, False),
    ("-p tcp --tcp-flags SYN,ACK ACK", {}, False),
    ("-m physdev --physdev-in veth+", {"physdev_in": "veth1"}, True),
    ("-m physdev --physdev-is-bridged", {}, False),
    ("-m iprange --src-range 10.0.0.0-10.0.0.5", {}, True),
])
def test_match_modules(rule, meta, matched):
    e = eng(f"-A INPUT {rule} -j DROP")
    assert verdict(e, tcp(**meta)).verdict == ("DROP" if matched else "ACCEPT")


def test_tcp_flags_on_ack_packet():
    e = eng("-A INPUT -p tcp --tcp-flags SYN,ACK ACK -j DROP")
    assert verdict(e, tcp(flags="A")).verdict == "DROP"
    assert verdict(e, tcp(flags="SA")).verdict == "ACCEPT"


def test_icmp_type():
    e = eng("-A INPUT -p icmp --icmp-type echo-request -j DROP")
    assert verdict(e, Packet.icmp("1.1.1.1", "2.2.2.2")).verdict == "DROP"
    assert verdict(e, Packet.icmp("1.1.1.1", "2.2.2.2", type=0)).verdict == "ACCEPT"


def test_conntrack_virtual_dnat_state_status_and_origdst():
    # kube-proxy's KUBE-FIREWALL: `! --ctstate RELATED,ESTABLISHED,DNAT` (proxier.go syncProxyRules)
    e = eng("-A INPUT -m conntrack --ctstate DNAT -j DROP\n"
            "-A INPUT -m conntrack --ctstatus ASSURED -j REJECT\n"
            "-A INPUT -m conntrack --ctorigdst 172.30.0.0/16 --ctorigdstport 80 -j RETURN")
    t = (6, ip2int("10.0.0.1"), 1234, ip2int("172.30.0.41"), 80)
    ct = ConntrackEntry(orig=t, reply=(6, ip2int("10.180.0.1"), 80, ip2int("10.0.0.1"), 1234),
                        created=0, expires=100, dnat=True)
    p = tcp(dst="10.180.0.1", ctstate="NEW", ct=ct)
    assert verdict(e, p).verdict == "DROP"
    ct.dnat, ct.assured = False, True
    assert verdict(e, p).verdict == "REJECT"
    ct.assured = False
    v = verdict(e, p)
    assert [s.target for s in v.steps] == ["RETURN", "ACCEPT"]   # RETURN in a built-in chain: policy


def test_addrtype_local_and_limit_iface():
    node = ip2int("192.168.0.2")
    e = eng("-A INPUT -m addrtype --dst-type LOCAL -j DROP")
    ctx = EvalContext(local_addrs={node})
    assert verdict(e, tcp(dst="192.168.0.2"), ctx=ctx).verdict == "DROP"
    assert verdict(e, tcp(dst="127.0.0.5"), ctx=ctx).verdict == "DROP"     # all of 127/8 is local
    assert verdict(e, tcp(dst="192.168.0.3"), ctx=ctx).verdict == "ACCEPT"
    e2 = eng("-A INPUT -m addrtype --src-type LOCAL -j DROP\n-A INPUT -m addrtype ! --dst-type UNICAST -j REJECT")
    assert verdict(e2, tcp(src="192.168.0.2"), ctx=ctx).verdict == "DROP"
    assert verdict(e2, tcp(dst="224.0.0.1"), ctx=ctx).verdict == "REJECT"
    e3 = eng("-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j DROP")
    ctx3 = EvalContext(local_addrs={node}, iface_addrs={"eth0": {node}})
    assert verdict(e3, tcp(dst="192.168.0.2", iif="eth0"), ctx=ctx3).verdict == "DROP"
    assert verdict(e3, tcp(dst="192.168.0.2", iif="cni0"), ctx=ctx3).verdict == "ACCEPT"


def test_set_match_with_ipset_store():
    store = IpsetStore()
    store.create("KUBE-CLUSTER-IP", "hash:ip,port")
    store.add("KUBE-CLUSTER-IP", "10.96.0.10,tcp:53")
    e = eng("-A INPUT -m set --match-set KUBE-CLUSTER-IP dst,dst -j DROP\n"
            "-A INPUT -m set ! --match-set KUBE-CLUSTER-IP dst,dst -j REJECT")
    ctx = EvalContext(ipsets=store)
    assert verdict(e, tcp(dst="10.96.0.10", dport=53), ctx=ctx).verdict == "DROP"
    assert verdict(e, tcp(dst="10.96.0.10", dport=54), ctx=ctx).verdict == "REJECT"
    with pytest.raises(Exception, match="ipset 'KUBE-CLUSTER-IP' does not exist"):
        verdict(e, tcp(), ctx=EvalContext())


# --- targets and traversal --------------------------------------------------------------------
def test_jump_return_and_goto():
    e = eng(":A - [0:0]\n:B - [0:0]\n"
            "-A INPUT -j A\n-A INPUT -j LOG\n"
            "-A A -p udp -j DROP\n-A A -j RETURN\n-A A -j DROP\n"
            "-A OUTPUT -g B\n-A OUTPUT -j DROP\n"
            "-A B -p udp -j DROP\n")
    v = verdict(e, tcp())
    # RETURN pops back to INPUT rule 2 (LOG continues), then the policy applies
    assert [(s.chain, s.target) for s in v.steps] == [("INPUT", "A"), ("A", "RETURN"), ("INPUT", "LOG"),
                                                      ("INPUT", "ACCEPT")]
    assert v.steps[-1].policy and v.rules_evaluated == 4
    # -g B does not push a return point: falling off B ends OUTPUT with the policy, skipping its `-j DROP`
    v = verdict(e, tcp(), chain="OUTPUT")
    assert v.verdict == "ACCEPT" and [s.target for s in v.steps] == ["B", "ACCEPT"]


def test_policy_drop_and_reject_with():
    e = Engine(parse("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset\n"
                     "-A INPUT -p tcp --dport 23 -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n"))
    assert verdict(e, tcp(dport=80)).verdict == "DROP"
    v = verdict(e, tcp(dport=22))
    assert (v.verdict, v.reject_with) == ("REJECT", "tcp-reset")
    assert verdict(e, tcp(dport=23)).reject_with == "icmp-host-prohibited"


def test_nat_targets_return_nat_action_and_end_table():
    e = eng("-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.180.0.1:8080\n"
            "-A PREROUTING -j DROP\n"
            "-A POSTROUTING -p tcp --dport 81 -j SNAT --to-source 1.1.1.1-1.1.1.5:100-200 --persistent\n"
            "-A POSTROUTING -j MASQUERADE --random-fully", NAT)
    v = verdict(e, tcp(dport=80), "PREROUTING", "nat")
    assert v.verdict == "ACCEPT"
    assert (v.nat.kind, v.nat.ip, v.nat.port) == ("DNAT", ip2int("10.180.0.1"), 8080)
    v = verdict(e, tcp(dport=81), "POSTROUTING", "nat")
    assert (v.nat.kind, v.nat.ip, v.nat.ip_max, v.nat.port, v.nat.port_max, v.nat.persistent) == \
        ("SNAT", ip2int("1.1.1.1"), ip2int("1.1.1.5"), 100, 200, True)
    v = verdict(e, tcp(dport=82), "POSTROUTING", "nat")
    assert (v.nat.kind, v.nat.ip, v.nat.random_fully) == ("MASQUERADE", None, True)


@pytest.mark.parametrize("target,before,after", [
    ("MARK --set-xmark 0x4000/0x4000", 0x1, 0x4001),
    ("MARK --or-mark 0x4000", 0x1, 0x4001),
    ("MARK --xor-mark 0x4000", 0x4001, 0x1),            # KUBE-POSTROUTING clears the bit
    ("MARK --and-mark 0x1", 0x4001, 0x1),
    ("MARK --set-mark 0x7", 0xff00, 0x7),
    ("MARK --set-mark 0x7/0xf", 0xff00, 0xff07),
])
def test_mark_target_modifies_packet_and_continues(target, before, after):
    e = eng(f"-A INPUT -j {target}\n-A INPUT -j DROP")
    p = tcp(mark=before)
    v = verdict(e, p)
    assert p.mark == after and v.verdict == "DROP"


def test_connmark_save_and_restore():
    ct = ConntrackEntry(orig=(6, 1, 2, 3, 4), reply=(6, 3, 4, 1, 2), created=0, expires=10)
    e = eng("-A INPUT -j CONNMARK --set-mark 0x5\n-A INPUT -m connmark --mark 0x5 -j CONNMARK --restore-mark\n")
    p = tcp(ct=ct)
    verdict(e, p)
    assert ct.mark == 5 and p.mark == 5


def test_target_less_rule_and_log_continue():
    e = eng("-A INPUT -m comment --comment only-counts\n-A INPUT -j LOG --log-prefix x\n-A INPUT -j DROP")
    v = verdict(e, tcp())
    assert [s.target for s in v.steps] == [None, "LOG", "DROP"]
    assert [s.number for s in v.steps] == [1, 2, 3]


def test_lenient_unknown_rule_is_reported_and_skipped():
    rs = parse(FILTER + "-A INPUT -m bogus --x 1 -j DROP\n-A INPUT -j REJECT\nCOMMIT\n", lenient=True)
    v = Engine(rs).run("filter", "INPUT", tcp(), EvalContext())
    assert v.verdict == "REJECT"
    assert v.steps[0].note.startswith("unsupported, treated as non-matching")
    assert v.rules_evaluated == 2


def test_run_hook_orders_tables_and_stops_at_drop():
    text = ("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j CT --notrack\nCOMMIT\n"
            + NAT + "-A OUTPUT -p tcp -j DNAT --to-destination 10.0.0.9:80\nCOMMIT\n"
            + FILTER + "-A OUTPUT -m conntrack --ctstate UNTRACKED -j DROP\nCOMMIT\n")
    e = Engine(parse(text))
    p = tcp()
    vs = run_hook(e, "OUTPUT", p, EvalContext())
    assert [(v.table, v.verdict) for v in vs] == [("raw", "ACCEPT"), ("nat", "ACCEPT"), ("filter", "DROP")]
    assert vs[1].nat.ip == ip2int("10.0.0.9")


# --- statistic ----------------------------------------------------------------------------------
def _svc_chain(n: int) -> str:
    """A KUBE-SVC chain the way kube-proxy writes it: 1/n, 1/(n-1), ..., last without statistic (proxier.go writeServiceToEndpointRules)."""
    lines = [f":SEP{i} - [0:0]" for i in range(n)] + [":SVC - [0:0]", "-A PREROUTING -j SVC"]
    for i in range(n):
        stat = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} " if i < n - 1 else ""
        lines.append(f"-A SVC {stat}-j SEP{i}")
    for i in range(n):
        lines.append(f"-A SEP{i} -p tcp -j DNAT --to-destination 10.180.0.{i + 1}:80")
    return "\n".join(lines)


def test_statistic_spreads_uniformly_chi_square():
    n, draws = 5, 10_000
    e = eng(_svc_chain(n), NAT)
    ctx = EvalContext(rng=random.Random(42))
    counts = [0] * n
    for _ in range(draws):
        v = e.run("nat", "PREROUTING", tcp(), ctx)
        counts[(v.nat.ip & 0xFF) - 1] += 1
    expected = draws / n
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 18.47, counts          # chi-square critical value, 4 degrees of freedom, p = 0.001


def test_statistic_seeded_is_reproducible():
    e = eng(_svc_chain(3), NAT)

    def picks(seed):
        ctx = EvalContext(rng=random.Random(seed))
        return [e.run("nat", "PREROUTING", tcp(), ctx).nat.ip for _ in range(20)]
    assert picks(7) == picks(7)
    assert picks(7) != picks(8)


def test_statistic_nth_matches_kernel_counter():
    # Observed in a netns: `--every 3 --packet 1` matched packets 2 and 5 (1-based) of 6;
    # `! --every 3 --packet 2` matched packets 1, 2, 4, 5.
    e = eng("-A INPUT -m statistic --mode nth --every 3 --packet 1 -j DROP")
    ctx = EvalContext()
    assert [verdict(e, tcp(), ctx=ctx).verdict for _ in range(6)] == \
        ["ACCEPT", "DROP", "ACCEPT", "ACCEPT", "DROP", "ACCEPT"]
    e2 = eng("-A INPUT -m statistic --mode nth ! --every 3 --packet 2 -j DROP")
    ctx2 = EvalContext()
    assert [verdict(e2, tcp(), ctx=ctx2).verdict == "DROP" for _ in range(6)] == \
        [True, True, False, True, True, False]


# --- recent (ClientIP affinity) -----------------------------------------------------------------
AFFINITY = (":KUBE-SVC-A - [0:0]\n:KUBE-SEP-1 - [0:0]\n:KUBE-SEP-2 - [0:0]\n"
            "-A PREROUTING -j KUBE-SVC-A\n"
            # kube-proxy order (TestOverallIPTablesRules svc5): all --rcheck rules first, then the statistic rules
            "-A KUBE-SVC-A -m recent --name KUBE-SEP-1 --rcheck --seconds 10800 --reap -j KUBE-SEP-1\n"
            "-A KUBE-SVC-A -m recent --name KUBE-SEP-2 --rcheck --seconds 10800 --reap -j KUBE-SEP-2\n"
            "-A KUBE-SVC-A -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-1\n"
            "-A KUBE-SVC-A -j KUBE-SEP-2\n"
            "-A KUBE-SEP-1 -m recent --name KUBE-SEP-1 --set -p tcp -j DNAT --to-destination 10.180.0.1:80\n"
            "-A KUBE-SEP-2 -m recent --name KUBE-SEP-2 --set -p tcp -j DNAT --to-destination 10.180.0.2:80\n")


def test_recent_affinity_pins_client_until_timeout():
    e = eng(AFFINITY, NAT)
    ctx = EvalContext(rng=random.Random(3))
    first = e.run("nat", "PREROUTING", tcp(src="10.0.0.7"), ctx).nat.ip
    for t in range(1, 30):
        ctx.now = t * 100.0
        assert e.run("nat", "PREROUTING", tcp(src="10.0.0.7", sport=2000 + t), ctx).nat.ip == first
    # the list is keyed on the /32 source: one entry, one stamp per new connection (cap 20 stamps)
    name = "KUBE-SEP-1" if first == ip2int("10.180.0.1") else "KUBE-SEP-2"
    entries = ctx.recent.entries(name)
    assert [x.addr for x in entries] == [ip2int("10.0.0.7")] and len(entries[0].stamps) == 20
    # 10800 s after the last connection the affinity has expired: the rcheck rules no longer match
    ctx.now = 2900.0 + 10801
    v = e.run("nat", "PREROUTING", tcp(src="10.0.0.7"), ctx)
    assert v.steps[1].comment is None and "--rcheck" not in v.steps[1].text


def test_recent_list_caps_at_100_and_reap():
    r = RecentState()
    for a in range(150):
        r.check("L", a, "--set", now=float(a))
    assert len(r.entries("L")) == 100 and r.entries("L")[0].addr == 50   # LRU evicted
    # --reap removes the oldest entry when its newest stamp is outside the window
    assert r.check("L", 149, "--rcheck", now=200.0, seconds=100, reap=True)
    assert r.entries("L")[0].addr == 51
    assert not r.check("L", 60, "--rcheck", now=1000.0, seconds=100)
    assert r.check("L", 60, "--remove", now=1000.0) and 60 not in [x.addr for x in r.entries("L")]


def test_recent_rdest_update_and_hitcount():
    # --rdest keys the list on the destination; --update refreshes the stamp only when it matched;
    # --hitcount N needs N stamps inside the window (xt_recent.c recent_mt)
    e = eng("-A INPUT -p tcp --dport 1 -m recent --name D --rdest --set -j ACCEPT\n"
            "-A INPUT -m recent --name D --rdest --update --seconds 10 --hitcount 2 -j DROP")
    ctx = EvalContext()
    assert verdict(e, tcp(dst="9.9.9.9", dport=1), ctx=ctx).verdict == "ACCEPT"
    assert [x.addr for x in ctx.recent.entries("D")] == [ip2int("9.9.9.9")]
    ctx.now = 1.0
    assert verdict(e, tcp(dst="9.9.9.9"), ctx=ctx).verdict == "ACCEPT"     # one stamp: below hitcount
    verdict(e, tcp(dst="9.9.9.9", dport=1), ctx=ctx)                      # second --set stamp
    ctx.now = 2.0
    assert verdict(e, tcp(dst="9.9.9.9"), ctx=ctx).verdict == "DROP"
    assert len(ctx.recent.entries("D")[0].stamps) == 3                     # --update added a stamp
    assert verdict(e, tcp(src="9.9.9.9", dst="8.8.8.8"), ctx=ctx).verdict == "ACCEPT"   # keyed on dst only


def test_nflog_continues_and_dnat_flags():
    e = eng("-A INPUT -j NFLOG --nflog-group 2\n-A INPUT -j DROP")
    assert [s.target for s in verdict(e, tcp()).steps] == ["NFLOG", "DROP"]
    e2 = eng("-A OUTPUT -p tcp -j DNAT --to-destination 10.0.0.1-10.0.0.3:80-90 --random --persistent", NAT)
    nat = verdict(e2, tcp(), "OUTPUT", "nat").nat
    assert (nat.ip, nat.ip_max, nat.port, nat.port_max, nat.random, nat.persistent) == \
        (ip2int("10.0.0.1"), ip2int("10.0.0.3"), 80, 90, True, True)


# --- the kube-proxy dump ----------------------------------------------------------------------
def kube_proxy_engine() -> Engine:
    return Engine(parse((DATA / "kube_proxy_save.txt").read_text(), source="kube_proxy_save.txt"))


def test_kube_proxy_cluster_ip_flow():
    e = kube_proxy_engine()
    v = e.run("nat", "PREROUTING", tcp(src="10.0.0.5", dst="172.30.0.41", iif="eth0"), EvalContext())
    assert (v.nat.kind, v.nat.ip, v.nat.port) == ("DNAT", ip2int("10.180.0.1"), 80)
    assert [s.chain for s in v.steps] == ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-XPGD46QRK7WJZT7O",
                                          "KUBE-SEP-SXIVWICOYRO3J4NJ"]
    assert v.steps[1].comment == "ns1/svc1:p80 cluster IP"
    assert v.steps[-1].text.endswith("-j DNAT --to-destination 10.180.0.1:80")
    # PREROUTING 1 + KUBE-SERVICES 1 + SVC masq(no) + SVC->SEP + SEP hairpin(no) + SEP DNAT
    assert v.rules_evaluated == 6


def test_kube_proxy_no_endpoints_rejects_in_filter_and_lb_firewall_drops():
    e = kube_proxy_engine()
    p = tcp(src="10.0.0.5", dst="172.30.0.46", ctstate="NEW")
    assert e.run("nat", "PREROUTING", p, EvalContext()).nat is None        # TestNoEndpointsReject: zero nat rules
    v = e.run("filter", "FORWARD", p, EvalContext())
    assert (v.verdict, v.reject_with) == ("REJECT", "icmp-port-unreachable")
    assert v.steps[-1].comment == "ns6/svc6:p80 has no endpoints"
    q = tcp(src="8.8.8.8", dst="5.6.7.8", ctstate="NEW")
    nat = e.run("nat", "PREROUTING", q, EvalContext())
    assert nat.nat is None and nat.steps[-2].target is None               # fell off the target-less FW rule
    assert e.run("filter", "FORWARD", q, EvalContext()).verdict == "DROP"


def test_kube_proxy_nodeport_marks_for_masquerade():
    e = kube_proxy_engine()
    ctx = EvalContext(local_addrs={ip2int("192.168.0.2")})
    p = tcp(src="8.8.8.8", dst="192.168.0.2", dport=3003)
    v = e.run("nat", "PREROUTING", p, ctx)
    assert v.nat.ip == ip2int("10.180.0.3") and p.mark & 0x4000
    post = e.run("nat", "POSTROUTING", p, ctx)
    assert post.nat.kind == "MASQUERADE" and post.nat.random_fully and p.mark & 0x4000 == 0


# --- the index gives the same answers as a linear walk ------------------------------------------
def test_index_counts_like_linear_walk_at_10000_services():
    lines = [":KUBE-SERVICES - [0:0]", "-A PREROUTING -j KUBE-SERVICES"]
    for i in range(10_000):
        ip = f"10.96.{i // 256}.{i % 256}"
        lines.append(f'-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment "ns/s{i} cluster IP" '
                     f"-m tcp --dport 80 -j DNAT --to-destination 10.244.0.1:80")
    lines.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j DROP")
    e = eng("\n".join(lines), NAT)
    assert e.tables["nat"]["KUBE-SERVICES"].indexed
    v = e.run("nat", "PREROUTING", tcp(dst="10.96.39.15"), EvalContext())   # service 9999
    assert v.rules_evaluated == 1 + 10_000 and v.steps[-1].comment == "ns/s9999 cluster IP"
    v = e.run("nat", "PREROUTING", tcp(dst="10.96.0.0", dport=81), EvalContext())
    assert v.rules_evaluated == 1 + 10_001 and v.verdict == "ACCEPT"


_ips = st.sampled_from(["10.96.0.1", "10.96.0.2", "10.96.0.3"])
_rule = st.tuples(
    st.sampled_from(["", "-d 10.96.0.1", "-d 10.96.0.2", "! -d 10.96.0.3", "-d 10.96.0.0/30", "! -s 1.1.1.0/24",
                     "-s 1.1.1.1", "-i eth+", "! -i eth0", "-o cni0", "! -o +"]),
    st.sampled_from(["", "-p tcp", "-p udp", "! -p udp"]),
    st.sampled_from(["", "-m statistic --mode random --probability 0.5", "-m comment --comment c",
                     "-m mark --mark 0x1/0x1", "-m mark ! --mark 0x1", "-m conntrack --ctstate NEW",
                     "-m conntrack ! --ctstate NEW,ESTABLISHED", "-m addrtype --dst-type LOCAL",
                     "-m addrtype ! --src-type LOCAL", "-m statistic --mode nth --every 2 --packet 1",
                     "-m recent --name R --rcheck --seconds 5"]),
    st.sampled_from(["", "--dport 80", "--dport 81", "--dport 80:81", "! --sport 5", "--syn",
                     "-m multiport --dports 80,82"]),
    st.sampled_from(["-j ACCEPT", "-j DROP", "-j MARK --or-mark 0x1", "-j RETURN", "",
                     "-m recent --name R --set -j LOG"]),
)


def _rule_text(r) -> str:
    d, p, m, port, tgt = r
    proto = p.split()[-1] if p else ""
    if not p or p.startswith("!") or (port == "--syn" and proto != "tcp"):
        port = ""
    if port and not port.startswith("-m"):
        port = f"-m {proto} {port}"
    return " ".join(x for x in ("-A FORWARD", d, p, m, port, tgt) if x)      # FORWARD takes -i and -o


@settings(max_examples=80, deadline=None)
@given(rules=st.lists(_rule, min_size=1, max_size=40),
       pkts=st.lists(st.tuples(_ips, st.sampled_from([80, 81, 82]), st.booleans(),
                               st.sampled_from([None, "eth0", "eth1"]), st.sampled_from([0, 1]),
                               st.sampled_from(["NEW", "ESTABLISHED", None])), min_size=1, max_size=8))
def test_indexed_and_generated_engines_equal_linear_engine(rules, pkts):
    """The hash index and the generated chain scanners give exactly the linear walk's answers:
    verdict, every step, rules-evaluated counts, marks, and the same random draws."""
    text = FILTER + "\n".join(_rule_text(r) for r in rules) + "\nCOMMIT\n"
    reference = Engine(parse(text), index_min_rules=10 ** 9, codegen=False)
    eager = Engine(parse(text))
    eager.compile_all()
    others = [Engine(parse(text), index_min_rules=1), Engine(parse(text), index_min_rules=10 ** 9), eager]
    assert others[1].tables["filter"]["FORWARD"].scan is not None
    local = {ip2int("10.96.0.2")}
    ctxs = [EvalContext(local_addrs=local, rng=random.Random(5)) for _ in range(4)]
    for dst, dport, udp, iif, mark, state in pkts:
        base = Packet.udp("1.1.1.1", dst, 5, dport) if udp else tcp(src="1.1.1.1", dst=dst, dport=dport)
        base.iif, base.mark, base.ctstate = iif, mark, state
        results = []
        for e, c in zip([reference] + others, ctxs):
            p = base.copy()
            p.iif, p.mark, p.ctstate = iif, mark, state
            v = e.run("filter", "FORWARD", p, c)
            c.now += 1.0
            results.append((v.verdict, v.rules_evaluated, v.steps, p.mark))
        assert results[1] == results[0]
        assert results[2] == results[0]
        assert results[3] == results[0]
    draws = [c.rng.random() for c in ctxs]
    assert draws[1] == draws[0] and draws[2] == draws[0] and draws[3] == draws[0]   # the same number of draws


# --- lazy compilation, shared matches, memory ------------------------------------------------------
def test_chains_compile_on_first_entry_only():
    lines = [":KUBE-SERVICES - [0:0]", "-A PREROUTING -j KUBE-SERVICES"]
    for i in range(50):
        lines.append(f":KUBE-SVC-{i} - [0:0]")
        lines.append(f"-A KUBE-SERVICES -d 10.96.0.{i}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-{i}")
        lines.append(f"-A KUBE-SVC-{i} -p tcp -j DNAT --to-destination 10.244.0.{i}:8080")
    e = eng("\n".join(lines), NAT)
    chains = e.tables["nat"]
    assert not any(cc.compiled for cc in chains.values())
    assert e.has_rules("nat", "PREROUTING") and not e.has_rules("nat", "OUTPUT")
    assert not chains["PREROUTING"].compiled                      # has_rules does not compile
    v = e.run("nat", "PREROUTING", tcp(dst="10.96.0.7"), EvalContext())
    assert v.nat.ip == ip2int("10.244.0.7") and v.rules_evaluated == 1 + 8 + 1
    assert {n for n, cc in chains.items() if cc.compiled} == {"PREROUTING", "KUBE-SERVICES", "KUBE-SVC-7"}
    e.compile_all()
    assert all(cc.compiled for cc in chains.values())
    assert [s.chain for s in v.steps] == ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-7"]


def test_identical_nth_clauses_keep_separate_counters():
    # xt_statistic keeps one counter per rule, even when two rules write the same clause
    e = eng("-A INPUT -m statistic --mode nth --every 2 --packet 0 -j MARK --or-mark 0x1\n"
            "-A INPUT -m statistic --mode nth --every 2 --packet 0 -j MARK --or-mark 0x2")
    ctx = EvalContext()
    marks = []
    for _ in range(4):
        p = tcp()
        e.run("filter", "INPUT", p, ctx)
        marks.append(p.mark)
    assert marks == [3, 0, 3, 0]


def test_engine_and_ruleset_hold_no_reference_cycles():
    # Freed by reference counting alone: no gigabyte of rules waits for a full GC
    import gc
    text = (DATA / "kube_proxy_save.txt").read_text()
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        e = Engine(parse(text))
        e.compile_all()
        e.run("nat", "PREROUTING", tcp(src="10.0.0.5", dst="172.30.0.41"), EvalContext())
        del e
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_hits_report_rule_fields_from_compiled_rule():
    v = kube_proxy_engine().run("nat", "PREROUTING", tcp(src="10.0.0.5", dst="172.30.0.41"), EvalContext())
    last = v.steps[-1]
    assert (last.chain, last.target, last.number) == ("KUBE-SEP-SXIVWICOYRO3J4NJ", "DNAT", 2)
    assert last.comment == "ns1/svc1:p80" and last.line == last.rule.line
    pol = kube_proxy_engine().run("nat", "PREROUTING", tcp(src="10.0.0.5", dst="9.9.9.9"), EvalContext()).steps[-1]
    assert pol.policy and (pol.chain, pol.text, pol.target) == ("PREROUTING", ":PREROUTING ACCEPT", "ACCEPT")


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_replay_prints_rules_verdict_and_rewrite():
    from click.testing import CliRunner

    from netsim.cli.main import cli
    r = CliRunner().invoke(cli, ["iptables", "replay", "--dump", str(DATA / "kube_proxy_save.txt"),
                                 "--src", "10.0.0.5", "--dst", "172.30.0.41:80"])
    assert r.exit_code == 0, r.output
    assert '-A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP"' in r.output
    assert "rewrite: DNAT 172.30.0.41:80 -> 10.180.0.1:80" in r.output
    assert "verdict: ACCEPT" in r.output


def test_cli_replay_bad_dump_is_one_line_error(tmp_path):
    from click.testing import CliRunner

    from netsim.cli.main import cli
    bad = tmp_path / "bad.dump"
    bad.write_text(FILTER + "-A INPUT -m bogus -j DROP\nCOMMIT\n")
    r = CliRunner().invoke(cli, ["iptables", "replay", "--dump", str(bad), "--src", "1.1.1.1", "--dst", "2.2.2.2:80"])
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: {bad}:5: unknown match module -m bogus"


def test_chains_are_built_when_first_entered():
    """The Engine makes a user chain's compiled form when a packet first reaches it (a jump), not
    for every chain of the dump up front; has_chain / has_rules answer from the parsed table."""
    body = "".join(f":C{i} - [0:0]\n" for i in range(50)) + "-A INPUT -p tcp --dport 80 -j C7\n" + \
        "".join(f"-A C{i} -j ACCEPT\n" for i in range(50))
    e = eng(body)
    chains = e.tables["filter"]
    assert set(chains) == {"INPUT", "FORWARD", "OUTPUT"}
    assert e.has_chain("filter", "C49") and e.has_rules("filter", "C49") and not e.has_chain("filter", "C50")
    v = e.run("filter", "INPUT", tcp(dport=80), EvalContext())
    assert v.verdict == "ACCEPT" and set(chains) == {"INPUT", "FORWARD", "OUTPUT", "C7"}
    e.compile_all()
    assert len(chains) == 53
