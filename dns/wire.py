"""DNS messages read and written straight from bytes, for the two hot paths.

Server side (`WireCache`): CoreDNS answers the same question with the same bytes while nothing
changes, so a reply is encoded once (dnslib, netsim.dns.message) and served again with the query's
ID and question name (0x20 case) patched in. Only the plain shape is served this way: a QUERY
(opcode 0, QR=0) with one question, no answer/authority records and at most one OPT record
(RFC 1035 §4.1, RFC 6891 §6.1.1); anything else goes the dnslib way. The entries are dropped when
the cluster's record index is rebuilt or the cluster clock moves (the `cache` TTLs count down on it),
and a reply is kept only once asking again gives the same bytes (`ClusterDNS.answer_parts`).
`loadbalance` still shuffles every reply: the shuffle order is drawn from the resolver's RNG exactly
as the dnslib path draws it, and each order's bytes are kept.

Client side (`build_query`, `read_reply`): the stub resolver builds glibc-shaped queries and reads
only rcode, TC and the answer records of a reply; anything beyond A records goes to dnslib.
"""
from __future__ import annotations

import copy
import functools
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from dnslib import QTYPE, DNSRecord

MAX_PERMUTATIONS = 64           # orders kept per question (loadbalance); others are encoded each time
MAX_ENTRIES = 100_000           # questions kept before the cache starts over
_PLAIN_COUNTS = (b"\x00\x01\x00\x00\x00\x00\x00\x00", b"\x00\x01\x00\x00\x00\x00\x00\x01")
_TYPE_OPT = 41


def question_end(data: bytes) -> int:
    """The offset just past the question name of a plain query (see the module docstring), or -1.

    Checks the header (QR=0, opcode QUERY, QDCOUNT=1, AN/NS=0, AR≤1), the name (uncompressed labels
    of 1–63 octets, at most 255 octets, RFC 1035 §3.1), the 4 bytes of type and class, and that what
    follows is exactly nothing or one OPT record (RFC 6891 §6.1.2: owner root, type 41)."""
    n = len(data)
    if n < 17 or data[2] & 0xF8 or data[4:12] not in _PLAIN_COUNTS:
        return -1
    i = 12
    while True:
        length = data[i]
        if length == 0:
            break
        if length > 63:
            return -1                           # a compression pointer or an extended label type
        i += length + 1
        if i >= n or i - 12 > 254:
            return -1
    end = i + 1
    rest = end + 4
    if rest > n:
        return -1
    if data[11] == 0:
        return end if rest == n else -1
    # one OPT RR: root owner, type 41, class (UDP size), TTL (ext-rcode, version, flags), rdlen, rdata
    if rest + 11 > n or data[rest] != 0 or data[rest + 1] != 0 or data[rest + 2] != _TYPE_OPT:
        return -1
    rdlen = (data[rest + 9] << 8) | data[rest + 10]
    return end if rest + 11 + rdlen == n else -1


@dataclass
class _Entry:
    request: DNSRecord
    reply: DNSRecord                        # before loadbalance
    protocol: str
    sections: Optional[tuple]               # rtypes of (answer, authority, additional) to round-robin
    body: bytes = b""                       # the reply when nothing is shuffled
    tail: bytes = b""                       # body after the ID
    orders: dict = field(default_factory=dict)


