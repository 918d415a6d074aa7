"""Evaluate packets through an nftables Ruleset as the kernel does.

`NftEngine.run_chain` is net/netfilter/nf_tables_core.c nft_do_chain: rules in order, each rule's
expressions left to right until one breaks (next rule) or issues a verdict; `jump` pushes a return
point on a stack of NFT_JUMP_STACK_SIZE (16), `goto` does not; `return`, or falling off the end of
a regular chain, pops it; at the end of the base chain its policy applies. accept and drop end the
chain (accept lets the next hook function at this hook run, drop ends the packet).

`run_hook` runs every base chain registered at a hook for IPv4 (families ip and inet) in priority
order. nat chains only see a connection's first packet, and once one of them has set up a binding
the others at that hook are skipped (net/netfilter/nf_nat_core.c nf_nat_inet_fn).

What the kernel evaluated is counted: `rules_evaluated` (rules entered) and `lookups` (set/map
lookups, each one hash or interval lookup however many elements the set holds). Trace events follow
`nft monitor trace`: a `packet` line per base chain entered, a `rule` line for every rule that
matched to its end (`verdict continue`) or issued a verdict, a `policy` line when the base chain
ends (checked against a 6.18 kernel: a regular chain that falls off its end prints nothing).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.skb.packet import PROTO_NAMES, format_tcp_flags, int2ip
from netsim.rules.nftables.compile import NatAction
from netsim.rules.nftables.lexer import NftError
from netsim.rules.nftables.model import Chain, Rule, Ruleset, Table
from netsim.rules.nftables.values import VerdictVal

JUMP_STACK = 16      # include/net/netfilter/nf_tables.h NFT_JUMP_STACK_SIZE
NAT_MANIP = {"prerouting": "DNAT", "output": "DNAT", "input": "SNAT", "postrouting": "SNAT"}


@dataclass
class NftContext:
    """Per-netns environment: local addresses (fib ... type local), the RNG numgen draws from, the clock."""

    local_addrs: set[int] = field(default_factory=set)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    now: float = 0.0
    counters: dict[Any, int] = field(default_factory=dict)    # numgen inc state


class EvalState:
    __slots__ = ("ctx", "lookups", "nat", "reject_with", "nftrace")

    def __init__(self, ctx: NftContext) -> None:
        self.ctx = ctx
        self.lookups = 0
        self.nat: Optional[NatAction] = None
        self.reject_with: Optional[str] = None
        self.nftrace = False


@dataclass(slots=True)
class TraceEvent:
    """One `nft monitor trace` line: kind is packet | rule | policy."""

    kind: str
    table: Table
    chain: str
    rule: Optional[Rule] = None
    verdict: str = ""
    packet: str = ""

    def line(self) -> str:
        head = f"{self.table.family} {self.table.name} {self.chain}"
        if self.kind == "packet":
            return f"{head} packet: {self.packet}"
        if self.kind == "rule":
            return f"{head} rule {self.rule.text} (verdict {self.verdict})"
        return f"{head} policy {self.verdict}"


@dataclass
class ChainResult:
    """What one base chain did to a packet."""

    verdict: str                          # accept | drop
    table: Table
    chain: Chain
    nat: Optional[NatAction] = None
    reject_with: Optional[str] = None
    rules_evaluated: int = 0
    lookups: int = 0
    events: list[TraceEvent] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        return self.rules_evaluated + self.lookups


def describe(pkt, hook: str) -> str:
    """The packet part of a trace `packet:` line (nft monitor trace's field order, headers trimmed)."""
    parts = []
    if pkt.iif and hook not in ("output", "postrouting"):
        parts.append(f'iif "{pkt.iif}"')
    if pkt.oif and hook in ("forward", "output", "postrouting"):
        parts.append(f'oif "{pkt.oif}"')
    parts.append(f"ip saddr {int2ip(pkt.src)} ip daddr {int2ip(pkt.dst)} ip ttl {pkt.ttl} "
                 f"ip length {pkt.total_length}")
    name = PROTO_NAMES.get(pkt.proto)
    if name in ("tcp", "udp", "sctp"):
        parts.append(f"{name} sport {pkt.sport} {name} dport {pkt.dport}")
        if name == "tcp":
            parts.append(f"tcp flags == {format_tcp_flags(pkt.tcp_flags).lower() or '0x0'}")
    elif name == "icmp":
        parts.append(f"icmp type {pkt.icmp_type} icmp code {pkt.icmp_code}")
    return " ".join(parts)


class NftEngine:
    """Packets through a Ruleset. The ruleset may change between packets (it is read, not copied)."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self._hooks: dict[str, list[tuple[int, Table, Chain]]] = {}
        self._gen = -1

    def hook_chains(self, hook: str) -> list[tuple[int, Table, Chain]]:
        if self._gen != self.ruleset.generation:
            self._hooks = {}
            self._gen = self.ruleset.generation
        out = self._hooks.get(hook)
        if out is None:
            out = self._hooks[hook] = self.ruleset.base_chains(hook)
        return out

    def run_hook(self, hook: str, pkt, ctx: NftContext, *, nat: bool = True, trace: bool = True,
                 mangle: bool = False) -> list[ChainResult]:
        """Every base chain at `hook` in priority order until one drops. nat=False: not a first packet.

        mangle=True rewrites the packet's destination as soon as a nat chain asks for a DNAT, so the
        base chains after it see the translated packet (nf_nat_inet_fn mangles before returning);
        otherwise the caller applies `ChainResult.nat` (the walker does, with conntrack)."""
        out: list[ChainResult] = []
        nat_done = False
        for _prio, table, chain in self.hook_chains(hook):
            if chain.type == "nat" and (not nat or nat_done):
                continue
            res = self.run_chain(table, chain, pkt, ctx, hook=hook, trace=trace)
            out.append(res)
            if res.verdict == "drop":
                break
            if chain.type == "nat" and res.nat is not None and NAT_MANIP.get(hook) == _manip(res.nat):
                nat_done = True
                if mangle and res.nat.kind == "DNAT":
                    if res.nat.ip is not None:
                        pkt.dst = res.nat.ip
                    if res.nat.port is not None:
                        pkt.dport = res.nat.port
        return out

    def run_chain(self, table: Table, chain: Chain, pkt, ctx: NftContext, *, hook: str = "",
                  trace: bool = True) -> ChainResult:
        st = EvalState(ctx)
        events: list[TraceEvent] = []
        if trace:
            events.append(TraceEvent("packet", table, chain.name, packet=describe(pkt, hook or chain.hook or "")))
        chains = table.chains
        stack: list[tuple[Chain, int]] = []
        cur = chain
        rules = cur.rules
        i = 0
        evaluated = 0
        while True:
            if i >= len(rules):
                if stack:
                    cur, i = stack.pop()
                    rules = cur.rules
                    continue
                return self._policy(table, chain, st, evaluated, events, trace)
            r = rules[i]
            i += 1
            evaluated += 1
            v: Any = None
            for op in r.program.ops:
                v = op(pkt, st)
                if v is not None:
                    break
            if v is False:
                continue
            if v is None:
                if trace:
                    events.append(TraceEvent("rule", table, cur.name, r, "continue"))
                continue
            kind = v.kind
            if trace:
                events.append(TraceEvent("rule", table, cur.name, r, "accept" if st.nat else str(v)))
            if kind == "accept" or kind == "drop":
                return ChainResult(kind, table, chain, st.nat, st.reject_with if kind == "drop" else None,
                                   evaluated, st.lookups, events)
            if kind == "jump":
                if len(stack) >= JUMP_STACK:
                    raise NftError(f"{self.ruleset.source}:{r.line}: jumps nest deeper than {JUMP_STACK}")
                stack.append((cur, i))
                cur = chains[v.chain]
                rules = cur.rules
                i = 0
            elif kind == "goto":
                cur = chains[v.chain]
                rules = cur.rules
                i = 0
            elif kind == "return":
                if stack:
                    cur, i = stack.pop()
                    rules = cur.rules
                else:
                    return self._policy(table, chain, st, evaluated, events, trace)
            elif kind == "continue":
                continue
            else:
                raise NftError(f"{self.ruleset.source}:{r.line}: verdict {v} is not modelled")

    @staticmethod
    def _policy(table: Table, chain: Chain, st: EvalState, evaluated: int, events: list[TraceEvent],
                trace: bool) -> ChainResult:
        if trace:
            events.append(TraceEvent("policy", table, chain.name, verdict=chain.policy))
        return ChainResult(chain.policy, table, chain, None, None, evaluated, st.lookups, events)


def _manip(nat: NatAction) -> str:
    return "DNAT" if nat.kind in ("DNAT", "REDIRECT") else "SNAT"


__all__ = ["NftEngine", "NftContext", "ChainResult", "TraceEvent", "NatAction", "VerdictVal", "describe"]
