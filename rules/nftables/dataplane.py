"""Each node's `ip kube-proxy` table in one emulated cluster, evaluated by the nftables engine.

Each base chain is a hook function of its own, registered at its hook and declared priority
(net/netfilter/nf_tables_api.c nf_tables_register_hook: a base chain is one ``struct nf_hook_ops``;
the priority names of nft(8) "CHAINS" — raw -300, mangle -150, dstnat -100, filter 0, security 50,
srcnat 100 — are include/uapi/linux/netfilter_ipv4.h enum nf_ip_hook_priorities). The data plane's
hook runner (netsim.dataplane.hooks) puts them among conntrack (-200) and the node's other
registrations by priority, as net/netfilter/core.c orders nf_hook_entries. kube-proxy's chains
(pkg/proxy/nftables/proxier.go ``nftablesBaseChains``) land where they declare: e.g. in 1.34
``filter-prerouting-pre-dnat`` at dstnat-10 (-110, before DNAT) and ``filter-input`` at filter (0).

``type nat`` chains are NAT functions (net/netfilter/nft_chain_nat.c registers them through
nf_nat_ipv4_register_fn): nf_nat's hook at NF_IP_PRI_NAT_DST / NF_IP_PRI_NAT_SRC asks them, in
their priority order, only for a connection's first packet, until one sets up a binding
(nf_nat_core.c nf_nat_inet_fn); every later packet gets the connection's recorded mapping.

A node's other netfilter rules register after kube-proxy's table, which the node's first sync
loaded: the CNI portmap plugin's hostPort chains (iptables-nft on a real node, beside the
`ip kube-proxy` table; netsim.rules.portmap), added when a pod sandbox with a hostPort is created.

Trace steps use `nft monitor trace`'s words: ``ip kube-proxy services rule ip daddr . meta l4proto .
th dport vmap @service-ips (verdict goto service-...)``; a rule that matched to its end shows
``(verdict continue)``; a base chain's policy is shown when it is not accept.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from netsim.rules.iptables.provider import IptablesDataplane, IptablesNetfilter

# the IPv4 hooks a base chain of family ip or inet can register at (nft(8) "CHAINS"; an inet chain
# registers for IPv4 and IPv6: nf_register_net_hook NFPROTO_INET), as the data plane names them
HOOK_NAMES = {"prerouting": "PREROUTING", "input": "INPUT", "forward": "FORWARD", "output": "OUTPUT",
              "postrouting": "POSTROUTING"}


class NftNetfilter:
    """A node's nftables ruleset as hook functions, one per base chain (:meth:`registrations`)."""

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
        self._hits: dict[Any, Any] = {}
        self._nats: dict[int, Any] = {}
        self._regs: Optional[tuple] = None        # the registrations, bound to this object

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
        f._regs = None                    # registered anew: each hook function runs its own object
        f.ctx = copy.copy(self.ctx)
        f.ctx.rng = rng
        f.ctx.counters = dict(self.ctx.counters)
        return f

    def registrations(self) -> tuple:
        """The node's hook registrations in the order they were made: one per IPv4 base chain (family
        ip or inet, table not dormant) at its hook and declared priority, in the order the ruleset
        created them (one ``nft -f`` batch registers each chain as its ``add chain`` is prepared:
        nf_tables_addchain), then the other rules' (portmap's iptables tables). A base chain at a hook
        with no IPv4 packets (ingress) registers nothing here."""
        regs = self._regs
        if regs is None:
            from functools import partial

            from netsim.skb.netfilter import FILTER, NAT, HookRegistration
            out = []
            for t in self.ruleset.tables.values():
                if t.family not in ("ip", "inet") or "dormant" in t.flags:
                    continue
                for c in t.chains.values():
                    hook = HOOK_NAMES.get(c.hook or "")
                    if hook is not None:
                        out.append(HookRegistration(hook, c.priority or 0, f"{t.family} {t.name} {c.name}",
                                                    partial(self.run_chain, t, c),
                                                    NAT if c.type == "nat" else FILTER))
            if self.iptables is not None:
                from netsim.rules.iptables.hooks import table_hooks
                out.extend(table_hooks(self.iptables))
            regs = self._regs = tuple(out)
        return regs

    def run_chain(self, t: Any, c: Any, pkt: Any, now: float, steps: Optional[list] = None) -> Any:
        """One base chain as a hook function (nft_do_chain): its verdict, and for a nat chain the
        binding it asks for (the hook runner sets it up as nf_nat_setup_info would)."""
        from netsim.skb.hook_result import HookResult
        ctx = self.ctx
        ctx.now = now
        res = self.engine.run_chain(t, c, pkt, ctx, hook=c.hook)
        hits: list = []
        for e in res.events:
            if e.kind == "packet" or (e.kind == "policy" and e.verdict == "accept"):
                continue
            hit = self._hit(e)
            hits.append(hit)
            if steps is not None:
                steps.append(hit.step)
        if res.verdict == "drop":
            return HookResult("REJECT" if res.reject_with else "DROP", None, hits, res.rules_evaluated,
                              res.reject_with or "icmp-port-unreachable")
        return HookResult("ACCEPT", self._nat(res.nat) if res.nat is not None else None, hits, res.rules_evaluated)

    def _hit(self, e: Any) -> Any:
        """The rule (or policy) hit as a shared, read-only RULE step in `nft monitor trace` words."""
        from netsim.skb.hook_result import RuleHit
        from netsim.skb.step import Step
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
        from netsim.skb.hook_result import NatRequest
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

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """Each base chain of the node's ruleset at its hook and declared priority, then portmap's tables."""
        from netsim.skb.netfilter import NodeHooks
        return NodeHooks(self.netfilter(node, local_addrs, rng).registrations())