class WireCache:
    """Pre-encoded replies of one answering resolver (a CoreDNS pod), keyed by the query's bytes
    after the ID — as they came, and with the question name lower-cased when the reply's bytes
    outside the question do not depend on the name's case."""

    def __init__(self, resolver: Any, local_ip: Optional[str] = None) -> None:
        self.resolver = resolver
        self.local_ip = local_ip
        self._folded: dict[str, dict[bytes, _Entry]] = {"udp": {}, "tcp": {}}   # per protocol
        self._exact: dict[str, dict[bytes, _Entry]] = {"udp": {}, "tcp": {}}
        # folded key -> the entries stored under it whose case check has not run yet, in order: the
        # check (two more answers and encodings) runs when a query first needs the folded table
        self._pending: dict[str, dict[bytes, list[tuple[bytes, int, _Entry]]]] = {"udp": {}, "tcp": {}}
        self._token: Any = None
        self._lock = threading.Lock()
        self.hits = 0

    # ------------------------------------------------------------------ hot path
    def lookup(self, data: bytes, protocol: str) -> Optional[bytes]:
        """The reply for `data`, or None when this query must take the dnslib path."""
        if type(data) is not bytes:
            data = bytes(data)
        token = self.resolver.snapshot_token()
        if token != self._token:
            self._reset(token)
            return None
        entry = self._exact[protocol].get(data[2:])         # the same bytes as a query seen before
        if entry is not None:
            self.hits += 1
            if entry.sections is None:
                return data[:2] + entry.tail
            return data[:2] + self._ordered(entry)[2:]
        end = question_end(data)
        if end < 0:
            return None
        key = data[2:12] + data[12:end].lower() + data[end:]
        if key in self._pending[protocol]:
            self._check_case(protocol, key)
        entry = self._folded[protocol].get(key)
        if entry is None:
            return None
        body = entry.body if entry.sections is None else self._ordered(entry)
        self.hits += 1
        return data[:2] + body[2:12] + data[12:end] + body[end:]

    def exact_table(self, protocol: str) -> Optional[dict]:
        """The current replies by query bytes after the ID (`_Entry` with .sections and .tail), for
        a server loop that checks them once per batch of datagrams; None (after dropping them) when
        the record index or the clock moved since they were encoded."""
        token = self.resolver.snapshot_token()
        if token != self._token:
            self._reset(token)
            return None
        return self._exact.setdefault(protocol, {})

    def _ordered(self, entry: _Entry) -> bytes:
        order = tuple(tuple(self.resolver.round_robin_order(list(t))) if len(t) > 1 else None for t in entry.sections)
        body = entry.orders.get(order)
        if body is None:
            body = self._encode(entry, order)
            if len(entry.orders) < MAX_PERMUTATIONS:
                entry.orders[order] = body
        return body

    # ------------------------------------------------------------------ filling
    def answer(self, data: bytes, request: DNSRecord, protocol: str) -> bytes:
        """The dnslib path's reply bytes for a parsed query; kept for the next identical query when
        the reply is stable and the query has the plain shape."""
        from netsim.dns.message import finish_wire
        data = bytes(data)
        resolver = self.resolver
        token = resolver.snapshot_token()
        reply, stable = resolver.answer_parts(request, self.local_ip)
        sections = resolver.load_balance_sections(reply)
        entry = _Entry(request, reply, protocol, sections)
        if sections is None:
            out = finish_wire(request, _copy(reply), protocol)
            entry.body = out
            entry.tail = out[2:]
        else:
            order = tuple(tuple(resolver.round_robin_order(list(t))) if len(t) > 1 else None for t in sections)
            out = self._encode(entry, order)
            entry.orders[order] = out
        end = question_end(data)
        if stable and end >= 0 and token is not None and token == resolver.snapshot_token():
            with self._lock:
                if token != self._token:
                    self._reset(token)
                exact, folded = self._exact.setdefault(protocol, {}), self._folded.setdefault(protocol, {})
                pending = self._pending.setdefault(protocol, {})
                if len(exact) + len(folded) + len(pending) >= MAX_ENTRIES:
                    exact.clear()
                    folded.clear()
                    pending.clear()
                exact[data[2:]] = entry
                pending.setdefault(data[2:12] + data[12:end].lower() + data[end:], []).append((data, end, entry))
        return out

    def _check_case(self, protocol: str, key: bytes) -> None:
        """Run the case check of the entries waiting under folded ``key``, in the order they were
        stored: each that passes becomes the folded table's entry, as if checked when stored. The
        check asks the resolver without filling its cache (``probe``) at the instant the entries were
        made (a new instant or record index empties the tables first, see :meth:`lookup`), so it
        gives what it would have given then."""
        with self._lock:
            waiting = self._pending.get(protocol, {}).pop(key, None)
            for data, end, entry in waiting or ():
                if self._case_free(data, end, entry):
                    self._folded.setdefault(protocol, {})[key] = entry

    def _reset(self, token: Any) -> None:
        self._folded = {"udp": {}, "tcp": {}}
        self._exact = {"udp": {}, "tcp": {}}
        self._pending = {"udp": {}, "tcp": {}}
        self._token = token

    def _encode(self, entry: _Entry, order: tuple) -> bytes:
        from netsim.dns.message import finish_wire
        reply = _copy(entry.reply)
        for section, positions in zip(("rr", "auth", "ar"), order):
            if positions is not None:
                rrs = getattr(reply, section)
                setattr(reply, section, [rrs[i] for i in positions])
        return finish_wire(entry.request, reply, entry.protocol)

    def _case_free(self, data: bytes, end: int, entry: _Entry) -> bool:
        """Whether the reply's bytes outside the question name are the same for the name in lower
        and in upper case (then any mix of case gets them too, with its own question copied in)."""
        from netsim.dns.message import finish_wire
        base = finish_wire(entry.request, _copy(entry.reply), entry.protocol)
        for variant in (data[12:end].upper(), data[12:end].lower()):
            request = DNSRecord.parse(data[:12] + variant + data[end:])
            reply, _ = self.resolver.answer_parts(request, self.local_ip, probe=True)
            other = finish_wire(request, reply, entry.protocol)
            if other[:12] != base[:12] or other[end:] != base[end:]:
                return False
        return True


