"""The kernel topology of a cluster, computed from the cluster model without touching the kernel.

One namespace per node (eth0 on the node network, a cni0 bridge holding the podCIDR's .1, flannel.1
VXLAN or host-gw routes to the other nodes), one per pod (eth0 = the pod IP, default route via cni0),
one for the underlay (a bridge joining every node's eth0) and one for the external client.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.control import kubeadm
from netsim.kernel import naming
from netsim.control.listen import listen_ports
from netsim.skb.packet import int2ip
from netsim.dataplane.topology import Topology, external_ip_node

DNS_LABEL = ("k8s-app", "kube-dns")      # CoreDNS pods' label (kubeadm's coredns Deployment)


@dataclass
class NodePlan:
    name: str
    netns: str
    ip: str
    prefixlen: int                       # of the node network
    pod_cidr: str
    cni_ip: str                          # first address of the podCIDR (bridge CNI gateway)
    vtep_ip: str                         # flannel: the podCIDR's network address, as a /32 on flannel.1
    vtep_mac: str
    underlay_port: str
    running: bool = True


@dataclass
class PodPlan:
    namespace: str
    name: str
    netns: str
    node: str
    ip: str
    prefixlen: int
    gateway: str
    veth: str
    ports: list[tuple[int, str]] = field(default_factory=list)   # (port, protocol) the pod listens on (netsim.control.listen)
    bound: list[tuple[int, str, str]] = field(default_factory=list)   # (port, protocol, address): one address only
    host_network: bool = False
    # kubeadm's pods whose ports another process of the backend serves: "kube-proxy" (proxyport:
    # 10249/10256 from the node's real sync status) or "kube-apiserver" (apiserver: HTTPS :6443)
    served_by: Optional[str] = None
    dns_server: bool = False             # a CoreDNS pod: runs the DNS stand-in on 53/UDP+TCP
    resolv_conf: Optional[str] = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class EdgePlan:
    """The hosts outside the cluster on the node network (as netsim.dataplane.topology builds them): the router
    (every node's default gateway), the external client, and the load balancer that owns the
    LoadBalancer ingress IPs and passes their packets, unchanged, to a node."""
    router_netns: str
    router_ip: str
    external_netns: str
    external_ip: str
    lb_netns: str
    lb_ip: str
    vip_routes: dict[str, str] = field(default_factory=dict)    # LB/external IP -> node IP it goes to


@dataclass
class KernelPlan:
    cluster: str
    underlay_netns: str
    node_prefixlen: int
    pod_network: str                     # vxlan | host-gw
    nodes: dict[str, NodePlan]
    pods: dict[str, PodPlan]
    edge: EdgePlan


def vtep_mac(cluster: str, node: str) -> str:
    """A stable locally administered unicast MAC for a node's flannel.1 (flannel picks a random one)."""
    h = hashlib.sha256(f"{cluster}/{node}".encode()).digest()
    return "0a:" + ":".join(f"{b:02x}" for b in h[:5])


def resolv_conf(pod: Any, config: Any) -> Optional[str]:
    """kubelet's resolv.conf for dnsPolicy ClusterFirst (pkg/kubelet/network/dns: nameserver, search, ndots:5)."""
    if pod.dns_policy == "None" and pod.dns_config:
        lines = [f"nameserver {ns}" for ns in pod.dns_config.get("nameservers", [])]
        if pod.dns_config.get("searches"):
            lines.append("search " + " ".join(pod.dns_config["searches"]))
        opts = [o["name"] + (f":{o['value']}" if o.get("value") is not None else "")
                for o in pod.dns_config.get("options", [])]
        if opts:
            lines.append("options " + " ".join(opts))
        return "\n".join(lines) + "\n"
    if pod.dns_policy not in ("ClusterFirst", "ClusterFirstWithHostNet") or \
            (pod.host_network and pod.dns_policy == "ClusterFirst"):
        return None
    d = config.cluster_domain
    return (f"search {pod.namespace}.svc.{d} svc.{d} {d}\n"
            f"nameserver {config.dns_service_ip}\n"
            "options ndots:5\n")


def announcing_node(cluster: Any, svc: Any) -> Optional[str]:
    """The node the load balancer sends a Service's VIP traffic to: with externalTrafficPolicy Local,
    the first node (by name) with a ready local endpoint (the healthCheckNodePort answers 200 only
    there); otherwise the first running node by name."""
    running = sorted(n.name for n in cluster.nodes() if n.running and n.ready)
    if svc.external_traffic_policy == "Local":
        local = set()
        for sl in cluster.endpoint_slices(svc.namespace, svc.name):
            for ep in sl.endpoints:
                if ep.ready and ep.node_name:
                    local.add(ep.node_name)
        cands = [n for n in running if n in local]
        return cands[0] if cands else None
    return running[0] if running else None


def build_plan(cluster: Any, name: str) -> KernelPlan:
    """Compute the namespaces, addresses and links that realise `cluster` under the prefix `name`."""
    naming.check_cluster_name(name)
    cfg = cluster.config
    node_net = ipaddress.ip_network(cfg.node_network, strict=False)
    nodes: dict[str, NodePlan] = {}
    for n in sorted(cluster.nodes(), key=lambda n: n.name):
        if not n.pod_cidr:
            raise ValueError(f"node {n.name}: no podCIDR assigned")
        cidr = ipaddress.ip_network(n.pod_cidr, strict=False)
        nodes[n.name] = NodePlan(
            name=n.name, netns=naming.node_netns(name, n.name), ip=n.ip, prefixlen=node_net.prefixlen,
            pod_cidr=str(cidr), cni_ip=str(cidr.network_address + 1), vtep_ip=str(cidr.network_address),
            vtep_mac=vtep_mac(name, n.name), underlay_port=naming.underlay_port(n.name),
            running=n.running)
    pods: dict[str, PodPlan] = {}
    for p in sorted(cluster.pods(), key=lambda p: p.key):
        if not p.node_name or p.node_name not in nodes or not p.ip or p.phase != "Running":
            continue
        node = nodes[p.node_name]
        cidr = ipaddress.ip_network(node.pod_cidr)
        netns = node.netns if p.host_network else naming.pod_netns(name, p.namespace, p.name)
        pods[p.key] = PodPlan(
            namespace=p.namespace, name=p.name, netns=netns, node=node.name, ip=p.ip,
            prefixlen=cidr.prefixlen, gateway=node.cni_ip, veth=naming.pod_veth(p.namespace, p.name),
            ports=[(lp.port, lp.protocol) for lp in listen_ports(p) if not lp.address],
            bound=[(lp.port, lp.protocol, lp.address) for lp in listen_ports(p) if lp.address],
            host_network=p.host_network, served_by=kubeadm.served_by(p),
            dns_server=p.namespace == "kube-system" and p.labels.get(DNS_LABEL[0]) == DNS_LABEL[1],
            resolv_conf=resolv_conf(p, cfg))
    topo = Topology(cluster)
    edge = EdgePlan(router_netns=naming.edge_netns(name, "router"), router_ip=int2ip(topo.router_ip),
                    external_netns=naming.external_netns(name), external_ip=int2ip(topo.client_ip),
                    lb_netns=naming.edge_netns(name, "lb"), lb_ip=int2ip(topo.lb_host_ip))
    for svc in sorted(cluster.services(), key=lambda s: s.key):
        if svc.type != "LoadBalancer" and not svc.external_ips:
            continue
        node_name = announcing_node(cluster, svc)
        for ip in svc.load_balancer_ips:
            if node_name:
                edge.vip_routes[ip] = nodes[node_name].ip
        static = external_ip_node(cluster)         # the admin's static route: one node, no health check
        for ip in svc.external_ips:
            if static and ip not in edge.vip_routes:
                edge.vip_routes[ip] = nodes[static].ip
    return KernelPlan(cluster=name, underlay_netns=naming.underlay_netns(name),
                      node_prefixlen=node_net.prefixlen, pod_network=cfg.pod_network,
                      nodes=nodes, pods=pods, edge=edge)
