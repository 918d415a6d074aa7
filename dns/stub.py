"""A pod's stub resolver: glibc's search-list walk (resolv/res_query.c __res_context_search).

Given the pod's resolv.conf and a name, it produces the queries getaddrinfo() would send, in order,
and the outcome. Each query goes through `query_fn(qname, qtype) -> reply | None` (None: no reply
after all retries), so a caller can carry it as a real packet (the walker: UDP through the kube-dns
Service's DNAT to a CoreDNS pod) or answer it directly (ClusterDNS.answer). The walk reads only a
reply's rcode, TC bit and answer records (type and rdata): a dnslib DNSRecord or the lighter
netsim.dns.wire.Reply both do.

The walk (glibc resolv/res_query.c __res_context_search; checked with getaddrinfo on glibc 2.36):
  1. a trailing dot: the name as is, and stop whatever the result;
  2. dots >= ndots: the name as is first; success stops;
  3. each search domain appended in order; NXDOMAIN, NODATA and SERVFAIL go on to the next domain,
     any other failure (REFUSED, FORMERR, no reply) stops the search list;
  4. the name as is last, unless tried in step 2;
  5. failure: step 2's error if it ran, else NODATA if any step had it, else SERVFAIL's TRY_AGAIN if
     any, else the last error.
AF_UNSPEC sends A then AAAA for every step and accepts the step when either has answers
(__res_context_query with two answers: the error is the A reply's rcode unless that is NOERROR).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from dnslib import QTYPE, RCODE, DNSRecord

from netsim.dns.resolvconf import ResolvConf, pod_resolv_conf

QueryFn = Callable[[str, str], Optional[Any]]       # DNSRecord or netsim.dns.wire.Reply

# h_errno values (netdb.h) and the getaddrinfo error each becomes.
HOST_NOT_FOUND, TRY_AGAIN, NO_RECOVERY, NO_DATA = 1, 2, 3, 4
EAI = {HOST_NOT_FOUND: "EAI_NONAME", TRY_AGAIN: "EAI_AGAIN", NO_RECOVERY: "EAI_FAIL", NO_DATA: "EAI_NODATA"}
_TIMEOUT = 100                       # internal: TRY_AGAIN that ends the search list (no reply)
FAMILIES = {"AF_UNSPEC": ("A", "AAAA"), "AF_INET": ("A",), "AF_INET6": ("AAAA",)}
# dnslib's codes as plain ints, read once (each QTYPE.X / RCODE.X is a Python-level lookup)
_NOERROR, _SERVFAIL, _NXDOMAIN = RCODE.NOERROR, RCODE.SERVFAIL, RCODE.NXDOMAIN
_ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
_RCODE_NAMES = {i: RCODE.get(i) for i in range(16)}


@dataclass(frozen=True)
class StubQuery:
    """One query the stub sent and what came back."""

    qname: str
    qtype: str
    rcode: Optional[str]                 # None: no reply
    answers: tuple[str, ...] = ()        # rdata of the answer section, as text
    truncated: bool = False
    transport: str = "udp"


@dataclass
class StubResult:
    name: str
    family: str
    resolv_conf: ResolvConf
    steps: list[StubQuery] = field(default_factory=list)
    answer_ips: list[str] = field(default_factory=list)
    answered_name: Optional[str] = None
    error: Optional[str] = None          # None on success, else EAI_NONAME / EAI_NODATA / EAI_AGAIN / EAI_FAIL

    @property
    def queries(self) -> list[tuple[str, str]]:
        return [(q.qname, q.qtype) for q in self.steps]

    @property
    def ok(self) -> bool:
        return self.error is None


def search_candidates(rc: ResolvConf, name: str) -> list[str]:
    """The names the walk would try, in order, if every step failed with NXDOMAIN."""
    dots, absolute = _dots(name)
    if absolute:
        return [name]
    out = []
    if dots >= rc.ndots:
        out.append(name + ".")
    out += [f"{name}.{d.strip('.')}." for d in rc.searches if d.strip(".")]   # RES_DEFNAMES/RES_DNSRCH on
    if dots < rc.ndots and not (dots == 0 and rc.searches and rc.has_option("no-tld-query")):
        out.append(name + ".")
    return out


def search(rc: ResolvConf, name: str, query_fn: QueryFn, family: str = "AF_UNSPEC",
           tcp_query_fn: Optional[QueryFn] = None) -> StubResult:
    """Walk the search list for `name` as glibc's getaddrinfo would; see the module docstring."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: expected one of {', '.join(FAMILIES)}")
    result = StubResult(name=name, family=family, resolv_conf=rc)
    dots, absolute = _dots(name)
    base = name.rstrip(".")
    saved: Optional[int] = None
    tried_as_is = False
    if absolute or dots >= rc.ndots:
        herr = _step(result, base + ".", query_fn, tcp_query_fn)
        if herr is None or absolute:
            return _finish(result, herr)
        saved, tried_as_is = (TRY_AGAIN if herr == _TIMEOUT else herr), True
    got_nodata = got_servfail = False
    searched = False
    last: Optional[int] = None
    for domain in rc.searches:
        d = domain.strip(".")
        searched = True
        if not d:
            continue                                       # the root on the list: that is the as-is query
        herr = _step(result, f"{base}.{d}.", query_fn, tcp_query_fn)
        if herr is None:
            return _finish(result, None)
        last = TRY_AGAIN if herr == _TIMEOUT else herr
        if herr == NO_DATA:
            got_nodata = True
        elif herr == HOST_NOT_FOUND:
            pass
        elif herr == TRY_AGAIN:                            # only SERVFAIL in the first reply goes on
            got_servfail = True
        else:
            break                                          # any other error ends the search list
    root_on_list = any(not d.strip(".") for d in rc.searches)
    skip_tld = dots == 0 and searched and rc.has_option("no-tld-query")
    if not tried_as_is and not root_on_list and not skip_tld:
        herr = _step(result, base + ".", query_fn, tcp_query_fn)
        if herr is None:
            return _finish(result, None)
        last = TRY_AGAIN if herr == _TIMEOUT else herr
    if saved is not None:
        final = saved
    elif got_nodata:
        final = NO_DATA
    elif got_servfail:
        final = TRY_AGAIN
    else:
        final = last if last is not None else HOST_NOT_FOUND
    return _finish(result, final)


