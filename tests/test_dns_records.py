"""Answers of the CoreDNS stand-in, table-driven from CoreDNS's own unit tests and the DNS spec.

Expectations are copied from coredns/coredns plugin/kubernetes (snapshot 4b26cced, v1.14.7+):
handler_test.go (dnsTestCases, TTL 5 = the plugin default, namespaces testns), reverse_test.go,
handler_pod_insecure_test.go, handler_case_test.go, and from the Kubernetes DNS spec 1.1.0
(kubernetes/dns docs/specification.md). Rows marked [C] come from reading CoreDNS's code
(backend_lookup.go, kubernetes.go), not from a test.
"""
from __future__ import annotations

import pytest
from dnslib import DNSRecord, RCODE

from netsim.dns.corefile import Corefile, KubernetesPlugin
from netsim.dns.resolver import ClusterDNS
from netsim.dns.upstream import UpstreamResolver
from dns_fixtures import ask, coredns_testns, rrset

SOA5 = "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"


def handler_test_dns(**plugin) -> ClusterDNS:
    """TestServeDNS: New([]string{"cluster.local."}), Namespaces testns, ttl 5 (the default)."""
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, pods="disabled", fallthrough=(),
                          namespaces=("testns",), **plugin)
    up = UpstreamResolver.from_config({"ext.interwebs.test": ["1.2.3.4"]})
    return ClusterDNS(coredns_testns(), corefile=Corefile(kubernetes=kp, loadbalance=False, cache=None), upstream=up)


