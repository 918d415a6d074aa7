"""The hosts, interfaces, L2 segments and routes of a cluster, built from the cluster model.

What gets built (names as a kubeadm + flannel cluster shows them):

* per node: ``eth0`` with the node's InternalIP on the node network; a ``cni0`` bridge holding
  the pod gateway (.1 of the node's podCIDR); one ``veth<8 hex>`` bridge port per pod; with
  ``pod_network: vxlan`` a ``flannel.1`` VTEP (VNI 1, UDP 8472, address = podCIDR network /32)
  and per remote node ``<podCIDR> via <remote net>.0 dev flannel.1 onlink`` plus an FDB entry;
  with ``host-gw`` per remote node ``<podCIDR> via <remote node IP> dev eth0``; a default route
  via the node network's router.
* per pod (not hostNetwork): ``eth0`` with the pod IP, the connected podCIDR route, ``default via
  <gateway>`` and a resolv.conf (nameserver = kube-dns ClusterIP, search ``<ns>.svc.<domain>
  svc.<domain> <domain>``, ``options ndots:5`` — kubelet's ClusterFirst policy).
* ``router``: the node network's default gateway (.1, or the first free address).
* ``external``: a client on the node network (``config.external_client_ip`` or a free address).
* ``loadbalancer``: owns every LoadBalancer ingress IP and receives externalIP traffic from the
  router; it passes packets through unchanged to a node it picks (see :mod:`netsim.loadbalancer`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from netsim.skb.packet import int2ip, ip2int, prefix_mask
from netsim.dataplane.routing import PeerTable, Route, RoutingTable, SharedRoutes, parse_cidr
from netsim.control.heap import deferred_gc

FLANNEL_DEVICE = "flannel.1"      # flannel.<VNI>, VNI defaults to 1
FLANNEL_VNI = 1
FLANNEL_VXLAN_PORT = 8472          # flannel Port 0 → the kernel's vxlan default 8472 (not IANA 4789)


class TopologyError(ValueError):
    """The cluster cannot be wired (e.g. a node without a podCIDR, an address clash)."""


class FdbView(Mapping):
    """One node's ``flannel.1`` forwarding database: remote VTEP address -> remote node IP, read from
    the cluster's shared table (flannel's ``AddFDB`` per remote lease, pkg/backend/vxlan/device.go),
    the node's own VTEP left out. Reads as the dict it replaces (the leases in the order added);
    n nodes hold n entries, not n·(n−1)."""

    __slots__ = ("_table", "_owner", "_own_vtep")

    def __init__(self, table: PeerTable, owner: str, own_vtep: Optional[int]) -> None:
        self._table, self._owner, self._own_vtep = table, owner, own_vtep

    def get(self, key, default=None):
        if key == self._own_vtep:
            return self._table.get_for(self._owner, key, key, default)
        return self._table._last.get(key, default)          # PeerTable.get_for's other case, inlined

    def __getitem__(self, key) -> int:
        v = self._table.get_for(self._owner, self._own_vtep, key)
        if v is None:
            raise KeyError(key)
        return v

    def _items(self) -> dict:
        return dict(self._table.entries_for(self._owner))

    def __iter__(self) -> Iterator[int]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def _reindex(self) -> None:
        """Nothing precomputed (PeerTable.subscribe's protocol)."""

    def __repr__(self) -> str:
        return f"FdbView({self._items()!r})"


@dataclass
class Interface:
    name: str
    host: "Host"
    kind: str                              # eth | veth | bridge | vxlan
    addr: Optional[int] = None
    length: int = 32
    segment: Optional["Segment"] = None    # the L2 domain the interface sits on
    mac: str = ""
    bridge_port: Optional[str] = None      # pod eth0: the node-side veth (the cni0 port)
    # vxlan: remote VTEP IP -> remote node IP (flannel.1: an FdbView of the cluster's shared table)
    fdb: Union[dict[int, int], FdbView] = field(default_factory=dict)

    @property
    def ip(self) -> Optional[str]:
        return None if self.addr is None else int2ip(self.addr)

    def __repr__(self) -> str:
        return f"<Interface {self.host.name}/{self.name} {self.ip}>"


@dataclass
class Segment:
    """An L2 domain: who answers ARP for which address."""
    name: str
    neighbours: dict[int, Interface] = field(default_factory=dict)

    def attach(self, iface: Interface, addr: Optional[int] = None) -> None:
        a = iface.addr if addr is None else addr
        if a is None:
            return
        other = self.neighbours.get(a)
        if other is not None and other is not iface:
            raise TopologyError(f"address {int2ip(a)} on {self.name} is claimed by both "
                                f"{other.host.name}/{other.name} and {iface.host.name}/{iface.name}")
        self.neighbours[a] = iface
        iface.segment = self


@dataclass
class ResolvConf:
    nameservers: list[str]
    search: list[str]
    ndots: int = 5

    def text(self) -> str:
        lines = [f"search {' '.join(self.search)}"] if self.search else []
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        lines.append(f"options ndots:{self.ndots}")
        return "\n".join(lines) + "\n"


@dataclass
class Host:
    """One network namespace: a node, a pod, or one of the external hosts."""
    name: str                               # node-1, default/client, router, external, loadbalancer
    kind: str                               # node | pod | router | external | loadbalancer
    interfaces: dict[str, Interface] = field(default_factory=dict)
    routes: RoutingTable = field(default_factory=RoutingTable)
    forwarding: bool = False                # net.ipv4.ip_forward
    node_name: Optional[str] = None         # the node this pod runs on / this node's own name
    resolv_conf: Optional[ResolvConf] = None
    up: bool = True                         # False: the machine is gone (node stopped)

    def add_interface(self, iface: Interface) -> Interface:
        self.interfaces[iface.name] = iface
        if iface.addr is not None:
            self.routes.add_local(iface.addr)
        return iface

    def primary_address(self, dev: str, next_hop: Optional[int] = None) -> Optional[int]:
        """inet_select_addr: the egress device's address (MASQUERADE's source); falls back to any."""
        iface = self.interfaces.get(dev)
        if iface is not None and iface.addr is not None:
            return iface.addr
        for i in self.interfaces.values():
            if i.addr is not None:
                return i.addr
        return None

    def __repr__(self) -> str:
        return f"<Host {self.kind} {self.name}>"


def veth_name(pod_key: str) -> str:
    """The host side of a pod's veth: CNI's bridge plugin names it ``veth`` + 8 hex characters.

    The plugin draws them at random; we derive them from the pod key so names are stable.
    """
    return "veth" + hashlib.sha256(pod_key.encode()).hexdigest()[:8]


def _mac(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])    # locally administered


