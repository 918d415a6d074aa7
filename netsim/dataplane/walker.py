"""The hop-by-hop walker: carries real packets through the cluster as the Linux stack would.

On every host (network namespace) a packet goes through the netfilter hooks in the kernel's
order (include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities):

* received:  raw PREROUTING (−300) → conntrack (−200) → mangle PREROUTING (−150) → nat
             PREROUTING (−100, first packet only: DNAT) → routing decision on the post-DNAT
             destination →
             local: mangle INPUT → filter INPUT → (IPVS LOCAL_IN) → conntrack confirm → socket
             else:  mangle FORWARD → filter FORWARD → (IPVS reply un-DNAT) → mangle POSTROUTING →
                    nat POSTROUTING (+100, first packet only: MASQUERADE) → conntrack confirm
                    (INT_MAX) → transmit
* generated: route lookup → raw OUTPUT → conntrack → mangle OUTPUT → nat OUTPUT (first packet
             only) → re-route if the destination changed → (IPVS LOCAL_OUT) → filter OUTPUT →
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
"""
from __future__ import annotations

import struct
import zlib
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import heapq

from netsim.control.heap import deferred_gc
from netsim.dataplane.conntrack import TABLE_FULL, Conntrack, ConntrackEntry, flush_stale_udp
from netsim.dataplane.netfilter import HookResult, Netfilter
from netsim.skb.packet import (_UDP_HDR, IPPROTO_TCP, IPPROTO_UDP, PROTO_NUMBERS, Packet, _finish, _ip_sum,
                           _pseudo_sum, int2ip, ip2int)
from netsim.dataplane.routing import LOOPBACK_NET, Route
from netsim.dataplane.servers import Sockets, pod_sockets, socket_ip_id
from netsim.dataplane.topology import (FLANNEL_VNI, FLANNEL_VXLAN_PORT, Host, Interface, Topology)
from netsim.dataplane.trace import Addr, Flow, Hop, Outcome, PacketSnapshot, PacketTrace, Reply, Step, Trace, TranslatedStep

EPHEMERAL_PORTS = (32768, 60999)        # net.ipv4.ip_local_port_range default
# The load balancer forgets a flow after this long without a packet, as a cloud L4 load balancer
# does (AWS Network Load Balancer: TCP 350 s, UDP 120 s, "Connection idle timeout",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/network/network-load-balancers.html).
LB_IDLE_TIMEOUT = {IPPROTO_TCP: 350.0, IPPROTO_UDP: 120.0}
LB_IDLE_TIMEOUT_OTHER = 120.0
# net.ipv4.tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s, connect() gives up at 127 s
# (Documentation/networking/ip-sysctl.rst)
TCP_SYN_TIMEOUT = 127
VXLAN_OVERHEAD = 14 + 8                 # inner Ethernet + VXLAN header inside the outer UDP


class WalkError(ValueError):
    """A trace request that cannot be carried out (unknown client, bad address...)."""


class End:
    """How one packet's walk ended."""

    __slots__ = ("disposition", "host", "detail", "owner", "pkt", "generated", "client_error")

    def __init__(self, disposition: str, host: Optional[Host] = None, detail: str = "",
                 owner: Optional[str] = None, pkt: Optional[Packet] = None,
                 generated: Optional[list[tuple[Host, Packet]]] = None) -> None:
        self.disposition = disposition  # DELIVERED CLIENT NO_LISTENER KERNEL REJECTED DROPPED NO_ROUTE
        #                                 NEIGHBOR_UNREACHABLE LOST TTL_EXCEEDED
        self.host = host
        self.detail = detail
        self.owner = owner              # pod key whose socket got it
        self.pkt = pkt                  # the packet as it arrived
        self.generated = generated if generated is not None else []
        self.client_error: Optional[str] = None     # errno the sending process sees (local drops)

    def __repr__(self) -> str:
        return (f"End({self.disposition!r}, host={self.host!r}, detail={self.detail!r}, owner={self.owner!r}, "
                f"generated={len(self.generated)})")


