"""kube-proxy's own ports on one node: what :10249 (metrics server) and :10256 (healthz server) answer,
filled by real syncs of our proxiers.

* :10249 (``metricsBindAddress``, default 127.0.0.1:10249; cmd/kube-proxy/app/server.go
  ``serveMetrics``): ``/proxyMode`` (the mode as plain text), ``/metrics`` (netsim.dataplane.proxy_metrics),
  ``/healthz`` (component-base's ``ok``).
* :10256 (``healthzBindAddress``, default 0.0.0.0:10256; pkg/proxy/healthcheck/proxier_health.go):
  ``/healthz`` → ``{"lastUpdated": %q,"currentTime": %q, "nodeEligible": %v}`` and ``/livez`` →
  ``{"lastUpdated": %q,"currentTime": %q}``, 200 or 503. Healthy while nothing is queued or the oldest
  queued change is younger than healthTimeout (2 × syncPeriod = 60 s by default); /healthz also
  needs the node eligible (not deleted, no ``ToBeDeletedByClusterAutoscaler`` taint). When healthy,
  lastUpdated is reported as the current time (kube-proxy keeps that old semantics).

:class:`KubeProxyNode` drives one node's kube-proxy: it watches the cluster as kube-proxy's
informers do (each Service / EndpointSlice event counts in ``*_changes_total``; the initial list
counts as adds), and :meth:`KubeProxyNode.sync` runs the mode's proxier – iptables: a full sync
first, then KEP-3453 partial syncs of the changed Services' chains (``partial_syncs=False`` for a
backend that always restores everything) – timing it into the histograms and setting the gauges the
way pkg/proxy/iptables/proxier.go ``syncProxyRules`` does. :class:`ProxyStatus` is the serialisable
part that answers requests (the kernel backend's per-node server reads it from a file).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from netsim.dataplane.proxy_metrics import KubeProxyMetrics

METRICS_PORT = 10249
HEALTHZ_PORT = 10256
HEALTH_TIMEOUT_SECONDS = 60.0          # NewProxierHealthServer(addr, 2*config.SyncPeriod) with syncPeriod 30s
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def go_time(wall_ns: int, mono_ns: int) -> str:
    """Go's time.Time.String() of a clock.Now() value: "2006-01-02 15:04:05.999999999 -0700 MST m=+0.000000001"."""
    secs, frac = divmod(wall_ns, 1_000_000_000)
    t = time.gmtime(secs)
    text = time.strftime("%Y-%m-%d %H:%M:%S", t)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    m_s, m_frac = divmod(abs(mono_ns), 1_000_000_000)
    return f"{text} +0000 UTC m={'-' if mono_ns < 0 else '+'}{m_s}.{m_frac:09d}"


