"""The wire fast path (netsim.dns.wire) against the dnslib path, byte for byte.

Two ClusterDNS instances over the same cluster with equally seeded RNGs: one answers through
netsim.dns.message.handle with its pre-encoded replies, the other is wrapped so that handle() can
only take the dnslib path. Random names (every kind of record the cluster has, names that do not
exist, forwarded names), random case (0x20), types, RD/CD bits, EDNS0 sizes and DO, UDP and TCP,
with the cluster clock moving (the `cache 30` TTLs count down on it) and the cluster changing in
between: every reply must be the same bytes. The client side's reader and query builder are
checked against dnslib the same way.
"""
from __future__ import annotations

import random

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import HealthCheck, given, settings, strategies as st

from netsim.control.manifests import load
from netsim.dns.corefile import Corefile
from netsim.dns.message import handle
from netsim.dns.resolver import ClusterDNS
from netsim.dns.wire import build_query, question_end, read_reply
from dns_fixtures import coredns_testns

TYPES = ["A", "AAAA", "SRV", "TXT", "PTR", "NS", "SOA", "CNAME", "MX", "ANY", "AXFR"]


class DnslibOnly:
    """handle() finds no pre-encoded replies on this: it parses and encodes every query."""

    def __init__(self, dns: ClusterDNS) -> None:
        self.dns = dns

    def answer(self, request):
        return self.dns.answer(request)


def names_of(cluster) -> list[str]:
    zone = "cluster.local."
    out = [zone, "svc." + zone, "dns-version." + zone, "ns.dns." + zone, "nosuch.default.svc." + zone,
           "a.b.c.d.e.svc." + zone, "example.com.", "payments.example.com.", "nowhere.example.",
           "10.0.96.10.in-addr.arpa.", "1.0.0.10.in-addr.arpa.", "kube-system.pod." + zone,
           "10-244-0-5.default.pod." + zone]
    for svc in cluster.services():
        base = f"{svc.name}.{svc.namespace}.svc.{zone}"
        out.append(base)
        for p in svc.ports:
            if p.name:
                out.append(f"_{p.name}._{p.protocol.lower()}.{base}")
        if svc.cluster_ip and svc.cluster_ip != "None" and ":" not in svc.cluster_ip:
            out.append(".".join(reversed(svc.cluster_ip.split("."))) + ".in-addr.arpa.")
    for sl in cluster.endpoint_slices():
        for ep in sl.endpoints:
            for ip in ep.addresses:
                host = ep.hostname or ip.replace(".", "-").replace(":", "-")
                out.append(f"{host}.{sl.service_name}.{sl.namespace}.svc.{zone}")
    return sorted(set(out))


def query_bytes(name: str, qtype: str, flip: list[bool], rd: bool, cd: bool, edns, qid: int) -> bytes:
    cased = "".join(ch.upper() if f and ch.isalpha() else ch for ch, f in zip(name, flip + [False] * len(name)))
    q = DNSRecord.question(cased, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    q.header.cd = int(cd)
    if edns is not None:
        size, do = edns
        q.add_ar(EDNS0(udp_len=size, flags="do" if do else ""))
    return bytes(q.pack())


QUERY = st.tuples(st.integers(0, 10 ** 6), st.sampled_from(TYPES), st.lists(st.booleans(), max_size=80),
                  st.booleans(), st.booleans(), st.none() | st.tuples(st.sampled_from([512, 1232, 4096]), st.booleans()),
                  st.sampled_from(["udp", "udp", "tcp"]), st.integers(0, 65535))
STEP = st.one_of(st.tuples(st.just("ask"), QUERY), st.tuples(st.just("advance"), st.sampled_from([0, 1, 7, 29, 31])),
                 st.tuples(st.just("change"), st.integers(0, 3)))


def pair(cluster, seed: int = 7):
    fast = ClusterDNS(cluster, rng=random.Random(seed))
    slow = ClusterDNS(cluster, rng=random.Random(seed))
    return fast, DnslibOnly(slow)


def change(cluster, which: int) -> None:
    """A cluster change the record index must follow (or the cache hide until its TTL runs out)."""
    if which == 0:
        cluster.scale("shop", "backend", 1 + len(cluster.pods("shop")) % 3)
    elif which == 1:
        pods = sorted(cluster.pods("shop"), key=lambda p: p.name)
        if pods:
            cluster.set_pod_ready("shop", pods[0].name, not pods[0].ready)
    elif which == 2:
        if cluster.service("shop", "payments") is not None:
            cluster.delete_service("shop", "payments")
    cluster.advance(1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=60))