class Walker:
    """Carries packets through one cluster's hosts; keeps conntrack and socket state between traces.

    Each node is programmed by the mode's provider (netsim.rules.registry): ``self.proxy`` is the
    mode's per-node state (netsim.rules.provider.ModeDataplane), owned by the provider. A test may
    pass ``netfilter_factory(walker, node_name) -> Netfilter`` (and ``ipvs_factory(walker,
    node_name)``: the node's IPVS hooks ``local_in(pkt, now)``, ``local_out(pkt, now)``,
    ``reply(pkt, now, hook)``) instead, re-run after every change.
    """

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
        self._iface_extra: dict[str, dict] = {}
        self._ipvs: dict[str, Any] = {}
        self.conntrack: dict[str, Conntrack] = {}
        self.sockets: dict[str, Sockets] = {}
        self.lb_flows: dict[tuple, tuple[str, float]] = {}       # flow -> (node, idle expiry)
        self._lb_expiry: list[tuple[float, tuple]] = []           # (expiry when pushed, flow)
        self._clients: dict[str, set[tuple[int, int]]] = {}     # host -> {(proto, local port)} connecting
        self._topology: Optional[Topology] = None
        self._coredns = None
        self._coredns_pods: dict[Optional[str], Any] = {}
        self._running: tuple = ()
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
            if isinstance(v, (dict, list, set)):
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
        w.conntrack = {n: _copy.deepcopy(ct) for n, ct in self.conntrack.items()}
        w._clients = {}
        w._coredns = None                              # own DNS servers (ClusterDNS has its own RNG), made lazily
        w._coredns_pods = {}
        w.sockets = {k: _with_dns_handlers(s, w, k) for k, s in self.sockets.items()}
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

    @deferred_gc()                 # hosts and sockets for every pod (netsim.control.heap)
    def sync(self) -> None:
        """Rebuild the topology and (lazily) the node rules after the cluster changed."""
        self.proxy.advance(self.now)              # e.g. IPVS connection timers + graceful termination
        running = tuple([n.running for n in self.cluster.nodes()])   # stop_node sends no watch event
        if not self._dirty and self._topology is not None and running == self._running:
            return
        self._running = running
        self._topology = Topology(self.cluster)
        self.sockets = {}
        for pod in self.cluster.pods():
            if not pod.ip:
                continue
            if pod.host_network and pod.node_name:
                s = self.sockets.setdefault(pod.node_name, Sockets())
                for k, v in pod_sockets(pod).listeners.items():
                    s.listeners[k] = v
            elif pod.key in self._topology.hosts:
                socks = self.sockets[pod.key] = pod_sockets(pod)
                if pod.labels.get("k8s-app") == "kube-dns":
                    for key in ((IPPROTO_UDP, 53), (IPPROTO_TCP, 53)):
                        if key in socks.listeners:          # this pod's own CoreDNS server
                            socks.listeners[key].handler = self.dns_handler(pod.ip)
        self._routed.clear()
        self._links.clear()
        self._vxlan_prefix.clear()
        # rules are re-rendered lazily per node against the new hosts; what the mode keeps between
        # syncs (compiled rules, IPVS virtual-server and connection tables) is its provider's call
        hosts = self._topology.hosts
        self.proxy.resync(lambda node: hosts[node].routes.local if node in hosts else None, self._rules_dirty)
        self._nf = {}
        self._ipvs.clear()
        if self._rules_dirty:
            if self.flush_stale_udp:
                self._flush_udp()
            self._rules_dirty = False
        self._dirty = False

    def dns_handler(self, pod_ip: Optional[str] = None):
        """The DNS server (netsim.dns wire rules) of the CoreDNS pod at ``pod_ip`` (its own address
        is what ns.go answers as local); one record index serves every CoreDNS pod."""
        if self._coredns is None:
            from netsim.dataplane.target import coredns_handlers
            self._coredns = coredns_handlers(self.cluster)
        if self._coredns is None:
            return None
        h = self._coredns_pods.get(pod_ip)
        if h is None:
            h = self._coredns_pods[pod_ip] = self._coredns(pod_ip)
        return h

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

    def connect(self, client: Host, dst: str, dport: int, proto: str = "tcp", *, payload: bytes = b"",
                sport: Optional[int] = None, full: bool = False, capture: bool = False,
                target: str = "", resolved_by: Optional[str] = None, notes: Optional[list[str]] = None) -> Trace:
        """One new connection from ``client`` to dst:dport, traced there and back.

        TCP sends a SYN and walks the SYN-ACK back; with ``full`` it then sends ``payload`` (an HTTP
        request by default) and walks the response. UDP sends one datagram and walks the answer.
        """
        self.sync()
        client = self._current(client)
        proto = proto.lower()
        if proto not in PROTO_NUMBERS:
            raise WalkError(f"--proto: expected tcp, udp or icmp, got {proto!r}")
        try:
            d = ip2int(dst)
        except ValueError:
            raise WalkError(f"destination {dst!r} is not an IPv4 address") from None
        mode = self.mode
        if client.kind == "node":
            self.ipvs(client.name)          # IPVS mode: kube-ipvs0's VIPs are local before the lookup
        route = client.routes.lookup(d)
        src_addr = None
        if d in client.routes.local:
            # The local table's route to one of our own addresses has that address as prefsrc
            # (in IPVS mode every ClusterIP sits on kube-ipvs0, so the VIP becomes the source).
            src_addr = d
        elif route is not None:
            src_addr = route.src if route.src is not None else client.primary_address(route.dev)
        if sport is None:
            sport = self.rng.randrange(EPHEMERAL_PORTS[0], EPHEMERAL_PORTS[1] + 1)    # = randint(lo, hi)
        flow = Flow(self._client_label(client), proto, int2ip(src_addr) if src_addr else "0.0.0.0", sport,
                    dst, dport, target, resolved_by)
        trace = Trace(flow, mode, notes=list(notes or []))
        if route is None or src_addr is None:
            pt = PacketTrace("request", f"{proto} -> {dst}:{dport}")
            hop = pt.hop(client.name, client.kind)
            hop.add("DROPPED", f"no route to {dst}: connect() fails with ENETUNREACH before any hook runs")
            trace.packets.append(pt)
            trace.outcome = Outcome("NO_ROUTE", f"{client.name} has no route to {dst}", host=client.name)
            return trace
        src = src_addr
        if proto == "tcp":
            isn = self.rng.getrandbits(32)
            pkt = Packet.tcp(src, d, sport, dport, flags="S", seq=isn, ident=socket_ip_id(isn))
        elif proto == "udp":
            pkt = Packet.udp(src, d, sport, dport, payload=payload or b"hello",
                             ident=socket_ip_id(zlib.crc32(struct.pack("!IIHH", src, d, sport, dport))))
        elif proto == "icmp":
            pkt = Packet.icmp(src, d, id=sport & 0xFFFF, seq=1, payload=payload or b"ping")
        else:
            pkt = Packet.sctp(src, d, sport, dport)
        req = (pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
        waiting = self._clients.setdefault(client.name, set())     # client_socket() inlined (per connection)
        waiting.add((pkt.proto, pkt.sport))
        try:
            return self._connect(client, pkt, req, trace, full, payload, capture, target, isn if proto == "tcp" else 0)
        finally:
            waiting.discard((pkt.proto, pkt.sport))

    @contextmanager
    def client_socket(self, host: Host, proto: int, port: int) -> Iterator[None]:
        """While the block runs, ``host`` has a socket on (proto, local port) waiting for replies:
        packets for it end the walk as CLIENT instead of meeting the host's listeners."""
        waiting = self._clients.setdefault(host.name, set())
        waiting.add((proto, port))
        try:
            yield
        finally:
            waiting.discard((proto, port))

    def _connect(self, client: Host, pkt: Packet, req: tuple, trace: Trace, full: bool, payload: bytes,
                 capture: bool, target: str, isn: int) -> Trace:
        proto = trace.flow.proto
        src, dst, sport, dport = trace.flow.src, trace.flow.dst, trace.flow.sport, trace.flow.dport
        end, pt = self._walk(client, pkt, "request", capture)
        trace.packets.append(pt)
        outcome = self._outcome(end)
        # replies (and what they provoke) — walked until the client's socket gets something
        pending = list(end.generated)
        got: Optional[End] = None
        hops = 0
        while pending and hops < 8:
            hops += 1
            origin, rp = pending.pop(0)
            rend, rpt = self._walk(origin, rp, "reply", capture)
            trace.packets.append(rpt)
            if rend.disposition == "CLIENT" and rend.host is client:
                got = rend
                break
            pending.extend(rend.generated)
        if got is not None and got.pkt is not None:
            r = got.pkt
            outcome.reply = Reply(True, f"{r.src_ip}:{r.sport}" if not r.is_icmp_error else r.src_ip,
                                  _matches(req, r), PacketSnapshot(bytes(r.buf)))
            if r.is_icmp_error and outcome.disposition in ("DELIVERED",):
                outcome.disposition = "NO_LISTENER"
            if capture and proto == "tcp" and r.tcp_flags == 0x12:
                # the handshake's final ACK, walked for the capture only (the trace lists SYN and SYN-ACK)
                ack = Packet.tcp(src, dst, sport, dport, flags="A", seq=isn + 1, ack=r.seq + 1,
                                 ident=socket_ip_id(isn) + 1)
                _e, apt = self._walk(client, ack, "request", capture)
                trace.capture_only.append((len(trace.packets), apt))
            if full and proto == "tcp" and r.tcp_flags == 0x12:
                data = payload or f"GET / HTTP/1.1\r\nHost: {target or dst}\r\n\r\n".encode()
                p2 = Packet.tcp(src, dst, sport, dport, flags="PA", seq=isn + 1, ack=r.seq + 1, payload=data,
                                ident=socket_ip_id(isn) + 2)
                e2, pt2 = self._walk(client, p2, "request", capture)
                trace.packets.append(pt2)
                for origin, rp in e2.generated:
                    e3, pt3 = self._walk(origin, rp, "reply", capture)
                    trace.packets.append(pt3)
                    if e3.disposition == "CLIENT" and e3.pkt is not None and e3.pkt.payload:
                        outcome.reply.summary = e3.pkt.payload.split(b"\r\n", 1)[0].decode(errors="replace")
                        body = e3.pkt.payload.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
                        outcome.detail = (outcome.detail + "; " if outcome.detail else "") + f"response: {body}"
        trace.outcome = outcome
        trace.rules_evaluated = sum(p.rules for p in trace.packets)
        return trace

    def send(self, origin: Host, pkt: Packet, direction: str = "request", capture: bool = False
             ) -> tuple[End, PacketTrace]:
        """Walk one packet from a host; lower level than :meth:`connect`."""
        self.sync()
        return self._walk(self._current(origin), pkt, direction, capture)

    def _current(self, host: Host) -> Host:
        """Hosts are rebuilt when the cluster changes: map a caller's Host to today's object."""
        topo = self._topology if self._topology is not None and not self._dirty else self.topology
        cur = topo.hosts.get(host.name)
        if cur is None:
            raise WalkError(f"{host.kind} {host.name} no longer exists")
        return cur

    # ------------------------------------------------------------------ outcome
    def _client_label(self, h: Host) -> str:
        kind = h.kind
        return f"pod/{h.name}" if kind == "pod" else f"node/{h.name}" if kind == "node" else h.name

    def _outcome(self, end: End) -> Outcome:
        d = end.disposition
        host = end.host.name if end.host else None
        o = Outcome(d if d not in ("CLIENT", "KERNEL") else "DELIVERED", end.detail, host=host,
                    client_error=end.client_error)
        if d in ("DELIVERED", "NO_LISTENER", "KERNEL", "CLIENT") and end.pkt is not None:
            o.ip, o.port = end.pkt.dst_ip, end.pkt.dport
            o.seen_source = f"{end.pkt.src_ip}:{end.pkt.sport}"
            o.pod = end.owner or (end.host.name if end.host and end.host.kind == "pod" else None)
        return o

    # ------------------------------------------------------------------ the walk
    def _walk(self, origin: Host, pkt: Packet, direction: str, capture: bool) -> tuple[End, PacketTrace]:
        snap = PacketSnapshot(bytes(pkt.buf))
        pt = PacketTrace(direction, snap)
        if capture:
            pt.pcap = []
        hop = pt.hop(origin.name, origin.kind)
        hop.steps.append(Step("ORIGINATED", "%s", None, (snap,)))
        nxt = self._output(origin, pkt, pt, hop)
        guard = 0
        receive = self._receive
        while type(nxt) is tuple:
            guard += 1
            if guard > 64:
                return End("DROPPED", detail="routing loop (64 hops)"), pt
            host, iface, p, extra = nxt
            nxt = receive(host, iface, p, pt, extra)
        self.stats["packets"] += 1
        return nxt, pt

    # next-step tuple: (host, interface it arrives on, packet, extra) -- extra carries the bridge port
    def _output(self, host: Host, pkt: Packet, pt: PacketTrace, hop: Hop):
        """A locally generated packet leaves ``host``."""
        is_node = host.kind == "node"
        ipvs = self.ipvs(host.name) if is_node else None     # IPVS mode: kube-ipvs0's VIPs are local
        route = host.routes.lookup(pkt.dst)
        if route is None and not host.routes.is_local(pkt.dst):
            hop.add("DROPPED", f"no route to {pkt.dst_ip} (ENETUNREACH)")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        if is_node:
            nf = self.netfilter(host.name)
            ct = self.conntrack_for(host.name)
            stop, e = self._raw_conntrack_mangle(host, nf, ct, pkt, pt, hop, "OUTPUT")
            if stop is not None:
                return self._sender_sees(stop, pkt)
            if e is not None:
                if not e.confirmed and pkt.ctstate == "NEW":
                    res = self._run(host, nf, hop, pt, "nat", "OUTPUT", pkt)
                    if res.nat is not None and res.nat.kind == "DNAT":
                        self._bind(host, ct, e, res, pkt, hop)
                self._translate(ct.nat_dst(pkt, e, pkt.ct_reply), "dst", hop,
                                "DNAT" if not pkt.ct_reply else "un-SNAT (conntrack)")
            if ipvs is not None:
                dec = ipvs.reply(pkt, self.now, "LOCAL_OUT") or ipvs.local_out(pkt, self.now)
                stop = self._ipvs_step(host, hop, dec, pkt, ct, e)
                if stop is not None:
                    return stop
            route = host.routes.lookup(pkt.dst)
            local = host.routes.is_local(pkt.dst)
            if route is None and not local:
                hop.add("DROPPED", f"no route to {pkt.dst_ip} after NAT")
                return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
            res = self._run(host, nf, hop, pt, "filter", "OUTPUT", pkt)
            if res.verdict != "ACCEPT":
                return self._sender_sees(self._refused(host, hop, res, pkt, "OUTPUT"), pkt)
            if local:
                hop.add("ROUTED", f"{pkt.dst_ip} is local: loopback to INPUT")
                r = self._postrouting(host, nf, ct, e, pkt, pt, hop, "lo")
                if r is not None:
                    return self._sender_sees(r, pkt)
                return self._local_in(host, "lo", pkt, pt, hop, ct, e, nf)
            hop.steps.append(self._routed_step(route))
            r = self._postrouting(host, nf, ct, e, pkt, pt, hop, route.dev)
            if r is not None:
                return self._sender_sees(r, pkt)
            return self._transmit(host, route, pkt, pt, hop)
        if host.routes.is_local(pkt.dst):
            return self._deliver(host, "lo", pkt, hop)
        hop.steps.append(self._routed_step(route))
        return self._transmit(host, route, pkt, pt, hop)

    def _routed_step(self, route: Route) -> Step:
        """ROUTED <route>: the same text for every packet that takes the route, so one shared step."""
        hit = self._routed.get(id(route))
        if hit is None:
            hit = self._routed[id(route)] = (route, Step("ROUTED", str(route)))
        return hit[1]

    def _receive(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, extra):
        """A packet arrives on ``iface`` of ``host``."""
        bridged_from = extra
        hops = pt.hops
        hop = Hop(len(hops) + 1, host.name, host.kind)
        hops.append(hop)
        ifname = iface.name
        extra = self._iface_extra.get(ifname)
        if extra is None:
            extra = self._iface_extra[ifname] = {"interface": ifname}     # shared, read-only
        port_in = pkt.physdev_in
        hop.steps.append(Step("RECEIVED", "%s%s: %s", extra,
                              (ifname, " (bridge port %s)" % port_in if port_in else "",
                               PacketSnapshot(bytes(pkt.buf)))))
        if pt.pcap is not None:
            self._capture(pt, host, ifname, pkt, "received")
        if not host.up:
            hop.add("DROPPED", f"{host.name} is down: the packet is lost (the client would time out)")
            return End("LOST", host, f"{host.name} is down")
        pkt.iif = ifname
        pkt.oif = None
        kind = host.kind
        if kind == "node":
            if ifname == "eth0" and pkt._proto == IPPROTO_UDP and pkt._dport == FLANNEL_VXLAN_PORT \
                    and host.routes.is_local(pkt._dst) and "flannel.1" in host.interfaces:
                inner = self._decap(pkt)
                hop.steps.append(Step("DECAPSULATED", "vxlan vni %s from %s:%s -> inner %s arrives on flannel.1",
                                      _FLANNEL_EXTRA,
                                      (FLANNEL_VNI, Addr(pkt._src), pkt._sport, PacketSnapshot(bytes(inner.buf)))))
                pkt = inner
                pkt.iif = "flannel.1"
                iface = host.interfaces["flannel.1"]
                if pt.pcap is not None:
                    self._capture(pt, host, "flannel.1", pkt, "decapsulated")
            return self._node_in(host, iface, pkt, pt, hop, bridged_from)
        if kind == "pod" and pkt._dst in host.routes.local:
            return self._deliver(host, ifname, pkt, hop)      # the common case of is_local below
        if host.kind == "loadbalancer" and (pkt.dst in self.topology.lb_ips or pkt.dst in self.topology.external_ips):
            return self._balance(host, pkt, pt, hop)
        if host.routes.is_local(pkt.dst):
            return self._deliver(host, iface.name, pkt, hop)
        if not host.forwarding:
            hop.add("DROPPED", f"{pkt.dst_ip} is not an address of {host.name} and it does not forward")
            return End("DROPPED", host, f"{host.name} is not {pkt.dst_ip} (no forwarding)")
        route = host.routes.lookup(pkt.dst)
        if route is None:
            hop.add("DROPPED", f"no route to {pkt.dst_ip}")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        if pkt.ttl <= 1:
            hop.add("DROPPED", "TTL exceeded")
            return End("TTL_EXCEEDED", host)
        pkt.decrement_ttl()
        hop.steps.append(self._routed_step(route))
        return self._transmit(host, route, pkt, pt, hop)

    # ------------------------------------------------------------------ node stack
    def _node_in(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to):
        name = host.name
        nf = self._nf.get(name)
        if nf is None:
            nf = self.netfilter(name)
        if self._has_ipvs:
            self.ipvs(name)             # IPVS mode: kube-ipvs0's VIPs must be local before routing
        ct = self.conntrack.get(name)
        if ct is None:
            ct = self.conntrack_for(name)
        stop, e = self._raw_conntrack_mangle(host, nf, ct, pkt, pt, hop, "PREROUTING")
        if stop is not None:
            return stop
        if e is not None:
            is_reply = pkt.ct_reply
            if not e.confirmed and pkt.ctstate == "NEW":
                res = self._run(host, nf, hop, pt, "nat", "PREROUTING", pkt)
                if res.nat is not None and res.nat.kind == "DNAT":
                    self._bind(host, ct, e, res, pkt, hop)
            if e.snat if is_reply else e.dnat:          # Conntrack.nat_dst applies only a binding
                change = ct.nat_dst(pkt, e, is_reply)
                if change is not None:
                    hop.steps.append(TranslatedStep("DNAT" if not is_reply else "un-SNAT (conntrack)",
                                                    "dst", change))
        routes = host.routes
        dst = pkt._dst
        local = dst in routes.local or (dst & 0xFF000000) == LOOPBACK_NET      # RoutingTable.is_local
        # br_netfilter: a frame bridged between two ports of cni0 skips the routing decision unless
        # DNAT changed its destination (br_nf_pre_routing_finish re-routes then).
        if bridged_to is not None and not local and pkt.dst == bridged_to.addr:
            hop.add("BRIDGED", f"cni0: {pkt.physdev_in} -> {bridged_to.bridge_port} (br_netfilter runs the "
                    "IPv4 hooks on bridged frames)")
            pkt.physdev_out = bridged_to.bridge_port
            return self._forward(host, nf, ct, e, pkt, pt, hop, None, bridged_to)
        if local:
            hop.add("ROUTED", f"{pkt.dst_ip} is local -> INPUT")
            return self._local_in(host, iface.name, pkt, pt, hop, ct, e, nf)
        route = routes.lookup(dst)
        if route is None:
            hop.add("DROPPED", f"no route to {pkt.dst_ip}")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        hairpin = route.dev == "cni0" and iface.name == "cni0"
        if not hairpin:
            if pkt.ttl <= 1:
                hop.add("DROPPED", "TTL exceeded")
                return End("TTL_EXCEEDED", host)
            pkt.decrement_ttl()
        if hairpin:
            hop.add("ROUTED", "%s%s", None, (route, "  (re-bridged on cni0: br_netfilter)"))
        else:
            hit = self._routed.get(id(route))
            hop.steps.append(hit[1] if hit is not None else self._routed_step(route))
        return self._forward(host, nf, ct, e, pkt, pt, hop, route, None)

    def _forward(self, host: Host, nf: Netfilter, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                 pt: PacketTrace, hop: Hop, route: Optional[Route], bridged_to: Optional[Interface]):
        pkt.oif = route.dev if route is not None else "cni0"
        if nf.has_rules("mangle", "FORWARD"):
            res = self._run(host, nf, hop, pt, "mangle", "FORWARD", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "FORWARD", "mangle")
        res = self._run(host, nf, hop, pt, "filter", "FORWARD", pkt)
        if res.verdict != "ACCEPT":
            return self._refused(host, hop, res, pkt, "FORWARD")
        if self._has_ipvs:
            ipvs = self.ipvs(host.name)
            if ipvs is not None:
                dec = ipvs.reply(pkt, self.now, "FORWARD")
                if dec is not None:
                    self._ipvs_step(host, hop, dec, pkt, ct, e)
        r = self._postrouting(host, nf, ct, e, pkt, pt, hop, pkt.oif)
        if r is not None:
            return r
        if bridged_to is not None:
            return self._to_port(host, bridged_to, pkt, pt, hop)
        assert route is not None
        return self._transmit(host, route, pkt, pt, hop)

    def _local_in(self, host: Host, iif: str, pkt: Packet, pt: PacketTrace, hop: Hop, ct: Conntrack,
                  e: Optional[ConntrackEntry], nf: Netfilter):
        if nf.has_rules("mangle", "INPUT"):
            res = self._run(host, nf, hop, pt, "mangle", "INPUT", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "INPUT", "mangle")
        res = self._run(host, nf, hop, pt, "filter", "INPUT", pkt)
        if res.verdict != "ACCEPT":
            return self._refused(host, hop, res, pkt, "INPUT")
        ipvs = self.ipvs(host.name)
        if ipvs is not None:
            # ip_vs_reply4 / ip_vs_remote_request4 run at LOCAL_IN priority 98, before nat INPUT (100)
            # and the conntrack confirm (INT_MAX), so IPVS can still alter the unconfirmed entry.
            dec = ipvs.reply(pkt, self.now, "LOCAL_IN") or ipvs.local_in(pkt, self.now)
            stop = self._ipvs_step(host, hop, dec, pkt, ct, e)
            if stop is not None:
                return stop
            if dec is not None and dec.action == "dnat":
                # ip_vs_nat_xmit: routed to the real server, through LOCAL_OUT and POSTROUTING
                route = host.routes.lookup(pkt.dst)
                if route is None:
                    hop.add("DROPPED", f"IPVS: no route to real server {pkt.dst_ip}")
                    return End("NO_ROUTE", host)
                hop.add("ROUTED", f"{route}  (ip_vs_nat_xmit)")
                if host.routes.is_local(pkt.dst):
                    if e is not None and not ct.confirm(e, self.now):
                        return self._insert_failed(host, hop, e)
                    return self._deliver(host, iif, pkt, hop)
                pkt.oif = route.dev
                res = self._run(host, nf, hop, pt, "filter", "OUTPUT", pkt)
                if res.verdict != "ACCEPT":
                    return self._refused(host, hop, res, pkt, "OUTPUT")
                r = self._postrouting(host, nf, ct, e, pkt, pt, hop, route.dev)
                if r is not None:
                    return r
                return self._transmit(host, route, pkt, pt, hop)
        if e is not None:
            self._translate(ct.nat_src(pkt, e, pkt.ct_reply), "src", hop,
                            "SNAT" if not pkt.ct_reply else "un-DNAT (conntrack)")
            if not ct.confirm(e, self.now):
                return self._insert_failed(host, hop, e)
        return self._deliver(host, iif, pkt, hop)

    def _postrouting(self, host: Host, nf: Netfilter, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                     pt: PacketTrace, hop: Hop, oif: str):
        pkt.oif = oif
        if nf.has_rules("mangle", "POSTROUTING"):
            res = self._run(host, nf, hop, pt, "mangle", "POSTROUTING", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "POSTROUTING", "mangle")
        if e is not None:
            if not e.confirmed and pkt.ctstate == "NEW":
                res = self._run(host, nf, hop, pt, "nat", "POSTROUTING", pkt)
                if res.nat is not None and res.nat.kind in ("SNAT", "MASQUERADE"):
                    self._bind(host, ct, e, res, pkt, hop, oif)
            is_reply = pkt.ct_reply
            if e.dnat if is_reply else e.snat:          # Conntrack.nat_src applies only a binding
                change = ct.nat_src(pkt, e, is_reply)
                if change is not None:
                    hop.steps.append(TranslatedStep("SNAT" if not is_reply else "un-DNAT (conntrack)", "src",
                                                    change))
            if not e.confirmed:
                now = self.cluster.clock.now
                if not ct.confirm(e, now):
                    return self._insert_failed(host, hop, e)
                snap = e.snapshot(now)
                hop.steps.append(Step("CONNTRACK", "confirmed: %s", {"conntrack": snap}, (snap,)))
        return None

    def _insert_failed(self, host: Host, hop: Hop, e: ConntrackEntry) -> End:
        hop.add("DROPPED", "conntrack insert failed: another connection already holds tuple %s "
                "(__nf_conntrack_confirm drops the packet; conntrack -S insert_failed)", None,
                (e.snapshot(self.now),))
        return End("DROPPED", host, "conntrack insert_failed (tuple clash)")

    # ------------------------------------------------------------------ conntrack + NAT helpers
    def _raw_conntrack_mangle(self, host: Host, nf: Netfilter, ct: Conntrack, pkt: Packet, pt: PacketTrace,
                              hop: Hop, hook: str) -> tuple[Optional[End], Optional[ConntrackEntry]]:
        """The hook's first three stages in priority order (netfilter_ipv4.h: NF_IP_PRI_RAW -300,
        NF_IP_PRI_CONNTRACK -200, NF_IP_PRI_MANGLE -150). Returns (how the walk ended, or None; the
        packet's conntrack entry, None when it is untracked or invalid)."""
        pkt.ct, pkt.ct_reply, pkt.ctstate = None, False, None
        if nf.has_rules("raw", hook):
            # before conntrack the packet has no entry: --ctstate sees INVALID (xt_conntrack, no ct)
            pkt.ctstate = "INVALID"
            res = self._run(host, nf, hop, pt, "raw", hook, pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, hook, "raw"), None
            if pkt.ctstate != "UNTRACKED":
                pkt.ctstate = None
        if pkt.ctstate == "UNTRACKED":
            hop.add("CONNTRACK", "ctstate UNTRACKED (raw CT --notrack): no conntrack entry, so no NAT either")
            e = None
        else:
            e = self._conntrack_in(host, ct, pkt, hop)
            if pkt.ctstate == TABLE_FULL:
                return End("DROPPED", host, f"{host.name}: nf_conntrack table full"), None
            if pkt.ctstate == "INVALID":
                e = None
        if nf.has_rules("mangle", hook):
            res = self._run(host, nf, hop, pt, "mangle", hook, pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, hook, "mangle"), e
        return None, e

    @staticmethod
    def _sender_sees(end: End, pkt: Packet) -> End:
        """What the local process learns when its own packet ends in OUTPUT or POSTROUTING.

        NF_DROP from a hook makes ip_local_out return -EPERM (nf_hook_slow): UDP's and ICMP's send()
        fails with EPERM at once, whether a rule DROPs or REJECTs. TCP's tcp_connect ignores its
        SYN's error and retransmits (tcp_syn_retries), so a DROP ends in ETIMEDOUT; a REJECT's ICMP
        error (or RST) reaches the socket in SYN_SENT (tcp_v4_err) and connect() fails with
        ECONNREFUSED. Checked in a scratch netns: tests/test_local_drop.py."""
        if end.disposition not in ("DROPPED", "REJECTED"):
            return end
        if pkt.proto == IPPROTO_TCP or pkt.proto == 132:
            if end.disposition == "DROPPED":
                end.client_error = "ETIMEDOUT"
                end.detail += (f"; the client's connect() retransmits the SYN and fails with ETIMEDOUT after "
                               f"about {TCP_SYN_TIMEOUT} s (tcp_syn_retries 6)")
            else:
                end.client_error = "ECONNREFUSED"
                end.detail += "; the client's connect() fails at once with ECONNREFUSED"
        else:
            end.client_error = "EPERM"
            end.detail += "; the client's send() fails at once with EPERM (Operation not permitted)"
        return end

    def _conntrack_in(self, host: Host, ct: Conntrack, pkt: Packet, hop: Hop) -> Optional[ConntrackEntry]:
        now = self.cluster.clock.now
        e, is_reply, state = ct.classify(pkt, now)
        pkt.ct, pkt.ct_reply, pkt.ctstate = e, is_reply, state
        if state == TABLE_FULL:
            hop.add("DROPPED", f"nf_conntrack: table full, dropping packet (nf_conntrack_max {ct.max_entries}, "
                    "no entry early_drop could evict)")
            return None
        if e is None:
            hop.add("CONNTRACK", "ctstate %s: no connection matches %s", None, (state, PacketSnapshot(bytes(pkt.buf))))
            return None
        if state == "RELATED":
            hop.add("CONNTRACK", "ctstate RELATED (ICMP error about %s)", None, (e.snapshot(now),))
            return e
        ct.update(e, pkt, is_reply, now)
        if e.confirmed:
            snap = e.snapshot(now)
            hop.steps.append(Step("CONNTRACK", "ctstate %s%s: %s", {"conntrack": snap},
                                  (state, " (reply direction)" if is_reply else "", snap)))
        else:
            hop.steps.append(Step("CONNTRACK", "ctstate NEW: new entry (unconfirmed) for %s", None,
                                  (PacketSnapshot(bytes(pkt.buf)),)))
        return e

    def _bind(self, host: Host, ct: Conntrack, e: ConntrackEntry, res: HookResult, pkt: Packet, hop: Hop,
              oif: Optional[str] = None) -> None:
        nat = res.nat
        assert nat is not None
        if nat.kind == "DNAT":
            ct.bind_dnat(e, nat.ip if nat.ip is not None else pkt.dst, nat.port or pkt.dport)
            return
        ip = nat.ip
        if nat.kind == "MASQUERADE":
            ip = host.primary_address(oif or "eth0")
            if ip is None:
                hop.add("DROPPED", f"MASQUERADE: {oif} has no address")
                return
        assert ip is not None
        port = ct.bind_snat(e, ip, nat.port, self.rng, nat.random_fully, oif)
        how = "--random-fully: port drawn" if nat.random_fully else \
            ("source port kept" if port == pkt.sport else "port clash: new source port")
        hop.add("CONNTRACK", f"{nat.kind} binding: source -> {int2ip(ip)}:{port} ({how})")

    def _translate(self, change, which: str, hop: Hop, label: str) -> None:
        if change is not None:
            hop.steps.append(TranslatedStep(label, which, change))

    def _run(self, host: Host, nf: Netfilter, hop: Hop, pt: PacketTrace, table: str, chain: str,
             pkt: Packet) -> HookResult:
        if not nf.has_rules(table, chain):
            return _NO_RULES
        # RULE steps are appended as the rules match: built once per rule, shared (read-only)
        res = nf.run(table, chain, pkt, self.cluster.clock.now, hop.steps)
        n = res.rules_evaluated
        pt.rules += n
        self.stats["rules_evaluated"] += n
        return res

    def _refused(self, host: Host, hop: Hop, res: HookResult, pkt: Packet, chain: str, table: str = "filter") -> End:
        last = res.hits[-1] if res.hits else None
        where = f"{table}:{chain}" + (f" ({last.chain} #{last.number})" if last else "")
        if res.verdict == "REJECT":
            err = self._reject_packet(host, pkt, res.reject_with)
            hop.add("REJECTED", f"{where}: REJECT --reject-with {res.reject_with}; "
                    f"sends {err.summary() if err else 'nothing'}")
            return End("REJECTED", host, f"{where} {last.text if last else ''}".strip(),
                       generated=[(host, err)] if err is not None else [])
        hop.add("DROPPED", f"{where}: DROP")
        return End("DROPPED", host, f"{where} {last.text if last else ''}".strip())

    def _reject_packet(self, host: Host, pkt: Packet, how: str) -> Optional[Packet]:
        # icmp_send: source = the rejected packet's destination if that is local; otherwise (with
        # net.ipv4.icmp_errors_use_inbound_ifaddr=0, the default: Documentation/networking/ip-sysctl)
        # the primary address of the interface the error leaves by, i.e. the route back to the sender.
        if host.routes.is_local(pkt.dst):
            src = pkt.dst
        else:
            r = host.routes.lookup(pkt.src)
            src = (r.src if r and r.src is not None else host.primary_address(r.dev if r else "eth0")) or pkt.dst
        if how == "tcp-reset" and pkt.proto == IPPROTO_TCP:
            return Packet.tcp(pkt.dst_ip, pkt.src_ip, pkt.dport, pkt.sport, flags="RA", ack=pkt.seq + 1)
        code = {"icmp-port-unreachable": 3, "icmp-host-unreachable": 1, "icmp-net-unreachable": 0,
                "icmp-admin-prohibited": 13, "icmp-host-prohibited": 10, "icmp-net-prohibited": 9,
                "icmp-proto-unreachable": 2}.get(how, 3)
        # the original packet as received (conntrack may have rewritten it: quote the current bytes)
        return Packet.icmp_error(int2ip(src), pkt, code=code)

    def _ipvs_step(self, host: Host, hop: Hop, dec, pkt: Packet, ct: Conntrack, e: Optional[ConntrackEntry]):
        if dec is None:
            return None
        before = f"{dec.before[0]}:{dec.before[1]}" if dec.before[0] else ""
        after = f"{dec.after[0]}:{dec.after[1]}" if dec.after[0] else ""
        extra = {"before": before, "after": after} if before else None
        hop.add("IPVS", f"{dec.hook}: {dec.action} {before + ' -> ' + after if before else ''} ({dec.reason})".replace("  ", " "),
                extra)
        if dec.action == "dnat" and e is not None and not pkt.ct_reply and not e.confirmed:
            # net.ipv4.vs.conntrack=1: ip_vs_update_conntrack alters the reply tuple of the still
            # unconfirmed entry (no NAT binding: IPVS itself rewrites the replies)
            ct.bind_dnat(e, pkt.dst, pkt.dport)
            e.dnat = False
        if dec.action == "reject":
            gen = [(host, dec.icmp)] if getattr(dec, "icmp", None) is not None else []
            return End("REJECTED", host, dec.reason, generated=gen)
        if dec.action == "drop":
            return End("DROPPED", host, dec.reason)
        return None

    # ------------------------------------------------------------------ links
    def _transmit(self, host: Host, route: Route, pkt: Packet, pt: PacketTrace, hop: Hop):
        dev = host.interfaces.get(route.dev)
        if dev is None:
            hop.add("DROPPED", f"route via missing device {route.dev}")
            return End("NO_ROUTE", host)
        nh = route.via if route.via is not None else pkt.dst
        pkt.oif = dev.name
        if dev.kind == "vxlan":
            remote = dev.fdb.get(nh)
            if remote is None:
                hop.add("DROPPED", f"flannel.1: no FDB entry for VTEP {int2ip(nh)}")
                return End("NEIGHBOR_UNREACHABLE", host)
            outer = self._encap(host, pkt, remote)
            hop.steps.append(Step("ENCAPSULATED", "flannel.1 vxlan vni %s: outer %s", _FLANNEL_EXTRA,
                                  (FLANNEL_VNI, PacketSnapshot(bytes(outer.buf)))))
            if pt.pcap is not None:
                self._capture(pt, host, "flannel.1", pkt, "sent into the VXLAN tunnel")
            pkt = outer
            dev = host.interfaces["eth0"]
            nh = remote
        link = self._links.get((id(dev), nh))
        if link is None:
            seg = dev.segment
            peer = seg.neighbours.get(nh) if seg is not None else None
            if peer is None:
                hop.add("DROPPED", f"no neighbour answers ARP for {int2ip(nh)} on {dev.name}")
                return End("NEIGHBOR_UNREACHABLE", host, f"{host.name}: {int2ip(nh)} unreachable on {dev.name}")
            # TRANSMITTED names only the link: one shared step per (device, next hop) and topology
            link = self._links[(id(dev), nh)] = (peer, Step(
                "TRANSMITTED", f"{dev.name} -> {peer.host.name} ({peer.name}, {int2ip(nh)})",
                {"interface": dev.name}))
        peer = link[0]
        hop.steps.append(link[1])
        if pt.pcap is not None:
            self._capture(pt, host, dev.name, pkt, "transmitted")
        if host.kind == "node" and dev.kind == "bridge":
            # out through the pod's veth (bridge port)
            pkt.physdev_out = peer.bridge_port
            pkt.physdev_in = None
            return (peer.host, peer, pkt, None)
        if host.kind == "pod" and peer.host.kind == "pod":
            # pod -> pod on the same bridge: the node's cni0 bridges it (br_netfilter hooks run)
            node = self.topology.hosts[host.node_name]
            pkt.physdev_in = dev.bridge_port
            return (node, node.interfaces["cni0"], pkt, peer)
        if host.kind == "pod":
            pkt.physdev_in = dev.bridge_port
            return (peer.host, peer, pkt, None)
        pkt.physdev_in = None
        return (peer.host, peer, pkt, None)

    def _to_port(self, node: Host, port: Interface, pkt: Packet, pt: PacketTrace, hop: Hop):
        hop.add("TRANSMITTED", f"cni0 port {port.bridge_port} -> {port.host.name}", {"interface": "cni0"})
        if pt.pcap is not None:
            self._capture(pt, node, "cni0", pkt, "bridged")
        pkt.physdev_in = None
        return (port.host, port, pkt, None)

    def _encap(self, host: Host, pkt: Packet, remote: int) -> Packet:
        """flannel VXLAN: outer IP (TTL 64, DF clear) / UDP sport=flow hash, dport 8472 / VXLAN / Ethernet.

        The outer header is the one Packet.udp(src, remote, sport, 8472, payload, df=False) builds; the
        parts that do not depend on the inner packet (addresses, VXLAN header, inner Ethernet header and
        their checksum words) are kept per (host, remote VTEP), so per packet only the lengths, the
        source port and the checksums over them and the inner datagram are filled in."""
        key = (host.name, remote)
        tpl = self._vxlan_prefix.get(key)
        if tpl is None:
            fl = host.interfaces["flannel.1"]
            inner_eth = bytes.fromhex(("02" * 6) + fl.mac.replace(":", "")) + b"\x08\x00"
            vx = bytes([0x08, 0, 0, 0]) + FLANNEL_VNI.to_bytes(3, "big") + b"\x00"
            src = host.interfaces["eth0"].addr
            tpl = self._vxlan_prefix[key] = (vx + inner_eth, src, _ip_sum(src, remote, IPPROTO_UDP, 0, 64, 0, 0),
                                             _pseudo_sum(src, remote, IPPROTO_UDP, 0) + FLANNEL_VXLAN_PORT)
        prefix, src, ip_base, udp_base = tpl
        buf = pkt.buf
        l4 = (buf[0] & 15) * 4
        h = zlib.crc32(buf[l4:l4 + 4], zlib.crc32(buf[12:20]))   # addresses, then ports
        lo, hi = EPHEMERAL_PORTS
        sport = lo + h % (hi - lo + 1)          # udp_flow_src_port: a hash of the inner flow
        payload = prefix + buf
        ulen = 8 + len(payload)
        total = 20 + ulen
        v = int.from_bytes(payload, "big")
        if ulen & 1:
            v <<= 8                             # odd length: pad with a zero byte
        c = _finish(udp_base + ulen + ulen + sport + v) or 0xFFFF     # RFC 768: a computed 0 is sent as all ones
        # the outer header as iptunnel_xmit writes it: DF not set (vxlan's df unset), TTL 64, and the IP ID
        # from __ip_select_ident (a hashed, randomly advanced counter; here bits of the flow hash)
        ident = h >> 16
        out = bytearray(_UDP_HDR.pack(0x45, 0, total, ident, 0, 64, IPPROTO_UDP, _finish(ip_base + total + ident),
                                      src, remote, sport, FLANNEL_VXLAN_PORT, ulen, c))
        out += payload
        return Packet._built(out, IPPROTO_UDP, src, remote, 20, sport, FLANNEL_VXLAN_PORT)

    @staticmethod
    def _decap(outer: Packet) -> Packet:
        inner = Packet(outer.buf[outer._l4 + 8 + 8 + 14:])     # UDP header, VXLAN header, inner Ethernet
        inner.mark = 0
        return inner

    def _balance(self, lb: Host, pkt: Packet, pt: PacketTrace, hop: Hop):
        """The external load balancer: pick a node for a new flow, then pass packets through unchanged.

        Candidates are nodes that are Ready. For a Service with externalTrafficPolicy Local only nodes
        with a ready endpoint of the Service pass the LB health check (healthCheckNodePort), as
        cloud LBs do. The choice is a seeded draw, remembered per flow until the flow has been idle
        for LB_IDLE_TIMEOUT (then the next packet is a new flow).
        """
        key = pkt.tuple()
        now = self.now
        self._lb_expire(now)
        hit = self.lb_flows.get(key)
        topo = self.topology
        idle = LB_IDLE_TIMEOUT.get(pkt.proto, LB_IDLE_TIMEOUT_OTHER)
        if hit is None or hit[1] <= now:
            cands, why = self._lb_candidates(pkt)
            if not cands:
                hop.add("DROPPED", f"load balancer: no healthy node for {pkt.dst_ip}:{pkt.dport} ({why})")
                return End("DROPPED", lb, f"load balancer has no healthy backend node ({why})")
            chosen = self.rng.choice(cands)
            heapq.heappush(self._lb_expiry, (now + idle, key))
            hop.add("BALANCED", f"{pkt.dst_ip}:{pkt.dport} -> node {chosen} (seeded choice among "
                    f"{', '.join(cands)}; {why})")
        else:
            chosen = hit[0]
            hop.add("BALANCED", f"existing flow -> node {chosen}")
        self.lb_flows[key] = (chosen, now + idle)
        node = topo.hosts[chosen]
        eth0 = node.interfaces["eth0"]
        pkt.decrement_ttl()
        hop.add("TRANSMITTED", f"eth0 -> {chosen} ({eth0.ip}), destination unchanged (passthrough)",
                {"interface": "eth0"})
        self._capture(pt, lb, "eth0", pkt, "passed through to a node")
        return (node, eth0, pkt, None)

    def _lb_expire(self, now: float) -> None:
        """Forget flows idle past their timeout (one heap item per flow, re-pushed when refreshed)."""
        heap = self._lb_expiry
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            hit = self.lb_flows.get(key)
            if hit is None:
                continue
            if hit[1] <= now:
                del self.lb_flows[key]
            else:
                heapq.heappush(heap, (hit[1], key))

    def _lb_candidates(self, pkt: Packet) -> tuple[list[str], str]:
        static = self.topology.external_ip_nodes.get(pkt.dst)
        if pkt.dst in self.topology.external_ips:
            # externalIPs: the admin's static route to one node (netsim.dataplane.topology.external_ip_node)
            return ([static] if static else []), "externalIP: the network admin's static route to a node"
        nodes = [n for n in self.cluster.nodes() if n.ready]
        svc = None
        for s in self.cluster.services():
            if pkt.dst_ip in s.load_balancer_ips and any(p.port == pkt.dport for p in s.ports):
                svc = s
                break
        if svc is not None and svc.external_traffic_policy == "Local":
            local = set()
            for sl in self.cluster.endpoint_slices(svc.namespace, svc.name):
                for ep in sl.endpoints:
                    if ep.ready and ep.node_name:
                        local.add(ep.node_name)
            good = [n.name for n in nodes if n.name in local]
            return sorted(good), "externalTrafficPolicy Local: health check passes only on nodes with a ready endpoint"
        return sorted(n.name for n in nodes), "every Ready node passes the health check"

    # ------------------------------------------------------------------ sockets
    def _deliver(self, host: Host, iif: str, pkt: Packet, hop: Hop) -> End:
        socks = self.sockets.get(host.name)
        # a client socket waiting for this reply?
        waiting = self._clients.get(host.name)
        if waiting and (((pkt._proto, pkt._dport) in waiting) if not pkt.is_icmp_error
                        else self._is_client_reply(host, pkt)):
            hop.add("DELIVERED", "to the client socket %s:%s: %s", None, (Addr(pkt.dst), pkt.dport, PacketSnapshot(bytes(pkt.buf))))
            return End("CLIENT", host, pkt=pkt)
        if socks is None:
            socks = Sockets()
        d = socks.deliver(pkt, self.rng)
        gen = [(host, r) for r in d.replies]
        if d.kind == "listener":
            hop.add("DELIVERED", "%s%s", None, (d.detail, _Answers(d.replies)))
            return End("DELIVERED", host, d.detail, owner=d.owner, pkt=pkt, generated=gen)
        if d.kind == "kernel":
            hop.add("DELIVERED", d.detail)
            return End("KERNEL", host, d.detail, pkt=pkt, generated=gen)
        hop.add("ANSWERED", f"{d.detail}: the kernel answers {d.replies[0].summary()}")
        return End("NO_LISTENER", host, f"{host.name}: {d.detail}", pkt=pkt, generated=gen)

    def _is_client_reply(self, host: Host, pkt: Packet) -> bool:
        socks = self._clients.get(host.name)
        if not socks:
            return False
        if pkt.is_icmp_error:
            inner = pkt.inner
            return inner is not None and (inner.proto, inner.sport) in socks
        return (pkt.proto, pkt.dport) in socks

    # ------------------------------------------------------------------ capture
    def _capture(self, pt: PacketTrace, host: Host, iface: str, pkt: Packet, what: str) -> None:
        if pt.pcap is None:
            return
        note = f"{pt.direction} {host.name}/{iface} {what}: {pkt.summary()}"
        if what in ("transmitted", "bridged") and pt.hops:
            done = [s.detail for s in pt.hops[-1].steps if s.action in ("TRANSLATED", "IPVS", "BALANCED")]
            jumps = [s.extra["chain"] + " -> " + s.extra["rule"].rsplit(" -j ", 1)[-1]
                     for s in pt.hops[-1].steps if s.action == "RULE" and s.extra
                     and ("DNAT" in s.extra["rule"] or "MASQUERADE" in s.extra["rule"])]
            if jumps or done:
                note += " | " + "; ".join(jumps + done)
        pt.pcap.append((host.name, iface, bytes(pkt.buf), note))

    # ------------------------------------------------------------------ inspection
    def conntrack_listing(self, node: str) -> str:
        return self.conntrack_for(node).listing(self.now)


_FLANNEL_EXTRA = {"interface": "flannel.1"}   # shared, read-only
_NO_RULES = HookResult()          # an empty chain: ACCEPT, nothing matched (shared, never mutated)


class _Answers:
    __slots__ = ("data",)

    def __init__(self, replies: list[Packet]) -> None:
        self.data = bytes(replies[0].buf) if replies else None

    def __str__(self) -> str:
        return "" if self.data is None else f"; answers {PacketSnapshot(self.data)}"


def _matches(req: tuple, r: Packet) -> bool:
    """Does the reply come from where the request went (i.e. was every NAT undone)?"""
    proto, s, sp, d, dp = req
    if r.is_icmp_error:
        inner = r.inner
        return inner is not None and inner.tuple() == req
    return r.src == d and r.sport == dp and r.dst == s and r.dport == sp


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

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        return None

    def advance(self, now: float) -> None:
        return None

    def rebind(self, cluster: Any) -> None:
        return None


def _with_dns_handlers(socks: Sockets, walker: "Walker", key: str) -> Sockets:
    """``socks`` itself, or — for a CoreDNS pod, whose port 53 listeners answer through one walker's
    DNS servers — a copy whose listeners answer through ``walker``'s server for that pod."""
    import dataclasses
    keys = [k for k in ((IPPROTO_UDP, 53), (IPPROTO_TCP, 53))
            if k in socks.listeners and socks.listeners[k].handler is not None]
    if not keys:
        return socks
    pod = walker.cluster.pod(*key.split("/", 1)) if "/" in key else None
    handler = _PodDNSHandler(walker, pod.ip if pod is not None else None)
    copy = Sockets()
    copy.listeners = dict(socks.listeners)
    for k in keys:
        copy.listeners[k] = dataclasses.replace(socks.listeners[k], handler=handler)
    return copy


class _PodDNSHandler:
    """A CoreDNS pod's DNS server, looked up in its walker when first asked."""

    __slots__ = ("walker", "ip")

    def __init__(self, walker: "Walker", ip: Optional[str]) -> None:
        self.walker, self.ip = walker, ip

    def __call__(self, payload: bytes, protocol: str = "udp") -> Optional[bytes]:
        handler = self.walker.dns_handler(self.ip)
        return handler(payload, protocol) if handler is not None else None
