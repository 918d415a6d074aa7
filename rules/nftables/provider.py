"""kube-proxy's nftables mode as a provider (:mod:`netsim.rules.provider`).

Rendered today: the node's ``ip kube-proxy`` table as ``nft -f`` input, or the transaction
kube-proxy sends on its first sync (netsim.rules.nftables.proxier). Packets through the table,
kube-proxy's status syncs and the kernel backend are refused in one line until the nftables
engine's hook functions are registered here (issue 15 §2).
"""
from __future__ import annotations

from typing import Any, Optional

from netsim.rules.provider import SyncResult

NOT_YET = ("proxy mode nftables: not emulated yet (packets through kube-proxy's nftables table; "
           "`netsim rules` prints it); use --mode iptables or --mode ipvs")


def _refuse() -> ValueError:
    from netsim.rules.registry import ProxyModeError
    return ProxyModeError(NOT_YET)


class NftablesProvider:
    """The nftables mode (see the module docstring)."""

    name = "nftables"
    kube_proxy = True
    walks_packets = False
    notice = ("proxyMode nftables: `netsim rules` prints kube-proxy's nftables table; packets are "
              "not emulated yet: `trace` and `up` need --mode iptables or --mode ipvs")
    tool = "nft list ruleset"
    iptables_only = False
    trace_actions: tuple[str, ...] = ()

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
        raise _refuse()

    def kernel_support(self) -> Optional[str]:
        return "proxy mode nftables: the kernel backend loads iptables and ipvs rules only"

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> Any:
        raise _refuse()

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        raise _refuse()


PROVIDER = NftablesProvider()
