"""The parsed form of an iptables-save dump: tables of chains of rules, and its text rendering."""
from __future__ import annotations

import gc
from array import array
from collections import ChainMap
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    # table -> built-in chains, in the order iptables-save prints them
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

# iptables-save (nf_tables backend, v1.8.9) prints existing tables in this order: iptables/nft.h
# enum nft_table_type (MANGLE, SECURITY, RAW, FILTER, NAT), checked in a scratch netns. The legacy
# backend follows /proc/net/ip_tables_names, i.e. the order the kernel registered the tables.
TABLE_ORDER = ("mangle", "security", "raw", "filter", "nat")

Pred = Callable[[Any, Any], bool]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many long-lived objects (a 170k-rule dump).

    On exit the objects built are moved straight into the oldest generation (gc.freeze() then
    gc.unfreeze()), where two young collections would have put them after traversing them all
    without freeing any: a 10,000-Service dump then costs no ~1 s collection right after parsing.
    They stay collectable (the next full collection sees them as usual). Skipped when someone
    else keeps objects frozen, whose freeze we must not undo. The GC's enabled state is restored.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class IptablesError(ValueError):
    """Bad iptables input or an impossible evaluation; the message names source:line."""


@dataclass(frozen=True, slots=True)
class Opt:
    """One option of a match or target as written: `! --dport 80` → Opt("--dport", ("80",), True)."""

    name: str
    args: tuple[str, ...] = ()
    neg: bool = False


@dataclass(slots=True)
class Match:
    """One `-m MODULE ...` clause (or a protocol match loaded implicitly by `-p tcp --dport`).

    The parser shares one Match among all rules that write the same clause under the same
    protocol (a 10,000-Service dump has five distinct `-m statistic` clauses), unless the
    match keeps per-rule state or names its rule's line (`per_rule`). Treat it as read-only.
    """

    module: str
    opts: list[Opt] = field(default_factory=list)
    text: str = ""                       # canonical iptables-save rendering, "-m tcp --dport 80"
    pred: Optional[Pred] = None          # compiled test(pkt, ctx) -> bool; None for unsupported
    pure: bool = True                    # no side effects (statistic draws, recent updates, counters)
    dport: Optional[int] = None          # a single, non-negated --dport this match requires (index hint)
    dport_only: bool = False             # the --dport above is the match's only test
    always: bool = False                 # always matches (comment, nfacct, limit): nothing to evaluate
    expr: Optional[tuple[str, tuple]] = None   # the same test as Python source: ("p.dport == {}", (80,))
    per_rule: bool = False               # state or messages tied to its rule (statistic nth, set): never shared


@dataclass(slots=True)
class Target:
    """The `-j NAME ...` / `-g NAME` of a rule (shared among rules that write the same target; read-only)."""

    name: str
    opts: list[Opt] = field(default_factory=list)
    goto: bool = False
    text: str = ""                       # canonical rendering, "-j DNAT --to-destination 10.0.0.1:80"
    action: Any = None                   # compiled target (see targets.py); None for a chain jump


@dataclass(slots=True)
class Header:
    """The fixed header fields: `-s -d -i -o -p -f`, each optionally negated (shared among rules
    with the same header; read-only once parsed)."""

    src: Optional[tuple[int, int, bool]] = None      # (network, netmask, negated)
    dst: Optional[tuple[int, int, bool]] = None
    iif: Optional[tuple[str, bool]] = None           # (name, negated); "eth+" is a prefix wildcard
    oif: Optional[tuple[str, bool]] = None
    proto: Optional[tuple[int, bool]] = None         # (protocol number, negated)
    fragment: Optional[bool] = None                  # True: -f, False: ! -f


@dataclass(slots=True)
class Rule:
    """One `-A CHAIN ...` line."""

    table: str
    chain: str
    line: int                             # 1-based line number in the dump
    text: str                             # the line exactly as in the dump (without counters prefix)
    header: Header = field(default_factory=Header)
    matches: list[Match] = field(default_factory=list)
    target_spec: Optional[Target] = None
    counters: Optional[tuple[int, int]] = None
    unsupported: Optional[str] = None     # lenient mode: why this rule can never match

    @property
    def target(self) -> Optional[str]:
        return self.target_spec.name if self.target_spec else None

    @property
    def comment(self) -> Optional[str]:
        for m in self.matches:
            if m.module == "comment":
                for o in m.opts:
                    if o.name == "--comment":
                        return o.args[0]
        return None

    def render(self) -> str:
        """The rule as iptables-save prints it (header fields first, /32 on addresses)."""
        from netsim.rules.iptables.render import render_rule
        return render_rule(self)


@dataclass(slots=True)            # a 10,000-Service node's rules declare ~60,000 chains
class Chain:
    name: str
    policy: Optional[str] = None          # ACCEPT/DROP for built-in chains; None for user chains ("-")
    rules: list[Rule] = field(default_factory=list)
    line: int = 0                         # line of the ":NAME POLICY [p:b]" declaration
    counters: Optional[tuple[int, int]] = None
    # None; or, for a chain several nodes' rulesets hold as one object (a cluster's Service chains,
    # a top-level chain equal on several nodes), a one-item list holding the compiled form every
    # Engine uses (netsim.rules.iptables.engine: compiled once per cluster, its jumps resolved per node)
    shared: Optional[list] = None

    @property
    def builtin(self) -> bool:
        return self.policy is not None

    @property
    def n_rules(self) -> int:
        """How many rules the chain holds (without parsing a lazy chain's)."""
        return len(self.rules)