N = "NOERROR"
NX = "NXDOMAIN"
# (qname, qtype, rcode, answer set, additional set, authority set) — handler_test.go dnsTestCases
HANDLER_CASES = [
    ("svc1.testns.svc.cluster.local.", "A", N, {"svc1.testns.svc.cluster.local. 5 A 10.0.0.1"}, set(), set()),
    # a ClusterIP Service answers without ready endpoints
    ("svcempty.testns.svc.cluster.local.", "A", N, {"svcempty.testns.svc.cluster.local. 5 A 10.0.0.1"}, set(), set()),
    # SRV on the bare service name: every port
    ("svc1.testns.svc.cluster.local.", "SRV", N,
     {"svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local."},
     {"svc1.testns.svc.cluster.local. 5 A 10.0.0.1"}, set()),
    ("svc6.testns.svc.cluster.local.", "SRV", N,
     {"svc6.testns.svc.cluster.local. 5 SRV 0 100 80 svc6.testns.svc.cluster.local."},
     {"svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"}, set()),
    ("_http._tcp.svc1.testns.svc.cluster.local.", "SRV", N,
     {"_http._tcp.svc1.testns.svc.cluster.local. 5 SRV 0 100 80 svc1.testns.svc.cluster.local."},
     {"svc1.testns.svc.cluster.local. 5 A 10.0.0.1"}, set()),
    ("_http._tcp.svcempty.testns.svc.cluster.local.", "SRV", N,
     {"_http._tcp.svcempty.testns.svc.cluster.local. 5 SRV 0 100 80 svcempty.testns.svc.cluster.local."},
     {"svcempty.testns.svc.cluster.local. 5 A 10.0.0.1"}, set()),
    # headless: one A per ready IPv4 endpoint
    ("hdls1.testns.svc.cluster.local.", "A", N,
     {f"hdls1.testns.svc.cluster.local. 5 A 172.0.0.{i}" for i in (2, 3, 4, 5)}, set(), set()),
    ("hdlsprtls.testns.svc.cluster.local.", "A", N, {"hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"}, set(), set()),
    ("172-0-0-20.hdlsprtls.testns.svc.cluster.local.", "A", N,
     {"172-0-0-20.hdlsprtls.testns.svc.cluster.local. 5 A 172.0.0.20"}, set(), set()),
    ("172-0-0-2.hdls1.testns.svc.cluster.local.", "A", N,
     {"172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2"}, set(), set()),
    # endpoint hostname shared by two endpoints: both addresses
    ("dup-name.hdls1.testns.svc.cluster.local.", "A", N,
     {"dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4", "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.5"},
     set(), set()),
    # headless SRV: weight floor(100/6)=16, (target, port) de-duplicated, targets' addresses as extra
    ("_http._tcp.hdls1.testns.svc.cluster.local.", "SRV", N,
     {f"_http._tcp.hdls1.testns.svc.cluster.local. 5 SRV 0 16 80 {t}.hdls1.testns.svc.cluster.local."
      for t in ("172-0-0-2", "172-0-0-3", "5678-abcd--1", "5678-abcd--2", "dup-name")},
     {"172-0-0-2.hdls1.testns.svc.cluster.local. 5 A 172.0.0.2",
      "172-0-0-3.hdls1.testns.svc.cluster.local. 5 A 172.0.0.3",
      "5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1",
      "5678-abcd--2.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2",
      "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.4",
      "dup-name.hdls1.testns.svc.cluster.local. 5 A 172.0.0.5"}, set()),
    ("5678-abcd--2.hdls1.testns.svc.cluster.local.", "AAAA", N,
     {"5678-abcd--2.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2"}, set(), set()),
    ("hdls1.testns.svc.cluster.local.", "AAAA", N,
     {"hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1", "hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::2"},
     set(), set()),
    # ExternalName
    ("external.testns.svc.cluster.local.", "CNAME", N,
     {"external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."}, set(), set()),
    ("external-to-service.testns.svc.cluster.local.", "A", N,
     {"external-to-service.testns.svc.cluster.local. 5 CNAME svc1.testns.svc.cluster.local.",
      "svc1.testns.svc.cluster.local. 5 A 10.0.0.1"}, set(), set()),
    # NODATA / NXDOMAIN, each with one SOA in authority
    ("svc1.testns.svc.cluster.local.", "AAAA", N, set(), set(), {SOA5}),
    ("svc0.testns.svc.cluster.local.", "AAAA", NX, set(), set(), {SOA5}),
    ("svc0.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    ("svc0.svc-nons.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    ("dns-version.cluster.local.", "TXT", N, {'dns-version.cluster.local. 28800 TXT "1.1.0"'}, set(), set()),
    ("bogusendpoint.hdls1.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    ("bogusendpoint.svc0.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    ("svc6.testns.svc.cluster.local.", "AAAA", N, {"svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"}, set(), set()),
    ("_http._tcp.svc6.testns.svc.cluster.local.", "SRV", N,
     {"_http._tcp.svc6.testns.svc.cluster.local. 5 SRV 0 100 80 svc6.testns.svc.cluster.local."},
     {"svc6.testns.svc.cluster.local. 5 AAAA 1234:abcd::1"}, set()),
    ("5678-abcd--1.hdls1.testns.svc.cluster.local.", "AAAA", N,
     {"5678-abcd--1.hdls1.testns.svc.cluster.local. 5 AAAA 5678:abcd::1"}, set(), set()),
    ("svc.cluster.local.", "A", N, set(), set(), {SOA5}),
    ("pod.cluster.local.", "A", N, set(), set(), {SOA5}),
    ("testns.svc.cluster.local.", "A", N, set(), set(), {SOA5}),
    ("svc.cluster.local.", "NS", N, set(), set(), {SOA5}),
    ("testns.svc.cluster.local.", "NS", N, set(), set(), {SOA5}),
    ("foo.cluster.local.", "NS", NX, set(), set(), {SOA5}),
    ("foo.svc.cluster.local.", "NS", NX, set(), set(), {SOA5}),
    ("svc1.testns.svc.cluster.local.", "SOA", N, set(), set(), {SOA5}),
    ("endpoint.external.testns.svc.cluster.local.", "CNAME", NX, set(), set(), {SOA5}),
    # kubernetes_test.go TestServices: endpoint names resolve for ClusterIP services too
    ("ep1a.svc1.testns.svc.cluster.local.", "A", N, {"ep1a.svc1.testns.svc.cluster.local. 5 A 172.0.0.1"}, set(), set()),
    # [C] wrong protocol / unknown port name: nothing matches → NXDOMAIN
    ("_http._udp.svc1.testns.svc.cluster.local.", "SRV", NX, set(), set(), {SOA5}),
    ("_https._tcp.svc1.testns.svc.cluster.local.", "SRV", NX, set(), set(), {SOA5}),
    # [C] an A query on an SRV-shaped name answers with the ClusterIP
    ("_http._tcp.svc1.testns.svc.cluster.local.", "A", N,
     {"_http._tcp.svc1.testns.svc.cluster.local. 5 A 10.0.0.1"}, set(), set()),
    # [C] endpoints without ports give no SRV → NODATA; SRV on ExternalName → NODATA
    ("hdlsprtls.testns.svc.cluster.local.", "SRV", N, set(), set(), {SOA5}),
    ("external.testns.svc.cluster.local.", "SRV", N, set(), set(), {SOA5}),
    # [C] TXT: NODATA on an existing name, NXDOMAIN otherwise; dns-version has no A (invalid shape)
    ("svc1.testns.svc.cluster.local.", "TXT", N, set(), set(), {SOA5}),
    ("svc0.testns.svc.cluster.local.", "TXT", NX, set(), set(), {SOA5}),
    ("dns-version.cluster.local.", "A", NX, set(), set(), {SOA5}),
    # [C] other qtypes: a fake A lookup picks NODATA or NXDOMAIN
    ("svc1.testns.svc.cluster.local.", "MX", N, set(), set(), {SOA5}),
    ("svc0.testns.svc.cluster.local.", "HINFO", NX, set(), set(), {SOA5}),
    # [C] too many labels; * is an ordinary label since CoreDNS 1.9 (wildcards removed)
    ("a.b.c.svc1.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    ("*.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    # [C] nothing below an ExternalName; no empty non-terminals under a service
    ("_tcp.svc1.testns.svc.cluster.local.", "A", NX, set(), set(), {SOA5}),
    # [C] a PTR query on a forward name: NODATA if it exists
    ("svc1.testns.svc.cluster.local.", "PTR", N, set(), set(), {SOA5}),
    ("example.org.cluster.local.", "PTR", NX, set(), set(), {SOA5}),
]


@pytest.mark.parametrize("qname,qtype,rcode,answer,extra,auth", HANDLER_CASES,
                         ids=[f"{c[0]}{c[1]}" for c in HANDLER_CASES])
def test_handler_cases(qname, qtype, rcode, answer, extra, auth):
    reply = ask(handler_test_dns(), qname, qtype)
    assert RCODE.get(reply.header.rcode) == rcode
    assert rrset(reply.rr) == answer
    assert rrset(reply.ar) == extra
    assert rrset(reply.auth) == auth
    assert reply.header.aa == 1 and reply.header.ra == 0          # qr aa rd, as miekg SetReply + Authoritative


def test_external_name_outside_zone_goes_upstream_cname_first():
    # handler_test.go "CNAME External": CNAME then the upstream's A; CNAMEOrder: CNAME before its target
    reply = ask(handler_test_dns(), "external.testns.svc.cluster.local.", "A")
    assert [str(rr.rdata) for rr in reply.rr] == ["ext.interwebs.test.", "1.2.3.4"]
    assert RCODE.get(reply.header.rcode) == "NOERROR"


def test_external_name_unknown_upstream_still_cname_noerror():
    # [C] backend_lookup.go A(): the upstream's answer is appended whatever its rcode
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, namespaces=("testns",))
    dns = ClusterDNS(coredns_testns(), corefile=Corefile(kubernetes=kp, cache=None), upstream=UpstreamResolver())
    reply = ask(dns, "external.testns.svc.cluster.local.", "A")
    assert RCODE.get(reply.header.rcode) == "NOERROR"
    assert rrset(reply.rr) == {"external.testns.svc.cluster.local. 5 CNAME ext.interwebs.test."}


def test_unexposed_namespace_is_nxdomain():
    # TestServeNamespaceDNS: svc1.nsnoexist → NXDOMAIN (namespace does not exist)
    reply = ask(handler_test_dns(), "svc1.nsnoexist.svc.cluster.local.", "A")
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"


CASE_CASES = [
    # handler_case_test.go dnsPreserveCaseCases: owner = the question's case; generated targets keep
    # the zone's case from the question and the stored (lower) case for service/namespace
    ("not-a-service.testns.svc.ClUsTeR.lOcAl.", "A", NX, set(), set(),
     {"ClUsTeR.lOcAl. 5 SOA ns.dns.ClUsTeR.lOcAl. hostmaster.ClUsTeR.lOcAl. 0 7200 1800 86400 5"}),
    ("SvC1.TeStNs.SvC.cLuStEr.LoCaL.", "A", N, {"SvC1.TeStNs.SvC.cLuStEr.LoCaL. 5 A 10.0.0.1"}, set(), set()),
    ("_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL.", "SRV", N,
     {"_HtTp._TcP.sVc1.TeStNs.SvC.cLuStEr.LoCaL. 5 SRV 0 100 80 svc1.testns.svc.cLuStEr.LoCaL."},
     {"svc1.testns.svc.cLuStEr.LoCaL. 5 A 10.0.0.1"}, set()),
    ("Cluster.local.", "SOA", N,
     {"Cluster.local. 5 SOA ns.dns.Cluster.local. hostmaster.Cluster.local. 0 7200 1800 86400 5"}, set(), set()),
]


@pytest.mark.parametrize("qname,qtype,rcode,answer,extra,auth", CASE_CASES)
def test_case_preserved(qname, qtype, rcode, answer, extra, auth):
    reply = ask(handler_test_dns(), qname, qtype)
    assert RCODE.get(reply.header.rcode) == rcode
    # dnslib compares labels case-insensitively, so compare the text
    assert {s for s in rrset(reply.rr)} == answer
    assert rrset(reply.ar) == extra
    assert rrset(reply.auth) == auth
    assert str(reply.q.qname) == qname


POD_CASES = [
    # handler_pod_insecure_test.go (pods insecure; plugin TTL 5, SOA minimum 30 there, not checked)
    ("10-240-0-1.podns.pod.cluster.local.", "A", N, {"10-240-0-1.podns.pod.cluster.local. 5 A 10.240.0.1"}),
    ("172-0-0-2.podns.pod.cluster.local.", "A", N, {"172-0-0-2.podns.pod.cluster.local. 5 A 172.0.0.2"}),
    ("blah.podns.pod.cluster.local.", "A", NX, set()),
    ("blah.podns.pod.cluster.local.", "AAAA", NX, set()),
    ("blah.podns.pod.cluster.local.", "HINFO", NX, set()),
    ("blah.pod-nons.pod.cluster.local.", "A", NX, set()),
    ("podns.pod.cluster.local.", "A", N, set()),
    # [C] fd00--1 parses as IPv6 (a '--'); the wrong family is NODATA
    ("fd00--1.podns.pod.cluster.local.", "AAAA", N, {"fd00--1.podns.pod.cluster.local. 5 AAAA fd00::1"}),
    ("10-240-0-1.podns.pod.cluster.local.", "AAAA", N, set()),
]


@pytest.mark.parametrize("qname,qtype,rcode,answer", POD_CASES)
def test_pods_insecure(qname, qtype, rcode, answer):
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, pods="insecure", fallthrough=())
    reply = ask(ClusterDNS(coredns_testns(), corefile=Corefile(kubernetes=kp, cache=None)), qname, qtype)
    assert RCODE.get(reply.header.rcode) == rcode
    assert rrset(reply.rr) == answer
    if not answer:
        assert len(reply.auth) == 1                                   # one SOA in authority


def test_pods_disabled_is_nxdomain():
    # the plugin default `pods disabled`: findPods returns errNoItems
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, pods="disabled")
    reply = ask(ClusterDNS(coredns_testns(), corefile=Corefile(kubernetes=kp, cache=None)), "10-240-0-1.podns.pod.cluster.local.")
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"