def test_fast_path_equals_dnslib_path_on_a_changing_cluster(steps):
    cluster = load(["example:shop"])
    fast, slow = pair(cluster)
    names = names_of(cluster)
    for kind, arg in steps:
        if kind == "advance":
            cluster.advance(arg)
            continue
        if kind == "change":
            change(cluster, arg)
            names = names_of(cluster)
            continue
        i, qtype, flip, rd, cd, edns, proto, qid = arg
        data = query_bytes(names[i % len(names)], qtype, flip, rd, cd, edns, qid)
        for _ in range(2):                       # the second ask is the one the fast path may serve
            assert handle(fast, data, proto) == handle(slow, data, proto)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries=st.lists(QUERY, min_size=1, max_size=40))
def test_fast_path_equals_dnslib_path_on_corednss_own_fixture(queries):
    cluster = coredns_testns()                 # IPv6 ClusterIPs, headless, ExternalName, no clock
    fast, slow = pair(cluster)
    names = names_of(cluster)
    for i, qtype, flip, rd, cd, edns, proto, qid in queries:
        data = query_bytes(names[i % len(names)], qtype, flip, rd, cd, edns, qid)
        for _ in range(3):
            assert handle(fast, data, proto) == handle(slow, data, proto)


def test_repeated_questions_are_served_from_the_encoded_replies():
    cluster = load(["example:shop"])
    fast, slow = pair(cluster)
    wire = fast.wire_cache()
    data = query_bytes("db.shop.svc.cluster.local.", "A", [], True, False, None, 1)
    for n in range(5):
        assert handle(fast, data, "udp") == handle(slow, data, "udp")
    assert wire.hits >= 3
    # another case of the same name: its own entry, since the cached records keep the case of the
    # query that filled the cache (item.go) and dnslib compresses names case-sensitively
    mixed = query_bytes("db.shop.svc.cluster.local.", "A", [True, False] * 20, True, False, None, 2)
    for n in range(3):
        assert handle(fast, mixed, "udp") == handle(slow, mixed, "udp")
    # the clock moves: the cache's TTL counts down, and so do the encoded replies
    cluster.advance(12)
    replies = [DNSRecord.parse(handle(fast, data, "udp")) for _ in range(2)]
    assert {r.ttl for reply in replies for r in reply.rr} == {18}
    assert handle(fast, data, "udp") == handle(slow, data, "udp")


def test_0x20_case_is_copied_into_a_folded_entry():
    # without `cache` the answers' owner names are the query's own (compressed to the question), so
    # one entry serves every case of the name, each reply carrying the query's case
    cluster = load(["example:shop"])
    fast = ClusterDNS(cluster, corefile=Corefile(cache=None), rng=random.Random(3))
    slow = DnslibOnly(ClusterDNS(cluster, corefile=Corefile(cache=None), rng=random.Random(3)))
    wire = fast.wire_cache()
    data = query_bytes("backend.shop.svc.cluster.local.", "A", [], True, False, None, 1)
    assert handle(fast, data, "udp") == handle(slow, data, "udp")
    mixed = query_bytes("backend.shop.svc.cluster.local.", "A", [True, False] * 20, True, False, None, 2)
    before = wire.hits
    out = handle(fast, mixed, "udp")
    assert wire.hits == before + 1 and out == handle(slow, mixed, "udp")
    assert str(DNSRecord.parse(out).q.qname) == "BaCkEnD.ShOp.sVc.cLuStEr.lOcAl."


def test_headless_answers_are_still_shuffled():
    cluster = load(["example:shop"])
    fast, slow = pair(cluster)
    data = query_bytes("db.shop.svc.cluster.local.", "A", [], True, False, None, 1)
    orders = set()
    for _ in range(40):
        out = handle(fast, data, "udp")
        assert out == handle(slow, data, "udp")
        orders.add(tuple(str(r.rdata) for r in DNSRecord.parse(out).rr))
    assert len(orders) > 1                      # loadbalance: the order changes from reply to reply


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, b"\x12\x34\x81\x00" + b"\x00" * 8,
                                  bytes.fromhex("abcd01000001000000000000c00c00010001")])
def test_unusual_queries_take_the_dnslib_path(data):
    assert question_end(data) == -1
    cluster = load(["example:shop"])
    fast, slow = pair(cluster)
    assert handle(fast, data, "udp") == handle(slow, data, "udp")


@given(name=st.from_regex(r"[a-zA-Z0-9-]{1,20}(\.[a-zA-Z0-9-]{1,20}){0,4}\.?", fullmatch=True),
       qtype=st.sampled_from(["A", "AAAA", "SRV", "TXT"]), qid=st.integers(0, 65535))
def test_build_query_is_dnslibs_question(name, qtype, qid):
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    assert build_query(name, qtype, qid) == bytes(q.pack())


@settings(max_examples=60, deadline=None)
@given(i=st.integers(0, 10 ** 6), qtype=st.sampled_from(["A", "AAAA", "SRV", "TXT", "PTR"]),
       edns=st.none() | st.tuples(st.just(512), st.booleans()))
