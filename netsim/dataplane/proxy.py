"""kube-proxy on each node, as the walker sees it: the node's netfilter rules and IPVS hooks.

iptables mode: ``netsim.rules.iptables.proxier.render(cluster, node)`` (the iptables-save text
kube-proxy leaves on a fresh node) → ``parse`` → ``Engine``. IPVS mode: the IPVS proxier's
iptables text (evaluated the same way, with its ipsets) plus the node's IPVS data path
(``IpvsNode``: ``local_in`` / ``local_out`` / ``reply``), kept between syncs so connections and
graceful termination survive endpoint changes. ``none``: nodes without kube-proxy rules.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from netsim.dataplane.netfilter import EmptyNetfilter, HookResult, NatRequest, RuleHit

PROXY_MODES = ("iptables", "ipvs", "none")


class ProxyModeError(ValueError):
    """An unknown or unavailable proxy mode."""


class IptablesNetfilter:
    """A node's iptables ruleset evaluated by the rule engine."""

    def __init__(self, text: str, local_addrs: set[int], rng, *, ipsets: Any = None, source: str = "<node>") -> None:
        from netsim.rules.iptables import Engine, EvalContext, parse
        self.text = text
        self.ruleset = parse(text, source=source)
        self.engine = Engine(self.ruleset)
        self.ctx = EvalContext(local_addrs=local_addrs, ipsets=ipsets, rng=rng)
        self._saved: dict[Any, RuleHit] = {}
        self._has: dict[tuple[str, str], bool] = {}
        self._nats: dict[int, tuple[Any, NatRequest]] = {}

    def rebind(self, local_addrs: set[int], ipsets: Any = None) -> "IptablesNetfilter":
        """Reuse this compiled ruleset for a rebuilt host (same rules; its local table is new)."""
        self.ctx.local_addrs = local_addrs
        if ipsets is not None:
            self.ctx.ipsets = ipsets
        return self

    def fork(self, rng, memo: dict) -> "IptablesNetfilter":
        """The same parsed and compiled rules with an evaluation context of its own (RNG, xt_recent
        lists, statistic nth counters; ipsets mapped through ``memo``, a deepcopy memo of the
        forked IPVS proxier that owns them): a rule set shared copy-on-write between emulators,
        never re-rendered. The hit caches only hold rendered rule text and are shared."""
        import copy
        import dataclasses
        f = copy.copy(self)
        ctx = self.ctx
        f.ctx = dataclasses.replace(ctx, rng=rng, recent=copy.deepcopy(ctx.recent), nth=dict(ctx.nth),
                                    ipsets=memo.get(id(ctx.ipsets), ctx.ipsets) if ctx.ipsets is not None else None)
        return f

    def has_rules(self, table: str, chain: str) -> bool:
        key = (table, chain)
        has = self._has.get(key)
        if has is None:
            has = self._has[key] = self.engine.has_rules(table, chain)     # without compiling the chain
        return has

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> HookResult:
        """Evaluate one built-in chain; with ``steps`` the RULE steps of the hits are appended to it."""
        ctx = self.ctx
        ctx.now = now
        v = self.engine.run(table, chain, pkt, ctx)
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
                hit = cache[key] = self._saved_hit(h)
            hits.append(hit)
            if steps is not None:
                steps.append(hit.step)
        nat = v.nat
        if nat is not None:
            # the engine's NatAction belongs to its rule (lives as long as the engine): one request each
            got = self._nats.get(id(nat))
            if got is None or got[0] is not nat:
                got = self._nats[id(nat)] = (nat, NatRequest(nat.kind, nat.ip, nat.port, bool(nat.random_fully)))
            nat = got[1]
        return HookResult(verdict, nat, hits, v.rules_evaluated, v.reject_with or "icmp-port-unreachable")

    def _saved_hit(self, h) -> RuleHit:
        """The hit with its rule as iptables-save prints it (Rule.render), or the policy line."""
        text = h.text
        if not h.policy and h.number:
            try:
                text = self.ruleset.tables[h.table].chains[h.chain].rules[h.number - 1].render()
            except (KeyError, IndexError):
                pass
        return RuleHit(h.table, h.chain, h.number, text, h.target or "")

    def save(self) -> str:
        return self.text


def _iptables_factory(walker, node: str) -> IptablesNetfilter:
    from netsim.rules.iptables.proxier import render
    host = walker.topology.hosts[node]
    text = render(walker.cluster, node)
    old = walker.previous_netfilter(node)
    if isinstance(old, IptablesNetfilter) and old.text == text:
        return old.rebind(host.routes.local)      # kube-proxy: nothing changed, no iptables-restore
    return IptablesNetfilter(text, host.routes.local, walker.rng, source=f"node {node}")


def _ipvs_proxier(walker, node: str):
    kp = walker.ipvs_proxiers.get(node)
    if kp is None:
        from netsim.rules.ipvs.proxier import KubeProxyIpvs
        kp = walker.ipvs_proxiers[node] = KubeProxyIpvs(walker.cluster, node)
    return kp


class _IpvsHooks:
    """The node's IPVS data path plus the addresses kube-ipvs0 holds (they route as LOCAL)."""

    def __init__(self, kp, state) -> None:
        self.kp = kp
        self.node = kp.node
        self.state = state

    def virtual_addresses(self) -> list[int]:
        from netsim.skb.packet import ip2int
        return [ip2int(a) for a in self.state.bound_addresses]

    def local_in(self, pkt, now):
        return self.node.local_in(pkt, now)

    def local_out(self, pkt, now):
        return self.node.local_out(pkt, now)

    def reply(self, pkt, now, hook="OUT"):
        return self.node.reply(pkt, now, hook)


def _ipvs_netfilter_factory(walker, node: str) -> IptablesNetfilter:
    kp = _ipvs_proxier(walker, node)
    state = kp.sync()
    host = walker.topology.hosts[node]
    walker.ipvs_states[node] = state
    return IptablesNetfilter(state.iptables, host.routes.local, walker.rng, ipsets=state.ipsets,
                             source=f"node {node} (ipvs mode)")


def _ipvs_hooks_factory(walker, node: str) -> _IpvsHooks:
    walker.netfilter(node)                       # syncs the proxier
    kp = _ipvs_proxier(walker, node)
    return _IpvsHooks(kp, walker.ipvs_states[node])


NFTABLES_NOT_YET = ("proxy mode nftables: not emulated yet (packets through kube-proxy's nftables table; `netsim rules` prints it); "
                    "use --mode iptables or --mode ipvs")


def netfilter_factory_for(mode: str) -> Callable[[Any, str], Any]:
    if mode == "iptables":
        return _iptables_factory
    if mode == "ipvs":
        return _ipvs_netfilter_factory
    if mode == "none":
        return lambda walker, node: EmptyNetfilter()
    if mode == "nftables":
        raise ProxyModeError(NFTABLES_NOT_YET)
    raise ProxyModeError(f"proxy mode: expected one of {', '.join(PROXY_MODES)}, got {mode!r}")


def ipvs_factory_for(mode: str) -> Optional[Callable[[Any, str], Any]]:
    return _ipvs_hooks_factory if mode == "ipvs" else None
