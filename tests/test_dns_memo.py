"""The memoised pure functions on the by-name trace path give what their uncached bodies give:
a reply read again under another ID (netsim.dns.wire.read_reply, with its answers as text), a query
built again (build_query), the stub's record of an answered query built again
(netsim.dns.stub._record), a pod's resolv.conf asked again (pod_resolv_conf), a --to target parsed
again (netsim.dataplane.target.parse_target). Each is checked against the uncached computation on random
inputs, including inputs seen before (the cache's hits)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from dnslib import A, AAAA, QTYPE, RCODE, RR, DNSRecord
from hypothesis import given, settings, strategies as st

from netsim.dataplane.target import TargetError, _answer_text, _parse_target, parse_target
from netsim.dns.names import name_problem
from netsim.dns.stub import StubQuery, _record
from netsim.dns.resolvconf import ResolvConfError, _pod_resolv_conf, pod_resolv_conf
from netsim.dns.wire import _NotPlain, _read_a_only, build_query, read_reply

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_name = st.lists(_label, min_size=1, max_size=5).map(".".join)


def _uncached_reply(data: bytes):
    """read_reply without its memo: the plain reader on the whole message, dnslib otherwise."""
    try:
        rcode, tc, rr = _read_a_only(data[2:])
    except (IndexError, ValueError, struct.error):
        return DNSRecord.parse(data)
    return (struct.unpack("!H", data[:2])[0], rcode, tc, rr)


def _seen(reply) -> tuple:
    return (reply.header.id, reply.header.rcode, reply.header.tc,
            tuple((r.rtype, str(r.rdata)) for r in reply.rr))


@settings(max_examples=150, deadline=None)
@given(name=_name, ids=st.lists(st.integers(0, 65535), min_size=1, max_size=4),
       rcode=st.sampled_from([0, 2, 3, 5]), tc=st.booleans(),
       answers=st.lists(st.one_of(st.ip_addresses(v=4).map(lambda ip: A(str(ip))),
                                  st.ip_addresses(v=6).map(lambda ip: AAAA(str(ip)))), max_size=4))
def test_read_reply_again_under_another_id_is_what_a_fresh_read_gives(name, ids, rcode, tc, answers):
    reply = DNSRecord.question(name + ".cluster.local", "A").reply()
    reply.header.rcode, reply.header.tc = rcode, int(tc)
    for rdata in answers:
        reply.add_answer(RR(name + ".cluster.local", QTYPE.A if isinstance(rdata, A) else QTYPE.AAAA,
                            rdata=rdata, ttl=30))
    for ident in ids + ids:                          # the second pass reads from the memo
        reply.header.id = ident
        data = bytes(reply.pack())
        mine = read_reply(data)
        fresh = _uncached_reply(data)
        if isinstance(fresh, tuple):
            assert _seen(mine) == (fresh[0], fresh[1], fresh[2], tuple((r.rtype, r.rdata) for r in fresh[3]))
        else:
            assert _seen(mine) == _seen(fresh)
        parsed = DNSRecord.parse(data)
        assert _seen(mine) == _seen(parsed)
        assert _answer_text(mine) == (", ".join(str(r.rdata) for r in parsed.rr) or "-")
        if hasattr(mine, "answers"):
            assert mine.answers == tuple(str(r.rdata) for r in parsed.rr)


@settings(max_examples=150, deadline=None)
@given(name=_name, qtype=st.sampled_from(["A", "AAAA", "SRV"]), transport=st.sampled_from(["udp", "tcp"]),
       replies=st.lists(st.tuples(st.integers(0, 65535), st.sampled_from([0, 2, 3, 5]), st.booleans(),
                                  st.lists(st.ip_addresses(v=4).map(str), max_size=3)), min_size=1, max_size=4))
def test_stub_record_again_is_a_fresh_record(name, qtype, transport, replies):
    """The stub's StubQuery for a reply (shared between equal answers) equals one built field by field
    from dnslib's parse of the same bytes, for plain replies and dnslib ones, seen before or not."""
    for ident, rcode, tc, ips in replies + replies:
        reply = DNSRecord.question(name, qtype).reply()
        reply.header.id, reply.header.rcode, reply.header.tc = ident, rcode, int(tc)
        for ip in ips:
            reply.add_answer(RR(name, QTYPE.A, rdata=A(ip), ttl=30))
        data = bytes(reply.pack())
        parsed = DNSRecord.parse(data)
        fresh = StubQuery(name, qtype, RCODE.get(rcode), tuple(str(r.rdata) for r in parsed.rr), tc, transport)
        assert _record(name, qtype, read_reply(data), transport) == fresh
        assert _record(name, qtype, parsed, transport) == fresh
    assert _record(name, qtype, None, transport) == StubQuery(name, qtype, None, transport=transport)


