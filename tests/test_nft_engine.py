"""The nftables evaluator, expression by expression (every one kube-proxy's nftables proxier writes,
plus the usual ones of a node's own ruleset), and the kernel's verdict semantics (nft_do_chain)."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from netsim.chisquare import uniform_test
from netsim.rules.nftables.engine import NftContext, NftEngine
from netsim.rules.nftables.exprs import reciprocal_scale
from netsim.rules.nftables.lexer import NftError
from netsim.rules.nftables.parse import load
from netsim.skb.packet import Packet, ip2int

NODE_IPS = {ip2int("192.168.0.2"), ip2int("192.168.1.2")}


def table(rules: str, *, hook: str = "prerouting", ctype: str = "filter", prio: int = 0, extra: str = "",
          policy: str = "accept") -> NftEngine:
    """Table ip t with a base chain `base` on `hook` holding `rules` (one per line), after `extra`."""
    text = (f"add table ip t\n{extra}add chain ip t base {{ type {ctype} hook {hook} priority {prio} ; "
            f"policy {policy} ; }}\n")
    text += "".join(f"add rule ip t base {r}\n" for r in rules.strip().splitlines())
    return NftEngine(load(text, source="t"))


def run(eng: NftEngine, pkt: Packet, ctx: NftContext | None = None, chain: str = "base"):
    t = eng.ruleset.table("ip", "t")
    return eng.run_chain(t, t.chains[chain], pkt, ctx or NftContext(local_addrs=set(NODE_IPS)))


def verdicts(eng: NftEngine, pkts: list[Packet], **kw) -> list[str]:
    return [run(eng, p, **kw).verdict for p in pkts]


def tcp(src="10.0.0.2", dst="172.30.0.41", dport=80, sport=40000, iif="eth0") -> Packet:
    p = Packet.tcp(src, dst, sport, dport)
    p.iif = iif
    return p


def udp(src="10.0.0.2", dst="172.30.0.41", dport=53, sport=40000) -> Packet:
    return Packet.udp(src, dst, sport, dport)


# ------------------------------------------------------------------ payload, meta, fib
def test_ip_addresses_prefixes_ranges_and_negation() -> None:
    eng = table("ip saddr 10.0.0.0/8 ip daddr != 127.0.0.0/8 ip daddr 172.30.0.40-172.30.0.45 drop")
    assert verdicts(eng, [tcp(), tcp(src="11.0.0.1"), tcp(dst="172.30.0.46"), tcp(dst="127.0.0.1")]) == \
        ["drop", "accept", "accept", "accept"]


def test_transport_ports_and_protocols() -> None:
    eng = table("tcp dport 80 drop\nmeta l4proto udp th dport 53 drop\nip protocol icmp th dport 0x1234 drop")
    icmp = Packet.icmp("10.0.0.2", "10.0.0.3", id=7)
    # `th dport` reads bytes 2-3 of whatever transport header: the ICMP checksum here
    csum = icmp.buf[22] << 8 | icmp.buf[23]
    eng2 = table(f"th dport {csum} drop")
    assert verdicts(eng, [tcp(), tcp(dport=81), udp(), udp(dport=80), icmp]) == \
        ["drop", "accept", "drop", "accept", "accept"]
    assert run(eng2, icmp).verdict == "drop"
    # `tcp dport 53` carries nft's implicit `meta l4proto tcp`: a UDP packet to 53 does not match
    assert run(table("tcp dport 53 drop"), udp()).verdict == "accept"


def test_interface_names_and_wildcards() -> None:
    eng = table('iifname "veth*" drop\niif "eth1" drop\noifname != "lo" meta mark set 0x1')
    a, b, c = tcp(iif="veth1234"), tcp(iif="eth1"), tcp(iif="eth0")
    c.oif = "eth0"
    assert verdicts(eng, [a, b, c]) == ["drop", "drop", "accept"]
    assert c.mark == 1


def test_fib_address_type_local() -> None:
    eng = table("fib daddr type local tcp dport 3001 drop\nfib saddr type local meta mark set 0x7")
    assert run(eng, tcp(dst="192.168.0.2", dport=3001)).verdict == "drop"
    assert run(eng, tcp(dst="192.168.0.9", dport=3001)).verdict == "accept"
    assert run(eng, tcp(dst="127.0.0.1", dport=3001)).verdict == "drop"
    p = tcp(src="192.168.1.2")
    run(eng, p)
    assert p.mark == 7


# ------------------------------------------------------------------ sets and maps
SETS = """add set ip t cluster-ips { type ipv4_addr ; }
add set ip t ranges { type ipv4_addr ; flags interval ; }
add set ip t pairs { type ipv4_addr . inet_service ; flags interval ; }
add set ip t hairpin { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; }
add element ip t cluster-ips { 172.30.0.41, 172.30.0.42 }
add element ip t ranges { 203.0.113.0/25, 198.51.100.10-198.51.100.20 }
add element ip t pairs { 10.0.0.0/8 . 8080, 192.168.0.2 . 22 }
add element ip t hairpin { 10.180.0.5 . 10.180.0.5 . tcp . 80 }
"""


def test_named_sets_intervals_and_concatenations() -> None:
    eng = table("ip daddr @cluster-ips meta mark set 0x1\nip saddr != @ranges meta mark set mark or 0x2\n"
                "ip saddr . tcp dport @pairs meta mark set mark or 0x4\n"
                "ip saddr . ip daddr . meta l4proto . th dport @hairpin meta mark set mark or 0x8", extra=SETS)
    cases = [(tcp(), 0x3), (tcp(src="203.0.113.7"), 0x1), (tcp(src="198.51.100.20", dst="1.1.1.1"), 0),
             (tcp(src="198.51.100.21", dst="1.1.1.1"), 0x2), (tcp(src="10.9.9.9", dport=8080), 0x1 | 0x2 | 0x4),
             (tcp(src="192.168.0.2", dport=22, dst="9.9.9.9"), 0x2 | 0x4), (tcp(src="192.168.0.2", dport=23), 0x3),
             (tcp(src="10.180.0.5", dst="10.180.0.5"), 0x2 | 0x8), (udp(src="10.180.0.5", dst="10.180.0.5", dport=80), 0x2)]
    for p, mark in cases:
        run(eng, p)
        assert p.mark == mark, (p, hex(p.mark))


def test_anonymous_sets() -> None:
    eng = table("ip saddr != { 203.0.113.0/25, 192.168.0.0/24 } drop\ntcp dport { 22, 80, 8000-8100 } accept\n"
                "ct state { established, related } accept\ndrop")
    assert verdicts(eng, [tcp(src="203.0.113.130"), tcp(src="203.0.113.2"), tcp(src="192.168.0.7", dport=8050),
                          tcp(src="192.168.0.7", dport=8101)]) == ["drop", "accept", "accept", "drop"]


MAPS = """add map ip t service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip t service-nodeports { type inet_proto . inet_service : verdict ; }
add set ip t nodeport-ips { type ipv4_addr ; }
add chain ip t svc1
add chain ip t svc2
add rule ip t svc1 meta mark set 0x11
add rule ip t svc2 meta mark set 0x22
add element ip t nodeport-ips { 192.168.0.2 }
add element ip t service-ips { 172.30.0.41 . tcp . 80 : goto svc1 , 172.30.0.42 . udp . 53 : jump svc2 , 172.30.0.43 . tcp . 80 : drop }
add element ip t service-nodeports { tcp . 3001 : goto svc2 }
"""


def test_verdict_maps() -> None:
    eng = table("ip daddr . meta l4proto . th dport vmap @service-ips\n"
                "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\nmeta mark set mark or 0x100",
                extra=MAPS)
    a, b, c, d, e = tcp(), udp(dst="172.30.0.42"), tcp(dst="172.30.0.43"), tcp(dst="192.168.0.2", dport=3001), tcp(dport=81)
    res = [run(eng, p) for p in (a, b, c, d, e)]
    assert [r.verdict for r in res] == ["accept", "accept", "drop", "accept", "accept"]
    # goto: the base chain does not resume; jump: it does (and the last rule runs)
    assert (a.mark, b.mark, d.mark, e.mark) == (0x11, 0x122, 0x22, 0x100)
    # a miss breaks the rule (no verdict), one lookup per vmap rule whatever the map holds
    assert res[4].lookups == 2 and res[0].lookups == 1 and res[3].lookups == 3


def test_anonymous_vmap_and_data_map_dnat() -> None:
    eng = table("meta l4proto tcp dnat ip addr . port to tcp dport map { 80 : 10.180.0.4 . 8080, 443 : 10.180.0.5 . 8443 }\n"
                "dnat to ip saddr map { 10.0.0.0/8 : 10.180.0.9 }\n"
                "udp dport vmap { 53 : accept, 54 : drop }\ndrop",
                hook="prerouting", ctype="nat", prio=-100)
    r = run(eng, tcp(dport=443))
    assert (r.verdict, r.nat.kind, r.nat.ip, r.nat.port) == ("accept", "DNAT", ip2int("10.180.0.5"), 8443)
    r = run(eng, udp(dport=9))
    assert (r.nat.ip, r.nat.port) == (ip2int("10.180.0.9"), None)
    assert run(eng, udp(src="11.0.0.1", dport=54)).verdict == "drop"
    assert run(eng, udp(src="11.0.0.1", dport=53)).verdict == "accept"


class FixedRandom(random.Random):
    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = list(values)

    def getrandbits(self, k: int) -> int:
        return self.values.pop(0)


def test_numgen_random_scales_a_32_bit_draw() -> None:
    # nft_numgen.c: reciprocal_scale(get_random_u32(), modulus) + offset
    assert reciprocal_scale(0xFFFFFFFF, 3) == 2 and reciprocal_scale(0x55555555, 3) == 0
    assert reciprocal_scale(0x55555556, 3) == 1
    eng = table("numgen random mod 3 offset 5 vmap { 5 : drop, 6 : accept, 7 : drop }")
    ctx = NftContext(rng=FixedRandom([0x55555556, 0xFFFFFFFF, 0]))
    assert [run(eng, tcp(), ctx).verdict for _ in range(3)] == ["accept", "drop", "drop"]


def test_numgen_random_is_uniform() -> None:
    """kube-proxy's endpoint choice: one draw per new connection, uniform over N (chi-square, seeded)."""
    chains = "".join(f"add chain ip t ep{i}\nadd rule ip t ep{i} meta l4proto tcp dnat to 10.180.0.{i}:80\n"
                     for i in range(5))
    vm = " , ".join(f"{i} : goto ep{i}" for i in range(5))
    eng = table(f"numgen random mod 5 vmap {{ {vm} }}", ctype="nat", prio=-100, extra=chains)
    ctx = NftContext(rng=random.Random(12345))
    counts = Counter(run(eng, tcp(), ctx).nat.ip & 0xFF for _ in range(20000))
    assert sorted(counts) == [0, 1, 2, 3, 4]
    assert uniform_test([counts[i] for i in range(5)]).p_value > 0.001
    # the same seed draws the same sequence (reproducible runs)
    a = [run(eng, tcp(), NftContext(rng=random.Random(7))).nat.ip for _ in range(3)]
    b = [run(eng, tcp(), NftContext(rng=random.Random(7))).nat.ip for _ in range(3)]
    assert a == b


