"""What one version of a cluster offers `netsim reach`: the sources (pods, host processes, the
external client), the nodes and what kube-proxy consumes per Service (the Service, its endpoints)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from netsim.api import Emulator


@dataclass(frozen=True)
class Member:
    """One raw source: a pod, a host process on a node, or the external client."""

    ident: str               # "pod/NS/NAME", "node/NAME", "external"
    kind: str                # pod | host | external
    node: Optional[str]      # the node whose rules its packets traverse first (None: external)
    ip: str
    trace_src: str           # what Emulator.trace takes: pod/NAME, node/NAME, external
    namespace: str = "default"
    dns: str = ""            # a pod's DNS profile (dnsPolicy, dnsConfig): what its resolv.conf depends on


@dataclass(frozen=True)
class NodeFacts:
    name: str
    ip: str
    ready: bool
    running: bool
    secondary: Optional[str] = None   # its first address other than the node IP (the bridge's: pods' gateway)


@dataclass(frozen=True)
class EndpointFacts:
    address: str
    ready: bool
    serving: bool
    terminating: bool
    node: Optional[str]
    ports: tuple = ()         # its slice's ports (name, port, protocol): a named targetPort resolves per pod
    host: Optional[str] = None  # the node whose address it is (a hostNetwork endpoint, nodeName or not)


@dataclass
class ServiceFacts:
    """One Service as kube-proxy sees it."""

    key: str                                  # ns/name
    service: object                           # netsim's Service dataclass
    endpoints: tuple[EndpointFacts, ...]
    slice_ports: tuple
    host_endpoints: bool = False              # some endpoint is a node's address (a hostNetwork pod)
    _by_address: Optional[dict] = field(default=None, repr=False, compare=False)   # endpoint_of's index
    _nodes: Optional[frozenset] = field(default=None, repr=False, compare=False)   # endpoint_nodes' answer

    @property
    def node_dependent(self) -> bool:
        """Whether nodes can see this Service differently: a Local traffic policy, or endpoints on node
        addresses (a host's connection to its own node's address is not masqueraded like a remote one)."""
        return self.local_policy or self.host_endpoints

    @property
    def local_policy(self) -> bool:
        s = self.service
        return getattr(s, "external_traffic_policy", "Cluster") == "Local" or \
            getattr(s, "internal_traffic_policy", "Cluster") == "Local"

    def local_index(self) -> dict[str, str]:
        """node -> its local endpoints and their conditions as a label, for the nodes that have any:
        one pass over the endpoints (an index endpoint -> node), not a scan of them per node."""
        by: dict[str, list[tuple]] = {}
        for e in self.endpoints:
            for n in {e.node, e.host} - {None}:
                by.setdefault(n, []).append((e.address, e.ready, e.serving, e.terminating))
        return {n: ",".join(f"{a}{'' if r else '!r'}{'' if s else '!s'}{'~t' if t else ''}" for a, r, s, t in sorted(eps))
                for n, eps in by.items()}

    def signature(self) -> tuple:
        """Everything a verdict of this Service depends on except its own addresses and name:
        Services with equal signatures share trace work."""
        s = self.service
        ports = tuple((p.port, p.protocol, str(p.target_port), p.node_port is not None)
                      for p in s.ports)
        return (s.type, s.headless, s.external_name, ports, s.external_traffic_policy,
                s.internal_traffic_policy, s.session_affinity, s.affinity_timeout,
                tuple(sorted(s.load_balancer_source_ranges)), len(s.load_balancer_ips), len(s.external_ips),
                s.publish_not_ready_addresses, s.allocate_load_balancer_node_ports,
                tuple(sorted(self.endpoints, key=lambda e: (e.address, e.node or "", e.ports))), self.slice_ports)

    def endpoint_nodes(self) -> frozenset:
        """The nodes the endpoints are on (and the nodes whose addresses they are)."""
        got = self._nodes
        if got is None:
            got = self._nodes = frozenset(n for e in self.endpoints for n in (e.node, e.host) if n is not None)
        return got

    def endpoint_of(self, ip: str) -> Optional[tuple]:
        """A hairpin member's own endpoint(s) (conditions, ports), or None when it is none of them."""
        idx = self._by_address
        if idx is None:
            by: dict[str, list[tuple]] = {}
            for e in self.endpoints:
                by.setdefault(e.address, []).append((e.ready, e.serving, e.terminating, e.ports))
            idx = self._by_address = {a: tuple(sorted(v)) for a, v in by.items()}
        return idx.get(ip)


