"""A probe's verdict: every way one new connection can go, with the share of each, without a reader
for the steps.

kube-proxy's own packet-flow tests follow every probabilistic branch of the rules instead of
sampling them (pkg/proxy/iptables/proxier_test.go, ``tracePacket`` / ``iptablesTracer``): the
verdict here does the same through the whole data plane. The walker draws every random choice from
one ``random.Random``; :class:`BranchingRandom` stands in for it and turns each *decision* into a
branch point, which :func:`explore` enumerates depth first, one fresh copy of the emulator per path:

* ``numgen random mod n`` — a 32-bit draw scaled into [0, n) (reciprocal_scale), one branch per
  value, each with its exact share of the 2^32 draws;
* a threshold comparison on a drawn value — xt_statistic ``--mode random`` matches when
  ``(prandom_u32() & 0x7FFFFFFF) < lround(p * 2^31)`` (net/netfilter/xt_statistic.c,
  statistic_mt); the drawn value is an ``int`` that notes the mask and the threshold it is
  compared with, so the branch weights are exactly ``threshold / 2^31`` and its complement;
* ``choice(seq)`` — one branch per element, equal shares (the external load balancer's pick of a
  healthy node, a headless Service's address);
* ``randrange(n)`` with a small ``n`` — one branch per value, equal shares (nftables ``numgen
  random mod n``).

Every other draw (ephemeral ports, ISNs, SNAT port searches) is not a decision about where a
packet goes: it gets a fixed value, distinct per draw, so paths are reproducible.

A by-name probe first resolves the name through the data plane (each DNS query a connection of its
own to kube-dns). With ``settle_lookup`` those queries take one path (the first arm of each
decision: the first CoreDNS endpoint in rule order) and only the connection's own decisions — the
ones after the client's ephemeral port is drawn (``randrange`` over the port range, Linux's
``inet_hash_connect``) — are enumerated: 2^queries paths that all end alike are not walked.

State-driven choices (IPVS ``rr`` keeps a pointer per virtual server, ip_vs_rr.c) make no draw:
when a path took no decision, the same copy is asked again with new connections until an outcome
repeats the first one, and the outcomes seen so far are the reachable set (equal shares, one per
connection of the cycle).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from netsim.dataplane.trace import Trace

MAX_PATHS = 4096            # paths explored for one probe before giving up
MAX_CYCLE = 64              # connections asked of a stateful scheduler before giving up
SMALL_RANGE = 1024          # randrange(n) up to this many values is a decision (numgen mod n)


class TooManyPaths(ValueError):
    """A probe with more ways through the rules than :data:`MAX_PATHS`."""


@dataclass(frozen=True, order=True)
class Branch:
    """One way the connection went: how it ended, at which endpoint (``ns/pod ip:port`` or
    ``ip:port``; None when nothing took it), whether a SNAT/MASQUERADE rule bound its source, the
    errno the client saw, and its share of new connections."""

    disposition: str
    endpoint: Optional[str]
    snat: bool
    client_error: Optional[str]
    share: Fraction

    def to_dict(self) -> dict:
        return {"disposition": self.disposition, "endpoint": self.endpoint, "snat": self.snat,
                "client_error": self.client_error, "share": float(self.share)}


@dataclass(frozen=True)
class Verdict:
    """All branches of one probe (sorted, shares summing to 1) and what the first path cost."""

    branches: tuple[Branch, ...]
    rules_evaluated: int = 0      # of the first path (the kernel's count, netsim.dataplane.trace.Trace.rules_evaluated)
    paths: int = 1                # walks made to enumerate the branches

    @property
    def disposition(self) -> str:
        """The dispositions of every branch, ``|``-joined in order (``DELIVERED``, ``DELIVERED|DROPPED``)."""
        out: list[str] = []
        for b in self.branches:
            if b.disposition not in out:
                out.append(b.disposition)
        return "|".join(sorted(out))

    @property
    def endpoints(self) -> dict[str, float]:
        """Endpoint -> share of new connections that reach it (delivered or refused there)."""
        out: dict[str, Fraction] = {}
        for b in self.branches:
            if b.endpoint is not None:
                out[b.endpoint] = out.get(b.endpoint, Fraction(0)) + b.share
        return {k: float(v) for k, v in sorted(out.items())}

    @property
    def snat(self) -> Optional[bool]:
        """True/False when every branch agrees; None when some branches are SNATed and some not."""
        s = {b.snat for b in self.branches}
        return s.pop() if len(s) == 1 else None

    def outcome_key(self) -> tuple:
        """What a class row promises for each of its members: branches without the cost."""
        return self.branches

    def to_dict(self) -> dict:
        return {"disposition": self.disposition, "endpoints": self.endpoints, "snat": self.snat,
                "branches": [b.to_dict() for b in self.branches], "rules_evaluated": self.rules_evaluated,
                "paths": self.paths}


class _Drawn(int):
    """A drawn value; masking or scaling it keeps the knowledge that it was drawn."""

    def __mul__(self, n: Any) -> Any:
        out = _Scaled(int(self) * int(n))
        out.rng, out.n = self.rng, int(n)
        return out



    def __and__(self, mask: Any) -> Any:
        v = int(self) & int(mask)
        out = _Masked(v)
        out.rng, out.mask = self.rng, int(mask)
        return out


class _Masked(int):
    """A drawn value under a mask: comparing it with a threshold is a statistic-style decision."""



    def __lt__(self, threshold: Any) -> bool:
        t = int(threshold)
        p = Fraction(min(max(t, 0), self.mask + 1), self.mask + 1)
        return self.rng._decide((p, 1 - p)) == 0


class _Scaled(int):
    """A 32-bit draw times n: shifting it right by 32 is reciprocal_scale (include/linux/math.h), the
    choice of one of n arms that nft_numgen.c nft_ng_random_gen makes (``numgen random mod n``);
    arm k takes the draws v with (v * n) >> 32 == k, so its weight is exact."""

    def __rshift__(self, bits: Any) -> Any:
        b, n = int(bits), self.n
        if b != 32 or not 1 < n <= SMALL_RANGE:
            return int(self) >> b
        edges = [-(-(k << 32) // n) for k in range(n + 1)]          # ceil(k * 2^32 / n)
        return self.rng._decide(tuple(Fraction(edges[k + 1] - edges[k], 1 << 32) for k in range(n)))


class BranchingRandom(random.Random):
    """A stand-in for the walker's RNG that follows ``script`` (one arm index per decision; past the
    script, arm 0) and records every decision taken as (arm, weights of all arms)."""

    def __init__(self, script: list[int], settle_lookup: bool = False) -> None:
        super().__init__(0)
        self.script = script
        self.taken: list[tuple[int, tuple[Fraction, ...]]] = []
        self._n = 0
        self._settled = settle_lookup         # decisions not enumerated until the connection's port is drawn

    def _decide(self, weights: tuple[Fraction, ...]) -> int:
        if self._settled:
            return next(k for k, w in enumerate(weights) if w)
        i = len(self.taken)
        arm = self.script[i] if i < len(self.script) else 0
        if weights[arm] == 0:                 # an arm that cannot happen: take the first that can
            arm = next(k for k, w in enumerate(weights) if w)
        self.taken.append((arm, weights))
        return arm

    def _next(self) -> int:
        self._n += 1
        return self._n

    # decisions
    def getrandbits(self, k: int) -> int:
        v = _Drawn((0x9E3779B9 * self._next()) & ((1 << k) - 1))
        v.rng = self
        return v

    def choice(self, seq: Any) -> Any:
        n = len(seq)
        if n == 0:
            raise IndexError("Cannot choose from an empty sequence")
        if n == 1:
            return seq[0]
        return seq[self._decide(tuple(Fraction(1, n) for _ in range(n)))]

    def randrange(self, start: int, stop: Optional[int] = None, step: int = 1) -> int:
        if stop is None and step == 1 and 1 < start <= SMALL_RANGE:
            return self._decide(tuple(Fraction(1, start) for _ in range(start)))
        lo, hi = (0, start) if stop is None else (start, stop)
        span = max(1, (hi - lo) // step)
        if span > SMALL_RANGE:
            self._settled = False             # the connection's own ephemeral port: its decisions count
        return lo + step * (self._next() % span)

    # not decisions: fixed, distinct per draw
    def randint(self, a: int, b: int) -> int:
        return a + self._next() % (b - a + 1)

    def random(self) -> float:
        return (self._next() % 1000) / 1000.0

    def shuffle(self, x: Any) -> None:       # order only; nothing chooses by it on a probe
        return None


def _branch_of(t: "Trace") -> tuple[str, Optional[str], bool, Optional[str]]:
    o = t.outcome
    disposition = str(o.disposition)
    endpoint = None
    if o.ip is not None and o.port is not None and disposition != "UNRESOLVED":
        endpoint = f"{o.pod} {o.ip}:{o.port}" if o.pod else f"{o.ip}:{o.port}"
    return disposition, endpoint, _snat(t), o.client_error


def _snat(t: "Trace") -> bool:
    """Whether a SNAT or MASQUERADE rule bound the request's source (what kube-proxy's test tracer
    reports as masquerade): a rule's decision, the same wherever the endpoint is, unlike the address
    the server happens to see (a host's MASQUERADE towards a remote pod keeps the node's address)."""
    if not t.packets:
        return False
    for hop in t.packets[0].hops:
        for step in hop.steps:
            if step.action == "CONNTRACK" and " binding: source -> " in step.detail:
                return True
    return False


def explore(run: Callable[[BranchingRandom], tuple[Any, Callable[[], "Trace"]]],
            max_paths: int = MAX_PATHS, settle_lookup: bool = False) -> Verdict:
    """Every way a probe can go. ``run(rng)`` makes a fresh copy over ``rng``, walks the probe once
    and returns (its trace, a function walking one more new connection on the same copy)."""
    shares: dict[tuple, Fraction] = {}
    pending: list[list[int]] = [[]]
    paths = 0
    first_rules = 0
    while pending:
        script = pending.pop()
        paths += 1
        if paths > max_paths:
            raise TooManyPaths(f"more than {max_paths} ways through the rules; not enumerated")
        rng = BranchingRandom(script, settle_lookup)
        trace, again = run(rng)
        if paths == 1:
            first_rules = trace.rules_evaluated
        weight = Fraction(1)
        for arm, weights in rng.taken:
            weight *= weights[arm]
        taken = list(rng.taken)
        if not taken:
            seen = _cycle(trace, again)
            for b in seen:
                shares[b] = shares.get(b, Fraction(0)) + weight / len(seen)
        else:
            b = _branch_of(trace)
            shares[b] = shares.get(b, Fraction(0)) + weight
        # the other arms of every decision this run made past its script (deepest first pushed
        # last, so the next run is the deepest alternative: depth first, rule order)
        for i in range(len(script), len(taken)):
            arm, weights = taken[i]
            prefix = [a for a, _ in taken[:i]]
            for other in range(len(weights) - 1, -1, -1):
                if other != arm and weights[other]:
                    pending.append(prefix + [other])
    branches = tuple(sorted(Branch(d, e, s, c, w) for (d, e, s, c), w in shares.items() if w))
    return Verdict(branches, first_rules, paths)


def _cycle(first: "Trace", again: Callable[[], "Trace"]) -> list[tuple]:
    """A path that took no decision: ask the same copy for new connections until the first outcome
    comes back (a stateful scheduler's cycle); one entry per connection of the cycle."""
    b0 = _branch_of(first)
    if b0[1] is None:                 # nothing took it: nothing to balance
        return [b0]
    seen = [b0]
    for _ in range(MAX_CYCLE):
        b = _branch_of(again())
        if b == b0:
            return seen
        seen.append(b)
    return seen


__all__ = ["Verdict", "Branch", "BranchingRandom", "explore", "TooManyPaths", "MAX_PATHS"]
