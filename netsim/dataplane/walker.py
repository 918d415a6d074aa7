"""The hop-by-hop walker: carries real packets through the cluster as the Linux stack would.

On every host (network namespace) a packet goes through the netfilter hooks; each node has, per
hook, the functions registered there in priority order (netsim.dataplane.hooks: the mode's provider
registers its tables, chains or IPVS; the data plane adds conntrack and NAT; priorities from
include/uapi/linux/netfilter_ipv4.h). With kube-proxy's iptables or IPVS mode that is:

* received:  raw PREROUTING (−300) → conntrack (−200) → mangle PREROUTING (−150) → nat
             PREROUTING (−100, first packet only: DNAT) → routing decision on the post-DNAT
             destination →
             local: mangle INPUT → filter INPUT → (IPVS LOCAL_IN 98/99) → conntrack confirm → socket
             else:  mangle FORWARD → filter FORWARD → (IPVS reply un-DNAT, 100) → mangle POSTROUTING →
                    nat POSTROUTING (+100, first packet only: MASQUERADE) → conntrack confirm
                    (INT_MAX) → transmit
* generated: route lookup → raw OUTPUT → conntrack → mangle OUTPUT → nat OUTPUT (first packet
             only) → (IPVS LOCAL_OUT −99/−98) → re-route if the destination changed → filter OUTPUT →
             POSTROUTING → transmit.
* A raw-table ``-j CT --notrack`` (or ``-j NOTRACK``) leaves the packet untracked: conntrack
  (nf_conntrack_in) skips a packet that already carries the untracked template, so it gets no
  entry, ctstate UNTRACKED, and nat never sees it (nf_nat_inet_fn needs a conntrack entry).
* A local process whose packet a rule drops in OUTPUT or POSTROUTING learns it at once: the
  hook's NF_DROP makes ip_local_out return -EPERM (nf_hook_slow), so UDP's and ICMP's send fails
  with EPERM, while TCP ignores the error of its SYN (tcp_connect) and retransmits until
  connect() fails with ETIMEDOUT; REJECT's ICMP error makes it ECONNREFUSED.
* bridged (pod → pod on one cni0 bridge, br_netfilter on): PREROUTING, FORWARD and POSTROUTING
  run on the node without a routing decision, so conntrack still reverses NAT on the reply.

Later packets of a connection skip the nat table; conntrack applies the stored binding
(destination at PREROUTING/OUTPUT, source at POSTROUTING/INPUT). Pods and the external hosts
have no netfilter rules and, as in a real netns without rules, no conntrack entries.

Between nodes pods are reached over flannel's VXLAN (flannel.1, outer UDP to port 8472) or
host-gw routes. The external load balancer passes packets through to a node it picks.

The walker is one class assembled from one module per kernel seam:

* ``walk``         the walk driver: a connection there and back, a packet hop by hop, the outcome;
* ``devices``      interfaces and links: receive, transmit, cni0 bridge ports, flannel VXLAN, capture;
* ``ipv4``         the routing decisions between the hooks: output, input, forward, local delivery;
* ``hooks``        the hook runner: per node and hook, the registered functions by priority; verdicts;
* ``delivery``     sockets: waiting clients, listeners, the kernel's own answers, CoreDNS;
* ``loadbalancer`` the external load balancer host;

this module keeps the state they share (hosts, each node's rules, conntrack tables, sockets) and
rebuilds it when the cluster changes.
"""
from __future__ import annotations

import itertools
from operator import attrgetter
from typing import Any, Callable, Iterable, Iterator, Optional

from netsim.control.heap import deferred_gc
from netsim.dataplane.conntrack import Conntrack, flush_stale_udp
from netsim.dataplane.delivery import LocalDelivery, _with_dns_handlers
from netsim.dataplane.devices import DeviceLayer
from netsim.dataplane.end import WalkError
from netsim.dataplane.hooks import HookRunner, HookTable
from netsim.dataplane.hopmemo import HopMemo
from netsim.dataplane.ipv4 import IPv4Stack
from netsim.dataplane.loadbalancer import LoadBalancerHost
from netsim.skb.hook_result import Netfilter
from netsim.dataplane.routing import Route
from netsim.dataplane.servers import Sockets, pod_sockets
from netsim.dataplane.topology import Host, Interface, LazyMap, Topology
from netsim.dataplane.trace import Step
from netsim.dataplane.walk import WalkDriver
from netsim.skb.netfilter import NodeHooks
from netsim.skb.packet import IPPROTO_TCP, IPPROTO_UDP

