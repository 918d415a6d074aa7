"""The manifest loader: every supported kind and field becomes the model object Kubernetes would make.

Expectations come from the Kubernetes API (core/v1, apps/v1, discovery.k8s.io/v1 field semantics and
defaults), kubeadm's defaults (pod 10.244.0.0/16 as flannel's manifests use, service 10.96.0.0/12,
kube-dns at the 10th address, cluster.local, NodePorts 30000-32767, a 2-replica `coredns`
Deployment and the `kube-dns` Service in kube-system) and the controllers' naming rules
(Deployment pods `<name>-<pod-template-hash>-<5 chars>`, StatefulSet pods `<name>-<ordinal>`).
"""
from __future__ import annotations

import ipaddress
import re

import pytest

from netsim.control.manifests import example_path, list_examples, load, load_text
from netsim.control.model import ClusterConfig

SAFE = "bcdfghjklmnpqrstvwxz2456789"      # k8s.io/apimachinery/pkg/util/rand's alphabet


def cluster_doc(**spec) -> str:
    lines = ["apiVersion: netsim.io/v1", "kind: Cluster", "metadata: {name: t}", "spec:"]
    lines += [f"  {k}: {v}" for k, v in spec.items()] or ["  {}"]
    return "\n".join(lines) + "\n---\n"


def pod_yaml(name="p", labels="{app: web}", spec_extra="", ports="[{name: http, containerPort: 8080}]",
             status="", ns="default") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {labels}}}\n"
            f"spec:\n  containers: [{{name: c, image: x, ports: {ports}}}]\n{spec_extra}{status}---\n")


def svc_yaml(name="web", spec="  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n",
             ns="default", status="") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}{status}---\n"


# ---------------------------------------------------------------- Cluster document and kubeadm defaults
def test_defaults_without_cluster_document_are_kubeadms():
    c = load_text(pod_yaml())
    cfg = c.config
    assert (cfg.cluster_cidr, cfg.service_cidr, cfg.dns_service_ip, cfg.cluster_domain) == \
        ("10.244.0.0/16", "10.96.0.0/12", "10.96.0.10", "cluster.local")
    assert cfg.node_port_range == (30000, 32767)
    assert cfg.proxy_mode == "iptables" and cfg.ipvs_scheduler == "rr" and cfg.masquerade_all is False
    assert [(n.name, n.ip, n.pod_cidr) for n in c.nodes()] == [
        ("node-1", "192.168.49.2", "10.244.0.0/24"), ("node-2", "192.168.49.3", "10.244.1.0/24"),
        ("node-3", "192.168.49.4", "10.244.2.0/24")]
    assert all(n.labels["kubernetes.io/hostname"] == n.name for n in c.nodes())


def test_kubeadm_coredns_deployment_and_kube_dns_service():
    c = load_text(pod_yaml())
    dns = c.service("kube-system", "kube-dns")
    # kubeadm's kube-dns Service: clusterIP = 10th address, ports dns/UDP, dns-tcp/TCP, metrics 9153.
    assert dns.cluster_ip == "10.96.0.10"
    assert [(p.name, p.port, p.protocol) for p in dns.ports] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    assert dns.selector == {"k8s-app": "kube-dns"}
    coredns = [p for p in c.pods("kube-system") if p.name.startswith("coredns-")]
    assert len(coredns) == 2 and all(p.labels["k8s-app"] == "kube-dns" for p in coredns)
    assert all(p.dns_policy == "Default" for p in coredns)   # kubeadm's coredns uses dnsPolicy: Default
    (sl,) = c.endpoint_slices("kube-system", "kube-dns")
    assert sorted(e.addresses[0] for e in sl.endpoints) == sorted(p.ip for p in coredns)


