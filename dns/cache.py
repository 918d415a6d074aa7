"""CoreDNS's `cache` plugin (kubeadm's Corefile: `cache 30`) on the cluster clock.

What it does, from coredns plugin/cache (cache.go, handler.go, item.go, dnssec.go) and
plugin/pkg/response/typify.go, plugin/pkg/dnsutil/ttl.go:
  - the key is (lower-cased qname, qtype, qclass, DO bit, CD bit) (cache.go hash; CD since #6354);
  - every reply that passes through gets all its RR TTLs set to the item's duration ("Apply capped TTL
    to this reply", cache.go ResponseWriter.WriteMsg; OPT records are hop-by-hop and left out);
  - the duration: NXDOMAIN/NODATA: the message's lowest TTL clamped to [5 s, denial cap]; SERVFAIL
    (and NOTIMP): 5 s; otherwise the lowest TTL clamped to [5 s, success cap] — `cache 30` sets both
    caps to 30 s (setup.go); a message without records gets the 5 s fail-safe (dnsutil.MinimalTTL);
  - not stored: truncated replies, OtherError (REFUSED, FORMERR, NXDOMAIN with answers), Meta
    (NOTIFY, AXFR/IXFR) and Update (cache.go key);
  - a hit is served while its TTL (origTTL − whole seconds since stored) is > 0: the reply is
    SetReply(request) with AA=1, AD only if the query asked for DNSSEC (DO or AD), RA and rcode from
    the item, and the stored records (in the case of the query that filled the item) with the
    remaining TTL (item.go toMsg);
  - prefetch, serve_stale and keepttl are off (kubeadm's Corefile sets none of them).
Capacity: 10,000 items per success/denial cache (cache.go defaultCap); CoreDNS evicts a random item
of a full shard (plugin/pkg/cache), this model evicts the oldest.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from dnslib import QTYPE, RCODE, DNSHeader, DNSRecord

from netsim.dns.corefile import CachePlugin

MINIMAL_DEFAULT_TTL = 5         # dnsutil.MinimalDefaultTTL (seconds)
OPCODE_NOTIFY, OPCODE_UPDATE = 4, 5

# response.Type (plugin/pkg/response/typify.go)
NO_ERROR, NAME_ERROR, NO_DATA, DELEGATION, SERVER_ERROR, OTHER_ERROR, META, UPDATE = (
    "NoError", "NameError", "NoData", "Delegation", "ServerError", "OtherError", "Meta", "Update")


def typify(reply: DNSRecord) -> str:
    """response.Typify without the DNSSEC expiry check (no RRSIGs are ever served here)."""
    h = reply.header
    if h.opcode == OPCODE_UPDATE:
        return UPDATE
    if h.opcode == OPCODE_NOTIFY:
        return META
    if reply.questions and reply.q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
        return META
    if reply.rr and h.rcode == RCODE.NOERROR:
        return NO_ERROR
    if reply.rr and h.rcode == RCODE.NXDOMAIN:
        return OTHER_ERROR
    soa = any(r.rtype == QTYPE.SOA for r in reply.auth)
    ns = sum(1 for r in reply.auth if r.rtype == QTYPE.NS)
    if soa and h.rcode == RCODE.NOERROR:
        return NO_DATA
    if h.rcode == RCODE.NXDOMAIN:
        return NAME_ERROR
    if h.rcode in (RCODE.SERVFAIL, RCODE.NOTIMP):
        return SERVER_ERROR
    if ns and h.rcode == RCODE.NOERROR:
        return DELEGATION
    if h.rcode == RCODE.NOERROR:
        return NO_ERROR
    return OTHER_ERROR


def minimal_ttl(reply: DNSRecord, kind: str, maximum: int) -> int:
    """dnsutil.MinimalTTLWithMaximum: the lowest TTL of the message's records, at most `maximum`."""
    if kind not in (NO_ERROR, NAME_ERROR, NO_DATA):
        return MINIMAL_DEFAULT_TTL
    extra = [r for r in reply.ar if r.rtype != QTYPE.OPT]
    if not reply.rr and not reply.auth and not extra:
        return MINIMAL_DEFAULT_TTL
    low = maximum
    for r in (*reply.rr, *reply.auth, *extra):
        if r.ttl < low:
            low = r.ttl
    return low


