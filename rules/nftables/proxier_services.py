"""The part of kube-proxy's nftables syncProxyRules that is written per service port.

Our own implementation of the service loop of kubernetes/kubernetes pkg/proxy/nftables/proxier.go
``syncProxyRules`` and ``writeServiceToEndpointRules``: map/set elements for the ClusterIP,
externalIPs, load-balancer VIPs and NodePort; the ``service-``/``local-`` (endpoint choice with one
``numgen random mod N vmap``), ``external-`` (masquerade and traffic-policy short-circuits),
``firewall-`` (loadBalancerSourceRanges) and ``endpoint-`` (hairpin masquerade, affinity, DNAT)
chains; ``affinity-`` sets for ClientIP session affinity; drop/reject verdicts for missing endpoints.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from netsim.rules.iptables.proxier_endpoints import CategorizedEndpoints
from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
from netsim.rules.nftables.chain_names import (
    CLUSTER_IPS_SET,
    COMMENT_LENGTH_MAX,
    HAIRPIN_CONNECTIONS_SET,
    FIREWALL_IPS_MAP,
    MARK_MASQ_CHAIN,
    NO_ENDPOINT_NODEPORTS_MAP,
    NO_ENDPOINT_SERVICES_MAP,
    REJECT_CHAIN,
    SERVICE_IPS_MAP,
    SERVICE_NODEPORTS_MAP,
    endpoint_names,
    service_chain_names,
)
from netsim.rules.nftables.config import ERA_GA, ERA_INLINE_MASQ, nft_local_fragments
from netsim.rules.nftables.transaction import Element, Rule, Set, Transaction, concat

if TYPE_CHECKING:
    from netsim.rules.nftables.proxier_sync import NFTablesProxier


def write_service_port(proxier: "NFTablesProxier", tx: Transaction, svc: ServicePortInfo,
                       cat: CategorizedEndpoints, skip_update: bool,
                       active_chains: set[str], active_affinity: set[str]) -> None:
    cfg = proxier.config
    ip_x, addr_type = cfg.ip_x, cfg.addr_type
    if_local, if_not_local = nft_local_fragments(cfg.local_detector, cfg.ipv6)
    proto = svc.proto
    port = str(svc.port)
    inline = cfg.era == ERA_INLINE_MASQ
    # 1.36 truncates element comments to knftables.CommentLengthMax (truncateNFTablesComment)
    comment = svc.name_string[:COMMENT_LENGTH_MAX] if inline else svc.name_string
    names = service_chain_names(svc)
    st = proxier.storages
    affinity = svc.session_affinity_client_ip
    masq = f"mark set mark or {cfg.masquerade_mark}" if inline else f"jump {MARK_MASQ_CHAIN}"

    def ensure(chain: str, skip: bool = False) -> None:
        proxier._ensure_chain(tx, chain, active_chains, skip_update or skip)

    existing = proxier.existing_endpoint_chains

    def up_to_date(chain: str, affinity_set: str) -> bool:
        """An endpoint chain a 1.34 full sync leaves as the table holds it (see NFTablesProxier.sync)."""
        return existing is not None and chain in existing[0] and (affinity_set in existing[1]) == affinity

    ep_names = {ep.string: endpoint_names(svc, ep) for ep in cat.all_reachable}
    for ep in cat.all_reachable:
        chain, affinity_set = ep_names[ep.string]
        if affinity or not inline:        # 1.36: endpoint chains only for ClientIP affinity
            ensure(chain, up_to_date(chain, affinity_set))
        if affinity:
            active_affinity.add(affinity_set)
        if inline and ep.is_local:
            st[HAIRPIN_CONNECTIONS_SET].ensure(tx, Element(HAIRPIN_CONNECTIONS_SET, (ep.ip, ep.ip, proto, str(ep.port))))

    cluster_chain = names["cluster"]
    uses_cluster_chain = bool(cat.cluster) and svc.uses_cluster_endpoints()
    if uses_cluster_chain:
        ensure(cluster_chain)
    local_chain = names["local"]
    uses_local_chain = bool(cat.local) and svc.uses_local_endpoints()
    if uses_local_chain:
        ensure(local_chain)

    has_endpoints = cat.has_any_endpoints
    internal_chain, has_internal = cluster_chain, has_endpoints
    if svc.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(cat.local)
    external_policy_chain, has_external = cluster_chain, has_endpoints
    if svc.external_policy_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(cat.local)
    external_chain = names["external"]
    uses_external_chain = has_endpoints and svc.externally_accessible()
    if uses_external_chain:
        ensure(external_chain)

    internal_verdict = external_verdict = ""
    if not has_endpoints:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        if not has_internal:
            internal_verdict = "drop"
        if not has_external:
            external_verdict = "drop"

    def service_ip_elem(ip: str, verdict: str) -> Element:
        return Element(SERVICE_IPS_MAP, (ip, proto, port), (verdict,), is_map=True)

    def no_endpoint_elem(ip: str, verdict: str) -> Element:
        return Element(NO_ENDPOINT_SERVICES_MAP, (ip, proto, port), (verdict,), comment, is_map=True)

    # Capture the clusterIP.
    st[CLUSTER_IPS_SET].ensure(tx, Element(CLUSTER_IPS_SET, (svc.cluster_ip,)))
    if has_internal:
        st[SERVICE_IPS_MAP].ensure(tx, service_ip_elem(svc.cluster_ip, f"goto {internal_chain}"))
    else:
        st[NO_ENDPOINT_SERVICES_MAP].ensure(tx, no_endpoint_elem(svc.cluster_ip, internal_verdict))

    # Capture externalIPs.
    for ip in svc.external_ips:
        if has_endpoints:
            st[SERVICE_IPS_MAP].ensure(tx, service_ip_elem(ip, f"goto {external_chain}"))
        if not has_external:
            st[NO_ENDPOINT_SERVICES_MAP].ensure(tx, no_endpoint_elem(ip, external_verdict))

    uses_fw_chain = bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    fw_chain = names["firewall"]
    if uses_fw_chain:
        ensure(fw_chain)

    # Capture load-balancer ingress.
    for ip in svc.load_balancer_vips:
        if has_endpoints:
            st[SERVICE_IPS_MAP].ensure(tx, service_ip_elem(ip, f"goto {external_chain}"))
        if uses_fw_chain:
            st[FIREWALL_IPS_MAP].ensure(tx, Element(FIREWALL_IPS_MAP, (ip, proto, port), (f"goto {fw_chain}",),
                                                    is_map=True))
    if not has_external:
        for ip in svc.load_balancer_vips:
            st[NO_ENDPOINT_SERVICES_MAP].ensure(tx, no_endpoint_elem(ip, external_verdict))

    # Capture nodeports ("for better or for worse, nodeports are not subject to
    # loadBalancerSourceRanges, and we can't change that").
    if svc.node_port:
        if has_endpoints:
            st[SERVICE_NODEPORTS_MAP].ensure(tx, Element(SERVICE_NODEPORTS_MAP, (proto, str(svc.node_port)),
                                                         (f"goto {external_chain}",), is_map=True))
        if not has_external:
            st[NO_ENDPOINT_NODEPORTS_MAP].ensure(tx, Element(NO_ENDPOINT_NODEPORTS_MAP, (proto, str(svc.node_port)),
                                                             (external_verdict,), comment, is_map=True))

    if skip_update:
        return

    # Internal traffic: masquerade off-cluster clients of the ClusterIP (or everyone); 1.36 does
    # this once for all ClusterIPs in the services chain.
    if has_internal and not inline:
        dport = (proto, "dport", port) if cfg.era == ERA_GA else ()
        if cfg.masquerade_all:
            tx.add(Rule(internal_chain, concat(ip_x, "daddr", svc.cluster_ip, dport, "jump", MARK_MASQ_CHAIN)))
        elif if_not_local:
            tx.add(Rule(internal_chain, concat(ip_x, "daddr", svc.cluster_ip, dport, if_not_local,
                                               "jump", MARK_MASQ_CHAIN)))

    # External traffic.
    if uses_external_chain:
        if not svc.external_policy_local:
            tx.add(Rule(external_chain, masq, comment="masquerade" if inline else None))
        else:
            if if_local:
                tx.add(Rule(external_chain, concat(if_local, "goto", cluster_chain),
                            comment="short-circuit pod traffic"))
            tx.add(Rule(external_chain, concat("fib", "saddr", "type", "local", masq),
                        comment="masquerade local traffic"))
            tx.add(Rule(external_chain, concat("fib", "saddr", "type", "local", "goto", cluster_chain),
                        comment="short-circuit local traffic"))
        if has_external:
            tx.add(Rule(external_chain, concat("goto", external_policy_chain)))

    if uses_fw_chain:
        sources: list[str] = []
        allow_from_node = False
        for cidr in svc.load_balancer_source_ranges:
            if sources:
                sources.append(",")
            sources.append(cidr)
            if cfg.node_ip and ipaddress.ip_address(cfg.node_ip) in ipaddress.ip_network(cidr):
                allow_from_node = True
        if allow_from_node:
            for ip in svc.load_balancer_vips:
                sources += [",", ip]
        tx.add(Rule(fw_chain, concat(ip_x, "saddr", "!=", "{", sources, "}", "drop")))

    if affinity:
        for ep in cat.all_reachable:
            tx.add(Set(ep_names[ep.string][1], addr_type, ("dynamic", "timeout"),
                       svc.sticky_max_age_seconds))

    write = _write_service_to_endpoint_dnats if inline and not affinity else _write_service_to_endpoint_rules
    if uses_cluster_chain:
        write(tx, svc, cluster_chain, cat.cluster, ip_x, ep_names)
    if uses_local_chain:
        write(tx, svc, local_chain, cat.local, ip_x, ep_names)
    if inline and not affinity:
        return

    for ep in cat.all_reachable:
        ep_string = ep.string
        chain, affinity_set = ep_names[ep_string]
        if up_to_date(chain, affinity_set):
            continue
        if not inline:
            # Hairpin: a pod reaching itself through the service is masqueraded (1.36: the
            # hairpin-connections set in the masquerading chain instead).
            tx.add(Rule(chain, concat(ip_x, "saddr", ep.ip, "jump", MARK_MASQ_CHAIN)))
        if affinity:
            tx.add(Rule(chain, concat("update", "@", affinity_set, "{", ip_x, "saddr", "}")))
        tx.add(Rule(chain, concat("meta l4proto", proto, "dnat to", ep_string)))


def _write_service_to_endpoint_rules(tx: Transaction, svc: ServicePortInfo, chain: str,
                                     endpoints: list[EndpointInfo], ip_x: str,
                                     ep_names: dict[str, tuple[str, str]]) -> None:
    if svc.session_affinity_client_ip:
        for ep in endpoints:
            ep_chain, affinity_set = ep_names[ep.string]
            tx.add(Rule(chain, concat(ip_x, "saddr", "@", affinity_set, "goto", ep_chain)))
    elements: list[str] = []
    for i, ep in enumerate(endpoints):
        elements += [str(i), ":", "goto", ep_names[ep.string][0]]
        if i != len(endpoints) - 1:
            elements.append(",")
    tx.add(Rule(chain, concat("numgen random mod", len(endpoints), "vmap", "{", elements, "}")))


def _write_service_to_endpoint_dnats(tx: Transaction, svc: ServicePortInfo, chain: str,
                                     endpoints: list[EndpointInfo], ip_x: str,
                                     ep_names: dict[str, tuple[str, str]]) -> None:
    """1.36 writeServiceToEndpointDNATs: one DNAT through a numgen-indexed map of ``IP . port``."""
    elements: list[str] = []
    for i, ep in enumerate(endpoints):
        elements += [str(i), ":", ep.ip, ".", str(ep.port)]
        if i != len(endpoints) - 1:
            elements.append(",")
    tx.add(Rule(chain, concat("meta l4proto", svc.proto, "dnat", ip_x, "addr . port to",
                              "numgen random mod", len(endpoints), "map", "{", elements, "}")))
