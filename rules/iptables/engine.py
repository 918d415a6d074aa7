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
from typing import Any, Callable, Optional

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
    remembered: bool = False       # a VerdictMemo holds it: shared by every packet with its key (read-only)
    # remembered whole: the packet fields its key holds (every packet equal in them takes this walk)
    fields: Optional[frozenset] = None

    @property
    def rule(self) -> Optional[RuleHit]:
        """The hit that decided the verdict (the last step)."""
        return self.steps[-1] if self.steps else None


class _Chains(dict):
    """A table's compiled chains, each made when first looked up by name (``chains[name]``: a jump
    resolved, a walk started): a node's kube-proxy dump holds ~250,000 chains at 50,000 Services, of
    which a trace enters a handful, so the Engine does not build an object per chain up front. The
    built-in chains are made at once (``get`` finds them); ``source`` is the parsed table's chains."""

    __slots__ = ("source", "min_rules", "scanners", "rule_cache")

    def __init__(self, source: dict, min_rules: int, scanners, rule_cache: Optional[dict] = None) -> None:
        super().__init__()
        self.source, self.min_rules, self.scanners, self.rule_cache = source, min_rules, scanners, rule_cache
        # (built-in chains are a node's own: a layered table's shared chains are kube-proxy's)
        for name, c in getattr(source, "own", source).items():
            if c.policy is not None:
                self[name] = CompiledChain(c, min_rules, scanners)

    def __missing__(self, name: str) -> CompiledChain:
        src = self.source[name]
        box = src.shared
        if box is not None:            # a chain several nodes hold: compiled once for all of them
            cc = box[0]
            if cc is None:
                cc = box[0] = CompiledChain(src, self.min_rules, self.scanners, self.rule_cache)
                cc.shared = True
            if cc.min_rules == self.min_rules and (cc.scanners is None) == (self.scanners is None):
                self[name] = cc
                return cc
        cc = self[name] = CompiledChain(src, self.min_rules, self.scanners, self.rule_cache)
        return cc


