"""What a hook function returns (:class:`HookResult`), and a node's rule tables behind one interface.

A leaf module (netsim.skb): the providers in netsim.rules build these, the data plane's hook runner
reads them, so neither imports the other for them.

A hook function (netsim.skb.netfilter.HookRegistration) returns a :class:`HookResult`: the
verdict, the NAT binding it asks for, the rules that matched (:class:`RuleHit`, as iptables-save
prints them). ``Netfilter.run(table, chain, pkt, now, steps)`` evaluates one built-in chain of a
table-based rule set; the iptables provider (netsim.rules.iptables.provider.IptablesNetfilter)
does so with the rule engine, and registers each non-empty built-in chain as a hook function;
:class:`EmptyNetfilter` is a node with no rules at all (every policy ACCEPT), which is also what a
node without kube-proxy looks like.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

from netsim.skb.step import Step


@dataclass
class NatRequest:
    """What a nat-table target asked for on a connection's first packet."""
    kind: str                         # DNAT | SNAT | MASQUERADE
    ip: Optional[int] = None
    port: Optional[int] = None
    random_fully: bool = False


@dataclass
class RuleHit:
    """A rule that matched (for the trace): where, which line, its iptables-save text.

    ``detail`` and ``extra`` are what the trace step shows; built once per rule, as is ``step``,
    the RULE step itself, which every trace that hits the rule shares (read-only).
    """
    table: str
    chain: str
    number: int                       # 1-based position in its chain (iptables -L --line-numbers)
    text: str                         # the rule as iptables-save prints it
    target: str
    detail: str = ""
    extra: dict = field(default_factory=dict)
    step: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.detail = f"{self.table}:{self.chain} #{self.number}  {self.text}"
        self.extra = {"table": self.table, "chain": self.chain, "rule": self.text, "rule_number": self.number}
        self.step = Step("RULE", self.detail, self.extra)


class DeferredRuleHit(Step):
    """A rule that matched, whose iptables-save text is made when first read, and which is also its
    own RULE step: one object per rule a packet first hits (at 10,000 Services nearly every trace
    meets new ones), kept by the provider for the next packets that hit the rule, and the text not
    rendered until a trace is printed or read. Reads as the :class:`RuleHit` made eagerly (``table``,
    ``chain``, ``number``, ``text``, ``target``, ``detail``, ``extra``; equal to it) and as its
    RULE step (``step`` is itself: ``action``, ``detail``, ``extra``, ``to_dict``).

    ``_make_text()`` gives the text; a provider subclasses this to render the rule from the rule
    set it was hit in (which never changes under it). Pickled with its text, as read."""

    __slots__ = ("table", "chain", "number", "target", "_text")

    def __init__(self, table: str, chain: str, number: int, target: str, text: Optional[str] = None) -> None:
        self.action = "RULE"
        self._args = None
        self.table = table
        self.chain = chain
        self.number = number
        self.target = target
        self._text = text

    def _make_text(self) -> str:
        raise NotImplementedError       # (made with its text)

    @property
    def text(self) -> str:
        t = self._text
        if t is None:
            t = self._text = self._make_text()
        return t

    @property
    def step(self) -> "DeferredRuleHit":
        return self

    @property
    def detail(self) -> str:
        return f"{self.table}:{self.chain} #{self.number}  {self.text}"

    @property
    def extra(self) -> dict:       # type: ignore[override]
        return {"table": self.table, "chain": self.chain, "rule": self.text, "rule_number": self.number}

    def _fields(self) -> tuple:
        return (self.table, self.chain, self.number, self.text, self.target, self.detail, self.extra)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeferredRuleHit):
            return self._fields() == other._fields()
        if not isinstance(other, RuleHit):
            return NotImplemented
        return self._fields() == (other.table, other.chain, other.number, other.text, other.target, other.detail,
                                  other.extra)

    __hash__ = Step.__hash__      # (a step: hashed by identity, as every Step)

    def __reduce__(self) -> tuple:
        return (DeferredRuleHit, (self.table, self.chain, self.number, self.target, self.text))   # as read


class HookResult:
    """What one hook function did to a packet: verdict, NAT request, the rules that matched.

    ``verdict``: ACCEPT | DROP | REJECT, or STOLEN (the function took the packet and transmits it
    itself, as IPVS's ip_vs_nat_xmit does: NF_STOLEN). A function that is not a rule table says why
    it dropped or rejected in ``reason`` and may hand the error it sends in ``reply`` (IPVS's ICMP);
    ``ct_dnat``: it rewrote the destination of a connection's first packet, and the unconfirmed
    conntrack entry's reply tuple follows without a NAT binding (IPVS: ip_vs_update_conntrack).
    ``pure_fields``: set by a function whose result is a function of these packet fields alone
    (netsim.rules.iptables' remembered walks; "local" is the netns's local addresses): it drew
    nothing and changed no state, so every packet equal in them gets this same result and ends with
    the same mark; None when that is not known (the walker's hop memo then does not remember the
    hop)."""

    __slots__ = ("verdict", "nat", "hits", "rules_evaluated", "reject_with", "reason", "reply", "ct_dnat",
                 "pure_fields")

    def __init__(self, verdict: str = "ACCEPT", nat: Optional[NatRequest] = None,
                 hits: Optional[list[RuleHit]] = None, rules_evaluated: int = 0,
                 reject_with: str = "icmp-port-unreachable", *, reason: str = "", reply: Any = None,
                 ct_dnat: bool = False) -> None:
        self.verdict = verdict            # ACCEPT | DROP | REJECT | STOLEN
        self.nat = nat
        self.hits: list[RuleHit] = hits if hits is not None else []
        self.rules_evaluated = rules_evaluated
        self.reject_with = reject_with
        self.reason = reason
        self.reply = reply
        self.ct_dnat = ct_dnat
        self.pure_fields: Optional[frozenset] = None

    def __repr__(self) -> str:
        return (f"HookResult({self.verdict!r}, nat={self.nat!r}, hits={len(self.hits)}, "
                f"rules_evaluated={self.rules_evaluated}, reject_with={self.reject_with!r})")


ACCEPTED = HookResult()          # nothing to do: ACCEPT, nothing matched (shared, never mutated)


class Netfilter(Protocol):
    def has_rules(self, table: str, chain: str) -> bool: ...

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> HookResult:
        """Evaluate a built-in chain; the RULE steps of the hits are appended to ``steps`` when given."""
        ...


class EmptyNetfilter:
    """No rules anywhere: all built-in policies ACCEPT."""

    def has_rules(self, table: str, chain: str) -> bool:
        return False

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> HookResult:
        return HookResult()

    def save(self) -> str:
        return ""
