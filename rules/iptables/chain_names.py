"""kube-proxy's iptables chain names: sha256 → base32 → first 16 characters.

Facts (kubernetes/kubernetes pkg/proxy/iptables/proxier.go, ``portProtoHash``,
``servicePortEndpointChainName``; pkg/proxy/types.go ``ServicePortName.String``):

* the service-port name is ``namespace/name`` plus ``:portname`` only when the port is named;
* the protocol is lower-cased (``tcp``, ``udp``, ``sctp``);
* KUBE-SVC-, KUBE-SVL-, KUBE-EXT- and KUBE-FW- share one hash of ``spn + protocol``;
* KUBE-SEP- hashes ``spn + protocol + "IP:port"`` (IPv6 endpoints are bracketed, as
  ``net.JoinHostPort`` writes them).
"""
from __future__ import annotations

import base64
import hashlib

SERVICE_CHAIN_PREFIX = "KUBE-SVC-"
SERVICE_LOCAL_CHAIN_PREFIX = "KUBE-SVL-"
FIREWALL_CHAIN_PREFIX = "KUBE-FW-"
EXTERNAL_CHAIN_PREFIX = "KUBE-EXT-"
ENDPOINT_CHAIN_PREFIX = "KUBE-SEP-"

SERVICE_CHAIN_PREFIXES = (
    SERVICE_CHAIN_PREFIX,
    SERVICE_LOCAL_CHAIN_PREFIX,
    ENDPOINT_CHAIN_PREFIX,
    FIREWALL_CHAIN_PREFIX,
    EXTERNAL_CHAIN_PREFIX,
)


def service_port_name(namespace: str, name: str, port_name: str = "") -> str:
    """``ns/name`` or ``ns/name:port`` — kube-proxy's ServicePortName.String()."""
    base = f"{namespace}/{name}"
    return f"{base}:{port_name}" if port_name else base


def join_host_port(ip: str, port: int) -> str:
    """Go's net.JoinHostPort: brackets around IPv6 literals."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _hash16(text: str) -> str:
    # the first 16 base32 characters encode exactly the digest's first 10 bytes (80 bits): encoding
    # only those gives the same characters as kube-proxy's encoding of all 32, a third of the work
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest[:10]).decode()


def port_proto_hash(svc_port_name: str, protocol: str) -> str:
    """The 16-character hash shared by a service port's SVC/SVL/EXT/FW chains."""
    return _hash16(svc_port_name + protocol.lower())


def service_chain_name(svc_port_name: str, protocol: str) -> str:
    """KUBE-SVC-…: the Cluster traffic-policy chain (servicePortPolicyClusterChain)."""
    return SERVICE_CHAIN_PREFIX + port_proto_hash(svc_port_name, protocol)


def service_local_chain_name(svc_port_name: str, protocol: str) -> str:
    """KUBE-SVL-…: the Local traffic-policy chain (servicePortPolicyLocalChainName)."""
    return SERVICE_LOCAL_CHAIN_PREFIX + port_proto_hash(svc_port_name, protocol)


def firewall_chain_name(svc_port_name: str, protocol: str) -> str:
    """KUBE-FW-…: loadBalancerSourceRanges allow-list (serviceFirewallChainName)."""
    return FIREWALL_CHAIN_PREFIX + port_proto_hash(svc_port_name, protocol)


def external_chain_name(svc_port_name: str, protocol: str) -> str:
    """KUBE-EXT-…: external-destination chain (serviceExternalChainName)."""
    return EXTERNAL_CHAIN_PREFIX + port_proto_hash(svc_port_name, protocol)


def endpoint_chain_name(svc_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-…: per-endpoint DNAT chain; ``endpoint`` is ``IP:port`` (servicePortEndpointChainName)."""
    return ENDPOINT_CHAIN_PREFIX + _hash16(svc_port_name + protocol.lower() + endpoint)


def is_service_chain_name(chain: str) -> bool:
    """True for the per-service chains kube-proxy deletes when stale (isServiceChainName)."""
    return chain.startswith(SERVICE_CHAIN_PREFIXES)
