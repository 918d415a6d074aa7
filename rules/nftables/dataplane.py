"""Each node's `ip kube-proxy` table in one emulated cluster, evaluated by the nftables engine.

The data plane asks a node's netfilter for the stages it runs at each hook (the iptables tables'
places: raw -300, conntrack -200, mangle -150, nat -100 / 100, filter 0 — include/uapi/linux/
netfilter_ipv4.h nf_ip_hook_priorities). An nftables base chain runs where its declared priority
puts it among them: a filter-type chain below -200 in the raw stage, from -200 up to the NAT
priority -100 in the mangle stage (kube-proxy's `filter-prerouting-pre-dnat` / `filter-output-pre-dnat`
at -110, before DNAT), from -100 up in the filter stage; nat-type chains in the nat stage (only a
connection's first packet, as nf_nat_inet_fn runs them). Within a stage, chains run in priority
order until one drops.

A node's other netfilter rules run at their iptables tables' stages after kube-proxy's chains of
the same stage: the CNI portmap plugin's hostPort chains (iptables-nft on a real node, beside the
`ip kube-proxy` table; netsim.rules.portmap).

Trace steps use `nft monitor trace`'s words: ``ip kube-proxy services rule ip daddr . meta l4proto .
th dport vmap @service-ips (verdict goto service-...)``; a rule that matched to its end shows
``(verdict continue)``; a base chain's policy is shown when it is not accept.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from netsim.rules.iptables.provider import IptablesDataplane, IptablesNetfilter

STAGES = ("raw", "mangle", "nat", "filter")


def stage_of(chain_type: Optional[str], priority: int) -> str:
    """The data-plane stage an nftables base chain of `chain_type` at `priority` runs in."""
    if chain_type == "nat":
        return "nat"
    if priority < -200:        # before conntrack (NF_IP_PRI_CONNTRACK)
        return "raw"
    if priority < -100:        # before NAT's destination rewrite (NF_IP_PRI_NAT_DST)
        return "mangle"
    return "filter"


class NftNetfilter:
    """A node's nftables ruleset behind the data plane's netfilter interface (``has_rules``/``run``)."""

    def __init__(self, text: str, local_addrs: set[int], rng: Any, *, source: str = "<node>",
                 iptables: Any = None) -> None:
        """`iptables`: the node's other rules, in iptables' tables (an IptablesNetfilter: CNI
        portmap's hostPort chains, iptables-nft beside kube-proxy's nft table on a real node)."""
        from netsim.rules.nftables.engine import NftContext, NftEngine
        from netsim.rules.nftables.parse import load
        self.text = text
        self.iptables = iptables
        self.source = source
        self.ruleset = load(text, source=source)
        self.engine = NftEngine(self.ruleset)
        self.ctx = NftContext(local_addrs=local_addrs, rng=rng)
        self._stages: dict[tuple[str, str], list] = {}
        self._hits: dict[Any, Any] = {}
        self._nats: dict[int, Any] = {}

    def rebind(self, local_addrs: set[int]) -> "NftNetfilter":
        self.ctx.local_addrs = local_addrs
        if self.iptables is not None:
            self.iptables.rebind(local_addrs)
        return self

    def fork(self, rng: Any, memo: dict) -> "NftNetfilter":
        """Own RNG and numgen counters; dynamic sets (ClientIP affinity) are connection state, so a
        ruleset holding any is loaded anew, otherwise the compiled rules are shared."""
        dynamic = any("dynamic" in s.flags or s.timeout is not None
                      for t in self.ruleset.tables.values() for s in t.sets.values())
        ipt = self.iptables.fork(rng, memo) if self.iptables is not None else None
        if dynamic:
            return NftNetfilter(self.text, self.ctx.local_addrs, rng, source=self.source, iptables=ipt)
        f = copy.copy(self)
        f.iptables = ipt
        f.ctx = copy.copy(self.ctx)
        f.ctx.rng = rng
        f.ctx.counters = dict(self.ctx.counters)
        return f

    def _chains(self, table: str, hook_name: str) -> list:
        key = (table, hook_name)
        got = self._stages.get(key)
        if got is None:
            hook = hook_name.lower()
            got = self._stages[key] = [(t, c) for _p, t, c in self.engine.hook_chains(hook)
                                       if stage_of(c.type, c.priority or 0) == table]
        return got

    def has_rules(self, table: str, chain: str) -> bool:
        return bool(self._chains(table, chain)) or (self.iptables is not None and self.iptables.has_rules(table, chain))

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> Any:
        """Run the base chains of stage `table` at hook `chain` (PREROUTING, INPUT, ...)."""
        from netsim.dataplane.netfilter import HookResult
        ctx = self.ctx
        ctx.now = now
        hits: list = []
        evaluated = 0
        nat = None
        for t, c in self._chains(table, chain):
            if nat is not None and c.type == "nat":
                continue                       # nf_nat_inet_fn: the first binding ends the nat chains
            res = self.engine.run_chain(t, c, pkt, ctx, hook=chain.lower())
            evaluated += res.rules_evaluated
            for e in res.events:
                if e.kind == "packet" or (e.kind == "policy" and e.verdict == "accept"):
                    continue
                hit = self._hit(e)
                hits.append(hit)
                if steps is not None:
                    steps.append(hit.step)
            if res.nat is not None:
                nat = self._nat(res.nat)
            if res.verdict == "drop":
                verdict = "REJECT" if res.reject_with else "DROP"
                return HookResult(verdict, None, hits, evaluated, res.reject_with or "icmp-port-unreachable")
        ipt = self.iptables
        if ipt is not None and ipt.has_rules(table, chain) and not (nat is not None and table == "nat"):
            # the iptables table at the same stage (registered after kube-proxy's table, which came first)
            res = ipt.run(table, chain, pkt, now, steps)
            res.hits[:0] = hits
            res.rules_evaluated += evaluated
            return res
        return HookResult("ACCEPT", nat, hits, evaluated)

    def _hit(self, e: Any) -> Any:
        """The rule (or policy) hit as a shared, read-only RULE step in `nft monitor trace` words."""
        from netsim.dataplane.netfilter import RuleHit
        from netsim.dataplane.trace import Step
        key = (id(e.rule), e.verdict) if e.rule is not None else (e.table.name, e.chain, e.verdict)
        hit = self._hits.get(key)
        if hit is None:
            number = 0
            if e.rule is not None:
                rules = e.table.chains[e.chain].rules
                number = next((i + 1 for i, r in enumerate(rules) if r is e.rule), 0)
            text = e.rule.text if e.rule is not None else f"policy {e.verdict}"
            hit = RuleHit(f"{e.table.family} {e.table.name}", e.chain, number, text, e.verdict)
            hit.step = Step("RULE", e.line(), {"table": hit.table, "chain": e.chain, "rule": text,
                                               "rule_number": number, "verdict": e.verdict})
            self._hits[key] = hit
        return hit

    def _nat(self, nat: Any) -> Any:
        from netsim.dataplane.netfilter import NatRequest
        got = self._nats.get(id(nat))
        if got is None or got[0] is not nat:
            got = self._nats[id(nat)] = (nat, NatRequest(nat.kind, nat.ip, nat.port, nat.random_fully))
        return got[1]

    def save(self) -> str:
        return self.text


class NftDataplane(IptablesDataplane):
    """Every node's nftables rules in one emulated cluster: the iptables mode's per-node bookkeeping
    (rendered lazily per node, kept while no Service, EndpointSlice or Node changes, a re-render to
    the same text reused), with the node's `ip kube-proxy` table and the nftables engine."""

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> NftNetfilter:
        nf = self._nf.get(node)
        if nf is None:
            from netsim.rules.nftables.proxier import render
            from netsim.rules.portmap import with_host_ports
            text = render(self.cluster, node)
            ports = with_host_ports("", self.cluster, node)        # CNI portmap's hostPorts (iptables-nft)
            old = self._previous.pop(node, None)
            if old is not None and old.text == text and (old.iptables.text if old.iptables else "") == ports:
                nf = old.rebind(local_addrs)
            else:
                ipt = IptablesNetfilter(ports, local_addrs, rng, source=f"node {node} portmap") if ports else None
                nf = NftNetfilter(text, local_addrs, rng, source=f"node {node}", iptables=ipt)
            self._nf[node] = nf
        return nf