def test_numgen_inc_round_robin() -> None:
    eng = table("numgen inc mod 3 vmap { 0 : accept, 1 : drop, 2 : accept }")
    ctx = NftContext()
    assert [run(eng, tcp(), ctx).verdict for _ in range(6)] == ["accept", "drop", "accept"] * 2


# ------------------------------------------------------------------ conntrack
class Entry:
    def __init__(self, dnat=False, snat=False, mark=0) -> None:
        self.dnat, self.snat, self.mark = dnat, snat, mark
        self.seen_reply = self.assured = self.confirmed = self.expected = False
        self.orig = (6, ip2int("10.0.0.2"), 40000, ip2int("172.30.0.41"), 80)
        self.reply = (6, ip2int("10.180.0.1"), 80, ip2int("10.0.0.2"), 40000)


def test_ct_state_status_original_tuple_and_mark() -> None:
    eng = table("ct state established,related accept\nct state invalid drop\nct status dnat meta mark set 0x1\n"
                "ct original ip daddr 172.30.0.41 ct original proto-dst 80 meta mark set mark or 0x2\n"
                "ct state != new drop\nct mark set meta mark")
    new, est, inv = tcp(), tcp(), tcp()
    est.ctstate, inv.ctstate = "ESTABLISHED", "INVALID"
    assert verdicts(eng, [new, est, inv]) == ["accept", "accept", "drop"]
    p = tcp(dst="10.180.0.1")
    p.ct = Entry(dnat=True)
    p.ctstate = "NEW"
    assert run(eng, p).verdict == "accept"
    assert p.mark == 3 and p.ct.mark == 3
    # without a conntrack entry `ct status` / `ct original` break (no match), `ct state` is new
    q = tcp()
    run(eng, q)
    assert q.mark == 0


