"""Kubernetes' name and port validation rules (apimachinery/pkg/util/validation), as error strings."""
from __future__ import annotations

import ipaddress
import re
from typing import Optional

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def dns1123_label(v: str) -> Optional[str]:
    if len(v) > 63:
        return "must be no more than 63 characters"
    if not _DNS1123_LABEL.match(v):
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character")
    return None


def dns1035_label(v: str) -> Optional[str]:
    """Service names: an RFC 1035 label (must start with a letter)."""
    if len(v) > 63:
        return "must be no more than 63 characters"
    if not _DNS1035_LABEL.match(v):
        return ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character")
    return None


def dns1123_subdomain(v: str) -> Optional[str]:
    if len(v) > 253:
        return "must be no more than 253 characters"
    if not _DNS1123_SUBDOMAIN.match(v):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def port_number(v: int) -> Optional[str]:
    if not 1 <= v <= 65535:
        return "must be between 1 and 65535, inclusive"
    return None


def port_name(v: str) -> Optional[str]:
    """IANA_SVC_NAME: at most 15 characters, [a-z0-9-], at least one letter, no '--'."""
    if len(v) > 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC_NAME.match(v):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if "--" in v:
        return "must not contain consecutive hyphens"
    if not re.search(r"[a-z]", v):
        return "must contain at least one letter (a-z)"
    return None


def qualified_name(v: str) -> Optional[str]:
    """A label key: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, _, name = v.rpartition("/")
    if "/" in v and (not prefix or dns1123_subdomain(prefix)):
        return "prefix part " + (dns1123_subdomain(prefix) or "must be non-empty")
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not _LABEL_VALUE.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character")
    return None


def label_value(v: str) -> Optional[str]:
    if len(v) > 63 or not _LABEL_VALUE.match(v):
        return ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character")
    return None


def ipv4(v: str) -> Optional[str]:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return "must be a valid IPv4 address"
    return None


def ipv4_cidr(v: str) -> Optional[str]:
    try:
        ipaddress.IPv4Network(v, strict=True)
    except ValueError:
        return "must be a valid IPv4 CIDR (network address with prefix length, e.g. 10.96.0.0/12)"
    return None


def non_special_ip(v: str) -> Optional[str]:
    """ValidateNonSpecialIP (pkg/apis/core/validation/validation.go), for Service externalIPs and
    EndpointSlice addresses: not unspecified, loopback, link-local or link-local multicast (Go's
    net.IP IsUnspecified / IsLoopback / IsLinkLocalUnicast / IsLinkLocalMulticast). Other multicast
    addresses pass, as they do in the API server."""
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return "must be a valid IP address"
    if ip.is_unspecified:
        return f"may not be unspecified ({v})"
    if ip.is_loopback:
        return "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    if ip in _LINK_LOCAL_UNICAST[ip.version]:
        return "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
    if _link_local_multicast(ip):
        return "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
    return None


_LINK_LOCAL_UNICAST = {4: ipaddress.ip_network("169.254.0.0/16"), 6: ipaddress.ip_network("fe80::/10")}


def _link_local_multicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's IsLinkLocalMulticast: IPv4 224.0.0.0/24; IPv6 ff02::/16 whatever the flags nibble."""
    if ip.version == 4:
        return ip in ipaddress.ip_network("224.0.0.0/24")
    packed = ip.packed
    return packed[0] == 0xFF and packed[1] & 0x0F == 0x02
