"""kube-proxy's iptables mode as a provider (:mod:`netsim.rules.provider`): the proxier's syncs
(pkg/proxy/iptables/proxier.go syncProxyRules, full and KEP-3453 partial), iptables-save text,
each node's rules evaluated by the rule engine, and iptables-restore into a kernel namespace.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Iterable, Optional

from netsim.control.heap import deferred_gc
from netsim.rules.iptables.chain_names import is_service_chain_name
from netsim.rules.provider import IPTABLES_RESTORE, KernelLoad, SyncMeasurement, SyncResult
from netsim.skb.hook_result import DeferredRuleHit, HookResult, NatRequest, RuleHit


TOP_SHARE_MIN_RULES = 16     # shorter own chains are cheaper to parse again than to compare
TOP_VARIANTS = 32            # variants of the nodes' own long chains kept to share (least recently met dropped)
_MET_ONCE = False            # IptablesNetfilter._saved: a rule hit once, its hit not kept yet


@dataclasses.dataclass
class OwnPart:
    """What an overlay node parses itself and what it takes from other nodes (``split_own``)."""

    text_data: Any                       # the restore input of the text it parses (proxier.own_view_text)
    from_base: list[str]                 # nat chains it takes from the overlay base
    taken: dict[tuple[str, str], Any]    # (table, chain) -> a chain object another node holds
    offered: list[tuple[tuple, list[str]]]   # (tops key, lines): its own long chains, made from their lines
                                             # (parse.line_chain) and offered to the nodes after it


@deferred_gc()                     # (its lists live on in the node's chains: no collection over the heap for them)
def split_own(data: Any, base: "IptablesNetfilter", tops: dict) -> OwnPart:
    """Which chains of a node's own part (``data.own_nat_*`` and its filter table) it shares, read
    from the sync's lines in one pass per table.

    * Service chains of its node-sensitive Services whose lines equal the base's chain of that name.
      A Local-policy Service is written per node for its KUBE-SVL-* and KUBE-EXT-* chains, but its
      KUBE-SVC-* chain and its endpoints' KUBE-SEP-* chains (pkg/proxy/iptables/proxier.go
      syncProxyRules: an endpoint chain holds the endpoint's address and DNAT alone) are usually the
      same on every node.
    * Its long top-level chains (KUBE-SERVICES with a line per Service port, KUBE-NODEPORTS,
      KUBE-EXTERNAL-SERVICES, ...) where another node holds them line for line: they differ between
      nodes only where a node-sensitive Service is written differently (an internalTrafficPolicy
      Local Service's ClusterIP line is there only on a node with a local endpoint). ``tops`` (one
      per overlay base, kept across the nodes): (table, chain, number of lines, hash of the lines) ->
      (lines, chain object), least recently met first; the base's own chains are offered first.
      Lines are compared whole on a hit; the hash costs little, as most lines are the BlockCache's
      own strings, whose hashes are kept.
    Shared chains are left out of the text the node parses; they are parsed and compiled once per
    cluster (ruleset.Chain.shared). So are its own long chains: they are made from the sync's lines
    (ruleset.LineChain), mostly strings every node's sync holds, rather than joined into its text
    (11 MB for a KUBE-SERVICES of 75,000 lines at 50,000 Services)."""
    if not tops:
        tops[None] = base              # (the first key: the base whose chains were offered)
        for tname in ("nat", "filter"):
            for name, c in base.ruleset.tables[tname].chains.items():
                if c.policy is None and c.n_rules >= TOP_SHARE_MIN_RULES and not is_service_chain_name(name):
                    lines = _lines(c)
                    tops[(tname, name, len(lines), hash(tuple(lines)))] = (lines, c)
    base_nat = base.ruleset.tables["nat"].chains
    from_base: list[str] = []
    taken: dict[tuple[str, str], Any] = {}
    offered: list[tuple[tuple, list[str]]] = []
    own: dict[str, tuple[list[str], list[str]]] = {}
    for tname, chain_lines, rules in (("nat", data.own_nat_chains, data.own_nat_rules),
                                      ("filter", data.filter_chains, data.filter_rules)):
        by: dict[str, list[str]] = {}
        for line in rules:
            if line[1] == "A":
                name = line[3:line.index(" ", 3)]
                got = by.get(name)
                if got is None:
                    by[name] = [line]
                else:
                    got.append(line)
        drop = set()
        for name, lines in by.items():
            if is_service_chain_name(name):
                c = base_nat.get(name) if tname == "nat" else None
                if c is not None and c.policy in (None, "-") and c.n_rules == len(lines) and _lines(c) == lines:
                    from_base.append(name)
                    drop.add(name)
                continue
            if len(lines) < TOP_SHARE_MIN_RULES:
                continue
            key = (tname, name, len(lines), hash(tuple(lines)))
            got = tops.pop(key, None)
            if got is not None:
                tops[key] = got        # (most recently met last)
                if got[0] == lines:
                    taken[(tname, name)] = got[1]
                    drop.add(name)
                    continue
            offered.append((key, lines))
            drop.add(name)             # (made from its lines: overlay)
        if drop:
            chain_lines = [c for c in chain_lines if c[1:].split(" ", 1)[0] not in drop]
            rules = [r for r in rules if not (r[1] == "A" and r[3:r.index(" ", 3)] in drop)]
        own[tname] = (chain_lines, rules)
    text_data = dataclasses.replace(data, nat_chains=own["nat"][0], nat_rules=own["nat"][1],
                                    filter_chains=own["filter"][0], filter_rules=own["filter"][1],
                                    own_nat_chains=None, own_nat_rules=None)
    return OwnPart(text_data, sorted(from_base), taken, offered)


def _shared(chain: Any) -> Any:
    """Mark a chain as held by several nodes' rule sets (compiled once for all: ruleset.Chain.shared)."""
    if chain.shared is None:
        chain.shared = [None]
    return chain