class Engine:
    """A compiled ruleset. Build once per ruleset; `run` is called per packet.

    Building checks the jump graph for loops (as iptables-restore does) and sets up every chain;
    a chain's rules are compiled when a packet first enters it (`compile_all` compiles them all).

    `run` remembers walks (:class:`VerdictMemo`): the part of a traversal that is a function of the
    packet fields its rules read is replayed from memory for the next packet with the same fields,
    and the walk goes on live from the first rule that draws or keeps state. `verdict_cache = False`
    (class or instance) walks every rule every time (the reference the memo is tested against).
    """

    verdict_cache = True

    def __init__(self, ruleset: Ruleset, *, index_min_rules: Optional[int] = None, codegen: bool = True,
                 rule_cache: Optional[dict] = None) -> None:
        """`index_min_rules`: chains at least this long get the hash index; `codegen=False` evaluates
        the compiled predicates one by one (the reference the generated scanners are tested against);
        `rule_cache`: a dict kept across the rulesets of a cluster's nodes, in which their long lazily
        parsed chains keep their compiled rules by line (CompiledChain._cached_rules)."""
        self.ruleset = ruleset
        self.tables: dict[str, dict[str, CompiledChain]] = {}
        self._memo = VerdictMemo() if self.verdict_cache else None
        scanners = ScannerFactory() if codegen else None
        min_rules = INDEX_MIN_RULES if index_min_rules is None else index_min_rules
        with gc_paused():
            for tname, table in ruleset.tables.items():
                check_loops(table, ruleset.source)
                self.tables[tname] = _Chains(table.chains, min_rules, scanners,
                                             rule_cache.setdefault(tname, {}) if rule_cache is not None else None)

    def compile_all(self) -> None:
        """Compile every chain now (otherwise each is compiled when a packet first enters it)."""
        with gc_paused():
            for chains in self.tables.values():
                for name in chains.source:
                    cc = chains[name]
                    if not cc.compiled:
                        cc.compile()

    def has_chain(self, table: str, chain: str) -> bool:
        chains = self.tables.get(table)
        return chains is not None and chain in chains.source

    def has_rules(self, table: str, chain: str) -> bool:
        """Whether `chain` of `table` exists and can do anything to a packet: it has a rule, or (a
        built-in chain) a policy other than ACCEPT. Without compiling it."""
        chains = self.tables.get(table)
        c = chains.source.get(chain) if chains is not None else None
        return c is not None and (c.n_rules > 0 or c.policy not in (None, "-", "ACCEPT"))

    def run(self, table: str, chain: str, pkt, ctx: EvalContext) -> Verdict:
        chains = self.tables.get(table)
        if chains is None:
            # a table that is not in the dump has empty built-in chains with ACCEPT policy
            return Verdict("ACCEPT", table=table, chain=chain)
        start = chains.get(chain)
        if start is None or start.policy is None:
            raise IptablesError(f"{self.ruleset.source}: {chain} is not a built-in chain of table {table}")
        memo = self._memo
        if memo is not None:
            got = memo.lookup(start, pkt, ctx)
            if got is not None:
                if got.__class__ is Verdict:
                    return got
                if got is _SEEN:             # a key met for the first time: walked plainly, not recorded
                    return self._walk(table, chain, start, chains, pkt, ctx, [], 0, [], start, 0,
                                      start.candidate_lists(pkt) if start._indexed else None, None, None)
                steps, total, stack, cur, pos, lists, node = got     # a remembered prefix: go on live
                return self._walk(table, chain, start, chains, pkt, ctx, steps, total, stack, cur, pos, lists,
                                  memo, None, node)
        cur = start
        if cur._rules is None:
            cur.compile()
        lists = cur.candidate_lists(pkt) if cur._indexed else None
        rec = memo.recording(start, pkt, ctx) if memo is not None else None
        return self._walk(table, chain, start, chains, pkt, ctx, [], 0, [], cur, 0, lists, memo, rec)

    def _walk(self, table: str, chain: str, start: CompiledChain, chains: dict, pkt, ctx: EvalContext,
              steps: list, total: int, stack: list, cur: CompiledChain, pos: int, lists, memo, rec,
              node: Optional[list] = None) -> Verdict:
        """ipt_do_table from (cur, pos) with `stack` and the hits so far. With `rec` (a
        VerdictMemo recording), the walk is remembered up to its end or its first impure rule; a
        rule that only draws (`-m statistic --mode random`) is a branch point instead: the walk is
        remembered up to it, and on from it per rule the draws led to (`node`: the branches at the
        draw point the walk is at, see VerdictMemo)."""
        while True:
            if rec is not None:
                ahead = memo.ahead(rec, cur, pos)
                if ahead:
                    # the rules ahead may draw (statistic), keep state (recent, limit, sets) or read
                    # what the key does not hold: remember the walk so far, go on live; at a draw
                    # point, with a node for the walks on from it
                    node = [rec[0], rec[2], {}] if ahead == DRAW else None
                    memo.store(rec, (list(steps), total, list(stack), cur, pos, lists, node), pkt.mark)
                    rec = None
            scan = cur._scan
            if scan is not None:
                i = scan(pkt, ctx, pos, cur._rules)
            elif lists is None:
                i = pos
            else:
                i = cur.next_candidate(lists, pos)
            if node is not None:
                # a draw point: the scan drew as the live walk draws; the walk on from the rule it
                # found (i) is remembered per i
                bucket, fields, branches = node
                node = None
                if fields is bucket.fields:
                    got = branches.get(i)
                    if got is None:
                        if memo.second_hit:
                            branches[i] = _SEEN      # the first walk on from here to i: walked plainly
                        else:
                            rec = (bucket, None, fields, branches, i)
                    elif got is _SEEN:               # the second: recorded
                        rec = (bucket, None, fields, branches, i)
                    else:
                        value, mark = got
                        if "mark" in fields:
                            pkt.mark = mark
                        if value.__class__ is Verdict:
                            return value
                        steps, total, stack, cur, pos, lists, node = value
                        steps, stack = list(steps), list(stack)
                        continue
            n = cur.n
            if i >= n:
                total += n - pos
                if stack:
                    cur, pos, lists = stack.pop()
                    continue
                return self._done(self._policy(table, start, steps, total), memo, rec, pkt)
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
                nxt = cr.jump_chain
                if nxt is None:
                    # resolved in this node's chains; remembered on the rule unless its chain is
                    # shared by several nodes' Engines, whose targets may differ (KUBE-SERVICES
                    # jumping to a Local-policy Service's per-node KUBE-EXT-* chain)
                    nxt = chains[cr.jump_to]
                    if not cur.shared:
                        cr.jump_chain = nxt
                cur = nxt
                if cur._rules is None:
                    cur.compile()
                pos = 0
                lists = cur.candidate_lists(pkt) if cur._indexed else None
                continue
            if kind == "none":
                continue
            if kind == "nat":
                return self._done(Verdict("ACCEPT", None, cr.action, steps, total, table, chain), memo, rec, pkt)
            if kind == "continue":
                if cr.action.notrack:
                    pkt.ctstate = "UNTRACKED"
                continue
            if kind == "return":
                if stack:
                    cur, pos, lists = stack.pop()
                    continue
                return self._done(self._policy(table, start, steps, total), memo, rec, pkt)
            if kind == "mark":
                T.apply_mark(cr.action, pkt)
                continue
            if kind == "connmark":
                T.apply_connmark(cr.action, pkt)
                continue
            if kind == "verdict":
                return self._done(Verdict(cr.action.verdict, cr.action.reject_with, None, steps, total, table, chain),
                                  memo, rec, pkt)
            raise AssertionError(kind)

    @staticmethod
    def _done(v: Verdict, memo, rec, pkt) -> Verdict:
        if rec is not None:
            memo.store(rec, v, pkt.mark)
        return v

    @staticmethod
    def _policy(table: str, start: CompiledChain, steps: list[RuleHit], total: int) -> Verdict:
        steps.append(RuleHit(table, start.policy_info, total, policy=True))
        return Verdict(start.policy, None, None, steps, total, table, start.name)


