"""kube-proxy's IPVS proxier for one node (pkg/proxy/ipvs/proxier.go syncProxyRules).

``render(cluster, node)`` → the node's ``ipvsadm -Sn``, ``ipset save`` and iptables text, each
section under a ``# ...`` header line; ``build(cluster, node)`` → the structured
:class:`IpvsNodeState` (virtual-server table, ipsets, iptables, kube-ipvs0 addresses).
:class:`KubeProxyIpvs` keeps the table between syncs, so endpoint changes are applied the way
kube-proxy applies them (new real servers added, removed ones gracefully terminated) and an
:class:`IpvsNode` data path can run packets against the same table and connection table.

Per service port (sorted by ``ns/name:port``; kube-proxy walks a Go map):

* KUBE-LOOP-BACK gets ``epIP,proto:port,epIP`` for every local endpoint;
* ClusterIP → KUBE-CLUSTER-IP entry, a virtual server bound to kube-ipvs0, real servers chosen
  with the internal traffic policy;
* each externalIP → KUBE-EXTERNAL-IP(-LOCAL) entry, a virtual server (bound unless the address
  is already on a node interface), external policy;
* each LoadBalancer ingress IP → KUBE-LOAD-BALANCER (+ -LOCAL, + -FW/-SOURCE-CIDR/-SOURCE-IP
  with loadBalancerSourceRanges), a virtual server, external policy;
* a nodePort → KUBE-NODE-PORT-{TCP,UDP} port (SCTP: ``nodeIP,sctp:port`` per node IP), one
  virtual server on *every* node address, external policy;
* KUBE-IPVS-IPS = every address bound to kube-ipvs0.

Virtual servers get the configured scheduler (default rr), flag persistent + timeout for
ClientIP affinity, flag 0x10 (mh-port) with mh; real servers weight 1, masquerading. With a
Local policy and no local endpoints the virtual server falls back to the cluster endpoints
(kubernetes PR #97081) – which are none when the Service never uses Cluster endpoints
(internalTrafficPolicy Local on a port reachable only by ClusterIP: serviceport.go
UsesClusterEndpoints); an externally reachable port with both policies Local does fall back.
Real servers of one virtual server are added in ``IP:port`` order (kube-proxy: Go set order),
so the kernel list – newest first – holds them in reverse.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.control.heap import deferred_gc
from netsim.skb.packet import ip2int
from netsim.rules.ipset import IpsetStore
from netsim.rules.iptables.proxier_cluster import (endpoints_for_node, proxier_config_for_node,
                                                   service_port_infos)
from netsim.rules.iptables.proxier_endpoints import categorize_endpoints, sort_endpoints
from netsim.rules.iptables.proxier_inputs import EndpointInfo, ProxierConfig, ProxierInputError, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.ipvs import kube_ipsets as S
from netsim.rules.ipvs.datapath import IpvsNode
from netsim.rules.ipvs.graceful import GracefulTerminationManager
from netsim.rules.ipvs.iptables_rules import IpvsRestoreData, node_view_text, write_iptables_rules
from netsim.rules.ipvs.ipvsadm import render_list, render_save
from netsim.rules.ipvs.schedulers import SCHEDULERS
from netsim.rules.ipvs.table import (IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_SCHED2, IPPROTO, IpvsError, IpvsTable,
                                     VirtualServer)

DUMMY_DEVICE = "kube-ipvs0"
DEFAULT_SCHEDULER = "rr"


@dataclass
class DesiredVirtualServer:
    """One virtual server syncProxyRules wants, with the endpoints syncEndpoint would program."""
    protocol: str
    ip: str
    port: int
    scheduler: str
    flags: int
    timeout: int
    endpoints: list[tuple[str, int]]
    bind: bool
    service: str            # ns/name:port
    kind: str               # ClusterIP | ExternalIP | LoadBalancer | NodePort

    @property
    def key(self) -> tuple[int, int, int]:
        return (IPPROTO[self.protocol], ip2int(self.ip), self.port)


@dataclass
class DesiredState:
    virtual_servers: list[DesiredVirtualServer] = field(default_factory=list)
    ipset_entries: dict[str, set[str]] = field(default_factory=dict)
    bind_addresses: list[str] = field(default_factory=list)
    lb_no_node_access: list[tuple[str, str, int]] = field(default_factory=list)


def node_addresses_for(cluster: Any, node_name: str) -> list[str]:
    """nodeAddressSet on a kubeadm + flannel node: eth0 (InternalIP), cni0 (podCIDR .1) and, with
    the vxlan backend, flannel.1 (podCIDR network address), as netsim/dataplane/topology.py wires them."""
    node = cluster.node(node_name)
    if node is None:
        names = ", ".join(n.name for n in cluster.nodes()) or "none"
        raise ProxierInputError(f"node {node_name!r} not found (nodes: {names})")
    addrs = [node.ip]
    if node.pod_cidr:
        net = ipaddress.ip_network(node.pod_cidr, strict=False)
        addrs.append(str(net.network_address + 1))
        if getattr(cluster.config, "pod_network", "vxlan") == "vxlan":
            addrs.append(str(net.network_address))
    return addrs


def _flags_for(svc: ServicePortInfo, scheduler: str) -> tuple[int, int]:
    flags, timeout = 0, 0
    if svc.session_affinity_client_ip:
        flags |= IP_VS_SVC_F_PERSISTENT
        timeout = svc.sticky_max_age_seconds
    if scheduler == "mh":
        flags |= IP_VS_SVC_F_SCHED2          # kube-proxy's FlagSourceHash
    return flags, timeout


def _sync_endpoint(svc: ServicePortInfo, endpoints: list[EndpointInfo], only_node_local: bool) -> list[tuple[str, int]]:
    """syncEndpoint's choice of endpoints for one virtual server."""
    cat = categorize_endpoints(endpoints, svc)
    if only_node_local:
        chosen = cat.local if cat.local else cat.cluster
    else:
        chosen = cat.cluster
    return sorted({(ep.ip, int(ep.port)) for ep in chosen}, key=lambda e: f"{e[0]}:{e[1]}")