# ------------------------------------------------------------------ marks, NAT, reject
def test_masquerade_marking_as_kube_proxy_writes_it() -> None:
    extra = ("add chain ip t mark-for-masquerade\nadd chain ip t masquerading\n"
             "add rule ip t mark-for-masquerade mark set mark or 0x4000\n"
             "add rule ip t masquerading mark and 0x4000 == 0 return\n"
             "add rule ip t masquerading mark set mark xor 0x4000\n"
             "add rule ip t masquerading masquerade fully-random\n")
    eng = table("jump masquerading", hook="postrouting", ctype="nat", prio=100, extra=extra)
    plain, marked = tcp(), tcp()
    marked.mark = 0x4001
    r1, r2 = run(eng, plain), run(eng, marked)
    assert (r1.verdict, r1.nat) == ("accept", None)
    assert r2.nat.kind == "MASQUERADE" and r2.nat.random_fully and marked.mark == 0x0001
    # the kernel listing's spelling of the same rules
    eng2 = table("meta mark & 0x00004000 == 0x00000000 return\nmeta mark set meta mark ^ 0x00004000\nmasquerade",
                 hook="postrouting", ctype="nat", prio=100)
    m = tcp()
    m.mark = 0x4000
    assert run(eng2, m).nat.kind == "MASQUERADE" and m.mark == 0
    # era C: one rule, mark test, mark clear and masquerade
    eng3 = table("mark and 0x4000 != 0 mark set mark xor 0x4000 masquerade fully-random",
                 hook="postrouting", ctype="nat", prio=100)
    n = tcp()
    assert run(eng3, n).nat is None
    n.mark = 0x4000
    assert run(eng3, n).nat.kind == "MASQUERADE" and n.mark == 0


