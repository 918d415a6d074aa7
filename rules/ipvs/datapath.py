"""The IPVS data path of one node: what ip_vs_in_hook / ip_vs_out_hook do to a packet.

The walker calls an :class:`IpvsNode` at the netfilter hooks where the kernel registers IPVS
(ip_vs_core.c, ``ip_vs_ops4``):

- ``local_in(pkt, now)``  – NF_INET_LOCAL_IN, priority 99: requests from remote clients/pods
  whose destination is local (a kube-ipvs0 VIP or a node address);
- ``local_out(pkt, now)`` – NF_INET_LOCAL_OUT, priority -98: requests from the node's own processes;
- ``reply(pkt, now)``     – ip_vs_out_hook (FORWARD priority 100, LOCAL_IN 98, LOCAL_OUT -99):
  replies from a real server, rewritten back to the virtual address.

Each returns an :class:`IpvsDecision` (what matched, what was decided, the address rewrite) or
None when IPVS does not touch the packet (no virtual server / no connection: NF_ACCEPT).
On ``action == "dnat"`` / ``"un-dnat"`` the packet has already been rewritten in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.skb.packet import Packet, checksum, int2ip
from netsim.rules.ipvs.conn import CLOSE_STATE, ConnTable, IpvsConn, TIME_WAIT_STATE
from netsim.rules.ipvs.table import IpvsTable, RealServer, VirtualServer

_SCHEDULABLE = (6, 17, 132)


def _uses_old_conntrack(pkt: Any) -> bool:
    """ip_vs_conn_uses_old_conntrack(): the packet's conntrack entry is already confirmed."""
    ct = getattr(pkt, "ct", None)
    return bool(ct is not None and getattr(ct, "confirmed", False))
TCP_SYN, TCP_RST = 0x02, 0x04


@dataclass
class IpvsSysctls:
    """net.ipv4.vs.* as kube-proxy leaves them (proxier.go NewProxier; ipvs-sysctl.rst)."""
    conntrack: int = 1
    expire_nodest_conn: int = 1
    expire_quiescent_template: int = 1
    conn_reuse_mode: int = 1          # kernel default, left as-is on kernels >= 5.9


@dataclass
class IpvsDecision:
    """One IPVS step, for the trace."""
    hook: str                          # LOCAL_IN | LOCAL_OUT | OUT (reply)
    action: str                        # dnat | un-dnat | reject | drop | accept
    reason: str
    vs: Optional[VirtualServer] = None
    dest: Optional[RealServer] = None
    conn: Optional[IpvsConn] = None
    new_conn: bool = False
    scheduler: str = ""
    template: Optional[IpvsConn] = None   # persistence template used or created
    before: tuple[str, int] = ("", 0)     # address:port rewritten (dst for dnat, src for un-dnat)
    after: tuple[str, int] = ("", 0)
    icmp: Optional[Packet] = None          # the ICMP port unreachable to send for "reject"

    def __str__(self) -> str:
        return f"IPVS {self.hook}: {self.action} – {self.reason}"


