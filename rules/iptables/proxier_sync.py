"""The iptables-restore input kube-proxy writes in one sync (``syncProxyRules``), from plain inputs.

Our own re-implementation of kubernetes/kubernetes pkg/proxy/iptables/proxier.go
``syncProxyRules`` + ``writeServiceToEndpointRules`` (v1.31–v1.33, nfacct/KUBE-FIREWALL era):
the same chains, rule order, argument order, comments and number formatting. The only
deliberate difference: kube-proxy visits services in Go map order (random); we visit them
sorted by service-port name and protocol so that the text is reproducible.
"""
from __future__ import annotations

import functools
import ipaddress
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from netsim.rules.iptables.chain_names import is_service_chain_name
from netsim.rules.iptables.proxier_endpoints import categorize_endpoints, sort_endpoints
from netsim.rules.iptables.proxier_inputs import (
    CT_STATE_INVALID_DROPPED_COUNTER,
    LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
    LOCALHOST_NODEPORT_ACCEPTED_COUNTER,
    EndpointInfo,
    ProxierConfig,
    ServicePortInfo,
)

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"

FILTER_TOP_LEVEL_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL)
NAT_TOP_LEVEL_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)

NODEPORTS_TAIL_COMMENT = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'


def compute_probability(n: int) -> str:
    """``fmt.Sprintf("%0.10f", 1.0/float64(n))`` (computeProbability)."""
    return f"{1.0 / n:.10f}"


def chain_line(chain: str) -> str:
    """utiliptables.MakeChainLine."""
    return f":{chain} - [0:0]"


def quoted(text: str) -> str:
    """kube-proxy quotes comments itself; single words go in bare."""
    return f'"{text}"'


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@dataclass
class RestoreData:
    """One ``iptables-restore`` input: chain lines then rules, per table, filter first (RestoreAll)."""
    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    active_nat_chains: set[str] = field(default_factory=set)
    large_cluster_mode: bool = False
    # with a BlockCache: the nat chain lines and rules but those of the shared Service ports' own
    # chains (their rules in the top-level chains kept), i.e. what this node does not share
    own_nat_chains: Optional[list[str]] = None
    own_nat_rules: Optional[list[str]] = None

    def text(self) -> str:
        lines = ["*filter", *self.filter_chains, *self.filter_rules, "COMMIT",
                 "*nat", *self.nat_chains, *self.nat_rules, "COMMIT", ""]
        return "\n".join(lines)           # (ends with a newline: no second copy to add one)


@dataclass
class _Sink:
    chains: list[str]
    rules: list[str]


@dataclass
class BlockCache:
    """What one full sync writes per Service port, kept for other nodes' syncs.

    In syncProxyRules a node enters the text of a Service port only through its endpoints' locality
    (Local policies, the local copy a duplicate endpoint keeps) and the node IP (a LoadBalancer
    firewall chain's "allow from node" rules); every other Service port's lines — its rules in the
    top-level chains and its own chains — are the same on every node whose proxier settings match.
    ``key`` is those settings without the node's name and addresses (:func:`config_key`);
    ``node_specific`` the Services (``ns/name``) written afresh per node; ``blocks`` the lines of
    each other Service port, by (name string, protocol), as four slices (nat chains, nat rules,
    filter chains, filter rules) and the nat chains it makes active. A node-sensitive Service port
    that has no endpoint on the node is written alike on every such node (the "has no local
    endpoints" form of its Local policy), but for the firewall's "allow from node" rules: that form
    is kept too, by (name string, protocol, whether the node IP is inside a source range)
    (:meth:`block_key`); ``local`` maps each node to the node-sensitive Services with an endpoint
    there (:func:`local_services`). The text of a node using the cache is the text it would write
    without it."""
    key: tuple
    node_specific: frozenset[str]
    blocks: dict[tuple[str, str], tuple[list[str], list[str], list[str], list[str], tuple[str, ...], list[str]]] = \
        field(default_factory=dict)      # ... and (last) its nat rules in the top-level chains
    large_cluster_mode: Optional[bool] = None
    ports: Optional[list[ServicePortInfo]] = None      # the cluster's service ports (node-independent)
    local: Optional[dict[str, frozenset[str]]] = None   # node -> its node-sensitive Services with endpoints there
    endpoints: dict = field(default_factory=dict)       # proxier_cluster.endpoints_for_node's ``seen``

    def shared_chains(self) -> list[str]:
        """The nat chains of the kept Service ports (every node using the cache has them, the same;
        not a node-sensitive port's "no local endpoints" form, whose key has a third part)."""
        return [c for k, b in self.blocks.items() if len(k) == 2 for c in b[4]]

    def block_key(self, svc: ServicePortInfo, node: str, node_ip: Optional[str]) -> Optional[tuple]:
        """Under which key the port's lines are kept for ``node``'s sync; None: written for it alone
        (a node-sensitive Service with an endpoint on the node)."""
        sk = svc.service_key
        if sk not in self.node_specific:
            return svc.port_key
        if self.local is None or sk in self.local.get(node, ()):
            return None
        return (*svc.port_key, allows_from_node(svc, node_ip))

    def wants_endpoints(self, svc: ServicePortInfo, node: str, node_ip: Optional[str]) -> bool:
        """Whether a sync using the cache reads this port's endpoints (its block is not kept)."""
        if self.large_cluster_mode is None:
            return True
        key = self.block_key(svc, node, node_ip)
        return key is None or key not in self.blocks


