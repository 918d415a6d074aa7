"""Behaviour of the nftables proxier beyond the upstream goldens (test_nft_golden.py).

Names: every chain and set name in kube-proxy's nftables test texts is ``PREFIX`` + hashAndTruncate
(pkg/proxy/nftables/proxier.go); the names below are copied from proxier_test.go
(TestOverallNFTablesRules, TestSyncProxyRulesRepeated, TestSyncProxyRulesStartup) and from
knftables' fake_test.go IPv6 dump of a kube-proxy table. Other shapes follow proxier.go
``syncProxyRules`` / ``setupNFTables`` for the cases upstream pins only with packet-flow tests.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.rules.iptables.proxier_inputs import EndpointInfo, ProxierInputError, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.nftables.chain_names import (
    CHAIN_NAME_BASE_LENGTH_MAX,
    endpoint_names,
    hash_and_truncate,
    is_service_chain_name,
    service_chain_names,
    service_port_endpoint_chain_name_base,
)
from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier

UPSTREAM_SERVICE_NAMES = {
    ("ns1", "svc1", "tcp", "p80"): "ULMVA6XW-ns1/svc1/tcp/p80",
    ("ns2", "svc2", "tcp", "p80"): "42NFTM6N-ns2/svc2/tcp/p80",
    ("ns3", "svc3", "tcp", "p80"): "4AT6LBPK-ns3/svc3/tcp/p80",
    ("ns4", "svc4", "tcp", "p80"): "LAUZTJTB-ns4/svc4/tcp/p80",
    ("ns5", "svc5", "tcp", "p80"): "HVFWP5L3-ns5/svc5/tcp/p80",
    ("ns2", "svc2", "tcp", "p8080"): "MHHHYRWA-ns2/svc2/tcp/p8080",
}
UPSTREAM_ENDPOINT_NAMES = {
    ("ns1", "svc1", "tcp", "p80", "10.180.0.1:80"): "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
    ("ns2", "svc2", "tcp", "p80", "10.180.0.2:80"): "SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80",
    ("ns3", "svc3", "tcp", "p80", "10.180.0.3:80"): "UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80",
    ("ns4", "svc4", "tcp", "p80", "10.180.0.4:80"): "UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80",
    ("ns4", "svc4", "tcp", "p80", "10.180.0.5:80"): "5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80",
    ("ns5", "svc5", "tcp", "p80", "10.180.0.3:80"): "GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",
    ("ns1", "svc1", "tcp", "p80", "10.0.1.1:80"): "5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80",
    ("ns1", "svc1", "tcp", "p80", "10.0.1.2:80"): "ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80",
    ("ns2", "svc2", "tcp", "p8080", "10.0.2.1:8080"): "7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080",
    ("ns3", "svc3", "tcp", "p80", "10.0.3.1:80"): "2OCDJSZQ-ns3/svc3/tcp/p80__10.0.3.1/80",
    ("ns3", "svc3", "tcp", "p80", "10.0.3.2:80"): "SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80",
    ("ns3", "svc3", "tcp", "p80", "10.0.3.3:80"): "TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80",
    ("ns4", "svc4", "tcp", "p80", "10.0.4.1:80"): "WAHRBT2B-ns4/svc4/tcp/p80__10.0.4.1/80",
    # knftables fake_test.go: an IPv6 endpoint, colons replaced by dots
    ("ns1", "svc1", "tcp", "p80", "[fd00:10:180::1]:80"): "ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80",
}


@pytest.mark.parametrize("key", sorted(UPSTREAM_SERVICE_NAMES))
def test_service_chain_names_match_upstream(key) -> None:
    ns, name, proto, port = key
    svc = ServicePortInfo(ns, name, "172.30.0.1", 80, protocol=proto, port_name=port)
    names = service_chain_names(svc)
    base = UPSTREAM_SERVICE_NAMES[key]
    assert names == {"cluster": "service-" + base, "local": "local-" + base,
                     "external": "external-" + base, "firewall": "firewall-" + base}


@pytest.mark.parametrize("key", sorted(UPSTREAM_ENDPOINT_NAMES))
def test_endpoint_chain_names_match_upstream(key) -> None:
    ns, name, proto, port, endpoint = key
    assert service_port_endpoint_chain_name_base(ns, name, port, proto, endpoint) == UPSTREAM_ENDPOINT_NAMES[key]


def test_endpoint_and_affinity_share_a_base_and_ipv6_is_bracketed_for_dnat() -> None:
    svc = ServicePortInfo("ns1", "svc1", "fd00:10:96::1", 80, port_name="p80")
    ep = EndpointInfo("fd00:10:180::1", 80)
    assert ep.string == "[fd00:10:180::1]:80"
    chain, affinity = endpoint_names(svc, ep)
    assert chain == "endpoint-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80"
    assert affinity == "affinity-ZVRFLKHO-ns1/svc1/tcp/p80__fd00.10.180..1/80"


def test_long_names_are_truncated_to_240_with_an_ellipsis_and_keep_their_hash() -> None:
    name = "n" * 63 + "/" + "s" * 63 + "/tcp/" + "p" * 63 + "__" + "fd00.1111.2222.3333.4444.5555.6666.7777/65535"
    out = hash_and_truncate(name)
    assert len(out) == CHAIN_NAME_BASE_LENGTH_MAX and out.endswith("...")
    other = hash_and_truncate(name[:-1] + "4")          # same first 237 characters, other endpoint port
    assert other[9:] == out[9:] and other[:8] != out[:8] and out[8] == "-"
    assert hash_and_truncate("short") == hash_and_truncate("short")[:8] + "-short"
    assert is_service_chain_name("service-" + out) and not is_service_chain_name("reject-chain")


def test_unnamed_port_leaves_a_trailing_slash() -> None:
    svc = ServicePortInfo("default", "kubernetes", "10.96.0.1", 443, port_name="https")
    # a real v1.36.2 cluster's `nft list table ip kube-proxy` shows this name
    assert service_chain_names(svc)["cluster"] == "service-2QRHZV4L-default/kubernetes/tcp/https"
    assert service_chain_names(ServicePortInfo("ns", "svc", "10.96.0.2", 80))["cluster"].endswith("-ns/svc/tcp/")


def sync(svc: ServicePortInfo, eps: list[EndpointInfo], **cfg) -> NFTablesProxier:
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake(**cfg))
    fp.sync([svc], {endpoints_key(svc): eps})
    return fp


SVC = dict(namespace="ns1", name="svc1", cluster_ip="172.30.1.1", port=80, port_name="p80")


def test_itp_local_without_local_endpoints_drops_the_cluster_ip() -> None:
    svc = ServicePortInfo(**SVC, internal_policy_local=True)
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80), EndpointInfo("10.0.1.2", 80)])
    dump = fp.state.dump()
    assert 'add element ip kube-proxy no-endpoint-services { 172.30.1.1 . tcp . 80 comment "ns1/svc1:p80" : drop }' in dump
    assert "add element ip kube-proxy service-ips {" not in dump and "chain ip kube-proxy local-" not in dump


def test_itp_local_uses_a_local_chain_with_only_local_endpoints() -> None:
    svc = ServicePortInfo(**SVC, internal_policy_local=True)
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80, is_local=True), EndpointInfo("10.0.1.2", 80),
                    EndpointInfo("10.0.1.3", 80, is_local=True)])
    local = service_chain_names(svc)["local"]
    rules = fp.state.rules(local)
    assert rules[0] == "ip daddr 172.30.1.1 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"
    assert rules[1].startswith("numgen random mod 2 vmap { 0 : goto endpoint-") and "10.0.1.2" not in rules[1]
    assert service_chain_names(svc)["cluster"] not in fp.state.chains


def test_etp_local_with_local_endpoints_ends_in_the_local_chain() -> None:
    svc = ServicePortInfo(**SVC, node_port=30080, external_policy_local=True)
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80, is_local=True), EndpointInfo("10.0.1.2", 80)])
    names = service_chain_names(svc)
    assert fp.state.rules(names["external"]) == [
        f'ip saddr 10.0.0.0/8 goto {names["cluster"]} comment "short-circuit pod traffic"',
        'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
        f'fib saddr type local goto {names["cluster"]} comment "short-circuit local traffic"',
        f'goto {names["local"]}',
    ]
    assert "add element ip kube-proxy no-endpoint-nodeports {" not in fp.state.dump()


def fp_chains(dump: str) -> list[str]:
    return [line.split()[4] for line in dump.splitlines() if line.startswith("add chain ")]


def test_no_endpoints_at_all_rejects_every_address_of_the_service() -> None:
    svc = ServicePortInfo(**SVC, node_port=30080, external_ips=["192.168.99.11"], load_balancer_vips=["1.2.3.4"])
    dump = sync(svc, []).state.dump()
    for key in ("172.30.1.1 . tcp . 80", "192.168.99.11 . tcp . 80", "1.2.3.4 . tcp . 80"):
        assert f'no-endpoint-services {{ {key} comment "ns1/svc1:p80" : goto reject-chain }}' in dump
    assert 'no-endpoint-nodeports { tcp . 30080 comment "ns1/svc1:p80" : goto reject-chain }' in dump
    assert not [c for c in fp_chains(dump) if "/" in c]


def test_source_ranges_containing_the_node_ip_also_allow_the_vips() -> None:
    svc = ServicePortInfo(**SVC, load_balancer_vips=["1.2.3.4", "5.6.7.8"],
                          load_balancer_source_ranges=["192.168.0.0/24", " 203.0.113.0/25"])
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80)])
    assert fp.state.rules(service_chain_names(svc)["firewall"]) == [
        "ip saddr != { 192.168.0.0/24 , 203.0.113.0/25 , 1.2.3.4 , 5.6.7.8 } drop"]


def test_terminating_endpoints_are_used_only_without_ready_ones() -> None:
    svc = ServicePortInfo(**SVC)
    term = EndpointInfo("10.0.1.2", 80, ready=False, serving=True, terminating=True)
    assert "10.0.1.2" not in sync(svc, [EndpointInfo("10.0.1.1", 80), term]).state.dump()
    assert "dnat to 10.0.1.2:80" in sync(svc, [term]).state.dump()


def test_nodeport_addresses_match_all_uses_fib_and_drops_the_nodeport_ips_set() -> None:
    svc = ServicePortInfo(**SVC, node_port=30080)
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80)], node_port_addresses=["0.0.0.0/0"])
    assert "nodeport-ips" not in fp.state.sets
    assert fp.state.rules("services")[1] == ("fib daddr type local ip daddr != 127.0.0.0/8 "
                                             "meta l4proto . th dport vmap @service-nodeports")
    assert fp.state.rules("nodeport-endpoints-check") == [
        "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"]


def test_primary_nodeport_address_is_the_default_and_loopback_is_never_a_nodeport_ip() -> None:
    cfg = NFTablesConfig(node_name="n1", node_ip="192.168.49.2", node_ips=["127.0.0.1", "192.168.49.2", "10.1.1.1"])
    assert cfg.node_port_addresses == ["192.168.49.2/32"] and cfg.node_port_ips() == ["192.168.49.2"]
    cfg = NFTablesConfig(node_name="n1", node_ip="192.168.49.2", node_ips=["127.0.0.1", "192.168.49.2"],
                         node_port_addresses=["127.0.0.0/8", "192.168.0.0/16"])
    assert cfg.node_port_ips() == ["192.168.49.2"]


def test_release_133_uses_the_ga_base_chains_and_names_the_port_in_the_masquerade_rule() -> None:
    svc = ServicePortInfo(**SVC)
    fp = sync(svc, [EndpointInfo("10.0.1.1", 80)], release="1.33")
    chains = {n: c.chain for n, c in fp.state.chains.items() if c.chain.type}
    assert {n: (c.hook, c.priority) for n, c in chains.items()} == {
        "filter-prerouting": ("prerouting", -110), "filter-input": ("input", -110),
        "filter-forward": ("forward", -110), "filter-output": ("output", -110),
        "filter-output-post-dnat": ("output", -90), "nat-prerouting": ("prerouting", -100),
        "nat-output": ("output", -100), "nat-postrouting": ("postrouting", 100)}
    assert fp.state.rules("filter-output") == ["ct state new jump service-endpoints-check",
                                               "ct state new jump firewall-check"]
    assert fp.state.rules("filter-output-post-dnat") == ["ct state new jump cluster-ips-check"]
    assert fp.state.rules(service_chain_names(svc)["cluster"])[0] == \
        "ip daddr 172.30.1.1 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"


def test_unknown_release_is_a_one_line_error() -> None:
    with pytest.raises(ProxierInputError, match=r"kube-proxy release '1\.20': nftables rulesets are known for 1\.31"):
        NFTablesConfig.upstream_test_fake(release="1.20")


def test_masquerade_mark_is_formatted_like_kube_proxy() -> None:
    # NewProxier: fmt.Sprintf("%#08x", 1<<masqueradeBit)
    fp = NFTablesProxier(NFTablesConfig(node_name="n", node_ip="192.168.49.2",
                                        masquerade_mark=NFTablesConfig.mark_for_bit(14)))
    fp.sync([], {})
    assert fp.state.rules("mark-for-masquerade") == ["mark set mark or 0x00004000"]


def test_cli_prints_the_table_the_transaction_and_other_releases() -> None:
    from netsim.cli.main import cli
    runner = CliRunner()
    args = ["rules", "-f", "example:httpd-app", "--node", "node-1", "--mode", "nftables"]
    table = runner.invoke(cli, args)
    assert table.exit_code == 0 and table.output.startswith('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n')
    assert "add element ip kube-proxy service-ips { " in table.output
    assert "flush chain" not in table.output
    tx = runner.invoke(cli, args + ["--restore-input"])
    assert tx.exit_code == 0 and "delete chain ip kube-proxy filter-prerouting-pre-dnat\n" in tx.output
    old = runner.invoke(cli, args + ["--kube-proxy-release", "1.33"])
    assert old.exit_code == 0 and "filter-output-post-dnat { type filter hook output priority -90 ; }" in old.output
    bad = runner.invoke(cli, args + ["--kube-proxy-release", "9.9"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and "kube-proxy release '9.9'" in bad.output


def test_release_136_dnats_through_a_numgen_map_and_masquerades_inline() -> None:
    from nft_golden_helpers import overall_inputs
    ports, eps = overall_inputs()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake(release="1.36"))
    fp.sync(ports, eps)
    dump = fp.state.dump()
    # the one line of 1.36's TestOverallNFTablesRules text quoted in PR #140362's diff
    assert ("add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat ip addr . port to "
            "numgen random mod 1 map { 0 : 10.180.0.1 . 80 }") in dump
    assert "mark-for-masquerade" not in dump
    assert fp.state.rules("services")[0] == ('ip daddr @cluster-ips ip saddr != 10.0.0.0/8 mark set mark or 0x4000 '
                                             'comment "masquerade clusterIP traffic from outside cluster"')
    assert fp.state.rules("masquerading") == [
        "mark and 0x4000 != 0 mark set mark xor 0x4000 masquerade fully-random",
        "ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random"]
    # only the local endpoint of svc4 is a hairpin candidate; only svc5 (ClientIP affinity) keeps endpoint chains
    assert [e for e in dump.splitlines() if e.startswith("add element ip kube-proxy hairpin-connections")] == [
        "add element ip kube-proxy hairpin-connections { 10.180.0.5 . 10.180.0.5 . tcp . 80 }"]
    assert [c for c in fp.state.chains if c.startswith("endpoint-")] == [
        "endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"]
    assert fp.state.rules("external-4AT6LBPK-ns3/svc3/tcp/p80") == [
        'mark set mark or 0x4000 comment "masquerade"', "goto service-4AT6LBPK-ns3/svc3/tcp/p80"]


def test_release_136_truncates_long_element_comments_to_128_bytes() -> None:
    svc = ServicePortInfo("n" * 63, "s" * 63, "172.30.1.1", 80, port_name="p" * 15)
    fp = sync(svc, [], release="1.36")
    (elem,) = fp.state.maps["no-endpoint-services"].elements.values()
    assert elem.comment == svc.name_string[:128] and len(svc.name_string) > 128


def test_provider_proxier_syncs_full_then_partial_like_kube_proxy() -> None:
    from netsim.control.manifests import load
    from netsim.rules.registry import get
    cluster = load(["example:httpd-app"])
    provider = get("nftables")
    kp = provider.proxier(cluster, "node-1")
    first = kp.sync(set())
    assert first.full and first.text.startswith('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n')
    assert "add chain ip kube-proxy filter-prerouting-pre-dnat\ndelete chain" in first.text
    again = kp.sync(set())                          # nothing changed: an empty transaction
    assert not again.full and again.text == ""
    svc = next(s for s in cluster.services() if s.name == "httpd-app")
    changed = kp.sync({f"{svc.namespace}/{svc.name}"})     # that Service's chains rewritten only
    assert not changed.full and "httpd-app" in changed.text and "kube-dns" not in changed.text
    always_full = provider.proxier(cluster, "node-1", partial_syncs=False)
    always_full.sync(set())
    assert always_full.sync(set()).full
    assert provider.kernel_support() in (None, "proxy mode nftables: `nft` (the nftables package) is not installed")
