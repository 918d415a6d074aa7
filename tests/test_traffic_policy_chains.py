"""Which endpoint sets a service port uses, for every internal × external traffic policy.

kube-proxy decides it in kubernetes/kubernetes pkg/proxy/serviceport.go (BaseServicePortInfo
``UsesClusterEndpoints`` / ``UsesLocalEndpoints``) and pkg/proxy/topology.go
(``CategorizeEndpoints``); the iptables proxier writes the cluster-policy chain (KUBE-SVC-*)
whenever the port uses Cluster endpoints and has some, because the EXT chain of an externally
reachable port short-circuits pod and node-local traffic to it even with
externalTrafficPolicy Local (pkg/proxy/iptables/proxier.go syncProxyRules). The IPVS proxier
falls back to the Cluster endpoints when a Local policy finds no local ones
(pkg/proxy/ipvs/proxier.go syncEndpoint, kubernetes PR #97081).

Regression: with internalTrafficPolicy Local and externalTrafficPolicy Local on a NodePort,
LoadBalancer or externalIP Service we did not write KUBE-SVC-* yet jumped to it, and the real
``iptables-restore`` refused the node's whole rule set.
"""
from __future__ import annotations

import itertools
import shlex

import pytest

from netsim.control.manifests import load_text
from netsim.rules.iptables.proxier import (EndpointInfo, ProxierConfig, ServicePortInfo, endpoints_key, render,
                                           sync_proxy_rules)
from netsim.rules.iptables.proxier_endpoints import categorize_endpoints
from netsim.rules.ipvs.proxier import build
from kernel_helpers import iptables_restore_in_scratch_netns

POLICIES = ("Cluster", "Local")
EXPOSURES = ("ClusterIP", "NodePort", "ExternalIP", "LoadBalancer")
BUILTIN_TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK"}


def _port(itp: str, etp: str, exposure: str) -> ServicePortInfo:
    extra: dict = {}
    if exposure == "NodePort":
        extra["node_port"] = 30080
    elif exposure == "ExternalIP":
        extra["external_ips"] = ["192.168.99.22"]
    elif exposure == "LoadBalancer":
        extra.update(node_port=30080, load_balancer_vips=["1.2.3.4"], health_check_node_port=30000 if etp == "Local" else 0)
    return ServicePortInfo(namespace="ns1", name="svc1", cluster_ip="172.30.0.41", port=80,
                           internal_policy_local=itp == "Local",
                           external_policy_local=etp == "Local" and exposure != "ClusterIP", **extra)


def _undeclared_jumps(restore: str) -> list[str]:
    """Rules of the restore input whose ``-j`` names a chain no ``:CHAIN`` line declares in that table."""
    bad: list[str] = []
    declared: set[str] = set()
    rules: list[str] = []
    for line in restore.splitlines() + ["*end"]:
        if line.startswith("*") or line == "COMMIT":
            for rule in rules:
                words = shlex.split(rule)
                target = words[words.index("-j") + 1] if "-j" in words else None
                if target and target not in BUILTIN_TARGETS and target not in declared:
                    bad.append(rule)
            declared, rules = set(), []
        elif line.startswith(":"):
            declared.add(line[1:].split()[0])
        elif line.startswith("-A "):
            rules.append(line)
    return bad


ENDPOINT_SETS = {
    "local+remote": [EndpointInfo("10.180.0.1", 80, is_local=True), EndpointInfo("10.180.1.1", 80)],
    "remote only": [EndpointInfo("10.180.1.1", 80)],
    "remote terminating": [EndpointInfo("10.180.1.1", 80, ready=False, serving=True, terminating=True)],
    "none": [],
}


@pytest.mark.parametrize("itp, etp, exposure", list(itertools.product(POLICIES, POLICIES, EXPOSURES)))
@pytest.mark.parametrize("endpoints", list(ENDPOINT_SETS))
def test_every_jump_target_is_declared(itp: str, etp: str, exposure: str, endpoints: str) -> None:
    svc = _port(itp, etp, exposure)
    data = sync_proxy_rules([svc], {endpoints_key(svc): ENDPOINT_SETS[endpoints]},
                            ProxierConfig.upstream_test_fake())
    assert _undeclared_jumps(data.text()) == []


@pytest.mark.parametrize("exposure", EXPOSURES)
def test_uses_cluster_endpoints_matches_serviceport_go(exposure: str) -> None:
    # UsesClusterEndpoints = !internalPolicyLocal || ExternallyAccessible()
    # UsesLocalEndpoints  = internalPolicyLocal || (externalPolicyLocal && ExternallyAccessible())
    external = exposure != "ClusterIP"
    for itp, etp in itertools.product(POLICIES, POLICIES):
        svc = _port(itp, etp, exposure)
        assert svc.externally_accessible() is external
        assert svc.uses_cluster_endpoints() is (itp == "Cluster" or external), (itp, etp)
        assert svc.uses_local_endpoints() is (itp == "Local" or (etp == "Local" and external)), (itp, etp)


