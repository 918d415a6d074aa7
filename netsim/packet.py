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
    return ~_fold((~hc & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


def csum_replace32(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for a 32-bit field (two 16-bit words), e.g. an IPv4 address."""
    s = (~hc & 0xFFFF) + (~old >> 16 & 0xFFFF) + (~old & 0xFFFF) + (new >> 16) + (new & 0xFFFF)
    return ~_fold(s) & 0xFFFF


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
_FLAG_BITS: dict[str, int] = {}                      # "SA" -> 0x12, filled as flags strings are seen


def _ip_sum(src: int, dst: int, proto: int, total_len: int, ttl: int, ident: int) -> int:
    """The 16-bit word sum of the header _ip_header builds (checksum field zero)."""
    return 0x4500 + total_len + ident + 0x4000 + (ttl << 8 | proto) + (src >> 16) + (src & 0xFFFF) \
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


def _flags(flags: str) -> int:
    bits = _FLAG_BITS.get(flags)
    if bits is None:
        bits = parse_tcp_flags(flags)
        if len(_FLAG_BITS) < 256:
            _FLAG_BITS[flags] = bits
    return bits


class Packet:
    """A real IPv4 datagram (TCP, UDP, ICMP, SCTP) plus kernel-style metadata."""

    __slots__ = ("buf", "mark", "iif", "oif", "ct", "ctstate", "ct_reply", "physdev_in", "physdev_out",
                 "_l4", "_proto")

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

    # ------------------------------------------------------------------ builders
    @classmethod
    def tcp(cls, src: str, dst: str, sport: int, dport: int, flags: str = "S", payload: bytes = b"",
            seq: int = 0, ack: int = 0, window: int = 64240, ttl: int = 64, ident: int = 1) -> "Packet":
        s, d = ip2int(src), ip2int(dst)
        seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                    5 << 4, parse_tcp_flags(flags), window, 0, 0))
        seg += payload
        _U16.pack_into(seg, 16, checksum(seg, _pseudo_sum(s, d, IPPROTO_TCP, len(seg))))
        return cls(_ip_header(s, d, IPPROTO_TCP, 20 + len(seg), ttl, ident) + seg)

    @classmethod
    def udp(cls, src: str, dst: str, sport: int, dport: int, payload: bytes = b"",
            ttl: int = 64, ident: int = 1) -> "Packet":
        s, d = ip2int(src), ip2int(dst)
        seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)) + payload
        c = checksum(seg, _pseudo_sum(s, d, IPPROTO_UDP, len(seg)))
        _U16.pack_into(seg, 6, c or 0xFFFF)  # RFC 768: a computed 0 is sent as all ones
        return cls(_ip_header(s, d, IPPROTO_UDP, 20 + len(seg), ttl, ident) + seg)

    @classmethod
    def icmp(cls, src: str, dst: str, type: int = ICMP_ECHO_REQUEST, code: int = 0, id: int = 0,
             seq: int = 0, payload: bytes = b"", ttl: int = 64, ident: int = 1) -> "Packet":
        """ICMP echo (default) or any type; for error types ``payload`` is the quoted datagram."""
        s, d = ip2int(src), ip2int(dst)
        if type in _ICMP_QUERY_TYPES:
            rest = struct.pack("!HH", id, seq)
        else:
            rest = b"\x00\x00\x00\x00"
        msg = bytearray(struct.pack("!BBH", type, code, 0) + rest) + payload
        _U16.pack_into(msg, 2, checksum(msg))
        return cls(_ip_header(s, d, IPPROTO_ICMP, 20 + len(msg), ttl, ident) + msg)

    @classmethod
    def icmp_error(cls, src: str, original: "Packet", type: int = ICMP_DEST_UNREACH, code: int = 3,
                   ttl: int = 64) -> "Packet":
        """An ICMP error about ``original`` (RFC 792: its IP header + first 8 bytes of data), sent to its source.

        code 3 = port unreachable (what a host sends for a UDP port nobody listens on);
        kube-proxy's REJECT uses ``--reject-with icmp-port-unreachable`` too.
        """
        quoted = bytes(original.buf[: original._l4 + 8])
        return cls.icmp(src, original.src_ip, type=type, code=code, payload=quoted, ttl=ttl)

    @classmethod
    def sctp(cls, src: str, dst: str, sport: int, dport: int, vtag: int = 0, chunks: bytes = b"",
             ttl: int = 64, ident: int = 1) -> "Packet":
        s, d = ip2int(src), ip2int(dst)
        seg = bytearray(struct.pack("!HHII", sport, dport, vtag, 0)) + chunks
        struct.pack_into("<I", seg, 8, crc32c(seg))
        return cls(_ip_header(s, d, IPPROTO_SCTP, 20 + len(seg), ttl, ident) + seg)

    def copy(self) -> "Packet":
        p = Packet.__new__(Packet)
        p.buf = bytearray(self.buf)
        p._l4 = self._l4
        p._proto = self._proto
        p.mark = self.mark
        p.iif = self.iif
        p.oif = self.oif
        p.ct = self.ct
        p.ctstate = self.ctstate
        p.ct_reply = self.ct_reply
        p.physdev_in = self.physdev_in
        p.physdev_out = self.physdev_out
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

    def _set_addr(self, off: int, new: int) -> None:
        buf = self.buf
        old = _U32.unpack_from(buf, off)[0]
        if old == new:
            return
        _U32.pack_into(buf, off, new)
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
        return _U32.unpack_from(self.buf, 12)[0]

    @src.setter
    def src(self, value: int) -> None:
        self._set_addr(12, value)

    @property
    def dst(self) -> int:
        return _U32.unpack_from(self.buf, 16)[0]

    @dst.setter
    def dst(self, value: int) -> None:
        self._set_addr(16, value)

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

    def _port_off(self, which: int) -> Optional[int]:
        p = self._proto
        if p in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP):
            return self._l4 + which
        if p == IPPROTO_ICMP and self.buf[self._l4] in _ICMP_QUERY_TYPES:
            return self._l4 + 4  # echo identifier stands in for both ports, as conntrack does
        return None

    @property
    def sport(self) -> int:
        off = self._port_off(0)
        return 0 if off is None else self.buf[off] << 8 | self.buf[off + 1]

    @sport.setter
    def sport(self, value: int) -> None:
        off = self._port_off(0)
        if off is None:
            raise PacketError(f"{self.proto_name} packet has no source port")
        self._set_port(off, value)

    @property
    def dport(self) -> int:
        off = self._port_off(2)
        return 0 if off is None else self.buf[off] << 8 | self.buf[off + 1]

    @dport.setter
    def dport(self, value: int) -> None:
        off = self._port_off(2)
        if off is None:
            raise PacketError(f"{self.proto_name} packet has no destination port")
        self._set_port(off, value)

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
        return (self._proto, self.src, self.sport, self.dst, self.dport)

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
