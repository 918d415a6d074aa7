"""Compile a table's chains into indexed lookups that keep first-match order exactly.

A rule whose header pins one destination address (-d X/32) and/or whose protocol match pins
one destination port (-p P ... --dport N, with no side-effecting match such as statistic or
recent before it) is filed in a hash bucket keyed by those fields. For a packet, the next
rule that can possibly match at or after position `pos` is the smallest position among the
packet's buckets and the unindexed rules; every candidate is still tested in full. Rules the
index skips could not have matched, and no side effect was skipped, so the verdict, the
random draws and the position-based "rules evaluated" count equal a linear walk's.

Shorter chains (KUBE-SVC-*, KUBE-SEP-*, built-ins) are walked by a generated scanner
(codegen.py) when the Engine asks for one, else rule by rule with the compiled predicates.
A chain is compiled when a packet first enters it (or its compiled view is first read).
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from netsim.control.heap import deferred_gc
from netsim.rules.iptables import targets as T
from netsim.rules.iptables.matches import iface_matches
from netsim.rules.iptables.ruleset import Chain, Header, IptablesError, LazyChain, Rule, Table

INDEX_MIN_RULES = 16          # shorter chains are walked linearly
_PORT_PROTOS = (6, 17, 132, 136)


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What a RuleHit reports about its rule (a CompiledRule is one; a policy hit gets its own)."""

    line: int
    text: str
    comment: Optional[str]
    target: Optional[str]
    chain: str = ""


class CompiledRule(RuleInfo):
    """A rule ready to evaluate. It is its own RuleInfo, so that a hit touches one object per rule;
    equality (RuleInfo's) compares only the reported fields."""

    __slots__ = ("rule", "preds", "kind", "action", "jump_to", "jump_chain", "ikey")
    __setattr__ = object.__setattr__     # the RuleInfo fields are set once, in __init__

    def __init__(self, rule: Rule, preds: tuple, kind: str, action: Any = None, jump_to: Optional[str] = None) -> None:
        t = rule.target_spec
        init = object.__setattr__
        init(self, "line", rule.line)
        init(self, "text", rule.text)
        init(self, "comment", rule.comment)
        init(self, "target", t.name if t is not None else None)
        init(self, "chain", rule.chain)
        self.rule = rule
        self.preds: tuple[Callable[[Any, Any], bool], ...] = preds
        self.kind = kind               # none|jump|goto|return|verdict|nat|mark|connmark|continue|unsupported
        self.action = action
        self.jump_to = jump_to
        self.jump_chain: Optional[CompiledChain] = None     # resolved by the Engine on the first jump
        self.ikey: Any = None          # in an indexed chain: (shape, packed key), or () if walked

    @property
    def info(self) -> "CompiledRule":
        return self

    def __repr__(self) -> str:
        return f"CompiledRule(line={self.line}, chain={self.chain!r}, kind={self.kind!r}, text={self.text!r})"


