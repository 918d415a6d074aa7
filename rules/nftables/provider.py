"""kube-proxy's nftables mode as a provider (:mod:`netsim.rules.provider`).

Rendered: the node's ``ip kube-proxy`` table as ``nft -f`` input, or the transaction kube-proxy
sends on its first sync (netsim.rules.nftables.proxier). Packets go through each node's table with
the nftables engine (netsim.rules.nftables.dataplane). kube-proxy's status syncs and the kernel
backend are refused in one line (not emulated yet).
"""
from __future__ import annotations

from typing import Any, Optional

from netsim.rules.provider import SyncResult

NOT_YET = ("proxy mode nftables: not emulated yet (kube-proxy's syncs and the kernel backend; `netsim rules` "
           "and `netsim trace` work); use --mode iptables or --mode ipvs")


def _refuse() -> ValueError:
    from netsim.rules.registry import ProxyModeError
    return ProxyModeError(NOT_YET)


class NftablesProvider:
    """The nftables mode (see the module docstring)."""

    name = "nftables"
    kube_proxy = True
    walks_packets = True
    notice = ""
    tool = "nft list ruleset"
    iptables_only = False
    trace_actions = ("RULE",)         # `nft monitor trace` rule lines (netsim.rules.nftables.dataplane)

    @property
    def metric_families(self) -> tuple[Any, ...]:
        from netsim.dataplane.proxy_metrics import NFTABLES
        return NFTABLES

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> Any:
        raise _refuse()

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
        return "proxy mode nftables: the kernel backend loads iptables and ipvs rules only"

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> Any:
        from netsim.rules.nftables.measure import measure_sync
        return measure_sync(ports, endpoints, config, changed_endpoints, changed_service, repeats)

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        raise _refuse()


PROVIDER = NftablesProvider()
