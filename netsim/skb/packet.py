"""An IPv4 datagram in a bytearray, with header fields read and written in place.

Every write patches the affected checksums incrementally (RFC 1624, eqn. 3:
``HC' = ~(~HC + ~m + m')``): the IPv4 header checksum for address/TTL changes,
the TCP/UDP checksum for addresses (pseudo-header) and ports, the ICMP checksum
for the echo identifier. SCTP's CRC32c cannot be patched incrementally, so a port
write recomputes it (addresses are not covered by SCTP's checksum, RFC 4960 §6.8).

Besides the bytes, a Packet carries skb-like metadata the kernel keeps next to a
packet: ``mark`` (skb->mark), ``iif``/``oif`` (in/out interface), ``ct`` (the
conntrack entry), ``ctstate`` and ``ct_reply`` (direction relative to the entry).

Scapy is used only by :meth:`Packet.to_scapy` / :meth:`Packet.from_scapy` (display
and pcap); the hot path is struct and int arithmetic.
"""
from __future__ import annotations

import functools
import socket
import struct
from typing import Any, Optional

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132

PROTO_NAMES = {IPPROTO_ICMP: "icmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}
PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}

# TCP flag bits (RFC 9293 §3.1), in the order tcpdump prints them.
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}

# ICMP types whose header carries an identifier at offset 4 (RFC 792).
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
_ICMP_QUERY_TYPES = frozenset({0, 8, 13, 14, 15, 16, 17, 18})
_ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ADDRS = struct.Struct("!II")


class PacketError(ValueError):
    """A buffer that is not a well-formed IPv4 datagram of a supported protocol."""


def ip2int(ip: str) -> int:
    """Dotted quad → host-order integer."""
    try:
        return _U32.unpack(socket.inet_pton(socket.AF_INET, ip))[0]
    except (OSError, TypeError):
        raise PacketError(f"not an IPv4 address: {ip!r}") from None


def int2ip(n: int) -> str:
    """Integer → dotted quad."""
    return socket.inet_ntoa(_U32.pack(n & 0xFFFFFFFF))


def prefix_mask(plen: int) -> int:
    """Prefix length → 32-bit netmask (/24 → 0xFFFFFF00, /0 → 0)."""
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Internet checksum (RFC 1071) of ``data``: ones' complement of the ones' complement sum.

    The 16-bit ones' complement sum of the words equals the buffer read as one big-endian integer
    modulo 0xFFFF (2**16 ≡ 1 mod 0xFFFF), which CPython computes far faster than a word loop.
    """
    v = int.from_bytes(data, "big")
    if len(data) & 1:
        v <<= 8                             # odd length: pad with a zero byte
    return _finish(v + initial)


def _finish(v: int) -> int:
    """~fold(v): v is a sum of 16-bit words (or any integer congruent to one modulo 0xFFFF)."""
    r = v % 0xFFFF
    if r == 0 and v:
        r = 0xFFFF                          # the folded sum of non-zero words is never 0
    return ~r & 0xFFFF


def csum_replace16(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for one 16-bit word: the new checksum after ``old`` becomes ``new``."""
    return _finish((~hc & 0xFFFF) + (~old & 0xFFFF) + new)