class CompiledChain:
    """One chain, compiled on first use: a long chain gets the hash index, a short one a generated
    scanner (when the Engine has a ScannerFactory). Until then only its name, policy and length are set,
    so that a 10,000-Service dump costs nothing for the Services no packet reaches.

    Layout for a cold walk (each distinct object a packet touches is a likely CPU-cache miss):
    `_rules` is one tuple holding the compiled rules followed by the scanner's constants (the
    scanner reads them as k[n + j]), and the fields the Engine reads per packet come first.
    """

    __slots__ = ("_rules", "_scan", "n", "_indexed", "shapes", "unindexed", "name", "policy", "line",
                 "source", "min_rules", "scanners", "policy_info", "shared", "rule_cache")

    def __init__(self, chain: Chain, min_rules: int = INDEX_MIN_RULES, scanners=None,
                 rule_cache: Optional[dict] = None) -> None:
        """``rule_cache``: compiled rules of indexed chains by their line, kept by the caller across
        the rulesets of a cluster's nodes (see _cached_rules)."""
        self._rules: Optional[tuple] = None         # (rule 0, ..., rule n-1, constant 0, ...) once compiled
        self._scan: Optional[Callable[[Any, Any, int, tuple], int]] = None
        self.n = chain.n_rules
        self._indexed = False
        # shape -> {packed key: position, or a tuple of positions}; see candidate_lists
        self.shapes: Sequence[tuple[tuple[bool, bool, bool], dict[int, Any]]] = ()    # (a list once compiled)
        self.unindexed: tuple[int, ...] = ()
        self.name = chain.name
        self.policy = chain.policy
        self.line = chain.line
        self.source: Optional[Chain] = chain         # dropped once compiled
        self.min_rules = min_rules
        self.scanners = scanners
        self.shared = False      # True: its compiled rules serve several nodes' Engines (jumps not kept)
        self.rule_cache = rule_cache
        self.policy_info = RuleInfo(chain.line, f":{chain.name} {chain.policy}", None, chain.policy, chain.name) \
            if chain.policy is not None else None

    # compiled views (each compiles the chain on first access)
    @property
    def rules(self) -> list[CompiledRule]:
        if self._rules is None:
            self.compile()
        return list(self._rules[:self.n])

    @property
    def indexed(self) -> bool:
        if self._rules is None:
            self.compile()
        return self._indexed

    @property
    def scan(self) -> Optional[Callable[[Any, Any, int, tuple], int]]:
        if self._rules is None:
            self.compile()
        return self._scan

    @property
    def consts(self) -> tuple:
        """The scanner's constants (what it reads as k[n + j])."""
        if self._rules is None:
            self.compile()
        return self._rules[self.n:]

    @property
    def compiled(self) -> bool:
        return self._rules is not None

    @deferred_gc()                 # a compiled chain lives as long as its engine (netsim.control.heap)
    def compile(self) -> None:
        chain = self.source
        consts: tuple = ()
        if self.n < self.min_rules:
            rules = [compile_rule(r) for r in chain.rules]
            if self.scanners is not None:
                self._scan, consts = self.scanners.scanner([rule_exprs(cr.rule) for cr in rules])
        else:
            if self.rule_cache is not None and isinstance(chain, LazyChain) and chain.raw and not chain._parsed:
                rules = self._cached_rules(chain, self.rule_cache)
                self.shared = True     # (its rules are other nodes' chains' too: their jumps are not kept)
            else:
                rules = [_indexed(compile_rule(r)) for r in chain.rules]
            shapes: dict[tuple[bool, bool, bool], dict[int, list[int]]] = {}
            unindexed = []
            for pos, cr in enumerate(rules):
                ik = cr.ikey
                if not ik:
                    unindexed.append(pos)
                else:
                    shape, packed = ik
                    got = shapes.get(shape)
                    if got is None:
                        got = shapes[shape] = {}
                    at = got.get(packed)
                    if at is None:
                        got[packed] = [pos]
                    else:
                        at.append(pos)
            # a bucket of one rule holds its position itself (one object fewer to touch than a tuple)
            self.shapes = [(shape, {k: v[0] if len(v) == 1 else tuple(v) for k, v in b.items()})
                           for shape, b in shapes.items()]
            self.unindexed = tuple(unindexed)
            self._indexed = True
        self._rules = tuple(rules) + consts
        self.source = None

    @staticmethod
    def _cached_rules(chain: LazyChain, cache: dict) -> list[CompiledRule]:
        """An indexed chain's compiled rules, each taken from ``cache`` by its line where a node
        before compiled it, else parsed (those lines only) and compiled, and kept there. Nodes'
        KUBE-SERVICES chains differ in a few lines (pkg/proxy/iptables/proxier.go syncProxyRules:
        an internalTrafficPolicy Local Service's ClusterIP line is written only where the node has
        a local endpoint): each node's chain is then the cluster's rules in its own order, no rule
        parsed or compiled twice. A compiled rule reads only the packet and the evaluation context,
        except its remembered jump (kept only by a chain of one node's: CompiledChain.shared);
        rules with per-rule state (statistic nth, sets) or an unsupported part are not kept."""
        lines = chain.lines()
        rules: list = [cache.get(line) for line in lines]
        missing = [k for k, cr in enumerate(rules) if cr is None]
        if missing:
            for k, rule in zip(missing, chain.subset(missing).rules):
                cr = rules[k] = _indexed(compile_rule(rule))
                if rule.unsupported is None and not any(m.per_rule for m in rule.matches):
                    cache[lines[k]] = cr
        return rules

    def candidate_lists(self, pkt) -> Optional[list]:
        """Positions (ints, or sorted tuples of them) whose union holds every rule this packet could
        match (None: walk all)."""
        if not self._indexed:
            return None
        lists: list = [self.unindexed] if self.unindexed else []
        dst = pkt.dst
        proto = pkt.proto
        ported = proto in _PORT_PROTOS
        for (has_dst, has_proto, has_dport), buckets in self.shapes:
            if has_dport:
                if not ported:
                    continue
                key = (((dst << 8) | proto) << 16 | pkt.dport) if has_dst else (proto << 16 | pkt.dport)
            else:
                key = ((dst << 8) | proto) if has_proto else dst
            found = buckets.get(key)
            if found is not None:
                lists.append(found)
        return lists

    def next_candidate(self, lists: Optional[list], pos: int) -> int:
        if lists is None:
            return pos
        best = self.n
        for lst in lists:
            if lst.__class__ is int:
                if pos <= lst < best:
                    best = lst
                continue
            j = bisect_left(lst, pos)
            if j < len(lst) and lst[j] < best:
                best = lst[j]
        return best


