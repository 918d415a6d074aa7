"""kube-proxy's metric families: names, types, help texts, labels, histogram buckets.

kubernetes/kubernetes pkg/proxy/metrics/metrics.go (the v1.31 family; subsystem ``kubeproxy``):
the families every mode registers (COMMON), and each mode's own (IPTABLES, IPVS, NFTABLES: its
provider's ``metric_families``). The exposition (what :10249/metrics prints, filled from the
proxiers' syncs) is netsim.dataplane.proxy_metrics.
"""
from __future__ import annotations

from dataclasses import dataclass

SUBSYSTEM = "kubeproxy"


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """prometheus.ExponentialBuckets."""
    return tuple(start * factor ** i for i in range(count))


def linear_buckets(start: float, width: float, count: int) -> tuple[float, ...]:
    """prometheus.LinearBuckets."""
    return tuple(start + width * i for i in range(count))


SYNC_BUCKETS = exponential_buckets(0.001, 2, 15)                      # 1 ms .. 16.384 s
# metrics.MergeBuckets prepends a 0 bucket (merge() starts from make([]float64, 1)).
NETWORK_PROGRAMMING_BUCKETS = (0.0,) + linear_buckets(0.25, 0.25, 2) + linear_buckets(1, 1, 59) \
    + linear_buckets(60, 5, 12) + linear_buckets(120, 30, 7)


@dataclass(frozen=True)
class Family:
    name: str                      # without the subsystem
    kind: str                      # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{SUBSYSTEM}_{self.name}"


COMMON = (
    Family("sync_proxy_rules_duration_seconds", "histogram", "SyncProxyRules latency in seconds",
           buckets=SYNC_BUCKETS),
    Family("sync_proxy_rules_last_queued_timestamp_seconds", "gauge", "The last time a sync of proxy rules was queued"),
    Family("sync_proxy_rules_last_timestamp_seconds", "gauge", "The last time proxy rules were successfully synced"),
    Family("sync_proxy_rules_endpoint_changes_pending", "gauge", "Pending proxy rules Endpoint changes"),
    Family("sync_proxy_rules_endpoint_changes_total", "counter", "Cumulative proxy rules Endpoint changes"),
    Family("sync_proxy_rules_service_changes_pending", "gauge", "Pending proxy rules Service changes"),
    Family("sync_proxy_rules_service_changes_total", "counter", "Cumulative proxy rules Service changes"),
    Family("proxy_healthz_total", "counter", "Cumulative proxy healthz HTTP status", ("code",)),
    Family("proxy_livez_total", "counter", "Cumulative proxy livez HTTP status", ("code",)),
    Family("network_programming_duration_seconds", "histogram", "In Cluster Network Programming Latency in seconds",
           buckets=NETWORK_PROGRAMMING_BUCKETS),
    Family("sync_proxy_rules_no_local_endpoints_total", "gauge",
           "Number of services with a Local traffic policy and no endpoints", ("traffic_policy",)),
)
IPTABLES = (
    Family("sync_full_proxy_rules_duration_seconds", "histogram", "SyncProxyRules latency in seconds for full resyncs",
           buckets=SYNC_BUCKETS),
    Family("sync_partial_proxy_rules_duration_seconds", "histogram",
           "SyncProxyRules latency in seconds for partial resyncs", buckets=SYNC_BUCKETS),
    Family("sync_proxy_rules_iptables_restore_failures_total", "counter", "Cumulative proxy iptables restore failures"),
    Family("sync_proxy_rules_iptables_partial_restore_failures_total", "counter",
           "Cumulative proxy iptables partial restore failures"),
    Family("sync_proxy_rules_iptables_total", "gauge", "Total number of iptables rules owned by kube-proxy", ("table",)),
    Family("sync_proxy_rules_iptables_last", "gauge", "Number of iptables rules written by kube-proxy in last sync",
           ("table",)),
)
IPVS = (
    Family("sync_proxy_rules_iptables_restore_failures_total", "counter", "Cumulative proxy iptables restore failures"),
)
NFTABLES = (
    Family("sync_proxy_rules_nftables_sync_failures_total", "counter", "Cumulative proxy nftables sync failures"),
    Family("sync_proxy_rules_nftables_cleanup_failures_total", "counter", "Cumulative proxy nftables cleanup failures"),
)