def test_coredns_can_be_disabled_or_resized():
    c = load_text(cluster_doc(coredns="{enabled: false}") + pod_yaml())
    dns = [p for p in c.pods("kube-system") if p.labels.get("k8s-app") == "kube-dns"]
    assert c.service("kube-system", "kube-dns") is None and dns == []
    c = load_text(cluster_doc(coredns="{replicas: 3}") + pod_yaml())
    assert len([p for p in c.pods("kube-system") if p.labels.get("k8s-app") == "kube-dns"]) == 3


def test_cluster_document_every_field():
    text = cluster_doc(
        nodes="[{name: a, ip: 10.1.0.5, labels: {disk: ssd}, zone: z1}, {name: b}]",
        podCIDR="10.32.0.0/16", clusterCIDR="10.32.0.0/12", nodeCIDRMaskSize=20,
        serviceCIDR="10.100.0.0/16", nodeNetwork="10.1.0.0/24", clusterDomain="corp.internal",
        dnsServiceIP="10.100.0.53", nodePortRange="31000-31010", proxyMode="ipvs", ipvsScheduler="sh",
        masqueradeAll="true", podNetwork="host-gw", loadBalancerPool="10.1.0.200/29",
        externalClientIP="10.1.0.100", seed=42, upstreamDNS="{Example.COM.: [93.184.216.34]}",
        kubeadm="{enabled: false}")
    c = load_text(text + pod_yaml())
    cfg = c.config
    assert cfg.name == "t"
    assert cfg.cluster_cidr == "10.32.0.0/12"           # clusterCIDR wins over podCIDR
    assert cfg.node_cidr_mask == 20 and cfg.service_cidr == "10.100.0.0/16"
    assert cfg.node_network == "10.1.0.0/24" and cfg.cluster_domain == "corp.internal"
    assert cfg.dns_service_ip == "10.100.0.53" and c.service("kube-system", "kube-dns").cluster_ip == "10.100.0.53"
    assert cfg.node_port_range == (31000, 31010)
    assert (cfg.proxy_mode, cfg.ipvs_scheduler, cfg.masquerade_all, cfg.pod_network) == ("ipvs", "sh", True, "host-gw")
    assert cfg.load_balancer_pool == "10.1.0.200/29" and cfg.external_client_ip == "10.1.0.100"
    assert cfg.seed == 42 and cfg.upstream_dns == {"example.com": ["93.184.216.34"]}
    assert not cfg.kubeadm and c.service("default", "kubernetes") is None and c.workloads("kube-system")[0].name == "coredns"
    a, b = c.nodes()
    assert (a.name, a.ip, a.zone, a.pod_cidr) == ("a", "10.1.0.5", "z1", "10.32.0.0/20")
    # a, listed first, is where kubeadm init ran: the control plane, labelled and tainted as kubeadm does
    assert a.labels == {"disk": "ssd", "kubernetes.io/hostname": "a", "topology.kubernetes.io/zone": "z1",
                        "node-role.kubernetes.io/control-plane": "",
                        "node.kubernetes.io/exclude-from-external-load-balancers": "",
                        # the kubelet's own labels (kubelet_node_status.go initialNode)
                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
    assert [str(t) for t in a.taints] == ["node-role.kubernetes.io/control-plane:NoSchedule"] and b.taints == []
    assert (b.name, b.ip, b.pod_cidr) == ("b", "10.1.0.3", "10.32.16.0/20")   # default IP: .2 + index


def test_pod_cidr_is_carved_for_nodes_and_cluster_cidr_is_kube_proxys():
    # kube-controller-manager --cluster-cidr (node podCIDRs) vs kube-proxy --cluster-cidr (masquerade/local
    # detection); kubeadm sets both from podSubnet, so clusterCIDR defaults to podCIDR.
    c = load_text(cluster_doc(podCIDR="10.244.0.0/16", clusterCIDR="10.0.0.0/8") + pod_yaml())
    assert [n.pod_cidr for n in c.nodes()] == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
    assert c.config.cluster_cidr == "10.0.0.0/8" and c.config.pod_cidr == "10.244.0.0/16"
    c = load_text(cluster_doc(podCIDR="10.32.0.0/16") + pod_yaml())
    assert c.config.cluster_cidr == "10.32.0.0/16" and c.nodes()[2].pod_cidr == "10.32.2.0/24"


def test_cluster_document_defaults_dns_ip_and_lb_pool_from_its_cidrs():
    c = load_text(cluster_doc(serviceCIDR="172.20.0.0/16", nodeNetwork="10.9.0.0/24") + pod_yaml())
    assert c.config.dns_service_ip == "172.20.0.10"             # kubeadm: the 10th address
    assert c.config.load_balancer_pool == "10.9.0.240/28"       # the node network's last /28
    assert [n.ip for n in c.nodes()] == ["10.9.0.2", "10.9.0.3", "10.9.0.4"]


def test_nodes_given_as_plain_names():
    c = load_text(cluster_doc(nodes="[w1, w2]") + pod_yaml())
    assert [(n.name, n.ip) for n in c.nodes()] == [("w1", "192.168.49.2"), ("w2", "192.168.49.3")]


def test_seed_makes_loading_reproducible_and_changes_choices():
    text = pod_yaml() + svc_yaml()
    one, two = load_text(cluster_doc(seed=1) + text), load_text(cluster_doc(seed=1) + text)
    assert one.service("default", "web").cluster_ip == two.service("default", "web").cluster_ip
    ips = {load_text(cluster_doc(seed=s) + text).service("default", "web").cluster_ip for s in range(5)}
    assert len(ips) > 1


# ---------------------------------------------------------------- Namespace
def test_namespace_document_and_objects_in_it():
    c = load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: a}}\n---\n"
                  + pod_yaml(ns="shop"))
    assert {n.name for n in c.namespaces()} >= {"default", "kube-system", "shop"}
    assert next(n for n in c.namespaces() if n.name == "shop").labels == {"team": "a"}
    assert c.pod("shop", "p") is not None


