"""Nodes without kube-proxy (mode ``none``): no rules anywhere, every built-in policy ACCEPT — a
Service's ClusterIP then leads nowhere, as on a cluster whose kube-proxy is not running."""
from __future__ import annotations

from typing import Any, Optional

from netsim.rules.provider import SyncResult


class NoRulesDataplane:
    """Every node's (empty) netfilter tables."""

    def __init__(self) -> None:
        from netsim.skb.hook_result import EmptyNetfilter
        self._empty = EmptyNetfilter()

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        return self._empty

    ipvs = None                       # no IPVS in this mode

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """Nothing registered: only the data plane's own conntrack and NAT hooks run."""
        from netsim.skb.netfilter import NodeHooks
        return NodeHooks()

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        return None

    def advance(self, now: float) -> None:
        return None

    def fork(self, rng: Any, memo: dict) -> "NoRulesDataplane":
        return self

    def rebind(self, cluster: Any) -> None:
        return None


class NoKubeProxy:
    """The ``none`` mode: emulated as nodes with no rules; there is no kube-proxy to sync or print."""

    name = "none"
    kube_proxy = False
    walks_packets = True
    notice = ""
    tool = ""
    iptables_only = False
    # no kube-proxy: nothing claimed
    pod_external_shortcut = False
    trace_actions: tuple[str, ...] = ()
    metric_families: tuple[Any, ...] = ()

    def _refuse(self, what: str) -> ValueError:
        from netsim.rules.registry import ProxyModeError
        return ProxyModeError(f"{what}: proxy mode none programs no rules (no kube-proxy runs)")

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> Any:
        raise self._refuse("kube-proxy")

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        raise self._refuse("rules")

    def dataplane(self, cluster: Any) -> NoRulesDataplane:
        return NoRulesDataplane()

    def kernel_support(self) -> Optional[str]:
        return None

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> Any:
        raise self._refuse("netsim bench")

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        raise self._refuse("netsim up")


PROVIDER = NoKubeProxy()