def local_services(slices: Iterable[Any], services: frozenset[str]) -> dict[str, frozenset[str]]:
    """Per node, which of ``services`` (``ns/name``) have an endpoint there (an address on the node,
    EndpointSlice endpoints' nodeName: what makes an endpoint local to kube-proxy's
    EndpointSliceCache, pkg/proxy/endpointslicecache.go)."""
    out: dict[str, set[str]] = {}
    for s in slices:
        key = f"{s.namespace}/{s.service_name}"
        if key not in services:
            continue
        for e in s.endpoints:
            if e.addresses and e.node_name:
                out.setdefault(e.node_name, set()).add(key)
    return {n: frozenset(v) for n, v in out.items()}


@functools.lru_cache(maxsize=4096)
def _network(cidr: str) -> Any:
    return ipaddress.ip_network(cidr)


def allows_from_node(svc: ServicePortInfo, node_ip: Optional[str]) -> bool:
    """Whether the port's firewall chain allows the node itself (the node IP inside one of its
    loadBalancerSourceRanges: syncProxyRules' allowFromNode)."""
    if not (node_ip and svc.load_balancer_vips and svc.load_balancer_source_ranges):
        return False
    ip = ipaddress.ip_address(node_ip)
    return any(ip in _network(c) for c in svc.load_balancer_source_ranges)


def config_key(config: ProxierConfig) -> tuple:
    """The proxier settings a Service port's lines can depend on: every ProxierConfig field but the
    node's name and addresses (the node IP only reaches firewall chains, whose Services a
    BlockCache writes per node; the addresses only the KUBE-NODEPORTS tail). A field added to
    ProxierConfig later counts, so nodes differ rather than share wrongly."""
    import dataclasses
    return tuple((f.name, repr(getattr(config, f.name))) for f in dataclasses.fields(config)
                 if f.name not in ("node_name", "node_ip", "node_ips"))


