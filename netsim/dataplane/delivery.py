"""Local delivery: a packet for one of this host's addresses meets a socket.

A client socket waiting for the reply (``client_socket``), a pod's listener (netsim.dataplane.servers:
TCP handshake, HTTP answer, UDP echo, the CoreDNS pods' DNS servers), or the kernel itself (RST,
ICMP port unreachable, echo reply).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

from netsim.dataplane.end import End
from netsim.dataplane.servers import Sockets
from netsim.dataplane.topology import Host
from netsim.dataplane.trace import Addr, Hop, PacketSnapshot, Step
from netsim.skb.packet import IPPROTO_TCP, IPPROTO_UDP, Packet

if TYPE_CHECKING:
    from netsim.dataplane.walker import Walker


class LocalDelivery:
    """Sockets: waiting clients, listeners, the kernel's own answers, CoreDNS servers.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (sockets, _clients, _coredns, _coredns_pods, rng) and call each other
    through ``self``, which keeps the per-packet path free of extra indirection."""

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

    def _deliver(self, host: Host, iif: str, pkt: Packet, hop: Hop) -> End:
        sockets = self.sockets
        socks = dict.get(sockets, host.name)    # a host's sockets already wired (else LazyMap.get wires them)
        if socks is None:
            socks = sockets.get(host.name)
        # a client socket waiting for this reply?
        waiting = self._clients.get(host.name)
        if waiting and (((pkt._proto, pkt._dport) in waiting) if not pkt.is_icmp_error
                        else self._is_client_reply(host, pkt)):
            hop.add("DELIVERED", "to the client socket %s:%s: %s", None, (Addr(pkt.dst), pkt.dport, PacketSnapshot(pkt.buf)))
            return End("CLIENT", host, pkt=pkt)
        if socks is None:
            socks = Sockets()
        d = socks.deliver(pkt, self.rng)
        replies = d.replies
        gen = [(host, r) for r in replies] if replies else []
        if d.kind == "listener":
            hop.steps.append(Step("DELIVERED", "%s%s", None, (d.detail, _Answers(replies) if replies else _NO_ANSWERS)))
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


class _Answers:
    __slots__ = ("data",)

    def __init__(self, replies: list[Packet]) -> None:
        self.data = bytes(replies[0].buf) if replies else None

    def __str__(self) -> str:
        return "" if self.data is None else f"; answers {PacketSnapshot(self.data)}"



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


_NO_ANSWERS = _Answers([])      # a delivery that provoked nothing (shared, read-only)
