"""ExternalName Services and names with more labels than the Service's own.

CoreDNS plugin/kubernetes/kubernetes.go findServices: "External services do not have endpoints, nor
can we accept port/protocol pseudo subdomains in an SRV query, so skip this service if endpoint,
port, or protocol is non-empty in the request" (coredns PR #6162, fixing issue #6161, in v1.11.0).
So `<x>.<svc>.<ns>.svc.<zone>` and `<x>.<y>.<svc>.<ns>.svc.<zone>` under an ExternalName Service
are NXDOMAIN for every query type, while the Service's own name keeps its CNAME. The upstream test
rows ("A query for subdomains of an external service should not resolve to the external service")
are reproduced here on handler_test.go's fixture (Service `external` -> ext.interwebs.test).
"""
from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE

from netsim.dns.corefile import Corefile, KubernetesPlugin
from netsim.dns.resolvconf import ResolvConf
from netsim.dns.resolver import ClusterDNS
from netsim.dns.stub import search
from netsim.dns.upstream import UpstreamResolver
from netsim.control.model import Service
from dns_fixtures import ask, coredns_testns, rrset

SOA5 = "cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"
QTYPES = ("A", "AAAA", "CNAME", "TXT", "SRV", "MX", "PTR", "HINFO")


def _dns(cluster=None) -> ClusterDNS:
    kp = KubernetesPlugin(zones=("cluster.local.",), ttl=5, pods="disabled", fallthrough=(), namespaces=())
    up = UpstreamResolver.from_config({"ext.interwebs.test": ["1.2.3.4"], "www.google.com": ["142.250.1.1"]})
    return ClusterDNS(cluster or coredns_testns(), corefile=Corefile(kubernetes=kp, loadbalance=False, cache=None), upstream=up)


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("qname", [
    "subdomain.external.testns.svc.cluster.local.",            # an endpoint label
    "subdomain.subdomain.external.testns.svc.cluster.local.",  # two labels: port.protocol
    "_http._tcp.external.testns.svc.cluster.local.",           # a well-formed SRV name
    "_http._tcp.external-to-service.testns.svc.cluster.local.",
])
def test_names_below_an_external_name_service_do_not_exist(qname, qtype):
    reply = ask(_dns(), qname, qtype)
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN", (qname, qtype)
    assert not reply.rr and rrset(reply.auth) == {SOA5}


@pytest.mark.parametrize("qtype,answer", [
    ("CNAME", [("CNAME", "ext.interwebs.test.")]),
    ("A", [("CNAME", "ext.interwebs.test."), ("A", "1.2.3.4")]),
])
def test_the_services_own_name_keeps_its_cname(qtype, answer):
    reply = ask(_dns(), "external.testns.svc.cluster.local.", qtype)
    assert RCODE.get(reply.header.rcode) == "NOERROR"
    assert [(QTYPE.get(rr.rtype), str(rr.rdata)) for rr in reply.rr] == answer


def test_a_service_named_like_a_tld_does_not_capture_the_search_walk():
    # issue #6161: a Service `com` (ExternalName) in the pod's namespace; the pod looks up
    # www.google.com (2 dots < ndots 5), so glibc first tries www.google.com.default.svc.cluster.local.
    c = coredns_testns()
    c.svcs.append(Service("com", "default", type="ExternalName", external_name="svc1.testns.svc.cluster.local."))
    dns = _dns(c)
    reply = ask(dns, "www.google.com.default.svc.cluster.local.", "A")
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"
    assert RCODE.get(ask(dns, "com.default.svc.cluster.local.", "A").header.rcode) == "NOERROR"   # own name
    rc = ResolvConf(nameservers=("10.0.0.10",), options=("ndots:5",),
                    searches=("default.svc.cluster.local", "svc.cluster.local", "cluster.local"))
    result = search(rc, "www.google.com", lambda name, qtype: dns.answer(_question(name, qtype)), family="AF_INET")
    # every search step is NXDOMAIN, so glibc ends with the name as is, answered upstream
    assert result.queries == [("www.google.com.default.svc.cluster.local.", "A"),
                              ("www.google.com.svc.cluster.local.", "A"),
                              ("www.google.com.cluster.local.", "A"), ("www.google.com.", "A")]
    assert result.ok and result.answer_ips == ["142.250.1.1"]


def _question(name: str, qtype: str):
    from dnslib import DNSRecord
    return DNSRecord.question(name, qtype)
