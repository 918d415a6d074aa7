"""The IPVS proxier against kube-proxy's own IPVS tests (pkg/proxy/ipvs/proxier_test.go).

tests/golden/ipvs/proxier_test_cases.yaml transcribes, case by case, the Services and EndpointSlices
each upstream test builds and what it asserts: the virtual-server table (reflect.DeepEqual on the
fake IPVS), virtual-server counts and real servers (checkIPVS), ipset entries (checkIPSet) and the
iptables rules per chain (checkIptables: jump target, match-set, source). As upstream's fake proxier
does, the objects go straight to the proxier (no API server): kube-proxy's own reading of them
(serviceport.go newBaseServiceInfo, endpointslicecache.go) is what runs. Nothing is compared with a
snapshot of our own output; there is no way to regenerate the expectations from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from netsim.control.manifests import load
from netsim.control.model import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort
from netsim.rules.ipset import parse_save as parse_ipset_save
from netsim.rules.iptables.proxier_cluster import endpoints_for_node, service_port_infos
from netsim.rules.iptables.proxier_inputs import ProxierConfig
from netsim.rules.ipvs.ipvsadm import parse_save, render_save
from netsim.rules.ipvs.proxier import KubeProxyIpvs, build, desired_state

HERE = Path(__file__).parent / "golden" / "ipvs"
CASES = yaml.safe_load((HERE / "proxier_test_cases.yaml").read_text())["cases"]
NODE = "test-node"                      # proxier_test.go testNodeName


@dataclass
class UpstreamObjects:
    """The objects one upstream test hands to OnServiceAdd / OnEndpointSliceAdd."""
    services_: list[Service] = field(default_factory=list)
    slices: list[EndpointSlice] = field(default_factory=list)

    def services(self) -> list[Service]:
        return self.services_

    def endpoint_slices(self, namespace: Optional[str] = None, service: Optional[str] = None) -> list[EndpointSlice]:
        return [s for s in self.slices if s.namespace == namespace and s.service_name == service]


def _service(d: dict[str, Any]) -> Service:
    return Service(
        name=d["name"], namespace=d["namespace"], type=d.get("type", "ClusterIP"), cluster_ip=d["clusterIP"],
        ports=[ServicePort(port=p["port"], protocol=p["protocol"], name=p["name"], node_port=p.get("nodePort"))
               for p in d["ports"]],
        external_ips=list(d.get("externalIPs", [])), load_balancer_ips=list(d.get("ingress", [])),
        load_balancer_source_ranges=list(d.get("loadBalancerSourceRanges", [])),
        session_affinity=d.get("sessionAffinity", "None"), affinity_timeout=d.get("timeoutSeconds", 10800),
        external_traffic_policy=d.get("externalTrafficPolicy", "Cluster"),
        internal_traffic_policy=d.get("internalTrafficPolicy", "Cluster"),
        health_check_node_port=d.get("healthCheckNodePort"))


def _slice(i: int, d: dict[str, Any]) -> EndpointSlice:
    ns, name = d["service"].split("/")
    return EndpointSlice(
        name=f"{name}-{i + 1}", namespace=ns, service_name=name,
        ports=[EndpointPort(p["port"], p["protocol"], p["name"]) for p in d["ports"]],
        endpoints=[Endpoint([e["ip"]], ready=e.get("ready", True), serving=e.get("serving", True),
                            terminating=e.get("terminating", False), node_name=e.get("node"))
                   for e in d["endpoints"]])


def _sync(kp: KubeProxyIpvs, objects: UpstreamObjects, case: dict) -> Any:
    ports = service_port_infos(objects)
    desired = desired_state(ports, endpoints_for_node(objects, ports, NODE), kp.config, case["nodeIPs"])
    return kp.apply(desired)


def _vs_key(vs) -> str:
    return f"{vs.protocol} {vs.addr}"


def _chain_rules(state, chain: str) -> list[tuple[str, Optional[str], Optional[str]]]:
    """getRules: the chain's rules in nat then filter, as (jump, match-set, source)."""
    out = []
    for rule in state.restore.nat_rules + state.restore.filter_rules:
        words = rule.split()
        if words[:2] != ["-A", chain]:
            continue
        def arg(flag: str) -> Optional[str]:
            return words[words.index(flag) + 1] if flag in words else None
        out.append((arg("-j"), arg("--match-set"), arg("-s")))
    return out


def _check(state, expect: dict) -> None:
    table = {_vs_key(vs): vs for vs in state.table}
    if "ipvs" in expect:
        got = {k: {"scheduler": vs.scheduler, "timeout": vs.timeout,
                   "realServers": sorted(d.addr for d in vs.dests if d.weight == 1)}
               for k, vs in table.items()}
        want = {k: {**v, "realServers": sorted(v["realServers"])} for k, v in expect["ipvs"].items()}
        assert got == want
    if "vsCount" in expect:
        assert len(table) == expect["vsCount"], sorted(table)
    for key, servers in expect.get("realServers", {}).items():
        assert key in table, f"no virtual server {key}: {sorted(table)}"
        assert sorted(d.addr for d in table[key].dests) == sorted(servers), key
    if "timeouts" in expect:
        assert table and {k: vs.timeout for k, vs in table.items()} == {k: expect["timeouts"] for k in table}
    for name, entries in expect.get("ipsets", {}).items():
        assert sorted(state.ipsets.get(name).entries()) == sorted(entries), name
    for chain, rules in expect.get("iptables", {}).items():
        got = _chain_rules(state, chain)
        assert len(got) == len(rules), (chain, got)
        for (jump, match_set, source), want in zip(got, rules):
            assert (jump, match_set) == (want[0], want[1]), (chain, got)
            if len(want) > 2:
                assert source == want[2], (chain, got)


@pytest.mark.parametrize("case", CASES, ids=[c["test"] for c in CASES])
def test_upstream_ipvs_proxier_case(case: dict) -> None:
    objects = UpstreamObjects([_service(s) for s in case["services"]],
                              [_slice(i, s) for i, s in enumerate(case["slices"])])
    config = ProxierConfig(node_name=NODE, node_port_addresses=case.get("nodePortAddresses"),
                           node_ips=case["nodeIPs"])
    kp = KubeProxyIpvs(None, NODE, node_addresses=case["nodeIPs"], config=config)
    _check(_sync(kp, objects, case), case["expect"])
    if "afterDelete" in case["expect"]:                 # OnEndpointSliceDelete + syncProxyRules
        objects.slices = []
        _check(_sync(kp, objects, case), case["expect"]["afterDelete"])


def test_node_dump_replays_through_the_parsers() -> None:
    """ipvsadm -Sn and ipset save of a multi-service node parse back to the same text (a real node's dump
    can be replayed); tests/golden/ipvs/cluster.yaml is only an input here."""
    st = build(load([str(HERE / "cluster.yaml")]), "node-1")
    assert render_save(parse_save(st.ipvsadm_save())) == st.ipvsadm_save()
    assert parse_ipset_save(st.ipset_save()).save() == st.ipset_save()
