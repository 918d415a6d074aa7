"""The nftables parser: what `nft -f` accepts and what `nft list ruleset` prints, loaded atomically.

Goldens: tests/golden/nftables/overall.nft is kube-proxy's TestOverallNFTablesRules expected text
(kubernetes/kubernetes pkg/proxy/nftables/proxier_test.go @81810de6, baseRules + per-Service part);
*.kernel-list.nft are `nft list ruleset` from a 6.18 kernel (nft 1.0.6) after loading the text in
knftables Dump order. The kernel refuses the upstream text in its verbatim order at line 58 (a
vmap's `goto` to an endpoint chain the text adds later), and so must we.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from netsim.rules.nftables.lexer import NftError
from netsim.rules.nftables.parse import load
from netsim.rules.nftables.values import VerdictVal, parse_duration
from netsim.skb.packet import ip2int

DATA = Path(__file__).parent / "data" / "nftables"
OVERALL = Path(__file__).parent / "golden" / "nftables" / "overall.nft"
DUMP_ORDER = {"table": 0, "chain": 1, "set": 2, "map": 3, "rule": 4, "element": 5}


def dump_order(text: str) -> str:
    """knftables Fake.Dump order (table, chains, sets, maps, rules, elements; rule order kept): loadable."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return "\n".join(sorted(lines, key=lambda ln: DUMP_ORDER[ln.split()[1]])) + "\n"


def era_b_text() -> str:
    return OVERALL.read_text()


def test_upstream_order_is_refused_at_the_line_the_kernel_names() -> None:
    text = era_b_text()
    first_bad = next(i for i, ln in enumerate(text.splitlines(), 1)
                     if "vmap { 0 : goto endpoint-5OJB2KTY" in ln)
    with pytest.raises(NftError, match=rf"overall:{first_bad}: goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80: "
                                       "no such chain"):
        load(text, source="overall")


def _summary(rs) -> dict:
    t = rs.table("ip", "kube-proxy")
    return {
        "comment": t.comment,
        "chains": {n: (c.type, c.hook, c.priority, c.policy, [r.program is not None for r in c.rules].count(True))
                   for n, c in t.chains.items()},
        "sets": {n: (s.kind, s.key_types, s.data_types, s.flags, s.timeout, s.comment,
                     {k: (e.data, e.comment) for k, e in s.exact.items()}, list(s.ranges))
                 for n, s in t.sets.items()},
    }


def test_dump_order_and_kernel_listing_load_to_the_same_tables() -> None:
    ours = load(dump_order(era_b_text()), source="dump")
    listed = load((DATA / "overall_era_b.kernel-list.nft").read_text(), source="listing")
    a, b = _summary(ours), _summary(listed)
    assert a["comment"] == b["comment"] == "rules for kube-proxy"
    assert a["chains"] == b["chains"]
    assert set(a["sets"]) == set(b["sets"])
    for name in a["sets"]:
        sa, sb = a["sets"][name], b["sets"][name]
        # the kernel lists a dynamic set with `size 65535` and timeouts as 3h: same objects
        assert sa[:6] == sb[:6], name
        assert sa[6] == sb[6], name
    t = listed.table("ip", "kube-proxy")
    assert t.chains["filter-prerouting-pre-dnat"].priority == -110          # `dstnat - 10`
    assert t.chains["nat-postrouting"].priority == 100                      # `srcnat`
    assert t.chains["filter-input"].priority == 0                           # `filter`
    svc = t.sets["service-ips"]
    assert svc.is_vmap and len(svc) == 9
    assert svc.exact[(ip2int("172.30.0.44"), 6, 80)].data == VerdictVal("goto", "service-LAUZTJTB-ns4/svc4/tcp/p80")
    aff = t.sets["affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"]
    assert aff.flags == frozenset({"dynamic", "timeout"}) and aff.timeout == 10800
    assert t.sets["no-endpoint-services"].exact[(ip2int("172.30.0.46"), 6, 80)].comment == "ns6/svc6:p80"


