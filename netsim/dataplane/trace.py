"""A trace: the hop-by-hop record of one connection attempt, request and reply, and its outcome.

Vocabulary (Batfish-style ACTION words; Hubble-style one-line flow header):

  ORIGINATED  RECEIVED  CONNTRACK  RULE  TRANSLATED  ROUTED  BRIDGED  ENCAPSULATED
  DECAPSULATED  TRANSMITTED  BALANCED  RESOLVED  DELIVERED  ANSWERED  DROPPED  REJECTED

JSON schema ``netsim.trace/v1`` (stable; fields are only ever added)::

  {
    "schema": "netsim.trace/v1",
    "mode": "iptables" | "ipvs" | "none",
    "flow": {"client": str, "proto": "tcp"|"udp"|"icmp"|"sctp", "src": ip, "sport": int,
             "dst": ip|null, "dport": int|null,    # null: UNRESOLVED (no address)
             "target": str, "resolved_by": str|null},
    "packets": [                                   # every packet walked, in order
      {"direction": "request"|"reply", "summary": str,
       "hops": [{"n": int, "host": str, "kind": "pod"|"node"|"router"|"external"|"loadbalancer",
                 "steps": [{"action": str, "detail": str,
                            # optional, when the step has them:
                            "table": str, "chain": str, "rule": str, "rule_number": int,
                            "before": str, "after": str, "interface": str, "conntrack": str}]}]}],
    "outcome": {"disposition": "DELIVERED"|"NO_LISTENER"|"REJECTED"|"DROPPED"|"NO_ROUTE"|
                               "NEIGHBOR_UNREACHABLE"|"LOST"|"TTL_EXCEEDED"|"UNRESOLVED",
                "host": str|null, "pod": "ns/name"|null, "ip": str|null, "port": int|null,
                "seen_source": "ip:port"|null, "detail": str,
                "client_error": "EPERM"|"ETIMEDOUT"|"ECONNREFUSED"|"EAI_NONAME"|"EAI_AGAIN"|null,
                "reply": {"received": bool, "from": "ip:port"|null, "matches_request": bool,
                          "summary": str|null}},
    "rules_evaluated": int,                       # what the kernel would have evaluated
    "notes": [str]                                # e.g. each DNS query of a by-name trace from a pod
  }
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.skb.step import Step

SCHEMA = "netsim.trace/v1"

SUCCESS = frozenset({"DELIVERED"})


class TranslatedStep(Step):
    """TRANSLATED: an address rewrite (old ip, old port, new ip, new port), formatted when read."""

    __slots__ = ("_change", "_extra")

    def __init__(self, label: str, which: str, change: tuple[int, int, int, int]) -> None:
        self.action = "TRANSLATED"
        self._args = None
        self._detail = None
        self._extra = None
        self._change = (label, which, change)

    def _render(self) -> None:
        from netsim.skb.packet import int2ip
        label, which, (oi, op, ni, np_) = self._change
        before = f"{int2ip(oi)}:{op}" if op else int2ip(oi)
        after = f"{int2ip(ni)}:{np_}" if np_ else int2ip(ni)
        self._detail = f"{label} {which} {before} -> {after}"
        self._extra = {"before": before, "after": after}

    @property
    def detail(self) -> str:
        if self._detail is None:
            self._render()
        return self._detail

    @property
    def extra(self) -> dict:
        if self._extra is None:
            self._render()
        return self._extra

    def __reduce__(self) -> tuple:
        return (Step, ("TRANSLATED", self.detail, self.extra))     # pickled as the step it reads as


class PacketSnapshot(bytes):
    """The bytes of a packet at one moment (``PacketSnapshot(pkt.buf)`` copies them); renders as its
    one-line summary on demand. A bytes object: made without a Python call, per step of every walk."""

    __slots__ = ()

    @property
    def data(self) -> bytes:
        return bytes(self)

    def __str__(self) -> str:
        from netsim.skb.packet import Packet
        return Packet(self).summary()


class Addr(int):
    """An integer IPv4 address that renders dotted (an int: made without a Python call)."""

    __slots__ = ()

    @property
    def n(self) -> int:
        return int(self)

    def __str__(self) -> str:
        from netsim.skb.packet import int2ip
        return int2ip(self)


class Hop:
    """The steps a packet went through on one host (one network namespace)."""

    __slots__ = ("n", "host", "kind", "steps")

    def __init__(self, n: int, host: str, kind: str) -> None:
        self.n = n
        self.host = host
        self.kind = kind
        self.steps: list[Step] = []

    def add(self, action: str, detail: str, extra: Optional[dict] = None, args: Optional[tuple] = None) -> Step:
        s = Step(action, detail, extra, args)
        self.steps.append(s)
        return s

    def actions(self) -> list[str]:
        return [s.action for s in self.steps]

    def to_dict(self) -> dict:
        return {"n": self.n, "host": self.host, "kind": self.kind, "steps": [s.to_dict() for s in self.steps]}


class PacketTrace:
    """One packet's walk (it may be rewritten on the way: summary is as it was sent)."""

    __slots__ = ("direction", "_summary", "hops", "pcap", "rules")

    def __init__(self, direction: str, summary: Any) -> None:
        self.direction = direction
        self._summary = summary                 # str or PacketSnapshot
        self.hops: list[Hop] = []
        self.pcap: Optional[list] = None    # [(host, iface, bytes, comment)] when capturing
        self.rules = 0                      # rules the kernel would have evaluated for this packet

    @property
    def summary(self) -> str:
        if not isinstance(self._summary, str):
            self._summary = str(self._summary)
        return self._summary

    def hop(self, host: str, kind: str) -> Hop:
        h = Hop(len(self.hops) + 1, host, kind)
        self.hops.append(h)
        return h

    def steps(self, action: Optional[str] = None) -> list[Step]:
        return [s for h in self.hops for s in h.steps if action is None or s.action == action]

    def to_dict(self) -> dict:
        return {"direction": self.direction, "summary": self.summary, "hops": [h.to_dict() for h in self.hops]}

    def translated_by(self) -> list[str]:
        """Who rewrote this packet's addresses on its way, in order, from its own steps: a nat-table
        rule (the connection's first packet), conntrack applying a NAT binding, IPVS (scheduling to
        a real server, or undoing that on a reply). Empty when nothing rewrote it."""
        out: list[str] = []
        for h in self.hops:
            nat_rule = any(s.action == "RULE" and s.extra and s.extra.get("table") == "nat"
                           and (" -j DNAT" in s.extra["rule"] or " -j SNAT" in s.extra["rule"]
                                or " -j MASQUERADE" in s.extra["rule"]) for s in h.steps)
            for s in h.steps:
                who = None
                if s.action == "TRANSLATED":
                    who = "nat rule" if nat_rule and "conntrack" not in s.detail else "conntrack"
                elif s.action == "IPVS" and (": dnat " in s.detail or ": un-dnat " in s.detail):
                    who = "IPVS"
                if who is not None and who not in out:
                    out.append(who)
        return out

    def collapsed_label(self) -> str:
        """The one-line summary of a packet whose hops are not printed."""
        by = self.translated_by()
        nat = f"addresses rewritten by {' and '.join(by)}" if by else "no address rewritten"
        return f"({len(self.hops)} hops, {nat})"