# ---------------------------------------------------------------- Pod
def test_pod_fields():
    c = load_text(pod_yaml(
        labels="{app: web, tier: '1'}",
        ports="[{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP},"
              " {containerPort: 3868, protocol: SCTP}]",
        spec_extra="  nodeName: node-2\n  hostname: web-a\n  subdomain: websvc\n"))
    p = c.pod("default", "p")
    assert p.labels == {"app": "web", "tier": "1"}
    assert [(cp.name, cp.container_port, cp.protocol) for cp in p.ports] == [
        ("http", 8080, "TCP"), ("dns", 53, "UDP"), (None, 3868, "SCTP")]
    assert p.node_name == "node-2" and ipaddress.ip_address(p.ip) in ipaddress.ip_network(c.node("node-2").pod_cidr)
    assert (p.hostname, p.subdomain) == ("web-a", "websvc")
    assert p.phase == "Running" and p.ready


def test_pod_ip_is_host_local_first_free_from_dot_two():
    # host-local IPAM: .1 is the cni0 gateway, pods get .2, .3 in order.
    c = load_text(cluster_doc(coredns="{enabled: false}") + pod_yaml("a", spec_extra="  nodeName: node-1\n")
                  + pod_yaml("b", spec_extra="  nodeName: node-1\n"))
    assert (c.pod("default", "a").ip, c.pod("default", "b").ip) == ("10.244.0.2", "10.244.0.3")


def test_pod_node_selector_places_pod_on_matching_node():
    c = load_text(cluster_doc(nodes="[{name: a}, {name: b, labels: {disk: ssd}}, {name: c}]")
                  + "".join(pod_yaml(f"p{i}", spec_extra="  nodeSelector: {disk: ssd}\n") for i in range(4)))
    assert {c.pod("default", f"p{i}").node_name for i in range(4)} == {"b"}


def test_pod_with_unsatisfiable_node_selector_stays_pending_with_event():
    c = load_text(pod_yaml(spec_extra="  nodeSelector: {gpu: 'true'}\n"))
    p = c.pod("default", "p")
    assert p.phase == "Pending" and p.node_name is None and p.ip is None
    ev = [e for e in c.event_log if e.reason == "FailedScheduling"]
    assert len(ev) == 1 and ev[0].object == "pod/p" and ev[0].type == "Warning"


