"""The data-plane scenario list (tests/test_walker_scenarios.py) with kube-proxy in nftables mode.

Every scenario runs unchanged on the same cluster with `proxyMode: nftables`: what a user sees —
where a request lands, the source the pod sees, the reply's source, drops and rejects — is the same
as in iptables mode (kube-proxy's nftables proxier keeps the iptables mode's behaviour: KEP-3866
"Compatibility"). The IPVS scenario keeps IPVS. Then what differs: the trace shows `nft monitor trace`
rule lines, and finding a Service is one verdict-map lookup whatever the Service's position.
"""
from __future__ import annotations

import pytest

import test_walker_scenarios as scenarios
from netsim.dataplane.walker import Walker
from test_walker_scenarios import *  # noqa: F401,F403 - the scenario list, collected again here
from walker_cluster import scenario_cluster as _scenario_cluster


def nft_cluster(pod_network: str = "vxlan", proxy_mode: str = "nftables"):
    return _scenario_cluster(pod_network, "ipvs" if proxy_mode == "ipvs" else "nftables")


# what kube-proxy's nftables table shows where the iptables scenarios expect KUBE-* rules
NFT_RULES = {
    "cluster IP": ("ip daddr . meta l4proto . th dport vmap @service-ips",),
    "hairpin": ("ip saddr 10.244.0.2 jump mark-for-masquerade",),
    "nodeport masquerade": ("jump mark-for-masquerade",),
    "external IP": ("ip daddr . meta l4proto . th dport vmap @service-ips",),
    "no local endpoints": ("(nodeport-endpoints-check #1) ip daddr @nodeport-ips meta l4proto . th dport vmap "
                           "@no-endpoint-nodeports",),
    "no endpoints": ("(reject-chain #1) reject",),
}


@pytest.fixture(autouse=True)
def nftables_mode(monkeypatch):
    monkeypatch.setattr(scenarios, "scenario_cluster", nft_cluster)
    monkeypatch.setattr(scenarios, "RULES", NFT_RULES)


@pytest.fixture
def cluster():
    return nft_cluster()


def test_the_scenarios_run_in_nftables_mode(cluster):
    w = Walker(cluster)
    assert w.mode == "nftables"
    t = w.connect(w.host_for("pod/client-1"), cluster.service("default", "web").cluster_ip, 80, "tcp")
    rules = [s.detail for s in t.request.steps("RULE")]
    assert any(r.startswith("ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips "
                            "(verdict goto service-") for r in rules), rules
    assert any("dnat to" in r and r.endswith("(verdict accept)") for r in rules), rules


def test_service_lookup_cost_does_not_depend_on_the_service(cluster):
    """The `services` chain finds every Service with one map lookup: ClusterIPs of two Services of
    the same shape cost the same number of rules (iptables walks KUBE-SERVICES to the Service's rule)."""
    w = Walker(cluster)
    client = w.host_for("pod/client-3")          # on node-3, where no web pod runs: one path shape
    costs = set()
    for name in ("web", "web-np"):
        t = w.connect(client, cluster.service("default", name).cluster_ip, 80, "tcp")
        assert t.outcome.disposition == "DELIVERED"
        costs.add(t.rules_evaluated)
    assert len(costs) == 1, costs
