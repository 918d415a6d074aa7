"""The /etc/resolv.conf kubelet writes for a pod (pkg/kubelet/network/dns/dns.go GetPodDNS).

dnsPolicy: ClusterFirst (default) → nameserver = clusterDNS, search <ns>.svc.<domain> svc.<domain>
<domain> + the node's search domains, options ndots:5 (the node's options are dropped);
ClusterFirst with hostNetwork → Default; Default → the node's resolv.conf; ClusterFirstWithHostNet →
cluster DNS; None → only dnsConfig. dnsConfig is then merged in (duplicates dropped, options
overridden by name) and the result cut to kubelet's limits (3 nameservers; 32 search domains /
2048 characters, the ExpandedDNSConfig limits).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional

MAX_NAMESERVERS = 3                 # validation.MaxDNSNameservers
MAX_DNS_SEARCH_PATHS = 32           # validation.MaxDNSSearchPaths (ExpandedDNSConfig)
MAX_DNS_SEARCH_LIST_CHARS = 2048    # validation.MaxDNSSearchListChars (ExpandedDNSConfig)
DEFAULT_DNS_OPTIONS = ("ndots:5",)  # dns.go defaultDNSOptions
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


class ResolvConfError(ValueError):
    """A pod DNS setting kubelet or the API server would refuse (the message names the field)."""


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def ndots(self) -> int:
        """glibc: options ndots:n (default 1, capped at 15)."""
        value = 1
        for opt in self.options:
            if opt.startswith("ndots:"):
                try:
                    value = min(int(opt[6:]), 15)
                except ValueError:
                    pass
        return value

    def has_option(self, name: str) -> bool:
        return any(o == name or o.startswith(name + ":") for o in self.options)

    def render(self) -> str:
        """The file as kubelet writes it (search, nameserver lines, options)."""
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, source: str = "<resolv.conf>") -> "ResolvConf":
        ns, search, opts = [], [], []
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].split(";", 1)[0].strip()
            if not line:
                continue
            word, *rest = line.split()
            if word == "nameserver":
                if len(rest) != 1:
                    raise ResolvConfError(f"{source}:{lineno}: nameserver: expected one address")
                ns.append(rest[0])
            elif word in ("search", "domain"):
                search = list(rest)
            elif word == "options":
                opts.extend(rest)
        return cls(tuple(ns), tuple(search), tuple(opts))


def node_resolv_conf(config: Any) -> ResolvConf:
    """The node's own resolv.conf: the node network's gateway (first address) as nameserver.

    The model has no node resolv.conf; this stands in for minikube/kind, whose nodes resolve
    through the container network's gateway. No search domains, no options.
    """
    return ResolvConf(nameservers=(_gateway(getattr(config, "node_network", "192.168.49.0/24")),))


@functools.lru_cache(maxsize=64)
def _gateway(network: str) -> str:
    """The first address of `network` (parsed once per network: every by-name trace asks)."""
    import ipaddress
    return str(ipaddress.ip_network(network, strict=False).network_address + 1)


def pod_resolv_conf(pod: Any, config: Any, node: Optional[ResolvConf] = None) -> ResolvConf:
    """kubelet GetPodDNS for `pod` (dns_policy, host_network, dns_config) in a cluster with `config`."""
    if node is None and not pod.dns_config and (pod.dns_policy or "ClusterFirst") in _PLAIN_POLICIES:
        return _plain_pod_resolv_conf(pod.namespace, pod.dns_policy or "ClusterFirst", bool(pod.host_network),
                                      getattr(config, "cluster_domain", "cluster.local"),
                                      getattr(config, "dns_service_ip", "10.96.0.10"),
                                      getattr(config, "node_network", "192.168.49.0/24"))
    return _pod_resolv_conf(pod, config, node)


_PLAIN_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default")


@functools.lru_cache(maxsize=1024)
def _plain_pod_resolv_conf(namespace: str, policy: str, host_network: bool, domain: str, dns_ip: str,
                           node_network: str) -> ResolvConf:
    """GetPodDNS of a pod without dnsConfig: a function of these fields alone (every by-name trace
    from a pod asks, so it is worked out once per namespace and policy)."""
    from types import SimpleNamespace
    pod = SimpleNamespace(namespace=namespace, name="", dns_policy=policy, host_network=host_network,
                          dns_config=None)
    config = SimpleNamespace(cluster_domain=domain, dns_service_ip=dns_ip, node_network=node_network)
    return _pod_resolv_conf(pod, config, None)


def _pod_resolv_conf(pod: Any, config: Any, node: Optional[ResolvConf]) -> ResolvConf:
    node = node or node_resolv_conf(config)
    policy = pod.dns_policy or "ClusterFirst"
    if policy not in DNS_POLICIES:
        raise ResolvConfError(f"pod {pod.namespace}/{pod.name}: spec.dnsPolicy: Unsupported value: "
                              f"{policy!r}: supported values: {', '.join(DNS_POLICIES)}")
    if policy == "ClusterFirst" and pod.host_network:
        policy = "Default"                     # getPodDNSType: host-network pods fall back
    cfg = pod.dns_config or {}
    if policy == "None" and not cfg:
        raise ResolvConfError(f"pod {pod.namespace}/{pod.name}: spec.dnsConfig: Required value: "
                              "must provide `dnsConfig` when `dnsPolicy` is None")
    if policy == "None":
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    elif policy == "Default":
        servers, searches, options = list(node.nameservers), list(node.searches), list(node.options)
    else:
        domain = getattr(config, "cluster_domain", "cluster.local").rstrip(".")
        servers = [getattr(config, "dns_service_ip", "10.96.0.10")]
        searches = _dedup([f"{pod.namespace}.svc.{domain}", f"svc.{domain}", domain, *node.searches])
        options = list(DEFAULT_DNS_OPTIONS)
    if cfg:
        servers = _dedup(servers + [str(s) for s in cfg.get("nameservers") or []])
        searches = _dedup(searches + [str(s) for s in cfg.get("searches") or []])
        options = _merge_options(options, cfg.get("options") or [])
    return _fit_limits(ResolvConf(tuple(servers), tuple(searches), tuple(options)))


def _dedup(items: list[str]) -> list[str]:
    """dns.go omitDuplicates: first occurrence wins."""
    seen: set[str] = set()
    out = []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _merge_options(existing: list[str], pod_options: list[Any]) -> list[str]:
    """dns.go mergeDNSOptions: dnsConfig options override same-named ones.

    kubelet rebuilds the list from a Go map, so its order is unspecified; we keep first-seen order.
    """
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for op in pod_options:
        name = op.get("name") if isinstance(op, dict) else getattr(op, "name", None)
        value = op.get("value") if isinstance(op, dict) else getattr(op, "value", None)
        if not name:
            continue
        merged[str(name)] = "" if value is None else str(value)
    return [f"{k}:{v}" if v != "" else k for k, v in merged.items()]


def _fit_limits(rc: ResolvConf) -> ResolvConf:
    """formDNSConfigFitsLimits: at most 3 nameservers, 32 search domains, 2048 search characters."""
    servers = rc.nameservers[:MAX_NAMESERVERS]
    searches = list(rc.searches[:MAX_DNS_SEARCH_PATHS])
    while searches and len(" ".join(searches)) > MAX_DNS_SEARCH_LIST_CHARS:
        searches.pop()
    return ResolvConf(servers, tuple(searches), rc.options)
