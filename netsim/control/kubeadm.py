"""What `kubeadm init` leaves in a cluster besides CoreDNS: the `default/kubernetes` Service and its
EndpointSlice, the control-plane static Pods (as their mirror Pods), and the kube-proxy DaemonSet.

* `default/kubernetes`: created by kube-apiserver itself at the first address of the Service CIDR
  (pkg/controlplane/controller/kubernetesservice controller.go CreateOrUpdateMasterServiceIfNeeded:
  labels provider=kubernetes and component=apiserver, no selector, port `https` 443/TCP →
  targetPort 6443, SessionAffinity None, ipFamilyPolicy SingleStack); its endpoints are written by
  the apiserver's endpoint reconciler (pkg/controlplane/reconcilers/endpointsadapter.go
  updateEndpointSlice): one EndpointSlice named `kubernetes`, labelled only
  kubernetes.io/service-name, one ready endpoint per apiserver address, port `https` 6443/TCP.
* Static Pods: kubeadm writes etcd, kube-apiserver, kube-controller-manager and kube-scheduler
  manifests into /etc/kubernetes/manifests on the control-plane node
  (cmd/kubeadm/app/phases/controlplane/manifests.go, cmd/kubeadm/app/phases/etcd/local.go); the
  kubelet runs them and posts a mirror Pod named `<component>-<node>`, owned by the Node, all
  hostNetwork in kube-system. The ports are the components' own listeners with kubeadm's flags:
  kube-apiserver :6443 on every address; etcd client 2379 on 127.0.0.1 and the node address, peer
  2380 on the node address, metrics 127.0.0.1:2381; kube-controller-manager and kube-scheduler
  bind their secure ports to 127.0.0.1 (--bind-address=127.0.0.1), 10257 and 10259.
* The kube-proxy DaemonSet (cmd/kubeadm/app/phases/addons/proxy/manifests.go): hostNetwork, priority
  system-node-critical, `tolerations: [{operator: Exists}]`, nodeSelector kubernetes.io/os=linux;
  kube-proxy's metrics on 127.0.0.1:10249 and healthz on 0.0.0.0:10256 (KubeProxyConfiguration
  defaults).

`ClusterConfig.kubeadm` (the Cluster document's `spec.kubeadm.enabled`, or `netsim.load(...,
kubeadm=False)`) switches all of them off at once.
"""
from __future__ import annotations

import hashlib
import ipaddress
from typing import Optional

from netsim.control.model import (ClusterConfig, ContainerPort, Deployment, Endpoint, EndpointPort, EndpointSlice, Node,
                          Pod, Service, ServicePort, Toleration)

KUBERNETES_VERSION = "v1.33.0"           # the API schema's version (netsim/schema/k8s-fields.json)
ETCD_VERSION = "3.5.21-0"                # kubeadm constants.go SupportedEtcdVersion for 1.33
APISERVER_PORT = 6443                    # kube-apiserver --secure-port (kubeadm's default bind port)
KUBE_PROXY_LABEL = ("k8s-app", "kube-proxy")
# kubelet's own node labels (pkg/kubelet/kubelet_node_status.go initialNode): the kube-proxy
# DaemonSet's nodeSelector needs kubernetes.io/os
NODE_OS_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}


def control_plane_node(nodes: list[Node]) -> Node:
    """The node `kubeadm init` ran on (netsim.control.manifests.kubeadm_roles labels it); the first if none is."""
    return next((n for n in nodes if n.control_plane), nodes[0])


def kubernetes_service_ip(cfg: ClusterConfig) -> str:
    """The first address of the Service CIDR (kube-apiserver ServiceIPRange → GetIndexedIP(1))."""
    return str(ipaddress.ip_network(cfg.service_cidr).network_address + 1)


def kubernetes_service(cfg: ClusterConfig, apiservers: list[Node]) -> tuple[Service, EndpointSlice]:
    """`default/kubernetes` and the EndpointSlice the apiserver's endpoint reconciler keeps for it."""
    svc = Service(name="kubernetes", namespace="default", type="ClusterIP", cluster_ip=kubernetes_service_ip(cfg),
                  selector=None, labels={"component": "apiserver", "provider": "kubernetes"},
                  ports=[ServicePort(443, "TCP", "https", APISERVER_PORT)])
    ips = sorted({n.ip for n in apiservers}, key=lambda ip: ipaddress.ip_address(ip))
    eps = EndpointSlice(name="kubernetes", namespace="default", service_name="kubernetes",
                        endpoints=[Endpoint(addresses=[ip], ready=True) for ip in ips],
                        ports=[EndpointPort(APISERVER_PORT, "TCP", "https")], managed_by="")
    return svc, eps