def test_pods_verified_needs_a_pod_with_that_ip():
    # handler_pod_verified_test.go: 10-240-0-1.podns answers only because pod podns/foo has that IP
    c = coredns_testns()
    from netsim.control.model import Pod
    c.pod_list.append(Pod("foo", "podns", ip="10.240.0.1"))
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, pods="verified")
    dns = ClusterDNS(c, corefile=Corefile(kubernetes=kp, cache=None))
    assert rrset(ask(dns, "10-240-0-1.podns.pod.cluster.local.").rr) == {
        "10-240-0-1.podns.pod.cluster.local. 5 A 10.240.0.1"}
    assert RCODE.get(ask(dns, "172-0-0-2.podns.pod.cluster.local.").header.rcode) == "NXDOMAIN"


def reverse_dns() -> ClusterDNS:
    # reverse_test.go: zones cluster.local. plus reverse zones, ttl 5, no fallthrough
    kp = KubernetesPlugin(zones=("cluster.local.", "0.10.in-addr.arpa.", "168.192.in-addr.arpa.",
                                 "ip6.arpa."), ttl=5, fallthrough=())
    c = coredns_testns()
    from netsim.control.model import Service, ServicePort
    c.svcs.append(Service("svc1", "testns2", cluster_ip="192.168.1.100", ports=[ServicePort(80, "TCP", "http")]))
    c.ns.append(__import__("netsim.control.model", fromlist=["Namespace"]).Namespace("testns2"))
    from dns_fixtures import _slice
    c.slices.append(_slice("rev", "testns", "svc1", [("10.0.0.100", "ep1a"), ("10.0.0.99", "double-ep")], []))
    c.svcs.append(Service("svc2", "testns", cluster_ip="10.0.0.2"))
    c.slices.append(_slice("rev2", "testns", "svc2", [("10.0.0.99", "double-ep")], []))
    return ClusterDNS(c, corefile=Corefile(kubernetes=kp, loadbalance=False, cache=None))


