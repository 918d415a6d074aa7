"""The IPVS connection table (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_proto_{tcp,udp}.c).

A connection records client → virtual → destination; the first packet of a flow creates it
(after scheduling), later packets in either direction find it. TCP connections follow the
kernel's state table; the state decides the timeout and whether the destination counts the
connection as active or inactive (which lc/wlc/sed/nq read). Persistence templates
(ClientIP affinity) are connections too, flagged as templates, with client port 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from netsim.skb.packet import int2ip
from netsim.rules.ipvs.table import PROTO_NAME, RealServer, VirtualServer

# TCP states (ip_vs_proto_tcp.c, enum in include/net/ip_vs.h)
NONE, ES, SS, SR, FW, TW, CL, CW, LA, LI, SA = range(11)
TIME_WAIT_STATE = TW
CLOSE_STATE = CL
TCP_STATE_NAMES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
                   "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")
# tcp_timeouts[] in seconds
TCP_TIMEOUTS = (2, 15 * 60, 2 * 60, 60, 2 * 60, 2 * 60, 10, 60, 30, 2 * 60, 120)
# tcp_state_active_table[]: which states count in activeconns
TCP_STATE_ACTIVE = (False, True, True, True, False, False, False, False, False, False, True)
UDP_TIMEOUT = 5 * 60            # udp_timeouts[IP_VS_UDP_S_NORMAL]
SCTP_TIMEOUT = 15 * 60          # simplified: SCTP treated as one ESTABLISHED-like state
NEW_CONN_TIMEOUT = 3            # ip_vs_conn_new(): cp->timeout = 3*HZ until the first transition

# tcp_states[] (the non-secure table): rows syn, fin, ack, rst; columns = current state
_ROW = {"syn": 0, "fin": 1, "ack": 2, "rst": 3}
_INPUT = (
    (SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR),
    (CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW),
    (ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES),
    (CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR),
)
_OUTPUT = (
    (SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR),
    (TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW),
    (ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES),
    (CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL),
)

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


def tcp_state_idx(flags: int) -> Optional[str]:
    """tcp_state_idx(): rst beats syn beats fin beats ack."""
    if flags & TCP_RST:
        return "rst"
    if flags & TCP_SYN:
        return "syn"
    if flags & TCP_FIN:
        return "fin"
    if flags & TCP_ACK:
        return "ack"
    return None


@dataclass(eq=False)
class IpvsConn:
    """struct ip_vs_conn."""
    proto: int
    caddr: int
    cport: int
    vaddr: int
    vport: int
    daddr: int
    dport: int
    dest: Optional[RealServer]
    vs: Optional[VirtualServer]
    state: int = NONE
    expires: float = 0.0
    template: bool = False
    inactive: bool = True            # IP_VS_CONN_F_INACTIVE: new conns are bound inactive
    control: Optional["IpvsConn"] = None     # the template controlling this connection
    n_control: int = 0               # connections controlled by this template
    timeout: float = NEW_CONN_TIMEOUT

    @property
    def protocol(self) -> str:
        return PROTO_NAME.get(self.proto, str(self.proto))

    @property
    def state_name(self) -> str:
        if self.template:
            return "NONE"
        if self.proto == 6:
            return TCP_STATE_NAMES[self.state]
        if self.proto == 17:
            return "UDP"
        return "ESTABLISHED"

    def describe(self) -> str:
        return (f"{self.protocol} {int2ip(self.caddr)}:{self.cport} -> {int2ip(self.vaddr)}:{self.vport}"
                f" -> {int2ip(self.daddr)}:{self.dport} {self.state_name}")


@dataclass
class ConnTable:
    """Connections hashed both ways: by the client tuple (in) and by the real-server tuple (out)."""
    by_in: dict[tuple, IpvsConn] = field(default_factory=dict)
    by_out: dict[tuple, IpvsConn] = field(default_factory=dict)
    templates: dict[tuple, IpvsConn] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_in) + len(self.templates)

    # -- lookups --------------------------------------------------------------------------------
    def in_get(self, proto: int, saddr: int, sport: int, daddr: int, dport: int,
               now: float) -> Optional[IpvsConn]:
        cp = self.by_in.get((proto, saddr, sport, daddr, dport))
        if cp is not None and self._expired(cp, now):
            return None
        return cp

    def out_get(self, proto: int, saddr: int, sport: int, daddr: int, dport: int,
                now: float) -> Optional[IpvsConn]:
        cp = self.by_out.get((proto, saddr, sport, daddr, dport))
        if cp is not None and self._expired(cp, now):
            return None
        return cp

    def template_get(self, proto: int, caddr: int, vaddr: int, vport: int,
                     now: float) -> Optional[IpvsConn]:
        ct = self.templates.get((proto, caddr, vaddr, vport))
        if ct is not None and self._expired(ct, now):
            return None
        return ct

    # -- life cycle -----------------------------------------------------------------------------
    def new(self, vs: VirtualServer, dest: RealServer, caddr: int, cport: int, vaddr: int,
            vport: int, now: float, template: bool = False) -> IpvsConn:
        """ip_vs_conn_new + ip_vs_bind_dest: counted inactive (or persistent for a template)."""
        proto = vs.key[0]
        cp = IpvsConn(proto, caddr, cport, vaddr, vport, dest.ip, dest.port, dest, vs,
                      template=template, expires=now + NEW_CONN_TIMEOUT)
        if template:
            cp.timeout = vs.timeout
            cp.expires = now + vs.timeout
            dest.persistconns += 1
            self.templates[(proto, caddr, vaddr, vport)] = cp
        else:
            dest.inactconns += 1
            self.by_in[(proto, caddr, cport, vaddr, vport)] = cp
            self.by_out[(proto, dest.ip, dest.port, caddr, cport)] = cp
        return cp

    def _unbind(self, cp: IpvsConn) -> None:
        d = cp.dest
        if d is not None:
            if cp.template:
                d.persistconns -= 1
            elif cp.inactive:
                d.inactconns -= 1
            else:
                d.activeconns -= 1
            cp.dest = None
        if cp.control is not None:
            cp.control.n_control -= 1
            cp.control = None

    def expire(self, cp: IpvsConn) -> None:
        """Remove a connection now (timer expiry, or expire_nodest_conn)."""
        if cp.template:
            key = (cp.proto, cp.caddr, cp.vaddr, cp.vport)
            if self.templates.get(key) is cp:
                del self.templates[key]
        else:
            k_in = (cp.proto, cp.caddr, cp.cport, cp.vaddr, cp.vport)
            if self.by_in.get(k_in) is cp:
                del self.by_in[k_in]
            k_out = (cp.proto, cp.daddr, cp.dport, cp.caddr, cp.cport)
            if self.by_out.get(k_out) is cp:
                del self.by_out[k_out]
        self._unbind(cp)

    def _expired(self, cp: IpvsConn, now: float) -> bool:
        if now < cp.expires:
            return False
        if cp.template and cp.n_control > 0:
            # ip_vs_conn_expire: a template that still controls connections is re-armed
            cp.expires = now + cp.timeout
            return False
        self.expire(cp)
        return True

    def expire_all(self, now: float) -> int:
        """Run every due timer (connections first, so templates lose their controlled ones)."""
        n = 0
        for cp in list(self.by_in.values()):
            if self._expired(cp, now):
                n += 1
        for ct in list(self.templates.values()):
            if self._expired(ct, now):
                n += 1
        return n

    def all(self) -> list[IpvsConn]:
        return list(self.by_in.values()) + list(self.templates.values())

    # -- state machine --------------------------------------------------------------------------
    def transition(self, cp: IpvsConn, direction: str, tcp_flags: int, now: float) -> None:
        """set_tcp_state / udp_state_transition: new state, timeout, active/inactive accounting."""
        if cp.proto == 6:
            idx = tcp_state_idx(tcp_flags)
            table = _INPUT if direction == "in" else _OUTPUT
            new = table[_ROW[idx]][cp.state] if idx is not None else CL
            if new != cp.state and cp.dest is not None:
                d = cp.dest
                if not cp.inactive and not TCP_STATE_ACTIVE[new]:
                    d.activeconns -= 1
                    d.inactconns += 1
                    cp.inactive = True
                elif cp.inactive and TCP_STATE_ACTIVE[new]:
                    d.activeconns += 1
                    d.inactconns -= 1
                    cp.inactive = False
            cp.state = new
            cp.timeout = TCP_TIMEOUTS[new]
        elif cp.proto == 17:
            cp.timeout = UDP_TIMEOUT
        else:
            cp.timeout = SCTP_TIMEOUT
        cp.expires = now + cp.timeout
