"""`netsim up` in nftables mode: every node's kube-proxy loads its `ip kube-proxy` table with `nft -f`
(the sync transactions kube-proxy sends), and real packets between real namespaces follow it.

The same services fixture and expectations as tests/test_kernel_backend.py (iptables mode), from
kube-proxy's documented nftables behaviour (pkg/proxy/nftables/proxier_test.go TestOverallNFTablesRules,
TestNoEndpointsReject, TestExternalTrafficPolicyLocal; KEP-3866): ClusterIP DNAT without SNAT for pod
clients, a Service without endpoints rejected (reject-chain), NodePort with eTP Cluster masqueraded,
eTP Local keeping the client address and dropped on nodes without a local endpoint. Run as root
under `unshare --net`; the cluster has a unique prefix and is removed in `finally`.
"""
from __future__ import annotations

import pytest

from kernel_helpers import unique_name
from nft_listing import expected_listing, normalise_listed, parse_listing
from test_kernel_backend import FIXTURE, _pods_of, _svc

from netsim.control.manifests import load
from netsim.kernel import netns
from netsim.kernel.build import KernelCluster
from netsim.kernel.probe import Probe, probe, run_probes

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def nft_cluster(kernel_run_dir):
    import shutil
    if shutil.which("nft") is None:
        pytest.skip("`nft` is not installed")
    cluster = load([FIXTURE])
    cluster.config.proxy_mode = "nftables"
    name = unique_name("n")
    kc = KernelCluster.up(cluster, name, sources=[FIXTURE])
    try:
        yield kc
    finally:
        kc.down()
        assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


def test_each_node_holds_its_kube_proxy_table_as_synced(nft_cluster):
    kc = nft_cluster
    for name, node in kc.plan.nodes.items():
        listing = netns.run(node.netns, ["nft", "list", "table", "ip", "kube-proxy"], check=False)
        assert listing.returncode == 0, listing.stderr
        ours = expected_listing(kc.kube_proxies[name].proxier.proxier.state)
        got = normalise_listed(parse_listing(listing.stdout), ours)
        assert got.chains == ours.chains and got.sets == ours.sets, name
        assert "services" in got.chains and got.chains["nat-prerouting"]["rules"] == ["jump services"]


def test_pod_to_clusterip_reaches_both_endpoints_without_snat(nft_cluster):
    kc = nft_cluster
    client = kc.plan.pods["default/client"]
    rs = run_probes([Probe(client.netns, _svc(kc, "web").cluster_ip, 80) for _ in range(40)])
    assert {r.outcome for r in rs} == {"answered"}
    assert {r.pod for r in rs} == _pods_of(kc, "web")          # numgen random mod 2: both seen
    assert {r.peer_ip for r in rs} == {client.ip}              # pod source: no masquerade


def test_service_without_endpoints_is_rejected(nft_cluster):
    kc = nft_cluster
    client = kc.plan.pods["default/client"]
    r = probe(client.netns, _svc(kc, "empty").cluster_ip, 80, timeout=3.0)
    assert r.outcome == "refused"                               # no-endpoint-services -> reject-chain


def test_nodeport_cluster_policy_from_external_is_masqueraded(nft_cluster):
    kc = nft_cluster
    ext = kc.plan.edge.external_netns
    web_nodes = {kc.cluster.pod("default", k.split("/")[1]).node_name for k in _pods_of(kc, "web")}
    empty_node = next(n for n in sorted(kc.plan.nodes) if n not in web_nodes)
    node = kc.plan.nodes[empty_node]
    r = probe(ext, node.ip, 30081)                              # the node's primary IP takes NodePorts
    assert r.outcome == "answered" and r.pod in _pods_of(kc, "web")
    assert r.peer_ip == node.vtep_ip                            # masquerade fully-random via flannel.1


def test_external_traffic_policy_local_preserves_source(nft_cluster):
    kc = nft_cluster
    ext, ext_ip = kc.plan.edge.external_netns, kc.plan.edge.external_ip
    web_nodes = {kc.cluster.pod("default", k.split("/")[1]).node_name for k in _pods_of(kc, "web")}
    for name, node in kc.plan.nodes.items():
        r = probe(ext, node.ip, 30082, timeout=1.0)
        if name in web_nodes:
            assert r.outcome == "answered" and r.peer_ip == ext_ip
            assert kc.cluster.pod("default", r.pod.split("/")[1]).node_name == name   # local only
        else:
            assert r.outcome == "timeout"                      # no-endpoint-nodeports: drop
