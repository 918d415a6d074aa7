"""The node's kube-proxy settings that shape the nftables rule text, and which release we copy.

Releases (kubernetes/kubernetes pkg/proxy/nftables/proxier.go, by era of the ruleset):

* ``1.33`` (GA; also 1.31-1.32): filter chains ``filter-prerouting``/``-input``/``-forward``/``-output``
  at priority dstnat-10 (-110) plus ``filter-output-post-dnat`` at dstnat+10 (-90); the ClusterIP
  masquerade rule names the port (``ip daddr IP tcp dport N ip saddr != CIDR``).
* ``1.34`` (and 1.35; the default): ``filter-prerouting-pre-dnat``/``filter-output-pre-dnat`` at -110,
  ``filter-input``/``-forward``/``-output`` at priority filter (0) (PR #132456, "nftables short-circuit
  local traffic to external addresses"); the ClusterIP masquerade rule has no port. This is the
  ruleset of TestOverallNFTablesRules in pkg/proxy/nftables/proxier_test.go at
  kubernetes/kubernetes@81810de635aa13aa0a32992f6def3aa9d6025ebc, the golden we are tested against.
* ``1.36``: no ``mark-for-masquerade`` chain (``mark set mark or MARK`` written inline), the ClusterIP
  masquerade rule moved to the ``services`` chain (``ip daddr @cluster-ips ...``), hairpin traffic
  masqueraded through the ``hairpin-connections`` set in ``masquerading``, and no per-endpoint chains
  unless the Service has ClientIP affinity: the service chain DNATs through
  ``dnat ip addr . port to numgen random mod N map { ... }`` (PRs #135800 and #136499, "rework
  nftables masquerading code"). Read from a v1.36-era proxier.go (AustinAbro321/kubernetes@129058fc,
  whose ruleset matches a real v1.36.2 node's `nft list table ip kube-proxy`); no upstream test text
  of this release was available, so it is checked by loading it into the kernel, not by a golden.

Defaults follow a real node (cmd/kube-proxy/app/server_linux.go ``platformApplyDefaults``):
``--nodeport-addresses primary`` (only the node's primary IP accepts NodePorts), detect-local by
cluster CIDR, mark ``fmt.Sprintf("%#08x", 1<<14)``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Optional

from netsim.rules.iptables.proxier_inputs import (
    LocalTrafficDetector,
    ProxierConfig,
    ProxierInputError,
    normalize_cidr,
    normalize_ip,
)

ERA_GA = "ga"              # 1.31 - 1.33
ERA_PRE_DNAT = "pre-dnat"  # 1.34 - 1.35
ERA_INLINE_MASQ = "inline-masq"  # 1.36
RELEASES = {"1.31": ERA_GA, "1.32": ERA_GA, "1.33": ERA_GA, "1.34": ERA_PRE_DNAT, "1.35": ERA_PRE_DNAT,
            "1.36": ERA_INLINE_MASQ}
DEFAULT_RELEASE = "1.34"


def release_era(release: str) -> str:
    text = release[1:] if release.startswith("v") else release
    text = ".".join(text.split(".")[:2])
    if text not in RELEASES:
        raise ProxierInputError(f"kube-proxy release {release!r}: nftables rulesets are known for "
                                f"{', '.join(RELEASES)} (expected one of these)")
    return RELEASES[text]


def nft_local_fragments(detector: Optional[LocalTrafficDetector], ipv6: bool = False) -> tuple[str, str]:
    """pkg/proxy/util/localdetector.go IfLocalNFT / IfNotLocalNFT for our detector (``""`` if none)."""
    if detector is None:
        return "", ""
    ip_x = "ip6" if ipv6 else "ip"
    local = detector.if_local
    if local.startswith("-s "):
        cidr = local[3:]
        return f"{ip_x} saddr {cidr}", f"{ip_x} saddr != {cidr}"
    if local.startswith("-i "):
        iface = local[3:]
        if iface.endswith("+"):
            iface = iface[:-1] + "*"
        return f"iif {iface}", f"iif != {iface}"
    raise ProxierInputError(f"local traffic detector {local!r}: expected a CIDR or an interface")


@dataclass
class NFTablesConfig:
    """Proxier fields (NewProxier / NewFakeProxier) read by setupNFTables and syncProxyRules."""
    node_name: str
    node_ip: Optional[str] = None
    local_detector: Optional[LocalTrafficDetector] = None
    masquerade_all: bool = False
    masquerade_mark: str = "0x00004000"
    # None: --nodeport-addresses matching everything (MatchAll); default: the primary node IP
    node_port_addresses: Optional[list[str]] = field(default_factory=lambda: ["primary"])
    node_ips: list[str] = field(default_factory=list)   # addresses on the node's interfaces
    service_cidrs: list[str] = field(default_factory=list)
    release: str = DEFAULT_RELEASE
    ipv6: bool = False

    def __post_init__(self) -> None:
        where = f"node {self.node_name}"
        if self.node_ip is not None:
            self.node_ip = normalize_ip(self.node_ip, f"{where}: IP")
        self.node_ips = [normalize_ip(ip, f"{where}: interface address") for ip in self.node_ips]
        self.service_cidrs = [normalize_cidr(c, "serviceCIDRs") for c in self.service_cidrs]
        if self.node_port_addresses is not None:
            cidrs: list[str] = []
            for c in self.node_port_addresses:
                if c == "primary":
                    # cmd/kube-proxy/app/server.go: "primary" = the node IP of each family
                    if self.node_ip is None:
                        raise ProxierInputError(f"{where}: nodePortAddresses 'primary' needs the node IP")
                    cidrs.append(f"{self.node_ip}/{128 if ':' in self.node_ip else 32}")
                else:
                    cidrs.append(normalize_cidr(c, "nodePortAddresses"))
            self.node_port_addresses = cidrs
        self.era = release_era(self.release)

    @property
    def ip_x(self) -> str:
        return "ip6" if self.ipv6 else "ip"

    @property
    def addr_type(self) -> str:
        return "ipv6_addr" if self.ipv6 else "ipv4_addr"

    def node_port_match_all(self) -> bool:
        """proxyutil.NodePortAddresses.MatchAll: no CIDRs, or a zero CIDR of this family."""
        if not self.node_port_addresses:
            return True
        family = 6 if self.ipv6 else 4
        return any(ipaddress.ip_network(c).version == family and ipaddress.ip_network(c).prefixlen == 0
                   for c in self.node_port_addresses)

    def node_port_ips(self) -> list[str]:
        """GetNodeIPs: the node's addresses inside the CIDRs of this family, loopback skipped
        ("--nodeport-addresses includes localhost but localhost NodePorts are not supported")."""
        result: list[str] = []
        family = 6 if self.ipv6 else 4
        nets = [ipaddress.ip_network(c) for c in self.node_port_addresses or []
                if ipaddress.ip_network(c).version == family]
        for ip in self.node_ips:
            addr = ipaddress.ip_address(ip)
            if addr.version == family and not addr.is_loopback and any(addr in n for n in nets) \
                    and ip not in result:
                result.append(ip)
        return result

    @classmethod
    def upstream_test_fake(cls, **overrides: object) -> "NFTablesConfig":
        """kube-proxy's NewFakeProxier(v1.IPv4Protocol) in pkg/proxy/nftables/proxier_test.go."""
        values: dict[str, object] = dict(
            node_name="test-node",
            node_ip="192.168.0.2",
            local_detector=LocalTrafficDetector.by_cidr("10.0.0.0/8"),
            masquerade_mark="0x4000",
            node_port_addresses=["192.168.0.2/32", "2001:db8::1/128"],
            # the fake network's interfaces: lo 127.0.0.1/8; eth0 192.168.0.2, 192.168.1.2, 192.168.99.11
            node_ips=["127.0.0.1", "192.168.0.2", "192.168.1.2", "192.168.99.11"],
            service_cidrs=["172.30.0.0/16"],
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_proxier_config(cls, cfg: ProxierConfig, service_cidrs: Optional[list[str]] = None,
                            release: str = DEFAULT_RELEASE) -> "NFTablesConfig":
        """The same node's settings in nftables mode (node, interface addresses, detector, mark,
        --masquerade-all), NodePorts on the primary IP; ``service_cidrs`` default: 10.96.0.0/12."""
        return cls(node_name=cfg.node_name, node_ip=cfg.node_ip, local_detector=cfg.local_detector,
                   masquerade_all=cfg.masquerade_all, masquerade_mark=cfg.masquerade_mark,
                   node_ips=list(cfg.node_ips) or ["127.0.0.1", *([cfg.node_ip] if cfg.node_ip else [])],
                   service_cidrs=["10.96.0.0/12"] if service_cidrs is None else service_cidrs, release=release)

    @staticmethod
    def mark_for_bit(bit: int) -> str:
        return ProxierConfig.mark_for_bit(bit)
