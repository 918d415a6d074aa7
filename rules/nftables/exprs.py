"""nftables expressions that read a packet (nft(8) "PAYLOAD EXPRESSION", "META", "CT", "FIB",
"NUMGEN"): each compiles to a getter ``g(pkt, state) -> value | None`` plus its data type.

None is the kernel's NFT_BREAK: the field is absent (a `tcp dport` of a UDP packet, a `ct` key of a
packet without conntrack, a map miss), so the rule does not match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from netsim.skb.packet import IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP
from netsim.rules.nftables.lexer import NftError
from netsim.rules.nftables.values import CT_STATE, CT_STATUS, FIB_ADDRTYPE, INET_PROTO, parse_int

Getter = Callable[[Any, Any], Any]

_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)
# conntrack's state names on a Packet (netsim.dataplane.conntrack) -> nft ct state bit
_CTSTATE_BITS = {None: CT_STATE["new"], "NEW": CT_STATE["new"], "ESTABLISHED": CT_STATE["established"],
                 "RELATED": CT_STATE["related"], "INVALID": CT_STATE["invalid"],
                 "UNTRACKED": CT_STATE["untracked"]}
_CT_TUPLE_IDX = {"saddr": 1, "daddr": 3, "proto-src": 2, "proto-dst": 4, "protocol": 0}


@dataclass(frozen=True)
class Selector:
    """A compiled expression: how to read it, its data type(s), and its text (for errors)."""

    get: Getter
    dtype: tuple[str, ...]       # one per concatenated field
    text: str
    settable: Optional[str] = None   # "mark" | "ctmark" | "nftrace" for `... set EXPR`

    @property
    def concat(self) -> bool:
        return len(self.dtype) > 1


def _th(offset: int) -> Getter:
    """`th sport|dport`: 16 bits of the transport header (nft_payload NFT_PAYLOAD_TRANSPORT_HEADER), whatever the protocol."""
    def get(p, s):
        if p._proto in _PORT_PROTOS:
            return p._sport if offset == 0 else p._dport
        b = p.buf
        o = p._l4 + offset
        return (b[o] << 8 | b[o + 1]) if len(b) >= o + 2 else None
    return get


def _port(proto: int, which: str) -> Getter:
    # `tcp dport` carries nft's implicit `meta l4proto tcp` dependency
    if which == "sport":
        return lambda p, s: p._sport if p._proto == proto else None
    return lambda p, s: p._dport if p._proto == proto else None


def _ct_tuple(direction: str, key: str) -> Getter:
    idx = _CT_TUPLE_IDX[key]

    def get(p, s):
        ct = p.ct
        if ct is None:
            return None
        return getattr(ct, "orig" if direction == "original" else "reply")[idx]
    return get


def ct_status_bits(ct) -> int:
    if ct is None:
        return 0
    bits = 0
    for name, attr in (("expected", "expected"), ("seen-reply", "seen_reply"), ("assured", "assured"),
                       ("confirmed", "confirmed"), ("snat", "snat"), ("dnat", "dnat")):
        if getattr(ct, attr, False):
            bits |= CT_STATUS[name]
    return bits


def fib_type(addr: int, s) -> int:
    """nft_fib_ipv4 `type` (inet_dev_addr_type without a device): local, broadcast, multicast, else unicast."""
    if addr >> 24 == 127 or addr in s.ctx.local_addrs:
        return FIB_ADDRTYPE["local"]
    if addr == 0xFFFFFFFF:
        return FIB_ADDRTYPE["broadcast"]
    if addr >> 28 == 0xE:
        return FIB_ADDRTYPE["multicast"]
    return FIB_ADDRTYPE["unicast"]


def reciprocal_scale(val: int, n: int) -> int:
    """include/linux/math.h reciprocal_scale: a 32-bit random scaled into [0, n) (nft_numgen.c nft_ng_random_gen)."""
    return (val * n) >> 32


META_KEYS = {
    "mark": (lambda p, s: p.mark, "mark"),
    "iifname": (lambda p, s: p.iif, "ifname"),
    "oifname": (lambda p, s: p.oif, "ifname"),
    "iif": (lambda p, s: p.iif, "ifname"),          # nft resolves the name to an ifindex at load time
    "oif": (lambda p, s: p.oif, "ifname"),
    "l4proto": (lambda p, s: p._proto, "inet_proto"),
    "nfproto": (lambda p, s: 2, "nf_proto"),       # NFPROTO_IPV4: the emulator's packets are IPv4
    "protocol": (lambda p, s: 0x0800, "integer"),   # ETH_P_IP
    "length": (lambda p, s: len(p.buf), "integer"),
    "nftrace": (lambda p, s: 1 if s.nftrace else 0, "integer"),
}
UNQUALIFIED_META = ("mark", "iif", "oif", "iifname", "oifname", "nftrace")
IP_FIELDS = {
    "saddr": (lambda p, s: p._src, "ipv4_addr"),
    "daddr": (lambda p, s: p._dst, "ipv4_addr"),
    "protocol": (lambda p, s: p._proto, "inet_proto"),
    "ttl": (lambda p, s: p.buf[8], "integer"),
    "length": (lambda p, s: p.buf[2] << 8 | p.buf[3], "integer"),
    "id": (lambda p, s: p.buf[4] << 8 | p.buf[5], "integer"),
}
_NONE: Getter = lambda p, s: None   # noqa: E731 - an IPv6 field never matches an IPv4 packet


class SelectorParser:
    """Mixin for the rule compiler: parses one primary expression at the cursor."""

    def peek(self, k: int = 0) -> str: ...          # provided by the compiler
    def take(self, what: str = "") -> str: ...
    def error(self, msg: str) -> NftError: ...

    def primary(self) -> Selector:
        w = self.peek()
        start = self.pos
        if w == "ip":
            self.take()
            f = self.take("an ip header field")
            if f not in IP_FIELDS:
                raise self.error(f"unknown ip header field {f!r} (expected {', '.join(IP_FIELDS)})")
            g, t = IP_FIELDS[f]
            return Selector(g, (t,), f"ip {f}")
        if w == "ip6":
            self.take()
            f = self.take("an ip6 header field")
            if f not in ("saddr", "daddr", "nexthdr", "hoplimit"):
                raise self.error(f"unknown ip6 header field {f!r}")
            return Selector(_NONE, ("ipv6_addr" if f.endswith("addr") else "integer",), f"ip6 {f}")
        if w == "th":
            self.take()
            f = self.take("sport or dport")
            if f not in ("sport", "dport"):
                raise self.error(f"th {f}: expected th sport or th dport")
            return Selector(_th(0 if f == "sport" else 2), ("inet_service",), f"th {f}")
        if w in ("tcp", "udp", "sctp", "udplite") and self.peek(1) in ("sport", "dport", "flags"):
            self.take()
            f = self.take()
            proto = INET_PROTO[w]
            if f == "flags":
                if w != "tcp":
                    raise self.error(f"{w} has no flags field")
                return Selector(lambda p, s: p.buf[p._l4 + 13] if p._proto == IPPROTO_TCP else None,
                                ("tcp_flag",), "tcp flags")
            return Selector(_port(proto, f), ("inet_service",), f"{w} {f}")
        if w == "icmp" and self.peek(1) in ("type", "code", "id", "sequence"):
            self.take()
            f = self.take()
            off = {"type": 0, "code": 1, "id": 4, "sequence": 6}[f]
            wide = f in ("id", "sequence")

            def icmp(p, s, off=off, wide=wide):
                if p._proto != IPPROTO_ICMP:
                    return None
                o = p._l4 + off
                return (p.buf[o] << 8 | p.buf[o + 1]) if wide else p.buf[o]
            return Selector(icmp, ("icmp_type" if f == "type" else "integer",), f"icmp {f}")
        if w == "meta" or w in UNQUALIFIED_META:
            if w == "meta":
                self.take()
            key = self.take("a meta key")
            if key not in META_KEYS:
                raise self.error(f"unknown meta key {key!r} (expected one of {', '.join(META_KEYS)})")
            g, t = META_KEYS[key]
            settable = {"mark": "mark", "nftrace": "nftrace"}.get(key)
            return Selector(g, (t,), f"meta {key}", settable)
        if w == "ct":
            return self._ct()
        if w == "fib":
            return self._fib()
        if w == "numgen":
            return self._numgen()
        self.pos = start
        raise self.error(f"unknown expression {w!r}")

    def _ct(self) -> Selector:
        self.take()
        direction = None
        if self.peek() in ("original", "reply"):
            direction = self.take()
        key = self.take("a ct key")
        if key == "ip":
            key = self.take("saddr or daddr")
            if key not in ("saddr", "daddr"):
                raise self.error(f"ct {direction} ip {key}: expected saddr or daddr")
        if direction is None:
            if key == "state":
                return Selector(lambda p, s: _CTSTATE_BITS.get(p.ctstate, 8), ("ct_state",), "ct state")
            if key == "status":
                return Selector(lambda p, s: ct_status_bits(p.ct) if p.ct is not None else None,
                                ("ct_status",), "ct status")
            if key == "mark":
                return Selector(lambda p, s: getattr(p.ct, "mark", 0) if p.ct is not None else None,
                                ("mark",), "ct mark", "ctmark")
            if key == "direction":
                return Selector(lambda p, s: (1 if p.ct_reply else 0) if p.ct is not None else None,
                                ("ct_dir",), "ct direction")
        if key in _CT_TUPLE_IDX:
            if direction is None:
                raise self.error(f"ct {key} needs a direction: ct original {key} or ct reply {key}")
            t = {"saddr": "ipv4_addr", "daddr": "ipv4_addr", "protocol": "inet_proto"}.get(key, "inet_service")
            return Selector(_ct_tuple(direction, key), (t,), f"ct {direction} {key}")
        raise self.error(f"unknown ct key {key!r} (expected state, status, mark, direction, "
                         "or original|reply saddr|daddr|proto-src|proto-dst|protocol)")

    def _fib(self) -> Selector:
        self.take()
        which = self.take("saddr or daddr")
        if which not in ("saddr", "daddr"):
            raise self.error(f"fib {which}: expected fib saddr or fib daddr")
        if self.peek() == ".":
            raise self.error("fib with a concatenated key (. iif / . oif / . mark) is not modelled")
        res = self.take("a fib result")
        if res != "type":
            raise self.error(f"fib {which} {res}: only the 'type' result is modelled")
        if which == "daddr":
            return Selector(lambda p, s: fib_type(p._dst, s), ("fib_addrtype",), "fib daddr type")
        return Selector(lambda p, s: fib_type(p._src, s), ("fib_addrtype",), "fib saddr type")

    def _numgen(self) -> Selector:
        self.take()
        mode = self.take("random or inc")
        if mode not in ("random", "inc"):
            raise self.error(f"numgen {mode}: expected numgen random or numgen inc")
        if self.take("mod") != "mod":
            raise self.error("numgen needs 'mod N'")
        n = parse_int(self.take("a modulus"), self.where, "modulus")
        if n <= 0:
            raise self.error("numgen modulus must be positive")
        offset = 0
        if self.peek() == "offset":
            self.take()
            offset = parse_int(self.take("an offset"), self.where, "offset")
        text = f"numgen {mode} mod {n}" + (f" offset {offset}" if offset else "")
        if mode == "random":
            def rnd(p, s, n=n, offset=offset):
                return ((s.ctx.rng.getrandbits(32) * n) >> 32) + offset
            return Selector(rnd, ("integer",), text)
        key = object()

        def inc(p, s, n=n, offset=offset, key=key):
            # nft_numgen.c nft_ng_inc_gen: an atomic counter per expression, taken modulo n
            c = s.ctx.counters
            v = c.get(key, -1) + 1
            c[key] = v
            return v % n + offset
        return Selector(inc, ("integer",), text)