def _lines(chain: Any) -> list[str]:
    lines = getattr(chain, "lines", None)
    return lines() if lines is not None else [r.text for r in chain.rules]


def _node_text(data: Any, cluster: Any, node: str) -> str:
    """A node's iptables-save text from its restore input, with CNI portmap's hostPorts."""
    from netsim.rules.iptables.proxier import node_view_text
    from netsim.rules.portmap import with_host_ports
    return with_host_ports(node_view_text(data), cluster, node)


def _text_again(cluster: Any, node: str) -> Callable[[], str]:
    """A node's text rendered again from the cluster when asked (IptablesDataplane.keep_text False)."""
    def text_of() -> str:
        from netsim.rules.iptables.proxier import restore_data
        from netsim.rules.iptables.proxier_cluster import proxier_config_for_node
        return _node_text(restore_data(cluster, node, proxier_config_for_node(cluster, node)), cluster, node)
    return text_of


class IptablesNetfilter:
    """A node's iptables ruleset evaluated by the rule engine."""

    @deferred_gc()                 # a node's parsed rule set is long-lived (netsim.control.heap)
    def __init__(self, text: str, local_addrs: set[int], rng, *, ipsets: Any = None, source: str = "<node>",
                 ipvs_conns: Any = None, lazy: bool = False, lines: Optional[dict] = None,
                 compiled: Optional[dict] = None) -> None:
        """``lazy``: parse each chain's rules when a packet first enters it (text this program
        rendered: parse(lazy=True)); ``lines``: parse's line cache shared by a cluster's nodes;
        ``compiled``: the Engine's compiled-rule cache shared by them (Engine's rule_cache)."""
        from netsim.rules.iptables import parse
        self._text: Optional[str] = text
        self._text_of: Optional[Callable[[], str]] = None
        self._start(parse(text, source=source, lazy=lazy, lines=lines), local_addrs, rng, ipsets, ipvs_conns,
                    compiled)

    def _start(self, ruleset: Any, local_addrs: set[int], rng, ipsets: Any, ipvs_conns: Any,
               compiled: Optional[dict] = None) -> None:
        from netsim.rules.iptables import Engine, EvalContext
        self.ruleset = ruleset
        self.engine = Engine(self.ruleset, rule_cache=compiled)
        self.ctx = EvalContext(local_addrs=local_addrs, ipsets=ipsets, rng=rng, ipvs_conns=ipvs_conns)
        self._saved: dict[Any, Any] = {}
        self._has: dict[tuple[str, str], bool] = {}
        self._nats: dict[int, tuple[Any, Any]] = {}
        self._results: dict[int, tuple[Any, Any, list]] = {}    # remembered Verdict -> (it, HookResult, steps)
        self._offered: Optional[dict] = None    # an overlay base: the BlockCache's chains by name (overlay)

    @classmethod
    @deferred_gc()
    def overlay(cls, base: "IptablesNetfilter", own: OwnPart, shared: Callable[[], Iterable[str]],
                text_of: Callable[[], str],
                local_addrs: set[int], rng, *, source: str = "<node>", lines: Optional[dict] = None,
                tops: Optional[dict] = None, compiled: Optional[dict] = None) -> "IptablesNetfilter":
        """A node's rules as ``base``'s nat chains named by ``shared()`` and in ``own.from_base`` (the
        Service ports' own chains both nodes hold line for line, proxier_sync.BlockCache), the chains
        other nodes hold line for line (``own.taken``), and the node's own text (``own.text_data``:
        its other top-level chains, its node-sensitive Services' chains, the filter table), parsed
        lazily: the shared chains are parsed, held and compiled once per cluster
        (ruleset.Chain.shared). Its chains in ``own.offered`` go into ``tops`` for the nodes after it.
        ``text_of()`` gives the node's whole iptables-save text on demand (``text``). Evaluates as the
        node's whole text parsed alone would; a shared rule's line number is the one in the text it
        was parsed from."""
        from netsim.rules.iptables import parse
        from netsim.rules.iptables.parse import line_chain
        from netsim.rules.iptables.proxier import own_view_text
        from netsim.rules.iptables.ruleset import LayeredChains
        nf = cls.__new__(cls)
        ruleset = parse(own_view_text(own.text_data), source=source, lazy=True, lines=lines)
        for key, lines_ in own.offered:
            c = line_chain(ruleset, key[0], key[1], lines_)
            if tops is not None:
                tops[key] = (lines_, _shared(c))
                if len(tops) > TOP_VARIANTS + 1:
                    del tops[next(k for k in tops if k is not None)]
        nat, base_chains = ruleset.tables["nat"], base.ruleset.tables["nat"].chains
        if base._offered is None:      # (the BlockCache's chains: the same list for every overlay)
            base._offered = {name: _shared(base_chains[name]) for name in shared()}
        chains = nat.chains = LayeredChains(nat.chains, base._offered)   # (its own over the shared)
        for name in own.from_base:
            chains[name] = _shared(base_chains[name])
        for (tname, name), c in own.taken.items():
            ruleset.tables[tname].chains[name] = _shared(c)
        nf._text, nf._text_of = None, text_of
        nf._start(ruleset, local_addrs, rng, None, None, compiled)
        return nf

    @property
    def text(self) -> str:
        """The node's iptables-save text (an overlay assembles it when asked)."""
        if self._text is not None:
            return self._text
        assert self._text_of is not None
        return self._text_of()

    def rebind(self, local_addrs: set[int], ipsets: Any = None) -> "IptablesNetfilter":
        """Reuse this compiled ruleset for a rebuilt host (same rules; its local table is new)."""
        self.ctx.local_addrs = local_addrs
        if ipsets is not None:
            self.ctx.ipsets = ipsets
        return self

    def sharing(self, local_addrs: set[int], rng, ipsets: Any = None, ipvs_conns: Any = None) -> "IptablesNetfilter":
        """Another node's view of this same text: the parsed and compiled rules (and the hit caches,
        keyed by rule) shared, a fresh evaluation context of its own (its local addresses, the RNG,
        empty xt_recent lists and statistic counters), as a node that restored the same text."""
        from netsim.rules.iptables import EvalContext
        f = copy.copy(self)
        f.ctx = EvalContext(local_addrs=local_addrs, ipsets=ipsets, rng=rng, ipvs_conns=ipvs_conns)
        return f

    def fork(self, rng, memo: dict) -> "IptablesNetfilter":
        """The same parsed and compiled rules with an evaluation context of its own (RNG, xt_recent
        lists, statistic nth counters; ipsets mapped through ``memo``, a deepcopy memo of the
        forked IPVS proxier that owns them): a rule set shared copy-on-write between emulators,
        never re-rendered. The hit caches only hold rendered rule text and are shared."""
        f = copy.copy(self)
        ctx = self.ctx
        f.ctx = dataclasses.replace(ctx, rng=rng, recent=copy.deepcopy(ctx.recent), nth=dict(ctx.nth),
                                    ipsets=memo.get(id(ctx.ipsets), ctx.ipsets) if ctx.ipsets is not None else None,
                                    ipvs_conns=memo.get(id(ctx.ipvs_conns), ctx.ipvs_conns))
        return f

    def has_rules(self, table: str, chain: str) -> bool:
        key = (table, chain)
        has = self._has.get(key)
        if has is None:
            has = self._has[key] = self.engine.has_rules(table, chain)     # without compiling the chain
        return has

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> Any:
        """Evaluate one built-in chain; with ``steps`` the RULE steps of the hits are appended to it."""
        ctx = self.ctx
        ctx.now = now
        v = self.engine.run(table, chain, pkt, ctx)
        if v.remembered:           # a walk the engine's VerdictMemo replayed: its result was made once
            got = self._results.get(id(v))
            if got is not None and got[0] is v:
                if steps is not None:
                    steps += got[2]
                return got[1]
        cache = self._saved
        verdict = v.verdict
        hits = []
        for h in v.steps:
            if h.policy:
                # the policy is the last step; an ACCEPT policy is not shown (nothing matched)
                if verdict == "ACCEPT":
                    break
                key: Any = (h.table, h.chain, h.number, h.policy)
            else:
                key = id(h.rule)      # a rule's RuleInfo lives as long as the engine
            hit = cache.get(key)
            if hit is None:
                # a rule's hit is kept from its second hit on: at 10,000 Services most rules a packet
                # hits (a Service's own chains) are not hit again for long, and a first hit's object
                # then dies with its trace instead of piling up for the collector to walk
                cache[key] = _MET_ONCE
                hit = self._saved_hit(h)
            elif hit is _MET_ONCE:
                hit = cache[key] = self._saved_hit(h)
            hits.append(hit)
            if steps is not None:
                steps.append(hit if hit.__class__ is _RenderedLater else hit.step)    # (it is its own step)
        nat = v.nat
        if nat is not None:
            # the engine's NatAction belongs to its rule (lives as long as the engine): one request each
            got = self._nats.get(id(nat))
            if got is None or got[0] is not nat:
                got = self._nats[id(nat)] = (nat, NatRequest(nat.kind, nat.ip, nat.port, bool(nat.random_fully)))
            nat = got[1]
        res = HookResult(verdict, nat, hits, v.rules_evaluated, v.reject_with or "icmp-port-unreachable")
        if v.remembered:
            res.pure_fields = v.fields         # a whole walk, a function of these fields (VerdictMemo)
            if len(self._results) >= 1 << 16:
                self._results.clear()
            self._results[id(v)] = (v, res, [h if h.__class__ is _RenderedLater else h.step for h in hits])
            # (holds v: its id stays its own)
        return res

    def _saved_hit(self, h) -> Any:
        """The hit with its rule as iptables-save prints it (Rule.render), or the policy line. A rule's
        text is rendered when a trace first reads it (_RenderedLater), not when a packet first hits it:
        a first hit keeps one object."""
        if not h.policy and h.number:
            return _RenderedLater(h.table, h.chain, h.number, h.target or "", self.ruleset, h.rule)
        return RuleHit(h.table, h.chain, h.number, h.text, h.target or "")

    def save(self) -> str:
        return self.text


