"""Plain inputs of the iptables proxier: one service port, one endpoint, the node's kube-proxy settings.

These mirror what kube-proxy's syncProxyRules reads (pkg/proxy/serviceport.go BaseServicePortInfo,
pkg/proxy/endpoint.go BaseEndpointInfo, the Proxier struct fields), so golden tests can feed
exactly the inputs of kube-proxy's own unit tests.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Optional

from netsim.rules.iptables.chain_names import (
    endpoint_chain_name,
    external_chain_name,
    firewall_chain_name,
    join_host_port,
    service_chain_name,
    service_local_chain_name,
    service_port_name,
)

PROTOCOLS = ("TCP", "UDP", "SCTP")

# pkg/proxy/metrics/metrics.go nfacct counter names.
CT_STATE_INVALID_DROPPED_COUNTER = "ct_state_invalid_dropped_pkts"
LOCALHOST_NODEPORT_ACCEPTED_COUNTER = "localhost_nps_accepted_pkts"
NFACCT_COUNTERS = (CT_STATE_INVALID_DROPPED_COUNTER, LOCALHOST_NODEPORT_ACCEPTED_COUNTER)

# proxier.go largeClusterEndpointsThreshold
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000


class ProxierInputError(ValueError):
    """A service port, endpoint or setting the proxier cannot render (names the field and value)."""


def normalize_ip(value: str, where: str) -> str:
    """Parse an IPv4/IPv6 address the way netutils.ParseIPSloppy does (leading zeros allowed).
    An address already written canonically is returned as it is (the same string: every node's
    proxier reads every endpoint's address)."""
    parts = value.split(".")
    if len(parts) == 4 and value.isascii() and all(p.isdigit() and (p[0] != "0" or len(p) == 1) and len(p) <= 3 for p in parts) \
            and all(int(p) <= 255 for p in parts):
        return value
    text = value.strip()
    if "." in text and ":" not in text:
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            octets = [int(p, 10) for p in parts]
            if all(0 <= o <= 255 for o in octets):
                return ".".join(str(o) for o in octets)
        raise ProxierInputError(f"{where}: {value!r} is not an IPv4 address")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ProxierInputError(f"{where}: {value!r} is not an IP address") from None


def normalize_cidr(value: str, where: str) -> str:
    """Parse a CIDR like netutils.ParseCIDRSloppy (surrounding whitespace ignored, host bits masked)."""
    text = value.strip()
    if "/" not in text:
        raise ProxierInputError(f"{where}: {value!r} is not a CIDR (expected ADDRESS/PREFIX)")
    addr, _, prefix = text.partition("/")
    addr = normalize_ip(addr, where)
    try:
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    except ValueError:
        raise ProxierInputError(f"{where}: {value!r} is not a CIDR") from None


@dataclass
class LocalTrafficDetector:
    """pkg/proxy/util/localdetector.go: how kube-proxy tells pod traffic from everything else.

    ``if_local``/``if_not_local`` are the match arguments, e.g. ``-s 10.0.0.0/8`` / ``! -s 10.0.0.0/8``.
    """
    if_local: str
    if_not_local: str

    @classmethod
    def by_cidr(cls, cidr: str) -> "LocalTrafficDetector":
        """ClusterCIDR / NodeCIDR modes (NewDetectLocalByCIDR)."""
        net = normalize_cidr(cidr, "local traffic detector CIDR")
        return cls(if_local=f"-s {net}", if_not_local=f"! -s {net}")

    @classmethod
    def by_bridge_interface(cls, bridge: str) -> "LocalTrafficDetector":
        """BridgeInterface mode (NewDetectLocalByBridgeInterface)."""
        return cls(if_local=f"-i {bridge}", if_not_local=f"! -i {bridge}")

    @classmethod
    def by_interface_name_prefix(cls, prefix: str) -> "LocalTrafficDetector":
        """InterfaceNamePrefix mode (NewDetectLocalByInterfaceNamePrefix)."""
        return cls(if_local=f"-i {prefix}+", if_not_local=f"! -i {prefix}+")


@dataclass
class EndpointInfo:
    """One endpoint of one service port (BaseEndpointInfo): address, port and conditions."""
    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    def __post_init__(self) -> None:
        self.ip = normalize_ip(self.ip, "endpoint address")
        if not 0 < int(self.port) < 65536:
            raise ProxierInputError(f"endpoint {self.ip}: port {self.port!r} is not in 1-65535")

    @functools.cached_property
    def string(self) -> str:
        """``IP:port`` as kube-proxy prints and hashes it (made once: a sync reads it for the
        endpoint's chain name, its rules and the deduplication)."""
        return join_host_port(self.ip, self.port)


@dataclass
class ServicePortInfo:
    """One port of one Service, as kube-proxy's ServicePort interface exposes it.

    ``external_policy_local`` is already the effective value (apiservice.ExternalPolicyLocal:
    only externally-accessible Services with externalTrafficPolicy Local), and
    ``health_check_node_port`` is 0 unless the Service needs a health check
    (type LoadBalancer with eTP Local).
    """
    namespace: str
    name: str
    cluster_ip: str
    port: int
    protocol: str = "TCP"
    port_name: str = ""
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    load_balancer_vips: list[str] = field(default_factory=list)
    load_balancer_source_ranges: list[str] = field(default_factory=list)
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = 10800
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    def __post_init__(self) -> None:
        where = f"service {self.namespace}/{self.name}"
        self.protocol = str(self.protocol).upper()
        if self.protocol not in PROTOCOLS:
            raise ProxierInputError(f"{where}: protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        self.cluster_ip = normalize_ip(self.cluster_ip, f"{where}: clusterIP")
        self.external_ips = [normalize_ip(ip, f"{where}: externalIPs") for ip in self.external_ips]
        self.load_balancer_vips = [normalize_ip(ip, f"{where}: loadBalancer ingress IP")
                                   for ip in self.load_balancer_vips]
        self.load_balancer_source_ranges = [normalize_cidr(c, f"{where}: loadBalancerSourceRanges")
                                            for c in self.load_balancer_source_ranges]
        # newBaseServiceInfo (pkg/proxy/serviceport.go): a zero-masked CIDR means "allow any", the
        # same as no loadBalancerSourceRanges (proxyutil.IsZeroCIDR)
        if any(c.endswith("/0") for c in self.load_balancer_source_ranges):
            self.load_balancer_source_ranges = []
        for label, value in (("port", self.port), ("nodePort", self.node_port),
                             ("healthCheckNodePort", self.health_check_node_port)):
            if not 0 <= int(value) < 65536 or (label == "port" and int(value) == 0):
                raise ProxierInputError(f"{where}: {label} {value!r} is not a valid port")

    # --- names (newServiceInfo; each hashed once per ServicePortInfo: a sync writes a chain's
    # name in its declaration, its rules and every jump to it) ---
    @functools.cached_property
    def name_string(self) -> str:
        return service_port_name(self.namespace, self.name, self.port_name)

    @functools.cached_property
    def port_key(self) -> tuple[str, str]:
        """(name string, protocol): the port's identity in a sync's order and its caches."""
        return (self.name_string, self.protocol)

    @functools.cached_property
    def service_key(self) -> str:
        """``namespace/name`` of the port's Service."""
        return f"{self.namespace}/{self.name}"

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @functools.cached_property
    def cluster_policy_chain(self) -> str:
        return service_chain_name(self.name_string, self.proto)

    @functools.cached_property
    def local_policy_chain(self) -> str:
        return service_local_chain_name(self.name_string, self.proto)

    @functools.cached_property
    def firewall_chain(self) -> str:
        return firewall_chain_name(self.name_string, self.proto)

    @functools.cached_property
    def external_chain(self) -> str:
        return external_chain_name(self.name_string, self.proto)

    def endpoint_chain(self, endpoint: EndpointInfo) -> str:
        names = self.__dict__.get("_sep_names")
        if names is None:
            names = self.__dict__["_sep_names"] = {}
        ep = endpoint.string
        name = names.get(ep)
        if name is None:
            name = names[ep] = endpoint_chain_name(self.name_string, self.proto, ep)
        return name

    # --- policy helpers (pkg/proxy/serviceport.go, BaseServicePortInfo) ---
    def externally_accessible(self) -> bool:
        """ExternallyAccessible: reachable other than by ClusterIP (NodePort, LoadBalancer VIP, externalIP)."""
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    def uses_cluster_endpoints(self) -> bool:
        """UsesClusterEndpoints: internal policy Cluster, or reachable from outside at all.

        Even with externalTrafficPolicy Local the Cluster endpoints are needed: the EXT chain
        short-circuits pod and node-local traffic to the cluster-policy chain (KUBE-SVC-*).
        """
        return (not self.internal_policy_local) or self.externally_accessible()

    def uses_local_endpoints(self) -> bool:
        """UsesLocalEndpoints: internal policy Local, or external policy Local on an externally accessible port."""
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible())


@dataclass
class ProxierConfig:
    """The node's kube-proxy settings that shape the rule text (Proxier struct fields).

    Defaults are a real node running kube-proxy with iptables ≥ 1.6.2 and nfacct support:
    mark ``0x00004000`` (``fmt.Sprintf("%#08x", 1<<14)``), ``--random-fully``, both nfacct
    counters, localhost NodePorts on. kube-proxy's unit-test fake differs (``0x4000``, no
    ``--random-fully``); see :meth:`upstream_test_fake`.
    """
    node_name: str
    node_ip: Optional[str] = None
    local_detector: Optional[LocalTrafficDetector] = None
    masquerade_all: bool = False
    masquerade_mark: str = "0x00004000"
    random_fully: bool = True
    localhost_nodeports: bool = True
    nfacct_counters: frozenset[str] = frozenset(NFACCT_COUNTERS)
    conntrack_tcp_liberal: bool = False
    node_port_addresses: Optional[list[str]] = None   # None: all local addresses (MatchAll)
    node_ips: list[str] = field(default_factory=list)  # addresses on the node's interfaces
    ipv6: bool = False

    def __post_init__(self) -> None:
        if self.node_ip is not None:
            self.node_ip = normalize_ip(self.node_ip, f"node {self.node_name}: IP")
        self.node_ips = [normalize_ip(ip, f"node {self.node_name}: interface address") for ip in self.node_ips]
        if self.node_port_addresses is not None:
            self.node_port_addresses = [normalize_cidr(c, "nodePortAddresses") for c in self.node_port_addresses]
            # NewProxier: localhostNodePorts is turned off unless nodePortAddresses contains IPv4 loopback.
            if not any(ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(c)
                       for c in self.node_port_addresses):
                self.localhost_nodeports = False
        self.nfacct_counters = frozenset(self.nfacct_counters)

    @staticmethod
    def mark_for_bit(bit: int) -> str:
        """``fmt.Sprintf("%#08x", 1<<bit)``: Go pads the digits to 8, after the 0x."""
        if not 0 <= bit <= 31:
            raise ProxierInputError(f"masqueradeBit {bit!r} is not in 0-31")
        return "0x" + format(1 << bit, "08x")

    @classmethod
    def upstream_test_fake(cls, **overrides: object) -> "ProxierConfig":
        """kube-proxy's NewFakeProxier (proxier_test.go): node test-node / 192.168.0.2, pods 10.0.0.0/8."""
        values: dict[str, object] = dict(
            node_name="test-node",
            node_ip="192.168.0.2",
            local_detector=LocalTrafficDetector.by_cidr("10.0.0.0/8"),
            masquerade_mark="0x4000",
            random_fully=False,
            localhost_nodeports=True,
            nfacct_counters=frozenset(NFACCT_COUNTERS),
            node_ips=["127.0.0.1", "192.168.0.2", "192.168.1.2", "192.168.99.11"],
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
