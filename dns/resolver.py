"""ClusterDNS: answers a DNS question the way CoreDNS's kubernetes plugin (then forward) does under kubeadm.

Structure mirrors CoreDNS so each rule can be traced to its source:
  handler.go ServeDNS (qtype switch, NXDOMAIN/NODATA via BackendError, fallthrough),
  kubernetes.go Services/Records/findServices/findPods, reverse.go, ns.go nsAddrs,
  plugin/backend_lookup.go A/AAAA/SRV/TXT/CNAME/PTR/NS/SOA, then plugin/cache (netsim.dns.cache) around
  them and plugin/loadbalance outermost (plugin.cfg orders loadbalance before cache: it shuffles
  every reply on the way out, cached or not).
The records come from a `RecordIndex` snapshot of the live cluster, rebuilt after watch events.
"""
from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Optional, Union

from dnslib import (AAAA, CNAME, DNSHeader, DNSRecord, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A)

from netsim.dns.cache import AnswerCache, cache_key
from netsim.dns.corefile import DNS_SCHEMA_TTL, DNS_SCHEMA_VERSION, Corefile
from netsim.dns.names import (POD, InvalidRequest, address_from_reverse, endpoint_hostname, ip_family,
                              is_reverse, match_zone, parse_request, pod_ip_from_label, split_labels,
                              trim_zone)
from netsim.dns.records import NO_PORT, RecordIndex, build_index
from netsim.dns.upstream import UpstreamResolver
from netsim.dns.wire import WireCache

MAX_CNAME_CHAIN = 10            # plugin/backend_lookup.go maxCnameChainLength
DEFAULT_NS_NAME = "ns.dns."     # plugin/kubernetes/ns.go defaultNSName
_WATCHED_KINDS = frozenset({"Service", "EndpointSlice", "Namespace", "Pod"})


class NameError_(Exception):
    """CoreDNS's errNoItems / errNsNotExposed / errInvalidRequest: the name does not exist (NXDOMAIN)."""


@dataclass(frozen=True)
class Backend:
    """msg.Service: one record source. `host` is an IP or (ExternalName) a target name."""

    host: str
    port: int = 0
    ttl: int = 30
    key: str = ""          # the owner name this record lives at (SRV target), zone part in query case
    text: str = ""

    @property
    def host_type(self) -> int:
        fam = ip_family(self.host)
        return QTYPE.A if fam == 4 else QTYPE.AAAA if fam == 6 else QTYPE.CNAME


@dataclass(frozen=True)
class _Q:
    """request.Request reduced to what the plugin reads: the question and the matched zone."""

    qname: str             # as asked (case kept), trailing dot
    qtype: int
    zone: str              # the matched zone, lower case
    zone_q: str            # the matched zone, in the query's case
    local_ip: Optional[str] = None     # the answering CoreDNS pod's address, when known

    @property
    def name(self) -> str:
        return self.qname.lower()

    def ask(self, qname: str, qtype: int) -> "_Q":
        return _Q(qname if qname.endswith(".") else qname + ".", qtype, self.zone, self.zone_q, self.local_ip)