class Reply:
    """What came back to the client; ``summary`` may be given as a PacketSnapshot (rendered when read)."""

    __slots__ = ("received", "src", "matches_request", "_summary")

    def __init__(self, received: bool = False, src: Optional[str] = None, matches_request: bool = False,
                 summary: Any = None) -> None:
        self.received = received
        self.src = src                          # "ip:port" the client saw the reply come from
        self.matches_request = matches_request  # came from the address the client sent to (NAT undone)
        self._summary = summary

    @property
    def summary(self) -> Optional[str]:
        if self._summary is not None and not isinstance(self._summary, str):
            self._summary = str(self._summary)
        return self._summary

    @summary.setter
    def summary(self, value: Optional[str]) -> None:
        self._summary = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Reply):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"Reply(received={self.received!r}, src={self.src!r}, "
                f"matches_request={self.matches_request!r}, summary={self.summary!r})")

    def to_dict(self) -> dict:
        return {"received": self.received, "from": self.src, "matches_request": self.matches_request,
                "summary": self.summary}


class Disposition(str):
    """An outcome's disposition ("DELIVERED", "REJECTED", ...): a str that knows its trace, so that a
    failing ``assert t.outcome.disposition == "DELIVERED"`` can show the trace (netsim.pytest_plugin).
    Pickles and serializes as the plain string."""

    def __new__(cls, value: str, trace: Optional["Trace"] = None) -> "Disposition":
        obj = super().__new__(cls, value)
        obj.trace = trace
        return obj

    def __reduce__(self) -> tuple:
        return (str, (str(self),))