def _copy(reply: DNSRecord) -> DNSRecord:
    """A record that finish() may change (sections and header) without touching `reply`."""
    return DNSRecord(copy.copy(reply.header), questions=list(reply.questions), rr=list(reply.rr),
                     auth=list(reply.auth), ar=list(reply.ar))


# ---------------------------------------------------------------------- client side
class ReplyHeader(NamedTuple):
    id: int
    rcode: int
    tc: int


@dataclass(frozen=True)
class AnswerRecord:
    rtype: int
    rdata: str              # presentation form, as str(dnslib rdata)


class Reply(NamedTuple):
    """What a stub resolver reads of a reply: the header's rcode and TC, and the answer records
    (duck-typed like dnslib's DNSRecord for .header.rcode, .header.tc, .rr[i].rtype/.rdata), with
    the answers' rdata as text (``answers``; ``text`` joined, "-" when none). Tuples, as a reply is
    read for every query a pod sends (a frozen dataclass costs a setattr call per field)."""

    header: ReplyHeader
    rr: tuple[AnswerRecord, ...]
    answers: tuple[str, ...]
    text: str


def build_query(qname: str, qtype: str, ident: Optional[int] = None) -> bytes:
    """The bytes of DNSRecord.question(qname, qtype) (RD=1, class IN, no EDNS): a random ID from the
    `random` module as dnslib's DNSHeader draws it, unless given. Names that are not plain ASCII
    labels go through dnslib."""
    if ident is None:
        ident = random.randint(0, 65535)
    tail = _question_tail(qname, qtype)
    if tail is None:
        q = DNSRecord.question(qname, qtype)
        q.header.id = ident
        return q.pack()
    return ident.to_bytes(2, "big") + tail


@functools.lru_cache(maxsize=4096)
def _question_tail(qname: str, qtype: Any) -> Optional[bytes]:
    """A plain query's bytes after its ID (flags RD, one question, class IN), or None when the name
    or type needs dnslib. A pure function of its arguments, so kept for the names asked again (a
    pod's search walk asks the same few names over and over)."""
    t = getattr(QTYPE, qtype, None) if isinstance(qtype, str) else qtype
    name = qname.rstrip(".")
    if t is None or not qname.isascii() or ".." in qname or "\\" in qname:
        return None
    parts = [b""]
    if name:
        for label in name.split("."):
            b = label.encode()
            if not 0 < len(b) < 64:
                return None
            parts.append(bytes((len(b),)) + b)
    return struct.pack("!5H", 0x0100, 1, 0, 0, 0) + b"".join(parts[1:]) + b"\x00" + struct.pack("!HH", t, 1)


def read_reply(data: bytes) -> Any:
    """A `Reply` when every answer record is an IN A record (or there are none), else the full
    dnslib DNSRecord. Malformed bytes raise as DNSRecord.parse does."""
    if type(data) is not bytes:
        data = bytes(data)
    try:
        rcode, tc, records, answers, text = _reply_parts(data[2:])
    except (IndexError, ValueError, struct.error):
        return DNSRecord.parse(data)
    return Reply(ReplyHeader((data[0] << 8) | data[1], rcode, tc), records, answers, text)


@functools.lru_cache(maxsize=4096)
def _reply_parts(body: bytes) -> tuple[int, int, tuple["AnswerRecord", ...], tuple[str, ...], str]:
    """`_read_a_only(body)` with the answers' rdata as text, joined as a note prints them: a pure
    function of the bytes after the ID, so a reply served again with another ID is not read twice;
    what is not plain raises (and is not kept)."""
    rcode, tc, records = _read_a_only(body)
    answers = tuple([r.rdata for r in records])
    return rcode, tc, records, answers, ", ".join(answers) or "-"


class _NotPlain(ValueError):
    pass


def _read_a_only(body: bytes) -> tuple[int, int, tuple[AnswerRecord, ...]]:
    """(rcode, TC, A records) of a reply given its bytes after the ID: the ID is not read, and a
    name's compression pointer is skipped, never followed; what is not plain raises."""
    data = b"\x00\x00" + body
    _ident, flags, qd, an = struct.unpack_from("!4H", data, 0)
    i = 12
    for _ in range(qd):
        i = _skip_name(data, i) + 4
    records = []
    for _ in range(an):
        i = _skip_name(data, i)
        rtype, rclass, _ttl, rdlen = struct.unpack_from("!HHIH", data, i)
        i += 10
        if rtype != QTYPE.A or rclass != 1 or rdlen != 4 or i + 4 > len(data):
            raise _NotPlain("not an A record")
        records.append(AnswerRecord(QTYPE.A, socket.inet_ntoa(data[i:i + 4])))
        i += 4
    if i > len(data):
        raise _NotPlain("short")
    return flags & 0xF, (flags >> 9) & 1, tuple(records)


def _skip_name(data: bytes, i: int) -> int:
    while True:
        length = data[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        if length > 63:
            raise _NotPlain("label type")
        i += length + 1