def test_era_c_text_and_listing() -> None:
    a = load((DATA / "era_c_derived.nft").read_text(), source="c")
    b = load((DATA / "era_c_derived.kernel-list.nft").read_text(), source="c-list")
    assert _summary(a)["chains"] == _summary(b)["chains"]
    hp = b.table("ip", "kube-proxy").sets["hairpin-connections"]
    assert hp.key_types == ("ipv4_addr", "ipv4_addr", "inet_proto", "inet_service")
    assert (ip2int("10.180.0.5"), ip2int("10.180.0.5"), 6, 80) in hp.exact


BASE = """add table ip t
add chain ip t c
add set ip t s { type ipv4_addr ; }
"""


@pytest.mark.parametrize("line, message", [
    ("add rule ip t c ip daddr 1.2.3.4 frobnicate", r"src:4: unknown expression 'frobnicate'"),
    ("add rule ip t c jhash ip saddr mod 2 vmap { 0 : drop }", r"src:4: unknown expression 'jhash'"),
    ("add rule ip t c ip saddr @nope drop", r"src:4: @nope: no such set or map"),
    ("add rule ip t c jump elsewhere", r"src:4: jump elsewhere: no such chain"),
    ("add rule ip t c ip frob 1.2.3.4", r"src:4: unknown ip header field 'frob'"),
    ("add rule ip t c ip daddr 1.2.3.400 drop", r"src:4: not an IPv4 address: '1.2.3.400'"),
    ("add rule ip t c meta l4proto . th dport @s accept", r"does not fit the key type ipv4_addr of @s"),
    ("add element ip t s { 10.0.0.0/8 }", r"src:4: set s: an interval element needs 'flags interval'"),
    ("add rule ip t nochain accept", r"src:4: no such chain 'nochain'"),
    ("add chain ip t b { type filter hook sideways priority 0 ; }", r"src:4: unknown hook 'sideways'"),
    ("add map ip t m { type ipv4_addr ; }", r"src:4: map m needs a data type"),
    ("frob table ip t", r"src:4: unknown command 'frob'"),
    ("add rule ip t c ct state new jump c", r"src:4: chain c: jump to c closes a loop"),
])
def test_errors_name_the_line(line: str, message: str) -> None:
    with pytest.raises(NftError, match=message):
        load(BASE + line + "\n", source="src")


def test_a_failed_transaction_changes_nothing() -> None:
    rs = load(BASE + "add rule ip t c ip saddr 1.1.1.1 drop\nadd element ip t s { 9.9.9.9 }\n")
    gen = rs.generation
    with pytest.raises(NftError, match="line|src:|<nft>:"):
        load("flush chain ip t c\nadd element ip t s { 8.8.8.8 }\ndelete element ip t s { 9.9.9.9 }\n"
             "add chain ip t d\nadd rule ip t c jump nowhere\n", ruleset=rs)
    t = rs.table("ip", "t")
    assert [r.text for r in t.chains["c"].rules] == ["ip saddr 1.1.1.1 drop"]
    assert set(t.sets["s"].exact) == {(ip2int("9.9.9.9"),)}
    assert "d" not in t.chains
    assert rs.generation == gen


def test_partial_sync_commands() -> None:
    """What kube-proxy sends on a partial sync: add+flush the chain, rules again, element changes."""
    rs = load(BASE + "add map ip t m { type ipv4_addr . inet_proto . inet_service : verdict ; }\n"
              "add rule ip t c ip saddr 1.1.1.1 drop\nadd element ip t m { 1.2.3.4 . tcp . 80 : goto c }\n")
    load("add chain ip t c\nflush chain ip t c\nadd rule ip t c ip saddr 2.2.2.2 accept\n"
         "delete element ip t m { 1.2.3.4 . tcp . 80 }\nadd element ip t m { 1.2.3.4 . tcp . 80 : drop }\n",
         ruleset=rs)
    t = rs.table("ip", "t")
    assert [r.text for r in t.chains["c"].rules] == ["ip saddr 2.2.2.2 accept"]
    assert t.sets["m"].exact[(ip2int("1.2.3.4"), 6, 80)].data == VerdictVal("drop")
    # a non-empty chain cannot be deleted (EBUSY); flushed first it can
    with pytest.raises(NftError, match="not empty"):
        load("delete chain ip t c\n", ruleset=rs)
    load("flush chain ip t c\ndelete element ip t m { 1.2.3.4 . tcp . 80 }\ndelete chain ip t c\n", ruleset=rs)
    assert "c" not in t.chains