def test_pods_spread_over_nodes():
    c = load_text(cluster_doc(coredns="{enabled: false}") + "".join(pod_yaml(f"p{i}") for i in range(6)))
    per_node = {}
    for p in c.pods("default"):
        per_node[p.node_name] = per_node.get(p.node_name, 0) + 1
    # node-1 is kubeadm's control plane, tainted NoSchedule: the pods spread over the two workers
    assert per_node == {"node-2": 3, "node-3": 3}


@pytest.mark.parametrize("status, ready", [("True", True), ("False", False), ("Unknown", False)])
def test_pod_readiness_from_status_conditions(status, ready):
    c = load_text(pod_yaml(status=f"status:\n  conditions: [{{type: PodScheduled, status: 'True'}}, "
                                  f"{{type: Ready, status: '{status}'}}]\n") + svc_yaml())
    assert c.pod("default", "p").ready is ready
    (ep,) = c.endpoint_slices("default", "web")[0].endpoints
    assert ep.ready is ready and ep.serving is ready


def test_host_network_pod_uses_node_ip():
    c = load_text(pod_yaml(spec_extra="  hostNetwork: true\n  nodeName: node-3\n"))
    assert c.pod("default", "p").ip == "192.168.49.4"
    assert c.pod_by_ip("192.168.49.4") is None       # pod_by_ip finds pod-network pods only


def test_dns_policy_and_config():
    c = load_text(pod_yaml(spec_extra="  dnsPolicy: None\n  dnsConfig: {nameservers: [1.1.1.1], searches: [a.b]}\n"))
    p = c.pod("default", "p")
    assert p.dns_policy == "None" and p.dns_config == {"nameservers": ["1.1.1.1"], "searches": ["a.b"]}


# ---------------------------------------------------------------- Service
def test_clusterip_service_allocated_from_service_cidr_above_static_band():
    c = load_text(pod_yaml() + svc_yaml())
    s = c.service("default", "web")
    ip = ipaddress.ip_address(s.cluster_ip)
    net = ipaddress.ip_network("10.96.0.0/12")
    # KEP-3070: dynamic allocation avoids the lower band min(max(16, size/16), 256) = 256 addresses.
    assert ip in net and int(ip) - int(net.network_address) > 256
    assert s.type == "ClusterIP" and s.ports[0].target_port == 8080 and s.ports[0].node_port is None


def test_explicit_cluster_ip():
    c = load_text(svc_yaml(spec="  clusterIP: 10.96.5.5\n  selector: {app: web}\n  ports: [{port: 80}]\n"))
    s = c.service("default", "web")
    assert s.cluster_ip == "10.96.5.5"
    assert s.ports[0].target_port == 80      # targetPort defaults to port


def test_headless_service_keeps_none_and_still_gets_slices():
    c = load_text(pod_yaml() + svc_yaml(spec="  clusterIP: None\n  selector: {app: web}\n"
                                             "  ports: [{port: 80, targetPort: 8080}]\n"))
    s = c.service("default", "web")
    assert s.cluster_ip == "None" and s.headless
    assert [e.addresses for e in c.endpoint_slices("default", "web")[0].endpoints] == [[c.pod("default", "p").ip]]


def test_headless_service_without_ports_is_valid():
    c = load_text(svc_yaml(spec="  clusterIP: None\n  selector: {app: web}\n"))
    assert c.service("default", "web").ports == []


def test_nodeport_service_with_and_without_explicit_node_port():
    c = load_text(pod_yaml() + svc_yaml(spec="  type: NodePort\n  selector: {app: web}\n  ports:\n"
                                             "    - {name: a, port: 80, nodePort: 30080}\n"
                                             "    - {name: b, port: 81}\n"))
    a, b = c.service("default", "web").ports
    assert a.node_port == 30080
    assert 30000 <= b.node_port <= 32767 and b.node_port != 30080


