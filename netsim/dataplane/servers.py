"""The sockets of the emulated hosts: servers listening on containerPorts, and client connections.

A pod listens on the ports its processes open (netsim.control.listen: containerPorts, the image's
default ports, or the netsim.io/listen annotation):

* TCP: SYN → SYN-ACK; data → ACK + an HTTP/1.1 response naming the pod and the peer it saw;
  FIN → FIN-ACK. A port nobody listens on answers RST-ACK (tcp_v4_send_reset).
* UDP: echoes ``pod <ns/name> got: <payload>`` back. A closed port answers ICMP port unreachable.
* ICMP echo requests are answered by every host (the kernel does it, no socket needed).

hostNetwork pods listen on their node's addresses.
"""
from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

from netsim.control import listen
from netsim.skb.packet import (ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
                               Packet, int2ip)

_SYN, _RST, _ACK, _FIN = 0x02, 0x04, 0x10, 0x01

EPHEMERAL_PORTS = (32768, 60999)        # net.ipv4.ip_local_port_range default (Documentation/networking/ip-sysctl.rst)


@dataclass
class Delivery:
    """What the receiving host's stack did with a packet."""
    kind: str                      # listener | client | kernel | closed
    owner: Optional[str] = None    # "ns/name" of the pod whose socket got it
    replies: list[Packet] = field(default_factory=list)
    detail: "str | AcceptedDetail" = ""     # str() gives the text


@dataclass
class Listener:
    proto: int
    port: int
    owner: str                     # pod key
    handler: Optional[Callable[[bytes], Optional[bytes]]] = None   # UDP: payload -> answer or None (e.g. CoreDNS)
    _described: Optional[str] = field(default=None, init=False, repr=False, compare=False)

    def describe(self) -> str:
        d = self._described
        if d is None:
            d = self._described = f"{'tcp' if self.proto == IPPROTO_TCP else 'udp'}:{self.port} ({self.owner})"
        return d


class AcceptedDetail(tuple):
    """What a TCP delivery says, ``socket tcp:PORT (ns/pod) accepted from IP:PORT``, made when read
    (str): a tuple of the listener and the peer's address and port, built per packet without a
    Python call (an established connection's every packet is delivered)."""

    __slots__ = ()

    def __str__(self) -> str:
        lst, src, sport = self
        return f"socket {lst.describe()} accepted from {int2ip(src)}:{sport}"

    def __repr__(self) -> str:
        return repr(str(self))

    def __reduce__(self) -> tuple:
        return (str, (str(self),))        # pickled as its text (not the listener and its handler)


def http_response(owner: str, peer: str) -> bytes:
    body = f"pod {owner} answered; peer {peer}\n".encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\nX-Served-By: {owner}\r\n\r\n".encode() + body)


class Sockets:
    """Listening and connected sockets of one host."""

    def __init__(self, closed_hint: Optional[Callable[[str, int], str]] = None) -> None:
        self.listeners: dict[tuple[int, int], Listener] = {}
        self.clients: dict[tuple[int, int, int], object] = {}   # (proto, local port, local ip) -> waiter
        self.closed_hint = closed_hint     # (proto, port) -> what the host does listen on, for the refusal

    def listen(self, proto: int, port: int, owner: str,
               handler: Optional[Callable[[bytes], bytes]] = None) -> None:
        self.listeners[(proto, port)] = Listener(proto, port, owner, handler)

    def deliver(self, pkt: Packet, rng: random.Random) -> Delivery:
        """Hand a packet addressed to this host to its stack; returns the replies it provokes."""
        p = pkt._proto
        if p == IPPROTO_ICMP:
            if pkt.icmp_type == ICMP_ECHO_REQUEST:
                r = Packet.icmp(pkt.dst_ip, pkt.src_ip, type=ICMP_ECHO_REPLY, id=pkt.sport,
                                seq=_u16(pkt.buf, (pkt.buf[0] & 15) * 4 + 6), payload=pkt.payload)
                return Delivery("kernel", replies=[r], detail="ICMP echo answered by the kernel")
            return Delivery("kernel", detail="ICMP message consumed by the kernel")
        lst = self.listeners.get((p, pkt._dport))
        if lst is None:
            return Delivery("closed", replies=[_refuse(pkt)],
                            detail=f"nothing listens on {pkt.proto_name}/{pkt.dport}"
                            + (self.closed_hint(pkt.proto_name, pkt.dport) if self.closed_hint else ""))
        if p == IPPROTO_TCP:
            return Delivery("listener", lst.owner, _tcp_answer(pkt, lst.owner, rng),
                            detail=AcceptedDetail((lst, pkt._src, pkt._sport)))
        peer = f"{pkt.src_ip}:{pkt._sport}"
        if p == IPPROTO_UDP:
            if lst.handler is not None:
                answer = lst.handler(pkt.payload)
                if answer is None:
                    return Delivery("listener", lst.owner,
                                    detail=f"socket {lst.describe()} read from {peer}; no answer (not a valid query)")
                r = _udp_reply(pkt, answer)
                return Delivery("listener", lst.owner, [r], detail=f"socket {lst.describe()} answered {peer}")
            r = _udp_reply(pkt, f"pod {lst.owner} got: ".encode() + pkt.payload)
            return Delivery("listener", lst.owner, [r], detail=f"socket {lst.describe()} read from {peer}")
        return Delivery("listener", lst.owner, detail=f"socket {lst.describe()}")


