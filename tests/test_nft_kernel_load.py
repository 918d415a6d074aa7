"""The nftables rule sets we render load into a real kernel with `nft -f`, in one transaction, and
`nft list table ip kube-proxy` reads back what we wrote (normalised as tests/nft_listing.py explains).

Scenarios: kube-proxy's TestOverallNFTablesRules inputs (the golden of test_nft_golden.py) in both
supported rulesets, NodePort addresses matching everything, masqueradeAll, internalTrafficPolicy
Local without local endpoints; and kube-proxy's own transactions - a first full sync into an empty
namespace, then a partial sync on top - which must load exactly as kube-proxy sends them.
Everything runs in a scratch network namespace (kernel_helpers.scratch_netns).
"""
from __future__ import annotations

import pytest

from kernel_helpers import in_netns, scratch_netns
from nft_golden_helpers import overall_inputs
from nft_listing import expected_listing, normalise_listed, parse_listing

from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier

pytestmark = pytest.mark.kernel


def load(ns: str, text: str) -> None:
    res = in_netns(ns, ["nft", "-f", "-"], text)
    assert res.returncode == 0, f"nft -f refused the batch: {res.stderr}\n--- text ---\n{text}"


def assert_reads_back(ns: str, fp: NFTablesProxier) -> None:
    listing = in_netns(ns, ["nft", "list", "table", fp.config.ip_x, "kube-proxy"])
    assert listing.returncode == 0, listing.stderr
    ours = expected_listing(fp.state)
    got = normalise_listed(parse_listing(listing.stdout), ours)
    assert got.comment == ours.comment
    assert sorted(got.chains) == sorted(ours.chains)
    for name, chain in ours.chains.items():
        assert got.chains[name] == chain, f"chain {name}"
    assert sorted(got.sets) == sorted(ours.sets)
    for name, block in ours.sets.items():
        assert got.sets[name] == block, f"{block['what']} {name}"


def synced(cfg: NFTablesConfig, ports=None, eps=None) -> NFTablesProxier:
    if ports is None:
        ports, eps = overall_inputs()
    fp = NFTablesProxier(cfg)
    fp.sync(ports, eps)
    return fp


def ipv6_overall(release: str) -> NFTablesProxier:
    """The overall scenario's shapes in family ip6 (addresses mapped into fd00::/8 and 2001:db8::/32)."""
    from netsim.rules.iptables.proxier_inputs import LocalTrafficDetector

    def v6(ip: str) -> str:
        a, b, c, d = ip.split(".")
        return {"172": f"fd00:172:{b}::{d}", "10": f"fd00:10:{b}::{d}", "192": f"2001:db8:{c}::{d}",
                "203": f"2001:db8:ff::{d}"}.get(a, f"2001:db8:aa::{d}")
    ports, eps = overall_inputs()
    ports6 = [ServicePortInfo(p.namespace, p.name, v6(p.cluster_ip), p.port, port_name=p.port_name,
                              node_port=p.node_port, external_ips=[v6(i) for i in p.external_ips],
                              load_balancer_vips=[v6(i) for i in p.load_balancer_vips],
                              load_balancer_source_ranges=["2001:db8:ff::/64"] if p.load_balancer_source_ranges else [],
                              session_affinity_client_ip=p.session_affinity_client_ip,
                              external_policy_local=p.external_policy_local) for p in ports]
    eps6 = {endpoints_key(p6): [EndpointInfo(v6(e.ip), e.port, is_local=e.is_local) for e in eps[endpoints_key(p)]]
            for p, p6 in zip(ports, ports6)}
    cfg = NFTablesConfig(node_name="test-node", node_ip="2001:db8:0::2", ipv6=True, release=release,
                         local_detector=LocalTrafficDetector.by_cidr("fd00:10::/32"), masquerade_mark="0x4000",
                         node_ips=["::1", "2001:db8:0::2"], service_cidrs=["fd00:172::/32"])
    return synced(cfg, ports6, eps6)