def test_read_reply_of_garbage_raises_every_time():
    for _ in range(2):
        with pytest.raises(Exception):
            read_reply(b"\x12\x34\x81\x80\x00\x01\x00\x01")
    with pytest.raises(_NotPlain):
        _read_a_only(b"\x81\x80\x00\x00\x00\x01" + b"\x00" * 6 + b"\x00\x00\x10\x00\x01\x00\x00\x00\x1e\x00\x04abcd")


@settings(max_examples=100, deadline=None)
@given(name=_name, qtype=st.sampled_from(["A", "AAAA", "SRV", "TXT", "PTR"]),
       ids=st.lists(st.integers(0, 65535), min_size=2, max_size=4))
def test_build_query_again_is_dnslibs_question(name, qtype, ids):
    for ident in ids:
        q = DNSRecord.question(name, qtype)
        q.header.id = ident
        assert build_query(name, qtype, ident) == bytes(q.pack())


_pods = st.builds(SimpleNamespace, namespace=_label, name=_label,
                  dns_policy=st.sampled_from([None, "", "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None",
                                              "Bogus"]),
                  host_network=st.booleans(),
                  dns_config=st.one_of(st.none(), st.just({}),
                                       st.fixed_dictionaries({"searches": st.lists(_name, max_size=3)})))
_configs = st.builds(SimpleNamespace, cluster_domain=st.sampled_from(["cluster.local", "corp.example"]),
                     dns_service_ip=st.sampled_from(["10.96.0.10", "10.0.0.10"]),
                     node_network=st.sampled_from(["192.168.49.0/24", "172.18.0.0/16"]))


@settings(max_examples=200, deadline=None)
@given(pod=_pods, config=_configs)
def test_pod_resolv_conf_again_is_what_kubelets_rules_give(pod, config):
    for _ in range(2):
        try:
            fresh = _pod_resolv_conf(pod, config, None)
        except ResolvConfError as e:
            with pytest.raises(ResolvConfError) as got:
                pod_resolv_conf(pod, config)
            assert str(got.value) == str(e)
            continue
        assert pod_resolv_conf(pod, config) == fresh


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(
    st.builds("http://{}{}/{}".format, _name, st.sampled_from(["", ":8080", ":0", ":x"]), _label),
    st.builds("{}:{}".format, _name, st.sampled_from(["80", "http", "99999", "", "Bad_Port"])),
    st.builds("{}.{}".format, _name, st.sampled_from(["-bad", "a" * 64])),
    st.text(max_size=20)))
def test_parse_target_again_is_a_fresh_parse(text):
    for _ in range(2):
        try:
            t = _parse_target(text)
        except TargetError as e:
            with pytest.raises(TargetError) as got:
                parse_target(text)
            assert str(got.value) == str(e)
            continue
        why = name_problem(t.host)
        if why:
            with pytest.raises(TargetError) as got:
                parse_target(text)
            assert str(got.value) == f"--to {text}: {t.host!r} is not a legal name ({why})"
            continue
        mine = parse_target(text)
        assert mine == t and mine is not parse_target(text)       # equal, and a fresh object each time
