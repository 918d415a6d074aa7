"""What the API server defaults, allocates and refuses on a Service, as the loader does it.

Sources (kubernetes/kubernetes): pkg/apis/core/v1/defaults.go SetDefaults_Service (targetPort, traffic
policies, allocateLoadBalancerNodePorts, sessionAffinityConfig), pkg/apis/core/validation/validation.go
ValidateService / ValidateServiceClusterIPsRelatedFields / validateServiceExternalTrafficPolicy,
pkg/registry/core/service/storage/alloc.go initIPFamilyFields (single-stack IPv4 cluster) and
allocHealthCheckNodePort. Messages keep the loader's one-line form: file, document, field path, reason.
"""
from __future__ import annotations

import pytest

from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text
from netsim.rules.iptables.proxier import render
from netsim.control.serialize import service_to_k8s

HEAD = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: api}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}]
  coredns: {enabled: false}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  containers: [{name: c, image: httpd, ports: [{containerPort: 80}]}]
---
"""
D = "app.yaml: document 3 (Service 'web'): "


def svc(spec: str):
    c = load_text(HEAD + "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n" + spec, source="app.yaml")
    return c, c.service("default", "web")


def refused(spec: str) -> str:
    with pytest.raises(ManifestError) as err:
        svc(spec)
    return str(err.value)


@pytest.mark.parametrize("target", ["0", "''"])
def test_unset_target_port_defaults_to_the_port(target: str) -> None:
    c, s = svc(f"  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: {target}}}]\n")
    assert s.ports[0].target_port == 80
    assert "--to-destination " + c.pod("default", "web-1").ip + ":80" in render(c, "node-1")


def test_allocate_load_balancer_node_ports_defaults_true_and_only_on_load_balancers() -> None:
    _, s = svc("  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n")
    assert s.allocate_load_balancer_node_ports is True and 30000 <= s.ports[0].node_port <= 32767
    assert service_to_k8s(s)["spec"]["allocateLoadBalancerNodePorts"] is True
    assert refused("  allocateLoadBalancerNodePorts: false\n  ports: [{port: 80}]\n") == (
        D + "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'")


def test_source_ranges_only_on_load_balancers_and_as_cidrs() -> None:
    assert refused("  type: NodePort\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  ports: [{port: 80}]\n") == (
        D + "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'")
    assert refused("  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/8, 10.0.0.300/8]\n"
                   "  ports: [{port: 80}]\n") == (
        D + "spec.LoadBalancerSourceRanges: Invalid value: '[10.0.0.0/8 10.0.0.300/8]': must be a list of IP "
            "ranges. For example, 10.240.0.0/24,10.250.0.0/24")
    # space padding is accepted (GetLoadBalancerSourceRanges trims), host bits too
    _, s = svc("  type: LoadBalancer\n  loadBalancerSourceRanges: [' 10.1.2.3/8 ']\n  ports: [{port: 80}]\n")
    assert s.load_balancer_source_ranges == ["10.1.2.3/8"]


def test_external_traffic_policy_only_when_externally_accessible() -> None:
    assert refused("  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n") == (
        D + "spec.externalTrafficPolicy: Invalid value: 'Local': may only be set for externally-accessible services")
    # a ClusterIP Service with externalIPs is externally accessible (apiservice.ExternallyAccessible)
    _, s = svc("  externalIPs: [203.0.113.5]\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n")
    assert s.external_traffic_policy == "Local"
    _, s = svc("  externalIPs: [203.0.113.5]\n  ports: [{port: 80}]\n")
    assert service_to_k8s(s)["spec"]["externalTrafficPolicy"] == "Cluster"


def test_health_check_node_port() -> None:
    assert refused("  type: LoadBalancer\n  healthCheckNodePort: 30123\n  ports: [{port: 80}]\n") == (
        D + "spec.healthCheckNodePort: Invalid value: 30123: may only be set when `type` is 'LoadBalancer' and "
            "`externalTrafficPolicy` is 'Local'")
    _, s = svc("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n")
    assert 30000 <= s.health_check_node_port <= 32767 and s.health_check_node_port != s.ports[0].node_port


def test_session_affinity_timeout_defaults_to_three_hours() -> None:
    _, s = svc("  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n")
    assert s.affinity_timeout == 10800
    assert service_to_k8s(s)["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_ip_families_default_single_stack_ipv4() -> None:
    _, s = svc("  ports: [{port: 80}]\n")
    spec = service_to_k8s(s)["spec"]
    assert (spec["ipFamilyPolicy"], spec["ipFamilies"], spec["clusterIPs"]) == ("SingleStack", ["IPv4"], [s.cluster_ip])
    _, s = svc("  ipFamilyPolicy: PreferDualStack\n  ports: [{port: 80}]\n")
    assert (s.ip_family_policy, s.ip_families) == ("PreferDualStack", ["IPv4"])
    # headless selector-less: RequireDualStack with both families, even on a single-stack cluster
    _, s = svc("  clusterIP: None\n  ports: [{port: 80}]\n")
    assert (s.ip_family_policy, s.ip_families) == ("RequireDualStack", ["IPv4", "IPv6"])
    _, s = svc("  type: ExternalName\n  externalName: db.example.com\n")
    assert "ipFamilies" not in service_to_k8s(s)["spec"]


@pytest.mark.parametrize("spec, message", [
    ("  ipFamilies: [IPv6]\n", "spec.ipFamilies[0]: Invalid value: 'IPv6': not configured on this cluster"),
    ("  ipFamilyPolicy: RequireDualStack\n",
     "spec.ipFamilyPolicy: Invalid value: 'RequireDualStack': this cluster is not configured for dual-stack services"),
    ("  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]\n",
     "spec.ipFamilyPolicy: Invalid value: 'SingleStack': must be 'RequireDualStack' or 'PreferDualStack' when "
     "multiple IP families are specified"),
    ("  ipFamilyPolicy: DualStack\n",
     "spec.ipFamilyPolicy: Unsupported value: 'DualStack': supported values: \"PreferDualStack\", "
     "\"RequireDualStack\", \"SingleStack\""),
    ("  ipFamilies: [IPv4, IPv4]\n", "spec.ipFamilies[1]: Duplicate value: 'IPv4'"),
    ("  ipFamilies: [IPv5]\n", "spec.ipFamilies[0]: Unsupported value: 'IPv5': supported values: \"IPv4\", \"IPv6\""),
])
def test_ip_families_the_cluster_cannot_serve_are_refused(spec: str, message: str) -> None:
    assert refused(spec + "  ports: [{port: 80}]\n") == D + message


def test_cluster_ips_next_to_cluster_ip() -> None:
    _, s = svc("  clusterIP: 10.96.0.50\n  clusterIPs: [10.96.0.50]\n  ports: [{port: 80}]\n")
    assert s.cluster_ip == "10.96.0.50"
    assert refused("  clusterIPs: [10.96.0.50]\n  ports: [{port: 80}]\n") == (
        D + "spec.clusterIPs: Invalid value: ['10.96.0.50']: must be empty when `clusterIP` is not specified")
    assert refused("  clusterIP: 10.96.0.50\n  clusterIPs: [10.96.0.51]\n  ports: [{port: 80}]\n") == (
        D + "spec.clusterIPs: Invalid value: ['10.96.0.51']: first value must match `clusterIP`")
    assert refused("  clusterIP: 10.96.0.50\n  clusterIPs: [10.96.0.50, 'fd00::5']\n  ports: [{port: 80}]\n") == (
        D + "spec.ipFamilyPolicy: Invalid value: 'SingleStack': must be 'RequireDualStack' or 'PreferDualStack' "
            "when multiple cluster IPs are specified")
    assert refused("  clusterIP: 10.96.0.50\n  clusterIPs: [10.96.0.50, 'fd00::5']\n  ipFamilyPolicy: PreferDualStack\n"
                   "  ports: [{port: 80}]\n") == (
        D + "spec.clusterIPs[1]: Invalid value: ['10.96.0.50', 'fd00::5']: IPv6 is not configured on this cluster")