def test_load_balancer_with_status_ingress():
    c = load_text(svc_yaml(spec="  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n",
                           status="status:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.7}]\n"))
    s = c.service("default", "web")
    assert s.load_balancer_ips == ["203.0.113.7"] and 30000 <= s.ports[0].node_port <= 32767


def test_load_balancer_allocated_from_pool_in_order():
    spec = "  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80}]\n"
    c = load_text(svc_yaml("a", spec) + svc_yaml("b", spec))
    assert c.service("default", "a").load_balancer_ips == ["192.168.49.241"]
    assert c.service("default", "b").load_balancer_ips == ["192.168.49.242"]


def test_load_balancer_etp_local_gets_health_check_node_port_and_can_skip_node_ports():
    c = load_text(svc_yaml(spec="  type: LoadBalancer\n  externalTrafficPolicy: Local\n"
                                "  allocateLoadBalancerNodePorts: false\n  selector: {app: web}\n"
                                "  ports: [{port: 80}]\n"))
    s = c.service("default", "web")
    assert s.external_traffic_policy == "Local"
    assert 30000 <= s.health_check_node_port <= 32767
    assert s.ports[0].node_port is None and s.allocate_load_balancer_node_ports is False


def test_external_name_service():
    c = load_text(svc_yaml(spec="  type: ExternalName\n  externalName: db.example.com\n"))
    s = c.service("default", "web")
    assert s.type == "ExternalName" and s.external_name == "db.example.com" and s.cluster_ip is None
    assert c.endpoint_slices("default", "web") == []


def test_external_name_may_end_with_a_dot():
    c = load_text(svc_yaml(spec="  type: ExternalName\n  externalName: db.example.com.\n"))
    assert c.service("default", "web").external_name == "db.example.com."


def test_service_object_given_to_the_cluster_is_not_mutated():
    from netsim.control.cluster import Cluster
    from netsim.control.model import Service, ServicePort
    mine = Service("web", type="NodePort", ports=[ServicePort(80)])
    c = Cluster(ClusterConfig(coredns=False))
    c.add(mine)
    assert mine.cluster_ip is None and mine.ports[0].node_port is None
    assert c.service("default", "web").ports[0].node_port is not None


def test_external_ips_session_affinity_and_policies():
    c = load_text(pod_yaml() + svc_yaml(spec=(
        "  selector: {app: web}\n  externalIPs: [198.51.100.1, 198.51.100.2]\n"
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n"
        "  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  publishNotReadyAddresses: true\n"
        "  ports: [{port: 80, targetPort: 8080}]\n")))
    s = c.service("default", "web")
    assert s.external_ips == ["198.51.100.1", "198.51.100.2"]
    assert (s.session_affinity, s.affinity_timeout) == ("ClientIP", 60)
    assert (s.external_traffic_policy, s.internal_traffic_policy) == ("Local", "Local")
    assert s.publish_not_ready_addresses is True


def test_session_affinity_default_timeout_is_three_hours():
    c = load_text(svc_yaml(spec="  selector: {app: web}\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n"))
    assert c.service("default", "web").affinity_timeout == 10800   # v1.DefaultClientIPServiceAffinitySeconds


def test_multi_port_tcp_udp_sctp_and_named_target_ports():
    c = load_text(pod_yaml(ports="[{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP},"
                                 " {name: diam, containerPort: 3868, protocol: SCTP}]")
                  + svc_yaml(spec="  selector: {app: web}\n  ports:\n"
                                  "    - {name: web, port: 80, targetPort: http}\n"
                                  "    - {name: dns, port: 53, protocol: UDP, targetPort: dns}\n"
                                  "    - {name: diam, port: 3868, protocol: SCTP, targetPort: 3868}\n"))
    s = c.service("default", "web")
    assert [(p.name, p.port, p.protocol, p.target_port) for p in s.ports] == [
        ("web", 80, "TCP", "http"), ("dns", 53, "UDP", "dns"), ("diam", 3868, "SCTP", 3868)]
    (sl,) = c.endpoint_slices("default", "web")
    assert [(p.name, p.port, p.protocol) for p in sl.ports] == [
        ("web", 8080, "TCP"), ("dns", 5353, "UDP"), ("diam", 3868, "SCTP")]