def csum_replace32(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for a 32-bit field (two 16-bit words), e.g. an IPv4 address."""
    s = (~hc & 0xFFFF) + (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
    return _finish(s)


def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected (RFC 4960 appendix B)
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()


def crc32c(data: bytes | bytearray) -> int:
    """CRC32c as SCTP uses it (RFC 4960 appendix B)."""
    c = 0xFFFFFFFF
    t = _CRC32C
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def parse_tcp_flags(flags: str) -> int:
    """"SA" → 0x12. Letters as tcpdump/scapy print them: F S R P A U E C."""
    bits = 0
    for ch in flags.upper():
        if ch not in TCP_FLAG_BITS:
            raise PacketError(f"unknown TCP flag {ch!r} in {flags!r} (expected letters of FSRPAUEC)")
        bits |= TCP_FLAG_BITS[ch]
    return bits


def format_tcp_flags(bits: int) -> str:
    return "".join(ch for ch, b in TCP_FLAG_BITS.items() if bits & b)


_IP_HDR = struct.Struct("!BBHHHBBHII")
_TCP_HDR = struct.Struct("!BBHHHBBHIIHHIIBBHHH")     # IPv4 header + option-less TCP header
_UDP_HDR = struct.Struct("!BBHHHBBHIIHHHH")          # IPv4 header + UDP header
_ICMP_HDR = struct.Struct("!BBHHHBBHIIBBHHH")        # IPv4 header + ICMP header (id/seq or unused)


def _ip_sum(src: int, dst: int, proto: int, total_len: int, ttl: int, ident: int, frag: int = 0x4000) -> int:
    """The 16-bit word sum of the header _ip_header builds (checksum field zero; DF set unless told)."""
    return 0x4500 + total_len + ident + frag + (ttl << 8 | proto) + (src >> 16) + (src & 0xFFFF) \
        + (dst >> 16) + (dst & 0xFFFF)


def _ip_header(src: int, dst: int, proto: int, total_len: int, ttl: int, ident: int) -> bytearray:
    ident &= 0xFFFF
    return bytearray(_IP_HDR.pack(0x45, 0, total_len, ident, 0x4000, ttl, proto,
                                  _finish(_ip_sum(src, dst, proto, total_len, ttl, ident)), src, dst))


def _pseudo_sum(src: int, dst: int, proto: int, length: int) -> int:
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length


def _data_sum(data: bytes) -> int:
    """A value congruent (mod 0xFFFF) to the word sum of ``data`` placed at an even offset."""
    v = int.from_bytes(data, "big")
    return v << 8 if len(data) & 1 else v


def _addr(a: "int | str") -> int:
    return a if type(a) is int else ip2int(a)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=64)
def _flags(flags: str) -> int:
    """parse_tcp_flags, memoised (a pure function of a handful of strings)."""
    return parse_tcp_flags(flags)


class Packet:
    """A real IPv4 datagram (TCP, UDP, ICMP, SCTP) plus kernel-style metadata.

    The addresses and ports are decoded once (``_src _dst _sport _dport``) and kept in step by the
    setters, so reading them — what every rule match does — costs no struct call. Write header
    fields through the setters; code that writes ``buf`` directly must call :meth:`reparse`.
    """

    __slots__ = ("buf", "mark", "iif", "oif", "ct", "ctstate", "ct_reply", "physdev_in", "physdev_out",
                 "ipvs_property", "_l4", "_proto", "_src", "_dst", "_sport", "_dport", "_poff")

    def __init__(self, buf: bytes | bytearray) -> None:
        if not isinstance(buf, bytearray):
            buf = bytearray(buf)
        if len(buf) < 20 or buf[0] >> 4 != 4:
            raise PacketError("not an IPv4 datagram (need version 4 and at least 20 bytes)")
        ihl = (buf[0] & 0x0F) * 4
        if ihl < 20 or len(buf) < ihl:
            raise PacketError(f"bad IPv4 header length {ihl}")
        self.buf = buf
        self._l4 = ihl
        self._proto = buf[9]
        self.mark = 0
        self.iif: Optional[str] = None
        self.oif: Optional[str] = None
        self.ct: Any = None
        self.ctstate: Optional[str] = None
        self.ct_reply = False
        self.physdev_in: Optional[str] = None    # bridge port a bridged frame came in on (br_netfilter)
        self.physdev_out: Optional[str] = None
        self.ipvs_property = False    # skb->ipvs_property: IPVS handled it on this host (its later hooks skip it)
        self.reparse()

    def reparse(self) -> None:
        """Decode addresses and ports from ``buf`` again (after writing header bytes directly)."""
        buf = self.buf
        l4 = self._l4
        self._proto = p = buf[9]
        self._src, self._dst = _ADDRS.unpack_from(buf, 12)
        if p == IPPROTO_TCP or p == IPPROTO_UDP or p == IPPROTO_SCTP:
            off: Optional[int] = l4
        elif p == IPPROTO_ICMP and len(buf) > l4 and buf[l4] in _ICMP_QUERY_TYPES:
            off = l4 + 4             # echo identifier stands in for both ports, as conntrack does
        else:
            off = None
        self._poff = off
        if off is not None and len(buf) >= off + 4:
            self._sport = buf[off] << 8 | buf[off + 1]
            self._dport = self._sport if p == IPPROTO_ICMP else buf[off + 2] << 8 | buf[off + 3]
        else:
            self._sport = self._dport = 0

    @classmethod
    def _built(cls, buf: bytearray, proto: int, src: int, dst: int, poff: Optional[int], sport: int,
               dport: int) -> "Packet":
        """A packet from a buffer a builder just made (no validation or decoding needed)."""
        p = cls.__new__(cls)
        p.buf = buf
        p._l4 = 20
        p._proto = proto
        p._src = src
        p._dst = dst
        p._poff = poff
        p._sport = sport
        p._dport = dport
        p.mark = 0
        p.iif = p.oif = p.ct = p.ctstate = p.physdev_in = p.physdev_out = None
        p.ct_reply = p.ipvs_property = False
        return p

    # ------------------------------------------------------------------ builders
    @classmethod
    def tcp(cls, src: "str | int", dst: "str | int", sport: int, dport: int, flags: str = "S",
            payload: bytes = b"", seq: int = 0, ack: int = 0, window: int = 64240, ttl: int = 64,
            ident: int = 1) -> "Packet":
        """A TCP segment (no options); addresses as dotted quads or integers."""
        s, d = _addr(src), _addr(dst)
        bits = _flags(flags)
        seq &= 0xFFFFFFFF
        ack &= 0xFFFFFFFF
        ident &= 0xFFFF
        seg_len = 20 + len(payload)
        total = 20 + seg_len
        tsum = _pseudo_sum(s, d, IPPROTO_TCP, seg_len) + sport + dport + (seq >> 16) + (seq & 0xFFFF) \
            + (ack >> 16) + (ack & 0xFFFF) + (0x5000 | bits) + window
        if payload:
            tsum += _data_sum(payload)
        buf = bytearray(_TCP_HDR.pack(0x45, 0, total, ident, 0x4000, ttl, IPPROTO_TCP,
                                      _finish(_ip_sum(s, d, IPPROTO_TCP, total, ttl, ident)), s, d,
                                      sport, dport, seq, ack, 0x50, bits, window, _finish(tsum), 0))
        if payload:
            buf += payload
        return cls._built(buf, IPPROTO_TCP, s, d, 20, sport, dport)

    @classmethod
    def udp(cls, src: "str | int", dst: "str | int", sport: int, dport: int, payload: bytes = b"",
            ttl: int = 64, ident: int = 1, df: bool = True) -> "Packet":
        """A UDP datagram; ``df=False`` clears Don't Fragment (as VXLAN's outer header has it)."""
        s, d = _addr(src), _addr(dst)
        frag = 0x4000 if df else 0
        ident &= 0xFFFF
        ulen = 8 + len(payload)
        total = 20 + ulen
        usum = _pseudo_sum(s, d, IPPROTO_UDP, ulen) + sport + dport + ulen
        if payload:
            usum += _data_sum(payload)
        c = _finish(usum) or 0xFFFF     # RFC 768: a computed 0 is sent as all ones
        buf = bytearray(_UDP_HDR.pack(0x45, 0, total, ident, frag, ttl, IPPROTO_UDP,
                                      _finish(_ip_sum(s, d, IPPROTO_UDP, total, ttl, ident, frag)),
                                      s, d,
                                      sport, dport, ulen, c))
        if payload:
            buf += payload
        return cls._built(buf, IPPROTO_UDP, s, d, 20, sport, dport)

    @classmethod
    def icmp(cls, src: "str | int", dst: "str | int", type: int = ICMP_ECHO_REQUEST, code: int = 0, id: int = 0,
             seq: int = 0, payload: bytes = b"", ttl: int = 64, ident: int = 1) -> "Packet":
        """ICMP echo (default) or any type; for error types ``payload`` is the quoted datagram."""
        s, d = _addr(src), _addr(dst)
        ident &= 0xFFFF
        query = type in _ICMP_QUERY_TYPES
        if not query:
            id = seq = 0
        total = 20 + 8 + len(payload)
        csum = (type << 8 | code) + id + seq
        if payload:
            csum += _data_sum(payload)
        buf = bytearray(_ICMP_HDR.pack(0x45, 0, total, ident, 0x4000, ttl, IPPROTO_ICMP,
                                       _finish(_ip_sum(s, d, IPPROTO_ICMP, total, ttl, ident)), s, d,
                                       type, code, _finish(csum), id, seq))
        if payload:
            buf += payload
        if query:
            return cls._built(buf, IPPROTO_ICMP, s, d, 24, id, id)
        return cls._built(buf, IPPROTO_ICMP, s, d, None, 0, 0)

    @classmethod
    def icmp_error(cls, src: "str | int", original: "Packet", type: int = ICMP_DEST_UNREACH, code: int = 3,
                   ttl: int = 64) -> "Packet":
        """An ICMP error about ``original`` (RFC 792: its IP header + first 8 bytes of data), sent to its source.

        code 3 = port unreachable (what a host sends for a UDP port nobody listens on);
        kube-proxy's REJECT uses ``--reject-with icmp-port-unreachable`` too.
        """
        quoted = bytes(original.buf[: original._l4 + 8])
        return cls.icmp(src, original._src, type=type, code=code, payload=quoted, ttl=ttl)

    @classmethod
    def sctp(cls, src: "str | int", dst: "str | int", sport: int, dport: int, vtag: int = 0, chunks: bytes = b"",
             ttl: int = 64, ident: int = 1) -> "Packet":
        s, d = _addr(src), _addr(dst)
        seg = bytearray(struct.pack("!HHII", sport, dport, vtag, 0)) + chunks
        struct.pack_into("<I", seg, 8, crc32c(seg))
        return cls(_ip_header(s, d, IPPROTO_SCTP, 20 + len(seg), ttl, ident) + seg)

    def copy(self) -> "Packet":
        p = Packet.__new__(Packet)
        p.buf = bytearray(self.buf)
        p._l4 = self._l4
        p._proto = self._proto
        p._src = self._src
        p._dst = self._dst
        p._sport = self._sport
        p._dport = self._dport
        p._poff = self._poff
        p.mark = self.mark
        p.iif = self.iif
        p.oif = self.oif
        p.ct = self.ct
        p.ctstate = self.ctstate
        p.ct_reply = self.ct_reply
        p.physdev_in = self.physdev_in
        p.physdev_out = self.physdev_out
        p.ipvs_property = self.ipvs_property
        return p

    # ------------------------------------------------------------------ checksum plumbing
    def _l4_csum_offset(self) -> Optional[int]:
        """Offset of the checksum covering the pseudo-header, or None (ICMP, SCTP, UDP without one)."""
        p = self._proto
        if p == IPPROTO_TCP:
            return self._l4 + 16
        if p == IPPROTO_UDP:
            off = self._l4 + 6
            if self.buf[off] == 0 and self.buf[off + 1] == 0:
                return None  # RFC 768: zero means the sender computed none; leave it so
            return off
        return None

    def _patch(self, off: int, old: int, new: int, wide: bool) -> None:
        buf = self.buf
        hc = buf[off] << 8 | buf[off + 1]
        c = csum_replace32(hc, old, new) if wide else csum_replace16(hc, old, new)
        if self._proto == IPPROTO_UDP and off == self._l4 + 6 and c == 0:
            c = 0xFFFF
        buf[off] = c >> 8
        buf[off + 1] = c & 0xFF

    def _set_addr(self, off: int, old: int, new: int) -> None:
        _U32.pack_into(self.buf, off, new)
        self._patch(10, old, new, True)
        l4c = self._l4_csum_offset()
        if l4c is not None:
            self._patch(l4c, old, new, True)

    def _set_port(self, off: int, new: int) -> None:
        buf = self.buf
        old = buf[off] << 8 | buf[off + 1]
        if old == new:
            return
        buf[off] = new >> 8 & 0xFF
        buf[off + 1] = new & 0xFF
        p = self._proto
        if p == IPPROTO_SCTP:
            self._refresh_sctp_crc()
        elif p == IPPROTO_ICMP:
            self._patch(self._l4 + 2, old, new, False)
        else:
            l4c = self._l4_csum_offset()
            if l4c is not None:
                self._patch(l4c, old, new, False)

    def _refresh_sctp_crc(self) -> None:
        seg = self.buf[self._l4:]
        if len(seg) < 12:
            # an ICMP error quotes 8 bytes of the transport header: the checksum is not there to
            # update (net/netfilter/nf_nat_proto.c sctp_manip_pkt, "hdrsize < sizeof(*hdr)")
            return
        seg[8:12] = b"\x00\x00\x00\x00"
        struct.pack_into("<I", self.buf, self._l4 + 8, crc32c(seg))

    # ------------------------------------------------------------------ IPv4 header
    @property
    def proto(self) -> int:
        return self._proto

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self._proto, str(self._proto))

    @property
    def src(self) -> int:
        return self._src

    @src.setter
    def src(self, value: int) -> None:
        old = self._src
        if old != value:
            self._set_addr(12, old, value)
            self._src = value

    @property
    def dst(self) -> int:
        return self._dst

    @dst.setter
    def dst(self, value: int) -> None:
        old = self._dst
        if old != value:
            self._set_addr(16, old, value)
            self._dst = value

    @property
    def src_ip(self) -> str:
        return socket.inet_ntoa(self.buf[12:16])

    @property
    def dst_ip(self) -> str:
        return socket.inet_ntoa(self.buf[16:20])

    @property
    def ttl(self) -> int:
        return self.buf[8]

    @ttl.setter
    def ttl(self, value: int) -> None:
        buf = self.buf
        old = buf[8] << 8 | buf[9]
        buf[8] = value & 0xFF
        self._patch(10, old, buf[8] << 8 | buf[9], False)

    def decrement_ttl(self) -> None:
        """ip_decrease_ttl: TTL - 1 with the header checksum patched (RFC 1624 eqn. 3, as the setter)."""
        buf = self.buf
        ttl = buf[8]
        buf[8] = (ttl - 1) & 0xFF
        # ~old + new of the TTL/protocol word: 0xFFFF - 0x100, or + 0xFF00 when a TTL of 0 wraps to 255
        v = (~(buf[10] << 8 | buf[11]) & 0xFFFF) + (0xFEFF if ttl else 0x1FEFF)
        r = v % 0xFFFF                          # _finish, inline
        c = ~(0xFFFF if r == 0 and v else r) & 0xFFFF
        buf[10] = c >> 8
        buf[11] = c & 0xFF

    @property
    def total_length(self) -> int:
        return _U16.unpack_from(self.buf, 2)[0]

    @property
    def ip_checksum(self) -> int:
        return _U16.unpack_from(self.buf, 10)[0]

    # ------------------------------------------------------------------ transport
    @property
    def is_icmp_query(self) -> bool:
        return self._proto == IPPROTO_ICMP and self.buf[self._l4] in _ICMP_QUERY_TYPES

    @property
    def is_icmp_error(self) -> bool:
        return self._proto == IPPROTO_ICMP and self.buf[self._l4] in _ICMP_ERROR_TYPES

    def nat_rewrite(self, dst: bool, ip: int, port: int) -> tuple[int, int]:
        """A NAT manip of a TCP or UDP packet: the destination (``dst``) or source address and port
        become ``ip`` and ``port`` (nf_nat_ipv4_manip_pkt, then the transport's manip: tcp_manip_pkt /
        udp_manip_pkt, each checksum patched with inet_proto_csum_replace4/2 as RFC 1624 eqn. 3).
        The same bytes, in the same order of patches, as setting ``dst``/``dport`` (or
        ``src``/``sport``) one after the other, in one call: the address's word sums are added to
        both checksums once. Returns the old (address, port). Other protocols go through the setters."""
        p = self._proto
        old_port = self._dport if dst else self._sport
        if p != IPPROTO_TCP and p != IPPROTO_UDP:
            if dst:
                old = self._dst
                self.dst = ip
                if old_port != port:
                    self.dport = port
            else:
                old = self._src
                self.src = ip
                if old_port != port:
                    self.sport = port
            return old, old_port
        buf = self.buf
        l4 = self._l4
        if p == IPPROTO_TCP:
            coff: Optional[int] = l4 + 16
        else:
            coff = l4 + 6
            if buf[coff] == 0 and buf[coff + 1] == 0:
                coff = None            # RFC 768: no checksum was computed; it stays so
        old = self._dst if dst else self._src
        # the transport checksum's patch: the address's words, then the port's, added up and folded
        # once — the same checksum as patching one after the other (two sums congruent modulo 0xFFFF,
        # zero only together), which the setters do
        delta = 0
        if old != ip:
            _U32.pack_into(buf, 16 if dst else 12, ip)
            delta = (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (ip >> 16) + (ip & 0xFFFF)
            v = (~(buf[10] << 8 | buf[11]) & 0xFFFF) + delta
            r = v % 0xFFFF                     # _finish, inline
            c = ~(0xFFFF if r == 0 and v else r) & 0xFFFF
            buf[10] = c >> 8
            buf[11] = c & 0xFF
            if dst:
                self._dst = ip
            else:
                self._src = ip
        if old_port != port:
            port &= 0xFFFF
            off = l4 + 2 if dst else l4
            was = buf[off] << 8 | buf[off + 1]
            if was != port:
                buf[off] = port >> 8
                buf[off + 1] = port & 0xFF
                delta += (~was & 0xFFFF) + port
            if dst:
                self._dport = port
            else:
                self._sport = port
        if coff is not None and delta:         # (a patch by 0 leaves a checksum as it is)
            v = (~(buf[coff] << 8 | buf[coff + 1]) & 0xFFFF) + delta
            r = v % 0xFFFF
            c = ~(0xFFFF if r == 0 and v else r) & 0xFFFF
            if c == 0 and p == IPPROTO_UDP:
                c = 0xFFFF                     # RFC 768: a computed 0 is sent as all ones
            buf[coff] = c >> 8
            buf[coff + 1] = c & 0xFF
        return old, old_port

    def _set_ports(self, which: int, value: int) -> None:
        off = self._poff
        if off is None:
            raise PacketError(f"{self.proto_name} packet has no {'source' if which == 0 else 'destination'} port")
        value &= 0xFFFF
        if self._proto == IPPROTO_ICMP:
            self._set_port(off, value)          # the echo identifier is both "ports"
            self._sport = self._dport = value
        elif which == 0:
            self._set_port(off, value)
            self._sport = value
        else:
            self._set_port(off + 2, value)
            self._dport = value

    @property
    def sport(self) -> int:
        return self._sport

    @sport.setter
    def sport(self, value: int) -> None:
        self._set_ports(0, value)

    @property
    def dport(self) -> int:
        return self._dport

    @dport.setter
    def dport(self, value: int) -> None:
        self._set_ports(2, value)

    @property
    def tcp_flags(self) -> int:
        return self.buf[self._l4 + 13] if self._proto == IPPROTO_TCP else 0

    @property
    def tcp_flags_str(self) -> str:
        return format_tcp_flags(self.tcp_flags)

    @property
    def seq(self) -> int:
        return _U32.unpack_from(self.buf, self._l4 + 4)[0] if self._proto == IPPROTO_TCP else 0

    @property
    def ack(self) -> int:
        return _U32.unpack_from(self.buf, self._l4 + 8)[0] if self._proto == IPPROTO_TCP else 0

    @property
    def icmp_type(self) -> int:
        return self.buf[self._l4] if self._proto == IPPROTO_ICMP else -1

    @property
    def icmp_code(self) -> int:
        return self.buf[self._l4 + 1] if self._proto == IPPROTO_ICMP else -1

    def _l4_header_len(self) -> int:
        p = self._proto
        if p == IPPROTO_TCP:
            return (self.buf[self._l4 + 12] >> 4) * 4
        if p == IPPROTO_UDP or p == IPPROTO_ICMP:
            return 8
        if p == IPPROTO_SCTP:
            return 12
        return 0

    @property
    def payload(self) -> bytes:
        return bytes(self.buf[self._l4 + self._l4_header_len():])

    @payload.setter
    def payload(self, data: bytes) -> None:
        """Replace the L4 payload; lengths and checksums are recomputed in full."""
        start = self._l4 + self._l4_header_len()
        del self.buf[start:]
        self.buf += data
        self.refresh_checksums()

    @property
    def inner(self) -> Optional["Packet"]:
        """For an ICMP error: the quoted datagram (header + 8 bytes), as a Packet; else None."""
        if not self.is_icmp_error or len(self.buf) < self._l4 + 8 + 20:
            return None
        try:
            return Packet(self.buf[self._l4 + 8:])
        except PacketError:
            return None

    def refresh_checksums(self) -> None:
        """Recompute total length and every checksum from scratch (after a payload change)."""
        buf = self.buf
        _U16.pack_into(buf, 2, len(buf))
        _U16.pack_into(buf, 10, 0)
        _U16.pack_into(buf, 10, checksum(buf[: self._l4]))
        seg = buf[self._l4:]
        p = self._proto
        s, d = self.src, self.dst
        if p == IPPROTO_TCP:
            seg[16:18] = b"\x00\x00"
            _U16.pack_into(buf, self._l4 + 16, checksum(seg, _pseudo_sum(s, d, p, len(seg))))
        elif p == IPPROTO_UDP:
            _U16.pack_into(buf, self._l4 + 4, len(seg))
            seg[4:6] = _U16.pack(len(seg))
            seg[6:8] = b"\x00\x00"
            _U16.pack_into(buf, self._l4 + 6, checksum(seg, _pseudo_sum(s, d, p, len(seg))) or 0xFFFF)
        elif p == IPPROTO_ICMP:
            seg[2:4] = b"\x00\x00"
            _U16.pack_into(buf, self._l4 + 2, checksum(seg))
        elif p == IPPROTO_SCTP:
            self._refresh_sctp_crc()

    def checksums_ok(self) -> bool:
        """True when the IPv4 header and L4 checksums verify (what a receiving kernel checks)."""
        buf = self.buf
        if checksum(buf[: self._l4]) != 0:
            return False
        seg = buf[self._l4:]
        p = self._proto
        if p == IPPROTO_TCP:
            return checksum(seg, _pseudo_sum(self.src, self.dst, p, len(seg))) == 0
        if p == IPPROTO_UDP:
            if seg[6] == 0 and seg[7] == 0:
                return True
            return checksum(seg, _pseudo_sum(self.src, self.dst, p, len(seg))) == 0
        if p == IPPROTO_ICMP:
            return checksum(seg) == 0
        if p == IPPROTO_SCTP:
            want = struct.unpack_from("<I", seg, 8)[0]
            seg[8:12] = b"\x00\x00\x00\x00"
            return crc32c(seg) == want
        return True

    # ------------------------------------------------------------------ tuples and display
    def tuple(self) -> tuple[int, int, int, int, int]:
        """(proto, src, sport, dst, dport): the conntrack tuple of this packet."""
        return (self._proto, self._src, self._sport, self._dst, self._dport)

    def summary(self) -> str:
        """One line in tcpdump's spirit: ``tcp 10.244.1.2:40000 > 10.96.0.1:80 [S]``."""
        p = self._proto
        if p == IPPROTO_ICMP:
            t = self.icmp_type
            what = {0: "echo reply", 8: "echo request", 3: "unreachable", 11: "time exceeded"}.get(t, f"type {t}")
            if t == ICMP_DEST_UNREACH:
                what += {0: " (net)", 1: " (host)", 3: " (port)", 13: " (admin prohibited)"}.get(
                    self.icmp_code, f" (code {self.icmp_code})")
            elif self.is_icmp_query:
                what += f" id {self.sport}"
            return f"icmp {self.src_ip} > {self.dst_ip} {what}"
        s = f"{self.proto_name} {self.src_ip}:{self.sport} > {self.dst_ip}:{self.dport}"
        if p == IPPROTO_TCP:
            s += f" [{self.tcp_flags_str}]"
        n = len(self.payload)
        if n:
            s += f" len {n}"
        return s

    def __repr__(self) -> str:
        return f"<Packet {self.summary()} mark={self.mark:#x}>"

    def __bytes__(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return len(self.buf)

    # ------------------------------------------------------------------ scapy (display / pcap only)
    def to_scapy(self) -> Any:
        from scapy.layers.inet import IP  # imported lazily: scapy is slow to import
        return IP(bytes(self.buf))

    @classmethod
    def from_scapy(cls, pkt: Any) -> "Packet":
        from scapy.layers.inet import IP
        if not pkt.haslayer(IP):
            raise PacketError("scapy packet has no IP layer")
        return cls(bytearray(bytes(pkt[IP])))