@dataclass
class Inventory:
    """One version (one set of manifests) of the cluster, as `netsim reach` reads it."""

    version: str
    nodes: dict[str, NodeFacts]
    members: dict[str, Member]
    services: dict[str, ServiceFacts]
    cluster_cidr: str
    node_network: str
    domain: str
    endpoint_owner: dict[str, str] = field(default_factory=dict)     # address -> member ident

    @classmethod
    def from_emulator(cls, em: "Emulator", version: str) -> "Inventory":
        c = em.cluster
        hosts = em._walker(None).topology.hosts
        nodes = {n.name: NodeFacts(n.name, n.ip, n.ready, n.running, _secondary(hosts.get(n.name), n.ip))
                 for n in c.nodes()}
        members: dict[str, Member] = {}
        for n in c.nodes():
            members[f"node/{n.name}"] = Member(f"node/{n.name}", "host", n.name, n.ip, f"node/{n.name}")
        for p in c.pods():
            if p.host_network or not p.ip or not p.node_name or p.phase != "Running":
                continue          # hostNetwork pods are host processes (node/NAME stands for them)
            ident = f"pod/{p.namespace}/{p.name}"
            dns = f"{p.dns_policy} {sorted((p.dns_config or {}).items())!r}"
            members[ident] = Member(ident, "pod", p.node_name, p.ip, f"pod/{p.name}", p.namespace, dns)
        ext = hosts.get("external")
        if ext is not None:
            ip = ext.interfaces["eth0"].ip
            from netsim.skb.packet import int2ip
            members["external"] = Member("external", "external", None, int2ip(ip) if isinstance(ip, int) else str(ip),
                                         "external")
        services: dict[str, ServiceFacts] = {}
        for s in c.services():
            eps = []
            ports: set = set()
            for sl in c.endpoint_slices(s.namespace, s.name):
                sl_ports = tuple(sorted((p.name or "", p.port, p.protocol) for p in sl.ports))
                ports.update(sl_ports)
                for e in sl.endpoints:
                    for a in e.addresses:
                        eps.append(EndpointFacts(a, bool(e.ready), bool(e.serving), bool(e.terminating),
                                                 e.node_name, sl_ports))
            services[s.key] = ServiceFacts(s.key, s, tuple(eps), tuple(sorted(ports, key=str)))
        node_of_ip = {n.ip: n.name for n in nodes.values()}
        for sf in services.values():
            sf.endpoints = tuple(dataclasses.replace(e, host=node_of_ip.get(e.address)) for e in sf.endpoints)
            sf.host_endpoints = any(e.host is not None for e in sf.endpoints)
        by_ip = {m.ip: m.ident for m in members.values() if m.kind == "pod"}
        owner = {e.address: by_ip[e.address] for sf in services.values() for e in sf.endpoints
                 if e.address in by_ip}
        cfg = c.config
        return cls(version, nodes, members, services, cfg.cluster_cidr, cfg.node_network,
                   cfg.cluster_domain, owner)

    def range_cidrs(self) -> list[str]:
        """The CIDRs source-address rules can tell apart in this version."""
        out = ["0.0.0.0/0", self.cluster_cidr, self.node_network]
        for sf in self.services.values():
            out += list(sf.service.load_balancer_source_ranges)
            out += [f"{ip}/32" for ip in sf.service.load_balancer_ips]
        return out


def _secondary(host, primary: str) -> Optional[str]:
    """A node host's first interface address that is neither its node IP nor loopback."""
    if host is None:
        return None
    from netsim.skb.packet import int2ip
    for iface in host.interfaces.values():
        ip = iface.ip
        ip = int2ip(ip) if isinstance(ip, int) else (str(ip) if ip else None)
        if ip and ip != primary and not ip.startswith("127."):
            return ip
    return None