class ClusterDNS:
    """The CoreDNS stand-in for one cluster: `answer(query)` returns the reply DNSRecord.

    Thread-safe: request threads read an immutable RecordIndex snapshot; watch events only mark it
    stale and the next query rebuilds it.
    """

    def __init__(self, cluster: Any, corefile: Optional[Corefile] = None,
                 upstream: Optional[UpstreamResolver] = None, local_ip: Optional[str] = None,
                 rng: Optional[random.Random] = None) -> None:
        self.cluster = cluster
        config = getattr(cluster, "config", None)
        domain = getattr(config, "cluster_domain", "cluster.local")
        self.corefile = corefile or Corefile.kubeadm(domain)
        self.upstream = upstream if upstream is not None else \
            UpstreamResolver.from_config(getattr(config, "upstream_dns", {}) or {})
        self._local_ip = local_ip
        self._dns_service_ip = getattr(config, "dns_service_ip", None)
        self._rng = rng or random.Random(getattr(config, "seed", 0))
        self._lock = threading.Lock()
        self._index: Optional[RecordIndex] = None
        self._caches: dict[Optional[str], AnswerCache] = {}     # per answering pod (local_ip)
        self._wire: dict[Optional[str], WireCache] = {}
        self._generation = object()
        self._stale = True
        self._serial = 0
        watch = getattr(cluster, "watch", None)
        if callable(watch):
            watch(self._on_event)

    # ------------------------------------------------------------------ cluster state
    def _on_event(self, event: Any) -> None:
        if getattr(event, "kind", None) in _WATCHED_KINDS:
            clock = getattr(self.cluster, "clock", None)
            self._serial = int(getattr(clock, "now", 0))
            self._stale = True

    def snapshot_token(self) -> tuple:
        """What a stored reply depends on besides the question: the record index (rebuilt first when
        a watch event made it stale) and the cluster clock (the cache's TTLs)."""
        if self._stale or self._index is None:
            self.index()
        return self._generation, self.now()

    def wire_cache(self, local_ip: Optional[str] = None) -> "WireCache":
        """The pre-encoded replies of the CoreDNS pod at ``local_ip`` (netsim.dns.wire)."""
        w = self._wire.get(local_ip)
        if w is None:
            w = self._wire.setdefault(local_ip, WireCache(self, local_ip))
        return w

    def pod(self, local_ip: Optional[str]) -> "PodDNS":
        """One CoreDNS pod's server: this record index, the pod's own cache and address."""
        return PodDNS(self, local_ip)

    def refresh(self) -> None:
        """Rebuild the record snapshot now (for cluster stores without watch())."""
        self._stale = True
        self.index()

    def index(self) -> RecordIndex:
        idx = self._index
        if idx is not None and not self._stale:
            return idx
        with self._lock:
            if self._index is None or self._stale:
                self._stale = False
                self._index = build_index(self.cluster, self._serial)
                self._generation = object()
            return self._index

    @property
    def local_ips(self) -> tuple[str, ...]:
        """The answering CoreDNS pod's own addresses (ns.go k.localIPs)."""
        if self._local_ip:
            return (self._local_ip,)
        idx = self.index()
        if idx.coredns_ips:
            return idx.coredns_ips[:1]
        return (self._dns_service_ip,) if self._dns_service_ip else ("127.0.0.1",)

    # ------------------------------------------------------------------ entry point
    def answer(self, query: Union[bytes, DNSRecord], local_ip: Optional[str] = None) -> DNSRecord:
        """The reply to one query (no EDNS echo or truncation: see netsim.dns.message.handle).

        ``local_ip``: the address of the CoreDNS pod that answers (ns.go's k.localIPs), when one
        ClusterDNS serves several pods; otherwise the one given at construction. Each pod has its
        own `cache` (they are separate CoreDNS processes)."""
        request = query if isinstance(query, DNSRecord) else DNSRecord.parse(query)
        reply, _ = self.answer_parts(request, local_ip)
        self.load_balance(reply)
        return reply

    def answer_parts(self, request: DNSRecord, local_ip: Optional[str] = None,
                     probe: bool = False) -> tuple[DNSRecord, bool]:
        """The reply before `loadbalance` shuffles it, and whether asking again at the same cluster
        instant (nothing changed) gives the same reply: true unless this one filled the `cache` with
        a non-authoritative reply (the cached copy has AA=1 also for forwarded answers, item.go toMsg).
        ``probe``: do not fill the cache (the wire fast path's case check)."""
        plugin = self.corefile.cache
        if plugin is None:
            return self._compose(request, local_ip), True
        cache = self._caches.get(local_ip)
        if cache is None:
            cache = self._caches.setdefault(local_ip, AnswerCache(plugin))
        now = self.now()
        key = cache_key(request)
        item = cache.get(key, now)
        if item is not None:
            return item.to_msg(request, now), True
        reply = self._compose(request, local_ip)
        stored = cache.write(key, reply, now, store=not probe)
        # The cached copy answers with AA=1, the same records and (at this instant) the same TTL:
        # the same bytes unless this reply was not authoritative (forward's).
        return reply, not stored or bool(reply.header.aa)

    def now(self) -> float:
        """The cluster clock (seconds): the cache's TTLs count down on it (0 for a store without one)."""
        try:
            return self.cluster.clock.now
        except AttributeError:
            return 0.0

    def _compose(self, request: DNSRecord, local_ip: Optional[str]) -> DNSRecord:
        """The kubernetes plugin's reply, or forward's for names outside its zones (or fallthrough)."""
        q = request.q
        qname = str(q.qname)
        name = qname.lower()
        zone = match_zone(name, self.corefile.kubernetes.zones)
        if zone is None:
            return self._forward(request)
        zone_q = qname[len(qname) - len(zone):] if zone != "." else "."
        st = _Q(qname, q.qtype, zone, zone_q, local_ip)
        idx = self.index()
        try:
            records, extra = self._serve(idx, st)
        except NameError_:
            if any(name == z or name.endswith("." + z) for z in self.corefile.kubernetes.fallthrough):
                return self._forward(request)
            return self._backend_error(request, st, idx, RCODE.NXDOMAIN)
        if st.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            reply = _reply(request, aa=0)
            reply.header.rcode = RCODE.REFUSED
            return reply
        if not records:
            return self._backend_error(request, st, idx, RCODE.NOERROR)
        reply = _reply(request, aa=1)
        for rr in records:
            reply.add_answer(rr)
        for rr in extra:
            reply.add_ar(rr)
        return reply

    # ------------------------------------------------------------------ handler.go
    def _serve(self, idx: RecordIndex, st: _Q) -> tuple[list[RR], list[RR]]:
        t = st.qtype
        if t in (QTYPE.A, QTYPE.AAAA):
            return self._address(idx, st, []), []
        if t == QTYPE.TXT:
            return self._txt(idx, st), []
        if t == QTYPE.CNAME:
            return self._cname(idx, st), []
        if t == QTYPE.PTR:
            return self._ptr(idx, st), []
        if t == QTYPE.SRV:
            return self._srv(idx, st)
        if t == QTYPE.SOA:
            return ([self._soa(idx, st)] if st.name == st.zone else []), []
        if t in (QTYPE.AXFR, QTYPE.IXFR):
            return [], []
        if t == QTYPE.NS and st.name == st.zone:
            return self._ns(idx, st)
        # Any other type: a fake A lookup decides between NODATA and NXDOMAIN.
        self._address(idx, st.ask(st.qname, QTYPE.A), [])
        return [], []

    def _backend_error(self, request: DNSRecord, st: _Q, idx: RecordIndex, rcode: int) -> DNSRecord:
        """plugin.BackendError: aa=1, the rcode, exactly one SOA of the matched zone in authority."""
        reply = _reply(request, aa=1)
        reply.header.rcode = rcode
        reply.add_auth(self._soa(idx, st))
        return reply

    # ------------------------------------------------------------------ kubernetes.go
    def _services(self, idx: RecordIndex, st: _Q) -> list[Backend]:
        ttl = self.corefile.kubernetes.ttl
        if st.qtype == QTYPE.TXT:
            if split_labels(trim_zone(st.name, st.zone)) == ["dns-version"]:
                return [Backend(host="", ttl=DNS_SCHEMA_TTL, key=st.qname, text=DNS_SCHEMA_VERSION)]
            try:
                existing = self._records(idx, st)
            except NameError_:
                existing = []
            if existing:
                return []                                   # exists with another type: NODATA
            raise NameError_(st.name)
        if st.qtype == QTYPE.NS:                            # only reached at the apex
            return [Backend(host=ip, ttl=ttl, key=owner) for owner, ip in self._ns_addrs(idx, st)]
        if st.name == DEFAULT_NS_NAME + st.zone:
            want = 4 if st.qtype == QTYPE.A else 6 if st.qtype == QTYPE.AAAA else 0
            return [Backend(host=ip, ttl=ttl, key=st.qname)
                    for _, ip in self._ns_addrs(idx, st) if ip_family(ip) == want]
        found = self._records(idx, st)
        if st.qtype == QTYPE.SRV:                           # SRV for ExternalName is not implemented
            found = [b for b in found if b.host_type != QTYPE.CNAME]
        return found

    def _records(self, idx: RecordIndex, st: _Q) -> list[Backend]:
        try:
            r = parse_request(st.name, st.zone)
        except InvalidRequest:
            raise NameError_(st.name) from None
        if r.pod_or_svc == "":
            return []                                       # apex, svc. or pod.: NODATA
        if is_reverse(st.name):
            raise NameError_(st.name)
        if not self._namespace_exposed(idx, r.namespace):
            raise NameError_(st.name)
        if r.pod_or_svc == POD:
            return self._find_pods(idx, r, st)
        return self._find_services(idx, r, st)

    def _namespace_exposed(self, idx: RecordIndex, ns: str) -> bool:
        allowed = self.corefile.kubernetes.namespaces
        return (not allowed or ns in allowed) and idx.namespace_exists(ns)

    def _find_pods(self, idx: RecordIndex, r: Any, st: _Q) -> list[Backend]:
        mode = self.corefile.kubernetes.pods
        if mode == "disabled":
            raise NameError_(st.name)
        if r.service == "":
            return []                                       # <ns>.pod.<zone>: NODATA
        ip = pod_ip_from_label(r.service)
        if ip is None:
            raise NameError_(st.name)
        key = f"{r.service}.{r.namespace}.pod.{st.zone_q}"
        if mode == "verified" and r.namespace not in idx.pods_by_ip.get(ip, ()):
            raise NameError_(st.name)
        return [Backend(host=ip, ttl=self.corefile.kubernetes.ttl, key=key)]

    def _find_services(self, idx: RecordIndex, r: Any, st: _Q) -> list[Backend]:
        if r.service == "":
            return []                                       # <ns>.svc.<zone>: NODATA
        svc = idx.services.get((r.namespace, r.service))
        if svc is None:
            raise NameError_(st.name)
        ttl = self.corefile.kubernetes.ttl
        key = f"{svc.name}.{svc.namespace}.svc.{st.zone_q}"
        if svc.type == "ExternalName":
            # kubernetes.go findServices: an ExternalName has no endpoints, nor does it accept the
            # _port._protocol pseudo-subdomains, so a name with more labels than the Service's own
            # (endpoint, or port and protocol) finds nothing: NXDOMAIN for every query type (coredns
            # PR #6162, issue #6161: `www.google.com.default.svc...` matched a Service named `com`).
            # An IP in externalName makes no CNAME either.
            if r.endpoint or r.port or r.protocol or not svc.external_name or ip_family(svc.external_name):
                raise NameError_(st.name)
            return [Backend(host=svc.external_name, ttl=ttl, key=key)]
        out: list[Backend] = []
        if svc.headless or r.endpoint:
            for addr in idx.endpoints.get((svc.namespace, svc.name), ()):
                host = endpoint_hostname(addr.ip, addr.hostname)
                if r.endpoint and r.endpoint != host.lower():
                    continue
                for p in addr.ports:
                    if _port_matches(r, p):
                        out.append(Backend(host=addr.ip, port=p.port, ttl=ttl, key=f"{host}.{key}"))
            if not out:
                raise NameError_(st.name)
            return out
        matched = False
        for p in svc.ports:
            if not _port_matches(r, p):
                continue
            matched = True
            out.extend(Backend(host=ip, port=p.port, ttl=ttl, key=key) for ip in svc.cluster_ips)
        if not matched:
            raise NameError_(st.name)
        return out

    def _ns_addrs(self, idx: RecordIndex, st: _Q) -> list[tuple[str, str]]:
        """ns.go nsAddrs: (name, IP) of the Service(s) whose endpoints hold this CoreDNS's own IP."""
        out: list[tuple[str, str]] = []
        found = False
        for local in ((st.local_ip,) if st.local_ip else self.local_ips):
            seen: set[tuple[str, str]] = set()
            for ns, name, hostname in idx.endpoints_by_ip.get(local, ()):
                if (ns, name) in seen:
                    continue
                seen.add((ns, name))
                found = True
                svc = idx.services.get((ns, name))
                if svc is None:
                    continue
                svc_name = f"{svc.name}.{svc.namespace}.svc.{st.zone_q}"
                if svc.headless:
                    for addr in idx.endpoints.get((ns, name), ()):
                        out.append((f"{endpoint_hostname(addr.ip, addr.hostname)}.{svc_name}", addr.ip))
                else:
                    out.extend((svc_name, ip) for ip in svc.cluster_ips)
        if not found:
            out = [(DEFAULT_NS_NAME + st.zone_q, ip) for ip in ((st.local_ip,) if st.local_ip else self.local_ips)]
        return out

    # ------------------------------------------------------------------ backend_lookup.go
    def _address(self, idx: RecordIndex, st: _Q, previous: list[RR]) -> list[RR]:
        """plugin.A / plugin.AAAA (st.qtype says which); CNAMEs are chased."""
        family = 4 if st.qtype == QTYPE.A else 6
        records: list[RR] = []
        seen: set[str] = set()
        for b in self._services(idx, st):
            kind = b.host_type
            if kind == QTYPE.CNAME:
                records.extend(self._chase(idx, st, b, previous))
            elif ip_family(b.host) == family and b.host not in seen:
                seen.add(b.host)
                rdata = A(b.host) if family == 4 else AAAA(b.host)
                records.append(RR(st.qname, st.qtype, ttl=b.ttl, rdata=rdata))
        return records

    def _chase(self, idx: RecordIndex, st: _Q, b: Backend, previous: list[RR]) -> list[RR]:
        target = b.host if b.host.endswith(".") else b.host + "."
        t = target.lower()
        if t == st.name or t.endswith("." + st.name):
            return []                                       # x CNAME x: a direct loop
        cname = RR(st.qname, QTYPE.CNAME, ttl=b.ttl, rdata=CNAME(target))
        if len(previous) > MAX_CNAME_CHAIN or any(str(p.rdata) == str(cname.rdata) for p in previous):
            return []
        if t == st.zone or t.endswith("." + st.zone):       # in the zone: resolve it ourselves
            try:
                nxt = self._address(idx, st.ask(target, st.qtype), previous + [cname])
            except NameError_:
                return []
            return [cname] + nxt if nxt else []
        up = self.upstream.lookup(target, st.qtype)         # elsewhere: through forward
        return [cname] + list(up.answer)

    def _txt(self, idx: RecordIndex, st: _Q) -> list[RR]:
        out = []
        for b in self._services(idx, st):
            if b.text:
                out.append(RR(st.qname, QTYPE.TXT, ttl=b.ttl, rdata=TXT(b.text)))
        return out

    def _cname(self, idx: RecordIndex, st: _Q) -> list[RR]:
        found = self._services(idx, st)
        if found and found[0].host_type == QTYPE.CNAME:
            b = found[0]
            target = b.host if b.host.endswith(".") else b.host + "."
            return [RR(st.qname, QTYPE.CNAME, ttl=b.ttl, rdata=CNAME(target))]
        return []

    def _ptr(self, idx: RecordIndex, st: _Q) -> list[RR]:
        """reverse.go: a ClusterIP answers with its Service only; else one PTR per Service endpoint."""
        ip = address_from_reverse(st.name)
        if not ip:
            self._records(idx, st)                          # a forward name: NODATA or NXDOMAIN
            return []
        ttl = self.corefile.kubernetes.ttl
        primary = self.corefile.kubernetes.primary_zone
        targets: list[str] = []
        for svc in idx.services_by_ip.get(ip, ()):
            if self._namespace_exposed(idx, svc.namespace):
                targets = [f"{svc.name}.{svc.namespace}.svc.{primary}"]
                break
        if not targets:
            for ns, name, hostname in idx.endpoints_by_ip.get(ip, ()):
                if self._namespace_exposed(idx, ns):
                    t = f"{endpoint_hostname(ip, hostname)}.{name}.{ns}.svc.{primary}"
                    if t not in targets:
                        targets.append(t)
        if not targets:
            raise NameError_(st.name)
        return [RR(st.qname, QTYPE.PTR, ttl=ttl, rdata=PTR(t)) for t in targets]

    def _srv(self, idx: RecordIndex, st: _Q) -> tuple[list[RR], list[RR]]:
        """plugin.SRV: priority 0, weight floor(100/N) (min 1), dedup by (target, port), targets' addresses as extra."""
        found = self._services(idx, st)
        records: list[RR] = []
        extra: list[RR] = []
        # Every service weighs 100 and shares priority 0, so the weight is floor(100·100 / (100·N)).
        weight = max(1, math.floor(100.0 / len(found))) if found else 1
        dup: set[tuple[str, str, int]] = set()
        for b in found:
            if b.port == NO_PORT:
                continue
            kind = b.host_type
            if kind == QTYPE.CNAME:
                continue
            target = b.key
            if (target.lower(), "", b.port) not in dup:
                dup.add((target.lower(), "", b.port))
                records.append(RR(st.qname, QTYPE.SRV, ttl=b.ttl, rdata=SRV(0, weight, b.port, target)))
            if (target.lower(), b.host, 0) not in dup:
                dup.add((target.lower(), b.host, 0))
                rdata = A(b.host) if kind == QTYPE.A else AAAA(b.host)
                extra.append(RR(target, kind, ttl=b.ttl, rdata=rdata))
        return records, extra

    def _ns(self, idx: RecordIndex, st: _Q) -> tuple[list[RR], list[RR]]:
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[str] = set()
        for b in self._services(idx, st):
            kind = b.host_type
            rdata = A(b.host) if kind == QTYPE.A else AAAA(b.host)
            extra.append(RR(b.key, kind, ttl=b.ttl, rdata=rdata))
            if b.key.lower() in seen:
                continue
            seen.add(b.key.lower())
            records.append(RR(st.qname, QTYPE.NS, ttl=b.ttl, rdata=NS(b.key)))
        return records, extra

    def _soa(self, idx: RecordIndex, st: _Q) -> RR:
        kp = self.corefile.kubernetes
        z = st.zone_q
        times = (idx.serial, 7200, 1800, 86400, kp.ttl)
        return RR(z, QTYPE.SOA, ttl=kp.soa_ttl, rdata=SOA("ns.dns." + z if z != "." else "ns.dns.",
                                                         "hostmaster." + z if z != "." else "hostmaster.",
                                                         times))

    # ------------------------------------------------------------------ forward + loadbalance
    def _forward(self, request: DNSRecord) -> DNSRecord:
        """forward . /etc/resolv.conf: the upstream's reply (qr rd ra, not authoritative)."""
        q = request.q
        up = self.upstream.lookup(str(q.qname), q.qtype)
        reply = _reply(request, aa=0, ra=1 if up.rcode != RCODE.SERVFAIL else 0)
        reply.header.rcode = up.rcode
        for rr in up.answer:
            reply.add_answer(rr)
        return reply

    def load_balance(self, reply: DNSRecord) -> None:
        """plugin/loadbalance: round-robin the sections `load_balance_sections` names (in place)."""
        sections = self.load_balance_sections(reply)
        if sections is None:
            return
        for section, rtypes in zip(("rr", "auth", "ar"), sections):
            if len(rtypes) > 1:
                rrs = getattr(reply, section)
                setattr(reply, section, [rrs[i] for i in self.round_robin_order(list(rtypes))])

    def load_balance_sections(self, reply: DNSRecord) -> Optional[tuple[tuple[int, ...], ...]]:
        """loadbalance handler.go WriteMsg: NOERROR replies other than AXFR/IXFR have their answer,
        authority and additional sections round-robined; their record types, or None when the
        reply is left alone."""
        if not self.corefile.loadbalance or reply.header.rcode != RCODE.NOERROR:
            return None
        if reply.questions and reply.q.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return None
        sections = tuple(tuple(r.rtype for r in rrs) for rrs in (reply.rr, reply.auth, reply.ar))
        return sections if any(len(t) > 1 for t in sections) else None

    def round_robin_order(self, rtypes: list[int]) -> list[int]:
        """loadbalance.go roundRobin as positions: CNAMEs first, then others, then the shuffled
        addresses, then the shuffled MX records. The RNG is drawn on the same way whatever the
        records are, so the wire fast path reproduces a reply's order from its types alone."""
        if len(rtypes) < 2:
            return list(range(len(rtypes)))
        cname = [i for i, t in enumerate(rtypes) if t == QTYPE.CNAME]
        address = [i for i, t in enumerate(rtypes) if t in (QTYPE.A, QTYPE.AAAA)]
        mx = [i for i, t in enumerate(rtypes) if t == QTYPE.MX]
        rest = [i for i, t in enumerate(rtypes) if t not in (QTYPE.CNAME, QTYPE.A, QTYPE.AAAA, QTYPE.MX)]
        with self._lock:
            self._rng.shuffle(address)
            self._rng.shuffle(mx)
        return cname + rest + address + mx