def _static_pod(component: str, node: Node, image: str, listen: list[tuple]) -> Pod:
    name = f"{component}-{node.name}"
    return Pod(name=name, namespace="kube-system", labels={"component": component, "tier": "control-plane"},
               node_name=node.name, host_network=True, owner=("Node", node.name),
               # the kubelet names a static pod's UID after a hash of its manifest and node
               uid=hashlib.md5(f"{node.name}/{name}".encode()).hexdigest(),
               images=[image], containers=[component], listen=listen, priority_class="system-node-critical",
               # a mirror pod tolerates every NoExecute taint: never evicted from its node
               tolerations=[Toleration("", "Exists", "", "NoExecute")])


def static_pods(node: Node) -> list[Pod]:
    """The mirror Pods of kubeadm's four control-plane static Pods on `node`."""
    reg = "registry.k8s.io"
    flags = "kubeadm's flags"
    return [
        _static_pod("etcd", node, f"{reg}/etcd:{ETCD_VERSION}", [
            (2379, "TCP", node.ip, f"{flags}: --listen-client-urls=https://127.0.0.1:2379,https://{node.ip}:2379"),
            (2379, "TCP", "127.0.0.1", f"{flags}: --listen-client-urls"),
            (2380, "TCP", node.ip, f"{flags}: --listen-peer-urls=https://{node.ip}:2380"),
            (2381, "TCP", "127.0.0.1", f"{flags}: --listen-metrics-urls=http://127.0.0.1:2381")]),
        _static_pod("kube-apiserver", node, f"{reg}/kube-apiserver:{KUBERNETES_VERSION}", [
            (APISERVER_PORT, "TCP", "", f"{flags}: --secure-port={APISERVER_PORT}")]),
        _static_pod("kube-controller-manager", node, f"{reg}/kube-controller-manager:{KUBERNETES_VERSION}", [
            (10257, "TCP", "127.0.0.1", f"{flags}: --bind-address=127.0.0.1")]),
        _static_pod("kube-scheduler", node, f"{reg}/kube-scheduler:{KUBERNETES_VERSION}", [
            (10259, "TCP", "127.0.0.1", f"{flags}: --bind-address=127.0.0.1")]),
    ]


def kube_proxy_daemonset() -> Deployment:
    template = Pod(name="", namespace="kube-system", labels={KUBE_PROXY_LABEL[0]: KUBE_PROXY_LABEL[1]},
                   host_network=True, node_selector={"kubernetes.io/os": "linux"},
                   images=[f"registry.k8s.io/kube-proxy:{KUBERNETES_VERSION}"], containers=["kube-proxy"],
                   priority_class="system-node-critical", tolerations=[Toleration("", "Exists")],
                   listen=[(10249, "TCP", "127.0.0.1", "KubeProxyConfiguration metricsBindAddress 127.0.0.1:10249"),
                           (10256, "TCP", "", "KubeProxyConfiguration healthzBindAddress 0.0.0.0:10256")])
    return Deployment(kind="DaemonSet", name="kube-proxy", namespace="kube-system", replicas=0,
                      selector={KUBE_PROXY_LABEL[0]: KUBE_PROXY_LABEL[1]}, template=template)


def kubeadm_objects(cfg: ClusterConfig, nodes: list[Node]) -> list:
    """Everything above, for a cluster whose nodes are `nodes` (one control-plane node: kubeadm's
    stacked etcd on the node `kubeadm init` ran on)."""
    cp = control_plane_node(nodes)
    svc, eps = kubernetes_service(cfg, [cp])
    return [svc, eps, *static_pods(cp), kube_proxy_daemonset()]


def served_by(pod: Pod) -> Optional[str]:
    """Which of kubeadm's components a hostNetwork Pod is: "kube-apiserver" for its mirror Pod,
    "kube-proxy" for a Pod of the kube-proxy DaemonSet, None otherwise (the kernel backend serves
    those two components' ports with processes of their own)."""
    if pod.namespace != "kube-system" or not pod.host_network or pod.owner is None:
        return None
    if pod.owner[0] == "Node" and pod.labels.get("component") == "kube-apiserver":
        return "kube-apiserver"
    if pod.owner == ("DaemonSet", "kube-proxy") and pod.labels.get(KUBE_PROXY_LABEL[0]) == KUBE_PROXY_LABEL[1]:
        return "kube-proxy"
    return None
