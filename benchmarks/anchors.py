"""Published figures `netsim bench` draws next to its own, each with the public page it comes from.

Only figures a reader can find at the cited address are here; each says how it was read.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    label: str
    mode: str
    services: int
    metric: str                  # a results.json metric it compares with
    value: float
    unit: str
    source: str                  # URL
    how: str


K8S_BLOG_2025 = "https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/"
# "NFTables mode for kube-proxy" (Kubernetes blog, 2025-02-28), section "Why nftables? Part 1: data plane
# latency": first-packet round-trip latency at 5,000 / 10,000 / 30,000 Services, published as bar charts
# only (no table); the values below were read off those charts (iptables chart ±2 µs, nftables and ipvs
# charts ±0.3 µs). Cluster hardware and tool are not stated on the page. Re-checked from the charts' own
# SVG geometry (bar tops against the gridlines; kubernetes/website
# content/en/blog/_posts/2025-02-28-nftables-kube-proxy/iptables-only.svg: 3.62 µs per px, and
# content/zh-cn/blog/_posts/2025-02-28-nftables-kube-proxy/ipvs-vs-nftables.svg: 0.296 µs per px): every
# value agrees within one pixel; the series order (5k, 10k, 30k per colour group) is the legend's.
_BLOG = "k8s blog 2025 (chart reading)"
FIRST_PACKET = (
    Anchor(_BLOG, "iptables", 5000, "kernel_first_connection_latency_p50", 48, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "iptables", 10000, "kernel_first_connection_latency_p50", 62, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "iptables", 30000, "kernel_first_connection_latency_p50", 272, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "iptables", 5000, "kernel_first_connection_latency_p99", 153, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "iptables", 10000, "kernel_first_connection_latency_p99", 258, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "iptables", 30000, "kernel_first_connection_latency_p99", 714, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 5000, "kernel_first_connection_latency_p50", 22.5, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 10000, "kernel_first_connection_latency_p50", 23.4, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 30000, "kernel_first_connection_latency_p50", 27.6, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 5000, "kernel_first_connection_latency_p50", 14.2, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 10000, "kernel_first_connection_latency_p50", 14.2, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 30000, "kernel_first_connection_latency_p50", 14.3, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 5000, "kernel_first_connection_latency_p99", 48.3, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 10000, "kernel_first_connection_latency_p99", 49.1, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "ipvs", 30000, "kernel_first_connection_latency_p99", 56.5, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 5000, "kernel_first_connection_latency_p99", 38.6, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 10000, "kernel_first_connection_latency_p99", 37.0, "µs", K8S_BLOG_2025, "chart"),
    Anchor(_BLOG, "nftables", 30000, "kernel_first_connection_latency_p99", 38.4, "µs", K8S_BLOG_2025, "chart"),
)

def published_points(mode: str, metric: str) -> list[Anchor]:
    """The published first-packet points of one mode and metric, by Services."""
    return sorted((a for a in FIRST_PACKET if a.mode == mode and a.metric == metric), key=lambda a: a.services)


def published_ratio(mode: str, metric: str, n_small: int, n_big: int) -> float | None:
    """value(n_big) / value(n_small) of one published series, when both points exist."""
    pts = {a.services: a.value for a in FIRST_PACKET if a.mode == mode and a.metric == metric}
    if n_small in pts and n_big in pts:
        return pts[n_big] / pts[n_small]
    return None
