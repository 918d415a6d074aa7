"""What kube-proxy on one node sees of the cluster: service ports, their endpoints, its own settings.

Follows kube-proxy's ServiceChangeTracker / EndpointSliceCache (pkg/proxy/serviceport.go,
endpointslicecache.go) and apiservice helpers:

* Services with no ClusterIP (headless ``None``, empty) and ExternalName are skipped.
* ``externalTrafficPolicy: Local`` counts only for externally-accessible Services
  (type NodePort / LoadBalancer, or externalIPs); the health-check nodePort only for
  type LoadBalancer with eTP Local (apiservice.NeedsHealthCheck).
* Load-balancer ingress IPs and source ranges only for type LoadBalancer.
* An endpoint is its first address; it is local when its nodeName is this node; endpoints
  are matched to a service port by port name and protocol.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from netsim.rules.iptables.proxier_inputs import (
    EndpointInfo,
    LocalTrafficDetector,
    ProxierConfig,
    ProxierInputError,
    ServicePortInfo,
)
from netsim.rules.iptables.proxier_sync import endpoints_key


def proxier_config_for_node(cluster: Any, node_name: str, **overrides: Any) -> ProxierConfig:
    """A real node's kube-proxy settings: ClusterCIDR detector, mark from masqueradeBit, node IP."""
    node = cluster.node(node_name)
    if node is None:
        names = ", ".join(n.name for n in cluster.nodes()) or "none"
        raise ProxierInputError(f"node {node_name!r} not found (nodes: {names})")
    cfg = cluster.config
    values: dict[str, Any] = dict(
        node_name=node.name,
        node_ip=node.ip,
        local_detector=LocalTrafficDetector.by_cidr(cfg.cluster_cidr) if cfg.cluster_cidr else None,
        masquerade_all=cfg.masquerade_all,
        masquerade_mark=ProxierConfig.mark_for_bit(cfg.masquerade_bit),
        node_ips=["127.0.0.1", node.ip],
    )
    values.update(overrides)
    return ProxierConfig(**values)


def _externally_accessible_type(svc: Any) -> bool:
    return svc.type in ("NodePort", "LoadBalancer") or bool(svc.external_ips)


def service_port_infos(cluster: Any) -> list[ServicePortInfo]:
    """Every proxied service port in the cluster."""
    result: list[ServicePortInfo] = []
    for svc in cluster.services():
        if svc.type == "ExternalName" or svc.cluster_ip in (None, "", "None"):
            continue
        is_lb = svc.type == "LoadBalancer"
        node_ports = svc.type in ("NodePort", "LoadBalancer")
        etp_local = _externally_accessible_type(svc) and svc.external_traffic_policy == "Local"
        for p in svc.ports:
            result.append(ServicePortInfo(
                namespace=svc.namespace,
                name=svc.name,
                cluster_ip=svc.cluster_ip,
                port=p.port,
                protocol=p.protocol,
                port_name=p.name or "",
                node_port=(p.node_port or 0) if node_ports else 0,
                external_ips=list(svc.external_ips),
                load_balancer_vips=list(svc.load_balancer_ips) if is_lb else [],
                load_balancer_source_ranges=list(svc.load_balancer_source_ranges) if is_lb else [],
                session_affinity_client_ip=svc.session_affinity == "ClientIP",
                sticky_max_age_seconds=svc.affinity_timeout,
                external_policy_local=etp_local,
                internal_policy_local=svc.internal_traffic_policy == "Local",
                health_check_node_port=(svc.health_check_node_port or 0) if (is_lb and etp_local) else 0,
            ))
    return result


def endpoints_for_node(cluster: Any, ports: list[ServicePortInfo], node_name: str,
                       seen: Optional[dict] = None) -> dict[str, list[EndpointInfo]]:
    """The endpoints of each service port, as this node's EndpointSliceCache holds them. ``seen``
    (kept by the caller across the nodes of one unchanged cluster): each port's endpoints as read
    for another node, with the nodes they are on; for this node only those on it are made again
    (``is_local``), the others are the same objects."""
    result: dict[str, list[EndpointInfo]] = {}
    for svc in ports:
        key = endpoints_key(svc)
        if seen is None:
            result[key] = _endpoints_and_nodes(cluster, svc, node_name)[0]
            continue
        got = seen.get(key)
        if got is None:
            got = seen[key] = _endpoints_and_nodes(cluster, svc, None)
        eps, nodes = got
        if node_name in nodes:
            eps = [dataclasses.replace(ep, is_local=True) if n == node_name else ep for ep, n in zip(eps, nodes)]
        result[key] = eps
    return result


