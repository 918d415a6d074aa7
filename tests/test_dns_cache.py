"""kubeadm's `cache 30` (netsim.dns.cache) on the cluster clock.

Expectations from coredns plugin/cache: cache.go WriteMsg (every record of a reply gets the item's
duration as TTL; success and denial capped at 30 s by `cache 30`, setup.go), item.go (toMsg: AA=1,
TTL = origTTL − whole seconds since stored; served while > 0), handler.go (a miss goes to the next
plugin), cache.go key (truncated and OtherError replies are not stored), typify.go.
"""
from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netsim.control.manifests import load, load_text
from netsim.control.model import Service, ServicePort
from netsim.dns.cache import AnswerCache, typify
from netsim.dns.corefile import CachePlugin, Corefile, CorefileError
from netsim.dns.resolver import ClusterDNS
from dns_fixtures import ask

SHOP = "db.shop.svc.cluster.local."


def ttls(reply) -> set[int]:
    return {r.ttl for r in (*reply.rr, *reply.auth, *reply.ar)}


def test_ttl_counts_down_on_the_cluster_clock_then_the_item_is_refilled():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    assert ttls(ask(dns, SHOP)) == {30}
    c.advance(12)
    assert ttls(ask(dns, SHOP)) == {18}
    c.advance(17.9)
    assert ttls(ask(dns, SHOP)) == {1}                  # int(29.9 s) = 29 whole seconds elapsed
    c.advance(0.1)
    assert ttls(ask(dns, SHOP)) == {30}                 # TTL 0: expired, asked again and stored anew


def test_negative_answers_are_cached_until_their_ttl_runs_out():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    name = "late.shop.svc.cluster.local."
    first = ask(dns, name)
    assert RCODE.get(first.header.rcode) == "NXDOMAIN" and ttls(first) == {30}   # SOA min(30, 300) capped at 30
    c.add(Service("late", "shop", selector={"app": "backend"}, ports=[ServicePort(80, "TCP", "http", 80)]))
    c.advance(29)
    assert RCODE.get(ask(dns, name).header.rcode) == "NXDOMAIN"                 # still the cached denial
    c.advance(1)
    reply = ask(dns, name)
    assert RCODE.get(reply.header.rcode) == "NOERROR"
    assert [str(r.rdata) for r in reply.rr] == [c.service("shop", "late").cluster_ip]


def test_every_ttl_is_capped_at_30():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    assert ttls(ask(dns, "dns-version.cluster.local.", "TXT")) == {30}          # 28,800 from the kubernetes plugin
    fwd = ask(dns, "payments.example.com.")                                     # the upstream's 300
    assert ttls(fwd) == {30}


def test_a_cached_forwarded_answer_is_authoritative():
    # item.go toMsg: "Set this to true as some DNS clients discard the *entire* packet when it's
    # non-authoritative" — the first (forwarded) reply has AA=0, the cached copies AA=1
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    first, second = ask(dns, "payments.example.com."), ask(dns, "payments.example.com.")
    assert (first.header.aa, second.header.aa) == (0, 1)
    assert first.header.ra == second.header.ra == 1
    assert [str(r.rdata) for r in first.rr] == [str(r.rdata) for r in second.rr]


def test_each_coredns_pod_has_its_own_cache():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    a, b = dns.pod("10.244.0.2"), dns.pod("10.244.1.2")
    a.answer(DNSRecord.question(SHOP))
    c.advance(10)
    assert ttls(a.answer(DNSRecord.question(SHOP))) == {20}
    assert ttls(b.answer(DNSRecord.question(SHOP))) == {30}


def test_the_cached_records_keep_the_case_of_the_query_that_filled_the_cache():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    ask(dns, "BACKEND.shop.svc.cluster.local.")
    reply = ask(dns, "backend.shop.svc.cluster.local.")
    assert str(reply.q.qname) == "backend.shop.svc.cluster.local."      # SetReply: the query's question
    assert {str(r.rname) for r in reply.rr} == {"BACKEND.shop.svc.cluster.local."}


def test_do_bit_and_type_are_separate_items():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    ask(dns, SHOP, "A")
    c.advance(5)
    assert ttls(ask(dns, SHOP, "A")) == {25}
    assert ttls(ask(dns, SHOP, "AAAA")) == {30}                          # NODATA, its own item


def test_refused_and_servfail():
    c = load_text("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: x}\n"
                  "spec: {nodes: [{name: n1, ip: 192.168.49.2}]}\n")
    dns = ClusterDNS(c)
    cache = dns._caches                                                  # one per answering pod
    assert RCODE.get(ask(dns, "cluster.local.", "AXFR").header.rcode) == "REFUSED"
    assert sum(len(v) for v in cache.values()) == 0                      # Meta: never stored
    # no upstream table: SERVFAIL, kept 5 s (cache.go failttl = minNTTL)
    assert RCODE.get(ask(dns, "example.org.").header.rcode) == "SERVFAIL"
    assert sum(len(v) for v in cache.values()) == 1
    key = next(iter(next(iter(cache.values()))._denial))
    item = next(iter(cache.values())).get(key, dns.now())
    assert item is not None and item.orig_ttl == 5


def test_typify_matches_corednss_classes():
    def msg(rcode, answer=False, soa=False):
        from dnslib import RR, SOA, A
        m = DNSRecord.question("x.cluster.local.").reply()
        m.header.rcode = rcode
        if answer:
            m.add_answer(RR("x.cluster.local.", QTYPE.A, rdata=A("10.0.0.1")))
        if soa:
            m.add_auth(RR("cluster.local.", QTYPE.SOA, rdata=SOA("ns.dns.", "hostmaster.", (1, 2, 3, 4, 5))))
        return m
    assert typify(msg(RCODE.NOERROR, answer=True)) == "NoError"
    assert typify(msg(RCODE.NOERROR, soa=True)) == "NoData"
    assert typify(msg(RCODE.NXDOMAIN, soa=True)) == "NameError"
    assert typify(msg(RCODE.NXDOMAIN, answer=True)) == "OtherError"
    assert typify(msg(RCODE.SERVFAIL)) == "ServerError"
    assert typify(msg(RCODE.REFUSED)) == "OtherError"


def test_cache_off_and_bad_ttl():
    c = load(["example:shop"])
    dns = ClusterDNS(c, corefile=Corefile(cache=None))
    ask(dns, SHOP)
    c.advance(10)
    assert ttls(ask(dns, SHOP)) == {30}                                  # the kubernetes plugin's own ttl
    with pytest.raises(CorefileError, match="cache: success_ttl 0"):
        CachePlugin(success_ttl=0)
    assert len(AnswerCache(CachePlugin())) == 0