def test_chain_still_referenced_cannot_go() -> None:
    rs = load(BASE + "add chain ip t d\nadd rule ip t c jump d\n")
    with pytest.raises(NftError, match="refers to chain d, which no longer exists"):
        load("delete chain ip t d\n", ruleset=rs)


def test_block_form_with_handles_counters_and_multiline_elements() -> None:
    text = """table ip filter { # handle 3
	comment "x"
	set allowed { # handle 4
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8,
			     192.168.1.1-192.168.1.9,
			     203.0.113.7 }
	}

	map ports {
		typeof tcp dport : verdict
		elements = { 22 : accept, 80 : jump web }
	}

	chain web { # handle 5
		counter packets 0 bytes 0 accept # handle 9
	}

	chain input { # handle 1
		type filter hook input priority filter + 5; policy drop;
		ip saddr @allowed tcp dport vmap @ports # handle 7
		iifname "lo" accept
	}
}
"""
    rs = load(text)
    t = rs.table("ip", "filter")
    assert t.chains["input"].priority == 5 and t.chains["input"].policy == "drop"
    allowed = t.sets["allowed"]
    assert len(allowed) == 3 and allowed.interval
    assert allowed.lookup((ip2int("192.168.1.5"),), 0) is not None
    assert allowed.lookup((ip2int("192.168.1.10"),), 0) is None
    ports = t.sets["ports"]
    assert ports.key_types == ("inet_service",) and ports.is_vmap
    assert [r.text for r in t.chains["input"].rules] == ["ip saddr @allowed tcp dport vmap @ports", 'iifname "lo" accept']


def test_element_timeouts_and_expiry() -> None:
    rs = load("table ip t {\n set a {\n type ipv4_addr\n flags dynamic,timeout\n timeout 3h\n"
              " elements = { 203.0.113.2 expires 2h59m56s, 203.0.113.3 timeout 10s expires 5s }\n }\n}\n", now=100.0)
    a = rs.table("ip", "t").sets["a"]
    assert a.exact[(ip2int("203.0.113.2"),)].expires == pytest.approx(100 + 3 * 3600 - 4)
    assert a.lookup((ip2int("203.0.113.3"),), 104.9) is not None
    assert a.lookup((ip2int("203.0.113.3"),), 105.0) is None
    assert parse_duration("10800s", "x") == 10800 and parse_duration("1d2h", "x") == 93600


def test_insert_replace_delete_by_handle() -> None:
    rs = load(BASE + "add rule ip t c ip saddr 1.1.1.1 drop\nadd rule ip t c ip saddr 3.3.3.3 drop\n")
    c = rs.table("ip", "t").chains["c"]
    h1, h3 = c.rules[0].handle, c.rules[1].handle
    load(f"add rule ip t c handle {h1} ip saddr 2.2.2.2 drop\ninsert rule ip t c ip saddr 0.0.0.0 drop\n"
         f"replace rule ip t c handle {h3} ip saddr 4.4.4.4 drop\n", ruleset=rs)
    assert [r.text.split()[2] for r in c.rules] == ["0.0.0.0", "1.1.1.1", "2.2.2.2", "4.4.4.4"]
    load(f"delete rule ip t c handle {h1}\n", ruleset=rs)
    assert [r.text.split()[2] for r in c.rules] == ["0.0.0.0", "2.2.2.2", "4.4.4.4"]
    load("flush ruleset\n", ruleset=rs)
    assert rs.tables == {}
