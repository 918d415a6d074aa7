"""Many traces of one request summed up: which endpoint got how many new connections, and how they ended."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from netsim.dataplane.trace import Trace

SCHEMA = "netsim.trace-summary/v1"


def summarize(traces: Iterable[Trace]) -> dict:
    """Connections per endpoint ("pod ip:port") and per disposition, as `netsim trace --count` prints them."""
    by_endpoint: Counter = Counter()
    by_outcome: Counter = Counter()
    count = 0
    for t in traces:
        count += 1
        o = t.outcome
        by_outcome[o.disposition] += 1
        if o.ok:
            by_endpoint[f"{o.pod or o.host} {o.ip}:{o.port}"] += 1
    return {"schema": SCHEMA, "count": count,
            "outcomes": dict(sorted(by_outcome.items())), "endpoints": dict(sorted(by_endpoint.items()))}


def render_summary(s: dict) -> str:
    lines = [f"{s['count']} new connections"]
    lines.append(f"{'ENDPOINT':<60} {'CONNECTIONS':>11} {'SHARE':>6}")
    for ep, n in s["endpoints"].items():
        lines.append(f"{ep:<60} {n:>11} {100.0 * n / s['count']:>5.1f}%")
    lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()))
    return "\n".join(lines)
