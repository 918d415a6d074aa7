"""`-m ipvs` (xt_ipvs): iptables-save text and what the kernel's ipvs_mt matches.

* Text: iptables' own test vectors, extensions/libxt_ipvs.t and libipt_ipvs.t (iptables 1.8.x):
  "given;saved;OK" lines, "=" meaning saved as given.
* Semantics: net/netfilter/xt_ipvs.c ipvs_mt (options imply --ipvs; the connection is found from
  the packet read inverted, so the request after IPVS's DNAT matches; --vaddr/--vport compare the
  connection's virtual address and port).
* kube-proxy's use: pkg/proxy/ipvs/proxier.go writes
  `-A KUBE-IPVS-OUT-FILTER -s VIP -m ipvs --vaddr VIP --vproto tcp --vport 80 -j DROP` for a
  LoadBalancer IP whose loadBalancerSourceRanges do not admit the node (kubernetes issue #119656):
  the node's own connection to the VIP (its source is the VIP, held by kube-ipvs0) is dropped.
"""
from __future__ import annotations

import socket

import pytest

from ipvs_helpers import cluster_with
from netsim.dataplane.walker import Walker
from netsim.rules.iptables import IptablesError, parse

HEAD = "*filter\n:OUTPUT ACCEPT [0:0]\n"


def _saved(spec: str) -> str:
    rs = parse(HEAD + f"-A OUTPUT {spec} -j DROP\nCOMMIT\n")
    return list(rs.rules())[-1].render().removeprefix("-A OUTPUT ").removesuffix(" -j DROP")


VECTORS = [   # libxt_ipvs.t + libipt_ipvs.t (IPv4 lines)
    ("-m ipvs --ipvs", "="),
    ("-m ipvs ! --ipvs", "="),
    ("-m ipvs --vproto tcp", "-m ipvs --vproto 6"),
    ("-m ipvs ! --vproto TCP", "-m ipvs ! --vproto 6"),
    ("-m ipvs --vproto 23", "="),
    ("-m ipvs --vport 22", "="),
    ("-m ipvs ! --vport 443", "="),
    ("-m ipvs --vdir ORIGINAL", "="),
    ("-m ipvs --vdir REPLY", "="),
    ("-m ipvs --vmethod GATE", "="),
    ("-m ipvs ! --vmethod IPIP", "="),
    ("-m ipvs --vmethod MASQ", "="),
    ("-m ipvs --vportctl 21", "="),
    ("-m ipvs ! --vportctl 21", "="),
    ("-m ipvs --vaddr 1.2.3.4", "="),
    ("-m ipvs ! --vaddr 1.2.3.4/255.255.255.0", "-m ipvs ! --vaddr 1.2.3.4/24"),
    ("-m ipvs --vproto 6 --vaddr 1.2.3.4/16 --vport 22 --vdir ORIGINAL --vmethod GATE", "="),
]


@pytest.mark.parametrize("given,saved", VECTORS)
def test_iptables_test_vectors(given, saved):
    assert _saved(given) == (given if saved == "=" else saved)


def test_service_names_as_in_the_vectors():
    try:
        http, ssh = socket.getservbyname("http"), socket.getservbyname("ssh")
    except OSError:
        pytest.skip("this machine has no /etc/services entries for http/ssh (Debian: netbase)")
    assert (http, ssh) == (80, 22)
    assert _saved("-m ipvs --vport http") == "-m ipvs --vport 80"
    assert _saved("-m ipvs ! --vport ssh") == "-m ipvs ! --vport 22"


def test_kube_proxy_rule_in_iptables_save_form():
    # option order follows libxt_ipvs's dump (vproto before vaddr), protocol as a number
    assert _saved("-s 203.0.113.40 -m ipvs --vaddr 203.0.113.40 --vproto tcp --vport 80") == \
        "-s 203.0.113.40/32 -m ipvs --vproto 6 --vaddr 203.0.113.40 --vport 80"


@pytest.mark.parametrize("spec,msg", [
    ("-m ipvs", "at least one option"),
    ("-m ipvs ! --ipvs --vport 80", "! --ipvs cannot be together"),
    ("-m ipvs --vdir SIDEWAYS", "--vdir must be ORIGINAL or REPLY"),
    ("-m ipvs --vmethod NAT", "--vmethod must be one of GATE, IPIP, MASQ"),
    ("-m ipvs --vport 70000", "port must be 0-65535"),
])
def test_bad_options_are_one_line_errors(spec, msg):
    with pytest.raises(IptablesError, match=msg):
        _saved(spec)


LB = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  clusterIP: 10.96.100.10
  loadBalancerSourceRanges: [%s]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.40}]
"""


def test_node_to_lb_vip_outside_its_source_ranges_is_dropped_by_the_ipvs_match():
    c = cluster_with(LB % "198.51.100.0/24")
    w = Walker(c)
    t = w.connect(w.host_for("node/node-1"), "203.0.113.40", 80)
    assert t.flow.src == "203.0.113.40"           # kube-ipvs0 holds the VIP: it is the source
    assert t.outcome.disposition == "DROPPED"
    rules = [s.extra["rule"] for s in t.request.steps("RULE")]
    assert rules[-1] == "-A KUBE-IPVS-OUT-FILTER -s 203.0.113.40/32 -m ipvs --vproto 6 --vaddr 203.0.113.40 --vport 80 -j DROP"
    # IPVS had scheduled it first (LOCAL_OUT, priority NF_IP_PRI_NAT_DST + 2 < filter's 0)
    assert [s.detail for s in t.request.steps("IPVS")][0].startswith("LOCAL_OUT: dnat 203.0.113.40:80 -> ")
    # the rule is specific: the same node reaches the ClusterIP of that Service
    ok = w.connect(w.host_for("node/node-1"), "10.96.100.10", 80)
    assert ok.outcome.disposition == "DELIVERED"


def test_node_inside_the_source_ranges_reaches_the_lb_vip():
    c = cluster_with(LB % "192.168.49.0/24")
    w = Walker(c)
    t = w.connect(w.host_for("node/node-1"), "203.0.113.40", 80)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request
    assert not any("KUBE-IPVS-OUT-FILTER -s" in s.extra["rule"] for s in t.request.steps("RULE"))
