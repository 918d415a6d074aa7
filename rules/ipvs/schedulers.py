"""IPVS schedulers as the kernel implements them (net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc,sed,nq,sh,dh,mh}.c).

Each scheduler keeps the per-service state its kernel module keeps in ``svc->sched_data`` and is
told about destination changes through the same hooks (add_dest / del_dest / upd_dest). ``schedule``
returns the chosen RealServer or None ("no destination available": the caller answers with ICMP
port unreachable, ip_vs_leave()).

Destinations are walked in kernel list order (``vs.dests``; newest first, see table.py). A
destination is unavailable when its weight is 0 or it is overloaded; weight-0 ("quiesced")
destinations get no new connections from rr/wrr/lc/wlc/sed/nq, but sh/dh/mh still map hash
buckets to them (sh/dh give a weight-0 destination one bucket; mh keeps its slots through
last_weight), so without the fallback flag those clients get no destination.
"""
from __future__ import annotations

from math import gcd
from typing import Optional

from netsim.rules.ipvs.hashing import hash_32, hsiphash_u32
from netsim.rules.ipvs.table import (IP_VS_SVC_F_SCHED1, IP_VS_SVC_F_SCHED2, IpvsError, RealServer,
                                     VirtualServer)


class Scheduler:
    """Base: hooks default to no-ops, like a kernel scheduler without add_dest/del_dest/upd_dest."""
    name = ""

    def init_service(self, vs: VirtualServer) -> None:
        pass

    def add_dest(self, vs: VirtualServer, dest: RealServer) -> None:
        pass

    def del_dest(self, vs: VirtualServer, dest: RealServer, index: int) -> None:
        pass

    def upd_dest(self, vs: VirtualServer, dest: RealServer) -> None:
        pass

    def schedule(self, vs: VirtualServer, saddr: int, sport: int, daddr: int,
                 dport: int) -> Optional[RealServer]:
        raise NotImplementedError


def _usable(d: RealServer) -> bool:
    return d.weight > 0 and not d.overloaded


class RoundRobin(Scheduler):
    """ip_vs_rr.c: continue after the last chosen list node, first dest with weight > 0 wins."""
    name = "rr"

    def init_service(self, vs: VirtualServer) -> None:
        self.last: Optional[RealServer] = None        # None = the list head

    def del_dest(self, vs: VirtualServer, dest: RealServer, index: int) -> None:
        # ip_vs_rr_del_dest: a pointer at the removed node moves to its predecessor (or the head).
        if self.last is dest:
            self.last = vs.dests[index - 1] if index > 0 else None

    def schedule(self, vs, saddr, sport, daddr, dport):
        dests = vs.dests
        start = 0 if self.last is None else dests.index(self.last) + 1
        order = dests[start:] + (dests[:start] if self.last is not None else [])
        for d in order:
            if _usable(d):
                self.last = d
                return d
        return None


class WeightedRoundRobin(Scheduler):
    """ip_vs_wrr.c: passes with a decreasing current weight cw stepping by di = gcd(weights)."""
    name = "wrr"

    def _recompute(self, vs: VirtualServer) -> None:
        g = 0
        for d in vs.dests:
            if d.weight > 0:
                g = gcd(g, d.weight) if g else d.weight
        self.di = g or 1
        self.mw = max((d.weight for d in vs.dests), default=0) - (self.di - 1)

    def init_service(self, vs: VirtualServer) -> None:
        self.cl: Optional[RealServer] = None
        self._recompute(vs)
        self.cw = self.mw

    def _changed(self, vs: VirtualServer) -> None:
        self.cl = None
        self._recompute(vs)
        if self.cw > self.mw or not self.cw:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def add_dest(self, vs, dest):
        self._changed(vs)

    def del_dest(self, vs, dest, index):
        self._changed(vs)

    def upd_dest(self, vs, dest):
        self._changed(vs)

    def schedule(self, vs, saddr, sport, daddr, dport):
        dests = vs.dests
        if self.mw == 0:
            return None
        last = self.cl
        pos = -1 if last is None else dests.index(last)
        stop: Optional[RealServer] = None
        last_pass = restarted = False
        while True:
            for i in range(pos + 1, len(dests)):
                d = dests[i]
                if not d.overloaded and d.weight >= self.cw:
                    self.cl = d
                    return d
                if d is stop:
                    self.cl = d
                    return None
            pos = -1                                  # the walk ended at the list head
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                if last_pass or last is None:
                    self.cl = None
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last is not None:
                stop = last


