"""kube-proxy's nftables mode as a provider (:mod:`netsim.rules.provider`).

Rendered: the node's ``ip kube-proxy`` table as ``nft -f`` input, or the transaction kube-proxy
sends on its first sync (netsim.rules.nftables.proxier). Packets go through each node's table with
the nftables engine (netsim.rules.nftables.dataplane). kube-proxy's syncs, full and partial
(pkg/proxy/nftables/proxier.go syncProxyRules), and the kernel backend: each sync's transaction
loaded with ``nft -f`` into the node's namespace, the stale-chain deletions of a second later in a
transaction of their own, as kube-proxy runs them.
"""
from __future__ import annotations

import shutil
import time
from typing import Any, Optional

from netsim.rules.provider import SyncResult

NOT_YET = ("proxy mode nftables: not emulated yet (kube-proxy's syncs and the kernel backend; `netsim rules` "
           "and `netsim trace` work); use --mode iptables or --mode ipvs")


def _refuse() -> ValueError:
    from netsim.rules.registry import ProxyModeError
    return ProxyModeError(NOT_YET)


class NftablesProxier:
    """kube-proxy's nftables proxier on one node over a netsim cluster: a full sync first, then
    partial syncs of the changed Services (``partial_syncs=False``: every sync full). The result's
    ``text`` is the transaction kube-proxy hands to ``nft -f``; ``state`` the proxier itself (its
    table model, and ``last_cleanup``: the stale-chain deletions run before that transaction)."""

    def __init__(self, cluster: Any, node: str, *, partial_syncs: bool = True,
                 release: Optional[str] = None) -> None:
        from netsim.rules.nftables.proxier import config_for_node
        from netsim.rules.nftables.proxier_sync import NFTablesProxier
        self.cluster = cluster
        self.node = node
        self.partial_syncs = partial_syncs
        self.proxier = NFTablesProxier(config_for_node(cluster, node, release=release))

    def sync(self, changed_services: set[str]) -> SyncResult:
        from netsim.rules.iptables.proxier_cluster import endpoints_for_node, service_port_infos
        fp = self.proxier
        if not self.partial_syncs:
            fp.need_full_sync = True
        full = fp.need_full_sync
        t0 = time.perf_counter()
        ports = service_port_infos(self.cluster)
        tx = fp.sync(ports, endpoints_for_node(self.cluster, ports, self.node),
                     changed_services=set(changed_services), now=time.monotonic())
        return SyncResult(tx.text(), full, fp, [], time.perf_counter() - t0)


class NftablesProvider:
    """The nftables mode (see the module docstring)."""

    name = "nftables"
    kube_proxy = True
    walks_packets = True
    notice = ""
    tool = "nft list ruleset"
    iptables_only = False
    # the external chain's "short-circuit pod traffic" rule goes to the cluster chain
    # (pkg/proxy/nftables/proxier.go syncProxyRules)
    pod_external_shortcut = True
    trace_actions = ("RULE",)         # `nft monitor trace` rule lines (netsim.rules.nftables.dataplane)

    @property
    def metric_families(self) -> tuple[Any, ...]:
        from netsim.rules.metrics import NFTABLES
        return NFTABLES

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> NftablesProxier:
        return NftablesProxier(cluster, node, partial_syncs=partial_syncs)

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        """The ``ip kube-proxy`` table as ``nft -f`` input (with ``restore_input`` the transaction
        kube-proxy sends on its first sync); ``release`` picks the kube-proxy ruleset
        (netsim.rules.nftables.config)."""
        from netsim.rules.nftables.proxier import config_for_node, proxier_for_node
        fp = proxier_for_node(cluster, node, config_for_node(cluster, node, release=release))
        return fp.last_sync.text() if restore_input else fp.state.dump()

    def dataplane(self, cluster: Any) -> Any:
        """Each node's table evaluated by the nftables engine (netsim.rules.nftables.dataplane)."""
        from netsim.rules.nftables.dataplane import NftDataplane
        return NftDataplane(cluster)

    def kernel_support(self) -> Optional[str]:
        if shutil.which("nft") is None:
            return "proxy mode nftables: `nft` (the nftables package) is not installed"
        return None

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> Any:
        from netsim.rules.nftables.measure import measure_sync
        return measure_sync(ports, endpoints, config, changed_endpoints, changed_service, repeats)

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        """``nft -f -`` inside the node's namespace: first the stale-chain deletions of this sync (if
        any), then its transaction, each atomic (kube-proxy's ``nftables.Run`` per transaction)."""
        from netsim.kernel import netns as kernel_netns
        from netsim.kernel.build import KernelBackendError
        cleanup = getattr(result.state, "last_cleanup", None)
        for text in ([cleanup.text()] if cleanup is not None else []) + [result.text]:
            if not text:
                continue
            proc = kernel_netns.run(netns, ["nft", "-f", "-"], input=text, check=False)
            if proc.returncode != 0:
                msg = " ".join((proc.stderr or proc.stdout).split())
                raise KernelBackendError(f"nft -f in {netns}: exit {proc.returncode}: {msg}")



PROVIDER = NftablesProvider()