def external_ip_node(cluster) -> Optional[str]:
    """The node a Service's externalIPs are routed to: the network admin's static route, to the first
    Ready node by name (the same for every externalIP; no health check, so with externalTrafficPolicy
    Local and no local endpoint there, kube-proxy drops the traffic on that node)."""
    ready = sorted(n.name for n in cluster.nodes() if n.ready and n.running)
    return ready[0] if ready else None


_MISSING = object()


class LazyMap(dict):
    """A dict some of whose entries are built on first use: ``pending`` holds their keys, and
    ``build(key)`` inserts the entry (and whatever else it wires). Lookups (``[]``, ``get``, ``in``)
    build one entry; iterating, ``len`` and the views build them all first and then hold the order
    an eager build would have given (``order()``). A cluster with 50,000 pods wires the few a
    packet reaches."""

    __slots__ = ("pending", "_build", "_order", "_shuffled")

    def __init__(self, build, order=None) -> None:
        super().__init__()
        self.pending: dict = {}
        self._build = build
        self._order = order
        self._shuffled = False

    def _one(self, key):
        self._shuffled = True
        self._build(key)
        return dict.__getitem__(self, key)

    def __missing__(self, key):
        if key in self.pending:
            return self._one(key)
        raise KeyError(key)

    def get(self, key, default=None):
        v = dict.get(self, key, _MISSING)
        if v is _MISSING:
            return self._one(key) if key in self.pending else default
        return v

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self.pending

    def build_all(self) -> None:
        if self.pending:
            for key in list(self.pending):
                if key in self.pending:
                    self._one(key)
        if self._shuffled and self._order is not None:
            items = [(k, dict.__getitem__(self, k)) for k in self._order() if dict.__contains__(self, k)]
            dict.clear(self)
            dict.update(self, items)
        self._shuffled = False

    def __iter__(self):
        self.build_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.build_all()
        return dict.__len__(self)

    def keys(self):
        self.build_all()
        return dict.keys(self)

    def values(self):
        self.build_all()
        return dict.values(self)

    def items(self):
        self.build_all()
        return dict.items(self)

    def __reduce__(self):
        self.build_all()
        return (dict, (dict(self.items()),))