class _RenderedLater(DeferredRuleHit):
    """A rule hit whose text is its rule rendered when first read: the engine's compiled rule
    holds the parsed Rule, rendered if the rule set's chain holds that very rule at the hit's
    position, else rule ``number`` of the rule set's chain is (the compiled rule may come from
    another node's parse of the same line: CompiledChain._cached_rules). The rule set never
    changes under it. Holds the rule set and the compiled rule (both live as long as the
    engine), never the netfilter (whose cache of hits holds this)."""

    __slots__ = ("_ruleset", "_info")

    def __init__(self, table: str, chain: str, number: int, target: str, ruleset: Any, info: Any) -> None:
        DeferredRuleHit.__init__(self, table, chain, number, target)
        self._ruleset = ruleset
        self._info = info

    def _make_text(self) -> str:
        rule = getattr(self._info, "rule", None)
        if rule is not None and _same_rule(self._ruleset, self, rule):
            return rule.render()
        return _rule_text(self._ruleset, self.table, self.chain, self.number, self._info.text)


def _same_rule(ruleset: Any, h: Any, rule: Any) -> bool:
    """Whether the rule set's chain holds ``rule`` at the hit's position, without parsing a chain
    that is not parsed yet (a hit's chain was compiled, so it is)."""
    try:
        chain = ruleset.tables[h.table].chains[h.chain]
    except KeyError:
        return False
    rules = getattr(chain, "_parsed", None) if getattr(chain, "raw", None) else chain.rules
    return rules is not None and 0 < h.number <= len(rules) and rules[h.number - 1] is rule


