"""loadBalancerSourceRanges with a zero-masked CIDR mean "allow any", as if there were none.

kubernetes/kubernetes pkg/proxy/serviceport.go newBaseServiceInfo: "zero-masked cidr means 'allow
any', which same as the empty loadBalancerSourceRanges" (``slices.ContainsFunc(cidrs,
proxyutil.IsZeroCIDR)``). Found by the generator: the IPVS proxier wrote ``1.2.3.4,tcp:80,0.0.0.0/0``
into KUBE-LOAD-BALANCER-SOURCE-CIDR and the real ``ipset restore`` refused the node's sets.
"""
from __future__ import annotations

import pytest

from netsim.rules.iptables.proxier import ServicePortInfo
from netsim.rules.ipvs import kube_ipsets as S
from netsim.rules.ipvs.proxier import desired_state
from netsim.rules.iptables.proxier_inputs import EndpointInfo, ProxierConfig
from netsim.rules.iptables.proxier_sync import endpoints_key, sync_proxy_rules


def _lb(ranges: list[str]) -> ServicePortInfo:
    return ServicePortInfo(namespace="ns1", name="svc1", cluster_ip="172.30.0.41", port=80, node_port=3001,
                           load_balancer_vips=["1.2.3.4"], load_balancer_source_ranges=ranges)


@pytest.mark.parametrize("ranges", [["0.0.0.0/0"], ["192.168.0.0/16", "0.0.0.0/0"], [" 10.0.0.0/0 "]])
def test_zero_cidr_means_no_source_ranges(ranges: list[str]) -> None:
    svc = _lb(ranges)
    assert svc.load_balancer_source_ranges == []
    eps = {endpoints_key(svc): [EndpointInfo("10.180.0.1", 80)]}
    text = sync_proxy_rules([svc], eps, ProxierConfig.upstream_test_fake()).text()
    assert "KUBE-FW-" not in text and "KUBE-PROXY-FIREWALL -m comment" not in text
    sets = desired_state([svc], eps, ProxierConfig.upstream_test_fake(), ["192.168.0.2"]).ipset_entries
    assert sets[S.KUBE_LOAD_BALANCER] == {"1.2.3.4,tcp:80"}
    assert not sets[S.KUBE_LOAD_BALANCER_FW] and not sets[S.KUBE_LOAD_BALANCER_SOURCE_CIDR]


def test_other_ranges_are_kept() -> None:
    assert _lb(["192.168.0.0/16", " 10.0.0.1/8"]).load_balancer_source_ranges == ["192.168.0.0/16", "10.0.0.0/8"]


def test_ipvs_node_port_without_node_addresses_skips_its_health_check_port() -> None:
    """pkg/proxy/ipvs/proxier.go syncProxyRules: without node IPs the nodePort block `continue`s, and the
    healthCheckNodePort handling after it is skipped with it."""
    svc = ServicePortInfo(namespace="ns1", name="svc1", cluster_ip="172.30.0.41", port=80, node_port=3001,
                          load_balancer_vips=["1.2.3.4"], external_policy_local=True, health_check_node_port=30000)
    eps = {endpoints_key(svc): [EndpointInfo("10.180.0.1", 80, is_local=True)]}
    cfg = ProxierConfig.upstream_test_fake()
    assert desired_state([svc], eps, cfg, []).ipset_entries[S.KUBE_HEALTH_CHECK_NODE_PORT] == set()
    assert desired_state([svc], eps, cfg, ["192.168.0.2"]).ipset_entries[S.KUBE_HEALTH_CHECK_NODE_PORT] == {"30000"}