@dataclass
class IpvsNode:
    """The IPVS state of one node: its virtual-server table and its connection table."""
    table: IpvsTable
    conns: ConnTable = field(default_factory=ConnTable)
    sysctls: IpvsSysctls = field(default_factory=IpvsSysctls)
    local_addresses: frozenset[int] = frozenset()   # node addresses (a real server here is "local")

    def advance(self, now: float) -> int:
        """The kernel's timers up to `now`: due connections expire (ip_vs_conn_expire), then the
        destination trash is swept (ip_vs_dest_trash_expire). Returns how many connections went."""
        n = self.conns.expire_all(now)
        self.table.expire_trash(now)
        return n

    # ------------------------------------------------------------------ request direction
    def local_in(self, pkt: Any, now: float) -> Optional[IpvsDecision]:
        return self._in(pkt, now, "LOCAL_IN")

    def local_out(self, pkt: Any, now: float) -> Optional[IpvsDecision]:
        return self._in(pkt, now, "LOCAL_OUT")

    def _in(self, pkt: Any, now: float, hook: str) -> Optional[IpvsDecision]:
        proto = pkt.proto
        if proto not in _SCHEDULABLE:
            return None
        saddr, sport, daddr, dport = pkt.src, pkt.sport, pkt.dst, pkt.dport
        flags = pkt.tcp_flags if proto == 6 else 0
        cp = self.conns.in_get(proto, saddr, sport, daddr, dport, now)

        if cp is not None and proto == 6 and flags & TCP_SYN and cp.control is None:
            # ip_vs_in_hook (is_new_conn: a SYN; not for connections controlled by a template): a
            # new SYN on an old connection is rescheduled when its real server is quiesced
            # (expire_nodest_conn, weight 0) or, with conn_reuse_mode, when the old connection is
            # in TIME_WAIT or CLOSE (is_new_conn_expected). If the packet's conntrack entry is
            # already confirmed (ip_vs_conn_uses_old_conntrack) the SYN is dropped instead; the
            # client's retransmission then finds no connection and is scheduled.
            d = cp.dest
            resched = old_ct = False
            if self.sysctls.expire_nodest_conn and d is not None and d.weight == 0:
                resched, old_ct = True, _uses_old_conntrack(pkt)
            elif self.sysctls.conn_reuse_mode and cp.state in (TIME_WAIT_STATE, CLOSE_STATE):
                old_ct = _uses_old_conntrack(pkt)
                resched = cp.n_control == 0 or not old_ct
            if resched:
                gone = cp.describe()
                if cp.n_control == 0:
                    self.conns.expire(cp)
                if old_ct:
                    return IpvsDecision(hook, "drop", vs=cp.vs, conn=cp,
                                        reason=f"new SYN on connection {gone}: rescheduling needs a new "
                                               "conntrack entry; dropped (old conntrack entry)")
                cp = None

        if cp is not None:
            d = cp.dest
            if d is None or not d.available:
                # ip_vs_in_hook "Check the server status" (kernel >= 5.9, "ipvs: allow connection
                # reuse for unconfirmed conntrack"): with expire_nodest_conn the connection is
                # expired now; the packet is dropped only when it belongs to an old (confirmed)
                # conntrack entry, otherwise it is scheduled afresh below.
                gone = cp.describe()
                if not self.sysctls.expire_nodest_conn or _uses_old_conntrack(pkt):
                    if self.sysctls.expire_nodest_conn:
                        self.conns.expire(cp)
                    return IpvsDecision(hook, "drop", vs=cp.vs, conn=cp,
                                        reason=f"connection {gone} points at a removed real server; "
                                               "dropped (expire_nodest_conn, old conntrack entry)")
                self.conns.expire(cp)
                cp = None

        if cp is not None:
            self.conns.transition(cp, "in", flags, now)
            self._count_in(cp, pkt)
            return self._dnat(pkt, hook, cp, new=False,
                              reason=f"existing connection {cp.describe()}")

        vs = self.table.lookup(proto, daddr, dport)
        if vs is None:
            return None
        if proto == 6 and not (flags & TCP_SYN) or proto == 6 and flags & TCP_RST:
            # tcp_conn_schedule(): only a SYN may create a connection
            return IpvsDecision(hook, "accept", vs=vs, scheduler=vs.scheduler,
                                reason=f"{vs}: no connection for this non-SYN packet; it continues "
                                       "to the local stack")
        tmpl = None
        if vs.persistent:
            dest, tmpl, note = self._sched_persist(vs, saddr, sport, daddr, dport, now)
        else:
            dest = vs.sched.schedule(vs, saddr, sport, daddr, dport)
            note = f"{vs.scheduler} scheduled"
        if dest is None:
            # ip_vs_leave(): no destination -> ICMP port unreachable, packet dropped
            icmp = Packet.icmp_error(int2ip(daddr), pkt) if isinstance(pkt, Packet) else None
            return IpvsDecision(hook, "reject", vs=vs, scheduler=vs.scheduler, icmp=icmp,
                                reason=f"{vs}: {vs.scheduler}: no destination available "
                                       "(ICMP port unreachable)")
        cp = self.conns.new(vs, dest, saddr, sport, daddr, dport, now)
        if tmpl is not None:
            cp.control = tmpl
            tmpl.n_control += 1
        vs.stats.conns += 1
        dest.stats.conns += 1
        self.conns.transition(cp, "in", flags, now)
        self._count_in(cp, pkt)
        dec = self._dnat(pkt, hook, cp, new=True, reason=f"{vs}: {note} {dest.addr}")
        dec.template = tmpl
        return dec

    def _sched_persist(self, vs: VirtualServer, saddr: int, sport: int, daddr: int, dport: int,
                       now: float) -> tuple[Optional[RealServer], Optional[IpvsConn], str]:
        """ip_vs_sched_persist: reuse the client's template if still valid, else schedule one."""
        snet = saddr & vs.netmask
        ct = self.conns.template_get(vs.key[0], snet, daddr, dport, now)
        if ct is not None:
            d = ct.dest
            # ip_vs_check_template(): the dest must still be there and, with
            # expire_quiescent_template, not quiesced (weight 0)
            if d is not None and d.available and not (self.sysctls.expire_quiescent_template
                                                         and d.weight == 0):
                ct.expires = now + ct.timeout
                return d, ct, f"persistence template (ClientIP affinity, timeout {vs.timeout}s) ->"
            self.conns.expire(ct)
        dest = vs.sched.schedule(vs, saddr, sport, daddr, dport)
        if dest is None:
            return None, None, ""
        ct = self.conns.new(vs, dest, snet, 0, daddr, dport, now, template=True)
        return dest, ct, f"{vs.scheduler} scheduled (new persistence template, timeout {vs.timeout}s)"

    def _count_in(self, cp: IpvsConn, pkt: Any) -> None:
        n = len(pkt)
        for st in (cp.vs.stats if cp.vs else None, cp.dest.stats if cp.dest else None):
            if st is not None:
                st.inpkts += 1
                st.inbytes += n

    @staticmethod
    def _dnat(pkt: Any, hook: str, cp: IpvsConn, new: bool, reason: str) -> IpvsDecision:
        before = (int2ip(pkt.dst), pkt.dport)
        pkt.dst = cp.daddr
        if pkt.dport != cp.dport:
            pkt.dport = cp.dport
        return IpvsDecision(hook, "dnat", reason=reason, vs=cp.vs, dest=cp.dest, conn=cp, new_conn=new,
                            scheduler=cp.vs.scheduler if cp.vs else "", before=before,
                            after=(int2ip(cp.daddr), cp.dport))

    # ------------------------------------------------------------------ reply direction
    def reply(self, pkt: Any, now: float, hook: str = "OUT") -> Optional[IpvsDecision]:
        """ip_vs_out_hook: a packet from a real server of a known connection gets the VIP back;
        an ICMP error about such a connection is translated too (ip_vs_out_icmp)."""
        proto = pkt.proto
        if proto == 1:
            return self._reply_icmp(pkt, now, hook)
        if proto not in _SCHEDULABLE:
            return None
        cp = self.conns.out_get(proto, pkt.src, pkt.sport, pkt.dst, pkt.dport, now)
        if cp is None:
            return None
        self.conns.transition(cp, "out", pkt.tcp_flags if proto == 6 else 0, now)
        n = len(pkt)
        for st in (cp.vs.stats if cp.vs else None, cp.dest.stats if cp.dest else None):
            if st is not None:
                st.outpkts += 1
                st.outbytes += n
        before = (int2ip(pkt.src), pkt.sport)
        pkt.src = cp.vaddr
        if pkt.sport != cp.vport:
            pkt.sport = cp.vport
        return IpvsDecision(hook, "un-dnat", reason=f"reply of {cp.describe()}", vs=cp.vs, dest=cp.dest,
                            conn=cp, before=before, after=(int2ip(cp.vaddr), cp.vport))

    def _reply_icmp(self, pkt: Any, now: float, hook: str) -> Optional[IpvsDecision]:
        """ip_vs_out_icmp + ip_vs_nat_icmp(inout=1): an ICMP error quoting client -> real server
        (e.g. port unreachable from a pod without a listener) is rewritten so the client sees it
        come from the VIP about client -> VIP:vport: outer source := VIP, quoted destination and
        port := VIP:vport, quoted IP header checksum and the ICMP checksum recomputed (the quoted
        L4 checksum is left alone, as the kernel does)."""
        if not isinstance(pkt, Packet) or not pkt.is_icmp_error:
            return None
        inner = pkt.inner
        if inner is None or inner.proto not in _SCHEDULABLE:
            return None
        # the quoted packet travelled client -> real server: look it up the other way round
        cp = self.conns.out_get(inner.proto, inner.dst, inner.dport, inner.src, inner.sport, now)
        if cp is None:
            return None
        buf = pkt.buf
        off = (buf[0] & 0x0F) * 4 + 8                      # quoted IP header
        ihl = (buf[off] & 0x0F) * 4
        before = (int2ip(pkt.src), inner.dport)
        buf[off + 16:off + 20] = cp.vaddr.to_bytes(4, "big")
        buf[off + 10:off + 12] = b"\x00\x00"
        buf[off + 10:off + 12] = checksum(buf[off:off + ihl]).to_bytes(2, "big")
        buf[off + ihl + 2:off + ihl + 4] = cp.vport.to_bytes(2, "big")
        pkt.src = cp.vaddr
        pkt.refresh_checksums()
        return IpvsDecision(hook, "un-dnat", reason=f"ICMP error about {cp.describe()}", vs=cp.vs, dest=cp.dest,
                            conn=cp, before=before, after=(int2ip(cp.vaddr), cp.vport))

    def expire_nodest_conns(self) -> int:
        """ip_vs_expire_nodest_conn_flush (kernel >= 5.9, queued 1 jiffy after a destination is
        deleted when expire_nodest_conn=1): drop every connection whose real server is no longer
        available and that controls no other connection, and a template left controlling none.
        Returns how many entries went."""
        if not self.sysctls.expire_nodest_conn:
            return 0
        n = 0
        for cp in self.conns.all():
            d = cp.dest
            if d is None or d.available or cp.n_control:
                continue
            ctl = cp.control
            self.conns.expire(cp)
            n += 1
            if ctl is not None and ctl.n_control == 0 and ctl.dest is not None:
                self.conns.expire(ctl)
                n += 1
        return n