# ---------------------------------------------------------------- workloads
DEPLOY = """apiVersion: apps/v1
kind: {kind}
metadata: {{name: web}}
spec:
  replicas: 3
  {extra}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, tier: fe}}}}
    spec:
      containers: [{{name: c, ports: [{{name: http, containerPort: 8080}}]}}]
---
"""


def test_deployment_expands_to_pods_with_template_hash():
    c = load_text(DEPLOY.format(kind="Deployment", extra=""))
    pods = [p for p in c.pods("default")]
    assert len(pods) == 3
    h = pods[0].labels["pod-template-hash"]
    assert re.fullmatch(f"[{SAFE}]+", h)
    for p in pods:
        assert re.fullmatch(f"web-{h}-[{SAFE}]{{5}}", p.name)
        assert p.labels == {"app": "web", "tier": "fe", "pod-template-hash": h}
        assert p.owner == ("Deployment", "web") and p.phase == "Running"
        assert [cp.container_port for cp in p.ports] == [8080]
    assert len({p.name for p in pods}) == 3


def test_replicaset_pods_have_no_template_hash():
    c = load_text(DEPLOY.format(kind="ReplicaSet", extra=""))
    pods = c.pods("default")
    assert len(pods) == 3
    assert all(re.fullmatch(f"web-[{SAFE}]{{5}}", p.name) and "pod-template-hash" not in p.labels for p in pods)


def test_statefulset_pods_are_ordinal_with_hostname_and_subdomain():
    c = load_text(DEPLOY.format(kind="StatefulSet", extra="serviceName: websvc")
                  + svc_yaml("websvc", "  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 8080}]\n"))
    pods = sorted(c.pods("default"), key=lambda p: p.name)
    assert [p.name for p in pods] == ["web-0", "web-1", "web-2"]
    assert [(p.hostname, p.subdomain) for p in pods] == [(f"web-{i}", "websvc") for i in range(3)]
    # the EndpointSlice controller copies the hostname when subdomain == the Service's name
    (sl,) = c.endpoint_slices("default", "websvc")
    assert sorted(e.hostname for e in sl.endpoints) == ["web-0", "web-1", "web-2"]


def test_workload_replicas_default_to_one():
    c = load_text(DEPLOY.format(kind="Deployment", extra="").replace("replicas: 3", "minReadySeconds: 0"))
    assert len(c.pods("default")) == 1


# ---------------------------------------------------------------- EndpointSlice for selector-less Services
def test_manual_endpoint_slice_for_selectorless_service():
    c = load_text(svc_yaml(spec="  ports: [{name: http, port: 80, targetPort: 9376}]\n") + """apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 9376, protocol: TCP}]
endpoints:
  - addresses: [10.1.2.3]
    conditions: {ready: true}
    nodeName: node-1
    zone: z
  - addresses: [10.1.2.4]
    conditions: {ready: false, serving: true, terminating: true}
    targetRef: {kind: Pod, name: legacy}
""")
    s = c.service("default", "web")
    assert s.selector is None
    (sl,) = c.endpoint_slices("default", "web")
    assert sl.name == "web-1" and sl.managed_by == "user"
    assert [(p.name, p.port, p.protocol) for p in sl.ports] == [("http", 9376, "TCP")]
    a, b = sl.endpoints
    assert (a.addresses, a.ready, a.serving, a.terminating, a.node_name, a.zone) == (
        ["10.1.2.3"], True, True, False, "node-1", "z")
    assert (b.ready, b.serving, b.terminating, b.target_ref) == (False, True, True, ("Pod", "default", "legacy"))
    assert not any("matches no pods" in n for n in c.notices)


