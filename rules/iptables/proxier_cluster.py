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

from typing import Any

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


def endpoints_for_node(cluster: Any, ports: list[ServicePortInfo], node_name: str) -> dict[str, list[EndpointInfo]]:
    """The endpoints of each service port, as this node's EndpointSliceCache holds them."""
    result: dict[str, list[EndpointInfo]] = {}
    for svc in ports:
        eps: list[EndpointInfo] = []
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
                eps.append(EndpointInfo(ip=e.addresses[0], port=port, is_local=e.node_name == node_name,
                                        ready=e.ready, serving=e.serving, terminating=e.terminating))
        result[endpoints_key(svc)] = eps
    return result