SCENARIOS = {
    "overall-1.34": lambda: synced(NFTablesConfig.upstream_test_fake()),
    "overall-1.33": lambda: synced(NFTablesConfig.upstream_test_fake(release="1.33")),
    "overall-1.36": lambda: synced(NFTablesConfig.upstream_test_fake(release="1.36")),
    "ipv6-1.34": lambda: ipv6_overall("1.34"),
    "ipv6-1.36": lambda: ipv6_overall("1.36"),
    "masquerade-all-1.36": lambda: synced(NFTablesConfig.upstream_test_fake(release="1.36", masquerade_all=True)),
    "nodeport-addresses-match-all": lambda: synced(NFTablesConfig.upstream_test_fake(node_port_addresses=None)),
    "masquerade-all": lambda: synced(NFTablesConfig.upstream_test_fake(masquerade_all=True)),
    "no-local-detector": lambda: synced(NFTablesConfig.upstream_test_fake(local_detector=None, service_cidrs=[])),
    "itp-local-no-local-endpoints": lambda: synced(
        NFTablesConfig.upstream_test_fake(),
        [ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80", internal_policy_local=True)],
        {"ns1/svc1:p80/TCP": [EndpointInfo("10.180.0.1", 80)]}),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rendered_table_loads_and_reads_back(name: str) -> None:
    fp = SCENARIOS[name]()
    with scratch_netns("nftload", "nft") as ns:
        load(ns, fp.state.dump())
        assert_reads_back(ns, fp)


@pytest.mark.parametrize("release", ["1.33", "1.34", "1.36"])
def test_kube_proxy_transactions_load_as_sent_full_then_partial(release: str) -> None:
    ports, eps = overall_inputs()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake(release=release))
    with scratch_netns("nftsync", "nft") as ns:
        load(ns, fp.sync(ports, eps).text())          # first full sync into an empty namespace
        assert_reads_back(ns, fp)
        # svc1 gains an endpoint and svc3 loses its only one: only their chains are rewritten
        svc1 = next(p for p in ports if p.name == "svc1")
        svc3 = next(p for p in ports if p.name == "svc3")
        eps[endpoints_key(svc1)] = eps[endpoints_key(svc1)] + [EndpointInfo("10.180.0.9", 80)]
        eps[endpoints_key(svc3)] = []
        tx = fp.sync(ports, eps, changed_services={"ns1/svc1", "ns3/svc3"}, now=10.0)
        assert not any(line.startswith("add table") for line in tx.lines())
        load(ns, tx.text())
        assert_reads_back(ns, fp)
        # a second later the flushed chains of svc3 are deleted in a transaction of their own
        tx = fp.sync(ports, eps, changed_services=set(), now=11.5)
        assert fp.last_cleanup is not None and all(
            line.startswith("delete chain ip kube-proxy ") and "ns3/svc3" in line for line in fp.last_cleanup.lines())
        load(ns, fp.last_cleanup.text())
        load(ns, tx.text())
        assert not any("ns3/svc3" in c for c in fp.state.chains)
        assert_reads_back(ns, fp)


def test_session_guard_batches_nft_tables_and_names_the_one_the_kernel_refuses() -> None:
    from kernel_oracle import RuleSet, load_all
    good = SCENARIOS["overall-1.34"]().state.dump()
    other = SCENARIOS["overall-1.33"]().state.dump()
    bad = good.replace("masquerade fully-random", "masquerade fully-bogus")
    sets = [RuleSet("good", "nftables", good), RuleSet("bad", "nftables", bad), RuleSet("other", "nftables", other)]
    with scratch_netns("nftguard", "nft") as ns:
        rejected = load_all(ns, sets, backends=[])
    assert [r.ruleset.label for r in rejected] == ["bad"]
    assert "fully-bogus" in rejected[0].message and rejected[0].message.startswith("line ")
