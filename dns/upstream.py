"""The stand-in for `forward . /etc/resolv.conf`: the node's upstream resolver, answered from a table.

Never a network call. The table is the Cluster document's `upstreamDNS` (name → addresses). With an
empty table there is no reachable upstream, and CoreDNS's forward plugin answers SERVFAIL when every
upstream fails ("no healthy upstreams" → dns.RcodeServerFailure, plugin/forward/forward.go).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from dnslib import AAAA, QTYPE, RCODE, RR, A

from netsim.dns.names import ip_family

UPSTREAM_TTL = 300        # the stand-in upstream's TTL (a recursive resolver's cached answer)


@dataclass(frozen=True)
class UpstreamAnswer:
    rcode: int
    answer: tuple[RR, ...] = ()


@dataclass(frozen=True)
class UpstreamResolver:
    """A recursive resolver that knows only `records` (lower-case FQDN with trailing dot → addresses)."""

    records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ttl: int = UPSTREAM_TTL

    @classmethod
    def from_config(cls, upstream_dns: Mapping[str, list[str]]) -> "UpstreamResolver":
        table = {}
        for name, addrs in (upstream_dns or {}).items():
            key = name.strip().lower().rstrip(".") + "."
            table[key] = tuple(str(a) for a in addrs)
        return cls(records=table)

    @property
    def reachable(self) -> bool:
        return bool(self.records)

    def lookup(self, qname: str, qtype: int) -> UpstreamAnswer:
        """Answer `qname` (any case) as a recursive resolver would: NOERROR, NODATA or NXDOMAIN."""
        if not self.reachable:
            return UpstreamAnswer(RCODE.SERVFAIL)
        key = qname.lower() if qname.endswith(".") else qname.lower() + "."
        addrs = self.records.get(key)
        if addrs is None:
            return UpstreamAnswer(RCODE.NXDOMAIN)
        rrs = []
        for ip in addrs:
            fam = ip_family(ip)
            if fam == 4 and qtype == QTYPE.A:
                rrs.append(RR(qname, QTYPE.A, ttl=self.ttl, rdata=A(ip)))
            elif fam == 6 and qtype == QTYPE.AAAA:
                rrs.append(RR(qname, QTYPE.AAAA, ttl=self.ttl, rdata=AAAA(ip)))
        return UpstreamAnswer(RCODE.NOERROR, tuple(rrs))
