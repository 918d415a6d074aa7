"""The settings of CoreDNS's `kubernetes` and `forward` plugins, as kubeadm's Corefile writes them.

kubeadm's Corefile (cmd/kubeadm/app/phases/addons/dns/manifests.go):

    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    forward . /etc/resolv.conf { max_concurrent 1000 }
    cache 30
    loop
    reload
    loadbalance
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

POD_MODES = ("disabled", "insecure", "verified")

# CoreDNS plugin/kubernetes/kubernetes.go: DNSSchemaVersion; the TXT record's TTL is fixed at 28800.
DNS_SCHEMA_VERSION = "1.1.0"
DNS_SCHEMA_TTL = 28800


class CorefileError(ValueError):
    """A plugin setting CoreDNS's setup would refuse (the message names the setting)."""


@dataclass(frozen=True)
class KubernetesPlugin:
    """`kubernetes ZONES { ... }`: the zones it is authoritative for and the options that shape answers."""

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    ttl: int = 30                                   # kubeadm: ttl 30 (plugin default 5)
    pods: str = "insecure"                          # kubeadm: pods insecure (plugin default disabled)
    fallthrough: tuple[str, ...] = ("in-addr.arpa.", "ip6.arpa.")
    namespaces: tuple[str, ...] = ()                # empty: every namespace is exposed

    def __post_init__(self) -> None:
        # plugin/kubernetes/setup.go: "ttl must be in range [0, 3600]"
        if not 0 <= self.ttl <= 3600:
            raise CorefileError(f"kubernetes: ttl {self.ttl}: expected an integer in range [0, 3600]")
        if self.pods not in POD_MODES:
            raise CorefileError(f"kubernetes: pods {self.pods!r}: expected one of {', '.join(POD_MODES)}")
        if not self.zones:
            raise CorefileError("kubernetes: at least one zone is required")

    @property
    def primary_zone(self) -> str:
        """The first non-reverse zone: PTR targets are built in it (plugin/kubernetes/reverse.go)."""
        for z in self.zones:
            if not _is_reverse_zone(z):
                return z
        return self.zones[0]

    @property
    def soa_ttl(self) -> int:
        """The SOA record's own TTL: min(ttl, 300) (plugin/backend_lookup.go SOA())."""
        return min(self.ttl, 300)

    @classmethod
    def kubeadm(cls, cluster_domain: str = "cluster.local") -> "KubernetesPlugin":
        return cls(zones=(fqdn(cluster_domain), "in-addr.arpa.", "ip6.arpa."))


@dataclass(frozen=True)
class CachePlugin:
    """`cache [TTL]`: caps (seconds) of the success and denial caches (coredns plugin/cache setup.go:
    a bare number sets both; defaults 3600 / 1800, minimum TTL 5, SERVFAIL kept 5 s, 10,000 items)."""

    success_ttl: int = 30                           # kubeadm: cache 30
    denial_ttl: int = 30
    min_success_ttl: int = 5                        # dnsutil.MinimalDefaultTTL
    min_denial_ttl: int = 5
    servfail_ttl: int = 5                           # cache.go failttl = minNTTL
    capacity: int = 10000                           # cache.go defaultCap, per cache

    def __post_init__(self) -> None:
        # setup.go: "cache TTL can not be zero or negative"
        for name in ("success_ttl", "denial_ttl"):
            if getattr(self, name) <= 0:
                raise CorefileError(f"cache: {name} {getattr(self, name)}: expected a positive number of seconds")


@dataclass(frozen=True)
class Corefile:
    """The parts of a kubeadm Corefile that decide answers: the kubernetes plugin, then forward."""

    kubernetes: KubernetesPlugin = field(default_factory=KubernetesPlugin)
    loadbalance: bool = True        # kubeadm: `loadbalance` shuffles A/AAAA/MX in each answer
    cache: Optional[CachePlugin] = field(default_factory=CachePlugin)   # kubeadm: `cache 30`; None: off

    @classmethod
    def kubeadm(cls, cluster_domain: str = "cluster.local") -> "Corefile":
        return cls(kubernetes=KubernetesPlugin.kubeadm(cluster_domain))


def fqdn(name: str) -> str:
    """Lower-case name with exactly one trailing dot ("" and "." are the root)."""
    name = name.strip().lower().rstrip(".")
    return name + "." if name else "."


def _is_reverse_zone(zone: str) -> bool:
    z = fqdn(zone)
    return z.endswith("in-addr.arpa.") or z.endswith("ip6.arpa.")