class LeastConnection(Scheduler):
    """ip_vs_lc.c: minimal overhead (active*256 + inactive); strict '<' keeps the earliest on ties."""
    name = "lc"

    def schedule(self, vs, saddr, sport, daddr, dport):
        least, loh = None, 0
        for d in vs.dests:
            if d.overloaded or d.weight == 0:
                continue
            doh = d.overhead()
            if least is None or doh < loh:
                least, loh = d, doh
        return least


class _WeightedLeast(Scheduler):
    """Shared by wlc and sed: first usable dest, then replace while loh*w(d) > doh*w(least)."""

    @staticmethod
    def _overhead(d: RealServer) -> int:
        raise NotImplementedError

    def schedule(self, vs, saddr, sport, daddr, dport):
        dests = vs.dests
        for i, d in enumerate(dests):
            if _usable(d):
                least, loh = d, self._overhead(d)
                break
        else:
            return None
        for d in dests[i + 1:]:
            if d.overloaded:
                continue
            doh = self._overhead(d)
            if loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class WeightedLeastConnection(_WeightedLeast):
    """ip_vs_wlc.c: minimise overhead/weight, overhead = active*256 + inactive."""
    name = "wlc"

    @staticmethod
    def _overhead(d: RealServer) -> int:
        return d.overhead()


class ShortestExpectedDelay(_WeightedLeast):
    """ip_vs_sed.c: minimise (active + 1)/weight; inactive connections are ignored."""
    name = "sed"

    @staticmethod
    def _overhead(d: RealServer) -> int:
        return d.activeconns + 1


class NeverQueue(Scheduler):
    """ip_vs_nq.c: an idle server (no active connections) wins at once; otherwise as sed."""
    name = "nq"

    def schedule(self, vs, saddr, sport, daddr, dport):
        least, loh = None, 0
        for d in vs.dests:
            if d.overloaded or not d.weight:
                continue
            doh = d.activeconns + 1
            if d.activeconns == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class LocalityBasedLeastConnection(Scheduler):
    """ip_vs_lblc.c: remember a destination per *destination address* and keep using it while it is
    available, has weight > 0 and is not overloaded (activeconns > weight while some destination
    has activeconns * 2 < weight); otherwise pick by the wlc rule and remember that one.

    For kube-proxy virtual servers the destination address is always the VIP, so all new
    connections of a VS stick to one real server until it overloads. The kernel's cache garbage
    collection (entries unused for lblc_expiration, 24 h) is not modelled.
    """
    name = "lblc"

    def init_service(self, vs: VirtualServer) -> None:
        self.cache: dict[int, RealServer] = {}

    @staticmethod
    def _overloaded(dest: RealServer, vs: VirtualServer) -> bool:
        if dest.activeconns > dest.weight:
            return any(d.activeconns * 2 < d.weight for d in vs.dests)
        return False

    def schedule(self, vs, saddr, sport, daddr, dport):
        d = self.cache.get(daddr)
        if d is not None and d.available and d.weight > 0 and not self._overloaded(d, vs):
            return d
        d = WeightedLeastConnection().schedule(vs, saddr, sport, daddr, dport)
        if d is not None:
            self.cache[daddr] = d
        return d


class LocalityBasedLeastConnectionReplication(Scheduler):
    """ip_vs_lblcr.c: per destination address a *set* of servers (newest first). Use the set's
    least loaded available member (ip_vs_dest_set_min: overhead / weight); when there is none or it
    is overloaded (as in lblc), add a wlc-chosen server to the set. Dropping the most loaded member
    of a set unmodified for lblcr_expiration (24 h) is not modelled.
    """
    name = "lblcr"

    def init_service(self, vs: VirtualServer) -> None:
        self.sets: dict[int, list[RealServer]] = {}

    @staticmethod
    def _set_min(members: list[RealServer]) -> Optional[RealServer]:
        for i, d in enumerate(members):
            if d.overloaded:
                continue
            if d.weight > 0 and d.available:
                least, loh = d, d.overhead()
                break
        else:
            return None
        for d in members[i + 1:]:
            if d.overloaded:
                continue
            doh = d.overhead()
            if loh * d.weight > doh * least.weight and d.available:
                least, loh = d, doh
        return least

    def schedule(self, vs, saddr, sport, daddr, dport):
        members = self.sets.get(daddr)
        if members is None:
            d = WeightedLeastConnection().schedule(vs, saddr, sport, daddr, dport)
            if d is not None:
                self.sets[daddr] = [d]
            return d
        d = self._set_min(members)
        if d is None or LocalityBasedLeastConnection._overloaded(d, vs):
            d = WeightedLeastConnection().schedule(vs, saddr, sport, daddr, dport)
            if d is None:
                return None
            if d not in members:
                members.insert(0, d)
        return d