# ---------------------------------------------------------------- other document shapes
def test_kind_list_and_skipped_kinds_and_empty_documents():
    c = load_text("---\n---\napiVersion: v1\nkind: List\nitems:\n"
                  "  - {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]}}\n"
                  "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n", "x.yaml")
    assert c.pod("default", "a") is not None
    # "---\n---\n": document 1 is empty, the List is document 2
    assert c.notices == ["skipped 1 object that does not affect Service networking: ConfigMap x1"]
    assert c.skipped == ["x.yaml: document 3 (ConfigMap 'cfg'): skipped: ConfigMap does not affect Service networking"]


def test_skipped_kinds_summarised_network_policy_not_emulated():
    """Online Boutique's 11 ServiceAccounts: one summary line; NetworkPolicy and Endpoints are said to be
    not emulated (they do change Service traffic in a real cluster)."""
    docs = [f"apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: sa{i}}}\n" for i in range(11)]
    docs += ["apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n",
             "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n",
             "apiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy}\n"]
    c = load_text("---\n".join(docs), "b.yaml")
    assert c.notices == [
        "skipped 1 object that netsim does not emulate: NetworkPolicy x1 (NetworkPolicy is not emulated: no "
        "traffic is filtered by it (the CNI plugin enforces it in a real cluster))",
        "skipped 1 object that netsim does not emulate: Endpoints x1 (v1 Endpoints are not emulated: the "
        "EndpointSlice mirroring controller would mirror them into EndpointSlices for a selector-less Service; "
        "write discovery.k8s.io/v1 EndpointSlices)",
        "skipped 12 objects that do not affect Service networking: ServiceAccount x11, ConfigMap x1"]
    assert len(c.skipped) == 14 and c.skipped[0].startswith("b.yaml: document 13 (NetworkPolicy 'deny'): skipped: ")
    assert c.skipped[2] == ("b.yaml: document 1 (ServiceAccount 'sa0'): skipped: ServiceAccount does not affect "
                            "Service networking")


def test_several_files_load_into_one_cluster(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(pod_yaml())
    b.write_text(svc_yaml())
    c = load([str(a), str(b)])
    assert len(c.endpoint_slices("default", "web")[0].endpoints) == 1


def test_selector_warnings():
    c = load_text(pod_yaml() + svc_yaml("nomatch", "  selector: {app: nothing}\n  ports: [{port: 80}]\n")
                  + svc_yaml("badport", "  selector: {app: web}\n  ports: [{port: 80, targetPort: grpc}]\n"))
    assert c.notices == [
        "warning: Service default/nomatch: selector {'app': 'nothing'} matches no pods",
        "warning: Service default/badport: port 80: targetPort 'grpc' is not a TCP containerPort name of any "
        "selected pod"]
    (sl,) = c.endpoint_slices("default", "badport")     # the pod is an endpoint with no usable port
    assert sl.ports == [] and len(sl.endpoints) == 1


def test_examples_load_and_are_listed():
    names = list_examples()
    assert {"httpd-app", "shop"} <= set(names)
    for n in names:
        assert load(f"example:{n}").pods()
        assert example_path(n).endswith(f"{n}.yaml")


def test_shop_example_shape(shop_cluster):
    c = shop_cluster
    types = {s.name: s.type for s in c.services("shop")}
    assert types == {"frontend": "NodePort", "backend": "ClusterIP", "api": "LoadBalancer", "db": "ClusterIP",
                     "payments": "ExternalName"}
    assert c.service("shop", "db").headless
    assert c.service("shop", "frontend").ports[0].node_port == 30100
    assert sorted(p.name for p in c.pods("shop") if p.name.startswith("db-")) == ["db-0", "db-1"]
    assert c.config == ClusterConfig(name="shop", seed=7, upstream_dns={"payments.example.com": ["203.0.113.10"]})