def sync_proxy_rules(
    service_ports: Iterable[ServicePortInfo],
    endpoints: Mapping[str, list[EndpointInfo]],
    config: ProxierConfig,
    *,
    full_sync: bool = True,
    changed_services: Optional[Iterable[str]] = None,
    existing_nat_chains: Optional[Iterable[str]] = None,
    stale_chain_cleanup: bool = True,
    cache: Optional[BlockCache] = None,
) -> RestoreData:
    """Render one kube-proxy sync.

    ``endpoints`` maps a service port's key (:func:`endpoints_key`) to its endpoints.
    For a partial sync (``full_sync=False``) only services named in ``changed_services``
    (``ns/name``) get their SVC/SVL/EXT/FW/SEP chains written. ``existing_nat_chains`` are
    the chains ``iptables-save -t nat`` shows before the sync; stale service chains among them
    get a chain line and ``-X`` (skipped in large-cluster mode unless ``stale_chain_cleanup``).
    ``cache`` (a full sync only; its ``key`` must be :func:`config_key` of ``config``): Service
    ports not in ``cache.node_specific`` reuse the lines another node's sync wrote for them.
    """
    if cache is not None and (not full_sync or cache.key != config_key(config)):
        raise ValueError("BlockCache: only for a full sync with the proxier settings it was made for")
    ports = sorted(service_ports, key=attrgetter("port_key"))
    changed = set(changed_services or ())
    out = RestoreData()
    mark = config.masquerade_mark
    is_ipv6 = config.ipv6

    for chain in FILTER_TOP_LEVEL_CHAINS:
        out.filter_chains.append(chain_line(chain))
    for chain in NAT_TOP_LEVEL_CHAINS:
        out.nat_chains.append(chain_line(chain))

    # KUBE-POSTROUTING / KUBE-MARK-MASQ fixed rules.
    out.nat_rules.append(f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN")
    out.nat_rules.append(f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}")
    masq = f'-A {KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    out.nat_rules.append(masq + (" --random-fully" if config.random_fully else ""))
    out.nat_rules.append(f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}")

    if not is_ipv6 and config.localhost_nodeports:
        out.filter_chains.append(chain_line(KUBE_FIREWALL))
        out.filter_rules.append(
            f'-A {KUBE_FIREWALL} -m comment --comment "block incoming localnet connections" '
            "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")

    if cache is not None and cache.large_cluster_mode is not None:
        out.large_cluster_mode = cache.large_cluster_mode       # counted over every node's same endpoints
    else:
        total_endpoints = sum(len(endpoints.get(endpoints_key(s), ())) for s in ports)
        out.large_cluster_mode = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
        if cache is not None:
            cache.large_cluster_mode = out.large_cluster_mode

    def svc_comment(text: str) -> str:
        # appendServiceCommentLocked: dropped in large-cluster mode.
        return "" if out.large_cluster_mode else f"-m comment --comment {text}"

    written = _Sink(out.nat_chains, out.nat_rules)
    skipped = _Sink([], [])

    nat_chains, nat_rules, filter_chains, filter_rules = out.nat_chains, out.nat_rules, out.filter_chains, \
        out.filter_rules
    own_chains: list[str] = list(nat_chains) if cache is not None else []
    own_rules: list[str] = list(nat_rules) if cache is not None else []
    for svc in ports:
        bkey = None
        if cache is not None:
            bkey = cache.block_key(svc, config.node_name, config.node_ip)
            if bkey is not None:
                block = cache.blocks.get(bkey)
                if block is not None:
                    nat_chains += block[0]
                    nat_rules += block[1]
                    filter_chains += block[2]
                    filter_rules += block[3]
                    out.active_nat_chains.update(block[4])
                    if len(bkey) == 2:
                        own_rules += block[5]
                    else:                       # (a node-sensitive port's lines are all the node's own)
                        own_chains += block[0]
                        own_rules += block[1]
                    continue
            marks = (len(nat_chains), len(nat_rules), len(filter_chains), len(filter_rules))
            active_before = len(out.active_nat_chains)
        _write_service(out, svc, endpoints, config, svc_comment, written, skipped, full_sync, changed)
        if cache is not None:
            chains_here, rules_here = nat_chains[marks[0]:], nat_rules[marks[1]:]
            own_chains += chains_here
            own_rules += rules_here
            if bkey is not None:
                active = tuple(c[1:].split(" ", 1)[0] for c in chains_here)
                assert len(out.active_nat_chains) - active_before <= len(active)
                mine = set(active)
                top = [r for r in rules_here if r.split(" ", 2)[1] not in mine]
                cache.blocks[bkey] = (chains_here, rules_here, filter_chains[marks[2]:], filter_rules[marks[3]:],
                                      active, top)

    tail = (len(nat_chains), len(nat_rules))
    _write_tail(out, config, existing_nat_chains, stale_chain_cleanup)
    if cache is not None:
        out.own_nat_chains = own_chains + nat_chains[tail[0]:]
        out.own_nat_rules = own_rules + nat_rules[tail[1]:]
    return out


def _write_service(out: RestoreData, svc: ServicePortInfo, endpoints: Mapping[str, list[EndpointInfo]],
                   config: ProxierConfig, svc_comment, written: _Sink, skipped: _Sink, full_sync: bool,
                   changed: set[str]) -> None:
    """One Service port's lines: its rules in the top-level chains and its own chains (the body of
    syncProxyRules' loop over services)."""
    is_ipv6 = config.ipv6
    detector = config.local_detector
    proto = svc.proto
    spn = svc.name_string
    eps = sort_endpoints(endpoints.get(endpoints_key(svc), []))
    cat = categorize_endpoints(eps, svc)
    has_endpoints = cat.has_any_endpoints

    cluster_chain = svc.cluster_policy_chain
    uses_cluster_chain = bool(cat.cluster) and svc.uses_cluster_endpoints()
    local_chain = svc.local_policy_chain
    uses_local_chain = bool(cat.local) and svc.uses_local_endpoints()

    internal_chain = cluster_chain
    has_internal = has_endpoints
    if svc.internal_policy_local:
        internal_chain = local_chain
        if not cat.local:
            has_internal = False

    external_policy_chain = cluster_chain
    has_external = has_endpoints
    if svc.external_policy_local:
        external_policy_chain = local_chain
        if not cat.local:
            has_external = False
    external_chain = svc.external_chain
    uses_external_chain = has_endpoints and svc.externally_accessible()

    lb_chain = external_chain
    fw_chain = svc.firewall_chain
    uses_fw_chain = has_endpoints and bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    if uses_fw_chain:
        lb_chain = fw_chain

    internal_target = internal_comment = external_target = external_comment = ""
    if not has_endpoints:
        internal_target = external_target = "REJECT"
        internal_comment = external_comment = quoted(f"{spn} has no endpoints")
    else:
        if not has_internal:
            internal_target = "DROP"
            internal_comment = quoted(f"{spn} has no local endpoints")
        if not has_external:
            external_target = "DROP"
            external_comment = quoted(f"{spn} has no local endpoints")

    match = f"-m {proto} -p {proto}"
    dport = f"--dport {svc.port}"

    # ClusterIP.
    if has_internal:
        out.nat_rules.append(_join(f"-A {KUBE_SERVICES}", "-m comment --comment", quoted(f"{spn} cluster IP"),
                                   match, f"-d {svc.cluster_ip}", dport, f"-j {internal_chain}"))
    else:
        out.filter_rules.append(_join(f"-A {KUBE_SERVICES}", "-m comment --comment", internal_comment,
                                      match, f"-d {svc.cluster_ip}", dport, f"-j {internal_target}"))

    # externalIPs.
    for ext_ip in svc.external_ips:
        if has_endpoints:
            out.nat_rules.append(_join(f"-A {KUBE_SERVICES}", "-m comment --comment",
                                       quoted(f"{spn} external IP"), match, f"-d {ext_ip}", dport,
                                       f"-j {external_chain}"))
        if not has_external:
            out.filter_rules.append(_join(f"-A {KUBE_EXTERNAL_SERVICES}", "-m comment --comment",
                                          external_comment, match, f"-d {ext_ip}", dport,
                                          f"-j {external_target}"))

    # LoadBalancer ingress IPs.
    for lb_ip in svc.load_balancer_vips:
        if has_endpoints:
            out.nat_rules.append(_join(f"-A {KUBE_SERVICES}", "-m comment --comment",
                                       quoted(f"{spn} loadbalancer IP"), match, f"-d {lb_ip}", dport,
                                       f"-j {lb_chain}"))
        if uses_fw_chain:
            out.filter_rules.append(_join(f"-A {KUBE_PROXY_FIREWALL}", "-m comment --comment",
                                          quoted(f"{spn} traffic not accepted by {fw_chain}"), match,
                                          f"-d {lb_ip}", dport, "-j DROP"))
    if not has_external:
        for lb_ip in svc.load_balancer_vips:
            out.filter_rules.append(_join(f"-A {KUBE_EXTERNAL_SERVICES}", "-m comment --comment",
                                          external_comment, match, f"-d {lb_ip}", dport,
                                          f"-j {external_target}"))

    # NodePorts (not subject to loadBalancerSourceRanges).
    if svc.node_port:
        if has_endpoints:
            if (config.localhost_nodeports and not is_ipv6
                    and LOCALHOST_NODEPORT_ACCEPTED_COUNTER in config.nfacct_counters):
                out.nat_rules.append(_join(f"-A {KUBE_NODEPORTS}", f"-m comment --comment {spn}", match,
                                           "-d 127.0.0.0/8", f"--dport {svc.node_port}",
                                           f"-m nfacct --nfacct-name {LOCALHOST_NODEPORT_ACCEPTED_COUNTER}",
                                           f"-j {external_chain}"))
            out.nat_rules.append(_join(f"-A {KUBE_NODEPORTS}", f"-m comment --comment {spn}", match,
                                       f"--dport {svc.node_port}", f"-j {external_chain}"))
        if not has_external:
            out.filter_rules.append(_join(f"-A {KUBE_EXTERNAL_SERVICES}", "-m comment --comment",
                                          external_comment, "-m addrtype --dst-type LOCAL", match,
                                          f"--dport {svc.node_port}", f"-j {external_target}"))

    # healthCheckNodePort: accepted whether or not there are local endpoints.
    if svc.health_check_node_port:
        out.filter_rules.append(_join(f"-A {KUBE_NODEPORTS}", "-m comment --comment",
                                      quoted(f"{spn} health check node port"), "-m tcp -p tcp",
                                      f"--dport {svc.health_check_node_port}", "-j ACCEPT"))

    sink = written
    if not full_sync and svc.namespace + "/" + svc.name not in changed:
        sink = skipped

    # Internal traffic: masquerade off-cluster sources (first rule of the internal chain).
    if has_internal:
        args = _join("-m comment --comment", quoted(f"{spn} cluster IP"), match,
                     f"-d {svc.cluster_ip}", dport)
        if config.masquerade_all:
            sink.rules.append(_join(f"-A {internal_chain}", args, f"-j {KUBE_MARK_MASQ}"))
        elif detector is not None:
            sink.rules.append(_join(f"-A {internal_chain}", args, detector.if_not_local, f"-j {KUBE_MARK_MASQ}"))

    # External traffic chain.
    if uses_external_chain:
        sink.chains.append(chain_line(external_chain))
        out.active_nat_chains.add(external_chain)
        if not svc.external_policy_local:
            sink.rules.append(_join(f"-A {external_chain}", "-m comment --comment",
                                    quoted(f"masquerade traffic for {spn} external destinations"),
                                    f"-j {KUBE_MARK_MASQ}"))
        else:
            if detector is not None:
                sink.rules.append(_join(f"-A {external_chain}", "-m comment --comment",
                                        quoted(f"pod traffic for {spn} external destinations"),
                                        detector.if_local, f"-j {cluster_chain}"))
            sink.rules.append(_join(f"-A {external_chain}", "-m comment --comment",
                                    quoted(f"masquerade LOCAL traffic for {spn} external destinations"),
                                    "-m addrtype --src-type LOCAL", f"-j {KUBE_MARK_MASQ}"))
            sink.rules.append(_join(f"-A {external_chain}", "-m comment --comment",
                                    quoted(f"route LOCAL traffic for {spn} external destinations"),
                                    "-m addrtype --src-type LOCAL", f"-j {cluster_chain}"))
        if has_external:
            sink.rules.append(f"-A {external_chain} -j {external_policy_chain}")

    # Firewall chain (loadBalancerSourceRanges).
    if uses_fw_chain:
        sink.chains.append(chain_line(fw_chain))
        out.active_nat_chains.add(fw_chain)
        fw_args = _join(f"-A {fw_chain}", "-m comment --comment", quoted(f"{spn} loadbalancer IP"))
        for cidr in svc.load_balancer_source_ranges:
            sink.rules.append(_join(fw_args, f"-s {cidr}", f"-j {external_chain}"))
        if allows_from_node(svc, config.node_ip):
            for lb_ip in svc.load_balancer_vips:
                sink.rules.append(_join(fw_args, f"-s {lb_ip}", f"-j {external_chain}"))
        sink.rules.append(_join(f"-A {fw_chain}", "-m comment --comment",
                                quoted(f"other traffic to {spn} will be dropped by {KUBE_PROXY_FIREWALL}")))

    if uses_cluster_chain:
        sink.chains.append(chain_line(cluster_chain))
        out.active_nat_chains.add(cluster_chain)
        _write_service_to_endpoint_rules(sink.rules, svc, cluster_chain, cat.cluster, svc_comment)
    if uses_local_chain:
        sink.chains.append(chain_line(local_chain))
        out.active_nat_chains.add(local_chain)
        _write_service_to_endpoint_rules(sink.rules, svc, local_chain, cat.local, svc_comment)

    # Per-endpoint chains.
    for ep in cat.all_reachable:
        sep = svc.endpoint_chain(ep)
        sink.chains.append(chain_line(sep))
        out.active_nat_chains.add(sep)
        head = _join(f"-A {sep}", svc_comment(spn))
        sink.rules.append(_join(head, f"-s {ep.ip}", f"-j {KUBE_MARK_MASQ}"))
        affinity = f"-m recent --name {sep} --set" if svc.session_affinity_client_ip else ""
        sink.rules.append(_join(head, affinity, match, "-j DNAT", f"--to-destination {ep.string}"))


def _write_tail(out: RestoreData, config: ProxierConfig, existing_nat_chains: Optional[Iterable[str]],
                stale_chain_cleanup: bool) -> None:
    """After the Service ports: stale chains, the KUBE-NODEPORTS tail jump, KUBE-FORWARD."""
    mark = config.masquerade_mark
    is_ipv6 = config.ipv6
    # Stale chains (only known when the caller tells us what the kernel holds).
    if existing_nat_chains is not None and (not out.large_cluster_mode or stale_chain_cleanup):
        for chain in sorted(set(existing_nat_chains) - out.active_nat_chains):
            if is_service_chain_name(chain):
                out.nat_chains.append(chain_line(chain))
                out.nat_rules.append(f"-X {chain}")

    # Tail jump to KUBE-NODEPORTS: always last in nat KUBE-SERVICES.
    if config.node_port_addresses is None:
        dest = "-m addrtype --dst-type LOCAL"
        if is_ipv6:
            dest += " ! -d ::1/128"
        elif not config.localhost_nodeports:
            dest += " ! -d 127.0.0.0/8"
        out.nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_TAIL_COMMENT} {dest} -j {KUBE_NODEPORTS}")
    else:
        for ip in _node_port_ips(config):
            addr = ipaddress.ip_address(ip)
            if addr.is_loopback and (is_ipv6 or not config.localhost_nodeports):
                continue
            out.nat_rules.append(f"-A {KUBE_SERVICES} -m comment --comment {NODEPORTS_TAIL_COMMENT} "
                                 f"-d {ip} -j {KUBE_NODEPORTS}")

    # KUBE-FORWARD.
    if not config.conntrack_tcp_liberal:
        nfacct = (f" -m nfacct --nfacct-name {CT_STATE_INVALID_DROPPED_COUNTER}"
                  if CT_STATE_INVALID_DROPPED_COUNTER in config.nfacct_counters else "")
        out.filter_rules.append(f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP")
    out.filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" '
                            f"-m mark --mark {mark}/{mark} -j ACCEPT")
    out.filter_rules.append(f'-A {KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
                            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")


def endpoints_key(svc: ServicePortInfo) -> str:
    """The key of a service port in the ``endpoints`` map: ``ns/name[:port]/PROTOCOL``."""
    return f"{svc.name_string}/{svc.protocol}"


def _node_port_ips(config: ProxierConfig) -> list[str]:
    """nodePortAddresses.GetNodeIPs: the node's addresses inside the configured CIDRs (in CIDR order)."""
    result: list[str] = []
    for cidr in config.node_port_addresses or []:
        net = ipaddress.ip_network(cidr)
        if net.version == (6 if config.ipv6 else 4):
            for ip in config.node_ips:
                addr = ipaddress.ip_address(ip)
                if addr.version == net.version and addr in net and ip not in result:
                    result.append(ip)
    return result


def _write_service_to_endpoint_rules(rules: list[str], svc: ServicePortInfo, chain: str,
                                     endpoints: list[EndpointInfo], svc_comment) -> None:
    """writeServiceToEndpointRules: affinity ``--rcheck`` rules first, then the 1/(n-i) dispatch."""
    spn = svc.name_string
    if svc.session_affinity_client_ip:
        for ep in endpoints:
            sep = svc.endpoint_chain(ep)
            rules.append(_join(f"-A {chain}", svc_comment(quoted(f"{spn} -> {ep.string}")),
                               f"-m recent --name {sep} --rcheck --seconds {svc.sticky_max_age_seconds} --reap",
                               f"-j {sep}"))
    n = len(endpoints)
    for i, ep in enumerate(endpoints):
        stat = ""
        if i < n - 1:
            stat = f"-m statistic --mode random --probability {compute_probability(n - i)}"
        rules.append(_join(f"-A {chain}", svc_comment(quoted(f"{spn} -> {ep.string}")), stat,
                           f"-j {svc.endpoint_chain(ep)}"))
