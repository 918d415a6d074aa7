"""The sync scenario: what one kube-proxy sync writes at N Services × E endpoints, per mode.

For each mode the proxier runs on synthetic inputs of kube-proxy's own shape (one TCP port per
Service, E endpoints each, the first one local), the way ``TestNumberIptablesRules``
(kubernetes/kubernetes pkg/proxy/iptables/number_generated_rules_test.go) drives the proxier:

* ``render_seconds`` (emulator): full sync render time (iptables: ``syncProxyRules`` + the node's
  text; IPVS: desired state + applying it to a fresh node – virtual servers, real servers, ipsets,
  its iptables text);
* rule-set size (model): iptables ``-A`` rules, lines, bytes, nat chains; IPVS virtual servers,
  real servers, ipset entries, iptables rules;
* incremental change (model): one endpoint added to the middle Service, then the sync kube-proxy
  does next – iptables: the partial restore of KEP-3453 "Minimizing iptables-restore input size"
  (https://github.com/kubernetes/enhancements/tree/master/keps/sig-network/3453-minimize-iptables-restore:
  only the changed Service's chains plus KUBE-SERVICES whole); IPVS: the real servers added and the
  iptables text it restores on every sync (pkg/proxy/ipvs/proxier.go syncProxyRules writes its
  whole iptables data each time).

:class:`netsim.rules.provider.SyncMeasurement` keeps the loads (texts and commands) so the kernel
scenario loads exactly what was measured here. Each mode's part lives in its provider
(``measure_sync`` in rules/<mode>/provider.py).
"""
from __future__ import annotations

from netsim.benchmarks.records import Record, counted, timed
from netsim.rules.iptables.proxier_inputs import EndpointInfo, LocalTrafficDetector, ProxierConfig, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.provider import SyncMeasurement

NODE_IP = "192.168.49.2"
NAMESPACE = "bench"


def _ip(base: int, i: int) -> str:
    return f"10.{base + i // 65536}.{(i // 256) % 256}.{i % 256}"


def synthetic_inputs(n_services: int, n_endpoints: int) -> tuple[list[ServicePortInfo], dict, ProxierConfig]:
    """N ClusterIP Services (10.96.0.0/12 onwards) × E endpoints (10.128.0.0/9, the first local)."""
    ports, eps = [], {}
    for i in range(n_services):
        svc = ServicePortInfo(NAMESPACE, f"svc-{i}", _ip(96, i), 80, port_name="http")
        ports.append(svc)
        eps[endpoints_key(svc)] = [EndpointInfo(_ip(128, i * n_endpoints + j), 8080, is_local=j == 0)
                                   for j in range(n_endpoints)]
    cfg = ProxierConfig(node_name="node-1", node_ip=NODE_IP,
                        local_detector=LocalTrafficDetector.by_cidr("10.128.0.0/9"))
    return ports, eps, cfg


def add_one_endpoint(ports: list[ServicePortInfo], eps: dict, n_endpoints: int) -> tuple[dict, str]:
    """The endpoints map after one endpoint joins the middle Service; returns it and ``ns/name``."""
    svc = ports[len(ports) // 2]
    new = dict(eps)
    new[endpoints_key(svc)] = list(eps[endpoints_key(svc)]) + [
        EndpointInfo(_ip(200, len(ports) // 2), 8080, is_local=False)]
    return new, f"{svc.namespace}/{svc.name}"


def sync_records(mode: str, n: int, e: int, repeats: int = 5) -> tuple[list[Record], SyncMeasurement]:
    """The sync figures for one mode and size (and the loads the kernel scenario times): the mode's
    provider (netsim.rules.registry) runs its proxier on the synthetic inputs."""
    from netsim.rules.registry import get
    ports, eps, cfg = synthetic_inputs(n, e)
    new_eps, changed = add_one_endpoint(ports, eps, e)
    m = get(mode).measure_sync(ports, eps, cfg, new_eps, changed, repeats)
    recs = [timed(mode, n, e, "render_seconds", m.full_seconds, "s", "emulator", sync="full"),
            timed(mode, n, e, "render_seconds", m.partial_seconds, "s", "emulator", sync="partial")]
    recs += [counted(mode, n, e, metric, value, unit, **labels) for metric, value, unit, labels in m.counts]
    return recs, m
