"""`netsim bench --compare OLD.json`: each metric's change between two runs, flagged where it exceeds the
measured spread.

A timing's spread is its min..max over the repeats; a change is flagged when the new median lies
outside the old run's min..max *and* the old median outside the new one's (both runs disagree beyond
their own noise). Exact counts (no spread: rules, bytes, servers) are flagged on any change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from netsim.benchmarks.records import Record


@dataclass
class Change:
    record: Record                  # the new run's
    old: Optional[float]
    new: Optional[float]
    flagged: bool
    why: str

    @property
    def ratio(self) -> Optional[float]:
        if self.old in (None, 0) or self.new is None:
            return None
        return self.new / self.old


def _outside(value: float, spread: Optional[dict]) -> bool:
    return spread is not None and not (spread["min"] <= value <= spread["max"])


def compare(old: Sequence[Record], new: Sequence[Record]) -> list[Change]:
    before = {r.key(): r for r in old}
    out = []
    for r in new:
        o = before.pop(r.key(), None)
        if o is None:
            out.append(Change(r, None, r.value, False, "new metric"))
            continue
        if r.spread is None or o.spread is None:
            flagged = r.value != o.value
            why = "exact count changed" if flagged else ""
        else:
            flagged = _outside(r.value, o.spread) and _outside(o.value, r.spread)
            why = "beyond both runs' min..max" if flagged else "within spread"
        out.append(Change(r, o.value, r.value, flagged, why))
    for o in before.values():
        out.append(Change(o, o.value, None, False, "missing in the new run"))
    return out


def _label(r: Record) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())
                     if k not in ("stage", "kernel_runner", "note", "statistic"))
    return f"{r.metric} {r.mode} {r.services}x{r.endpoints_per_service}" + (f" [{extra}]" if extra else "")


def render_compare(changes: Sequence[Change]) -> str:
    flagged = sum(c.flagged for c in changes)
    lines = [f"compare: {len(changes)} metrics, {flagged} changed beyond the measured spread (marked !)",
             f"{'':2}{'metric':<90} {'old':>12} {'new':>12} {'change':>9}"]
    for c in changes:
        ratio = c.ratio
        change = f"{(ratio - 1) * 100:+.1f}%" if ratio is not None else c.why
        old = "-" if c.old is None else f"{c.old:g}"
        new = "-" if c.new is None else f"{c.new:g}"
        lines.append(f"{'!' if c.flagged else ' ':2}{_label(c.record):<90} {old:>12} {new:>12} {change:>9}")
    return "\n".join(lines)
