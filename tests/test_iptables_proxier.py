"""Behaviour of the iptables proxier beyond the upstream goldens.

Expectations follow kubernetes/kubernetes pkg/proxy/iptables/proxier.go (syncProxyRules,
writeServiceToEndpointRules) and pkg/proxy/topology.go (CategorizeEndpoints); upstream pins
these cases only with packet-flow tests (TestInternalTrafficPolicy,
TestTerminatingEndpointsTrafficPolicy*, TestInternalExternalMasquerade, TestNodePorts), so the
line shapes asserted here are the ones proxier.go writes for those cases.
"""
from __future__ import annotations

import re

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from netsim.control.manifests import load, load_text
from netsim.rules.iptables.proxier import (
    EndpointInfo,
    ProxierConfig,
    ProxierInputError,
    ServicePortInfo,
    compute_probability,
    endpoints_key,
    render,
    restore_text,
    sync_proxy_rules,
)

SHAPES = str(Path(__file__).parent / "fixtures" / "iptables_shapes.yaml")


def rules_of(text: str, chain: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"-A {chain} ")]


def sync(svc: ServicePortInfo, eps: list[EndpointInfo], **cfg) -> str:
    return sync_proxy_rules([svc], {endpoints_key(svc): eps}, ProxierConfig.upstream_test_fake(**cfg)).text()


SVC = dict(namespace="ns1", name="svc1", cluster_ip="172.30.1.1", port=80)