_RUNNING = attrgetter("running")        # a Node's kubelet state (Walker.sync)

class Walker(WalkDriver, DeviceLayer, IPv4Stack, HookRunner, LocalDelivery, LoadBalancerHost):
    """Carries packets through one cluster's hosts; keeps conntrack and socket state between traces.

    Each node is programmed by the mode's provider (netsim.rules.registry): ``self.proxy`` is the
    mode's per-node state (netsim.rules.provider.ModeDataplane), owned by the provider. A test may
    pass ``netfilter_factory(walker, node_name) -> Netfilter`` (and ``ipvs_factory(walker,
    node_name)``: the node's IPVS hooks ``local_in(pkt, now)``, ``local_out(pkt, now)``,
    ``reply(pkt, now, hook)``) instead, re-run after every change.
    """

    hop_memo = True    # remember and replay node hops (netsim.dataplane.hopmemo); False walks every hop live

    def __init__(self, cluster, mode: Optional[str] = None, *,
                 netfilter_factory: Optional[Callable[["Walker", str], Netfilter]] = None,
                 ipvs_factory: Optional[Callable[["Walker", str], Any]] = None,
                 flush_stale_udp: bool = True) -> None:
        self.cluster = cluster
        self.mode = mode or cluster.config.proxy_mode
        self.rng = cluster.rng
        self.flush_stale_udp = flush_stale_udp
        if netfilter_factory is None:
            from netsim.rules.registry import get
            self.proxy: Any = get(self.mode).dataplane(cluster)
        else:
            self.proxy = _FactoryDataplane(self, netfilter_factory, ipvs_factory)
        self._has_ipvs = self.proxy.ipvs is not None
        self._nf: dict[str, Netfilter] = {}
        # per-topology caches of trace steps that depend only on the route / link (shared, read-only)
        self._routed: dict[int, tuple[Route, Step]] = {}
        self._links: dict[tuple[int, int], tuple[Interface, Step]] = {}
        self._vxlan_prefix: dict[tuple[str, int], tuple] = {}    # VXLAN outer-header template per (host, VTEP)
        self._encapsulated: Optional[tuple] = None               # (outer, inner) of the last VXLAN encap
        self._iface_extra: dict[str, dict] = {}
        self._ipvs: dict[str, Any] = {}
        self._hooktab: dict[str, HookTable] = {}                  # node -> its hooks by priority
        self._hop_memo = HopMemo()                                # remembered hops (netsim.dataplane.hopmemo)
        self._rec = None                                          # the hop being recorded, if any
        self.conntrack: dict[str, Conntrack] = {}
        self.sockets: dict[str, Sockets] = {}
        self.lb_flows: dict[tuple, tuple[str, float]] = {}       # flow -> (node, idle expiry)
        self._lb_expiry: list[tuple[float, tuple]] = []           # (expiry when pushed, flow)
        self._clients: dict[str, set[tuple[int, int]]] = {}     # host -> {(proto, local port)} connecting
        self._topology: Optional[Topology] = None
        self._coredns = None
        self._coredns_pods: dict[Optional[str], Any] = {}
        self._running: tuple = ()
        self._nodes: tuple = ()                                   # the cluster's nodes at the last rebuild
        self._dirty = True
        self._rules_dirty = True
        self.stats = {"packets": 0, "rules_evaluated": 0}
        cluster.watch(self._on_event)

    # ------------------------------------------------------------------ copies
    def fork(self, rng) -> "Walker":
        """An independent walker over the same cluster, which must not change while both use it
        (``netsim.api.Emulator.copy`` shares it read-only): own RNG, conntrack tables, LB flows,
        IPVS tables and connections, xt_recent lists; the hosts, sockets and each node's parsed and
        compiled rules are shared (every rule set gets its own evaluation context). Cost: the
        connection state, not the cluster's size (IPVS tables are copied per node)."""
        import copy as _copy
        w = Walker.__new__(Walker)
        w.__dict__.update(self.__dict__)
        for k, v in self.__dict__.items():         # containers not handled below: shallow copies
            if isinstance(v, (dict, list, set)) and not isinstance(v, LazyMap):
                setattr(w, k, v.copy())
        w.rng = rng
        memo: dict = {id(self.cluster): self.cluster, id(self.rng): rng}
        if isinstance(self.proxy, _FactoryDataplane):
            from netsim.rules.iptables.provider import fork_netfilter
            w.proxy = _FactoryDataplane(w, self.proxy.netfilter_factory, self.proxy.ipvs_factory)
            w._nf = {n: fork_netfilter(nf, rng, memo) for n, nf in self._nf.items()}
        else:
            w.proxy = self.proxy.fork(rng, memo)
            w._nf = {}                                 # the forked mode state's, looked up again lazily
        w._ipvs = {}                                   # hooks over the copied IPVS proxiers, made again lazily
        w._hooktab = {}
        w._hop_memo = HopMemo()
        w._rec = None
        w.conntrack = {n: _copy.deepcopy(ct) for n, ct in self.conntrack.items()}
        w._clients = {}
        w._coredns = None                              # own DNS servers (ClusterDNS has its own RNG), made lazily
        w._coredns_pods = {}
        w.sockets = _fork_sockets(self.sockets, w)
        self.cluster.watch(w._on_event)
        return w

    def rebind(self, cluster) -> None:
        """Carry on over ``cluster`` (a copy of the one this walker had, with the same history):
        connection state and compiled rules are kept; hosts and sockets are rebuilt at the next sync."""
        self.cluster = cluster
        self.proxy.rebind(cluster)
        self._coredns = None
        self._coredns_pods = {}
        self._dirty = True
        cluster.watch(self._on_event)

    # ------------------------------------------------------------------ state
    def _on_event(self, ev) -> None:
        self._dirty = True
        if ev.kind in ("Service", "EndpointSlice", "Node"):
            self._rules_dirty = True

    def sync(self) -> None:
        """Rebuild the topology and (lazily) the node rules after the cluster changed."""
        self.proxy.advance(self.cluster.clock.now)     # e.g. IPVS connection timers + graceful termination
        if not self._dirty and self._topology is not None:
            # stop_node/start_node send no watch event: look at the nodes the topology was built from
            # (adding or removing a node does send one)
            running = tuple(map(_RUNNING, self._nodes))     # (no comprehension frame per packet)
            if running == self._running:
                return             # per packet: no rebuild, so no collector switching either
        self._rebuild()

    @deferred_gc()                 # hosts and sockets for every pod (netsim.control.heap)
    def _rebuild(self) -> None:
        self._nodes = tuple(self.cluster.nodes())
        self._running = tuple([n.running for n in self._nodes])
        self._topology = Topology(self.cluster)
        # a node's sockets (its hostNetwork pods' listeners) at once; a pod's own when a packet
        # first reaches it, as the topology wires the pod's host (LazyMap keeps the eager order)
        order: list[str] = []

        def build(key: str) -> None:
            pod = sockets.pending.pop(key)
            socks = pod_sockets(pod)
            if pod.labels.get("k8s-app") == "kube-dns":
                for k in ((IPPROTO_UDP, 53), (IPPROTO_TCP, 53)):
                    if k in socks.listeners:                # this pod's own CoreDNS server
                        socks.listeners[k].handler = self.dns_handler(pod.ip)
            dict.__setitem__(sockets, key, socks)

        sockets = self.sockets = LazyMap(build, lambda: order)
        for pod in self.cluster.pods():
            if not pod.ip:
                continue
            if pod.host_network and pod.node_name:
                if not dict.__contains__(sockets, pod.node_name):
                    dict.__setitem__(sockets, pod.node_name, Sockets())
                    order.append(pod.node_name)
                s = dict.__getitem__(sockets, pod.node_name)
                for k, v in pod_sockets(pod).listeners.items():
                    s.listeners[k] = v
            elif pod.key in self._topology.hosts:
                sockets.pending[pod.key] = pod
                order.append(pod.key)
        self._routed.clear()
        self._links.clear()
        self._vxlan_prefix.clear()
        # rules are re-rendered lazily per node against the new hosts; what the mode keeps between
        # syncs (compiled rules, IPVS virtual-server and connection tables) is its provider's call
        hosts = self._topology.hosts
        self.proxy.resync(lambda node: hosts[node].routes.local if node in hosts else None, self._rules_dirty)
        self._nf = {}
        self._ipvs.clear()
        self._hooktab.clear()
        self._hop_memo.clear()
        if self._rules_dirty:
            if self.flush_stale_udp:
                self._flush_udp()
            self._rules_dirty = False
        self._dirty = False

    def _flush_udp(self) -> None:
        slices: dict[str, list] = {}
        for s in self.cluster.endpoint_slices():
            slices.setdefault(f"{s.namespace}/{s.service_name}", []).append(s)
        svcs = self.cluster.services()
        for ct in self.conntrack.values():
            flush_stale_udp(ct, svcs, slices)

    @property
    def topology(self) -> Topology:
        self.sync()
        assert self._topology is not None
        return self._topology

    def release(self, nodes: Iterable[str]) -> bool:
        """Forget these nodes' rules (rendered again at their next packet), where the mode's provider
        can (``release``); the remembered hops go too (they hold the rules' walks). False: it cannot,
        nothing was forgotten."""
        forget = getattr(self.proxy, "release", None)
        if forget is None:
            return False
        nodes = list(nodes)
        for n in nodes:
            self._nf.pop(n, None)
            self._hooktab.pop(n, None)
            self._ipvs.pop(n, None)
        self._hop_memo.clear()
        forget(nodes)
        return True

    def netfilter(self, node: str) -> Netfilter:
        nf = self._nf.get(node)
        if nf is None:
            nf = self._nf[node] = self.proxy.netfilter(node, self.topology.hosts[node].routes.local, self.rng)
        return nf

    def ipvs(self, node: str) -> Any:
        if not self._has_ipvs:
            return None
        v = self._ipvs.get(node)
        if v is None:
            v = self.proxy.ipvs(node)
            self._ipvs[node] = v
            locals_ = getattr(v, "virtual_addresses", None)
            if locals_:
                h = self.topology.hosts.get(node)
                if h is not None:
                    for a in locals_():
                        h.routes.add_local(a)      # kube-ipvs0 holds every VIP: they are LOCAL
        return v

    def hooks(self, node: str) -> HookTable:
        """The node's netfilter hooks: what the mode's provider registers there (``NodeHooks``), with
        the data plane's conntrack and NAT, by priority. The addresses the mode puts on dummy devices
        (IPVS: kube-ipvs0 holds every virtual address) route as LOCAL from then on."""
        t = self._hooktab.get(node)
        if t is None:
            host = self.topology.hosts[node]
            program = self.proxy.hooks(node, host.routes.local, self.rng)
            for a in program.local_addresses:
                host.routes.add_local(a)
            t = self._hooktab[node] = HookTable(tuple(program.registrations))
        return t

    def conntrack_for(self, node: str) -> Conntrack:
        ct = self.conntrack.get(node)
        if ct is None:
            ct = self.conntrack[node] = Conntrack()
        return ct

    @property
    def now(self) -> float:
        return self.cluster.clock.now

    # ------------------------------------------------------------------ public API
    def host_for(self, client: str, namespace: str = "default") -> Host:
        """'pod/NAME' (in namespace), 'node/NAME', 'external', or a host name as the topology has it."""
        topo = self.topology
        if client.startswith("pod/"):
            name = client[4:]
            pod = self.cluster.pod(namespace, name)
            if pod is None:
                raise WalkError(f"--from {client}: no pod {name!r} in namespace {namespace!r}")
            if pod.host_network:
                return topo.host(pod.node_name)
            h = topo.hosts.get(pod.key)
            if h is None:
                raise WalkError(f"--from {client}: pod {pod.key} has no network yet (phase {pod.phase}, "
                                f"node {pod.node_name or 'none'})")
            return h
        if client.startswith("node/"):
            h = topo.hosts.get(client[5:])
            if h is None or h.kind != "node":
                raise WalkError(f"--from {client}: no node named {client[5:]!r}")
            return h
        h = topo.hosts.get(client)
        if h is None:
            raise WalkError(f"--from {client}: expected pod/NAME, node/NAME or external")
        return h

    def _current(self, host: Host) -> Host:
        """Hosts are rebuilt when the cluster changes: map a caller's Host to today's object."""
        topo = self._topology if self._topology is not None and not self._dirty else self.topology
        hosts = topo.hosts
        cur = dict.get(hosts, host.name)       # a host already wired (else LazyMap.get wires it)
        if cur is None:
            cur = hosts.get(host.name)
        if cur is None:
            raise WalkError(f"{host.kind} {host.name} no longer exists")
        return cur

    # ------------------------------------------------------------------ inspection
    def conntrack_listing(self, node: str) -> str:
        return self.conntrack_for(node).listing(self.now)


