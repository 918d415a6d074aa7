"""The parsed form of an nftables ruleset: tables of chains, sets and maps (nft(8) "TABLES", "CHAINS",
"SETS", "MAPS"), as the kernel holds them after `nft -f`.

Sets and maps share one namespace per table (a map is a set whose elements carry data). An
element's key is a tuple with one value per field of the (possibly concatenated) key type; with
`flags interval` (always, for anonymous sets) a field may be an interval, and lookups then scan the
interval elements (nft_set_rbtree / nft_set_pipapo) after the exact-key hash (nft_set_hash).
Dynamic elements (`update @set { ip saddr }`) carry an expiry time and vanish when it passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.rules.nftables.values import Interval, Value, VerdictVal

# Standard priority names (nft(8) "CHAINS", table "Standard priority names, family ip"): the values
# of include/uapi/linux/netfilter_ipv4.h enum nf_ip_hook_priorities they stand for.
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress", "egress")
CHAIN_TYPES = ("filter", "nat", "route")
FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


@dataclass(slots=True)
class Element:
    """One set/map element: the map's data (a VerdictVal, a value, or a tuple of values) and options."""

    data: Any = None
    comment: Optional[str] = None
    expires: Optional[float] = None      # absolute time (the evaluation clock) when it times out
    timeout: Optional[float] = None


@dataclass(eq=False)
class NftSet:
    """A named or anonymous set or map."""

    name: str
    kind: str                                   # "set" | "map"
    key_types: tuple[str, ...]
    data_types: Optional[tuple[str, ...]] = None   # ("verdict",) for a verdict map
    flags: frozenset[str] = frozenset()
    timeout: Optional[float] = None
    size: Optional[int] = None
    comment: Optional[str] = None
    line: int = 0
    anonymous: bool = False
    typeof: Optional[str] = None                # the `typeof` text, when declared that way
    exact: dict[tuple, Element] = field(default_factory=dict)
    ranges: list[tuple[tuple, Element]] = field(default_factory=list)   # keys with an interval field

    @property
    def is_vmap(self) -> bool:
        return self.data_types == ("verdict",)

    @property
    def interval(self) -> bool:
        return self.anonymous or "interval" in self.flags

    def __len__(self) -> int:
        return len(self.exact) + len(self.ranges)

    def add(self, key: tuple, elem: Element) -> None:
        if any(isinstance(k, tuple) for k in key):
            self.ranges = [(k, e) for k, e in self.ranges if k != key]
            self.ranges.append((key, elem))
        else:
            self.exact[key] = elem

    def remove(self, key: tuple) -> bool:
        if key in self.exact:
            del self.exact[key]
            return True
        n = len(self.ranges)
        self.ranges = [(k, e) for k, e in self.ranges if k != key]
        return len(self.ranges) != n

    def contains_key(self, key: tuple) -> bool:
        return key in self.exact or any(k == key for k, _ in self.ranges)

    def lookup(self, key: tuple, now: float) -> Optional[Element]:
        """The element matching `key` (a tuple of plain values), or None; expired elements miss."""
        e = self.exact.get(key)
        if e is not None:
            if e.expires is not None and e.expires <= now:
                del self.exact[key]          # the kernel's GC would have reaped it
                return None
            return e
        for k, e in self.ranges:
            if _key_in(key, k) and (e.expires is None or e.expires > now):
                return e
        return None

    def flush(self) -> None:
        self.exact.clear()
        self.ranges.clear()


def _key_in(key: tuple, pattern: tuple) -> bool:
    for v, p in zip(key, pattern):
        if isinstance(p, tuple):
            if not (isinstance(v, int) and p[0] <= v <= p[1]):
                return False
        elif v != p:
            return False
    return True


@dataclass(eq=False)
class Rule:
    """One rule: its text as written, where it came from, and its compiled form (compile.Program)."""

    text: str
    line: int
    handle: int
    comment: Optional[str] = None
    program: Any = None


@dataclass(eq=False)
class Chain:
    name: str
    line: int = 0
    type: Optional[str] = None         # base chains: filter | nat | route
    hook: Optional[str] = None
    priority: Optional[int] = None
    policy: str = "accept"
    comment: Optional[str] = None
    device: Optional[str] = None
    rules: list[Rule] = field(default_factory=list)

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(eq=False)
class Table:
    family: str
    name: str
    line: int = 0
    comment: Optional[str] = None
    flags: frozenset[str] = frozenset()
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)


@dataclass(eq=False)
class Ruleset:
    """Every table, keyed (family, name), in the order they were added."""

    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    source: str = "<nft>"
    next_handle: int = 1
    generation: int = 0                 # bumped by every committed transaction

    def table(self, family: str, name: str) -> Optional[Table]:
        return self.tables.get((family, name))

    def base_chains(self, hook: str, families: tuple[str, ...] = ("ip", "inet")) -> list[tuple[int, Table, Chain]]:
        """(priority, table, chain) of every base chain on `hook` for IPv4 packets, lowest priority first.

        Chains register in table/chain order; at equal priority the later one runs first
        (net/netfilter/core.c nf_hook_entries_grow inserts before the first entry whose priority is
        not lower)."""
        out = []
        for t in self.tables.values():
            if t.family not in families or "dormant" in t.flags:
                continue
            for c in t.chains.values():
                if c.hook == hook:
                    out.append((c.priority or 0, -len(out), t, c))
        out.sort(key=lambda x: x[:2])
        return [(p, t, c) for p, _n, t, c in out]


def element_key_text(key: tuple, types: tuple[str, ...]) -> str:
    from netsim.rules.nftables.values import format_value
    return " . ".join(format_value(t, k) for t, k in zip(types, key))


__all__ = ["Element", "NftSet", "Rule", "Chain", "Table", "Ruleset", "PRIORITY_NAMES", "HOOKS",
           "CHAIN_TYPES", "FAMILIES", "VerdictVal", "Value", "Interval", "element_key_text"]
