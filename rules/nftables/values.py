"""nftables data types: how a constant is written (nft(8) "DATA TYPES") and the value it denotes.

Every value is an int (addresses in host order, marks, ports, protocol numbers, flag bitmasks) or a
str (interface names; IPv6 addresses, kept as text: the emulator's packets are IPv4). An interval
(prefix ``a/n`` or range ``a-b``) is a (lo, hi) pair of ints.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from netsim.skb.packet import PacketError, ip2int, prefix_mask
from netsim.rules.nftables.lexer import NftError

Value = Union[int, str]
Interval = tuple[int, int]

# include/uapi/linux/netfilter/nf_conntrack_common.h: NF_CT_STATE_BIT(ctinfo) = 1 << (ctinfo + 1),
# NF_CT_STATE_INVALID_BIT = 1, NF_CT_STATE_UNTRACKED_BIT = 1 << 6 (nft(8) "CONNTRACK TYPES").
CT_STATE = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
# enum ip_conntrack_status (same header): IPS_EXPECTED_BIT 0 ... IPS_DYING_BIT 9.
CT_STATUS = {"expected": 1, "seen-reply": 2, "assured": 4, "confirmed": 8, "snat": 16, "dnat": 32,
             "dying": 512}
CT_DIR = {"original": 0, "reply": 1}
# include/uapi/linux/rtnetlink.h enum rtn_type, as nft_fib's "type" result (nft(8) "FIB EXPRESSIONS").
FIB_ADDRTYPE = {"unspec": 0, "unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5,
                "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9, "nat": 10, "xresolve": 11}
TCP_FLAG = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ecn": 0x40,
            "cwr": 0x80}
INET_PROTO = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58,
              "sctp": 132, "udplite": 136}
NFPROTO = {"ipv4": 2, "ipv6": 10}
# the /etc/services names nft accepts for ports in practice (nft prints numbers unless -S)
SERVICES = {"ssh": 22, "domain": 53, "http": 80, "https": 443, "smtp": 25, "ntp": 123, "bgp": 179}
ICMP_TYPE = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
             "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11,
             "parameter-problem": 12, "timestamp-request": 13, "timestamp-reply": 14}
# bitmask types: a bare value (or list) matches when any of its bits is set (nft(8): "flags")
BITMASK_TYPES = frozenset({"ct_state", "ct_status", "tcp_flag"})
SYMBOLS: dict[str, dict[str, int]] = {
    "ct_state": CT_STATE, "ct_status": CT_STATUS, "ct_dir": CT_DIR, "fib_addrtype": FIB_ADDRTYPE,
    "tcp_flag": TCP_FLAG, "inet_proto": INET_PROTO, "nf_proto": NFPROTO, "icmp_type": ICMP_TYPE,
    "inet_service": SERVICES,
}
KNOWN_TYPES = frozenset(SYMBOLS) | {"ipv4_addr", "ipv6_addr", "mark", "ifname", "integer", "verdict",
                                    "ether_addr", "iface_index"}

_DURATION = re.compile(r"(\d+)(d|h|ms|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str, where: str) -> float:
    """nft's time format: ``10800s``, ``3h``, ``2h59m56s``, ``500ms``, or plain seconds."""
    if text.isdigit():
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise NftError(f"{where}: not a time value: {text!r} (expected e.g. 10800s, 3h, 2h59m56s)")
    return total


def parse_int(text: str, where: str, what: str = "integer") -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise NftError(f"{where}: not a valid {what}: {text!r}") from None


def _ipv4(text: str, where: str) -> int:
    try:
        return ip2int(text)
    except PacketError:
        raise NftError(f"{where}: not an IPv4 address: {text!r}") from None


def parse_scalar(dtype: str, text: str, where: str) -> Value:
    """One constant of `dtype` (no prefix or range)."""
    if dtype == "ipv4_addr":
        return _ipv4(text, where)
    if dtype in ("ipv6_addr", "ifname", "ether_addr"):
        return text
    table = SYMBOLS.get(dtype)
    if table is not None and text in table:
        return table[text]
    if dtype == "inet_service" or dtype == "inet_proto":
        v = parse_int(text, where, "port" if dtype == "inet_service" else "protocol")
        if not 0 <= v <= (65535 if dtype == "inet_service" else 255):
            raise NftError(f"{where}: {text} is out of range for {dtype}")
        return v
    if table is not None and not text[:1].isdigit():
        raise NftError(f"{where}: unknown {dtype} value {text!r} (expected one of {', '.join(table)})")
    return parse_int(text, where, dtype)


def parse_value(dtype: str, text: str, where: str) -> Union[Value, Interval]:
    """A constant, or for addresses and ports an interval written ``a/n`` or ``a-b``."""
    if dtype == "ipv4_addr":
        if "/" in text:
            addr, _, plen_s = text.partition("/")
            plen = parse_int(plen_s, where, "prefix length")
            if not 0 <= plen <= 32:
                raise NftError(f"{where}: bad prefix length in {text!r}")
            mask = prefix_mask(plen)
            lo = _ipv4(addr, where) & mask
            return (lo, lo | (~mask & 0xFFFFFFFF))
        if "-" in text:
            a, _, b = text.partition("-")
            return _range(_ipv4(a, where), _ipv4(b, where), text, where)
        return _ipv4(text, where)
    if dtype in ("inet_service", "integer", "mark") and "-" in text[1:]:
        a, _, b = text.partition("-")
        return _range(parse_scalar(dtype, a, where), parse_scalar(dtype, b, where), text, where)
    return parse_scalar(dtype, text, where)


def _range(lo, hi, text: str, where: str) -> Interval:
    if lo > hi:
        raise NftError(f"{where}: range {text!r} has its bounds reversed")
    return (lo, hi)


@dataclass(frozen=True, slots=True)
class VerdictVal:
    """A verdict: accept, drop, continue, return, queue, or jump/goto with a chain name."""

    kind: str
    chain: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.kind} {self.chain}" if self.chain else self.kind


VERDICTS = ("accept", "drop", "continue", "return", "queue")


def parse_verdict(words: list[str], where: str) -> VerdictVal:
    if len(words) == 1 and words[0] in VERDICTS:
        return VerdictVal(words[0])
    if len(words) == 2 and words[0] in ("jump", "goto"):
        return VerdictVal(words[0], words[1])
    raise NftError(f"{where}: not a verdict: {' '.join(words)!r} (expected accept, drop, continue, return, "
                   "jump CHAIN or goto CHAIN)")


def format_value(dtype: str, v) -> str:
    """Render a value as nft list prints it (used in traces and error messages)."""
    from netsim.skb.packet import int2ip
    if isinstance(v, tuple):
        return f"{format_value(dtype, v[0])}-{format_value(dtype, v[1])}"
    if dtype == "ipv4_addr":
        return int2ip(v)
    table = SYMBOLS.get(dtype)
    if table is not None and dtype not in ("inet_service",):
        for name, num in table.items():
            if num == v:
                return name
    if dtype == "mark":
        return f"0x{v:08x}"
    return str(v)
