"""The kernel backend: the cluster realised in real network namespaces, with real rules and servers."""
from __future__ import annotations


def live_iptables_save(cluster_name: str, node: str) -> str:
    """`iptables-save -c` inside node `node` of the running kernel cluster `cluster_name`."""
    from netsim.rules.iptables.kernel import live_iptables_save as _save
    return _save(cluster_name, node)


__all__ = ["live_iptables_save"]
