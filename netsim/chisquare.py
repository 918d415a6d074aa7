"""Pearson's chi-square goodness-of-fit test against a uniform split (no scipy needed).

The p-value is the chi-square distribution's survival function, ``Q(df/2, x/2)``: the regularized
upper incomplete gamma function (DLMF 8.2.4; chi-square relation DLMF 8.1 and Abramowitz & Stegun
26.4.19), computed by its power series when ``x < a + 1`` (DLMF 8.7.1, A&S 6.5.29) and otherwise by
its continued fraction (DLMF 8.9.2, A&S 6.5.31) evaluated with the modified Lentz method.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def gammaq(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a), for a > 0 and x >= 0."""
    if a <= 0:
        raise ValueError(f"gammaq: a must be > 0, got {a}")
    if x < 0:
        raise ValueError(f"gammaq: x must be >= 0, got {x}")
    if x == 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        # P(a, x) = x^a e^-x / Γ(a+1) · Σ x^n / ((a+1)...(a+n))
        term = total = 1.0 / a
        ap = a
        for _ in range(_MAX_ITER):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Q(a, x) = x^a e^-x / Γ(a) · 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- ...)))
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPS:
            break
    return min(1.0, math.exp(log_prefix) * h)


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"chi2_sf: df must be >= 1, got {df}")
    return gammaq(df / 2.0, x / 2.0)


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    df: int
    p_value: float


def uniform_test(counts: Sequence[int]) -> ChiSquare:
    """Do ``counts`` (one per category, every category listed, zeros included) fit an even split?"""
    k = len(counts)
    n = sum(counts)
    if k < 2 or n == 0:
        return ChiSquare(0.0, max(k - 1, 0), 1.0)
    expected = n / k
    stat = sum((c - expected) ** 2 / expected for c in counts)
    return ChiSquare(stat, k - 1, chi2_sf(stat, k - 1))