def test_itp_local_without_local_endpoints_drops_cluster_ip() -> None:
    # TestInternalTrafficPolicy "no local endpoints": DROP in filter, nothing for the ClusterIP in nat.
    svc = ServicePortInfo(**SVC, internal_policy_local=True)
    text = sync(svc, [EndpointInfo("10.0.1.1", 80), EndpointInfo("10.0.1.2", 80)])
    assert rules_of(text, "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1 has no local endpoints" -m tcp -p tcp '
        "-d 172.30.1.1 --dport 80 -j DROP",
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
        'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ]
    assert "KUBE-SVC-" not in text and "KUBE-SEP-" not in text


def test_itp_local_uses_only_local_endpoints_via_svl() -> None:
    svc = ServicePortInfo(**SVC, internal_policy_local=True)
    text = sync(svc, [EndpointInfo("10.0.1.1", 80, is_local=True), EndpointInfo("10.0.1.2", 80),
                      EndpointInfo("10.0.1.3", 80, is_local=True)])
    svl = svc.local_policy_chain
    assert svl.startswith("KUBE-SVL-")
    assert f"-j {svl}" in rules_of(text, "KUBE-SERVICES")[0]
    # The masquerade rule is the first rule of the internal (here: local) chain.
    assert rules_of(text, svl)[0].endswith("! -s 10.0.0.0/8 -j KUBE-MARK-MASQ")
    dispatch = [r for r in rules_of(text, svl) if "KUBE-SEP-" in r]
    assert [r.split('"')[1] for r in dispatch] == ["ns1/svc1 -> 10.0.1.1:80", "ns1/svc1 -> 10.0.1.3:80"]
    assert svc.cluster_policy_chain not in text


def test_terminating_endpoints_are_a_fallback_only() -> None:
    svc = ServicePortInfo(**SVC)
    ready = EndpointInfo("10.0.1.1", 80)
    term = EndpointInfo("10.0.1.2", 80, ready=False, serving=True, terminating=True)
    text = sync(svc, [ready, term])
    assert "10.0.1.2" not in text                                # ready endpoints exist: ignored
    text = sync(svc, [term, EndpointInfo("10.0.1.3", 80, ready=False, serving=False, terminating=True)])
    assert "--to-destination 10.0.1.2:80" in text and "10.0.1.3" not in text
    text = sync(svc, [EndpointInfo("10.0.1.3", 80, ready=False, serving=False, terminating=True)])
    assert '"ns1/svc1 has no endpoints"' in text and "-j REJECT" in text   # nothing serving: REJECT


def test_masquerade_all_and_missing_detector() -> None:
    svc = ServicePortInfo(**SVC, node_port=3001, load_balancer_vips=["1.2.3.4"], external_policy_local=True)
    eps = [EndpointInfo("10.0.1.1", 80, is_local=True)]
    masq_all = rules_of(sync(svc, eps, masquerade_all=True), svc.cluster_policy_chain)[0]
    assert masq_all == (f'-A {svc.cluster_policy_chain} -m comment --comment "ns1/svc1 cluster IP" -m tcp -p tcp '
                        "-d 172.30.1.1 --dport 80 -j KUBE-MARK-MASQ")
    no_detector = sync(svc, eps, local_detector=None)
    assert "KUBE-MARK-MASQ" not in " ".join(rules_of(no_detector, svc.cluster_policy_chain))
    assert not any("pod traffic for" in r for r in rules_of(no_detector, svc.external_chain))
    assert any("pod traffic for" in r for r in rules_of(sync(svc, eps), svc.external_chain))


def test_localhost_nodeports_off_and_nodeport_addresses() -> None:
    svc = ServicePortInfo(**SVC, node_port=3001)
    eps = [EndpointInfo("10.0.1.1", 80)]
    off = sync(svc, eps, localhost_nodeports=False)
    assert rules_of(off, "KUBE-SERVICES")[-1].endswith("-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")
    assert "127.0.0.0/8 --dport 3001" not in off and "KUBE-FIREWALL -m" not in off
    per_ip = sync(svc, eps, node_port_addresses=["192.168.0.0/24", "127.0.0.1/32"], localhost_nodeports=True)
    tails = [r for r in rules_of(per_ip, "KUBE-SERVICES") if "nodeports" in r]
    assert [r.split(" -d ")[1] for r in tails] == ["192.168.0.2 -j KUBE-NODEPORTS", "127.0.0.1 -j KUBE-NODEPORTS"]


def test_probabilities_and_endpoint_order() -> None:
    # TestComputeProbability values; endpoints sorted by "IP:port" string (byEndpoint).
    assert compute_probability(2) == "0.5000000000"
    assert compute_probability(100001) == "0.0000099999"
    svc = ServicePortInfo(**SVC)
    eps = [EndpointInfo(ip, 80) for ip in ("10.0.0.2", "10.0.0.10", "10.0.0.3")]
    dispatch = [r for r in rules_of(sync(svc, eps), svc.cluster_policy_chain) if "KUBE-SEP-" in r]
    assert ["10.0.0.10:80" in dispatch[0], "10.0.0.2:80" in dispatch[1], "10.0.0.3:80" in dispatch[2]] == [True] * 3
    assert "--probability 0.3333333333" in dispatch[0] and "--probability 0.5000000000" in dispatch[1]
    assert "statistic" not in dispatch[2]


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=2, max_value=100000))
def test_probability_strictly_decreasing(n: int) -> None:
    # TestComputeProbability checks i = 100000 .. 2 (beyond that %0.10f stops being strictly monotonic).
    assert float(compute_probability(n)) < float(compute_probability(n - 1))


def test_mark_formatting() -> None:
    assert ProxierConfig.mark_for_bit(14) == "0x00004000"   # fmt.Sprintf("%#08x", 1<<14)
    assert ProxierConfig.mark_for_bit(0) == "0x00000001"


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ProxierInputError, match=r"service ns1/svc1: clusterIP: '300.1.1.1' is not an IPv4"):
        ServicePortInfo(**{**SVC, "cluster_ip": "300.1.1.1"})
    with pytest.raises(ProxierInputError, match="loadBalancerSourceRanges"):
        ServicePortInfo(**SVC, load_balancer_source_ranges=["nonsense"])
    with pytest.raises(ProxierInputError, match="protocol"):
        ServicePortInfo(**SVC, protocol="ICMP")
    # Sloppy addresses are normalised like ParseIPSloppy (TestBadIPs).
    assert ServicePortInfo(**{**SVC, "cluster_ip": "172.30.0.041"}).cluster_ip == "172.30.0.41"


# --- the node view from a cluster ---

def test_node_view_builtin_jumps_in_reverse_insertion_order() -> None:
    text = render(load(["example:httpd-app"]), "node-1")
    targets = {chain: [r.split(" -j ")[-1] for r in rules_of(text, chain)] for chain in ("INPUT", "FORWARD", "OUTPUT")}
    # pkg/util/iptables/iptables.go EnsureRule(Prepend) leaves each built-in chain in reverse insertion order.
    assert targets["INPUT"] == ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]
    assert targets["FORWARD"] == ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    assert targets["OUTPUT"][:3] == ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"]
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in text
    assert text.count(":KUBE-PROXY-CANARY - [0:0]") == 3


