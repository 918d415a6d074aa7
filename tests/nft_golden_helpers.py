"""Our port of kube-proxy's nftables test normalisation and of TestOverallNFTablesRules' inputs.

``sort_nftables_transaction`` follows kubernetes/kubernetes pkg/proxy/nftables/helpers_test.go
``sortNFTablesTransaction``: blank lines and ``#`` lines dropped, then a stable sort by object type
(table, chain, rule, set, map, element), then by object name (the 5th word), then - except for
rules, which keep their order - by the whole line. ``overall_inputs`` are the Services and
EndpointSlices of proxier_test.go ``TestOverallNFTablesRules`` as kube-proxy's change trackers
hand them to syncProxyRules.
"""
from __future__ import annotations

from pathlib import Path

from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key

GOLDEN = Path(__file__).parent / "golden" / "nftables"

OBJECT_ORDER = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


def sort_nftables_transaction(text: str) -> list[str]:
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#")]

    def key(line: str) -> tuple:
        words = line.split(" ")
        kind = words[1] if len(words) > 1 else ""
        name = words[4] if len(words) > 4 else ""
        return (-OBJECT_ORDER.get(kind, 0), name, "" if kind == "rule" else line)

    return sorted(lines, key=key)        # Python's sort is stable, like sort.SliceStable


def golden(name: str) -> str:
    return (GOLDEN / name).read_text()


def overall_inputs() -> tuple[list[ServicePortInfo], dict[str, list[EndpointInfo]]]:
    p80 = dict(port=80, protocol="TCP", port_name="p80")
    ports = [
        ServicePortInfo("ns1", "svc1", "172.30.0.41", **p80),
        # LoadBalancer, externalTrafficPolicy Local (health check node port 30000)
        ServicePortInfo("ns2", "svc2", "172.30.0.42", **p80, node_port=3001, load_balancer_vips=["1.2.3.4"],
                        external_ips=["192.168.99.22"], external_policy_local=True, health_check_node_port=30000),
        ServicePortInfo("ns3", "svc3", "172.30.0.43", **p80, node_port=3003),
        # type NodePort without a nodePort, with an externalIP
        ServicePortInfo("ns4", "svc4", "172.30.0.44", **p80, external_ips=["192.168.99.33"]),
        # LoadBalancer, Cluster policy, source range " 203.0.113.0/25" (leading space on purpose), ClientIP
        ServicePortInfo("ns5", "svc5", "172.30.0.45", **p80, node_port=3002, load_balancer_vips=["5.6.7.8"],
                        load_balancer_source_ranges=[" 203.0.113.0/25"], session_affinity_client_ip=True,
                        sticky_max_age_seconds=10800),
        ServicePortInfo("ns6", "svc6", "172.30.0.46", **p80),
    ]
    eps = {
        "ns1/svc1": [EndpointInfo("10.180.0.1", 80)],
        # no nodeName: not local, so the eTP Local service has no local endpoints
        "ns2/svc2": [EndpointInfo("10.180.0.2", 80)],
        "ns3/svc3": [EndpointInfo("10.180.0.3", 80)],
        "ns4/svc4": [EndpointInfo("10.180.0.4", 80), EndpointInfo("10.180.0.5", 80, is_local=True)],
        "ns5/svc5": [EndpointInfo("10.180.0.3", 80)],
    }
    by_key = {endpoints_key(p): eps.get(f"{p.namespace}/{p.name}", []) for p in ports}
    return ports, by_key
