"""kube-proxy's nftables chain and set names: ``PREFIX`` + ``HASH-namespace/name/proto/port[__IP/port]``.

Facts (kubernetes/kubernetes pkg/proxy/nftables/proxier.go ``hashAndTruncate``,
``servicePortChainNameBase``, ``servicePortEndpointChainNameBase``, ``isServiceChainName``):

* the base name is prefixed by the first 8 characters of base32(sha256(name)) and a hyphen;
* a base longer than ``knftables.NameLengthMax`` (256) minus the longest prefix (16) is cut to
  237 characters plus ``...``;
* one service port's ``service-``, ``local-``, ``external-`` and ``firewall-`` chains share one base;
  an endpoint's ``endpoint-`` chain and ``affinity-`` set share another;
* IPv6 endpoint addresses have their colons replaced by dots (a chain name cannot hold ``:``);
* per-service objects are recognised by the ``/`` no stock chain name contains.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo

SERVICE_CHAIN_PREFIX = "service-"        # Cluster traffic-policy endpoints
LOCAL_CHAIN_PREFIX = "local-"            # Local traffic-policy endpoints
EXTERNAL_CHAIN_PREFIX = "external-"      # entry for NodePort / LoadBalancer / externalIP traffic
ENDPOINT_CHAIN_PREFIX = "endpoint-"
AFFINITY_SET_PREFIX = "affinity-"
FIREWALL_CHAIN_PREFIX = "firewall-"      # loadBalancerSourceRanges

NAME_LENGTH_MAX = 256                    # knftables.NameLengthMax
CHAIN_NAME_PREFIX_LENGTH_MAX = 16
CHAIN_NAME_BASE_LENGTH_MAX = NAME_LENGTH_MAX - CHAIN_NAME_PREFIX_LENGTH_MAX
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"     # RFC 4648 base32 alphabet (Go's base32.StdEncoding)


def hash_and_truncate(name: str) -> str:
    """``HASH8-name``, cut to 240 characters (the last three being ``...``) when longer."""
    # base32 turns each 5 bytes into 8 characters: the first 8 characters come from the first 5 bytes
    # (the 40 bits of the first 5 bytes, 5 bits a character, in RFC 4648's base32 alphabet)
    bits = int.from_bytes(hashlib.sha256(name.encode()).digest()[:5], "big")
    out = "".join([_B32[(bits >> shift) & 31] for shift in range(35, -5, -5)]) + "-" + name
    if len(out) > CHAIN_NAME_BASE_LENGTH_MAX:
        out = out[:CHAIN_NAME_BASE_LENGTH_MAX - 3] + "..."
    return out


def service_port_chain_name_base(namespace: str, name: str, port_name: str, protocol: str) -> str:
    """``HASH-ns/svc/proto/portname`` (an unnamed port leaves the last part empty)."""
    return hash_and_truncate(f"{namespace}/{name}/{protocol.lower()}/{port_name}")


def split_host_port(endpoint: str) -> tuple[str, str]:
    """Go's net.SplitHostPort for ``IP:port`` and ``[IPv6]:port``."""
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        raise ValueError(f"endpoint {endpoint!r}: expected IP:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def service_port_endpoint_chain_name_base(namespace: str, name: str, port_name: str, protocol: str,
                                          endpoint: str) -> str:
    """``HASH-ns/svc/proto/portname__IP/port``; ``endpoint`` is ``IP:port`` (``[v6]:port``)."""
    ip, port = split_host_port(endpoint)
    ip = ip.replace(":", ".")
    return hash_and_truncate(f"{namespace}/{name}/{protocol.lower()}/{port_name}__{ip}/{port}")


def is_service_chain_name(chain: str) -> bool:
    """True for per-service/per-endpoint chains (the only ones with a ``/``)."""
    return "/" in chain


def is_affinity_set_name(name: str) -> bool:
    return name.startswith(AFFINITY_SET_PREFIX)


# Stock object names (proxier.go const block); the table is "kube-proxy" in family ip / ip6.
SERVICES_CHAIN = "services"
SERVICE_IPS_MAP = "service-ips"
SERVICE_NODEPORTS_MAP = "service-nodeports"
NODEPORT_IPS_SET = "nodeport-ips"
CLUSTER_IPS_SET = "cluster-ips"
CLUSTER_IPS_CHECK_CHAIN = "cluster-ips-check"
SERVICE_ENDPOINTS_CHECK_CHAIN = "service-endpoints-check"
NODEPORT_ENDPOINTS_CHECK_CHAIN = "nodeport-endpoints-check"
NO_ENDPOINT_SERVICES_MAP = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS_MAP = "no-endpoint-nodeports"
REJECT_CHAIN = "reject-chain"
FIREWALL_IPS_MAP = "firewall-ips"
FIREWALL_CHECK_CHAIN = "firewall-check"
MARK_MASQ_CHAIN = "mark-for-masquerade"
MASQUERADING_CHAIN = "masquerading"
HAIRPIN_CONNECTIONS_SET = "hairpin-connections"       # 1.36
TABLE_COMMENT = "rules for kube-proxy"
COMMENT_LENGTH_MAX = 128                              # knftables.CommentLengthMax (truncateNFTablesComment, 1.36)


def service_chain_names(svc: "ServicePortInfo") -> dict[str, str]:
    """newServiceInfo: the chain names of one service port."""
    base = service_port_chain_name_base(svc.namespace, svc.name, svc.port_name, svc.protocol)
    return {"cluster": SERVICE_CHAIN_PREFIX + base, "local": LOCAL_CHAIN_PREFIX + base,
            "external": EXTERNAL_CHAIN_PREFIX + base, "firewall": FIREWALL_CHAIN_PREFIX + base}


def endpoint_names(svc: "ServicePortInfo", ep: "EndpointInfo") -> tuple[str, str]:
    """newEndpointInfo: (endpoint chain, affinity set) of one endpoint of one service port."""
    base = service_port_endpoint_chain_name_base(svc.namespace, svc.name, svc.port_name, svc.protocol, ep.string)
    return ENDPOINT_CHAIN_PREFIX + base, AFFINITY_SET_PREFIX + base