def header_preds(h: Header, keyed: tuple[bool, bool, bool] = (False, False, False)) -> list[Callable]:
    """Tests for the header fields; fields the index already guarantees (`keyed`: dst, proto) are left out."""
    preds: list[Callable] = []
    if h.src is not None:
        net, mask, neg = h.src
        if mask == 0xFFFFFFFF:
            preds.append(lambda p, c: (p.src == net) != neg)
        else:
            preds.append(lambda p, c: ((p.src & mask) == net) != neg)
    if h.dst is not None and not keyed[0]:
        dnet, dmask, dneg = h.dst
        if dmask == 0xFFFFFFFF:
            preds.append(lambda p, c: (p.dst == dnet) != dneg)
        else:
            preds.append(lambda p, c: ((p.dst & dmask) == dnet) != dneg)
    if h.iif is not None:
        iname, ineg = h.iif
        preds.append(lambda p, c: iface_matches(p.iif, iname) != ineg)
    if h.oif is not None:
        oname, oneg = h.oif
        preds.append(lambda p, c: iface_matches(p.oif, oname) != oneg)
    if h.proto is not None and not keyed[1]:
        pnum, pneg = h.proto
        if pnum != 0:
            preds.append(lambda p, c: (p.proto == pnum) != pneg)
        elif pneg:
            preds.append(lambda p, c: False)   # ! -p all matches nothing
    if h.fragment is not None:
        # we emulate unfragmented datagrams only: -f never matches, ! -f always does
        frag = h.fragment
        preds.append(lambda p, c: not frag)
    return preds


def header_exprs(h: Header) -> list[tuple[str, tuple]]:
    """The header tests as Python source fragments (see codegen.py), in header_preds' order."""
    out: list[tuple[str, tuple]] = []
    for attr, f in (("p.src", h.src), ("p.dst", h.dst)):
        if f is not None:
            net, mask, neg = f
            if mask == 0xFFFFFFFF:
                out.append((f"{attr} {'!=' if neg else '=='} {{}}", (net,)))
            else:
                out.append((f"({attr} & {{}}) {'!=' if neg else '=='} {{}}", (mask, net)))
    for attr, f in (("p.iif", h.iif), ("p.oif", h.oif)):
        if f is not None:
            name, neg = f
            if name.endswith("+"):
                test = (f"{attr} is not None and {attr}.startswith({{}})", (name[:-1],))
            else:
                test = (f"{attr} == {{}}", (name,))
            out.append((f"not ({test[0]})", test[1]) if neg else test)
    if h.proto is not None and h.proto[0] != 0:
        out.append((f"p.proto {'!=' if h.proto[1] else '=='} {{}}", (h.proto[0],)))
    elif h.proto is not None and h.proto[1]:
        out.append(("False", ()))
    if h.fragment:
        out.append(("False", ()))
    return out


def rule_exprs(rule: Rule) -> Optional[list[tuple[str, tuple]]]:
    """All of a rule's tests as source fragments; a match without one calls its predicate."""
    if rule.unsupported is not None:
        return None
    out = header_exprs(rule.header)
    for m in rule.matches:
        if m.always:
            continue
        out.append(m.expr if m.expr is not None else ("{}(p, c)", (m.pred,)))
    return out


def rule_preds(rule: Rule, keyed: tuple[bool, bool, bool] = (False, False, False),
               key: tuple = ()) -> tuple[Callable, ...]:
    """The rule's tests in kernel order, minus always-true matches and what the index key guarantees."""
    preds = header_preds(rule.header, keyed)
    keyed_dport = key[-1] if keyed[2] else None
    for m in rule.matches:
        if m.always or (keyed_dport is not None and m.dport_only and m.dport == keyed_dport):
            continue
        preds.append(m.pred)
    return tuple(preds)


