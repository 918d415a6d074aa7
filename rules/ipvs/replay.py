"""Replay client connections through one node's IPVS data path, with the kernel's clock.

Two kinds of client, because the schedulers that read connection counters (lc, wlc, sed, nq, lblc,
lblcr) choose differently for them:

* open (default): each connection completes its handshake (SYN, SYN-ACK, ACK) and stays open —
  ESTABLISHED, an *active* connection of its real server until its 15-minute timeout: long-lived
  clients, or a burst of concurrent requests;
* ``close=True``: each connection also closes (client FIN, server FIN, last ACK) before the next one
  starts, as a short-lived client (curl, a health check) does. It ends in TIME_WAIT, counted as
  *inactive* by its real server for the 2-minute TIME_WAIT timeout (ip_vs_proto_tcp.c tcp_timeouts,
  tcp_state_active_table).

UDP has no handshake or close: every datagram flow is one inactive connection for 5 minutes.

Connection number i starts at ``i * interval`` seconds; before each one the connection timers that
are due run (ip_vs_conn_expire), so counters drop as the kernel's do, and the destination trash
forgets real servers idle for its period (ip_vs_dest_trash_expire).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from netsim.skb.packet import Packet, int2ip
from netsim.rules.ipvs.datapath import IpvsDecision, IpvsNode

# (direction, TCP flags) after the SYN: the handshake, then the close
HANDSHAKE = (("out", "SA"), ("in", "A"))
CLOSE = (("in", "FA"), ("out", "FA"), ("in", "A"))


@dataclass
class ReplayedConnection:
    sport: int
    start: float
    decision: IpvsDecision


def _follow(node: IpvsNode, dec: IpvsDecision, sip: str, sport: int, dip: str, dport: int,
            steps: tuple[tuple[str, str], ...], now: float) -> None:
    cp = dec.conn
    if cp is None:
        return
    rip, rport = int2ip(cp.daddr), cp.dport
    for direction, flags in steps:
        if direction == "in":
            node.local_in(Packet.tcp(sip, dip, sport, dport, flags=flags), now)
        else:
            node.reply(Packet.tcp(rip, sip, rport, sport, flags=flags), now)


def replay(node: IpvsNode, proto: str, sip: str, sport: int, dip: str, dport: int, count: int, *,
           close: bool = False, interval: float = 1.0) -> Iterator[ReplayedConnection]:
    """Yield each new connection's IPVS decision (None decisions mean: no virtual server)."""
    for i in range(count):
        now = i * interval
        node.advance(now)
        sp = (sport + i - 1) % 65535 + 1
        pkt = (Packet.tcp(sip, dip, sp, dport, flags="S") if proto == "tcp"
               else Packet.udp(sip, dip, sp, dport, b"x"))
        dec: Optional[IpvsDecision] = node.local_in(pkt, now)
        if dec is None:
            raise LookupError(f"no virtual server {proto.upper()} {dip}:{dport}")
        if proto == "tcp" and dec.action == "dnat":
            _follow(node, dec, sip, sp, dip, dport, HANDSHAKE + (CLOSE if close else ()), now)
        yield ReplayedConnection(sp, now, dec)