def desired_state(ports: list[ServicePortInfo], endpoints: dict[str, list[EndpointInfo]],
                  config: ProxierConfig, node_addresses: list[str],
                  scheduler: str = DEFAULT_SCHEDULER) -> DesiredState:
    """What one syncProxyRules pass programs, as data (IPv4 proxier)."""
    if scheduler not in SCHEDULERS:
        raise ProxierInputError(f"ipvs scheduler {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    out = DesiredState()
    sets: dict[str, set[str]] = {info.name: set() for info in S.IPSET_INFO}
    node_addr_set = set(node_addresses)
    node_ip = config.node_ip or (node_addresses[0] if node_addresses else None)
    # nodeIPs: every node address, or (with --nodeport-addresses) those inside the CIDRs, minus loopback
    if config.node_port_addresses is None:
        nodeport_addresses = list(node_addresses)
    else:
        nets = [ipaddress.ip_network(c) for c in config.node_port_addresses]
        nodeport_addresses = [a for a in node_addresses if any(ipaddress.ip_address(a) in n for n in nets)
                              and not ipaddress.ip_address(a).is_loopback]
    bound: list[str] = []
    bound_set: set[str] = set()

    def bind(ip: str) -> None:
        if ip not in bound_set:
            bound_set.add(ip)
            bound.append(ip)

    for svc in sorted(ports, key=lambda s: (s.name_string, s.protocol)):
        proto = svc.proto
        eps = sort_endpoints(endpoints.get(endpoints_key(svc), []))
        flags, timeout = _flags_for(svc, scheduler)
        name = svc.name_string

        def vs(ip: str, port: int, kind: str, bind_it: bool, only_local: bool) -> None:
            out.virtual_servers.append(DesiredVirtualServer(
                svc.protocol, ip, port, scheduler, flags, timeout, _sync_endpoint(svc, eps, only_local),
                bind_it, name, kind))
            if bind_it:
                bind(ip)

        for ep in eps:
            if ep.is_local:
                sets[S.KUBE_LOOP_BACK].add(f"{ep.ip},{proto}:{ep.port},{ep.ip}")

        sets[S.KUBE_CLUSTER_IP].add(f"{svc.cluster_ip},{proto}:{svc.port}")
        vs(svc.cluster_ip, svc.port, "ClusterIP", True, svc.internal_policy_local)

        for ext in svc.external_ips:
            entry = f"{ext},{proto}:{svc.port}"
            sets[S.KUBE_EXTERNAL_IP_LOCAL if svc.external_policy_local else S.KUBE_EXTERNAL_IP].add(entry)
            vs(ext, svc.port, "ExternalIP", ext not in node_addr_set, svc.external_policy_local)

        for lb in svc.load_balancer_vips:
            entry = f"{lb},{proto}:{svc.port}"
            sets[S.KUBE_LOAD_BALANCER].add(entry)
            if svc.external_policy_local:
                sets[S.KUBE_LOAD_BALANCER_LOCAL].add(entry)
            if svc.load_balancer_source_ranges:
                sets[S.KUBE_LOAD_BALANCER_FW].add(entry)
                allow_from_node = False
                for cidr in svc.load_balancer_source_ranges:
                    sets[S.KUBE_LOAD_BALANCER_SOURCE_CIDR].add(f"{lb},{proto}:{svc.port},{cidr}")
                    if node_ip and ipaddress.ip_address(node_ip) in ipaddress.ip_network(cidr):
                        allow_from_node = True
                if allow_from_node:
                    sets[S.KUBE_LOAD_BALANCER_SOURCE_IP].add(f"{lb},{proto}:{svc.port},{lb}")
                else:
                    out.lb_no_node_access.append((lb, proto, svc.port))
            vs(lb, svc.port, "LoadBalancer", lb not in node_addr_set, svc.external_policy_local)

        if svc.node_port and not nodeport_addresses:
            # syncProxyRules: "Skip nodePort configuration since an error occurred when computing
            # nodeAddresses or nodeIPs" -- a `continue` that also skips the healthCheckNodePort below
            continue
        if svc.node_port:
            if proto == "sctp":
                np_entries = [f"{ip},sctp:{svc.node_port}" for ip in nodeport_addresses]
                np_set, np_local = S.KUBE_NODE_PORT_SCTP, S.KUBE_NODE_PORT_LOCAL_SCTP
            else:
                np_entries = [str(svc.node_port)]
                np_set, np_local = ((S.KUBE_NODE_PORT_TCP, S.KUBE_NODE_PORT_LOCAL_TCP) if proto == "tcp"
                                    else (S.KUBE_NODE_PORT_UDP, S.KUBE_NODE_PORT_LOCAL_UDP))
            sets[np_set].update(np_entries)
            if svc.external_policy_local:
                sets[np_local].update(np_entries)
            for ip in nodeport_addresses:
                vs(ip, svc.node_port, "NodePort", False, svc.external_policy_local)

        if svc.health_check_node_port:
            sets[S.KUBE_HEALTH_CHECK_NODE_PORT].add(str(svc.health_check_node_port))

    sets[S.KUBE_IPVS_IPS] = set(bound)
    out.ipset_entries = sets
    out.bind_addresses = bound
    return out


@dataclass
class IpvsNodeState:
    """Everything kube-proxy's IPVS proxier leaves on one node."""
    node_name: str
    table: IpvsTable
    ipsets: IpsetStore
    restore: IpvsRestoreData
    iptables: str
    bound_addresses: list[str]                  # on kube-ipvs0
    node_addresses: list[str]
    services: dict[tuple[int, int, int], tuple[str, str]]   # VS key -> (ns/name:port, kind)
    graceful: list[str] = field(default_factory=list)        # "<vs>/<rs>" being drained

    def ipvsadm_save(self) -> str:
        return render_save(self.table)

    def ipvsadm_list(self) -> str:
        return render_list(self.table)

    def ipset_save(self) -> str:
        return self.ipsets.save()

    def ipset_list(self) -> str:
        """``ipset list``; References = the iptables rules that match each set."""
        refs = {name: sum(1 for line in self.iptables.splitlines() if f"--match-set {name} " in line)
                for name in self.ipsets.sets}
        return self.ipsets.list(references=refs)

    def render(self) -> str:
        return render_sections(self)


def render_sections(state: IpvsNodeState) -> str:
    return (f"# ipvsadm -Sn (node {state.node_name})\n{state.ipvsadm_save()}"
            f"# ipset save (node {state.node_name})\n{state.ipset_save()}"
            f"# iptables-save (node {state.node_name})\n{state.iptables}")


class KubeProxyIpvs:
    """kube-proxy in IPVS mode on one node, keeping the kernel state (table, connections) between syncs."""

    def __init__(self, cluster: Any, node_name: str, *, scheduler: Optional[str] = None,
                 node_addresses: Optional[list[str]] = None, config: Optional[ProxierConfig] = None) -> None:
        self.cluster = cluster                # may be None when only apply() is used (benchmarks, replays)
        self.node_name = node_name
        self.config = config or proxier_config_for_node(cluster, node_name)
        self.node_addresses = list(node_addresses) if node_addresses is not None \
            else node_addresses_for(cluster, node_name)
        self.scheduler = (scheduler or getattr(getattr(cluster, "config", None), "ipvs_scheduler", None)
                          or DEFAULT_SCHEDULER)
        self.table = IpvsTable()
        self.node = IpvsNode(self.table, local_addresses=frozenset(ip2int(a) for a in self.node_addresses))
        self.graceful = GracefulTerminationManager(self.table)
        self.ipsets = S.new_kube_ipsets()
        self.initial_sync = True
        self.state: Optional[IpvsNodeState] = None

    @deferred_gc()
    def sync(self) -> IpvsNodeState:
        """One syncProxyRules pass against the current cluster."""
        ports = service_port_infos(self.cluster)
        eps = endpoints_for_node(self.cluster, ports, self.node_name)
        desired = desired_state(ports, eps, self.config, self.node_addresses, self.scheduler)
        return self.apply(desired)

    def apply(self, desired: DesiredState) -> IpvsNodeState:
        services: dict[tuple[int, int, int], tuple[str, str]] = {}
        active: set[tuple[int, int, int]] = set()
        for d in desired.virtual_servers:
            if d.key in active:
                continue            # the same VIP:port from two services: the first one wins
            active.add(d.key)
            services[d.key] = (d.service, d.kind)
            vs = self._sync_service(d)
            self._sync_endpoint(vs, d.endpoints)
        for vs in list(self.table):
            if vs.key not in active:          # cleanLegacyService
                for rs in list(vs.dests):
                    self.graceful.pending.pop(f"{vs}/{rs.addr}", None)
                self.table.del_service(vs)
        # kernel >= 5.9: deleting a destination queues ip_vs_expire_nodest_conn_flush (1 jiffy
        # later), so connections to deleted real servers are gone before the next packet
        self.node.expire_nodest_conns()
        S.fill(self.ipsets, desired.ipset_entries)
        nonempty = {name for name, entries in desired.ipset_entries.items() if entries}
        restore = write_iptables_rules(nonempty, self.config, desired.lb_no_node_access)
        self.initial_sync = False
        self.state = IpvsNodeState(self.node_name, self.table, self.ipsets, restore, node_view_text(restore),
                                   list(desired.bind_addresses), list(self.node_addresses), services,
                                   sorted(self.graceful.pending))
        return self.state

    def _sync_service(self, d: DesiredVirtualServer) -> VirtualServer:
        vs = self.table.lookup(*d.key)
        if vs is None:
            return self.table.add_service(d.protocol, d.ip, d.port, scheduler=d.scheduler, flags=d.flags,
                                          timeout=d.timeout)
        if vs.scheduler != d.scheduler or vs.flags != d.flags:
            vs.set_scheduler(d.scheduler, d.flags)        # UpdateVirtualServer
        vs.timeout = d.timeout
        return vs

    def _sync_endpoint(self, vs: VirtualServer, endpoints: list[tuple[str, int]]) -> None:
        wanted = {(ip2int(ip), port) for ip, port in endpoints}
        for ip, port in endpoints:
            key = (ip2int(ip), port)
            rs = vs.find_dest(*key)
            if rs is not None:
                if self.initial_sync and rs.weight != 1:
                    vs.edit_dest(rs.ip, rs.port, 1)
                if not self.graceful.in_termination_list(vs, rs):
                    continue
                self.graceful.move_out_of_list(vs, rs)
            vs.add_dest(key[0], key[1], weight=1)
        for rs in list(vs.dests):
            if (rs.ip, rs.port) in wanted or self.graceful.in_termination_list(vs, rs):
                continue
            self.graceful.graceful_delete_rs(vs, rs)

    def advance(self, now: float) -> list[str]:
        """Time passes: connection timers run, then the graceful-termination loop (every 60 s)."""
        self.node.advance(now)
        done = self.graceful.advance(now)
        if done:
            self.node.expire_nodest_conns()
        if self.state is not None:
            self.state.graceful = sorted(self.graceful.pending)
        return done


def build(cluster: Any, node_name: str, **kwargs: Any) -> IpvsNodeState:
    """The node's IPVS proxier state after a first full sync on a fresh node."""
    return KubeProxyIpvs(cluster, node_name, **kwargs).sync()


def render(cluster: Any, node_name: str, **kwargs: Any) -> str:
    """``ipvsadm -Sn`` + ``ipset save`` + iptables text of ``node_name``, each under a ``#`` header."""
    return build(cluster, node_name, **kwargs).render()


__all__ = ["DUMMY_DEVICE", "DesiredState", "DesiredVirtualServer", "IpvsNodeState", "KubeProxyIpvs", "build",
           "desired_state", "node_addresses_for", "render", "render_sections", "IpvsError"]