class PodDNS:
    """One CoreDNS pod's view of a shared ClusterDNS: answers with the pod's own address as ns.go's
    local IP, from the pod's own cache, and with the pod's own pre-encoded replies."""

    def __init__(self, dns: ClusterDNS, local_ip: Optional[str]) -> None:
        self.dns, self.local_ip = dns, local_ip
        self.wire = dns.wire_cache(local_ip)

    def answer(self, request: Union[bytes, DNSRecord]) -> DNSRecord:
        return self.dns.answer(request, local_ip=self.local_ip)


def _port_matches(r: Any, p: Any) -> bool:
    """kubernetes.go matchPortAndProtocol: an empty request port/protocol matches anything."""
    return (r.port == "" or r.port == p.name.lower()) and \
        (r.protocol == "" or r.protocol == p.protocol.lower())


def _reply(request: DNSRecord, aa: int, ra: int = 0) -> DNSRecord:
    """miekg dns.Msg.SetReply: id, opcode, RD and CD copied; qr set; AD, RA, TC, Z clear; question kept."""
    h = request.header
    header = DNSHeader(id=h.id, qr=1, opcode=h.opcode, aa=aa, tc=0, rd=h.rd, ra=ra, z=0, ad=0, cd=h.cd)
    reply = DNSRecord(header)
    if request.questions:
        reply.add_question(request.questions[0])
    return reply