def test_read_reply_reads_what_dnslib_reads(i, qtype, edns):
    cluster = coredns_testns()
    dns = ClusterDNS(cluster)
    names = names_of(cluster)
    out = handle(dns, query_bytes(names[i % len(names)], qtype, [], True, False, edns, 9), "udp")
    mine, theirs = read_reply(out), DNSRecord.parse(out)
    assert (mine.header.rcode, mine.header.tc) == (theirs.header.rcode, theirs.header.tc)
    assert [(r.rtype, str(r.rdata)) for r in mine.rr] == [(r.rtype, str(r.rdata)) for r in theirs.rr]
    assert RCODE.get(mine.header.rcode) is not None and all(r.rtype in QTYPE.forward for r in mine.rr)


def test_the_case_check_runs_when_a_folded_lookup_first_needs_it():
    """Storing a reply does not run the case check (two more answers and encodings); the first query
    in another case does, once, with what the check gives at the instant the entry was made: with
    `cache` on the cached records keep the case of the query that filled the cache, so the entry
    does not serve other cases and that query takes the dnslib path — the same bytes either way."""
    cluster = load(["example:shop"])
    fast, slow = pair(cluster)
    wire = fast.wire_cache()
    data = query_bytes("backend.shop.svc.cluster.local.", "A", [], True, False, None, 1)
    assert handle(fast, data, "udp") == handle(slow, data, "udp")
    assert sum(len(v) for v in wire._pending.values()) == 1 and not any(wire._folded.values())
    mixed = query_bytes("backend.shop.svc.cluster.local.", "A", [True, False] * 20, True, False, None, 2)
    assert handle(fast, mixed, "udp") == handle(slow, mixed, "udp")
    end = question_end(data)
    key = data[2:12] + data[12:end].lower() + data[end:]
    # the first entry was checked (and not kept for other cases); the mixed-case query took the
    # dnslib path and waits under the same folded key, unchecked
    assert not wire._folded["udp"] and [d for d, _e, _n in wire._pending["udp"][key]] == [mixed]
    hits = wire.hits
    assert handle(fast, mixed, "udp") == handle(slow, mixed, "udp") and wire.hits == hits + 1    # exact entry
    cluster.advance(3)                      # a new instant: every table starts afresh, pending ones too
    assert handle(fast, data, "udp") == handle(slow, data, "udp")
    assert sum(len(v) for v in wire._pending.values()) == 1


_WIRE_CLUSTERS: dict = {}


@settings(max_examples=120, deadline=None)
@given(which=st.integers(0, 10 ** 6), qtype=st.sampled_from(TYPES), flip=st.lists(st.booleans(), max_size=40),
       edns=st.one_of(st.none(), st.tuples(st.sampled_from([0, 512, 600, 1232, 4096]), st.booleans())),
       protocol=st.sampled_from(["udp", "tcp"]), big=st.booleans())
def test_finish_wire_is_finish_packed(which, qtype, flip, edns, protocol, big):
    """message.finish_wire (one pack when the reply fits) gives finish(...).pack()'s bytes, truncated
    replies (the 60-record headless Service over UDP) included."""
    from dns_fixtures import HEADLESS_60_YAML
    from netsim.control.manifests import load_text
    from netsim.dns.message import finish, finish_wire
    from netsim.dns.wire import _copy
    key = "big" if big else "shop"
    if key not in _WIRE_CLUSTERS:
        _WIRE_CLUSTERS[key] = load_text(HEADLESS_60_YAML) if big else load(["example:shop"])
    cluster = _WIRE_CLUSTERS[key]
    names = names_of(cluster)
    request = DNSRecord.parse(query_bytes(names[which % len(names)], qtype, flip, True, False, edns, which & 0xFFFF))
    reply = ClusterDNS(cluster, rng=random.Random(1)).answer(request)
    assert finish_wire(request, _copy(reply), protocol) == bytes(finish(request, _copy(reply), protocol).pack())


def test_finish_wire_truncates_as_finish_does():
    """60 A records: over 512 bytes without EDNS (truncated, TC=1), within 1232 with it."""
    from dns_fixtures import HEADLESS_60_YAML
    from netsim.control.manifests import load_text
    from netsim.dns.message import finish, finish_wire
    from netsim.dns.wire import _copy
    cluster = load_text(HEADLESS_60_YAML)
    for edns in (None, (1232, False)):
        request = DNSRecord.parse(query_bytes("big.default.svc.cluster.local.", "A", [], True, False, edns, 9))
        reply = ClusterDNS(cluster, rng=random.Random(1)).answer(request)
        out = finish_wire(request, _copy(reply), "udp")
        assert out == bytes(finish(request, _copy(reply), "udp").pack())
        assert DNSRecord.parse(out).header.tc == (edns is None) and len(out) <= (512 if edns is None else 1232)
