"""The kernel's ipset store: typed sets, membership tests against packets, `ipset save`/`ipset list` text.

Facts (checked with ipset v7.17 in a scratch netns, see tests/test_ipset.py):
- entry strings: hash:ip `ip`; hash:ip,port `ip,proto:port` (proto defaults to tcp);
  hash:net `cidr` (a /32 prints bare) with an optional `nomatch` flag; hash:ip,port,ip
  `ip,proto:port,ip`; hash:ip,port,net `ip,proto:port,cidr`; bitmap:port `port`.
- `ipset save` prints `create NAME TYPE OPTIONS` then `add NAME ENTRY` lines; hash types
  get `family inet hashsize 1024 maxelem 65536`, bitmap:port `range LO-HI`.
- a packet test with fewer direction flags than the set's dimension never matches
  (kernel ip_set_test: `opt->dim < set->type->dimension` returns 0).
- hash:net and hash:ip,port,net use the most specific matching prefix; if that element
  is `nomatch` the test fails.
- port dimensions only exist for TCP, UDP and SCTP packets (others never match a port set).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

from netsim.skb.packet import int2ip, prefix_mask

__all__ = [
    "IpsetError", "IpSet", "IpsetStore", "SET_TYPES", "parse_save",
]

# type name -> (dimension, list revision printed by `ipset list` on ipset v7.17)
SET_TYPES: dict[str, tuple[int, int]] = {
    "hash:ip": (1, 6),
    "hash:ip,port": (2, 7),
    "hash:net": (1, 7),
    "hash:ip,port,ip": (3, 6),
    "hash:ip,port,net": (3, 8),
    "bitmap:port": (1, 3),
}

_PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}
_PROTO_NAME = {v: k for k, v in _PROTO_NUM.items()}
_PORT_PROTOS = frozenset((6, 17, 132, 136))


class IpsetError(ValueError):
    """Bad ipset input; the message names where and what was expected."""


class _PacketLike(Protocol):
    src: int
    dst: int
    sport: int
    dport: int
    proto: int


def _ip(text: str, where: str) -> int:
    parts = text.split(".")
    if len(parts) != 4:
        raise IpsetError(f"{where}: expected an IPv4 address, got {text!r}")
    try:
        vals = [int(p, 10) for p in parts]
    except ValueError:
        raise IpsetError(f"{where}: expected an IPv4 address, got {text!r}") from None
    if any(v < 0 or v > 255 for v in vals):
        raise IpsetError(f"{where}: expected an IPv4 address, got {text!r}")
    return (vals[0] << 24) | (vals[1] << 16) | (vals[2] << 8) | vals[3]


def _net(text: str, where: str) -> tuple[int, int]:
    if "/" in text:
        addr, _, plen_s = text.partition("/")
        try:
            plen = int(plen_s)
        except ValueError:
            raise IpsetError(f"{where}: expected a CIDR, got {text!r}") from None
        if not 0 <= plen <= 32:
            raise IpsetError(f"{where}: prefix length must be 0-32, got {text!r}")
    else:
        addr, plen = text, 32
    return _ip(addr, where) & prefix_mask(plen), plen


def _netstr(net: int, plen: int) -> str:
    return int2ip(net) if plen == 32 else f"{int2ip(net)}/{plen}"


def _proto_port(text: str, where: str) -> tuple[int, int]:
    proto_s, sep, port_s = text.rpartition(":")
    if not sep:
        proto_s, port_s = "tcp", text
    proto = _PROTO_NUM.get(proto_s.lower())
    if proto is None:
        raise IpsetError(f"{where}: expected protocol tcp, udp or sctp, got {proto_s!r}")
    try:
        port = int(port_s)
    except ValueError:
        raise IpsetError(f"{where}: expected a port number, got {port_s!r}") from None
    if not 0 <= port <= 65535:
        raise IpsetError(f"{where}: port must be 0-65535, got {port}")
    return proto, port


@dataclass
class _Member:
    key: tuple
    timeout: Optional[int] = None
    added_at: float = 0.0
    comment: Optional[str] = None
    nomatch: bool = False


@dataclass
class IpSet:
    """One ipset of a supported type; members keep insertion order for rendering."""

    name: str
    type: str
    family: str = "inet"
    hashsize: int = 1024
    maxelem: int = 65536
    port_range: tuple[int, int] = (0, 65535)      # bitmap:port only
    timeout: Optional[int] = None
    comment: bool = False
    extra: list[str] = field(default_factory=list)  # other create options, kept verbatim (bucketsize, initval)
    members: dict[tuple, _Member] = field(default_factory=dict)
    # hash:net / hash:ip,port,net: prefix lengths present, longest first (most specific wins)
    _plens: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.type not in SET_TYPES:
            raise IpsetError(
                f"set {self.name}: unsupported set type {self.type!r} "
                f"(expected one of {', '.join(SET_TYPES)})")

    @property
    def dimension(self) -> int:
        return SET_TYPES[self.type][0]

    # -- entries ---------------------------------------------------------------------------
    def parse_entry(self, text: str, where: str = "") -> tuple[tuple, bool]:
        """Entry string → (key, is_cidr_entry). Raises IpsetError naming `where`."""
        where = where or f"set {self.name}"
        parts = text.split(",")
        t = self.type
        want = {"hash:ip": 1, "hash:ip,port": 2, "hash:net": 1, "hash:ip,port,ip": 3,
                "hash:ip,port,net": 3, "bitmap:port": 1}[t]
        if len(parts) != want:
            raise IpsetError(f"{where}: entry {text!r} does not fit {t} (expected {want} comma-separated parts)")
        if t == "hash:ip":
            return (_ip(parts[0], where),), False
        if t == "hash:net":
            return _net(parts[0], where), True
        if t == "bitmap:port":
            try:
                port = int(parts[0])
            except ValueError:
                raise IpsetError(f"{where}: expected a port number, got {parts[0]!r}") from None
            lo, hi = self.port_range
            if not lo <= port <= hi:
                raise IpsetError(f"{where}: port {port} outside the set range {lo}-{hi}")
            return (port,), False
        ip = _ip(parts[0], where)
        proto, port = _proto_port(parts[1], where)
        if t == "hash:ip,port":
            return (ip, proto, port), False
        if t == "hash:ip,port,ip":
            return (ip, proto, port, _ip(parts[2], where)), False
        net, plen = _net(parts[2], where)
        return (ip, proto, port, net, plen), True

    def format_key(self, key: tuple) -> str:
        t = self.type
        if t == "hash:ip":
            return int2ip(key[0])
        if t == "hash:net":
            return _netstr(key[0], key[1])
        if t == "bitmap:port":
            return str(key[0])
        head = f"{int2ip(key[0])},{_PROTO_NAME[key[1]]}:{key[2]}"
        if t == "hash:ip,port":
            return head
        if t == "hash:ip,port,ip":
            return f"{head},{int2ip(key[3])}"
        return f"{head},{_netstr(key[3], key[4])}"

    def add(self, entry: str, *, timeout: Optional[int] = None, comment: Optional[str] = None,
            nomatch: bool = False, now: float = 0.0, where: str = "") -> None:
        key, is_net = self.parse_entry(entry, where)
        if nomatch and not is_net:
            raise IpsetError(f"{where or 'set ' + self.name}: nomatch is only valid for net set types, not {self.type}")
        if len(self.members) >= self.maxelem and key not in self.members:
            raise IpsetError(f"{where or 'set ' + self.name}: set is full (maxelem {self.maxelem})")
        if timeout is None:
            timeout = self.timeout
        self.members[key] = _Member(key, timeout, now, comment, nomatch)
        if is_net:
            self._reindex()

    def delete(self, entry: str, where: str = "") -> None:
        key, is_net = self.parse_entry(entry, where)
        if self.members.pop(key, None) is None:
            raise IpsetError(f"{where or 'set ' + self.name}: element {entry!r} is not in the set")
        if is_net:
            self._reindex()

    def flush(self) -> None:
        self.members.clear()
        self._plens = []

    def _reindex(self) -> None:
        self._plens = sorted({k[-1] for k in self.members}, reverse=True)

    def __contains__(self, entry: str) -> bool:
        key, _ = self.parse_entry(entry)
        m = self.members.get(key)
        return m is not None and not m.nomatch

    def entries(self) -> list[str]:
        return [self.format_key(m.key) for m in self.members.values()]

    # -- packet test -----------------------------------------------------------------------
    def _live(self, key: tuple, now: float) -> Optional[_Member]:
        m = self.members.get(key)
        if m is not None and m.timeout and now >= m.added_at + m.timeout:
            return None
        return m

    def test(self, pkt: _PacketLike, dirs: tuple[str, ...], now: float = 0.0,
             return_nomatch: bool = False) -> bool:
        """Does the packet match, taking each dimension from `dirs` ('src'/'dst')?"""
        if len(dirs) < self.dimension:
            return False
        t = self.type

        def ip(i: int) -> int:
            return pkt.src if dirs[i] == "src" else pkt.dst

        def port(i: int) -> int:
            return pkt.sport if dirs[i] == "src" else pkt.dport

        if t == "hash:ip":
            return self._live((ip(0),), now) is not None
        if t == "hash:net":
            addr = ip(0)
            for plen in self._plens:
                m = self._live((addr & prefix_mask(plen), plen), now)
                if m is not None:
                    return return_nomatch if m.nomatch else True
            return False
        proto = pkt.proto
        if proto not in _PORT_PROTOS:
            return False
        if t == "bitmap:port":
            return self._live((port(0),), now) is not None
        head = (ip(0), proto, port(1))
        if t == "hash:ip,port":
            return self._live(head, now) is not None
        if t == "hash:ip,port,ip":
            return self._live(head + (ip(2),), now) is not None
        addr = ip(2)
        for plen in self._plens:
            m = self._live(head + (addr & prefix_mask(plen), plen), now)
            if m is not None:
                return return_nomatch if m.nomatch else True
        return False

    # -- text ------------------------------------------------------------------------------
    def header(self) -> str:
        if self.type.startswith("bitmap:"):
            opts = [f"range {self.port_range[0]}-{self.port_range[1]}"]
        else:
            opts = [f"family {self.family}", f"hashsize {self.hashsize}", f"maxelem {self.maxelem}"]
        if self.timeout is not None:
            opts.append(f"timeout {self.timeout}")
        if self.comment:
            opts.append("comment")
        opts.extend(self.extra)
        return " ".join(opts)

    def member_lines(self, now: float = 0.0) -> list[str]:
        out = []
        for m in self.members.values():
            if m.timeout and now >= m.added_at + m.timeout:
                continue
            s = self.format_key(m.key)
            if m.timeout is not None:
                s += f" timeout {max(0, int(m.added_at + m.timeout - now))}"
            if m.comment is not None:
                s += f' comment "{m.comment}"'
            if m.nomatch:
                s += " nomatch"
            out.append(s)
        return out


class IpsetStore:
    """All ipsets of one network namespace."""

    def __init__(self) -> None:
        self.sets: dict[str, IpSet] = {}

    def create(self, name: str, type: str, *, exist_ok: bool = False, **opts) -> IpSet:
        if name in self.sets:
            if exist_ok and self.sets[name].type == type:
                return self.sets[name]
            raise IpsetError(f"set {name}: already exists")
        if len(name) > 31:
            raise IpsetError(f"set {name}: name longer than 31 characters")
        s = IpSet(name, type, **opts)
        self.sets[name] = s
        return s

    def get(self, name: str) -> IpSet:
        try:
            return self.sets[name]
        except KeyError:
            raise IpsetError(f"set {name}: does not exist") from None

    def __contains__(self, name: str) -> bool:
        return name in self.sets

    def add(self, name: str, entry: str, **kw) -> None:
        self.get(name).add(entry, **kw)

    def delete(self, name: str, entry: str) -> None:
        self.get(name).delete(entry)

    def destroy(self, name: str) -> None:
        self.get(name)
        del self.sets[name]

    def test(self, name: str, pkt: _PacketLike, dirs: tuple[str, ...], now: float = 0.0) -> bool:
        return self.get(name).test(pkt, dirs, now)

    def save(self, now: float = 0.0) -> str:
        """`ipset save` text."""
        lines: list[str] = []
        for s in self.sets.values():
            lines.append(f"create {s.name} {s.type} {s.header()}")
            lines.extend(f"add {s.name} {m}" for m in s.member_lines(now))
        return "".join(line + "\n" for line in lines)

    def list(self, names: Optional[Iterable[str]] = None, references: Optional[dict[str, int]] = None,
             now: float = 0.0) -> str:
        """`ipset list` text (without the kernel's `Size in memory` line, which we cannot know)."""
        blocks = []
        for name in (names if names is not None else self.sets):
            s = self.get(name)
            members = s.member_lines(now)
            lines = [
                f"Name: {s.name}",
                f"Type: {s.type}",
                f"Revision: {SET_TYPES[s.type][1]}",
                f"Header: {s.header()}",
                f"References: {(references or {}).get(s.name, 0)}",
                f"Number of entries: {len(members)}",
                "Members:",
                *members,
            ]
            blocks.append("\n".join(lines) + "\n")
        return "\n".join(blocks)


def _create_opts(tokens: list[str], where: str) -> dict:
    opts: dict = {"extra": []}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        val = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in ("family", "hashsize", "maxelem", "range", "timeout", "bucketsize", "initval", "netmask", "size"):
            if val is None:
                raise IpsetError(f"{where}: option {tok!r} needs a value")
            if tok == "family":
                if val not in ("inet", "inet6"):
                    raise IpsetError(f"{where}: family must be inet or inet6, got {val!r}")
                opts["family"] = val
            elif tok in ("hashsize", "maxelem", "timeout"):
                try:
                    opts[tok] = int(val)
                except ValueError:
                    raise IpsetError(f"{where}: {tok} must be an integer, got {val!r}") from None
            elif tok == "range":
                lo, _, hi = val.partition("-")
                try:
                    opts["port_range"] = (int(lo), int(hi))
                except ValueError:
                    raise IpsetError(f"{where}: range must be LO-HI, got {val!r}") from None
            else:
                opts["extra"] += [tok, val]
            i += 2
        elif tok in ("comment", "counters", "skbinfo", "forceadd"):
            if tok == "comment":
                opts["comment"] = True
            else:
                opts["extra"].append(tok)
            i += 1
        else:
            raise IpsetError(f"{where}: unknown create option {tok!r}")
    return opts


def parse_save(text: str, *, source: str = "<ipset save>", now: float = 0.0,
               store: Optional[IpsetStore] = None) -> IpsetStore:
    """Parse `ipset save` (or `ipset restore` input) text into a store."""
    store = store if store is not None else IpsetStore()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        where = f"{source}:{lineno}"
        try:
            toks = shlex.split(line)
        except ValueError as e:
            raise IpsetError(f"{where}: cannot split line ({e})") from None
        cmd = toks[0]
        if cmd in ("create", "-N", "n") and len(toks) >= 3:
            try:
                store.create(toks[1], toks[2], **_create_opts(toks[3:], where),
                             exist_ok="-exist" in toks)
            except IpsetError as e:
                raise IpsetError(f"{where}: {e}") from None
        elif cmd in ("add", "-A", "a") and len(toks) >= 3:
            if toks[1] not in store:
                raise IpsetError(f"{where}: add to set {toks[1]!r} which was not created")
            kw: dict = {}
            rest = [t for t in toks[3:] if t != "-exist"]
            j = 0
            while j < len(rest):
                if rest[j] == "timeout" and j + 1 < len(rest):
                    kw["timeout"] = int(rest[j + 1]); j += 2
                elif rest[j] == "comment" and j + 1 < len(rest):
                    kw["comment"] = rest[j + 1]; j += 2
                elif rest[j] == "nomatch":
                    kw["nomatch"] = True; j += 1
                else:
                    raise IpsetError(f"{where}: unknown add option {rest[j]!r}")
            store.get(toks[1]).add(toks[2], now=now, where=where, **kw)
        elif cmd in ("flush", "-F") and len(toks) == 2:
            store.get(toks[1]).flush()
        elif cmd in ("destroy", "-X", "x") and len(toks) == 2:
            store.destroy(toks[1])
        else:
            raise IpsetError(f"{where}: expected 'create NAME TYPE ...' or 'add NAME ENTRY', got {line!r}")
    return store
