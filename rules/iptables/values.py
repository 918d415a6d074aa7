"""Value syntax shared by iptables matches and targets: addresses, ports, marks, protocols, quoting."""
from __future__ import annotations

import re

from netsim.skb.packet import int2ip, prefix_mask
from netsim.rules.iptables.ruleset import IptablesError

PROTO_NUM = {"all": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "sctp": 132, "udplite": 136}
PROTO_NAME = {v: k for k, v in PROTO_NUM.items() if v}

_NO_QUOTE = re.compile(r"[A-Za-z0-9_-]+")


def save_string(value: str) -> str:
    """Quote like libxtables xtables_save_string: bare if only [A-Za-z0-9_-], else "..." with \\ before " \\ '."""
    if _NO_QUOTE.fullmatch(value):
        return value
    out = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{out}"'


def ip2int(text: str, where: str) -> int:
    parts = text.split(".")
    if len(parts) == 4:
        try:
            a, b, c, d = int(parts[0], 10), int(parts[1], 10), int(parts[2], 10), int(parts[3], 10)
        except ValueError:
            pass
        else:
            if 0 <= a <= 255 and 0 <= b <= 255 and 0 <= c <= 255 and 0 <= d <= 255:
                return (a << 24) | (b << 16) | (c << 8) | d
    raise IptablesError(f"{where}: expected an IPv4 address, got {text!r}")


def parse_cidr(text: str, where: str) -> tuple[int, int]:
    """'10.0.0.1', '10.0.0.0/8' or '10.0.0.0/255.0.0.0' → (network, netmask)."""
    addr, sep, m = text.partition("/")
    if not sep:
        mask = 0xFFFFFFFF
    elif "." in m:
        mask = ip2int(m, where)
    else:
        try:
            plen = int(m)
        except ValueError:
            raise IptablesError(f"{where}: expected a prefix length after '/', got {text!r}") from None
        if not 0 <= plen <= 32:
            raise IptablesError(f"{where}: prefix length must be 0-32, got {text!r}")
        mask = prefix_mask(plen)
    return ip2int(addr, where) & mask, mask


def render_cidr(net: int, mask: int) -> str:
    """iptables-save form: prefix length for contiguous masks (always, /32 included), dotted otherwise."""
    inv = ~mask & 0xFFFFFFFF
    if inv & (inv + 1) == 0:
        return f"{int2ip(net)}/{32 - inv.bit_length()}"
    return f"{int2ip(net)}/{int2ip(mask)}"


def parse_int(text: str, where: str, what: str, lo: int = 0, hi: int = 0xFFFFFFFF) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise IptablesError(f"{where}: {what} must be a number, got {text!r}") from None
    if not lo <= v <= hi:
        raise IptablesError(f"{where}: {what} must be {lo}-{hi}, got {text!r}")
    return v


def parse_mark(text: str, where: str, default_mask: int = 0xFFFFFFFF) -> tuple[int, int]:
    """'0x4000/0x4000' or '0x4000' → (value, mask)."""
    v, sep, m = text.partition("/")
    value = parse_int(v, where, "mark value")
    mask = parse_int(m, where, "mark mask") if sep else default_mask
    return value, mask


def parse_port_range(text: str, where: str) -> tuple[int, int]:
    """'80', '80:90', '80:' or ':90' → (lo, hi)."""
    lo_s, sep, hi_s = text.partition(":")
    if not sep:
        p = _port(lo_s, where)
        return p, p
    lo = _port(lo_s, where) if lo_s else 0
    hi = _port(hi_s, where) if hi_s else 65535
    if lo > hi:
        raise IptablesError(f"{where}: port range {text!r} has its low end above its high end")
    return lo, hi


def _port(text: str, where: str) -> int:
    try:
        p = int(text, 10)
    except ValueError:
        raise IptablesError(f"{where}: expected a port number, got {text!r}") from None
    if not 0 <= p <= 65535:
        raise IptablesError(f"{where}: port must be 0-65535, got {text!r}")
    return p


def render_port_range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def parse_proto(text: str, where: str) -> int:
    t = text.lower()
    if t in PROTO_NUM:
        return PROTO_NUM[t]
    try:
        v = int(t, 10)
    except ValueError:
        raise IptablesError(f"{where}: unknown protocol {text!r} (expected tcp, udp, icmp, sctp, all or a number)") from None
    if not 0 <= v <= 255:
        raise IptablesError(f"{where}: protocol number must be 0-255, got {text!r}")
    return v


def render_proto(num: int) -> str:
    return PROTO_NAME.get(num, str(num))
