"""One DNS message in, one out (or none): the wire rules around the resolver.

What happens between the socket and the plugins, as miekg/dns (the server library CoreDNS uses) and
CoreDNS's ScrubWriter do it:
  - fewer than 12 bytes, or a response (QR=1): dropped, no reply (server.go serveDNS / MsgIgnore);
  - opcode other than QUERY/NOTIFY: NOTIMP; QDCOUNT≠1, ANCOUNT>1, NSCOUNT>1, ARCOUNT>2: FORMERR with
    the header only (defaultMsgAcceptFunc, MsgReject); a body that does not unpack: FORMERR;
  - an exception in the lookup: SERVFAIL (the server never stays silent);
  - request.SizeAndDo: a query with an OPT RR gets one back (its UDP size, version 0, DO kept);
  - request.Scrub / Msg.Truncate: a UDP reply longer than the client's size (512 without EDNS0, else
    the EDNS0 size, at least 512) keeps the question and the records that fit, TC=1 when answer or
    authority records were dropped.
"""
from __future__ import annotations

import struct
from typing import Any, Optional

from dnslib import EDNS0, QTYPE, RCODE, DNSBuffer, DNSHeader, DNSQuestion, DNSRecord

MIN_MSG_SIZE = 512          # dns.MinMsgSize
MAX_MSG_SIZE = 65535        # dns.MaxMsgSize (TCP)
OPT_RR_LEN = 11             # an OPT RR without options
OPCODE_QUERY, OPCODE_NOTIFY = 0, 4


def handle(resolver: Any, data: bytes, protocol: str = "udp") -> Optional[bytes]:
    """The reply bytes for query `data`, or None when the query must be dropped.

    `resolver`: a ClusterDNS, a PodDNS (one CoreDNS pod of it), or anything with answer(request).
    The first two serve repeated questions from their pre-encoded replies (netsim.dns.wire)."""
    wire = _wire(resolver)
    if wire is not None:
        out = wire.lookup(data, protocol)
        if out is not None:
            return out
    if len(data) < 12:
        return None
    _id, flags, qd, an, ns, ar = struct.unpack("!6H", data[:12])
    if flags & 0x8000:
        return None
    opcode = (flags >> 11) & 0xF
    if opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        return _reject(data, RCODE.NOTIMP, with_question=False)
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        return _reject(data, RCODE.FORMERR, with_question=False)
    try:
        request = DNSRecord.parse(data)
    except Exception:
        return _reject(data, RCODE.FORMERR, with_question=True)
    try:
        if wire is not None:
            return wire.answer(data, request, protocol)
        reply = resolver.answer(request)
    except Exception:
        reply = servfail(request)
    return finish_wire(request, reply, protocol)


def _wire(resolver: Any) -> Any:
    wire = getattr(resolver, "wire", None)
    if wire is None:
        make = getattr(resolver, "wire_cache", None)
        wire = make() if callable(make) else None
    return wire


def finish(request: DNSRecord, reply: DNSRecord, protocol: str = "udp") -> DNSRecord:
    """SizeAndDo then Scrub: echo the client's OPT RR and fit a UDP reply into the client's size."""
    _size_and_do(request, reply)
    return truncate(reply, client_size(request, protocol))


def finish_wire(request: DNSRecord, reply: DNSRecord, protocol: str = "udp") -> bytes:
    """``finish(request, reply, protocol).pack()``, packing a reply that fits only once (truncate
    packs it to measure it; dnslib packs the same record to the same bytes every time)."""
    _size_and_do(request, reply)
    data = reply.pack()
    if len(data) <= client_size(request, protocol):
        return bytes(data)
    return bytes(truncate(reply, client_size(request, protocol)).pack())


def _size_and_do(request: DNSRecord, reply: DNSRecord) -> None:
    """SizeAndDo: the client's OPT RR echoed (its UDP size and DO bit), any other OPT dropped."""
    opt = _opt(request)
    if opt is not None:
        do = bool(opt.ttl & 0x8000)
        reply.ar = [r for r in reply.ar if r.rtype != QTYPE.OPT]
        reply.add_ar(EDNS0(udp_len=opt.rclass, flags="do" if do else ""))


def client_size(request: DNSRecord, protocol: str) -> int:
    """request.Size with edns.Size: 65535 on TCP; else the EDNS0 size, never under 512."""
    if protocol == "tcp":
        return MAX_MSG_SIZE
    opt = _opt(request)
    size = opt.rclass if opt is not None else 0
    return max(size, MIN_MSG_SIZE)


def truncate(reply: DNSRecord, size: int) -> DNSRecord:
    """dns.Msg.Truncate: keep the question and the longest prefix of answer/authority/additional that fits."""
    if len(reply.pack()) <= size:
        return reply
    opts = [r for r in reply.ar if r.rtype == QTYPE.OPT]
    extra = [r for r in reply.ar if r.rtype != QTYPE.OPT]
    if opts:
        size -= OPT_RR_LEN
    sections = [("rr", r) for r in reply.rr] + [("auth", r) for r in reply.auth] + [("ar", r) for r in extra]

    def build(n: int) -> DNSRecord:
        m = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap), questions=list(reply.questions))
        for where, r in sections[:n]:
            getattr(m, where).append(r)
        return m

    lo, hi = 0, len(sections)           # the largest n whose packed length fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(build(mid).pack()) <= size:
            lo = mid
        else:
            hi = mid - 1
    out = build(lo)
    dropped_answer = len(out.rr) < len(reply.rr) or len(out.auth) < len(reply.auth)
    out.header.tc = 1 if (reply.header.tc or dropped_answer) else 0
    for o in opts:
        out.add_ar(o)
    return out


def servfail(request: DNSRecord) -> DNSRecord:
    """dns.Msg.SetRcode(request, SERVFAIL): the question kept, not authoritative."""
    h = request.header
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, opcode=h.opcode, rd=h.rd, cd=h.cd, rcode=RCODE.SERVFAIL))
    if request.questions:
        reply.add_question(request.questions[0])
    return reply


def _opt(request: DNSRecord):
    for r in request.ar:
        if r.rtype == QTYPE.OPT:
            return r
    return None


def _reject(data: bytes, rcode: int, with_question: bool) -> bytes:
    """MsgReject / unpack failure: FORMERR (or NOTIMP) echoing id, opcode, RD, CD (and the question if it parsed).

    The header is built with struct rather than dnslib: garbage is answered at the cost of a header,
    so a burst of it cannot hold up the queries queued behind it."""
    _id, flags = struct.unpack("!HH", data[:4])
    flags = 0x8000 | (flags & 0x7800) | (flags & 0x0100) | (flags & 0x0010) | (rcode & 0xF)
    question = _dnslib_question(data) if with_question else b""
    return struct.pack("!6H", _id, flags, 1 if question else 0, 0, 0, 0) + question


def _dnslib_question(data: bytes) -> bytes:
    """The first question as dnslib reads and writes it back, or b"" when it does not parse."""
    try:
        buf = DNSBuffer(data)
        buf.offset = 12
        q = DNSQuestion.parse(buf)
    except Exception:
        return b""
    out = DNSRecord(DNSHeader())
    out.add_question(q)
    return bytes(out.pack()[12:])