SH_TAB_BITS = 8                      # CONFIG_IP_VS_SH_TAB_BITS default
SH_TAB_SIZE = 1 << SH_TAB_BITS
DH_TAB_BITS = 8                      # CONFIG_IP_VS_DH_TAB_BITS default
DH_TAB_SIZE = 1 << DH_TAB_BITS


class _RebuiltOnChange(Scheduler):
    """A table that is a function of the destination list, rebuilt from init_service and every
    add/del/upd_dest hook (ip_vs_sh_reassign, ip_vs_dh_reassign, ip_vs_mh_reassign)."""

    def _reassign(self, vs: VirtualServer) -> None:
        raise NotImplementedError

    def init_service(self, vs: VirtualServer) -> None:
        self._reassign(vs)

    def add_dest(self, vs: VirtualServer, dest: RealServer) -> None:
        self._reassign(vs)

    def del_dest(self, vs: VirtualServer, dest: RealServer, index: int) -> None:
        self._reassign(vs)

    def upd_dest(self, vs: VirtualServer, dest: RealServer) -> None:
        self._reassign(vs)


def _source_hash_schedule(vs: VirtualServer, table: list[Optional[RealServer]], hashkey, saddr: int,
                          sport: int) -> Optional[RealServer]:
    """ip_vs_sh_schedule / ip_vs_mh_schedule: the slot of the source address (+ source port with the
    *-port flag); if that dest is unusable and the *-fallback flag is set, walk the slots of the
    following offsets (ip_vs_sh_get_fallback / ip_vs_mh_get_fallback), stopping at an empty one."""
    size = len(table)
    port = sport if vs.flags & IP_VS_SVC_F_SCHED2 else 0
    ihash = hashkey(saddr, port)
    d = table[ihash]
    if d is None:
        return None
    if _usable(d):
        return d
    if not vs.flags & IP_VS_SVC_F_SCHED1:
        return None
    for off in range(size):
        d = table[hashkey(saddr, port, (off + ihash) % size)]
        if d is None:
            return None
        if _usable(d):
            return d
    return None


class SourceHashing(_RebuiltOnChange):
    """ip_vs_sh.c: 256 buckets, each dest owning ``weight`` consecutive buckets per cycle.

    Key: ``(offset + hash_32(ntohs(port) + ntohl(saddr), 8)) & 255``; port only with sh-port
    (flag 0x10); sh-fallback (0x08) probes further buckets when the hashed dest is unavailable.
    (Kernels before the hash_32 conversion multiplied by 2654435761 instead.)
    """
    name = "sh"

    def _reassign(self, vs: VirtualServer) -> None:
        dests = vs.dests
        if not dests:
            self.buckets: list[Optional[RealServer]] = [None] * SH_TAB_SIZE
            return
        buckets = []
        i = d_count = 0
        for _ in range(SH_TAB_SIZE):
            d = dests[i]
            buckets.append(d)
            d_count += 1
            if d_count >= d.weight:          # a weight-0 dest still takes one bucket
                i = (i + 1) % len(dests)
                d_count = 0
        self.buckets = buckets

    @staticmethod
    def hashkey(addr: int, port: int, offset: int = 0) -> int:
        return (offset + hash_32((port + addr) & 0xFFFFFFFF, SH_TAB_BITS)) & (SH_TAB_SIZE - 1)

    def schedule(self, vs, saddr, sport, daddr, dport):
        return _source_hash_schedule(vs, self.buckets, self.hashkey, saddr, sport)