def _u16(buf: bytearray, off: int) -> int:
    return buf[off] << 8 | buf[off + 1]


def socket_ip_id(seed: int) -> int:
    """The first IP ID of a connected socket: Linux draws inet_id with get_random_u16() when a socket
    connects (tcp_v4_connect, ip4_datagram_connect) or is accepted (tcp_v4_syn_recv_sock), then adds
    one per packet (include/net/ip.h ip_select_ident_segs). Taken here from bits of a value the
    connection already drew at random (its ISN), so the seeded RNG sequence is unchanged."""
    return (seed >> 16) & 0xFFFF


def unconnected_ip_id(src: int, dst: int, proto: int) -> int:
    """An unconnected socket's datagram without DF enforcement gets __ip_select_ident's hashed
    counter: pseudo-random per (addresses, protocol); a stand-in hash of those fields."""
    return zlib.crc32(struct.pack("!IIB", src, dst, proto)) & 0xFFFF


def _udp_reply(pkt: Packet, payload: bytes) -> Packet:
    """A server's answer from an unconnected UDP socket (sendto): DF set for a datagram under the path
    MTU (IP_PMTUDISC_WANT, __ip_make_skb), and ignore_df makes the IP ID __ip_select_ident's."""
    return Packet.udp(pkt.dst, pkt.src, pkt.dport, pkt.sport, payload=payload,
                      ident=unconnected_ip_id(pkt.dst, pkt.src, IPPROTO_UDP))


def _tcp_answer(pkt: Packet, owner: str, rng: random.Random) -> list[Packet]:
    buf = pkt.buf
    l4 = pkt._l4
    flags = buf[l4 + 13]                         # (a TCP segment: Packet.tcp_flags)
    src, dst, sp, dp = pkt._dst, pkt._src, pkt._dport, pkt._sport
    if flags & _RST:
        return []
    if flags & _SYN:
        # tcp_v4_send_synack -> ip_build_and_send_pkt: DF set and IP ID 0
        return [Packet.tcp(src, dst, sp, dp, flags="SA", seq=rng.getrandbits(32), ack=pkt.seq + 1, ident=0)]
    if not flags & _FIN and len(buf) <= l4 + (buf[l4 + 12] >> 4) * 4:
        return []                                # a bare ACK (no payload, no FIN): nothing to answer
    data = pkt.payload
    out = []
    ident = socket_ip_id(pkt.ack - 1)            # the accepted socket's inet_id (from its ISN)
    if data:
        body = http_response(owner, f"{pkt.src_ip}:{pkt._sport}") if data[:4] in (b"GET ", b"HEAD", b"POST", b"PUT ") \
            else data
        out.append(Packet.tcp(src, dst, sp, dp, flags="PA", seq=pkt.ack, ack=pkt.seq + len(data), payload=body,
                              ident=ident))
        ident += 1
    if flags & _FIN:
        out.append(Packet.tcp(src, dst, sp, dp, flags="FA", seq=pkt.ack, ack=pkt.seq + len(data) + 1, ident=ident))
    return out


def _refuse(pkt: Packet) -> Packet:
    """What Linux sends for a closed port: RST-ACK for TCP, ICMP port unreachable otherwise."""
    if pkt.proto == IPPROTO_TCP:
        # tcp_v4_send_reset answers from the per-netns control socket (pmtudisc DO, unconnected): DF, IP ID 0
        if pkt.tcp_flags & _ACK:
            return Packet.tcp(pkt.dst_ip, pkt.src_ip, pkt.dport, pkt.sport, flags="R", seq=pkt.ack, ident=0)
        seg = len(pkt.payload) + (1 if pkt.tcp_flags & (_SYN | _FIN) else 0)
        return Packet.tcp(pkt.dst_ip, pkt.src_ip, pkt.dport, pkt.sport, flags="RA", seq=0, ack=pkt.seq + seg,
                          ident=0)
    return Packet.icmp_error(pkt.dst_ip, pkt)


def refusal(pkt: Packet) -> Packet:
    return _refuse(pkt)


def pod_sockets(pod) -> Sockets:
    """The listening sockets of a pod's processes; a closed port's refusal names what it does listen on."""
    def closed_hint(proto: str, port: int) -> str:
        how = listen.hint(pod, port, proto)
        return f": {listen.describe(pod, with_pod=False)}" + (f"; {how}" if how else "")

    s = Sockets(closed_hint)
    for lp in listen.listen_ports(pod):
        if lp.loopback_only:
            continue             # 127.0.0.1:PORT: nothing from another host reaches it (no loopback traces)
        proto = {"TCP": IPPROTO_TCP, "UDP": IPPROTO_UDP, "SCTP": 132}.get(lp.protocol, IPPROTO_TCP)
        s.listen(proto, lp.port, pod.key)
    return s