def compile_rule(rule: Rule) -> CompiledRule:
    if rule.unsupported is not None:
        return CompiledRule(rule, (), "unsupported")
    preds = rule_preds(rule)
    t = rule.target_spec
    if t is None:
        return CompiledRule(rule, preds, "none")
    if t.action is None:
        return CompiledRule(rule, preds, "goto" if t.goto else "jump", jump_to=t.name)
    a = t.action
    if a == "RETURN":
        return CompiledRule(rule, preds, "return")
    if isinstance(a, T.Verdict_):
        return CompiledRule(rule, preds, "verdict", a)
    if isinstance(a, T.NatAction):
        return CompiledRule(rule, preds, "nat", a)
    if isinstance(a, T.MarkAction):
        return CompiledRule(rule, preds, "mark", a)
    if isinstance(a, T.ConnmarkAction):
        return CompiledRule(rule, preds, "connmark", a)
    return CompiledRule(rule, preds, "continue", a)


def _indexed(cr: CompiledRule) -> CompiledRule:
    """Set a rule's place in an indexed chain (``ikey``); a candidate found through its bucket
    already has the keyed fields equal to the packet's, so its tests leave them out."""
    ik = index_key(cr.rule)
    if ik is None:
        cr.ikey = ()
    else:
        shape, key = ik
        cr.ikey = (shape, pack_key(key[0] if shape[0] else None, key[int(shape[0])] if shape[1] else None,
                                   key[-1] if shape[2] else None))
        cr.preds = rule_preds(cr.rule, shape, key)
    return cr


def pack_key(dst: Optional[int], proto: Optional[int], dport: Optional[int]) -> int:
    """One int per (shape, values): a cold dict probe then touches one key object, not a tuple of three."""
    key = 0
    if dst is not None:
        key = dst
    if proto is not None:
        key = (key << 8) | proto
    if dport is not None:
        key = (key << 16) | dport
    return key


def index_key(rule: Rule) -> Optional[tuple[tuple[bool, bool, bool], tuple]]:
    """(shape, key) under which a rule can be indexed, or None if it must be walked."""
    if rule.unsupported is not None:
        return None
    h = rule.header
    dst = h.dst[0] if (h.dst is not None and not h.dst[2] and h.dst[1] == 0xFFFFFFFF) else None
    proto = h.proto[0] if (h.proto is not None and not h.proto[1] and h.proto[0]) else None
    dport = None
    for m in rule.matches:
        if m.dport is not None:
            dport = m.dport
            break
        if not m.pure:
            break          # a side effect (random draw, recent update) runs before the port test
    if proto is None:
        dport = None
    if dst is None and dport is None:
        return None
    shape = (dst is not None, proto is not None, dport is not None)
    key = tuple(v for v in (dst, proto, dport) if v is not None)
    return shape, key



def check_loops(table: Table, source: str = "<dump>") -> None:
    """iptables-restore refuses a ruleset whose jumps form a loop (ELOOP); so do we.

    An iterative depth-first search (no recursive closure: that would be a reference cycle
    keeping the whole graph alive until the next full GC, and deep chains would hit the
    recursion limit)."""
    chains = table.chains
    if any(getattr(c, "raw", None) for c in getattr(chains, "own", chains).values()):
        # parse(lazy=True) is for text this program rendered (a node's kube-proxy rules, loop-free
        # by construction, and loaded for real by iptables-restore in the kernel backend); reading
        # every unparsed line for its jumps cost more than parsing the chains a trace enters. A
        # loop there is still refused when a packet enters it (Engine.run: jumps nest too deep).
        return
    graph: dict[str, list[tuple[str, int]]] = {}
    for name, c in chains.items():
        edges = []
        for r in c.rules:
            t = r.target_spec
            if t is not None and t.action is None and t.name in chains:
                edges.append((t.name, r.line))
        graph[name] = edges
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    for root, root_edges in graph.items():
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(root_edges))]
        while stack:
            name, edges_it = stack[-1]
            for nxt, line in edges_it:
                s = state.get(nxt, 0)
                if s == 1:
                    raise IptablesError(f"{source}:{line}: jump to {nxt} makes a loop in table {table.name}")
                if s == 0:
                    state[nxt] = 1
                    stack.append((nxt, iter(graph[nxt])))
                    break
            else:
                state[name] = 2
                stack.pop()