class LazyChain(Chain):
    """A chain of ``parse(..., lazy=True)``: where its ``-A`` lines are is kept (``raw``: line
    number and offset in the parsed text, two integers a line) and they are parsed, each match and target built, the first time ``rules`` is read,
    e.g. when a packet first enters the chain. A 10,000-Service node holds ~60,000 chains of
    which a trace enters a handful."""

    __slots__ = ("_parsed", "raw", "_loader")

    def __init__(self, name: str, policy: Optional[str] = None, line: int = 0,
                 counters: Optional[tuple[int, int]] = None, *, loader: Callable[["LazyChain"], None]) -> None:
        self._parsed: Optional[list[Rule]] = None      # (a list once read)
        self.raw = array(RAW_TYPECODE)   # line number, offset in the parser's text; per -A line
        self._loader: Optional[Callable[["LazyChain"], None]] = loader
        super().__init__(name, policy, None, line, counters)       # type: ignore[arg-type]

    @property  # type: ignore[override]
    def rules(self) -> list[Rule]:
        if self.raw:
            assert self._loader is not None
            self._loader(self)
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = []
        return parsed

    @rules.setter
    def rules(self, value: Optional[list[Rule]]) -> None:
        self._parsed = value

    @property
    def n_rules(self) -> int:
        return len(self._parsed or ()) + len(self.raw) // 2

    def subset(self, positions: list[int]) -> "LazyChain":
        """An unparsed chain of this one's lines at ``positions`` (of a chain not read yet), parsed
        by the same parser when read."""
        raw = self.raw
        part = LazyChain(self.name, None, self.line, None, loader=self._loader)
        part.raw = array(RAW_TYPECODE, [x for k in positions for x in (raw[2 * k], raw[2 * k + 1])])
        return part

    def lines(self) -> list[str]:
        """The chain's ``-A`` lines as the dump has them (stripped), without parsing them."""
        out = [r.text for r in self._parsed or ()]
        if self.raw:
            text = self._loader.func.__self__.text          # type: ignore[union-attr]  (the parser's text)
            find, raw = text.find, self.raw
            for i in range(1, len(raw), 2):
                start = raw[i]
                end = find("\n", start)
                out.append(text[start:end if end >= 0 else len(text)].strip())
        return out


class LineChain(LazyChain):
    """A lazy chain whose ``-A`` lines are a list of strings (``raw``) rather than offsets into the
    parsed text: a node's long top-level chain (KUBE-SERVICES: a line per Service port) taken
    from its kube-proxy sync's lines, which are mostly strings every node's sync holds
    (proxier_sync.BlockCache), instead of joined into the text the node parses. Parsed by the
    parser of the node's own text (``loader``) when a packet first enters it; its rules carry no
    line of a text (0)."""

    __slots__ = ()

    def __init__(self, name: str, lines: list[str], *, loader: Callable[["LazyChain"], None]) -> None:
        super().__init__(name, None, 0, None, loader=loader)
        self.raw = lines                 # type: ignore[assignment]

    @property
    def n_rules(self) -> int:
        return len(self._parsed or ()) + len(self.raw)

    def lines(self) -> list[str]:
        return [r.text for r in self._parsed or ()] + list(self.raw)

    def subset(self, positions: list[int]) -> "LineChain":
        raw = self.raw
        return LineChain(self.name, [raw[k] for k in positions], loader=self._loader)   # type: ignore[arg-type]


class LayeredChains(ChainMap):
    """A table's chains as a node's own (``own``, looked up first and written to) over chains it
    shares with other nodes (``shared``: one mapping held by all of them, never written through this
    one), so a node whose kube-proxy text mostly equals its neighbours' holds no table of its own
    for the ~250,000 chains of 50,000 Services. Lookups (``[]``, ``get``, ``in``) cost one more probe
    on a miss in ``own``; listing (``items``, ``len``) merges the two and is for rare callers."""

    def __init__(self, own: dict, shared: dict) -> None:
        super().__init__(own, shared)

    @property
    def own(self) -> dict:
        return self.maps[0]


RAW_TYPECODE = "I"             # LazyChain.raw: unsigned 32-bit (line numbers and offsets of a text < 4 GiB)


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    line: int = 0


@dataclass
class Ruleset:
    tables: dict[str, Table] = field(default_factory=dict)
    source: str = "<dump>"
    unsupported: list[str] = field(default_factory=list)   # lenient mode: one message per skipped rule

    def render(self, counters: bool = False) -> str:
        """iptables-save text: tables in save order, built-in chains first, user chains sorted."""
        from netsim.rules.iptables.render import render_ruleset
        return render_ruleset(self, counters=counters)

    def rules(self) -> list[Rule]:
        return [r for t in self.tables.values() for c in t.chains.values() for r in c.rules]