class Topology:
    """All hosts of one cluster, wired as a kubeadm + flannel cluster wires them.

    Nodes and the external hosts are built at once; a pod's host (its eth0, routes, resolv.conf
    and its place on its node's cni0 segment) when it is first looked up: by name in ``hosts``, by
    address in ``by_pod_ip`` or in the segment's ARP table (:class:`LazyMap`). Address clashes are
    still found while building (the pods concerned are wired then, raising as before)."""

    @deferred_gc()                 # tens of thousands of long-lived hosts (netsim.control.heap)
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        cfg = cluster.config
        self.pod_network = cfg.pod_network
        if self.pod_network not in ("vxlan", "host-gw"):
            raise TopologyError(f"pod_network: expected vxlan or host-gw, got {self.pod_network!r}")
        self._pod_order: list[str] = []
        self.hosts: dict[str, Host] = LazyMap(self._build_pod, self._host_order)
        self.by_pod_ip: dict[int, Host] = LazyMap(self._build_pod_at)
        # pod key -> the pod; its address and its node's cni0 segment are read again when it is wired
        # (a Topology is a snapshot: Walker.sync builds a new one when the cluster changes), so 50,000
        # deferred pods hold no tuple each
        self._pending_pods: dict[str, Any] = {}
        self.node_by_ip: dict[int, Host] = {}
        self.pod_routes = SharedRoutes()                # flannel's route per node's podCIDR, held once
        self.pod_fdb = PeerTable()                      # vxlan: VTEP address -> node IP, held once
        self.lb_ips: set[int] = set()
        self.external_ips: set[int] = set()
        self.external_ip_nodes: dict[int, str] = {}     # externalIP -> the node the admin routes it to
        net, plen = parse_cidr(cfg.node_network)
        self.node_net, self.node_plen = net, plen
        self.underlay = Segment("node-network")
        used = {ip2int(n.ip) for n in cluster.nodes()}
        lb_net, lb_len = parse_cidr(cfg.load_balancer_pool)

        def free(preferred: list[int]) -> int:
            for a in preferred:
                if (a & prefix_mask(plen)) == net and a not in used and (a & prefix_mask(lb_len)) != lb_net:
                    used.add(a)
                    return a
            raise TopologyError(f"node network {cfg.node_network} has no free address for an external host")

        bcast = net | (~prefix_mask(plen) & 0xFFFFFFFF)
        self.router_ip = free([net + 1] + list(range(bcast - 1, net, -1)))
        if cfg.external_client_ip:
            self.client_ip = ip2int(cfg.external_client_ip)
            used.add(self.client_ip)
        else:
            self.client_ip = free([net + 100] + list(range(net + 2, bcast)))
        self.lb_host_ip = free([net + 254, net + 250] + list(range(bcast - 1, net, -1)))

        for node in cluster.nodes():
            self._add_node(node)
        self._wire_pod_network()
        for pod in cluster.pods():
            self._defer_pod(pod)
        self._add_external_hosts()

    def _host_order(self) -> list[str]:
        """The hosts in the order an eager build inserts them: nodes, pods, the external hosts."""
        nodes = [n.name for n in self.cluster.nodes()]
        return nodes + self._pod_order + ["router", "external", "loadbalancer"]

    def _defer_pod(self, pod) -> None:
        """Note a pod to wire when first looked up; wire it now if its address clashes (the error)."""
        if pod.host_network or not pod.ip or not pod.node_name or pod.phase == "Failed":
            return
        node = dict.get(self.hosts, pod.node_name)
        if node is None or "cni0" not in node.interfaces:
            return
        seg = node.interfaces["cni0"].segment
        assert seg is not None
        addr = ip2int(pod.ip)
        self._pod_order.append(pod.key)
        if addr in seg.neighbours or addr in self.by_pod_ip:
            self.by_pod_ip.get(addr)          # wire the earlier pod holding it, then this one
            self._add_pod(pod)
            return
        self._pending_pods[pod.key] = pod
        self.hosts.pending[pod.key] = None
        self.by_pod_ip.pending[addr] = pod.key
        if not isinstance(seg.neighbours, LazyMap):
            lazy = LazyMap(self._build_pod_at)
            lazy.update(seg.neighbours)
            seg.neighbours = lazy
        seg.neighbours.pending[addr] = pod.key

    def _build_pod(self, key: str) -> None:
        pod = self._pending_pods.pop(key)
        addr = ip2int(pod.ip)
        seg = dict.__getitem__(self.hosts, pod.node_name).interfaces["cni0"].segment
        del self.hosts.pending[key]
        self.by_pod_ip.pending.pop(addr, None)
        seg.neighbours.pending.pop(addr, None)     # type: ignore[attr-defined]
        self._add_pod(pod)

    def _build_pod_at(self, addr: int) -> None:
        self._build_pod(self.by_pod_ip.pending[addr])

    # ------------------------------------------------------------------ building
    def _add_node(self, node) -> None:
        h = Host(node.name, "node", forwarding=True, node_name=node.name, up=node.running)
        addr = ip2int(node.ip)
        eth0 = h.add_interface(Interface("eth0", h, "eth", addr, self.node_plen, mac=_mac(node.name + "eth0")))
        self.underlay.attach(eth0)
        h.routes.add(Route(self.node_net, self.node_plen, "eth0", src=addr))
        h.routes.add(Route(0, 0, "eth0", via=self.router_ip, proto="static"))
        if node.pod_cidr:
            pnet, plen = parse_cidr(node.pod_cidr)
            gw = pnet + 1
            cni0 = h.add_interface(Interface("cni0", h, "bridge", gw, plen, mac=_mac(node.name + "cni0")))
            Segment(f"{node.name}/cni0").attach(cni0)
            h.routes.add(Route(pnet, plen, "cni0", src=gw))
            if self.pod_network == "vxlan":
                # flannel: the VTEP holds <subnet network>/32 (e.g. 10.244.1.0/32)
                h.add_interface(Interface(FLANNEL_DEVICE, h, "vxlan", pnet, 32, mac=_mac(node.name + "flannel")))
        self.hosts[node.name] = h
        self.node_by_ip[addr] = h

    def _wire_pod_network(self) -> None:
        """flannel's route (and, with vxlan, FDB entry) to every other node's podCIDR: one shared
        per-cluster table (``pod_routes``, ``pod_fdb``) each node consults but for its own lease, so
        n nodes hold n routes, not n·(n−1); every node's table reads and lists as before."""
        nodes = [n for n in self.cluster.nodes() if n.pod_cidr]
        for m in nodes:
            rnet, rlen = parse_cidr(m.pod_cidr)
            if self.pod_network == "vxlan":
                # 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink; FDB <VtepMAC> dst <node IP>
                self.pod_routes.add_route(m.name, Route(rnet, rlen, FLANNEL_DEVICE, via=rnet, onlink=True,
                                                        proto="flannel"))
                self.pod_fdb.add(m.name, rnet, ip2int(m.ip))
            else:
                self.pod_routes.add_route(m.name, Route(rnet, rlen, "eth0", via=ip2int(m.ip), proto="flannel"))
        for n in nodes:
            h = dict.__getitem__(self.hosts, n.name)
            own = parse_cidr(n.pod_cidr)
            h.routes.attach(self.pod_routes, n.name, (own[1], own[0]))
            if self.pod_network == "vxlan":
                h.interfaces[FLANNEL_DEVICE].fdb = FdbView(self.pod_fdb, n.name, own[0])

    def _add_pod(self, pod) -> None:
        if pod.host_network or not pod.ip or not pod.node_name or pod.phase == "Failed":
            return
        node = self.hosts.get(pod.node_name)
        if node is None or "cni0" not in node.interfaces:
            return
        cni0 = node.interfaces["cni0"]
        cfg = self.cluster.config
        h = Host(pod.key, "pod", node_name=pod.node_name, up=node.up)
        addr = ip2int(pod.ip)
        port = veth_name(pod.key)
        eth0 = h.add_interface(Interface("eth0", h, "veth", addr, cni0.length, mac=_mac(pod.key),
                                         bridge_port=port))
        assert cni0.segment is not None
        cni0.segment.attach(eth0)
        pnet = cni0.addr & prefix_mask(cni0.length)
        h.routes.add(Route(pnet, cni0.length, "eth0", src=addr))
        h.routes.add(Route(0, 0, "eth0", via=cni0.addr, proto="static"))
        dom = cfg.cluster_domain
        h.resolv_conf = ResolvConf([cfg.dns_service_ip],
                                   [f"{pod.namespace}.svc.{dom}", f"svc.{dom}", dom], 5)
        self.hosts[pod.key] = h
        self.by_pod_ip[addr] = h

    def _add_external_hosts(self) -> None:
        r = Host("router", "router", forwarding=True)
        eth0 = r.add_interface(Interface("eth0", r, "eth", self.router_ip, self.node_plen, mac=_mac("router")))
        self.underlay.attach(eth0)
        r.routes.add(Route(self.node_net, self.node_plen, "eth0", src=self.router_ip))
        self.hosts["router"] = r

        c = Host("external", "external")
        eth0 = c.add_interface(Interface("eth0", c, "eth", self.client_ip, self.node_plen, mac=_mac("external")))
        self.underlay.attach(eth0)
        c.routes.add(Route(self.node_net, self.node_plen, "eth0", src=self.client_ip))
        c.routes.add(Route(0, 0, "eth0", via=self.router_ip, proto="static"))
        self.hosts["external"] = c

        lb = Host("loadbalancer", "loadbalancer", forwarding=True)
        eth0 = lb.add_interface(Interface("eth0", lb, "eth", self.lb_host_ip, self.node_plen, mac=_mac("lb")))
        self.underlay.attach(eth0)
        lb.routes.add(Route(self.node_net, self.node_plen, "eth0", src=self.lb_host_ip))
        lb.routes.add(Route(0, 0, "eth0", via=self.router_ip, proto="static"))
        self.hosts["loadbalancer"] = lb
        for svc in self.cluster.services():
            for ip in svc.load_balancer_ips:
                a = ip2int(ip)
                self.lb_ips.add(a)
                lb.routes.add_local(a)
                if (a & prefix_mask(self.node_plen)) == self.node_net:
                    self.underlay.neighbours.setdefault(a, eth0)   # the LB answers ARP for its VIPs
                else:
                    r.routes.add(Route(a, 32, "eth0", via=self.lb_host_ip, proto="static"))
            for ip in svc.external_ips:
                a = ip2int(ip)
                if a in self.lb_ips:
                    continue                   # also a LoadBalancer ingress IP: the LB owns it
                self.external_ips.add(a)
                # An externalIP is no host's address: kube-proxy only DNATs it on the node it reaches
                # (Kubernetes docs, Service "External IPs": "Kubernetes does not manage allocation of
                # externalIPs; these are the responsibility of the cluster administrator"). The admin
                # routes it to a node: router and external client send it via the edge host, also when
                # it lies inside the node network (nobody answers ARP for it there), and the edge
                # forwards it, unchanged, to one fixed node (external_ip_node) — no health check.
                for h in (r, c):
                    h.routes.add(Route(a, 32, "eth0", via=self.lb_host_ip, proto="static"))
                node = external_ip_node(self.cluster)
                if node is not None:
                    self.external_ip_nodes[a] = node

    # ------------------------------------------------------------------ queries
    def host(self, name: str) -> Host:
        h = self.hosts.get(name)
        if h is None:
            raise TopologyError(f"no host named {name!r} (nodes are by name, pods as namespace/name)")
        return h

    def node_host(self, name: str) -> Host:
        return self.host(name)

    def pod_host(self, namespace: str, name: str) -> Host:
        return self.host(f"{namespace}/{name}")

    def describe(self) -> str:
        """``ip addr`` / ``ip route`` per host, for humans."""
        out = []
        for h in self.hosts.values():
            out.append(f"== {h.kind} {h.name}{'' if h.up else ' (down)'}")
            for i in h.interfaces.values():
                extra = f" master cni0 via {i.bridge_port}" if i.bridge_port else ""
                if i.kind == "vxlan":
                    extra = f" vxlan id {FLANNEL_VNI} dstport {FLANNEL_VXLAN_PORT}"
                out.append(f"  {i.name}: {i.ip}/{i.length}{extra}")
            for r in h.routes.show().splitlines():
                out.append(f"  route {r}")
            if h.resolv_conf:
                out.append("  resolv.conf: " + h.resolv_conf.text().strip().replace("\n", "; "))
        return "\n".join(out)