@dataclass
class ProxyStatus:
    """What the two ports answer from (JSON-serialisable)."""
    mode: str
    metrics: KubeProxyMetrics
    start_wall_ns: int = field(default_factory=time.time_ns)
    start_mono_ns: int = field(default_factory=time.monotonic_ns)
    last_updated_ns: Optional[int] = None
    oldest_pending_ns: Optional[int] = None          # wall clock of the oldest queued, unsynced change
    node_eligible: bool = True

    # ------------------------------------------------------------------ health
    def _now(self) -> tuple[int, int]:
        return time.time_ns(), time.monotonic_ns() - self.start_mono_ns

    def healthy(self, now_ns: Optional[int] = None) -> bool:
        now = now_ns if now_ns is not None else time.time_ns()
        if self.oldest_pending_ns is None:
            return True
        return (now - self.oldest_pending_ns) / 1e9 < HEALTH_TIMEOUT_SECONDS

    def _health_body(self, with_node: bool) -> tuple[int, dict]:
        now, mono = self._now()
        healthy = self.healthy(now) and (self.node_eligible or not with_node)
        current = go_time(now, mono)
        if healthy:
            last = current
        elif self.last_updated_ns is None:
            last = "0001-01-01 00:00:00 +0000 UTC"               # Go's zero time.Time
        else:
            last = go_time(self.last_updated_ns, self.last_updated_ns - self.start_wall_ns)
        code = 200 if healthy else 503
        self.metrics.inc("proxy_healthz_total" if with_node else "proxy_livez_total", 1.0, str(code))
        body = f'{{"lastUpdated": {json.dumps(last)},"currentTime": {json.dumps(current)}'
        body += f', "nodeEligible": {str(self.node_eligible).lower()}}}' if with_node else "}"
        return code, {"body": body}

    # ------------------------------------------------------------------ HTTP
    def answer(self, port: int, path: str) -> tuple[int, str, str]:
        """(status, Content-Type, body) of ``GET path`` on ``port`` (10249 or 10256)."""
        path = path.split("?", 1)[0]
        if port == METRICS_PORT:
            if path == "/proxyMode":
                return 200, "text/plain; charset=utf-8", self.mode
            if path == "/metrics":
                return 200, PROMETHEUS_TEXT, self.metrics.exposition()
            if path == "/healthz":
                return 200, "text/plain; charset=utf-8", "ok"
        elif port == HEALTHZ_PORT and path in ("/healthz", "/livez"):
            code, d = self._health_body(with_node=path == "/healthz")
            return code, "application/json", d["body"]
        else:
            raise ValueError(f"kube-proxy listens on {METRICS_PORT} and {HEALTHZ_PORT}, not {port}")
        return 404, "text/plain; charset=utf-8", "404 page not found\n"

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"mode": self.mode, "metrics": self.metrics.to_dict(), "start_wall_ns": self.start_wall_ns,
                "start_mono_ns": self.start_mono_ns, "last_updated_ns": self.last_updated_ns,
                "oldest_pending_ns": self.oldest_pending_ns, "node_eligible": self.node_eligible}

    @classmethod
    def from_dict(cls, d: dict) -> "ProxyStatus":
        return cls(d["mode"], KubeProxyMetrics.from_dict(d["metrics"]), d["start_wall_ns"], d["start_mono_ns"],
                   d.get("last_updated_ns"), d.get("oldest_pending_ns"), d.get("node_eligible", True))


def port_for(path: str, port: Optional[int] = None) -> int:
    """The port a path is usually asked on: /livez and /healthz → 10256, everything else → 10249."""
    if port is not None:
        return port
    return HEALTHZ_PORT if path.split("?", 1)[0] in ("/healthz", "/livez") else METRICS_PORT


Restore = Callable[[Any], None]          # one sync's netsim.rules.provider.SyncResult -> loads it (kernel backend)


