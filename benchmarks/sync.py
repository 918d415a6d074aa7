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

:class:`SyncTexts` keeps the texts so the kernel scenario loads exactly what was measured here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from netsim.benchmarks.records import Record, counted, timed
from netsim.rules.iptables.proxier import node_view_text
from netsim.rules.iptables.proxier_inputs import EndpointInfo, LocalTrafficDetector, ProxierConfig, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key, sync_proxy_rules

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


def count_rules(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("-A "))


@dataclass
class SyncTexts:
    """What the kernel scenario loads: the full text(s) and the incremental change."""
    mode: str
    services: int
    endpoints: int
    iptables_full: str                       # iptables-restore input of a fresh node
    iptables_incremental: str                # what the next sync restores (with --noflush)
    ipset_full: str = ""                     # `ipset restore` input (IPVS mode)
    ipvs_full: str = ""                      # `ipvsadm -R` input (IPVS mode)
    ipvs_incremental_ops: list[str] = field(default_factory=list)   # ipvsadm commands of the change


def iptables_sync(n: int, e: int, repeats: int) -> tuple[list[Record], SyncTexts]:
    ports, eps, cfg = synthetic_inputs(n, e)
    times, data = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = sync_proxy_rules(ports, eps, cfg)
        full = node_view_text(data)
        times.append(time.perf_counter() - t0)
    assert data is not None
    new_eps, changed = add_one_endpoint(ports, eps, e)
    existing = [line[1:].split(" ", 1)[0] for line in data.nat_chains]
    ptimes, partial = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        partial = sync_proxy_rules(ports, new_eps, cfg, full_sync=False, changed_services=[changed],
                                   existing_nat_chains=existing).text()
        ptimes.append(time.perf_counter() - t0)
    assert partial is not None
    m = "iptables"
    recs = [
        timed(m, n, e, "render_seconds", times, "s", "emulator", sync="full"),
        timed(m, n, e, "render_seconds", ptimes, "s", "emulator", sync="partial"),
        counted(m, n, e, "ruleset_rules", count_rules(full), "rules", table="all"),
        counted(m, n, e, "ruleset_rules", len(data.nat_rules), "rules", table="nat"),
        counted(m, n, e, "ruleset_lines", full.count("\n"), "lines"),
        counted(m, n, e, "ruleset_bytes", len(full.encode()), "bytes"),
        counted(m, n, e, "ruleset_chains", len(data.nat_chains), "chains", table="nat"),
        counted(m, n, e, "incremental_restore_rules", count_rules(partial), "rules", change="add-one-endpoint"),
        counted(m, n, e, "incremental_restore_lines", partial.count("\n"), "lines", change="add-one-endpoint"),
        counted(m, n, e, "incremental_restore_bytes", len(partial.encode()), "bytes", change="add-one-endpoint"),
    ]
    return recs, SyncTexts(m, n, e, full, partial)


def ipvs_sync(n: int, e: int, repeats: int) -> tuple[list[Record], SyncTexts]:
    from netsim.rules.ipvs.proxier import KubeProxyIpvs, desired_state
    ports, eps, cfg = synthetic_inputs(n, e)
    times, kp, state = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        kp = KubeProxyIpvs(None, "node-1", config=cfg, node_addresses=[NODE_IP])
        state = kp.apply(desired_state(ports, eps, cfg, [NODE_IP]))
        times.append(time.perf_counter() - t0)
    assert kp is not None and state is not None
    full_save, ipset_text, ipt = state.ipvsadm_save(), state.ipset_save(), state.iptables
    vs = len(state.table)
    rs = sum(len(v.dests) for v in state.table)
    before = set(full_save.splitlines())
    new_eps, _ = add_one_endpoint(ports, eps, e)
    ptimes = []
    after_state = None
    for i in range(repeats):
        if i:                                          # re-apply the change on a node in the old state
            kp = KubeProxyIpvs(None, "node-1", config=cfg, node_addresses=[NODE_IP])
            kp.apply(desired_state(ports, eps, cfg, [NODE_IP]))
        t0 = time.perf_counter()
        after_state = kp.apply(desired_state(ports, new_eps, cfg, [NODE_IP]))
        ptimes.append(time.perf_counter() - t0)
    assert after_state is not None
    ops = [line for line in after_state.ipvsadm_save().splitlines() if line not in before]
    m = "ipvs"
    recs = [
        timed(m, n, e, "render_seconds", times, "s", "emulator", sync="full"),
        timed(m, n, e, "render_seconds", ptimes, "s", "emulator", sync="partial"),
        counted(m, n, e, "virtual_servers", vs, "virtual servers"),
        counted(m, n, e, "real_servers", rs, "real servers"),
        counted(m, n, e, "ipset_entries", sum(1 for line in ipset_text.splitlines() if line.startswith("add ")),
                "entries"),
        counted(m, n, e, "ruleset_rules", count_rules(ipt), "rules", table="all"),
        counted(m, n, e, "ruleset_lines", full_save.count("\n") + ipset_text.count("\n") + ipt.count("\n"), "lines"),
        counted(m, n, e, "ruleset_bytes", len((full_save + ipset_text + ipt).encode()), "bytes"),
        counted(m, n, e, "incremental_ipvs_operations", len(ops), "operations", change="add-one-endpoint"),
        counted(m, n, e, "incremental_restore_rules", count_rules(after_state.restore.text()), "rules",
                change="add-one-endpoint"),
        counted(m, n, e, "incremental_restore_bytes", len(after_state.restore.text().encode()), "bytes",
                change="add-one-endpoint"),
    ]
    texts = SyncTexts(m, n, e, ipt, after_state.restore.text(), ipset_text, full_save,
                      [f"ipvsadm {line}" for line in ops])
    return recs, texts


SYNCS = {"iptables": iptables_sync, "ipvs": ipvs_sync}


def sync_records(mode: str, n: int, e: int, repeats: int = 5) -> tuple[list[Record], Optional[SyncTexts]]:
    """The sync figures for one mode and size (and the texts the kernel scenario loads)."""
    return SYNCS[mode](n, e, repeats)