def _endpoints_and_nodes(cluster: Any, svc: ServicePortInfo,
                         node_name: Optional[str]) -> tuple[list[EndpointInfo], list[Optional[str]]]:
    """A port's endpoints (local: on ``node_name``), with the node each is on."""
    eps: list[EndpointInfo] = []
    nodes: list[Optional[str]] = []
    for eps_slice in cluster.endpoint_slices(namespace=svc.namespace, service=svc.name):
        if eps_slice.address_type != "IPv4":
            continue
        port = next((ep.port for ep in eps_slice.ports
                     if (ep.name or "") == svc.port_name and ep.protocol.upper() == svc.protocol), None)
        if port is None:
            continue
        for e in eps_slice.endpoints:
            if not e.addresses:
                continue
            eps.append(EndpointInfo(ip=e.addresses[0], port=port,
                                    is_local=node_name is not None and e.node_name == node_name,
                                    ready=e.ready, serving=e.serving, terminating=e.terminating))
            nodes.append(e.node_name)
    return eps, nodes


def node_sensitive_services(cluster: Any) -> tuple[frozenset[str], bool]:
    """What makes one node's rules differ from another's, cluster-wide: the Services (``ns/name``)
    whose text depends on which of their endpoints are on the node, and whether any rule reads
    the node's own IP.

    In syncProxyRules a node enters the text only through (a) the Local-policy chains (KUBE-SVL-*,
    their endpoints' KUBE-SEP-* chains and the "has no local endpoints" DROPs: categorize_endpoints'
    ``local`` list), (b) the deduplication of an ``IP:port`` that two slices list (sort_endpoints
    keeps the local copy), (c) a LoadBalancer firewall chain's "allow from node" rules (the node IP
    inside loadBalancerSourceRanges) and (d) the nodePortAddresses' node IPs (read from the
    ProxierConfig). The first three are per Service and rare; this finds them, conservatively."""
    sensitive: set[str] = set()
    node_ip = False
    for svc in cluster.services():
        if svc.internal_traffic_policy == "Local" or svc.external_traffic_policy == "Local":
            sensitive.add(f"{svc.namespace}/{svc.name}")
        if svc.type == "LoadBalancer" and svc.load_balancer_source_ranges:
            node_ip = True
    seen: dict[str, set[str]] = {}
    for s in cluster.endpoint_slices():
        key = f"{s.namespace}/{s.service_name}"
        if key in sensitive or s.address_type != "IPv4":
            continue
        addrs = seen.setdefault(key, set())
        for e in s.endpoints:
            if e.addresses:
                if e.addresses[0] in addrs:
                    sensitive.add(key)
                    break
                addrs.add(e.addresses[0])
    return frozenset(sensitive), node_ip


def node_rules_key(cluster: Any, node_name: str, sensitive: tuple[frozenset[str], bool]) -> tuple:
    """Two nodes with the same key get the same kube-proxy text (render(cluster, node) is equal):
    their ProxierConfig without the node's name (and without its addresses where no rule reads
    them), the addresses of their own endpoints of each node-sensitive Service
    (:func:`node_sensitive_services`), and, for a node running hostPort pods, the node itself
    (CNI portmap's chains name its sandboxes). Every ProxierConfig field counts, so a field added
    later makes nodes differ rather than share wrongly."""
    import dataclasses
    services, needs_node_ip = sensitive
    cfg = proxier_config_for_node(cluster, node_name)
    skip = {"node_name"}
    if not needs_node_ip:
        skip.add("node_ip")
    if cfg.node_port_addresses is None:
        skip.add("node_ips")
    key: list[Any] = [(f.name, repr(getattr(cfg, f.name))) for f in dataclasses.fields(cfg) if f.name not in skip]
    for svc in sorted(services):
        ns, _, name = svc.partition("/")
        local = sorted(e.addresses[0] for s in cluster.endpoint_slices(namespace=ns, service=name)
                       for e in s.endpoints if e.addresses and e.node_name == node_name)
        key.append((svc, tuple(local)))
    if any(p.node_name == node_name for p in cluster.host_port_pods()):
        key.append(("hostPorts", node_name))
    return tuple(key)
