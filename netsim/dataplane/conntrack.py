"""Connection tracking as Linux's nf_conntrack does it, per network namespace.

Facts followed (conntrack(8), Documentation/networking/nf_conntrack-sysctl.rst and the kernel's
nf_conntrack_core.c, nf_conntrack_proto_{tcp,udp,icmp}.c, nf_nat_core.c, nf_nat_masquerade.c):

* An entry has an ORIGINAL tuple (the first packet's) and a REPLY tuple (the inverse of the
  post-NAT original). It is created unconfirmed at PREROUTING/OUTPUT (−200) and inserted
  ("confirmed") at POSTROUTING/INPUT.
* ctstate: NEW for original-direction packets until a reply was seen, ESTABLISHED after that and
  for every reply-direction packet, RELATED for ICMP errors about a tracked flow.
* NAT happens once per connection (the nat table sees only the first packet); later packets and
  replies are translated from the binding: destination at PREROUTING/OUTPUT, source at
  POSTROUTING/INPUT (``nf_nat_ipv4_fn`` with the manip type of the hook).
* MASQUERADE keeps the source port unless the resulting reply tuple is taken; ``--random-fully``
  always draws the port (1024–65535) — here from the caller's random.Random.
* Timeouts are the kernel defaults (nf_conntrack_proto_tcp.c tcp_timeouts[], udp 30/120 in
  nf_conntrack_proto_udp.c, icmp 30), measured on the cluster clock. An entry past its timeout is
  gone: a lookup no longer finds it, and it is freed as the kernel's gc_worker
  (nf_conntrack_core.c) frees it — here lazily, whenever the table is used after the clock passed
  the earliest expiry — so the table holds only live connections however many were made.
* The table holds at most ``max_entries`` (net.netfilter.nf_conntrack_max; kube-proxy sets it to
  max(--conntrack-min 131072, 32768 per core)). A new connection beyond it first evicts an entry
  that is not ASSURED or is a closing TCP connection (early_drop / tcp_can_early_drop); when there
  is none the packet is dropped ("nf_conntrack: table full, dropping packet").
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Iterable, Optional

from netsim.skb.packet import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Packet, PROTO_NAMES, int2ip

Tuple5 = tuple[int, int, int, int, int]        # (proto, src, sport, dst, dport)

# TCP flags
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10

# kube-proxy's nf_conntrack_max floor (cmd/kube-proxy/app/server_linux.go getConntrackMax,
# KubeProxyConntrackConfiguration.Min = 131072; MaxPerCore 32768 for the cores above 4)
CONNTRACK_MAX = 131072
# TCP states tcp_can_early_drop (nf_conntrack_proto_tcp.c) lets early_drop evict even when ASSURED
_EARLY_DROP_TCP = frozenset({"FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"})
TABLE_FULL = "TABLE_FULL"      # classify's state when no entry could be made: the packet is dropped
_EARLY_DROP_SCAN = 64          # early_drop looks at a few buckets only (NF_CT_EVICTION_RANGE 8)


@dataclass(frozen=True)
class ConntrackTimeouts:
    """Kernel defaults in seconds (net.netfilter.nf_conntrack_*_timeout_* in a fresh netns)."""
    tcp_syn_sent: float = 120
    tcp_syn_recv: float = 60
    tcp_established: float = 432000
    tcp_fin_wait: float = 120
    tcp_close_wait: float = 60
    tcp_last_ack: float = 30
    tcp_time_wait: float = 120
    tcp_close: float = 10
    udp: float = 30
    udp_stream: float = 120
    icmp: float = 30
    generic: float = 600

    @classmethod
    def kube_proxy(cls) -> "ConntrackTimeouts":
        """What kube-proxy sets on its nodes: TCP established 24 h, close_wait 1 h."""
        return cls(tcp_established=86400, tcp_close_wait=3600)

    def for_tcp_state(self, state: str) -> float:
        return getattr(self, _TCP_STATE_TIMEOUT[state])


_TCP_STATE_TIMEOUT = {
    "SYN_SENT": "tcp_syn_sent", "SYN_RECV": "tcp_syn_recv", "ESTABLISHED": "tcp_established",
    "FIN_WAIT": "tcp_fin_wait", "CLOSE_WAIT": "tcp_close_wait", "LAST_ACK": "tcp_last_ack",
    "TIME_WAIT": "tcp_time_wait", "CLOSE": "tcp_close",
}


def invert(t: Tuple5) -> Tuple5:
    return (t[0], t[3], t[4], t[1], t[2])


def format_tuple(t: Tuple5) -> str:
    if t[0] == IPPROTO_ICMP:
        return f"src={int2ip(t[1])} dst={int2ip(t[3])} id={t[2]}"
    return f"src={int2ip(t[1])} dst={int2ip(t[3])} sport={t[2]} dport={t[4]}"


@dataclass(eq=False, slots=True)          # made per connection and node: slotted
class ConntrackEntry:
    orig: Tuple5
    reply: Tuple5
    created: float
    expires: float
    tcp_state: Optional[str] = None
    seen_reply: bool = False
    assured: bool = False
    confirmed: bool = False
    dnat: bool = False
    snat: bool = False
    mark: int = 0
    nat_dev: Optional[str] = None          # MASQUERADE: the egress device the binding depends on
    packets: list[int] = field(default_factory=lambda: [0, 0])   # per direction
    gc_at: float = 0.0                     # when the table's expiry heap looks at it next

    @property
    def proto(self) -> int:
        return self.orig[0]

    def timeout_left(self, now: float) -> int:
        return max(0, int(self.expires - now))

    def line(self, now: float) -> str:
        """One line as ``conntrack -L`` prints it."""
        p = self.proto
        s = f"{PROTO_NAMES.get(p, 'unknown'):<8} {p} {self.timeout_left(now)} "
        if self.tcp_state:
            s += f"{self.tcp_state} "
        s += format_tuple(self.orig)
        if not self.seen_reply:
            s += " [UNREPLIED]"
        s += " " + format_tuple(self.reply)
        if self.assured:
            s += " [ASSURED]"
        s += f" mark={self.mark} use=1"
        return s

    def snapshot(self, now: float) -> "ConntrackSnapshot":
        return ConntrackSnapshot((self.orig, self.reply, self.tcp_state, self.seen_reply, self.assured,
                                  self.expires - now, self.mark))

    def to_dict(self, now: float) -> dict:
        def tup(t: Tuple5) -> dict:
            return {"proto": PROTO_NAMES.get(t[0], str(t[0])), "src": int2ip(t[1]), "sport": t[2],
                    "dst": int2ip(t[3]), "dport": t[4]}
        return {"original": tup(self.orig), "reply": tup(self.reply), "state": self.tcp_state,
                "timeout": self.timeout_left(now), "seen_reply": self.seen_reply, "assured": self.assured,
                "dnat": self.dnat, "snat": self.snat, "mark": self.mark}


class ConntrackSnapshot(tuple):
    """An entry's fields at one moment (orig, reply, TCP state, seen reply, assured, seconds left,
    mark); renders as its ``conntrack -L`` line on demand. A tuple: made without a Python call."""

    __slots__ = ()

    @property
    def f(self) -> tuple:
        return tuple(self)

    def __str__(self) -> str:
        orig, reply, state, seen, assured, left, mark = self
        e = ConntrackEntry(orig, reply, 0.0, left, state, seen, assured, mark=mark)
        return e.line(0.0)


class Conntrack:
    """The conntrack table of one network namespace."""

    def __init__(self, timeouts: Optional[ConntrackTimeouts] = None, max_entries: int = CONNTRACK_MAX) -> None:
        self.timeouts = timeouts or ConntrackTimeouts()
        # seconds per TCP state, looked up per packet (the timeouts are frozen)
        self._tcp_timeout = {st: getattr(self.timeouts, f) for st, f in _TCP_STATE_TIMEOUT.items()}
        self.max_entries = max_entries
        self._table: dict[Tuple5, tuple[ConntrackEntry, bool]] = {}   # tuple -> (entry, is_reply)
        self._count = 0                                                  # confirmed entries
        # (expiry when pushed, sequence, entry): the item whose time is the entry's gc_at is live;
        # an entry is re-pushed when its timeout was extended or shortened since, so popping in
        # order frees exactly the timed-out entries
        self._expiry: list[tuple[float, int, ConntrackEntry]] = []
        self._seq = 0
        self.insert_failed = 0                                           # conntrack -S insert_failed
        self.early_drop = 0                                              # conntrack -S early_drop
        self.drop = 0                                                    # conntrack -S drop (table full)

    # ------------------------------------------------------------------ lookup / create
    def lookup(self, t: Tuple5, now: float) -> Optional[tuple[ConntrackEntry, bool]]:
        hit = self._table.get(t)
        if hit is None:
            return None
        if hit[0].expires <= now:
            self.delete(hit[0])
            return None
        return hit

    def new(self, pkt: Packet, now: float) -> Optional[ConntrackEntry]:
        """An unconfirmed entry for pkt's flow (inserted by :meth:`confirm`); None when the table is
        full and early_drop found nothing to evict (__nf_conntrack_alloc: the packet is dropped)."""
        if self._count >= self.max_entries:
            self.gc(now)
            if self._count >= self.max_entries and not self._early_drop():
                self.drop += 1
                return None
        t = pkt.tuple()
        return ConntrackEntry(t, invert(t), now, now + self.timeouts.generic)

    def _early_drop(self) -> bool:
        """early_drop_list: evict one entry that is not ASSURED, or a TCP connection that is closing.
        The kernel looks in the buckets near the new tuple's hash; here the oldest entries are looked
        at (a bounded scan, as the kernel's)."""
        for n, (e, _is_reply) in enumerate(self._table.values()):
            if n >= _EARLY_DROP_SCAN:
                break
            if not e.assured or e.tcp_state in _EARLY_DROP_TCP:
                self.delete(e)
                self.early_drop += 1
                return True
        return False

    def confirm(self, e: ConntrackEntry, now: Optional[float] = None) -> bool:
        """Insert the entry. False when its original or reply tuple is already taken by another live
        entry: __nf_conntrack_confirm then drops the packet and counts insert_failed."""
        if e.confirmed:
            return True
        for t in (e.orig, e.reply):
            hit = self._table.get(t)
            if hit is not None and hit[0] is not e:
                if now is not None and hit[0].expires <= now:
                    self.delete(hit[0])
                    continue
                self.insert_failed += 1
                return False
        e.confirmed = True
        self._table[e.orig] = (e, False)
        self._table[e.reply] = (e, True)
        self._count += 1
        self._push(e)
        return True

    def _push(self, e: ConntrackEntry) -> None:
        self._seq += 1
        e.gc_at = e.expires
        heapq.heappush(self._expiry, (e.expires, self._seq, e))

    def delete(self, e: ConntrackEntry) -> None:
        for t in (e.orig, e.reply):
            hit = self._table.get(t)
            if hit is not None and hit[0] is e:
                del self._table[t]
        if e.confirmed:
            self._count -= 1
        e.confirmed = False
        if len(self._expiry) > 2 * self._count + 1024:
            # deleted entries (flushes, early drops) wait in the heap until their expiry: compact
            self._expiry = [x for x in self._expiry if x[2].confirmed and x[0] == x[2].gc_at]
            heapq.heapify(self._expiry)

    def gc(self, now: float) -> int:
        """Free every entry whose timeout has passed (gc_worker); returns how many went."""
        heap = self._expiry
        gone = 0
        while heap and heap[0][0] <= now:
            at, _, e = heapq.heappop(heap)
            if not e.confirmed or at != e.gc_at:
                continue                              # deleted, or superseded by a later push
            if e.expires <= now:
                self.delete(e)
                gone += 1
            else:                                     # refreshed since it was pushed
                self._push(e)
        return gone

    def classify(self, pkt: Packet, now: float) -> tuple[Optional[ConntrackEntry], bool, str]:
        """nf_conntrack_in: find or create the entry; returns (entry, is_reply, ctstate).

        An unknown TCP packet that is not a SYN is picked up mid-stream (nf_conntrack_tcp_loose=1),
        except a lone RST, which is INVALID.
        """
        heap = self._expiry
        if heap and heap[0][0] <= now:
            self.gc(now)
        t = pkt.tuple()
        hit = self._table.get(t)
        if hit is not None and hit[0].expires <= now:
            self.delete(hit[0])
            hit = None
        if hit is not None:
            e, is_reply = hit
            if is_reply or e.seen_reply:
                return e, is_reply, "ESTABLISHED"
            return e, False, "NEW"
        if pkt.proto == IPPROTO_ICMP and pkt.is_icmp_error:
            inner = pkt.inner
            if inner is not None:
                hit = self.lookup(invert(inner.tuple()), now)
                if hit is not None:
                    return hit[0], hit[1], "RELATED"
            return None, False, "INVALID"
        if pkt.proto == IPPROTO_TCP:
            flags = pkt.tcp_flags
            if flags & _RST or (flags & (_SYN | _ACK)) == (_SYN | _ACK):
                return None, False, "INVALID"
        e = self.new(pkt, now)
        return (e, False, "NEW") if e is not None else (None, False, TABLE_FULL)

    def peek(self, pkt: Packet, now: float) -> Optional[tuple]:
        """What :meth:`classify` will make of ``pkt``, found without changing anything, and where a
        destination binding of the entry will send it: (what, new destination, new port).

        ``what`` is "new" (classify creates an unconfirmed entry), "invalid" (a TCP packet no entry
        may begin with) or, for the live entry it will find, (is_reply, seen_reply, dnat, snat); the
        destination and port are those nat_dst gives the packet when the entry has a binding for
        its direction, else None; and the (entry, is_reply) found, for :meth:`classify_found`. None
        when classify may do more than that (an ICMP error's RELATED lookup; a full table, where
        early_drop evicts)."""
        if pkt._proto == IPPROTO_ICMP:
            return None
        hit = self._table.get((pkt._proto, pkt._src, pkt._sport, pkt._dst, pkt._dport))     # Packet.tuple
        if hit is None or hit[0].expires <= now:
            if self._count >= self.max_entries:
                return None
            if pkt._proto == IPPROTO_TCP:
                flags = pkt.tcp_flags
                if flags & _RST or (flags & (_SYN | _ACK)) == (_SYN | _ACK):
                    return "invalid", None, None, None
            return "new", None, None, None
        e, is_reply = hit
        what = (is_reply, e.seen_reply, e.dnat, e.snat)
        if e.snat if is_reply else e.dnat:
            t = e.orig if is_reply else e.reply
            return what, t[1], t[2], hit
        return what, None, None, hit

    def classify_found(self, hit: tuple[ConntrackEntry, bool], now: float) -> tuple[ConntrackEntry, bool, str]:
        """:meth:`classify` for a packet :meth:`peek` found the live entry ``hit`` for, the table
        unchanged since: the same expiry pass, and the entry without looking it up again."""
        heap = self._expiry
        if heap and heap[0][0] <= now:
            self.gc(now)                  # (frees timed-out entries only: not the live one found)
        e, is_reply = hit
        return e, is_reply, "ESTABLISHED" if is_reply or e.seen_reply else "NEW"

    # ------------------------------------------------------------------ NAT bindings
    def bind_dnat(self, e: ConntrackEntry, ip: int, port: int) -> None:
        """DNAT: the reply will come from ip:port."""
        p, _s, _sp, d, dp = e.reply
        e.reply = (p, ip, port if port else _sp, d, dp)
        e.dnat = True

    def bind_snat(self, e: ConntrackEntry, ip: int, port: Optional[int], rng: random.Random,
                  random_fully: bool = False, dev: Optional[str] = None) -> int:
        """SNAT/MASQUERADE: the reply will go to ip:port; returns the port chosen (get_unique_tuple)."""
        p, rs, rsp, _d, want = e.reply
        if port is not None:
            want = port
        if p in (IPPROTO_TCP, IPPROTO_UDP) or p == 132:
            if random_fully:
                want = self._free_port(p, rs, rsp, ip, rng.randint(0, 65535 - 1024), 1024, 65535, e)
            elif self._taken((p, rs, rsp, ip, want), e):
                lo, hi = (1024, 65535) if want >= 1024 else ((1, 511) if want < 512 else (600, 1023))
                want = self._free_port(p, rs, rsp, ip, rng.randint(0, hi - lo), lo, hi, e)
        e.reply = (p, rs, rsp, ip, want)
        e.snat = True
        e.nat_dev = dev
        return want

    def _taken(self, reply: Tuple5, e: ConntrackEntry) -> bool:
        hit = self._table.get(reply)
        return hit is not None and hit[0] is not e

    def _free_port(self, p: int, rs: int, rsp: int, ip: int, off: int, lo: int, hi: int,
                   e: ConntrackEntry) -> int:
        size = hi - lo + 1
        for i in range(size):
            cand = lo + (off + i) % size
            if not self._taken((p, rs, rsp, ip, cand), e):
                return cand
        return lo + off % size

    @staticmethod
    def target(e: ConntrackEntry, is_reply: bool) -> Tuple5:
        """The tuple a packet of this direction must carry after NAT (invert of the other direction)."""
        return invert(e.orig if is_reply else e.reply)

    def nat_dst(self, pkt: Packet, e: ConntrackEntry, is_reply: bool) -> Optional[tuple[int, int, int, int]]:
        """Destination manip (PREROUTING/OUTPUT). Returns (old ip, old port, new ip, new port) or None.

        Like nf_nat_packet, only a binding the entry carries is applied (IPS_DST_NAT for the original
        direction, IPS_SRC_NAT undone on replies): a reply tuple changed by IPVS (conntrack=1) is
        no NAT binding, so later packets of an IPVS connection still reach IPVS at LOCAL_IN."""
        if not (e.snat if is_reply else e.dnat):
            return None
        t = e.orig if is_reply else e.reply          # target = invert(t): its destination is t's source
        proto = pkt._proto
        old_ip, old_port = pkt._dst, pkt._dport
        ip, port = t[1], t[2]
        if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
            if old_ip == ip and old_port == port:
                return None                          # nothing to rewrite (the common case)
            pkt.nat_rewrite(True, ip, port)          # (_manip's TCP/UDP case, one call fewer)
            return old_ip, old_port, ip, port
        if old_ip == ip and old_port == port and not (proto == IPPROTO_ICMP and pkt.is_icmp_error):
            return None
        return self._manip(pkt, ip, port, "dst")

    def nat_src(self, pkt: Packet, e: ConntrackEntry, is_reply: bool) -> Optional[tuple[int, int, int, int]]:
        """Source manip (POSTROUTING/INPUT); only for an entry with that binding (see nat_dst)."""
        if not (e.dnat if is_reply else e.snat):
            return None
        t = e.orig if is_reply else e.reply          # target = invert(t): its source is t's destination
        proto = pkt._proto
        old_ip, old_port = pkt._src, pkt._sport
        ip, port = t[3], t[4]
        if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
            if old_ip == ip and old_port == port:
                return None
            pkt.nat_rewrite(False, ip, port)         # (_manip's TCP/UDP case, one call fewer)
            return old_ip, old_port, ip, port
        if old_ip == ip and old_port == port and not (proto == IPPROTO_ICMP and pkt.is_icmp_error):
            return None
        return self._manip(pkt, ip, port, "src")

    def _manip(self, pkt: Packet, ip: int, port: int, which: str) -> Optional[tuple[int, int, int, int]]:
        proto = pkt._proto
        if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
            # (the same bytes as the setters below, in one call: Packet.nat_rewrite)
            dst = which == "dst"
            old_ip, old_port = (pkt._dst, pkt._dport) if dst else (pkt._src, pkt._sport)
            if old_ip == ip and old_port == port:
                return None
            pkt.nat_rewrite(dst, ip, port)
            return old_ip, old_port, ip, port
        if proto == IPPROTO_ICMP and pkt.is_icmp_error:
            return self._manip_icmp_error(pkt, ip, port, which)
        if which == "dst":
            old_ip, old_port = pkt.dst, pkt.dport
            if old_ip == ip and old_port == port:
                return None
            pkt.dst = ip
            if old_port != port:
                pkt.dport = port
        else:
            old_ip, old_port = pkt.src, pkt.sport
            if old_ip == ip and old_port == port:
                return None
            pkt.src = ip
            if old_port != port:
                pkt.sport = port
        return old_ip, old_port, ip, port

    def _manip_icmp_error(self, pkt: Packet, ip: int, port: int, which: str) -> Optional[tuple[int, int, int, int]]:
        """nf_nat_icmp_reply_translation: the outer address and the quoted datagram (inverse manip)."""
        inner = pkt.inner
        if inner is None:
            return None
        if which == "dst":
            # outer dst <- target dst; quoted packet's *source* was that address
            old = pkt.dst
            if old == ip and inner.src == ip and (not port or inner.sport == port):
                return None                  # (MASQUERADE may keep the address and change the port)
            pkt.dst = ip
            inner.src = ip
            if inner.sport != port and port:
                inner.sport = port
        else:
            old = pkt.src
            if old == ip and inner.dst == ip and (not port or inner.dport == port):
                return None
            pkt.src = ip
            inner.dst = ip
            if inner.dport != port and port:
                inner.dport = port
        l4 = (pkt.buf[0] & 0x0F) * 4
        pkt.buf[l4 + 8:] = inner.buf
        pkt.refresh_checksums()
        return old, 0, ip, 0

    # ------------------------------------------------------------------ state machine / timeouts
    def update(self, e: ConntrackEntry, pkt: Packet, is_reply: bool, now: float) -> None:
        """Per-protocol packet handler (tcp_packet / nf_conntrack_udp_packet / icmp), then SEEN_REPLY."""
        to = self.timeouts
        e.packets[1 if is_reply else 0] += 1
        p = e.orig[0]
        if p == IPPROTO_TCP:
            flags = pkt.buf[pkt._l4 + 13] if pkt._proto == IPPROTO_TCP else 0     # Packet.tcp_flags
            st = e.tcp_state
            if flags & _RST:
                st = "CLOSE"
            elif st is None:
                st = "SYN_SENT" if flags & _SYN else "ESTABLISHED"   # tcp_loose pickup
            elif flags & _SYN and flags & _ACK and is_reply and st == "SYN_SENT":
                st = "SYN_RECV"
            elif flags & _FIN:
                if st in ("ESTABLISHED", "SYN_RECV"):
                    st = "FIN_WAIT"
                elif st in ("FIN_WAIT", "CLOSE_WAIT"):
                    st = "LAST_ACK"
            elif flags & _ACK:
                if st == "SYN_RECV" and not is_reply:
                    st = "ESTABLISHED"
                    e.assured = True
                elif st == "LAST_ACK":
                    st = "TIME_WAIT"
            e.tcp_state = st
            e.expires = now + self._tcp_timeout[st]
        elif p == IPPROTO_UDP:
            if e.seen_reply:
                if now > e.created + 2:            # stream_ts = creation + 2 s
                    e.expires = now + to.udp_stream
                    e.assured = True
                else:
                    e.expires = now + to.udp
            else:
                e.expires = now + to.udp
        elif p == IPPROTO_ICMP:
            e.expires = now + to.icmp
        else:
            e.expires = now + to.generic
        if is_reply:
            e.seen_reply = True
        if e.expires < e.gc_at and e.confirmed:       # a shorter timeout (e.g. SYN_SENT -> SYN_RECV)
            self._push(e)

    # ------------------------------------------------------------------ listing / cleanup
    def entries(self, now: Optional[float] = None) -> list[ConntrackEntry]:
        seen: dict[int, ConntrackEntry] = {}
        for e, _ in self._table.values():
            if now is None or e.expires > now:
                seen[id(e)] = e
        return list(seen.values())

    def expire(self, now: float) -> int:
        """Garbage-collect timed-out entries; returns how many went."""
        return self.gc(now)

    def listing(self, now: float) -> str:
        """``conntrack -L`` output (plus its summary line on stderr, here appended)."""
        lines = sorted(e.line(now) for e in self.entries(now))
        return "\n".join(lines + [f"conntrack v1.4.7 (conntrack-tools): {len(lines)} flow entries have been shown."])

    def delete_where(self, pred) -> int:
        gone = [e for e in self.entries() if pred(e)]
        for e in gone:
            self.delete(e)
        return len(gone)

    def __len__(self) -> int:
        """Entries in the table (``conntrack -C``), including timed-out ones not yet collected."""
        return self._count


def stale_udp_filter(services: Iterable, slices_by_service: dict[str, list]) -> list[tuple]:
    """kube-proxy's CleanStaleEntries criteria, returned as (frontends, nodeports, serving) per UDP service.

    Only UDP service ports with at least one serving endpoint are considered (cleanup.go):
    frontends = {(ClusterIP|LB IP|externalIP, port)}, nodeports = {nodePort}, serving = {(ip, port)}.
    """
    from netsim.skb.packet import ip2int
    out = []
    for svc in services:
        if svc.headless or not svc.cluster_ip or svc.type == "ExternalName":
            continue
        for sp in svc.ports:
            if sp.protocol != "UDP":
                continue
            serving: set[tuple[int, int]] = set()
            for sl in slices_by_service.get(svc.key, []):
                port = next((p.port for p in sl.ports if p.name == sp.name and p.protocol == "UDP"), None)
                if port is None:
                    continue
                for ep in sl.endpoints:
                    if ep.serving or ep.ready:
                        for a in ep.addresses:
                            serving.add((ip2int(a), port))
            if not serving:
                continue
            fronts = {(ip2int(svc.cluster_ip), sp.port)}
            fronts |= {(ip2int(ip), sp.port) for ip in svc.external_ips + svc.load_balancer_ips}
            nps = {sp.node_port} if sp.node_port else set()
            out.append((fronts, nps, serving))
    return out


def flush_stale_udp(ct: Conntrack, services: Iterable, slices_by_service: dict[str, list]) -> int:
    """Delete UDP entries whose reply source is no longer a serving endpoint (kube-proxy conntrack cleanup)."""
    rules = stale_udp_filter(services, slices_by_service)

    def stale(e: ConntrackEntry) -> bool:
        if e.proto != IPPROTO_UDP:
            return False
        _p, s, sp, d, dp = e.orig
        rsrc = (e.reply[1], e.reply[2])
        for fronts, nps, serving in rules:
            if ((d, dp) in fronts or dp in nps) and rsrc not in serving:
                return True
        return False

    return ct.delete_where(stale)