def test_both_policies_local_keeps_cluster_chain_for_short_circuit() -> None:
    """iTP Local + eTP Local NodePort, endpoint only on another node."""
    svc = _port("Local", "Local", "NodePort")
    cat = categorize_endpoints(ENDPOINT_SETS["remote only"], svc)
    assert [e.ip for e in cat.cluster] == ["10.180.1.1"] and cat.local == [] and cat.has_any_endpoints
    text = sync_proxy_rules([svc], {endpoints_key(svc): ENDPOINT_SETS["remote only"]},
                            ProxierConfig.upstream_test_fake()).text()
    svc_chain, ext = svc.cluster_policy_chain, svc.external_chain
    assert f":{svc_chain} - [0:0]" in text and f":{ext} - [0:0]" in text
    assert f":{svc.local_policy_chain} - [0:0]" not in text
    lines = text.splitlines()
    # pod traffic and node-local traffic to the NodePort are short-circuited to the cluster chain
    assert (f'-A {ext} -m comment --comment "pod traffic for ns1/svc1 external destinations" '
            f"-s 10.0.0.0/8 -j {svc_chain}") in lines
    assert (f'-A {ext} -m comment --comment "route LOCAL traffic for ns1/svc1 external destinations" '
            f"-m addrtype --src-type LOCAL -j {svc_chain}") in lines
    assert [l for l in lines if l.startswith(f"-A {svc_chain} ")][-1].endswith("-j " + svc.endpoint_chain(
        ENDPOINT_SETS["remote only"][0]))
    # ClusterIP (internal, Local) and external traffic without local endpoints are dropped in filter
    assert ('-A KUBE-SERVICES -m comment --comment "ns1/svc1 has no local endpoints" -m tcp -p tcp '
            "-d 172.30.0.41 --dport 80 -j DROP") in lines
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1 has no local endpoints" '
            "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP") in lines


NODES = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: policies}
spec:
  nodes:
    - {name: node-1, ip: 192.168.49.2}
    - {name: node-2, ip: 192.168.49.3}
  proxyMode: %s
  coredns: {enabled: false}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: httpd, ports: [{name: http, containerPort: 8080}]}]
"""


def policy_cluster(mode: str = "iptables"):
    """One Service per internal × external policy and exposure; the only endpoint is on node-2."""
    docs = [NODES % mode]
    n = 0
    for itp, etp, exposure in itertools.product(POLICIES, POLICIES, EXPOSURES[1:]):
        n += 1
        spec = {"NodePort": "  type: NodePort\n",
                "ExternalIP": f"  externalIPs: [192.168.49.{100 + n}]\n",
                "LoadBalancer": "  type: LoadBalancer\n"}[exposure]
        docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {{name: {exposure.lower()}-{itp.lower()}-{etp.lower()}}}\n"
                    f"spec:\n{spec}  selector: {{app: web}}\n  internalTrafficPolicy: {itp}\n"
                    f"  externalTrafficPolicy: {etp}\n  ports: [{{port: 80, targetPort: http}}]\n")
    return load_text("---\n".join(docs), source="<policy cluster>")


def test_ipvs_both_policies_local_fall_back_to_cluster_endpoints() -> None:
    """syncEndpoint: onlyNodeLocalEndpoints with no local endpoints → the Cluster endpoints."""
    cluster = policy_cluster("ipvs")
    state = build(cluster, "node-1")
    svc = cluster.service("default", "nodeport-local-local")
    remote = cluster.pod("default", "web-2").ip
    by_key = {(vs.protocol, vs.addr): vs for vs in state.table}
    for ip, port in ((svc.cluster_ip, 80), ("192.168.49.2", svc.ports[0].node_port)):
        vs = by_key[("TCP", f"{ip}:{port}")]
        assert [d.addr for d in vs.dests] == [f"{remote}:8080"], (ip, port)
    # iTP Local on a ClusterIP-only port never uses Cluster endpoints: no real server at all
    only = load_text(NODES % "ipvs" + "---\napiVersion: v1\nkind: Service\nmetadata: {name: only}\nspec:\n"
                     "  selector: {app: web}\n  internalTrafficPolicy: Local\n  ports: [{port: 80, targetPort: http}]\n",
                     source="<itp local>")
    vip = only.service("default", "only").cluster_ip
    vs = {v.addr: v for v in build(only, "node-1").table}[f"{vip}:80"]
    assert list(vs.dests) == []


def test_rendered_node_rule_sets_declare_every_jump_target() -> None:
    cluster = policy_cluster()
    for node in ("node-1", "node-2"):
        assert _undeclared_jumps(render(cluster, node)) == [], node
    for node in ("node-1", "node-2"):
        assert _undeclared_jumps(build(policy_cluster("ipvs"), node).iptables) == [], node


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
def test_every_policy_combination_loads_with_iptables_restore(mode: str) -> None:
    """The real iptables-restore accepts each node's whole rule set (it refused it before the fix)."""
    cluster = policy_cluster(mode)
    for node in ("node-1", "node-2"):
        if mode == "iptables":
            saved = iptables_restore_in_scratch_netns(render(cluster, node), "netsim-pol")
            # the short-circuit jump of the both-Local NodePort lands in a chain the kernel holds
            (jump,) = [line for line in saved.splitlines()
                       if "pod traffic for default/nodeport-local-local external destinations" in line]
            assert f":{jump.split(' -j ')[1]} - [0:0]" in saved, node
        else:
            state = build(cluster, node)
            iptables_restore_in_scratch_netns(state.iptables, "netsim-pol", ipsets=state.ipset_save())