REVERSE_CASES = [
    ("100.0.0.10.in-addr.arpa.", N, {"100.0.0.10.in-addr.arpa. 5 PTR ep1a.svc1.testns.svc.cluster.local."}),
    ("100.1.168.192.in-addr.arpa.", N, {"100.1.168.192.in-addr.arpa. 5 PTR svc1.testns2.svc.cluster.local."}),
    # one PTR per Service selecting the endpoint IP (reverse_test.go double-ep)
    ("99.0.0.10.in-addr.arpa.", N, {"99.0.0.10.in-addr.arpa. 5 PTR double-ep.svc1.testns.svc.cluster.local.",
                                    "99.0.0.10.in-addr.arpa. 5 PTR double-ep.svc2.testns.svc.cluster.local."}),
    # a ClusterIP answers with its Service only
    ("1.0.0.10.in-addr.arpa.", N, {"1.0.0.10.in-addr.arpa. 5 PTR svc1.testns.svc.cluster.local.",
                                   } ),
    ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa.", N,
     {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.c.b.a.4.3.2.1.ip6.arpa. 5 PTR svc6.testns.svc.cluster.local."}),
    ("101.0.0.10.in-addr.arpa.", NX, set()),
]


@pytest.mark.parametrize("qname,rcode,answer", REVERSE_CASES)
def test_reverse(qname, rcode, answer):
    reply = ask(reverse_dns(), qname, "PTR")
    assert RCODE.get(reply.header.rcode) == rcode
    if qname.startswith("1.0.0.10"):
        # svc1 and svcempty share 10.0.0.1 in the fixture; CoreDNS returns the first Service found
        assert len(reply.rr) == 1 and str(reply.rr[0].rdata).endswith(".testns.svc.cluster.local.")
    else:
        assert rrset(reply.rr) == answer
    if rcode == NX:
        # NXDOMAIN carries the SOA of the matched reverse zone (reverse_test.go 101.0.0.10)
        assert [str(rr.rname) for rr in reply.auth] == ["0.10.in-addr.arpa."]
        assert str(reply.auth[0].rdata).startswith("ns.dns.0.10.in-addr.arpa. hostmaster.0.10.in-addr.arpa.")


def test_a_query_on_reverse_forward_mix_is_nxdomain():
    # reverse_test.go: svc1.testns.svc.0.10.in-addr.arpa. A → NXDOMAIN with the reverse zone's SOA
    reply = ask(reverse_dns(), "svc1.testns.svc.0.10.in-addr.arpa.", "A")
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"
    assert str(reply.auth[0].rname) == "0.10.in-addr.arpa."


def test_apex_ns_is_the_coredns_service_with_glue():
    # coredns/ci: cluster.local. NS kube-dns.kube-system.svc.cluster.local. + A 10.96.0.10; here the
    # fixture's CoreDNS pod 172.0.0.100 is an endpoint of kube-system/kubedns (10.0.0.10)
    dns = handler_test_dns()
    reply = ask(dns, "cluster.local.", "NS")
    assert rrset(reply.rr) == {"cluster.local. 5 NS kubedns.kube-system.svc.cluster.local."}
    assert rrset(reply.ar) == {"kubedns.kube-system.svc.cluster.local. 5 A 10.0.0.10"}


def test_apex_ns_falls_back_to_ns_dns_with_local_ip():
    # kubernetes_apex_test.go: without CoreDNS endpoints, ns.dns.<zone> with the server's own address
    c = coredns_testns()
    c.pod_list = []
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5)
    dns = ClusterDNS(c, corefile=Corefile(kubernetes=kp, cache=None), local_ip="127.0.0.1")
    assert rrset(ask(dns, "cluster.local.", "NS").rr) == {"cluster.local. 5 NS ns.dns.cluster.local."}
    assert rrset(ask(dns, "cluster.local.", "NS").ar) == {"ns.dns.cluster.local. 5 A 127.0.0.1"}
    assert rrset(ask(dns, "ns.dns.cluster.local.", "A").rr) == {"ns.dns.cluster.local. 5 A 127.0.0.1"}


