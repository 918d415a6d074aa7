"""kube-proxy's nftables proxier for one node of a netsim cluster: its table as ``nft -f`` text.

The cluster is read exactly as the iptables proxier reads it (netsim.rules.iptables.proxier_cluster:
the service ports, each port's endpoints on this node); the node's settings are those of a real
kube-proxy in nftables mode (``--nodeport-addresses primary``, detect-local by cluster CIDR,
``--masquerade-all`` and the masquerade bit from the Cluster document, the Service CIDR for the
"unallocated ClusterIP" drop rule).

* :func:`render` - the table after kube-proxy's first full sync, in an order one ``nft -f`` batch
  loads into an empty namespace (what ``netsim rules --mode nftables`` prints);
* :func:`first_sync_transaction` - the transaction kube-proxy itself sends on that sync
  (``add``/``flush``/``delete`` operations in its own order; also loadable as is).
"""
from __future__ import annotations

from typing import Any, Optional

from netsim.rules.iptables.proxier_cluster import endpoints_for_node, proxier_config_for_node, service_port_infos
from netsim.rules.nftables.config import DEFAULT_RELEASE, NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier
from netsim.rules.nftables.transaction import Transaction

__all__ = ["NFTablesConfig", "NFTablesProxier", "config_for_node", "proxier_for_node", "render",
           "first_sync_transaction"]


def config_for_node(cluster: Any, node_name: str, release: Optional[str] = None, **overrides: Any) -> NFTablesConfig:
    """A real node's kube-proxy settings in nftables mode: those the iptables proxier reads
    (proxier_config_for_node: node IP, detect-local by cluster CIDR, masquerade mark), plus the
    Service CIDR and the release; NodePorts on the primary node IP only."""
    base = proxier_config_for_node(cluster, node_name)
    service_cidr = cluster.config.service_cidr
    values: dict[str, Any] = dict(
        node_name=base.node_name, node_ip=base.node_ip, local_detector=base.local_detector,
        masquerade_all=base.masquerade_all, masquerade_mark=base.masquerade_mark, node_ips=base.node_ips,
        service_cidrs=[service_cidr] if service_cidr else [], release=release or DEFAULT_RELEASE,
    )
    values.update(overrides)
    return NFTablesConfig(**values)


def proxier_for_node(cluster: Any, node_name: str, config: Optional[NFTablesConfig] = None) -> NFTablesProxier:
    """A proxier for ``node_name`` after its first full sync."""
    fp = NFTablesProxier(config or config_for_node(cluster, node_name))
    ports = service_port_infos(cluster)
    fp.sync(ports, endpoints_for_node(cluster, ports, fp.config.node_name))
    return fp


def render(cluster: Any, node_name: str, config: Optional[NFTablesConfig] = None) -> str:
    """The node's ``ip kube-proxy`` table as ``nft -f`` input (table, chains, sets, maps, rules, elements)."""
    return proxier_for_node(cluster, node_name, config).state.dump()


def first_sync_transaction(cluster: Any, node_name: str, config: Optional[NFTablesConfig] = None) -> Transaction:
    """What kube-proxy hands to ``nft -f -`` on its first sync of ``node_name``."""
    tx = proxier_for_node(cluster, node_name, config).last_sync
    assert tx is not None
    return tx