# --- remembered walks -------------------------------------------------------------------------
# What each match module's options read from the packet (the fields a walk through it depends on);
# a module or option not listed here draws, keeps state or reads more (statistic, recent, limit, set,
# connmark, nfacct, icmp, conntrack's --ctorig*/--ctstatus, addrtype's --limit-iface-*): impure.
_READS: dict[str, dict[str, tuple[str, ...]]] = {
    "tcp": {"--sport": ("sport",), "--source-port": ("sport",), "--dport": ("dport",),
            "--destination-port": ("dport",), "--tcp-flags": ("tcp_flags",), "--syn": ("tcp_flags",)},
    "multiport": {"--sports": ("sport",), "--source-ports": ("sport",), "--dports": ("dport",),
                  "--destination-ports": ("dport",), "--ports": ("sport", "dport")},
    "mark": {"--mark": ("mark",)},
    "conntrack": {"--ctstate": ("ctstate",), "--ctdir": ("ct_reply",), "--ctproto": ("proto",)},
    "state": {"--state": ("ctstate",)},
    "physdev": {"--physdev-in": ("physdev_in",), "--physdev-is-in": ("physdev_in",),
                "--physdev-out": ("physdev_out",), "--physdev-is-out": ("physdev_out",),
                "--physdev-is-bridged": ("physdev_out",)},
    "addrtype": {"--src-type": ("src", "local"), "--dst-type": ("dst", "local")},
    "iprange": {"--src-range": ("src",), "--dst-range": ("dst",)},
    "comment": {"--comment": ()},
}
for _m in ("udp", "sctp", "udplite"):
    _READS[_m] = {k: v for k, v in _READS["tcp"].items() if "flags" not in v[0]}