def _fork_sockets(src: dict, w: "Walker") -> dict:
    """A fork's sockets: ``src``'s (a CoreDNS pod's answering through ``w``'s DNS servers). From a
    lazy map (``Walker._rebuild``) each is taken when first looked up, as ``src`` builds its own,
    so a copy of an emulator with 50,000 pods does not wire every pod's sockets."""
    if not isinstance(src, LazyMap):
        return {k: _with_dns_handlers(s, w, k) for k, s in src.items()}

    def build(key: str) -> None:
        dict.__setitem__(out, key, _with_dns_handlers(src[key], w, key))

    out = LazyMap(build, src._order)
    out.pending = _NotTaken(src, out)      # every key of src's, each taken when first looked up: a fork
    return out                             # (a verdict's path) costs nothing per pod


class _NotTaken:
    """A forked sockets map's ``pending``: the keys of ``src`` (built there or not) that the fork
    ``out`` has not taken yet — a view, not a copy of ``src``'s keys."""

    __slots__ = ("src", "out")

    def __init__(self, src: LazyMap, out: LazyMap) -> None:
        self.src, self.out = src, out

    def __contains__(self, key: object) -> bool:
        return not dict.__contains__(self.out, key) and key in self.src

    def __iter__(self) -> Iterator[str]:
        src, out = self.src, self.out
        return (k for k in itertools.chain(list(dict.keys(src)), list(src.pending)) if not dict.__contains__(out, k))

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None


