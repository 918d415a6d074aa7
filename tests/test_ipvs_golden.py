"""Golden text of a multi-service node in IPVS mode: ``ipvsadm -Sn`` + ``ipset save`` + iptables.

tests/golden/ipvs/cluster.yaml covers ClusterIP with affinity, NodePort + externalIPs,
LoadBalancer with eTP Local / health-check port / source ranges, iTP Local without local
endpoints, a Service without endpoints, and CoreDNS. The expected text was reviewed line by line
against pkg/proxy/ipvs/proxier.go and the orderings proxier_test.go asserts (TestLoadBalancer,
TestOnlyLocalNodePorts, TestLoadBalancerSourceRanges, TestAcceptIPVSTraffic,
TestTestInternalTrafficPolicyE2E); this test pins it. Regenerate with NETSIM_UPDATE_GOLDEN=1
only after re-checking those facts.
"""
from __future__ import annotations

import os
from pathlib import Path

from netsim.manifests import load
from netsim.rules.ipvs.ipvsadm import parse_save, render_save
from netsim.rules.ipset import parse_save as parse_ipset_save
from netsim.rules.ipvs.proxier import build

HERE = Path(__file__).parent / "golden" / "ipvs"


def _state():
    return build(load([str(HERE / "cluster.yaml")]), "node-1")


def test_golden_node_1():
    text = _state().render()
    path = HERE / "node-1.txt"
    if os.environ.get("NETSIM_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_golden_text_replays_through_the_parsers():
    st = _state()
    # ipvsadm -Sn -> table -> ipvsadm -Sn is the identity (a dump from a node can be replayed)
    assert render_save(parse_save(st.ipvsadm_save())) == st.ipvsadm_save()
    assert parse_ipset_save(st.ipset_save()).save() == st.ipset_save()


def test_golden_facts_from_upstream_tests():
    st = _state()
    save = st.ipvsadm_save()
    # TestTestInternalTrafficPolicyE2E: iTP Local without local endpoints -> VS with no real server
    assert "-A -t 10.96.100.40:443 -s rr\n-A -t 10.244.0.0:30080" in save
    # eTP Local without local endpoints: the LB VS still forwards to the remote endpoint (PR #97081)
    assert "-a -t 192.168.49.240:443 -r 10.244.1.4:8443 -m -w 1" in save
    # affinity: persistent 10800 (API default)
    assert "-A -t 10.96.100.10:80 -s rr -p 10800" in save
    nat = [l for l in st.restore.nat_rules if l.startswith("-A KUBE-SERVICES")]
    assert nat[0] == "-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN"
    assert nat[-2:] == ["-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT",
                        "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j ACCEPT"]
