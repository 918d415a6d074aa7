"""`netsim bench`'s sync stage for nftables mode (rules.provider.SyncMeasurement): kube-proxy's
first full sync of a synthetic node, timed, and the partial sync after one endpoint joined a
Service (pkg/proxy/nftables/proxier.go syncProxyRules: only the changed Service's chains are
rewritten, map elements diffed); the kernel stage loads each with `nft -f` (one transaction)."""
from __future__ import annotations

import time
from typing import Any

from netsim.rules.provider import KernelLoad, SyncMeasurement


def nft_config(config: Any) -> Any:
    """The nftables proxier's settings for the node an iptables ProxierConfig describes."""
    from netsim.rules.nftables.config import NFTablesConfig
    return NFTablesConfig(node_name=config.node_name, node_ip=config.node_ip, local_detector=config.local_detector,
                          masquerade_all=config.masquerade_all, masquerade_mark=config.masquerade_mark)


def measure_sync(ports: list, endpoints: dict, config: Any, changed_endpoints: dict, changed_service: str,
                 repeats: int) -> SyncMeasurement:
    from netsim.rules.nftables.proxier_sync import NFTablesProxier
    cfg = nft_config(config)
    times, fp, full = [], None, ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        fp = NFTablesProxier(cfg)
        full = fp.sync(ports, endpoints).text()
        times.append(time.perf_counter() - t0)
    assert fp is not None
    table = fp.state.dump()
    ptimes, partial = [], ""
    for i in range(repeats):
        if i:                                          # the change again, on a node in the old state
            fp = NFTablesProxier(cfg)
            fp.sync(ports, endpoints)
        t0 = time.perf_counter()
        partial = fp.sync(ports, changed_endpoints, changed_services=[changed_service]).text()
        ptimes.append(time.perf_counter() - t0)
    change = {"change": "add-one-endpoint"}

    def rules(text: str) -> int:
        return sum(1 for line in text.splitlines() if line.startswith("add rule "))

    counts = [
        ("ruleset_rules", rules(table), "rules", {"table": "all"}),
        ("ruleset_lines", table.count("\n"), "lines", {}),
        ("ruleset_bytes", len(table.encode()), "bytes", {}),
        ("ruleset_chains", sum(1 for line in table.splitlines() if line.startswith("add chain ")), "chains", {}),
        ("ruleset_elements", sum(1 for line in table.splitlines() if line.startswith("add element ")), "elements", {}),
        ("incremental_restore_rules", rules(partial), "rules", change),
        ("incremental_restore_lines", partial.count("\n"), "lines", change),
        ("incremental_restore_bytes", len(partial.encode()), "bytes", change),
    ]
    # in one namespace, in order: the first sync, then the partial one on top of it
    loads = [KernelLoad("nft -f", [(["nft", "-f", "-"], full)]),
             KernelLoad("nft -f", [(["nft", "-f", "-"], partial)], change="add-one-endpoint")]
    return SyncMeasurement(times, ptimes, counts, loads)