class DestinationHashing(_RebuiltOnChange):
    """ip_vs_dh.c: 256 buckets assigned one per dest cyclically; key hash_32(ntohl(daddr), 8)."""
    name = "dh"

    def _reassign(self, vs: VirtualServer) -> None:
        dests = vs.dests
        self.buckets = [dests[i % len(dests)] if dests else None for i in range(DH_TAB_SIZE)]

    def schedule(self, vs, saddr, sport, daddr, dport):
        d = self.buckets[hash_32(daddr, DH_TAB_BITS)]
        if d is None or not d.available or not _usable(d):
            return None
        return d


MH_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
MH_TAB_INDEX_CONFIG = 12                                  # CONFIG_IP_VS_MH_TAB_INDEX default
MH_TAB_BITS = MH_TAB_INDEX_CONFIG // 2                    # 6
MH_TAB_SIZE = MH_PRIMES[MH_TAB_INDEX_CONFIG - 8]          # 4093
MH_HASH1 = (2654435761, 2654435761)                       # generate_hash_secret()
MH_HASH2 = (2654446892, 2654446892)


def _fls(x: int) -> int:
    return x.bit_length()


class MaglevHashing(_RebuiltOnChange):
    """ip_vs_mh.c: Maglev lookup table of 4093 slots filled from per-dest permutations.

    offset = hsiphash(port + addr, HASH1) % M, skip = hsiphash(.., HASH2) % (M - 1) + 1; dests
    take ``turns = (last_weight / gcd) >> rshift`` slots per round in list order. Lookup hashes the
    source address (+ source port with mh-port, flag 0x10, which kube-proxy always sets).
    """
    name = "mh"

    def _reassign(self, vs: VirtualServer) -> None:
        dests = vs.dests
        g = 0
        for d in dests:
            if d.last_weight > 0:
                g = gcd(g, d.last_weight) if g else d.last_weight
        self.gcd = g
        if g < 1:
            self.lookup: list[Optional[RealServer]] = [None] * MH_TAB_SIZE
            self.rshift = 0
            return
        mw = max(d.last_weight for d in dests) // g
        self.rshift = max(_fls(mw) - MH_TAB_BITS, 0)
        M = MH_TAB_SIZE
        setup = []
        for d in dests:
            v = (d.port + d.ip) & 0xFFFFFFFF
            offset = hsiphash_u32(v, MH_HASH1) % M
            skip = hsiphash_u32(v, MH_HASH2) % (M - 1) + 1
            lw = d.last_weight
            turns = ((lw // g) >> self.rshift) or (1 if lw != 0 else 0)
            setup.append([offset, skip, turns])
        table: list[Optional[RealServer]] = [None] * M
        used = bytearray(M)
        n = 0
        while n < M:
            for d, ds in zip(dests, setup):
                if ds[2] < 1:
                    continue
                for _ in range(ds[2]):
                    c = ds[0]
                    while used[c]:
                        c += ds[1]
                        if c >= M:
                            c -= M
                    ds[0] = c
                    used[c] = 1
                    table[c] = d
                    n += 1
                    if n == M:
                        break
                if n == M:
                    break
        self.lookup = table

    @staticmethod
    def hashkey(addr: int, port: int, offset: int = 0) -> int:
        return hsiphash_u32((offset + port + addr) & 0xFFFFFFFF, MH_HASH1) % MH_TAB_SIZE

    def schedule(self, vs, saddr, sport, daddr, dport):
        return _source_hash_schedule(vs, self.lookup, self.hashkey, saddr, sport)


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection,
                              ShortestExpectedDelay, NeverQueue, LocalityBasedLeastConnection,
                              LocalityBasedLeastConnectionReplication, SourceHashing,
                              DestinationHashing, MaglevHashing)
}


def make_scheduler(name: str) -> Scheduler:
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise IpvsError(f"unknown IPVS scheduler {name!r} (expected one of {', '.join(SCHEDULERS)})") from None


# ipvsadm's names for the scheduler flags (ipvsadm.c print_sched_flags)
SCHED_FLAG_NAMES = {
    "sh": {IP_VS_SVC_F_SCHED1: "sh-fallback", IP_VS_SVC_F_SCHED2: "sh-port"},
    "mh": {IP_VS_SVC_F_SCHED1: "mh-fallback", IP_VS_SVC_F_SCHED2: "mh-port"},
}