def test_node_view_from_cluster_per_node_local_endpoints() -> None:
    cluster = load([SHAPES])
    pods = {p.node_name: [] for p in cluster.pods()}
    for p in cluster.pods("default"):
        pods[p.node_name].append(p.ip)
    svc = next(s for s in cluster.services() if s.name == "web-local")
    chain = ServicePortInfo(svc.namespace, svc.name, svc.cluster_ip, 8080, port_name="http").local_policy_chain
    for node in ("node-1", "node-2"):
        text = restore_text(cluster, node)
        local = sorted(r.split("-> ")[1].split(":")[0] for r in rules_of(text, chain))
        assert local == sorted(pods.get(node, [])), node
    text = restore_text(cluster, "node-1")
    assert '"default/nothing:http has no endpoints"' in text
    assert "0x00004000" in text and "MASQUERADE --random-fully" in text and "! -s 10.244.0.0/16" in text


def test_headless_and_external_name_services_are_skipped() -> None:
    text = restore_text(load(["example:shop"]), "node-1")
    assert "shop/db" not in text and "shop/payments" not in text and "shop/frontend" in text


def test_unknown_node_and_table_are_clear_errors() -> None:
    cluster = load(["example:httpd-app"])
    with pytest.raises(ProxierInputError, match="node 'node-9' not found"):
        render(cluster, "node-9")
    with pytest.raises(ProxierInputError, match="table 'raw'"):
        render(cluster, "node-1", tables=("raw",))
    assert render(cluster, "node-1", tables=("nat",)).startswith("*nat\n")


def test_load_text_cluster_renders_nodeport_chain() -> None:
    cluster = load_text("""
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: t}
spec:
  nodes: [{name: n1, ip: 192.168.49.2}]
  masqueradeAll: true
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: default}
spec:
  type: NodePort
  selector: {app: none}
  ports: [{port: 80, nodePort: 30001}]
""")
    text = restore_text(cluster, "n1")
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/s has no endpoints" -m addrtype --dst-type LOCAL '
            "-m tcp -p tcp --dport 30001 -j REJECT") in text


def test_cli_rules_command() -> None:
    from click.testing import CliRunner

    from netsim.cli.main import cli
    runner = CliRunner()
    ok = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", "--table", "nat"])
    assert ok.exit_code == 0 and ok.output.startswith("*nat\n") and "*filter" not in ok.output
    # iptables-save's spelling: header fields first, /32, the comment where it was written
    assert re.search(r'^-A KUBE-SERVICES -d [0-9.]+/32 -p tcp -m comment --comment "default/httpd-app cluster IP" '
                     r"-m tcp --dport 80 -j KUBE-SVC-", ok.output, re.M)
    raw = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", "--restore-input"])
    assert raw.exit_code == 0 and "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in raw.output
    bad = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-9"])
    assert bad.exit_code == 2 and "node 'node-9' not found" in bad.output and "Traceback" not in bad.output
    nft = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", "--mode", "nftables"])
    assert nft.exit_code == 0 and nft.output.startswith("add table ip kube-proxy ")


def test_a_rule_copied_from_a_trace_is_found_in_netsim_rules() -> None:
    """Every rule a trace shows is a line of `netsim rules` for that node (same canonical form)."""
    import json

    from click.testing import CliRunner

    from netsim.cli.main import cli
    runner = CliRunner()
    for client, to in (("external", "192.168.49.2:30080"), ("pod/client", "http://httpd-app/")):
        t = json.loads(runner.invoke(cli, ["trace", "-f", "example:httpd-app", "--from", client, "--to", to,
                                           "-o", "json"]).stdout)
        seen = 0
        for packet in t["packets"]:
            for hop in packet["hops"]:
                if hop["kind"] != "node":
                    continue
                lines = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", hop["host"]]).output
                for step in hop["steps"]:
                    if step.get("rule", "").startswith("-A "):
                        assert step["rule"] in lines.splitlines(), step["rule"]
                        seen += 1
        assert seen >= 5