def test_dnat_snat_forms() -> None:
    eng = table("tcp dport 80 meta l4proto tcp dnat to 10.180.0.1:8080\ntcp dport 81 dnat ip to 10.180.0.2\n"
                "snat to 192.168.0.2", ctype="nat", prio=-100)
    r = run(eng, tcp())
    assert (r.nat.kind, r.nat.ip, r.nat.port) == ("DNAT", ip2int("10.180.0.1"), 8080)
    r = run(eng, tcp(dport=81))
    assert (r.nat.ip, r.nat.port) == (ip2int("10.180.0.2"), None)
    assert run(eng, tcp(dport=82)).nat.kind == "SNAT"


def test_reject_types() -> None:
    eng = table("tcp dport 1 reject\ntcp dport 2 reject with icmp type host-unreachable\n"
                "tcp dport 3 reject with icmp admin-prohibited\nreject with tcp reset\nudp dport 4 drop")
    got = [(r.verdict, r.reject_with) for r in (run(eng, tcp(dport=d)) for d in (1, 2, 3, 9))]
    # plain `reject` is ICMP port-unreachable, for TCP too (seen in a kernel: nft lists it as `reject`)
    assert got == [("drop", "icmp-port-unreachable"), ("drop", "icmp-host-unreachable"),
                   ("drop", "icmp-admin-prohibited"), ("drop", "tcp-reset")]
    # `reject with tcp reset` only applies to TCP; the UDP packet goes on to the next rule
    assert (run(eng, udp(dport=4)).verdict, run(eng, udp(dport=4)).reject_with) == ("drop", None)
    assert run(eng, udp(dport=5)).verdict == "accept"


