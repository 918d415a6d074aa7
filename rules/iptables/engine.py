"""Evaluate a packet through one table at one hook, as ipt_do_table does (net/ipv4/netfilter/ip_tables.c).

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
from netsim.rules.iptables.compile import INDEX_MIN_RULES, CompiledChain, RuleInfo, check_loops
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
    ipvs_conns: Any = None          # the host's IPVS connection table (-m ipvs), None without IPVS


@dataclass(slots=True)
class RuleHit:
    """One rule that matched (or a policy that applied) during a traversal.

    `chain`, `line`, `text`, `comment` and `target` are read from the rule's RuleInfo (the
    CompiledRule itself, or the chain's policy line).
    """

    table: str
    rule: RuleInfo
    rules_evaluated: int           # rules the kernel would have evaluated so far in this table, this one included
    policy: bool = False           # True: the built-in chain's policy, not a rule
    note: Optional[str] = None     # lenient mode: why this rule was skipped
    number: int = 0                # 1-based position in its chain (iptables -L --line-numbers); 0 for a policy

    @property
    def chain(self) -> str:
        return self.rule.chain

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
    """A compiled ruleset. Build once per ruleset; `run` is called per packet.

    Building checks the jump graph for loops (as iptables-restore does) and sets up every chain;
    a chain's rules are compiled when a packet first enters it (`compile_all` compiles them all).
    """

    def __init__(self, ruleset: Ruleset, *, index_min_rules: Optional[int] = None, codegen: bool = True) -> None:
        """`index_min_rules`: chains at least this long get the hash index; `codegen=False` evaluates
        the compiled predicates one by one (the reference the generated scanners are tested against)."""
        self.ruleset = ruleset
        self.tables: dict[str, dict[str, CompiledChain]] = {}
        scanners = ScannerFactory() if codegen else None
        min_rules = INDEX_MIN_RULES if index_min_rules is None else index_min_rules
        with gc_paused():
            for tname, table in ruleset.tables.items():
                check_loops(table, ruleset.source)
                self.tables[tname] = {cname: CompiledChain(c, min_rules, scanners)
                                      for cname, c in table.chains.items()}

    def compile_all(self) -> None:
        """Compile every chain now (otherwise each is compiled when a packet first enters it)."""
        with gc_paused():
            for chains in self.tables.values():
                for cc in chains.values():
                    if not cc.compiled:
                        cc.compile()

    def has_chain(self, table: str, chain: str) -> bool:
        return chain in self.tables.get(table, {})

    def has_rules(self, table: str, chain: str) -> bool:
        """Whether `chain` of `table` exists and can do anything to a packet: it has a rule, or (a
        built-in chain) a policy other than ACCEPT. Without compiling it."""
        cc = self.tables.get(table, {}).get(chain)
        return cc is not None and (cc.n > 0 or cc.policy not in (None, "-", "ACCEPT"))

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
        if cur._rules is None:
            cur.compile()
        pos = 0
        lists = cur.candidate_lists(pkt) if cur._indexed else None
        while True:
            scan = cur._scan
            if scan is not None:
                i = scan(pkt, ctx, pos, cur._rules)
            elif lists is None:
                i = pos
            else:
                i = cur.next_candidate(lists, pos)
            n = cur.n
            if i >= n:
                total += n - pos
                if stack:
                    cur, pos, lists = stack.pop()
                    continue
                return self._policy(table, start, steps, total)
            cr = cur._rules[i]
            total += i - pos + 1
            pos = i + 1
            kind = cr.kind
            if kind == "unsupported":
                steps.append(RuleHit(table, cr, total,
                                     note=f"unsupported, treated as non-matching: {cr.rule.unsupported}", number=i + 1))
                continue
            if scan is None:           # an index candidate or the next rule of a linear walk: test it
                matched = True         # (a scanner returns only matching rules)
                for pred in cr.preds:
                    if not pred(pkt, ctx):
                        matched = False
                        break
                if not matched:
                    continue
            steps.append(RuleHit(table, cr, total, False, None, pos))
            if kind == "jump" or kind == "goto":
                if kind == "jump":
                    if len(stack) >= MAX_DEPTH:
                        raise IptablesError(f"{self.ruleset.source}:{cr.rule.line}: jumps nest deeper than {MAX_DEPTH}")
                    stack.append((cur, pos, lists))
                cur = cr.jump_chain
                if cur is None:
                    cur = cr.jump_chain = chains[cr.jump_to]
                if cur._rules is None:
                    cur.compile()
                pos = 0
                lists = cur.candidate_lists(pkt) if cur._indexed else None
                continue
            if kind == "none":
                continue
            if kind == "nat":
                return Verdict("ACCEPT", None, cr.action, steps, total, table, chain)
            if kind == "continue":
                if cr.action.notrack:
                    pkt.ctstate = "UNTRACKED"
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
            raise AssertionError(kind)

    @staticmethod
    def _policy(table: str, start: CompiledChain, steps: list[RuleHit], total: int) -> Verdict:
        steps.append(RuleHit(table, start.policy_info, total, policy=True))
        return Verdict(start.policy, None, None, steps, total, table, start.name)


# The order in which tables run at each hook (include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities; security omitted).
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