class _FactoryDataplane:
    """Nodes programmed by a caller's ``netfilter_factory(walker, node)`` (and ``ipvs_factory``),
    made again after every change (netsim.rules.provider.ModeDataplane's shape)."""

    def __init__(self, walker: "Walker", netfilter_factory: Callable, ipvs_factory: Optional[Callable]) -> None:
        self.walker = walker
        self.netfilter_factory = netfilter_factory
        self.ipvs_factory = ipvs_factory
        self.ipvs = (lambda node: ipvs_factory(self.walker, node)) if ipvs_factory is not None else None

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> Netfilter:
        return self.netfilter_factory(self.walker, node)

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> NodeHooks:
        """The factory's table-based rules registered as iptables registers its tables, and the
        IPVS factory's hooks where ip_vs_core.c registers them."""
        from netsim.rules.iptables.hooks import table_hooks
        regs = table_hooks(self.walker.netfilter(node))
        if self.ipvs_factory is None:
            return NodeHooks(regs)
        from netsim.rules.ipvs.hooks import ipvs_hooks
        v = self.walker.ipvs(node)
        return NodeHooks(regs + ipvs_hooks(v), tuple(v.virtual_addresses()))

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        return None

    def advance(self, now: float) -> None:
        return None

    def rebind(self, cluster: Any) -> None:
        return None
