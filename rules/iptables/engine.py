"""Evaluate a packet through one table at one hook, as ipt_do_table does (reference §2.1).

Rules run in order; header fields then matches, ANDed. -j pushes a return point, -g does not;
RETURN or falling off a user chain pops it; at the bottom the built-in chain's policy applies.
ACCEPT/DROP/REJECT and the NAT targets end the table; MARK, CONNMARK, LOG, NFLOG, CT and
target-less rules continue. The engine never rewrites addresses: `Verdict.nat` says what the
walker/conntrack should do.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.rules.iptables import targets as T
from netsim.rules.iptables.codegen import ScannerFactory
from netsim.rules.iptables.compile import CompiledChain, RuleInfo, check_loops, compile_chain
from netsim.rules.iptables.recent import RecentState
from netsim.rules.iptables.ruleset import IptablesError, Ruleset, gc_paused
from netsim.rules.iptables.targets import NatAction
from netsim.rules.ipset import IpsetStore

MAX_DEPTH = 64       # kernel XT stack limit is far deeper; a loop is refused at compile time anyway


@dataclass
class EvalContext:
    """Per-netns state and environment the matches read: local addresses, ipsets, RNG, clock, recent lists."""

    local_addrs: set[int] = field(default_factory=set)
    ipsets: Optional[IpsetStore] = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    now: float = 0.0
    recent: RecentState = field(default_factory=RecentState)
    iface_addrs: Optional[dict[str, set[int]]] = None   # for addrtype --limit-iface-in/out
    nth: dict[Any, int] = field(default_factory=dict)   # statistic --mode nth per-rule counters


@dataclass(slots=True)
class RuleHit:
    """One rule that matched (or a policy that applied) during a traversal.

    `line`, `text`, `comment` and `target` are read from the shared RuleInfo of the rule.
    """

    table: str
    chain: str
    rule: RuleInfo
    rules_evaluated: int           # rules the kernel would have evaluated so far in this table, this one included
    policy: bool = False           # True: the built-in chain's policy, not a rule
    note: Optional[str] = None     # lenient mode: why this rule was skipped
    number: int = 0                # 1-based position in its chain (iptables -L --line-numbers); 0 for a policy

    @property
    def line(self) -> int:
        return self.rule.line

    @property
    def text(self) -> str:
        return self.rule.text

    @property
    def comment(self) -> Optional[str]:
        return self.rule.comment

    @property
    def target(self) -> Optional[str]:
        return self.rule.target


@dataclass
class Verdict:
    verdict: str                   # ACCEPT | DROP | REJECT
    reject_with: Optional[str] = None
    nat: Optional[NatAction] = None
    steps: list[RuleHit] = field(default_factory=list)
    rules_evaluated: int = 0
    table: str = ""
    chain: str = ""

    @property
    def rule(self) -> Optional[RuleHit]:
        """The hit that decided the verdict (the last step)."""
        return self.steps[-1] if self.steps else None


class Engine:
    """A compiled ruleset. Build once per ruleset; `run` is called per packet."""

    def __init__(self, ruleset: Ruleset, *, index_min_rules: Optional[int] = None, codegen: bool = True) -> None:
        """`index_min_rules`: chains at least this long get the hash index; `codegen=False` evaluates
        the compiled predicates one by one (the reference the generated scanners are tested against)."""
        self.ruleset = ruleset
        self.tables: dict[str, dict[str, CompiledChain]] = {}
        with gc_paused():
            self._compile(ruleset, index_min_rules, ScannerFactory() if codegen else None)

    def _compile(self, ruleset: Ruleset, index_min_rules: Optional[int], scanners) -> None:
        for tname, table in ruleset.tables.items():
            check_loops(table, ruleset.source)
            kw = {} if index_min_rules is None else {"min_rules": index_min_rules}
            chains = {cname: compile_chain(c, scanners=scanners, **kw) for cname, c in table.chains.items()}
            for cc in chains.values():
                for cr in cc.rules:
                    if cr.jump_to is not None:
                        cr.jump_chain = chains[cr.jump_to]
            self.tables[tname] = chains

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.tables.get(table, {})

    def run(self, table: str, chain: str, pkt, ctx: EvalContext) -> Verdict:
        chains = self.tables.get(table)
        if chains is None:
            # a table that is not in the dump has empty built-in chains with ACCEPT policy
            return Verdict("ACCEPT", table=table, chain=chain)
        start = chains.get(chain)
        if start is None or start.policy is None:
            raise IptablesError(f"{self.ruleset.source}: {chain} is not a built-in chain of table {table}")
        steps: list[RuleHit] = []
        total = 0
        stack: list[tuple[CompiledChain, int, Any]] = []
        cur = start
        pos = 0
        lists = cur.candidate_lists(pkt)
        while True:
            scan = cur.scan
            i = scan(pkt, ctx, pos) if scan is not None else cur.next_candidate(lists, pos)
            n = len(cur.rules)
            if i >= n:
                total += n - pos
                if stack:
                    cur, pos, lists = stack.pop()
                    continue
                return self._policy(table, start, steps, total)
            cr = cur.rules[i]
            total += i - pos + 1
            pos = i + 1
            if cr.kind == "unsupported":
                steps.append(RuleHit(table, cur.name, cr.info, total,
                                     note=f"unsupported, treated as non-matching: {cr.rule.unsupported}", number=i + 1))
                continue
            matched = True             # a scanner returns only matching rules
            if scan is None:           # an index candidate: test it
                for pred in cr.preds:
                    if not pred(pkt, ctx):
                        matched = False
                        break
            if matched:
                steps.append(RuleHit(table, cur.name, cr.info, total, number=i + 1))
                kind = cr.kind
                if kind == "none" or kind == "continue":
                    if kind == "continue" and cr.action.notrack:
                        pkt.ctstate = "UNTRACKED"
                    continue
                if kind == "jump" or kind == "goto":
                    if kind == "jump":
                        if len(stack) >= MAX_DEPTH:
                            raise IptablesError(f"{self.ruleset.source}:{cr.rule.line}: jumps nest deeper than {MAX_DEPTH}")
                        stack.append((cur, pos, lists))
                    cur = cr.jump_chain
                    pos = 0
                    lists = cur.candidate_lists(pkt)
                    continue
                if kind == "return":
                    if stack:
                        cur, pos, lists = stack.pop()
                        continue
                    return self._policy(table, start, steps, total)
                if kind == "mark":
                    T.apply_mark(cr.action, pkt)
                    continue
                if kind == "connmark":
                    T.apply_connmark(cr.action, pkt)
                    continue
                if kind == "verdict":
                    return Verdict(cr.action.verdict, cr.action.reject_with, None, steps, total, table, chain)
                if kind == "nat":
                    return Verdict("ACCEPT", None, cr.action, steps, total, table, chain)
                raise AssertionError(kind)

    @staticmethod
    def _policy(table: str, start: CompiledChain, steps: list[RuleHit], total: int) -> Verdict:
        steps.append(RuleHit(table, start.name, RuleInfo(start.line, f":{start.name} {start.policy}", None,
                                                         start.policy), total, policy=True))
        return Verdict(start.policy, None, None, steps, total, table, start.name)


# The order in which tables run at each hook (reference §3.1 priorities; security omitted).
HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "nat"),
    "FORWARD": ("mangle", "filter"),
    "OUTPUT": ("raw", "mangle", "nat", "filter"),
    "POSTROUTING": ("mangle", "nat"),
}


def run_hook(engine: Engine, hook: str, pkt, ctx: EvalContext, *, nat: bool = True) -> list[Verdict]:
    """Run every table at `hook` in priority order until one does not ACCEPT.

    `nat=False` skips the nat table (a packet of an already-established connection).
    Returns one Verdict per table that ran.
    """
    if hook not in HOOK_TABLES:
        raise IptablesError(f"unknown hook {hook!r} (expected {', '.join(HOOK_TABLES)})")
    out: list[Verdict] = []
    for table in HOOK_TABLES[hook]:
        if table == "nat" and not nat:
            continue
        if not engine.has_chain(table, hook):
            continue
        v = engine.run(table, hook, pkt, ctx)
        out.append(v)
        if v.verdict != "ACCEPT":
            break
    return out