def _rule_text(ruleset: Any, table: str, chain: str, number: int, text: str) -> str:
    """Rule.render of rule ``number`` of ``chain`` (``text``, the hit's own, when the rule set has no
    such rule). Holds the rule set, never the rules' netfilter (its cache of hits holds this)."""
    try:
        return ruleset.tables[table].chains[chain].rules[number - 1].render()
    except (KeyError, IndexError):
        return text


def fork_netfilter(nf: Any, rng, memo: dict) -> Any:
    """A node's rules for a forked emulator: shared rule set, own evaluation context."""
    fork = getattr(nf, "fork", None)
    return fork(rng, memo) if fork is not None else nf


class IptablesDataplane:
    """Every node's iptables rules in one emulated cluster, rendered lazily per node and shared.

    Nodes whose kube-proxy text is the same (:func:`node_rules_key`: same config, same local
    endpoints of the Local-policy Services, no hostPort pods) share one rendered, parsed and
    compiled rule set, each with an evaluation context of its own: at 10,000 Services on 100 nodes
    a trace through any number of nodes renders and parses once. A change that is not a Service,
    EndpointSlice or Node (kube-proxy's only inputs) keeps each node's compiled rules; a re-render
    that comes out the same text keeps the node's rules and state too (kube-proxy skips
    iptables-restore when nothing changed)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self._nf: dict[str, IptablesNetfilter] = {}
        self._previous: dict[str, IptablesNetfilter] = {}
        self._classes: dict[tuple, IptablesNetfilter] = {}     # node_rules_key -> the first node's rules
        self._sensitive: Optional[tuple[frozenset[str], bool]] = None
        self._blocks: dict[tuple, Any] = {}     # proxier config_key -> BlockCache: Service lines written once
        self._bases: dict[tuple, IptablesNetfilter] = {}   # config_key -> a node loaded whole: its chains shared
        self._lines: dict = {}          # parse's line cache: a line every node's dump repeats is parsed once
        self._tops: dict = {}           # config_key -> nodes' own long chains by their lines (split_own)
        self._compiled: dict = {}       # the Engines' compiled rules of long chains by line (Engine's rule_cache)

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> IptablesNetfilter:
        nf = self._nf.get(node)
        if nf is None:
            from netsim.rules.iptables.proxier_cluster import node_rules_key, node_sensitive_services
            if self._sensitive is None:
                self._sensitive = node_sensitive_services(self.cluster)
            key = node_rules_key(self.cluster, node, self._sensitive)
            base = self._classes.get(key)
            old = self._previous.pop(node, None)
            if base is None:
                nf = base = self._load(node, local_addrs, rng, old)
                self._classes[key] = base
            elif old is not None and (old.ruleset is base.ruleset or old.text == base.text):
                nf = old.rebind(local_addrs)
            else:
                nf = base.sharing(local_addrs, rng)
            self._nf[node] = nf
        return nf

    def _load(self, node: str, local_addrs: set[int], rng: Any, old: Optional[IptablesNetfilter]) -> IptablesNetfilter:
        """The node's rules after kube-proxy's sync: its previous ones when the text did not change
        (no iptables-restore), else an overlay of the cluster's shared Service chains where a node
        with the same proxier settings was loaded whole before, else its whole text parsed."""
        from netsim.control.progress import task
        cluster = self.cluster
        with task(f"kube-proxy sync on {node} (iptables)"):
            data, ckey = self._sync(node)
        hostports = any(p.node_name == node for p in cluster.host_port_pods())

        def text_of() -> str:
            return _node_text(data, cluster, node)
        if not self.keep_text:
            text_of = _text_again(cluster, node)
        if old is not None and old.text == text_of():
            return old.rebind(local_addrs)                 # kube-proxy: nothing changed, no iptables-restore
        shared = self._bases.get(ckey) if ckey is not None and data.own_nat_rules is not None and not hostports \
            else None
        with task(f"loading {node}'s rules"):
            if shared is not None:
                tops = self._tops.setdefault(ckey, {})
                own = split_own(data, shared, tops)
                data.own_nat_chains = data.own_nat_rules = None     # text_of() keeps the whole lists only
                return IptablesNetfilter.overlay(shared, own, self._blocks[ckey].shared_chains,
                                                 text_of, local_addrs, rng, source=f"node {node}",
                                                 lines=self._lines, tops=tops, compiled=self._compiled)
            text = text_of()
            del data                       # (the restore input's ~400,000 lines at 10,000 Services: not held while parsing)
            nf = IptablesNetfilter(text, local_addrs, rng, source=f"node {node}", lazy=True, lines=self._lines,
                                   compiled=self._compiled)
        if ckey is not None and not hostports:
            self._bases.setdefault(ckey, nf)
        return nf

    def _sync(self, node: str) -> tuple[Any, Optional[tuple]]:
        """The node's restore input, each Service port that is not node-sensitive written once per
        cluster and proxier settings (proxier_sync.BlockCache), and the cache's key: nodes that
        differ only in a few Local or source-range Services no longer each write every Service's
        lines."""
        from netsim.rules.iptables.proxier import restore_data
        from netsim.rules.iptables.proxier_cluster import proxier_config_for_node
        from netsim.rules.iptables.proxier_sync import BlockCache, config_key
        assert self._sensitive is not None
        cfg = proxier_config_for_node(self.cluster, node)
        key = config_key(cfg)
        cache = self._blocks.get(key)
        if cache is None:
            firewalled = {f"{s.namespace}/{s.name}" for s in self.cluster.services()
                          if s.type == "LoadBalancer" and s.load_balancer_source_ranges}
            specific = self._sensitive[0] | frozenset(firewalled)
            if not specific:
                # no Service is written per node: nodes of these settings differ in no Service line
                # and share one rule set (node_rules_key), so none would read a cache of every
                # Service port's lines (~55 MB kept at 10,000 Services)
                return restore_data(self.cluster, node, cfg), None
            cache = self._blocks[key] = BlockCache(key, specific)
        return restore_data(self.cluster, node, cfg, cache), key

    ipvs = None                       # no IPVS in this mode
    # Whether an overlay node keeps its restore input (~40 MB at 50,000 Services: a reference per
    # line) for its text (``netsim rules``) and to tell after a change whether its rules are the
    # same (no iptables-restore). A process whose cluster never changes and that never prints the
    # rules (a `netsim reach` worker) sets it False: a node's text is then rendered again when asked.
    keep_text = True

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """The node's tables registered at their hooks and priorities (netsim.rules.iptables.hooks)."""
        from netsim.rules.iptables.hooks import table_hooks
        from netsim.skb.netfilter import NodeHooks
        return NodeHooks(table_hooks(self.netfilter(node, local_addrs, rng)))

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        """Hosts were rebuilt (``local_addrs(node)``: the node's new local addresses, None if gone);
        with ``rules_changed`` every node re-renders at its next packet."""
        if rules_changed:
            # (without kept texts a node's old text cannot be told from its new one: none is reused)
            self._previous = self._nf if self.keep_text else {}
            self._nf = {}
            self._classes = {}
            self._sensitive = None
            self._blocks = {}
            self._bases = {}
            self._lines = {}
            self._tops = {}
            self._compiled = {}
            return
        kept = {}
        for node, nf in self._nf.items():
            local = local_addrs(node)
            if local is not None:
                kept[node] = nf.rebind(local)
        self._nf = kept

    def release(self, nodes: Iterable[str]) -> None:
        """Forget these nodes' rules (netsim.dataplane.walker.Walker.release): a node's own rule set,
        and its class's template unless it is an overlay base (the chains it shares stay, held by
        the others and the cluster's caches)."""
        bases = {id(b) for b in self._bases.values()}
        for n in nodes:
            nf = self._nf.pop(n, None)
            self._previous.pop(n, None)
            if nf is None or id(nf) in bases:
                continue
            for key in [k for k, v in self._classes.items() if v is nf]:
                del self._classes[key]

    def advance(self, now: float) -> None:
        return None

    def fork(self, rng: Any, memo: dict) -> "IptablesDataplane":
        if self._sensitive is None:     # (once for the emulator and its copies, not once per copy)
            from netsim.rules.iptables.proxier_cluster import node_sensitive_services
            self._sensitive = node_sensitive_services(self.cluster)
        f = copy.copy(self)
        f._nf = {n: nf.fork(rng, memo) for n, nf in self._nf.items()}
        f._previous = {n: nf.fork(rng, memo) for n, nf in self._previous.items()}
        # the templates (node_rules_key -> a node's parsed rules) are one dict for an emulator and its
        # copies: a node one copy renders (a verdict's branch meeting a node not prepared) is there
        # for the others, each taking it with an evaluation context of its own (sharing)
        f._classes = self._classes
        return f

    def rebind(self, cluster: Any) -> None:
        self.cluster = cluster


