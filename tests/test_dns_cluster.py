"""The CoreDNS stand-in on a live netsim Cluster (kubeadm Corefile: ttl 30, pods insecure, reverse
fallthrough to forward): records follow the controllers as pods, readiness and services change.

Expectations: Kubernetes DNS spec 1.1.0 §2.3–2.5 (A, SRV, PTR, headless, ExternalName), the docs page
"DNS for Services and Pods" (StatefulSet pod names web-0.nginx.<ns>.svc), CoreDNS object/endpoint.go
(only Ready endpoints), plugin/forward (SERVFAIL when no upstream answers).
"""
from __future__ import annotations

from dnslib import DNSRecord, RCODE

from netsim.dns.corefile import Corefile
from netsim.dns.resolver import ClusterDNS
from netsim.control.manifests import load, load_text
from dns_fixtures import ask, rrset

HEADLESS = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: dns}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}]
  upstreamDNS:
    example.com: [93.184.216.34]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-hl, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-all, namespace: default}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: web}
  ports: [{name: http, port: 80}]
"""


def ips(reply: DNSRecord) -> set[str]:
    return {str(rr.rdata) for rr in reply.rr}


def test_clusterip_service_and_srv_on_kubeadm_defaults():
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    backend = c.service("shop", "backend")
    assert rrset(ask(dns, "backend.shop.svc.cluster.local.").rr) == {
        f"backend.shop.svc.cluster.local. 30 A {backend.cluster_ip}"}
    srv = ask(dns, "_api._tcp.backend.shop.svc.cluster.local.", "SRV")
    assert rrset(srv.rr) == {"_api._tcp.backend.shop.svc.cluster.local. 30 SRV 0 100 8080 backend.shop.svc.cluster.local."}
    # bare-name SRV: both named ports, weight floor(100/2) = 50 (coredns/ci svc-1-a)
    bare = ask(dns, "backend.shop.svc.cluster.local.", "SRV")
    assert {str(rr.rdata) for rr in bare.rr} == {"0 50 8080 backend.shop.svc.cluster.local.",
                                                 "0 50 9100 backend.shop.svc.cluster.local."}


def test_statefulset_pods_get_hostname_records():
    # docs: StatefulSet pod db-0 with subdomain db → db-0.db.shop.svc.cluster.local
    c = load(["example:shop"])
    dns = ClusterDNS(c)
    db0 = c.pod("shop", "db-0")
    assert ips(ask(dns, "db-0.db.shop.svc.cluster.local.")) == {db0.ip}
    srv = ask(dns, "_postgres._tcp.db.shop.svc.cluster.local.", "SRV")
    assert {str(rr.rdata) for rr in srv.rr} == {"0 50 5432 db-0.db.shop.svc.cluster.local.",
                                                "0 50 5432 db-1.db.shop.svc.cluster.local."}
    # spec §2.4.3: the endpoint's PTR is its hostname record
    ptr = ask(dns, ".".join(reversed(db0.ip.split("."))) + ".in-addr.arpa.", "PTR")
    assert [str(rr.rdata) for rr in ptr.rr] == ["db-0.db.shop.svc.cluster.local."]


def test_external_name_chased_through_upstream():
    # spec §2.5: CNAME to the external name; CoreDNS resolves the target through forward
    c = load(["example:shop"])
    reply = ask(ClusterDNS(c), "payments.shop.svc.cluster.local.")
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.rr] == [
        ("payments.shop.svc.cluster.local.", "payments.example.com."),
        ("payments.example.com.", "203.0.113.10")]


NO_CACHE = Corefile(cache=None)          # the kubernetes plugin's own answers, without `cache 30`


def test_headless_follows_readiness_and_publish_not_ready():
    c = load_text(HEADLESS)
    dns = ClusterDNS(c, corefile=NO_CACHE)
    pods = sorted(c.pods("default"), key=lambda p: p.name)
    assert ips(ask(dns, "web-hl.default.svc.cluster.local.")) == {p.ip for p in pods}
    c.set_pod_ready("default", pods[0].name, False)
    # object/endpoint.go: only Ready endpoints; the watch event makes the stand-in rebuild
    assert ips(ask(dns, "web-hl.default.svc.cluster.local.")) == {p.ip for p in pods[1:]}
    # publishNotReadyAddresses: the EndpointSlice controller keeps ready=true
    assert ips(ask(dns, "web-all.default.svc.cluster.local.")) == {p.ip for p in pods}
    for p in pods:
        c.set_pod_ready("default", p.name, False)
    # spec §2.4.1: a headless Service with no ready endpoints has no A records → NXDOMAIN
    assert RCODE.get(ask(dns, "web-hl.default.svc.cluster.local.").header.rcode) == "NXDOMAIN"


def test_scale_adds_records_and_deleted_service_disappears():
    c = load_text(HEADLESS)
    dns = ClusterDNS(c, corefile=NO_CACHE)
    c.scale("default", "web", 5)
    assert len(ask(dns, "web-hl.default.svc.cluster.local.").rr) == 5
    c.delete_service("default", "web-hl")
    assert RCODE.get(ask(dns, "web-hl.default.svc.cluster.local.").header.rcode) == "NXDOMAIN"


def test_forward_outside_the_zone():
    c = load_text(HEADLESS)
    dns = ClusterDNS(c)
    ok = ask(dns, "Example.COM.")
    # forwarded answers carry the upstream's flags: qr rd ra, not authoritative; the case is kept
    assert (ok.header.aa, ok.header.ra) == (0, 1)
    assert [(str(rr.rname), str(rr.rdata)) for rr in ok.rr] == [("Example.COM.", "93.184.216.34")]
    assert RCODE.get(ask(dns, "nosuch.example.").header.rcode) == "NXDOMAIN"
    assert RCODE.get(ask(dns, "example.com.", "AAAA").header.rcode) == "NOERROR"


def test_no_upstream_is_servfail():
    # plugin/forward: every upstream failed → SERVFAIL
    c = load(["example:httpd-app"])
    reply = ask(ClusterDNS(c), "example.com.")
    assert RCODE.get(reply.header.rcode) == "SERVFAIL" and not reply.rr


def test_reverse_fallthrough_goes_to_forward():
    # kubeadm: fallthrough in-addr.arpa ip6.arpa — an unknown PTR is the upstream's answer, not the plugin's
    c = load_text(HEADLESS)
    dns = ClusterDNS(c)
    reply = ask(dns, "4.3.2.1.in-addr.arpa.", "PTR")
    assert RCODE.get(reply.header.rcode) == "NXDOMAIN"
    assert reply.header.aa == 0 and not reply.auth          # from forward, no kubernetes SOA
    kube_dns = ask(dns, "10.0.96.10.in-addr.arpa.", "PTR")
    assert [str(rr.rdata) for rr in kube_dns.rr] == ["kube-dns.kube-system.svc.cluster.local."]
    # under cluster.local NXDOMAIN is final (authoritative, SOA present)
    nx = ask(dns, "nosuch.default.svc.cluster.local.")
    assert nx.header.aa == 1 and len(nx.auth) == 1


def test_loadbalance_shuffles_addresses_reproducibly():
    # plugin/loadbalance: A records shuffled per answer; the shuffle draws from a seeded RNG
    c = load_text(HEADLESS)
    c.scale("default", "web", 6)
    orders = [tuple(str(rr.rdata) for rr in ask(ClusterDNS(c), "web-hl.default.svc.cluster.local.").rr)
              for _ in range(2)]
    assert orders[0] == orders[1]                                  # same seed, same order
    dns = ClusterDNS(c)
    seen = {tuple(str(rr.rdata) for rr in ask(dns, "web-hl.default.svc.cluster.local.").rr) for _ in range(10)}
    assert len(seen) > 1                                           # but it does rotate
