"""The pod side: kubelet's resolv.conf and glibc's search walk.

resolv.conf expectations: kubernetes pkg/kubelet/network/dns/dns.go (GetPodDNS, getPodDNSType,
generateSearchesForDNSClusterFirst, appendDNSConfig, formDNSConfigFitsLimits) and the docs page
"DNS for Services and Pods". Query sequences: glibc resolv/res_query.c __res_context_search, as
measured with getaddrinfo(AF_UNSPEC) on glibc 2.36 in a scratch netns (tests/test_dns_kernel.py runs them).
"""
from __future__ import annotations

import pytest
from dnslib import DNSRecord, RCODE

from netsim.dns.resolvconf import ResolvConf, ResolvConfError, pod_resolv_conf
from netsim.dns.resolver import ClusterDNS
from netsim.dns.stub import resolve, search, search_candidates
from netsim.control.manifests import load_text
from netsim.control.model import ClusterConfig, Pod

CLUSTER = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: stub}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}]
  upstreamDNS: {example.com: [93.184.216.34]}
---
apiVersion: v1
kind: Namespace
metadata: {name: other-ns}
---
apiVersion: v1
kind: Service
metadata: {name: my-svc, namespace: default}
spec: {clusterIP: 10.96.100.1, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: my-svc, namespace: other-ns}
spec: {clusterIP: 10.96.100.2, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
"""


@pytest.fixture(scope="module")
def cluster():
    return load_text(CLUSTER)


def direct(cluster):
    dns = ClusterDNS(cluster)
    return lambda name, qtype: dns.answer(DNSRecord.question(name, qtype))


# ---------------------------------------------------------------- resolv.conf
def test_cluster_first_resolv_conf_text():
    pod = Pod("client", "default")
    text = pod_resolv_conf(pod, ClusterConfig()).render()
    # docs: the file for a pod in `default` with kubeadm's kube-dns IP
    assert text == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                    "nameserver 10.96.0.10\noptions ndots:5\n")


def test_node_search_domains_follow_cluster_ones_and_node_options_drop():
    node = ResolvConf(("192.168.49.1",), ("ec2.internal", "svc.cluster.local"), ("timeout:1",))
    rc = pod_resolv_conf(Pod("p", "shop"), ClusterConfig(), node=node)
    assert rc.searches == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "ec2.internal")
    assert rc.options == ("ndots:5",) and rc.nameservers == ("10.96.0.10",)


def test_policies_default_hostnetwork_and_with_hostnet():
    node = ResolvConf(("192.168.49.1",), ("corp.example",), ("timeout:1",))
    cfg = ClusterConfig()
    assert pod_resolv_conf(Pod("p", dns_policy="Default"), cfg, node) == node
    # ClusterFirst + hostNetwork falls back to Default; ClusterFirstWithHostNet keeps cluster DNS
    assert pod_resolv_conf(Pod("p", host_network=True), cfg, node) == node
    with_hn = pod_resolv_conf(Pod("p", host_network=True, dns_policy="ClusterFirstWithHostNet"), cfg, node)
    assert with_hn.nameservers == ("10.96.0.10",)


def test_dns_config_merged_and_none_policy():
    cfg = ClusterConfig()
    pod = Pod("p", dns_config={"nameservers": ["1.1.1.1"], "searches": ["x.example", "svc.cluster.local"],
                               "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    rc = pod_resolv_conf(pod, cfg)
    assert rc.nameservers == ("10.96.0.10", "1.1.1.1")
    assert rc.searches == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local", "x.example")
    assert rc.options == ("ndots:2", "edns0") and rc.ndots == 2
    none = pod_resolv_conf(Pod("p", dns_policy="None", dns_config={"nameservers": ["9.9.9.9"]}), cfg)
    assert none.render() == "nameserver 9.9.9.9\n"
    with pytest.raises(ResolvConfError, match="dnsConfig"):
        pod_resolv_conf(Pod("p", dns_policy="None"), cfg)
    with pytest.raises(ResolvConfError, match="dnsPolicy"):
        pod_resolv_conf(Pod("p", dns_policy="Bogus"), cfg)


def test_limits_three_nameservers_32_searches():
    pod = Pod("p", dns_policy="None", dns_config={
        "nameservers": [f"10.0.0.{i}" for i in range(5)], "searches": [f"d{i}.example" for i in range(40)]})
    rc = pod_resolv_conf(pod, ClusterConfig())
    assert len(rc.nameservers) == 3 and len(rc.searches) == 32


def test_parse_roundtrip():
    text = "search a.b c.d\nnameserver 10.96.0.10\noptions ndots:5 edns0\n"
    assert ResolvConf.parse(text).render() == text


# ---------------------------------------------------------------- glibc walk
WALKS = [
    # (lookup, queries sent, error, answers) — glibc 2.36 getaddrinfo(AF_UNSPEC), measured
    ("my-svc", [("my-svc.default.svc.cluster.local.", "A"), ("my-svc.default.svc.cluster.local.", "AAAA")],
     None, ["10.96.100.1"]),
    ("my-svc.other-ns", [("my-svc.other-ns.default.svc.cluster.local.", "A"),
                         ("my-svc.other-ns.default.svc.cluster.local.", "AAAA"),
                         ("my-svc.other-ns.svc.cluster.local.", "A"), ("my-svc.other-ns.svc.cluster.local.", "AAAA")],
     None, ["10.96.100.2"]),
    ("example.com", [(n, t) for n in ("example.com.default.svc.cluster.local.", "example.com.svc.cluster.local.",
                                      "example.com.cluster.local.", "example.com.") for t in ("A", "AAAA")],
     None, ["93.184.216.34"]),
    ("nosuch", [(n, t) for n in ("nosuch.default.svc.cluster.local.", "nosuch.svc.cluster.local.",
                                 "nosuch.cluster.local.", "nosuch.") for t in ("A", "AAAA")], "EAI_NONAME", []),
    ("my-svc.default.svc.cluster.local",
     [(n, t) for n in ("my-svc.default.svc.cluster.local.default.svc.cluster.local.",
                       "my-svc.default.svc.cluster.local.svc.cluster.local.",
                       "my-svc.default.svc.cluster.local.cluster.local.",
                       "my-svc.default.svc.cluster.local.") for t in ("A", "AAAA")], None, ["10.96.100.1"]),
    ("my-svc.default.svc.cluster.local.", [("my-svc.default.svc.cluster.local.", "A"),
                                           ("my-svc.default.svc.cluster.local.", "AAAA")], None, ["10.96.100.1"]),
    ("a.b.c.d.e.f", [(n, t) for n in ("a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local.",
                                      "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local.")
                     for t in ("A", "AAAA")], "EAI_NONAME", []),
    # NODATA at default.svc.cluster.local keeps walking, and NODATA is the final error
    ("default", [(n, t) for n in ("default.default.svc.cluster.local.", "default.svc.cluster.local.",
                                  "default.cluster.local.", "default.") for t in ("A", "AAAA")], "EAI_NODATA", []),
]


@pytest.mark.parametrize("name,queries,error,answers", WALKS, ids=[w[0] for w in WALKS])
def test_glibc_walk(cluster, name, queries, error, answers):
    result = resolve(cluster.pod("default", "client"), name, cluster, direct(cluster))
    assert result.queries == queries
    assert result.error == error
    assert result.answer_ips == answers


def test_af_inet_sends_only_a(cluster):
    result = resolve(cluster.pod("default", "client"), "example.com", cluster, direct(cluster), family="AF_INET")
    assert [t for _, t in result.queries] == ["A"] * 4


def test_refused_stops_the_search_list_but_tries_as_is():
    # res_query.c: an error other than NXDOMAIN/NODATA/SERVFAIL ends the search list; the as-is query follows
    rc = ResolvConf(("10.96.0.10",), ("a.example", "b.example"), ("ndots:5",))
    sent = []

    def refused(name, qtype):
        sent.append(name)
        r = DNSRecord.question(name, qtype).reply()
        r.header.rcode = RCODE.REFUSED
        return r
    result = search(rc, "x", refused, family="AF_INET")
    assert sent == ["x.a.example.", "x."]
    assert result.error == "EAI_FAIL"


def test_servfail_continues_and_is_reported_as_try_again():
    rc = ResolvConf(("10.96.0.10",), ("a.example", "b.example"), ("ndots:5",))

    def answer(name, qtype):
        r = DNSRecord.question(name, qtype).reply()
        r.header.rcode = RCODE.SERVFAIL if name.startswith("x.a.") else RCODE.NXDOMAIN
        return r
    result = search(rc, "x", answer, family="AF_INET")
    assert [n for n, _ in result.queries] == ["x.a.example.", "x.b.example.", "x."]
    assert result.error == "EAI_AGAIN"


def test_search_candidates_and_ndots_option():
    rc = ResolvConf(("10.96.0.10",), ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"),
                    ("ndots:1",))
    # with ndots:1 a dotted name is tried as is first
    assert search_candidates(rc, "example.com")[0] == "example.com."
    assert search_candidates(rc, "web") == ["web.default.svc.cluster.local.", "web.svc.cluster.local.",
                                            "web.cluster.local.", "web."]