class IptablesProxier:
    """kube-proxy's iptables proxier on one node: a full sync first, then KEP-3453 partial syncs
    of the changed Services' chains (``partial_syncs=False``: always full, as a backend that
    restores everything). Each result carries the ``sync_proxy_rules_iptables_{total,last}`` gauges
    syncProxyRules sets."""

    def __init__(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> None:
        self.cluster = cluster
        self.node = node
        self.partial_syncs = partial_syncs
        self._nat_chains: Optional[list[str]] = None

    def sync(self, changed_services: set[str]) -> SyncResult:
        from netsim.rules.iptables.proxier_cluster import (endpoints_for_node, proxier_config_for_node,
                                                           service_port_infos)
        from netsim.rules.iptables.proxier_sync import sync_proxy_rules
        ports = service_port_infos(self.cluster)
        eps = endpoints_for_node(self.cluster, ports, self.node)
        cfg = proxier_config_for_node(self.cluster, self.node)
        full = self._nat_chains is None or not self.partial_syncs
        t0 = time.perf_counter()
        data = sync_proxy_rules(ports, eps, cfg, full_sync=full, changed_services=changed_services,
                                existing_nat_chains=self._nat_chains)
        text = data.text()
        seconds = time.perf_counter() - t0
        deleted = sum(1 for r in data.nat_rules if r.startswith("-X "))
        whole = data if full else sync_proxy_rules(ports, eps, cfg)     # what the node holds now
        self._nat_chains = [line[1:].split(" ", 1)[0] for line in whole.nat_chains]
        gauges = [("sync_proxy_rules_iptables_total", len(data.filter_rules), "filter"),
                  ("sync_proxy_rules_iptables_last", len(data.filter_rules), "filter"),
                  ("sync_proxy_rules_iptables_total", sum(1 for r in whole.nat_rules if not r.startswith("-X ")), "nat"),
                  ("sync_proxy_rules_iptables_last", len(data.nat_rules) - deleted, "nat")]
        return SyncResult(text, full, None, gauges, seconds)


class IptablesProvider:
    """The iptables mode (see the module docstring)."""

    name = "iptables"
    kube_proxy = True
    walks_packets = True
    notice = ""
    tool = "iptables-save"
    trace_actions = ("RULE",)

    @property
    def metric_families(self) -> tuple[Any, ...]:
        from netsim.rules.metrics import IPTABLES
        return IPTABLES

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> IptablesProxier:
        return IptablesProxier(cluster, node, partial_syncs=partial_syncs)

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        """iptables-save's view of the node (``tables`` to pick filter/nat/mangle), or with
        ``restore_input`` exactly what kube-proxy hands to iptables-restore."""
        from netsim.rules.iptables.proxier import node_view_text, restore_data
        from netsim.rules.iptables.render import iptables_save
        data = restore_data(cluster, node)
        if restore_input:
            return data.text()
        return iptables_save(node_view_text(data), tables=tuple(tables) if tables else None)

    def dataplane(self, cluster: Any) -> IptablesDataplane:
        return IptablesDataplane(cluster)

    def kernel_support(self) -> Optional[str]:
        return None

    iptables_only = True              # its kernel state is one iptables-restore text (any iptables backend loads it)

    # the external chain's "pod traffic for ... external destinations" rule jumps to the cluster chain

    # (pkg/proxy/iptables/proxier.go syncProxyRules)

    pod_external_shortcut = True

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> SyncMeasurement:
        return measure_sync(ports, endpoints, config, changed_endpoints, changed_service, repeats)

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        """iptables-restore of the node's whole rule set with the built-in chain jumps (the kernel
        backend restores everything on each sync)."""
        from netsim.rules.iptables import kernel as rules
        rules.restore(netns, rules.restore_input(cluster, node))


def count_rules(text: str) -> int:
    """``-A`` lines: the rules an iptables-save / iptables-restore text holds."""
    return sum(1 for line in text.splitlines() if line.startswith("-A "))


def measure_sync(ports: list, endpoints: dict, config: Any, changed_endpoints: dict, changed_service: str,
                 repeats: int) -> SyncMeasurement:
    """``syncProxyRules`` + the node's text, timed; then the KEP-3453 partial restore after one
    endpoint joined ``changed_service`` (only that Service's chains plus KUBE-SERVICES whole)."""
    from netsim.rules.iptables.proxier import node_view_text
    from netsim.rules.iptables.proxier_sync import sync_proxy_rules
    times, data, full = [], None, ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = sync_proxy_rules(ports, endpoints, config)
        full = node_view_text(data)
        times.append(time.perf_counter() - t0)
    assert data is not None
    existing = [line[1:].split(" ", 1)[0] for line in data.nat_chains]
    ptimes, partial = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        partial = sync_proxy_rules(ports, changed_endpoints, config, full_sync=False,
                                   changed_services=[changed_service], existing_nat_chains=existing).text()
        ptimes.append(time.perf_counter() - t0)
    change = {"change": "add-one-endpoint"}
    counts = [
        ("ruleset_rules", count_rules(full), "rules", {"table": "all"}),
        ("ruleset_rules", len(data.nat_rules), "rules", {"table": "nat"}),
        ("ruleset_lines", full.count("\n"), "lines", {}),
        ("ruleset_bytes", len(full.encode()), "bytes", {}),
        ("ruleset_chains", len(data.nat_chains), "chains", {"table": "nat"}),
        ("incremental_restore_rules", count_rules(partial), "rules", change),
        ("incremental_restore_lines", partial.count("\n"), "lines", change),
        ("incremental_restore_bytes", len(partial.encode()), "bytes", change),
    ]
    loads = [KernelLoad("iptables-restore", [([IPTABLES_RESTORE, "-w", "5"], full)]),
             KernelLoad("iptables-restore --noflush", [([IPTABLES_RESTORE, "-w", "5", "--noflush"], partial)],
                        change="add-one-endpoint")]
    return SyncMeasurement(times, ptimes, counts, loads)


PROVIDER = IptablesProvider()
