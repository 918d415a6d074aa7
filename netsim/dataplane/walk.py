"""The walk driver: one connection from a client, walked there and back, and how it ended.

``connect`` builds the first packet as the client's socket would (source address from the route's
prefsrc, an ephemeral port, the TCP ISN and IP ID), walks it hop by hop (``_walk``: the host it
leaves, then every host that receives it, until a socket takes it or it is dropped), then walks the
replies it provoked until the client's socket gets one, and sums the walk up as a trace outcome.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional

from netsim.dataplane.end import End, WalkError
from netsim.dataplane.servers import EPHEMERAL_PORTS, socket_ip_id
from netsim.dataplane.topology import Host
from netsim.dataplane.trace import Flow, Hop, Outcome, PacketSnapshot, PacketTrace, Reply, Step, Trace
from netsim.skb.packet import PROTO_NUMBERS, Packet, int2ip, ip2int


class WalkDriver:
    """Connections and packet walks: the request, the replies it provokes, the outcome.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (rng, sync, _clients, _current, stats) and call each other through
    ``self``, which keeps the per-packet path free of extra indirection."""

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
            self.hooks(client.name)         # a mode's local addresses (IPVS: kube-ipvs0) before the lookup
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
                                  _matches(req, r), PacketSnapshot(r.buf))
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

    def _client_label(self, h: Host) -> str:
        kind = h.kind
        return f"pod/{h.name}" if kind == "pod" else f"node/{h.name}" if kind == "node" else h.name

    def _outcome(self, end: End) -> Outcome:
        d = end.disposition
        host = end.host.name if end.host else None
        o = Outcome(d if d not in ("CLIENT", "KERNEL") else "DELIVERED", str(end.detail), host=host,
                    client_error=end.client_error)
        if d in ("DELIVERED", "NO_LISTENER", "KERNEL", "CLIENT") and end.pkt is not None:
            o.ip, o.port = end.pkt.dst_ip, end.pkt.dport
            o.seen_source = f"{end.pkt.src_ip}:{end.pkt.sport}"
            o.pod = end.owner or (end.host.name if end.host and end.host.kind == "pod" else None)
        return o

    def _walk(self, origin: Host, pkt: Packet, direction: str, capture: bool) -> tuple[End, PacketTrace]:
        snap = PacketSnapshot(pkt.buf)
        pt = PacketTrace(direction, snap)
        if capture:
            pt.pcap = []
        hop = Hop(1, origin.name, origin.kind)
        pt.hops.append(hop)
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


def _matches(req: tuple, r: Packet) -> bool:
    """Does the reply come from where the request went (i.e. was every NAT undone)?"""
    proto, s, sp, d, dp = req
    if r.is_icmp_error:
        inner = r.inner
        return inner is not None and inner.tuple() == req
    return r.src == d and r.sport == dp and r.dst == s and r.dport == sp