@dataclass
class Outcome:
    disposition: str
    detail: str = ""
    host: Optional[str] = None
    pod: Optional[str] = None
    ip: Optional[str] = None
    port: Optional[int] = None
    seen_source: Optional[str] = None   # "ip:port" the server saw the request come from
    reply: Reply = field(default_factory=Reply)
    client_error: Optional[str] = None  # errno the client process gets when its host drops its packet

    @property
    def ok(self) -> bool:
        return self.disposition in SUCCESS

    def to_dict(self) -> dict:
        return {"disposition": self.disposition, "host": self.host, "pod": self.pod, "ip": self.ip,
                "port": self.port, "seen_source": self.seen_source, "detail": self.detail,
                "reply": self.reply.to_dict(), "client_error": self.client_error}


@dataclass
class Flow:
    client: str
    proto: str
    src: str
    sport: int
    dst: str
    dport: int
    target: str = ""
    resolved_by: Optional[str] = None

    def to_dict(self) -> dict:
        return {"client": self.client, "proto": self.proto, "src": self.src, "sport": self.sport,
                "dst": self.dst, "dport": self.dport, "target": self.target, "resolved_by": self.resolved_by}


@dataclass
class Trace:
    flow: Flow
    mode: str
    packets: list[PacketTrace] = field(default_factory=list)
    outcome: Optional[Outcome] = None
    rules_evaluated: int = 0
    notes: list[str] = field(default_factory=list)
    # packets walked for a pcap only, as (index in packets they come before, walk): the DNS queries
    # of a by-name trace, the handshake's final ACK
    capture_only: list[tuple[int, "PacketTrace"]] = field(default_factory=list)

    @property
    def request(self) -> PacketTrace:
        return self.packets[0]

    def walks_in_order(self) -> list[PacketTrace]:
        """Every packet walked, the capture-only ones (DNS, final ACK) in their place: what a pcap holds."""
        merged = sorted(self.capture_only + list(enumerate(self.packets)), key=lambda x: x[0])   # stable
        return [walk for _i, walk in merged]

    def replies(self) -> list[PacketTrace]:
        return [p for p in self.packets if p.direction == "reply"]

    def steps(self, action: Optional[str] = None) -> list[Step]:
        return [s for p in self.packets for s in p.steps(action)]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "mode": self.mode, "flow": self.flow.to_dict(),
                "packets": [p.to_dict() for p in self.packets],
                "outcome": self.outcome.to_dict() if self.outcome else None,
                "rules_evaluated": self.rules_evaluated, "notes": list(self.notes)}

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # ------------------------------------------------------------------ text rendering
    def __str__(self) -> str:
        return self.render()

    def render(self, verbose: bool = False) -> str:
        f = self.flow
        dst = f"{f.dst}:{f.dport}" if f.dst is not None else "?"          # UNRESOLVED: no address
        lines = [f"flow  {f.client} {f.src}:{f.sport} -> {dst} {f.proto.upper()}"
                 + (f"   ({f.target}{'; ' + f.resolved_by if f.resolved_by else ''})" if f.target else "")]
        lines += [f"note  {n}" for n in self.notes]
        first_reply = next((p for p in self.packets if p.direction == "reply"), None)
        for pt in self.packets:
            if not verbose and pt is not self.packets[0] and pt is not first_reply:
                lines.append(f"--- {pt.direction}: {pt.summary}  {pt.collapsed_label()}")
                continue
            lines.append(f"--- {pt.direction}: {pt.summary}")
            for h in pt.hops:
                lines.append(f"{h.n}. {h.kind} {h.host}")
                for s in h.steps:
                    lines.append(f"     {s.action:<12} {s.detail}")
        o = self.outcome
        if o is not None:
            where = f" {o.pod or o.host}" if (o.pod or o.host) else ""
            at = f" at {o.ip}:{o.port}" if o.ip else ""
            src = f" (server saw source {o.seen_source})" if o.seen_source else ""
            lines.append(f"{o.disposition}{where}{at}{src}")
            if o.detail:
                lines.append(f"  {o.detail}")
            r = o.reply
            if r.received:
                ok = "matches the request: NAT undone on the way back" if r.matches_request else "DOES NOT match the request"
                lines.append(f"  reply from {r.src} ({ok}): {r.summary}")
        lines.append(f"{len(self.packets)} packets · {sum(len(p.hops) for p in self.packets)} hops · "
                     f"{self.rules_evaluated} rules evaluated (as the kernel would)")
        return "\n".join(lines)
