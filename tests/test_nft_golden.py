"""Golden: our nftables proxier equals kube-proxy's TestOverallNFTablesRules, compared as upstream does.

Expected text: tests/golden/nftables/overall.nft, verbatim from kubernetes/kubernetes
pkg/proxy/nftables/proxier_test.go @ 81810de6 (kube-proxy 1.34/1.35 ruleset). Inputs: the test's
NewFakeProxier settings (NFTablesConfig.upstream_test_fake) and its six Services / EndpointSlices.
Both sides go through our port of helpers_test.go sortNFTablesTransaction before comparing, as
assertNFTablesTransactionEqual compares the expected text with ``nft.Dump()``.
"""
from __future__ import annotations

from nft_golden_helpers import golden, overall_inputs, sort_nftables_transaction

from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier


def overall_proxier() -> NFTablesProxier:
    ports, eps = overall_inputs()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake())
    fp.sync(ports, eps)
    return fp


def test_overall_nftables_rules_equal_upstream() -> None:
    fp = overall_proxier()
    expected = sort_nftables_transaction(golden("overall.nft"))
    got = sort_nftables_transaction(fp.state.dump())
    assert got == expected


def test_sort_keeps_rule_order_but_orders_everything_else() -> None:
    # helpers_test.go: rules keep the order they were added in; other lines sort by type, name, text.
    text = "\n".join([
        "add element ip kube-proxy m { b }", "add rule ip kube-proxy c z", "# comment", "",
        "add rule ip kube-proxy c a", "add element ip kube-proxy m { a }", "add chain ip kube-proxy c",
        "add table ip kube-proxy { comment \"x\" ; }", "add rule ip kube-proxy b q",
    ])
    assert sort_nftables_transaction(text) == [
        'add table ip kube-proxy { comment "x" ; }', "add chain ip kube-proxy c",
        "add rule ip kube-proxy b q", "add rule ip kube-proxy c z", "add rule ip kube-proxy c a",
        "add element ip kube-proxy m { a }", "add element ip kube-proxy m { b }",
    ]


def test_first_sync_transaction_recreates_base_chains_then_leaves_golden_state() -> None:
    # setupNFTables: the first full sync adds+deletes every base chain once, so a kube-proxy upgrade
    # that changes a base chain's priority is not refused; the second full sync does not.
    ports, eps = overall_inputs()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake())
    first = fp.sync(ports, eps).lines()
    assert first[:3] == ['add table ip kube-proxy { comment "rules for kube-proxy" ; }',
                         "add chain ip kube-proxy filter-prerouting-pre-dnat",
                         "delete chain ip kube-proxy filter-prerouting-pre-dnat"]
    fp.need_full_sync = True
    second = fp.sync(ports, eps).lines()
    assert "delete chain ip kube-proxy filter-prerouting-pre-dnat" not in second
    assert sort_nftables_transaction(fp.state.dump()) == sort_nftables_transaction(golden("overall.nft"))


# --- TestSyncProxyRulesRepeated: partial syncs ------------------------------------------------------

def repeated_steps() -> dict[str, tuple[int | None, list[str]]]:
    """Each step of tests/golden/nftables/repeated.nft as (operations, sorted expected dump)."""
    base = golden("overall.nft").split("# svc1")[0]
    steps: dict[str, tuple[int | None, list[str]]] = {}
    for chunk in golden("repeated.nft").split("\n## step ")[1:]:
        header, _, body = chunk.partition("\n")
        name, _, ops = header.split(" ")
        steps[name] = (None if ops == "-" else int(ops), sort_nftables_transaction(base + body))
    return steps