class KubeProxyNode:
    """kube-proxy on one node of a cluster model: watches it, syncs its proxier, keeps its metrics."""

    def __init__(self, cluster: Any, node: str, mode: Optional[str] = None, *, partial_syncs: bool = True,
                 restore: Optional[Restore] = None, status: Optional[ProxyStatus] = None,
                 initial_list: bool = True) -> None:
        from netsim.rules import registry
        self.cluster = cluster
        self.node = node
        self.mode = mode or cluster.config.proxy_mode
        provider = registry.get(self.mode)
        if not provider.kube_proxy:
            raise registry.ProxyModeError(f"kube-proxy mode {self.mode!r}: expected "
                                          f"{' or '.join(registry.available_modes(kube_proxy_only=True))}")
        if cluster.node(node) is None:
            names = ", ".join(n.name for n in cluster.nodes()) or "none"
            raise LookupError(f"node {node!r} not found (nodes: {names})")
        self.partial_syncs = partial_syncs
        self.restore = restore
        self.status = status or ProxyStatus(self.mode, KubeProxyMetrics(self.mode))
        self._tracker_start_ns = time.time_ns()
        self._pending_services: set[str] = set()
        self._pending_slices: dict[str, tuple[str, int]] = {}     # slice key -> (ns/service, trigger time)
        self.proxier = provider.proxier(cluster, node, partial_syncs=partial_syncs)
        # the informers' initial list: every object arrives as an add (not again for a continued status)
        if initial_list:
            for svc in cluster.services():
                self._queue_service(f"{svc.namespace}/{svc.name}", initial=True)
            for s in cluster.endpoint_slices():
                self._queue_slice(s, initial=True)
        cluster.watch(self._on_event)

    # ------------------------------------------------------------------ change tracking
    def _queue_service(self, key: str, initial: bool = False) -> None:
        m = self.status.metrics
        m.inc("sync_proxy_rules_service_changes_total")            # ServiceChangeTracker.Update
        self._pending_services.add(key)
        m.set("sync_proxy_rules_service_changes_pending", len(self._pending_services))
        self._queued()

    def _queue_slice(self, s: Any, initial: bool = False) -> None:
        m = self.status.metrics
        m.inc("sync_proxy_rules_endpoint_changes_total")           # EndpointsChangeTracker.EndpointSliceUpdate
        # trigger times older than the tracker's start are ignored (EndpointsChangeTracker.trackerStartTime)
        trigger = 0 if initial else time.time_ns()
        self._pending_slices[s.key] = (f"{s.namespace}/{s.service_name}", trigger)
        m.set("sync_proxy_rules_endpoint_changes_pending", len(self._pending_slices))
        self._queued()

    def _queued(self) -> None:
        now = time.time_ns()
        self.status.metrics.set("sync_proxy_rules_last_queued_timestamp_seconds", now / 1e9)
        if self.status.oldest_pending_ns is None:                   # QueuedUpdate: only if zero
            self.status.oldest_pending_ns = now

    def _on_event(self, ev: Any) -> None:
        if ev.kind == "Service":
            self._queue_service(f"{ev.obj.namespace}/{ev.obj.name}")
        elif ev.kind == "EndpointSlice":
            self._queue_slice(ev.obj)
        elif ev.kind == "Node" and ev.obj.name == self.node:
            taints = getattr(ev.obj, "taints", None) or []
            deleted = ev.type == "DELETED"
            self.status.node_eligible = not deleted and not any(
                getattr(t, "key", None) == TO_BE_DELETED_TAINT for t in taints)

    @property
    def pending(self) -> bool:
        return bool(self._pending_services or self._pending_slices)

    # ------------------------------------------------------------------ sync
    def sync(self) -> float:
        """One syncProxyRules pass; returns its duration in seconds."""
        from netsim.rules.iptables.proxier_cluster import endpoints_for_node, service_port_infos
        m = self.status.metrics
        ports = service_port_infos(self.cluster)
        eps = endpoints_for_node(self.cluster, ports, self.node)
        changed = set(self._pending_services) | {svc for svc, _ in self._pending_slices.values()}
        result = self.proxier.sync(changed)
        t0 = time.perf_counter()
        if self.restore is not None:
            self.restore(result)
        duration = result.seconds + time.perf_counter() - t0
        histogram = "sync_full_proxy_rules_duration_seconds" if result.full else "sync_partial_proxy_rules_duration_seconds"
        if m.has(histogram):
            m.observe(histogram, duration)
        for name, value, label in result.gauges:
            m.set(name, value, *((label,) if label is not None else ()))
        m.observe("sync_proxy_rules_duration_seconds", duration)
        end = time.time_ns()
        for _, trigger in self._pending_slices.values():
            if trigger and trigger >= self._tracker_start_ns:
                m.observe("network_programming_duration_seconds", (end - trigger) / 1e9)
        self._no_local_endpoints(ports, eps)
        self._pending_services.clear()
        self._pending_slices.clear()
        m.set("sync_proxy_rules_service_changes_pending", 0)
        m.set("sync_proxy_rules_endpoint_changes_pending", 0)
        m.set("sync_proxy_rules_last_timestamp_seconds", end / 1e9)
        self.status.last_updated_ns = end                          # Updated()
        self.status.oldest_pending_ns = None
        return duration

    def _no_local_endpoints(self, ports: list, eps: dict) -> None:
        """sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"|"external"}."""
        from netsim.rules.iptables.proxier_endpoints import categorize_endpoints
        from netsim.rules.iptables.proxier_sync import endpoints_key
        internal = external = 0
        for svc in ports:
            cat = categorize_endpoints(eps.get(endpoints_key(svc), []), svc)
            if not cat.has_any_endpoints:
                continue
            if svc.internal_policy_local and not cat.local:
                internal += 1
            if svc.external_policy_local and svc.externally_accessible() and not cat.local:
                external += 1
        self.status.metrics.set("sync_proxy_rules_no_local_endpoints_total", internal, "internal")
        self.status.metrics.set("sync_proxy_rules_no_local_endpoints_total", external, "external")

    def answer(self, port: int, path: str) -> tuple[int, str, str]:
        return self.status.answer(port, path)