def resolve(pod: Any, name: str, cluster: Any, query_fn: QueryFn, family: str = "AF_UNSPEC",
            resolv_conf: Optional[ResolvConf] = None, tcp_query_fn: Optional[QueryFn] = None) -> StubResult:
    """getaddrinfo(name) in `pod`: its kubelet-written resolv.conf, then the glibc walk."""
    rc = resolv_conf or pod_resolv_conf(pod, cluster.config)
    return search(rc, name, query_fn, family, tcp_query_fn)


# ---------------------------------------------------------------------- internals
def _dots(name: str) -> tuple[int, bool]:
    absolute = name.endswith(".")
    return name.rstrip(".").count(".") + (1 if absolute and name != "." else 0), absolute


def _step(result: StubResult, qname: str, query_fn: QueryFn, tcp_query_fn: Optional[QueryFn]) -> Optional[int]:
    """Send this step's queries; None on success (answers recorded), else the step's h_errno."""
    replies: list[Optional[DNSRecord]] = []
    steps = result.steps
    answered = timeout = False
    for qtype in FAMILIES[result.family]:
        reply = query_fn(qname, qtype)
        steps.append(_record(qname, qtype, reply, "udp"))
        if reply is not None and reply.header.tc and tcp_query_fn is not None:
            reply = tcp_query_fn(qname, qtype)             # TC=1: glibc asks again over TCP
            steps.append(_record(qname, qtype, reply, "tcp"))
        replies.append(reply)
        if reply is None:
            timeout = True
        elif reply.rr and reply.header.rcode == _NOERROR:
            answered = True
    if answered:
        ips = []
        for r in replies:
            if r is None or r.header.rcode != _NOERROR:
                continue
            ips += [str(rr.rdata) for rr in r.rr if rr.rtype in _ADDRESS_TYPES]
        result.answer_ips = ips
        result.answered_name = qname
        return None
    if timeout:
        return _TIMEOUT                                    # no reply after all retries (not SERVFAIL)
    first = replies[0]
    rcode = first.header.rcode if first.header.rcode != _NOERROR else replies[-1].header.rcode
    if rcode == _NXDOMAIN:
        return HOST_NOT_FOUND
    if rcode == _SERVFAIL:
        # TRY_AGAIN; the search loop goes on only when the first (A) reply itself was SERVFAIL
        return TRY_AGAIN if first.header.rcode == _SERVFAIL else _TIMEOUT
    if rcode == _NOERROR:
        return NO_DATA
    return NO_RECOVERY


def _record(qname: str, qtype: str, reply: Optional[DNSRecord], transport: str) -> StubQuery:
    if reply is None:
        return StubQuery(qname, qtype, None, transport=transport)
    header = reply.header
    answers = getattr(reply, "answers", None)         # netsim.dns.wire.Reply: the rdata as text already
    if answers is None:
        answers = tuple(str(rr.rdata) for rr in reply.rr)
    return _stub_query(qname, qtype, header.rcode, answers, bool(header.tc), transport)


@functools.lru_cache(maxsize=4096)
def _stub_query(qname: str, qtype: str, rcode: int, answers: tuple[str, ...], tc: bool, transport: str
                ) -> StubQuery:
    """The record of one answered query: immutable and a pure function of its fields, so the same
    answer to the same question (a pod's search walk asks a few names again and again) is one
    object, built once."""
    return StubQuery(qname, qtype, _RCODE_NAMES.get(rcode) or RCODE.get(rcode), answers, tc, transport)


def _finish(result: StubResult, herr: Optional[int]) -> StubResult:
    herr = TRY_AGAIN if herr == _TIMEOUT else herr
    result.error = None if herr is None else EAI.get(herr, "EAI_FAIL")
    return result


GLIBC_EDNS_SIZE = 1200      # resolv/res_mkquery.c: the EDNS0 buffer glibc advertises with `options edns0`


def glibc_query(qname: str, qtype: str, rng: Any, edns0: bool = False) -> DNSRecord:
    """The query glibc builds: random id, RD=1, no AD, an OPT RR only with `options edns0`."""
    from dnslib import EDNS0
    q = DNSRecord.question(qname, qtype)
    q.header.id = rng.getrandbits(16)
    if edns0:
        q.add_ar(EDNS0(udp_len=GLIBC_EDNS_SIZE))
    return q


def wire_query_fns(resolver: Any, rc: ResolvConf, rng: Any) -> tuple[QueryFn, QueryFn]:
    """(udp, tcp) query functions that send glibc-shaped queries through netsim.dns.message.handle.

    The UDP one sees the same truncation a real client would (512 bytes without `options edns0`).
    """
    from netsim.dns.message import handle
    edns0 = rc.has_option("edns0")

    def over(transport: str) -> QueryFn:
        def fn(qname: str, qtype: str) -> Optional[DNSRecord]:
            data = handle(resolver, glibc_query(qname, qtype, rng, edns0).pack(), transport)
            return DNSRecord.parse(data) if data is not None else None
        return fn
    return over("udp"), over("tcp")
