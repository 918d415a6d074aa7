"""kube-proxy's nftables syncProxyRules for one node: the transaction of one sync, full or partial.

Our own implementation of kubernetes/kubernetes pkg/proxy/nftables/proxier.go (``setupNFTables``,
``syncProxyRules``, ``writeServiceToEndpointRules``, ``nftElementStorage``), for the releases in
:mod:`netsim.rules.nftables.config`. Endpoint selection reuses the iptables proxier's
``categorize_endpoints`` (pkg/proxy/topology.go CategorizeEndpoints, shared by both modes).

Service ports are visited in ServicePortName order (kube-proxy walks a Go map, so its order is
arbitrary; every object's content is independent of it).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Iterable, Optional

from netsim.control.heap import deferred_gc
from netsim.rules.iptables.proxier_endpoints import categorize_endpoints, sort_endpoints
from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.nftables.chain_names import (
    CLUSTER_IPS_CHECK_CHAIN,
    CLUSTER_IPS_SET,
    FIREWALL_CHECK_CHAIN,
    FIREWALL_IPS_MAP,
    HAIRPIN_CONNECTIONS_SET,
    MARK_MASQ_CHAIN,
    MASQUERADING_CHAIN,
    NO_ENDPOINT_NODEPORTS_MAP,
    NO_ENDPOINT_SERVICES_MAP,
    NODEPORT_ENDPOINTS_CHECK_CHAIN,
    NODEPORT_IPS_SET,
    REJECT_CHAIN,
    SERVICE_ENDPOINTS_CHECK_CHAIN,
    SERVICE_IPS_MAP,
    SERVICE_NODEPORTS_MAP,
    SERVICES_CHAIN,
    TABLE_COMMENT,
    is_affinity_set_name,
    is_service_chain_name,
)
from netsim.rules.nftables.config import ERA_GA, ERA_INLINE_MASQ, ERA_PRE_DNAT, NFTablesConfig, nft_local_fragments
from netsim.rules.nftables.proxier_services import write_service_port
from netsim.rules.nftables.transaction import (
    Chain,
    Element,
    Map,
    Rule,
    Set,
    Table,
    TableState,
    Transaction,
    concat,
)

# knftables types.go: DNATPriority "dstnat" = -100, SNATPriority "srcnat" = 100, FilterPriority 0;
# knftables writes them as numbers.
DSTNAT, SRCNAT, FILTER = -100, 100, 0


@dataclass(frozen=True)
class BaseChain:
    name: str
    type: str
    hook: str
    priority: int


@dataclass(frozen=True)
class JumpChain:
    dst: str
    src: str
    extra: str = ""


_CT_NEW = "ct state new"

# nftablesBaseChains / nftablesJumpChains, per ruleset era.
BASE_CHAINS = {
    ERA_GA: (
        BaseChain("filter-prerouting", "filter", "prerouting", DSTNAT - 10),
        BaseChain("filter-input", "filter", "input", DSTNAT - 10),
        BaseChain("filter-forward", "filter", "forward", DSTNAT - 10),
        BaseChain("filter-output", "filter", "output", DSTNAT - 10),
        BaseChain("filter-output-post-dnat", "filter", "output", DSTNAT + 10),
        BaseChain("nat-prerouting", "nat", "prerouting", DSTNAT),
        BaseChain("nat-output", "nat", "output", DSTNAT),
        BaseChain("nat-postrouting", "nat", "postrouting", SRCNAT),
    ),
    ERA_PRE_DNAT: (
        BaseChain("filter-prerouting-pre-dnat", "filter", "prerouting", DSTNAT - 10),
        BaseChain("filter-output-pre-dnat", "filter", "output", DSTNAT - 10),
        BaseChain("filter-input", "filter", "input", FILTER),
        BaseChain("filter-forward", "filter", "forward", FILTER),
        BaseChain("filter-output", "filter", "output", FILTER),
        BaseChain("nat-prerouting", "nat", "prerouting", DSTNAT),
        BaseChain("nat-output", "nat", "output", DSTNAT),
        BaseChain("nat-postrouting", "nat", "postrouting", SRCNAT),
    ),
}
BASE_CHAINS[ERA_INLINE_MASQ] = BASE_CHAINS[ERA_PRE_DNAT]
JUMP_CHAINS = {
    ERA_GA: (
        JumpChain(NODEPORT_ENDPOINTS_CHECK_CHAIN, "filter-input", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-input", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-forward", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-output", _CT_NEW),
        JumpChain(FIREWALL_CHECK_CHAIN, "filter-prerouting", _CT_NEW),
        JumpChain(FIREWALL_CHECK_CHAIN, "filter-output", _CT_NEW),
        JumpChain(SERVICES_CHAIN, "nat-output"),
        JumpChain(SERVICES_CHAIN, "nat-prerouting"),
        JumpChain(MASQUERADING_CHAIN, "nat-postrouting"),
        JumpChain(CLUSTER_IPS_CHECK_CHAIN, "filter-forward", _CT_NEW),
        JumpChain(CLUSTER_IPS_CHECK_CHAIN, "filter-output-post-dnat", _CT_NEW),
    ),
    ERA_PRE_DNAT: (
        JumpChain(NODEPORT_ENDPOINTS_CHECK_CHAIN, "filter-input", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-input", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-forward", _CT_NEW),
        JumpChain(SERVICE_ENDPOINTS_CHECK_CHAIN, "filter-output", _CT_NEW),
        JumpChain(FIREWALL_CHECK_CHAIN, "filter-prerouting-pre-dnat", _CT_NEW),
        JumpChain(FIREWALL_CHECK_CHAIN, "filter-output-pre-dnat", _CT_NEW),
        JumpChain(SERVICES_CHAIN, "nat-output"),
        JumpChain(SERVICES_CHAIN, "nat-prerouting"),
        JumpChain(MASQUERADING_CHAIN, "nat-postrouting"),
        JumpChain(CLUSTER_IPS_CHECK_CHAIN, "filter-forward", _CT_NEW),
        JumpChain(CLUSTER_IPS_CHECK_CHAIN, "filter-output", _CT_NEW),
    ),
}


JUMP_CHAINS[ERA_INLINE_MASQ] = JUMP_CHAINS[ERA_PRE_DNAT]


@dataclass
class ElementStorage:
    """nftElementStorage: the elements kube-proxy believes a set/map holds, to send only changes."""
    name: str
    is_map: bool
    elements: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    leftover: set[tuple[str, ...]] = field(default_factory=set)

    def reset(self, tx: Transaction) -> None:
        self.elements.clear()
        tx.flush(Map(self.name) if self.is_map else Set(self.name))
        self.leftover = set()

    def read(self, state: TableState) -> None:
        """readOrReset: start from what the set/map holds in the table now (ListElements; nothing
        when it does not exist yet), every element a leftover until a Service claims it."""
        have = (state.maps if self.is_map else state.sets).get(self.name)
        self.elements = {key: e.value for key, e in have.elements.items()} if have is not None else {}
        self.leftover = set(self.elements)

    def ensure(self, tx: Transaction, elem: Element) -> None:
        have = self.elements.get(elem.key)
        if have is None:
            tx.add(elem)
            self.elements[elem.key] = elem.value
            return
        if have != elem.value:
            tx.delete(elem)
            tx.add(elem)
            self.elements[elem.key] = elem.value
        self.leftover.discard(elem.key)

    def cleanup(self, tx: Transaction) -> None:
        for key in sorted(self.leftover):
            tx.delete(Element(self.name, key, is_map=self.is_map))
            del self.elements[key]
        self.leftover = set(self.elements)


def _service_key(svc: ServicePortInfo) -> str:
    return f"{svc.namespace}/{svc.name}"


_ENDPOINT_FIELDS = tuple(f.name for f in fields(EndpointInfo))     # what an endpoint is (dataclass fields)


def _inputs_by_service(ports: list[ServicePortInfo], endpoints: dict[str, list[EndpointInfo]]) -> dict[str, tuple]:
    """What a sync reads of each Service (its ports and their endpoints), to find the changed ones."""
    out: dict[str, list] = {}
    for svc in ports:
        # the endpoints as a multiset of their field values (order does not count, as in repr-sorted form)
        eps = Counter(tuple(getattr(ep, name) for name in _ENDPOINT_FIELDS)
                      for ep in endpoints.get(endpoints_key(svc), []))
        out.setdefault(_service_key(svc), []).append((repr(svc), eps))
    return {k: tuple(sorted(v, key=lambda port: port[0])) for k, v in out.items()}


@dataclass
class NFTablesProxier:
    """One node's kube-proxy in nftables mode: state kept between syncs, like proxier.go's Proxier.

    ``state`` is what the kernel holds after each transaction (applied atomically); ``now`` passed to
    :meth:`sync` is the wall clock in seconds (stale chains are deleted once a second has passed).
    """
    config: NFTablesConfig
    state: TableState = field(default_factory=TableState)
    need_full_sync: bool = True
    flushed: bool = False
    stale_chains: dict[str, float] = field(default_factory=dict)
    storages: dict[str, ElementStorage] = field(default_factory=dict)
    last_cleanup: Optional[Transaction] = None      # the stale-chain deletions run before the last sync
    last_sync: Optional[Transaction] = None
    last_inputs: dict[str, tuple] = field(default_factory=dict)   # per Service, what the last sync saw
    # on a 1.34 full sync: (chains, affinity sets) the table held before it (ListAll)
    existing_endpoint_chains: Optional[tuple[set[str], set[str]]] = None

    def __post_init__(self) -> None:
        self.state.family = self.config.ip_x
        containers = [(CLUSTER_IPS_SET, False), (SERVICE_IPS_MAP, True), (FIREWALL_IPS_MAP, True),
                      (NO_ENDPOINT_SERVICES_MAP, True), (NO_ENDPOINT_NODEPORTS_MAP, True),
                      (SERVICE_NODEPORTS_MAP, True)]
        if self.config.era == ERA_INLINE_MASQ:
            containers.append((HAIRPIN_CONNECTIONS_SET, False))
        for name, is_map in containers:
            self.storages.setdefault(name, ElementStorage(name, is_map))

    # --- setupNFTables -------------------------------------------------------------------------
    def _ensure_chain(self, tx: Transaction, chain: str, created: set[str], skip: bool = False) -> None:
        if chain in created:
            return
        created.add(chain)
        if not skip:
            c = Chain(chain)
            tx.add(c)
            tx.flush(c)

    def setup_nftables(self, tx: Transaction) -> None:
        cfg = self.config
        ip_x, addr = cfg.ip_x, cfg.addr_type
        no_localhost = "ip6 daddr != ::1" if cfg.ipv6 else "ip daddr != 127.0.0.0/8"
        tx.add(Table(comment=TABLE_COMMENT))
        base_chains = BASE_CHAINS[cfg.era]
        if not self.flushed:
            # "Do an extra add+delete once to ensure all previous base chains in the table will be
            # recreated. Otherwise, altering properties (e.g. priority) of these chains would fail".
            for bc in base_chains:
                tx.add(Chain(bc.name))
                tx.delete(Chain(bc.name))
            self.flushed = True
        for bc in base_chains:
            chain = Chain(bc.name, bc.type, bc.hook, bc.priority)
            tx.add(chain)
            tx.flush(chain)
        created: set[str] = set()
        for jc in JUMP_CHAINS[cfg.era]:
            self._ensure_chain(tx, jc.dst, created)
            tx.add(Rule(jc.src, concat(jc.extra, "jump", jc.dst)))
        mark = cfg.masquerade_mark
        inline = cfg.era == ERA_INLINE_MASQ
        top = (SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN) + (() if inline else (MARK_MASQ_CHAIN,))
        for chain in top:
            self._ensure_chain(tx, chain, created)
        if inline:
            tx.add(Set(HAIRPIN_CONNECTIONS_SET, f"{addr} . {addr} . inet_proto . inet_service",
                       comment="service hairpin connections"))
            tx.add(Rule(MASQUERADING_CHAIN, concat("mark", "and", mark, "!=", "0", "mark", "set", "mark", "xor", mark,
                                                   "masquerade fully-random")))
            tx.add(Rule(MASQUERADING_CHAIN, concat("ct status dnat", ip_x, "saddr", ".", ip_x, "daddr", ".",
                                                   "meta l4proto", ".", "th dport", "@", HAIRPIN_CONNECTIONS_SET,
                                                   "masquerade fully-random")))
        else:
            tx.add(Rule(MARK_MASQ_CHAIN, concat("mark", "set", "mark", "or", mark)))
            tx.add(Rule(MASQUERADING_CHAIN, concat("mark", "and", mark, "==", "0", "return")))
            tx.add(Rule(MASQUERADING_CHAIN, concat("mark", "set", "mark", "xor", mark)))
            tx.add(Rule(MASQUERADING_CHAIN, "masquerade fully-random"))

        tx.add(Set(CLUSTER_IPS_SET, addr, comment="Active ClusterIPs"))
        tx.add(Rule(CLUSTER_IPS_CHECK_CHAIN, concat(ip_x, "daddr", "@", CLUSTER_IPS_SET, "reject"),
                    comment="Reject traffic to invalid ports of ClusterIPs"))
        if cfg.service_cidrs:
            tx.add(Rule(CLUSTER_IPS_CHECK_CHAIN, concat(ip_x, "daddr", "{", ",".join(cfg.service_cidrs), "}", "drop"),
                        comment="Drop traffic to unallocated ClusterIPs"))

        tx.add(Set(NODEPORT_IPS_SET, addr, comment="IPs that accept NodePort traffic"))
        match_all = cfg.node_port_match_all()
        if match_all:
            tx.delete(Set(NODEPORT_IPS_SET))
        else:
            tx.flush(Set(NODEPORT_IPS_SET))
            for ip in cfg.node_port_ips():
                tx.add(Element(NODEPORT_IPS_SET, (ip,)))

        tx.add(Map(NO_ENDPOINT_SERVICES_MAP, f"{addr} . inet_proto . inet_service : verdict",
                   comment="vmap to drop or reject packets to services with no endpoints"))
        tx.add(Map(NO_ENDPOINT_NODEPORTS_MAP, "inet_proto . inet_service : verdict",
                   comment="vmap to drop or reject packets to service nodeports with no endpoints"))
        reject = Chain(REJECT_CHAIN, comment="helper for @no-endpoint-services / @no-endpoint-nodeports")
        tx.add(reject)
        tx.flush(Chain(REJECT_CHAIN))
        tx.add(Rule(REJECT_CHAIN, "reject"))
        tx.add(Rule(SERVICE_ENDPOINTS_CHECK_CHAIN, concat(ip_x, "daddr", ".", "meta l4proto", ".", "th dport",
                                                          "vmap", "@", NO_ENDPOINT_SERVICES_MAP)))
        if match_all:
            tx.add(Rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, concat(no_localhost, "meta l4proto . th dport",
                                                               "vmap", "@", NO_ENDPOINT_NODEPORTS_MAP)))
        else:
            tx.add(Rule(NODEPORT_ENDPOINTS_CHECK_CHAIN, concat(ip_x, "daddr", "@", NODEPORT_IPS_SET,
                                                               "meta l4proto . th dport",
                                                               "vmap", "@", NO_ENDPOINT_NODEPORTS_MAP)))

        tx.add(Map(FIREWALL_IPS_MAP, f"{addr} . inet_proto . inet_service : verdict",
                   comment="destinations that are subject to LoadBalancerSourceRanges"))
        self._ensure_chain(tx, FIREWALL_CHECK_CHAIN, created)
        tx.add(Rule(FIREWALL_CHECK_CHAIN, concat(ip_x, "daddr", ".", "meta l4proto", ".", "th dport",
                                                 "vmap", "@", FIREWALL_IPS_MAP)))

        tx.add(Map(SERVICE_IPS_MAP, f"{addr} . inet_proto . inet_service : verdict",
                   comment="ClusterIP, ExternalIP and LoadBalancer IP traffic"))
        tx.add(Map(SERVICE_NODEPORTS_MAP, "inet_proto . inet_service : verdict", comment="NodePort traffic"))
        if inline:
            # 1.36: masquerade for ClusterIP traffic, decided before dispatch, for every ClusterIP
            if_not_local = nft_local_fragments(cfg.local_detector, cfg.ipv6)[1]
            masq = concat("mark", "set", "mark", "or", mark)
            if cfg.masquerade_all:
                tx.add(Rule(SERVICES_CHAIN, concat(ip_x, "daddr", "@", CLUSTER_IPS_SET, masq),
                            comment="masquerade all clusterIP traffic"))
            elif if_not_local:
                tx.add(Rule(SERVICES_CHAIN, concat(ip_x, "daddr", "@", CLUSTER_IPS_SET, if_not_local, masq),
                            comment="masquerade clusterIP traffic from outside cluster"))
        tx.add(Rule(SERVICES_CHAIN, concat(ip_x, "daddr", ".", "meta l4proto", ".", "th dport",
                                           "vmap", "@", SERVICE_IPS_MAP)))
        if match_all:
            tx.add(Rule(SERVICES_CHAIN, concat("fib daddr type local", no_localhost, "meta l4proto . th dport",
                                               "vmap", "@", SERVICE_NODEPORTS_MAP)))
        else:
            tx.add(Rule(SERVICES_CHAIN, concat(ip_x, "daddr @nodeport-ips", "meta l4proto . th dport",
                                               "vmap", "@", SERVICE_NODEPORTS_MAP)))
        for storage in self.storages.values():
            if cfg.era == ERA_GA:
                storage.reset(tx)           # flushed on every full sync
            else:
                # PR #130119 (kube-proxy restart time): readOrReset reads the elements the table
                # already holds, so a restarted kube-proxy re-adds none of them
                storage.read(self.state)

    # --- syncProxyRules ------------------------------------------------------------------------
    @deferred_gc()               # the transaction and the table it builds are long-lived (netsim.control.heap)
    def sync(self, ports: list[ServicePortInfo], endpoints: dict[str, list[EndpointInfo]],
             changed_services: Optional[Iterable[str]] = None, now: float = 0.0) -> Transaction:
        """One syncProxyRules: build the transaction, run it against :attr:`state`, return it.

        After a successful sync the next one is partial: only Services whose Service object or
        endpoints changed (``changed_services``, ``namespace/name``; by default found by comparing
        with the inputs of the previous sync, as kube-proxy's change trackers report
        ``UpdatedServices``) get their chains and rules rewritten; map and set elements are diffed. Chains left stale by an earlier sync are deleted here, in a transaction of
        their own, once they are more than a second old (pre-6.2 kernels free a chain only a
        moment after the last map element naming it is gone).
        """
        try_partial = not self.need_full_sync
        inputs = _inputs_by_service(ports, endpoints)
        if changed_services is None:
            changed = {k for k in set(inputs) | set(self.last_inputs) if inputs.get(k) != self.last_inputs.get(k)}
        else:
            changed = set(changed_services)
        cleanup = Transaction(self.config.ip_x)
        for chain, since in sorted(self.stale_chains.items()):
            if since < now - 1.0:
                cleanup.delete(Chain(chain))
                del self.stale_chains[chain]
        self.last_cleanup = cleanup if len(cleanup) else None
        if self.last_cleanup is not None:
            self.state.apply(cleanup)

        tx = Transaction(self.config.ip_x)
        if not try_partial:
            self.setup_nftables(tx)
        # 1.34-1.35 (PR #130119): a full sync leaves an endpoint chain that the table already holds
        # as it is (its name hashes the endpoint's IP and port, which fix its rules), unless its
        # affinity set's presence disagrees with the Service's session affinity
        self.existing_endpoint_chains = None
        if not try_partial and self.config.era == ERA_PRE_DNAT:
            self.existing_endpoint_chains = (
                {c for c in self.state.chains if c not in self.stale_chains},
                {n for n in self.state.sets if is_affinity_set_name(n)})
        active_chains: set[str] = set()
        active_affinity: set[str] = set()
        for svc in sorted(ports, key=lambda s: (s.name_string, s.protocol)):
            eps = sort_endpoints(endpoints.get(endpoints_key(svc), []))
            skip = try_partial and _service_key(svc) not in changed
            write_service_port(self, tx, svc, categorize_endpoints(eps, svc), skip,
                               active_chains, active_affinity)

        for chain in sorted(self.state.chains):
            if is_service_chain_name(chain):
                if chain not in active_chains:
                    tx.flush(Chain(chain))
                    self.stale_chains.setdefault(chain, now)
                else:
                    self.stale_chains.pop(chain, None)
        for name in sorted(self.state.sets):
            if is_affinity_set_name(name) and name not in active_affinity:
                tx.delete(Set(name))
        for storage in self.storages.values():
            storage.cleanup(tx)

        self.state.apply(tx)
        self.need_full_sync = False
        self.last_inputs = inputs
        self.last_sync = tx
        return tx

