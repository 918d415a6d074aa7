"""kube-proxy's Prometheus metrics (what its :10249/metrics serves), filled by our proxiers' syncs.

Names, types, help texts, label names and histogram buckets are kube-proxy's own (the families are
in netsim.rules.metrics; kubernetes/kubernetes pkg/proxy/metrics/metrics.go, the v1.31 family with nfacct: subsystem
``kubeproxy``; ``RegisterMetrics(mode)`` registers the common families for every mode plus, for
iptables, the full/partial sync histograms, restore failures and the ``iptables_total`` /
``iptables_last`` gauges; for IPVS the restore-failure counter; for nftables its two failure counters).
Help texts carry component-base's stability prefix (``[ALPHA] ``), as the real endpoint prints them.

The text is the Prometheus exposition format 0.0.4 as client_golang's expfmt writes it: ``# HELP``,
``# TYPE``, samples sorted by label values, histogram ``_bucket{le=...}`` cumulative counts, then
``_sum`` and ``_count``; numbers as Go's ``strconv.FormatFloat(v, 'g', -1, 64)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

from netsim.rules.metrics import COMMON, Family


def families_for(mode: str) -> tuple[Family, ...]:
    """RegisterMetrics(mode): the common families, then the mode's own (its provider's
    ``metric_families``, netsim.rules.registry)."""
    from netsim.rules.registry import get
    return COMMON + tuple(get(mode).metric_families)


def go_float(v: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64), with expfmt's special cases (writeFloat)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    sign, digits, exp = Decimal(repr(float(v))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    point = len(ds) + exp               # decimal point position after the first `point` digits
    x = point - 1                       # the exponent in d.ddd e x
    neg = "-" if sign else ""
    # 'g' with the shortest digits: %e when the exponent is < -4 or >= 6 (ftoa.go formatDigits:
    # "if precision was the shortest possible, use precision 6 for this decision")
    eprec = 6
    if x < -4 or x >= eprec:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{neg}{ds}{'0' * (point - len(ds))}"
    return f"{neg}{ds[:point]}.{ds[point:]}"


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, v: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.total += v
        self.count += 1


@dataclass
class KubeProxyMetrics:
    """One kube-proxy's metric values (label tuple -> value; histograms per label tuple)."""
    mode: str
    values: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def family(self, name: str) -> Family:
        for f in families_for(self.mode):
            if f.name == name:
                return f
        raise KeyError(f"kube-proxy in mode {self.mode} has no metric {name!r}")

    def has(self, name: str) -> bool:
        """Is ``name`` one of the families kube-proxy registers in this mode?"""
        return any(f.name == name for f in families_for(self.mode))

    def set(self, name: str, value: float, *labels: str) -> None:
        self.family(name)
        self.values.setdefault(name, {})[tuple(labels)] = float(value)

    def inc(self, name: str, by: float = 1.0, *labels: str) -> None:
        self.family(name)
        d = self.values.setdefault(name, {})
        d[tuple(labels)] = d.get(tuple(labels), 0.0) + by

    def observe(self, name: str, value: float) -> None:
        fam = self.family(name)
        self.histograms.setdefault(name, Histogram(fam.buckets)).observe(value)

    def get(self, name: str, *labels: str) -> Optional[float]:
        return self.values.get(name, {}).get(tuple(labels))

    def exposition(self) -> str:
        """The /metrics text: every registered family (vectors only once they have a child, as in Go)."""
        out: list[str] = []
        for fam in sorted(families_for(self.mode), key=lambda f: f.full_name):
            name = fam.full_name
            if fam.kind == "histogram":
                h = self.histograms.get(fam.name) or Histogram(fam.buckets)
                counts = h.counts or [0] * len(fam.buckets)
                out += [f"# HELP {name} [ALPHA] {fam.help}", f"# TYPE {name} histogram"]
                out += [f'{name}_bucket{{le="{go_float(b)}"}} {c}' for b, c in zip(fam.buckets, counts)]
                out += [f'{name}_bucket{{le="+Inf"}} {h.count}', f"{name}_sum {go_float(h.total)}",
                        f"{name}_count {h.count}"]
                continue
            samples = self.values.get(fam.name, {})
            if fam.labels and not samples:
                continue
            out += [f"# HELP {name} [ALPHA] {fam.help}", f"# TYPE {name} {fam.kind}"]
            if not fam.labels:
                out.append(f"{name} {go_float(samples.get((), 0.0))}")
                continue
            for labels in sorted(samples):
                lab = ",".join(f'{k}="{v}"' for k, v in zip(fam.labels, labels))
                out.append(f"{name}{{{lab}}} {go_float(samples[labels])}")
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "values": {n: [[list(k), v] for k, v in d.items()] for n, d in self.values.items()},
                "histograms": {n: {"counts": h.counts, "sum": h.total, "count": h.count}
                               for n, h in self.histograms.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "KubeProxyMetrics":
        m = cls(d["mode"])
        m.values = {n: {tuple(k): v for k, v in rows} for n, rows in d.get("values", {}).items()}
        for n, h in d.get("histograms", {}).items():
            m.histograms[n] = Histogram(m.family(n).buckets, list(h["counts"]), h["sum"], h["count"])
        return m