def test_apex_soa_and_axfr_refused():
    dns = handler_test_dns()
    soa = ask(dns, "cluster.local.", "SOA")
    assert rrset(soa.rr) == {SOA5} and soa.header.aa == 1
    # handler.go: AXFR/IXFR → REFUSED without the transfer plugin
    assert RCODE.get(ask(dns, "cluster.local.", "AXFR").header.rcode) == "REFUSED"


def test_reply_flags_follow_miekg_setreply():
    # dig sets AD; CoreDNS (miekg SetReply) copies RD and CD but not AD, sets AA, never RA
    q = DNSRecord.question("svc1.testns.svc.cluster.local.", "A")
    q.header.ad = 1
    q.header.cd = 1
    r = handler_test_dns().answer(q)
    h = r.header
    assert (h.qr, h.aa, h.rd, h.ra, h.ad, h.cd, h.id) == (1, 1, 1, 0, 0, 1, q.header.id)


def test_kubeadm_corefile_defaults():
    # kubeadm manifests.go: kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough
    # in-addr.arpa ip6.arpa; ttl 30 }
    kp = Corefile.kubeadm().kubernetes
    assert kp.zones == ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    assert (kp.ttl, kp.pods, kp.fallthrough) == (30, "insecure", ("in-addr.arpa.", "ip6.arpa."))
    assert kp.soa_ttl == 30 and kp.primary_zone == "cluster.local."