# how a key reads each field (public attributes: the engine also runs on stand-in packets);
# "local" is not a packet field but the netns's local addresses (addrtype): see VerdictMemo
_FIELD_EXPR = {
    "src": "p.src", "dst": "p.dst", "proto": "p.proto", "sport": "p.sport", "dport": "p.dport",
    "tcp_flags": "p.tcp_flags", "mark": "p.mark", "ct_reply": "p.ct_reply", "iif": "p.iif", "oif": "p.oif",
    "physdev_in": "p.physdev_in", "physdev_out": "p.physdev_out",
    # --ctstate also reads the virtual SNAT/DNAT states from the entry (matches.packet_ctstates)
    "ctstate": "p.ctstate, (None if p.ct is None else (getattr(p.ct, 'snat', False), getattr(p.ct, 'dnat', False)))",
}


PURE, DRAW, STOP = 0, 1, 2     # what a walk ahead is (VerdictMemo.ahead)
_SEEN = ("seen",)              # VerdictMemo: a key (or a rule drawn) met once, its walk not recorded


def _rule_reads(cr, draws: bool = False) -> Optional[frozenset]:
    """The fields a compiled rule's test and target read; None: it draws or keeps state (impure).
    ``draws``: a random ``-m statistic`` match is allowed (its draw is not a field: the fields of
    the rest of the rule), so None then means it keeps state or reads more."""
    rule = cr.rule
    kind = cr.kind
    if kind == "unsupported":
        return frozenset()                   # never matches, reads nothing
    if kind == "connmark" or (kind == "continue" and getattr(cr.action, "notrack", False)):
        return None
    out: set[str] = set()
    h = rule.header
    for name in ("src", "dst", "iif", "oif", "proto"):
        if getattr(h, name) is not None:
            out.add(name)
    for m in rule.matches:
        if not m.pure:
            if draws and m.module == "statistic" and not m.per_rule:      # --mode random (nth: per rule)
                continue
            return None
        if m.always:                         # comment, and what the model does not count (nfacct, limit)
            continue
        reads = _READS.get(m.module)
        if reads is None:
            return None
        for o in m.opts:
            got = reads.get(o.name)
            if got is None:
                return None
            out.update(got)
    if kind == "mark":
        out.add("mark")                      # MARK --set-xmark reads the mark it rewrites
    return frozenset(out)


class _Bucket:
    """The remembered walks from one start chain for one conntrack state: the fields their keys
    hold (grown as walks visit chains that read more) and the walks by key."""

    __slots__ = ("fields", "key", "walks")

    def __init__(self, fields: frozenset, key: Callable) -> None:
        self.fields = fields
        self.key = key
        self.walks: dict[tuple, tuple] = {}


