"""The xt_recent address lists of one network namespace (`/proc/net/xt_recent/<name>`).

Semantics from net/netfilter/xt_recent.c (recent_mt): one list per --name; an entry per
(masked) address with up to ip_pkt_list_tot=20 timestamps; at most ip_list_tot=100 entries,
the least recently updated evicted first; --reap drops the LRU-oldest entry if its newest
stamp is older than the --seconds window (never the entry being checked).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from netsim.rules.iptables.matches import RECENT_IP_LIST_TOT, RECENT_IP_PKT_LIST_TOT


@dataclass
class RecentEntry:
    addr: int
    stamps: list[float] = field(default_factory=list)   # oldest first, at most ip_pkt_list_tot
    ttl: int = 0

    @property
    def last_seen(self) -> float:
        return self.stamps[-1]


@dataclass
class RecentState:
    """All recent lists; `lists[name]` is an OrderedDict addr → entry in LRU order (oldest first)."""

    ip_list_tot: int = RECENT_IP_LIST_TOT
    ip_pkt_list_tot: int = RECENT_IP_PKT_LIST_TOT
    lists: dict[str, "OrderedDict[int, RecentEntry]"] = field(default_factory=dict)

    def entries(self, name: str) -> list[RecentEntry]:
        return list(self.lists.get(name, {}).values())

    def _update(self, table: "OrderedDict[int, RecentEntry]", e: RecentEntry, now: float) -> None:
        e.stamps.append(now)
        if len(e.stamps) > self.ip_pkt_list_tot:
            del e.stamps[0]
        table.move_to_end(e.addr)

    def check(self, name: str, addr: int, mode: str, now: float, seconds: int = 0, hitcount: int = 0,
              reap: bool = False, ttl: int = 0) -> bool:
        """One evaluation of `-m recent <mode>` for `addr`; returns the (un-inverted) match result."""
        table = self.lists.setdefault(name, OrderedDict())
        e = table.get(addr)
        if e is not None and ttl and e.ttl and e.ttl != ttl:
            e = None
        if e is None:
            if mode != "--set":
                return False
            if len(table) >= self.ip_list_tot:
                table.popitem(last=False)
            table[addr] = RecentEntry(addr, [now], ttl)
            return True
        if mode == "--set":
            self._update(table, e, now)
            e.ttl = ttl
            return True
        if mode == "--remove":
            del table[addr]
            return True
        horizon = now - seconds
        ret = False
        hits = 0
        for s in e.stamps:
            if seconds and s < horizon:
                continue
            hits += 1
            if not hitcount or hits >= hitcount:
                ret = True
                break
        if reap:
            oldest = next(iter(table.values()))
            if oldest is not e and oldest.last_seen < horizon:
                del table[oldest.addr]
        if mode == "--update" and ret:
            self._update(table, e, now)
            e.ttl = ttl
        return ret