def duration(plugin: CachePlugin, reply: DNSRecord, kind: str) -> int:
    """cache.go WriteMsg: how long the item lives (and the TTL every record of this reply gets)."""
    if kind in (NAME_ERROR, NO_DATA):
        return min(max(minimal_ttl(reply, kind, plugin.denial_ttl), plugin.min_denial_ttl), plugin.denial_ttl)
    if kind == SERVER_ERROR:
        return plugin.servfail_ttl
    return min(max(minimal_ttl(reply, kind, plugin.success_ttl), plugin.min_success_ttl), plugin.success_ttl)


def cache_key(request: DNSRecord) -> tuple[str, int, int, bool, bool]:
    """cache.go hash(qname, qtype, qclass, do, cd) with the lower-cased qname."""
    q = request.q
    do = any(r.rtype == QTYPE.OPT and r.ttl & 0x8000 for r in request.ar)
    return str(q.qname).lower(), q.qtype, q.qclass, do, bool(request.header.cd)


@dataclass
class Item:
    """item.go: what a cached reply keeps (OPT records are hop-by-hop and not kept)."""

    rcode: int
    ra: int
    answer: list
    ns: list
    extra: list
    orig_ttl: int
    stored: float

    def ttl(self, now: float) -> int:
        return self.orig_ttl - int(now - self.stored)

    def to_msg(self, request: DNSRecord, now: float) -> DNSRecord:
        """item.go toMsg: SetReply(request), AA=1, AD=0 (nothing here is DNSSEC-signed), RA and rcode
        from the item, copies of the records with the remaining TTL."""
        h = request.header
        ttl = self.ttl(now)
        reply = DNSRecord(DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=1, tc=0, rd=h.rd, ra=self.ra, z=0,
                                    ad=0, cd=h.cd, rcode=self.rcode))
        if request.questions:
            reply.add_question(request.questions[0])
        reply.rr = [_with_ttl(r, ttl) for r in self.answer]
        reply.auth = [_with_ttl(r, ttl) for r in self.ns]
        reply.ar = [_with_ttl(r, ttl) for r in self.extra]
        return reply


class AnswerCache:
    """One CoreDNS instance's success and denial caches (pcache / ncache)."""

    def __init__(self, plugin: CachePlugin) -> None:
        self.plugin = plugin
        self._success: OrderedDict = OrderedDict()
        self._denial: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._success) + len(self._denial)

    def get(self, key: tuple, now: float) -> Optional[Item]:
        """handler.go getIfNotStale: the denial cache first, then success; only while TTL > 0."""
        with self._lock:
            for store in (self._denial, self._success):
                item = store.get(key)
                if item is not None and item.ttl(now) > 0:
                    return item
        return None

    def write(self, key: tuple, reply: DNSRecord, now: float, store: bool = True) -> bool:
        """ResponseWriter.WriteMsg: cap every TTL of `reply` (in place) and keep it when cacheable
        (True when kept)."""
        kind = typify(reply)
        d = duration(self.plugin, reply, kind)
        reply.rr = [_with_ttl(r, d) for r in reply.rr]
        reply.auth = [_with_ttl(r, d) for r in reply.auth]
        reply.ar = [r if r.rtype == QTYPE.OPT else _with_ttl(r, d) for r in reply.ar]
        if not store or d <= 0 or reply.header.tc or kind in (OTHER_ERROR, META, UPDATE):
            return False
        item = Item(reply.header.rcode, reply.header.ra, list(reply.rr), list(reply.auth),
                    [r for r in reply.ar if r.rtype != QTYPE.OPT], d, now)
        target = self._success if kind in (NO_ERROR, DELEGATION) else self._denial
        with self._lock:
            target.pop(key, None)
            target[key] = item
            while len(target) > self.plugin.capacity:
                target.popitem(last=False)
        return True


def _with_ttl(rr, ttl: int):
    """A copy of `rr` with another TTL (dns.Copy + Header().Ttl = ttl); records are shared otherwise."""
    if rr.ttl == ttl:
        return rr
    out = type(rr)(rr.rname, rr.rtype, rr.rclass, ttl, rr.rdata)
    return out