class VerdictMemo:
    """Remembered rule walks of one Engine, so that a packet whose key fields equal an earlier
    packet's gets the same traversal without evaluating the rules again.

    A walk is a function of the packet fields its rules read as long as every rule it evaluates
    is pure (no draw, no state: see _READS) and the netns's local addresses (addrtype LOCAL) are
    the same. Walks are kept per start chain and conntrack state (an ESTABLISHED packet's walk
    through FORWARD visits other chains than a NEW one's); each such bucket's key holds every field
    that any chain its recorded walks visited reads (index lookups read dst, proto, dport): a walk
    that visits a chain reading more is not kept, and the bucket starts afresh with the larger key.
    Two packets equal in those fields take the same path, whatever the chains they did not visit
    read. The local addresses must be a versioned set (netsim.dataplane.routing.LocalAddresses):
    walks are kept per set (nodes with the same rule text share an Engine, each with its own
    addresses) and a change of the set empties its walks. A walk is remembered whole when it ends before an impure rule;
    otherwise up to the chain position from which an impure rule could be evaluated (hits so far,
    rules counted, jump stack, packet mark), and each later walk with the key goes on live from
    there: a `-m statistic` draws from the RNG exactly as without the memo, `-m recent` reads and
    updates its lists as before. Where the only impure rules ahead are random `-m statistic` draws
    (kube-proxy's KUBE-SVC chains) in a chain a scanner evaluates, the remembered point is a branch
    point: the walk from there runs the scan live (so every draw happens as without the memo, in
    the same order) and the rest of the walk is a function of the key and the rule the draws led
    to, remembered per that rule up to the next such point or the end (a Verdict reached so is
    `remembered`, its HookResult made once, but has no `fields`: it is not pure, and the hop memo
    does not keep the hop). A rule set never changes under an Engine (a sync builds a new
    one), so nothing else can make a remembered walk stale.

    A walk is recorded at its key's second hit, not its first (``second_hit``; a walk on from a
    draw point, at the second time the draws lead to that rule): the first is walked plainly and
    leaves a mark. Recording costs more than walking (which chains read what is learnt, the
    prefix copied and stored: a kube-proxy nat PREROUTING walk at 10,000 Services took ~18 µs
    recorded against ~7 µs plainly), and is wasted on a key never met again — as most ClusterIPs
    are between two traces to random ones among 10,000. The plain walk is the reference walk, so
    what any packet gets is unchanged; only when replays start moves by one hit."""

    __slots__ = ("envs", "chains", "keys", "infos")
    MAX_PER_BUCKET = 1 << 14
    # a walk (and a walk on from a draw point to one rule) is recorded at its key's second hit, the
    # first being walked plainly (it leaves _SEEN); False: recorded at the first hit
    second_hit = True
    MAX_ENVS = 512

    def __init__(self) -> None:
        self.chains: dict[CompiledChain, tuple[int, frozenset]] = {}   # chain -> (last impure position, reads)
        # per local-address set (nodes whose rules are the same text share one Engine, each with its
        # own EvalContext): [the set, its version, {start chain: {ctstate: bucket}}]
        self.envs: dict[int, list] = {}
        self.keys: dict[frozenset, Callable] = {}                      # fields -> key function
        # each distinct chain info once (kube-proxy's per-Service chains at 10,000 Services are learnt
        # as a few distinct infos): a chain learnt keeps no object of its own
        self.infos: dict[tuple, tuple] = {}

    def _key(self, fields: frozenset) -> Callable:
        fn = self.keys.get(fields)
        if fn is None:
            exprs = ", ".join(_FIELD_EXPR[f] for f in sorted(fields) if f in _FIELD_EXPR)
            fn = self.keys[fields] = eval(f"lambda p: ({exprs}{',' if exprs else ''})")  # noqa: S307 - fixed text
        return fn

    def _walks(self, ctx: Any) -> Optional[dict]:
        """The walks remembered under this context's local addresses (emptied when they changed)."""
        la = ctx.local_addrs
        env = self.envs.get(id(la))
        if env is not None and env[0] is la:
            if env[1] != la.version:
                env[1], env[2] = la.version, {}
            return env[2]
        version = getattr(la, "version", None)
        if version is None:
            return None                      # an unversioned set: its changes cannot be seen, no memo
        if len(self.envs) >= self.MAX_ENVS:
            self.envs.clear()
        env = self.envs[id(la)] = [la, version, {}]     # (holds the set: its id cannot be reused meanwhile)
        return env[2]

    def lookup(self, start: CompiledChain, pkt: Any, ctx: Any) -> Any:
        """The walk remembered for the packet's key: a Verdict (whole), a prefix (hits, rules
        counted, stack, chain and position to go on live from, draw-point node), ``_SEEN`` (the
        key's first hit, marked now: walk plainly) or None (record this walk)."""
        by_chain = self._walks(ctx)
        if by_chain is None:
            return None
        buckets = by_chain.get(start)
        if buckets is None:
            return None
        try:
            b = buckets.get(pkt.ctstate)
            if b is None:
                return None
            key = b.key(pkt)
        except AttributeError:               # a stand-in packet without some field: no memo
            return None
        walks = b.walks
        got = walks.get(key)
        if got is None:
            if self.second_hit:
                if len(walks) >= self.MAX_PER_BUCKET:
                    walks.clear()
                walks[key] = _SEEN
                return _SEEN
            return None
        if got is _SEEN:
            return None
        value, mark = got
        if "mark" in b.fields:
            pkt.mark = mark
        if value.__class__ is Verdict:
            return value
        steps, total, stack, cur, pos, lists, node = value
        return list(steps), total, list(stack), cur, pos, lists, node

    def recording(self, start: CompiledChain, pkt: Any, ctx: Any) -> Optional[tuple]:
        by_chain = self._walks(ctx)
        if by_chain is None:
            return None
        buckets = by_chain.get(start)
        if buckets is None:
            buckets = by_chain[start] = {}
        try:
            state = pkt.ctstate
            b = buckets.get(state)
            if b is None:
                b = buckets[state] = _Bucket(frozenset(), self._key(frozenset()))
            return (b, b.key(pkt), b.fields, None, None)
        except AttributeError:
            return None

    def ahead(self, rec: tuple, cur: CompiledChain, pos: int) -> int:
        """What the walk from (cur, pos) is for the recording's key: PURE (0) a function of it, DRAW
        (1) one of it and of what the rules ahead draw (random statistic matches only, in a chain a
        scanner evaluates: the draws happen in the scan), STOP (2) neither (state kept, or a field
        the key does not hold: then the bucket's keys hold it from now on)."""
        info = self.chains.get(cur)
        if info is None:
            info = self._learn(cur)
        if info[1] <= rec[2]:
            if info[0] < pos:
                return PURE
            return DRAW if info[2] < pos and cur._scan is not None else STOP
        b = rec[0]
        if b.fields is rec[2]:               # the bucket's keys hold more from now on (and start afresh)
            fields = b.fields | info[1]
            b.fields, b.key, b.walks = fields, self._key(fields), {}
        return STOP

    def _learn(self, cc: CompiledChain) -> tuple[int, frozenset, int]:
        """(the last impure rule's position, the fields the chain's rules read, the last position of
        a rule that is impure for more than its random draws)."""
        if cc._rules is None:
            cc.compile()
        last_impure = last_state = -1
        reads: set[str] = {"dst", "proto", "dport"} if cc._indexed else set()
        for i in range(cc.n):
            cr = cc._rules[i]
            r = _rule_reads(cr)
            if r is None:
                last_impure = i
                r = _rule_reads(cr, draws=True)
                if r is None:
                    last_state = i
                    continue
            reads |= r
        info = (last_impure, frozenset(reads), last_state)
        info = self.chains[cc] = self.infos.setdefault(info, info)
        return info

    def store(self, rec: tuple, value: Any, mark: int = 0) -> None:
        """Remember a walk (whole: a Verdict; or up to a point it goes on live from) under the
        recording's key, or, for a recording on from a draw point, under the rule the draws led to."""
        b, key, fields, branches, i = rec
        if fields is not b.fields:
            return                           # the key lacks a field learnt meanwhile
        if branches is not None:
            if value.__class__ is Verdict:
                value.remembered = True      # (its HookResult is made once) but not a function of the
                value.fields = None          # key alone: the walk drew
            branches[i] = (value, mark)
            return
        walks = b.walks
        if len(walks) >= self.MAX_PER_BUCKET:
            walks.clear()
        if value.__class__ is Verdict:
            value.remembered = True
            value.fields = fields
        walks[key] = (value, mark)


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