def test_sync_proxy_rules_repeated_equals_upstream() -> None:
    from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
    from netsim.rules.iptables.proxier_sync import endpoints_key

    steps = repeated_steps()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake())
    now = 100.0
    svc = {n: ServicePortInfo(f"ns{n}", f"svc{n}", f"172.30.0.4{n}", port, port_name=f"p{port}")
           for n, port in ((1, 80), (2, 8080), (3, 80), (4, 80))}
    eps = {endpoints_key(svc[1]): [EndpointInfo("10.0.1.1", 80)], endpoints_key(svc[2]): [EndpointInfo("10.0.2.1", 8080)]}
    ports = [svc[1], svc[2]]

    def check(step: str, count_ops: bool = True) -> None:
        ops, expected = steps[step]
        assert sort_nftables_transaction(fp.state.dump()) == expected, step
        if ops is not None and count_ops:
            assert len(fp.last_sync) == ops, f"{step}: {len(fp.last_sync)} operations\n{fp.last_sync.text()}"

    def age_stale_chains() -> None:       # the test's ageStaleChains: as if 2 s had passed
        for chain in fp.stale_chains:
            fp.stale_chains[chain] -= 2

    fp.sync(ports, eps, now=now)
    check("01_initial")
    ports.append(svc[3])
    eps[endpoints_key(svc[3])] = [EndpointInfo("10.0.3.1", 80)]
    fp.sync(ports, eps, now=now)
    check("02_add_svc3")
    ports.remove(svc[2])
    fp.sync(ports, eps, now=now)
    check("03_delete_svc2")
    age_stale_chains()
    fp.sync(ports, eps, now=now)
    check("04_stale_chains_deleted")
    ports.append(svc[4])
    fp.sync(ports, eps, now=now)
    check("05_add_svc4_no_endpoints")
    eps[endpoints_key(svc[4])] = [EndpointInfo("10.0.4.1", 80)]
    fp.sync(ports, eps, now=now)
    check("06_svc4_endpoints")
    eps[endpoints_key(svc[3])] = [EndpointInfo("10.0.3.2", 80)]
    fp.sync(ports, eps, now=now)
    check("07_change_endpoint")
    age_stale_chains()
    eps[endpoints_key(svc[3])] = [EndpointInfo("10.0.3.2", 80), EndpointInfo("10.0.3.3", 80)]
    fp.sync(ports, eps, now=now)
    check("08_add_endpoint")
    two = eps[endpoints_key(svc[3])]
    eps[endpoints_key(svc[3])] = []
    fp.sync(ports, eps, now=now)
    check("09_empty_endpoints")
    assert set(fp.stale_chains) == {"service-4AT6LBPK-ns3/svc3/tcp/p80",
                                    "endpoint-SWWHDC7X-ns3/svc3/tcp/p80__10.0.3.2/80",
                                    "endpoint-TQ2QKHCZ-ns3/svc3/tcp/p80__10.0.3.3/80"}
    eps[endpoints_key(svc[3])] = two
    fp.sync(ports, eps, now=now)
    check("10_restore_endpoints")
    assert fp.stale_chains == {}
    # empty, age, restore: the chains are deleted first (own transaction), then recreated
    eps[endpoints_key(svc[3])] = []
    fp.sync(ports, eps, now=now)
    age_stale_chains()
    eps[endpoints_key(svc[3])] = two
    fp.sync(ports, eps, now=now)
    assert fp.last_cleanup is not None and len(fp.last_cleanup) == 3
    check("10_restore_endpoints", count_ops=False)
    fp.sync(ports, eps, now=now)            # no change: an empty transaction
    assert len(fp.last_sync) == 0
    check("10_restore_endpoints", count_ops=False)


def test_overall_from_a_netsim_cluster_equals_upstream() -> None:
    """The same scenario written as manifests (tests/fixtures/nft_overall.yaml) and read through the
    loader and the cluster path; only the fake's own quirks are set by hand: mark 0x4000 (the test
    writes it without Go's padding), its NodePort CIDRs and interface addresses, and no
    default/kubernetes Service (kubeadm's cluster has one; the fake proxier's test has not)."""
    from pathlib import Path

    from netsim.control.manifests import load
    from netsim.rules.iptables.proxier_cluster import endpoints_for_node, service_port_infos
    from netsim.rules.nftables.proxier import config_for_node

    cluster = load([str(Path(__file__).parent / "fixtures" / "nft_overall.yaml")])
    fake = NFTablesConfig.upstream_test_fake()
    cfg = config_for_node(cluster, "test-node", masquerade_mark="0x4000",
                          node_port_addresses=fake.node_port_addresses, node_ips=fake.node_ips)
    assert cfg.service_cidrs == ["172.30.0.0/16"] and cfg.local_detector == fake.local_detector
    ports = [p for p in service_port_infos(cluster) if (p.namespace, p.name) != ("default", "kubernetes")]
    fp = NFTablesProxier(cfg)
    fp.sync(ports, endpoints_for_node(cluster, ports, "test-node"))
    assert sort_nftables_transaction(fp.state.dump()) == sort_nftables_transaction(golden("overall.nft"))


def test_ipv6_table_of_release_133_equals_knftables_dump() -> None:
    """The ``ip6 kube-proxy`` table in knftables' own test (fake_test.go TestFakeParseDump), compared
    as that test compares (both sides' lines sorted): one NodePort Service, two IPv6 endpoints."""
    from netsim.rules.iptables.proxier_inputs import EndpointInfo, LocalTrafficDetector, ServicePortInfo
    from netsim.rules.iptables.proxier_sync import endpoints_key

    svc = ServicePortInfo("ns1", "svc1", "fd00:172:30::41", 80, port_name="p80", node_port=3001)
    cfg = NFTablesConfig(node_name="test-node", node_ip="2001:db8::1", ipv6=True, release="1.33",
                         local_detector=LocalTrafficDetector.by_cidr("fd00:10::/64"), masquerade_mark="0x4000",
                         node_port_addresses=["2001:db8::/32"], node_ips=["::1", "2001:db8::1", "2001:db8:1::2"],
                         service_cidrs=["fd00:10:96::/112"])
    fp = NFTablesProxier(cfg)
    fp.sync([svc], {endpoints_key(svc): [EndpointInfo("fd00:10:180::1", 80), EndpointInfo("fd00:10:180::2:1", 80)]})
    expected = sorted(ln for ln in golden("knftables_ipv6_dump.nft").splitlines() if ln and not ln.startswith("#"))
    assert sorted(fp.state.dump().splitlines()) == expected