# ------------------------------------------------------------------ verdict semantics
CHAINS = """add chain ip t a
add chain ip t b
add chain ip t c
add rule ip t a meta mark set mark or 0x1
add rule ip t a ip saddr 10.0.0.9 return
add rule ip t a jump b
add rule ip t a meta mark set mark or 0x2
add rule ip t b meta mark set mark or 0x10
add rule ip t b ip saddr 10.0.0.7 goto c
add rule ip t b ip saddr 10.0.0.8 accept
add rule ip t c meta mark set mark or 0x100
"""


def test_jump_goto_return_and_policy() -> None:
    eng = table("jump a\nmeta mark set mark or 0x1000\nip saddr 10.0.0.6 return\nmeta mark set mark or 0x2000",
                extra=CHAINS, policy="drop")
    marks = {}
    for src in ("10.0.0.1", "10.0.0.7", "10.0.0.8", "10.0.0.9", "10.0.0.6"):
        p = tcp(src=src)
        marks[src] = (run(eng, p).verdict, p.mark)
    assert marks == {
        "10.0.0.1": ("drop", 0x1 | 0x10 | 0x2 | 0x1000 | 0x2000),    # falls off b, back in a, back in base, policy
        "10.0.0.7": ("drop", 0x1 | 0x10 | 0x100 | 0x2 | 0x1000 | 0x2000),   # goto c: c returns to a (b's caller)
        "10.0.0.8": ("accept", 0x1 | 0x10),                          # accept ends the base chain at once
        "10.0.0.9": ("drop", 0x1 | 0x1000 | 0x2000),                 # return from a
        "10.0.0.6": ("drop", 0x1 | 0x10 | 0x2 | 0x1000),             # return in the base chain: its policy
    }


def test_jump_depth_limit() -> None:
    deep = "".join(f"add chain ip t c{i}\n" for i in range(18))
    deep += "".join(f"add rule ip t c{i} jump c{i + 1}\n" for i in range(17))
    load(f"add table ip t\n{deep}add chain ip t base {{ type filter hook input priority 0 ; }}\n"
         "add rule ip t base jump c2\n")
    with pytest.raises(NftError, match="jumps nest deeper than 16"):
        load(f"add table ip t\n{deep}add chain ip t base {{ type filter hook input priority 0 ; }}\n"
             "add rule ip t base jump c0\n")


def test_dynamic_set_update_gives_affinity_until_timeout() -> None:
    extra = ("add set ip t aff { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n"
             "add chain ip t ep1\nadd chain ip t ep2\n"
             "add rule ip t ep1 update @aff { ip saddr }\nadd rule ip t ep1 meta l4proto tcp dnat to 10.180.0.1:80\n"
             "add rule ip t ep2 meta l4proto tcp dnat to 10.180.0.2:80\n")
    eng = table("ip saddr @aff goto ep1\nnumgen random mod 2 vmap { 0 : goto ep1 , 1 : goto ep2 }",
                ctype="nat", prio=-100, extra=extra)
    ctx = NftContext(rng=FixedRandom([0, 0xFFFFFFFF, 0xFFFFFFFF]))
    assert run(eng, tcp(), ctx).nat.ip == ip2int("10.180.0.1")       # numgen 0 -> ep1, remembered
    ctx.now = 10799.0
    assert run(eng, tcp(), ctx).nat.ip == ip2int("10.180.0.1")       # affinity hit (refreshes the timeout)
    ctx.now = 10799.0 + 10800.0
    assert run(eng, tcp(), ctx).nat.ip == ip2int("10.180.0.2")       # expired: numgen draws again


def test_hook_runs_base_chains_by_priority() -> None:
    text = """add table ip a
add table ip b
add chain ip a late { type filter hook prerouting priority 10 ; }
add chain ip b early { type filter hook prerouting priority dstnat - 10 ; }
add chain ip a nat1 { type nat hook prerouting priority -100 ; }
add chain ip b nat2 { type nat hook prerouting priority -99 ; }
add rule ip a late ip saddr 10.0.0.66 drop
add rule ip b early meta mark set 0x1
add rule ip a nat1 tcp dport 80 dnat to 10.180.0.1:80
add rule ip b nat2 dnat to 10.180.0.2:80
"""
    eng = NftEngine(load(text))
    res = eng.run_hook("prerouting", tcp(), NftContext())
    assert [r.chain.name for r in res] == ["early", "nat1", "late"]         # nat2 skipped: binding set
    assert res[1].nat.ip == ip2int("10.180.0.1")
    res = eng.run_hook("prerouting", tcp(dport=81), NftContext())
    assert [r.chain.name for r in res] == ["early", "nat1", "nat2", "late"]
    res = eng.run_hook("prerouting", tcp(src="10.0.0.66"), NftContext(), nat=False)
    assert [(r.chain.name, r.verdict) for r in res] == [("early", "accept"), ("late", "drop")]


def test_trace_events_follow_nft_monitor_trace() -> None:
    eng = table("meta nftrace set 1\ncounter\njump a\ntcp dport 22 reject", extra=CHAINS, hook="output")
    r = run(eng, tcp(dport=22))
    lines = [e.line() for e in r.events]
    assert lines[0].startswith("ip t base packet: ")
    # as a 6.18 kernel printed the same shape: continue rules are listed, b's fall-off is silent
    assert lines[1:] == [
        "ip t base rule meta nftrace set 1 (verdict continue)",
        "ip t base rule counter (verdict continue)",
        "ip t base rule jump a (verdict jump a)",
        "ip t a rule meta mark set mark or 0x1 (verdict continue)",
        "ip t a rule jump b (verdict jump b)",
        "ip t b rule meta mark set mark or 0x10 (verdict continue)",
        "ip t a rule meta mark set mark or 0x2 (verdict continue)",
        "ip t base rule tcp dport 22 reject (verdict drop)",
    ]


def test_service_dispatch_cost_is_flat() -> None:
    """One vmap lookup finds the Service whatever their number (iptables walks KUBE-SERVICES)."""
    def build(n: int) -> NftEngine:
        elems = ", ".join(f"172.30.{i // 250}.{i % 250 + 1} . tcp . 80 : goto svc" for i in range(n))
        return table("ip daddr . meta l4proto . th dport vmap @service-ips",
                     extra=("add map ip t service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"
                            "add chain ip t svc\nadd rule ip t svc meta l4proto tcp dnat to 10.180.0.1:80\n"
                            f"add element ip t service-ips {{ {elems} }}\n"), ctype="nat", prio=-100)
    small, big = build(100), build(10000)
    r1 = run(small, tcp(dst="172.30.0.50"))
    r2 = run(big, tcp(dst="172.30.39.250"))
    assert r1.nat is not None and r2.nat is not None
    assert (r1.rules_evaluated, r1.lookups) == (r2.rules_evaluated, r2.lookups) == (2, 1)
