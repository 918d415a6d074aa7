"""How CoreDNS's kubernetes plugin reads a query name: zone match, label grammar, reverse names, endpoint names.

Ground truth: coredns plugin/kubernetes/parse.go (parseRequest), plugin/pkg/dnsutil/reverse.go
(ExtractAddressFromReverse), plugin/kubernetes/kubernetes.go (endpointHostname), plugin/zones.go (Matches).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Optional

SVC = "svc"
POD = "pod"


class InvalidRequest(Exception):
    """The name does not fit the grammar (CoreDNS errInvalidRequest → NXDOMAIN)."""


@dataclass(frozen=True)
class RecordRequest:
    """parse.go recordRequest: the labels left of the zone, read from the right."""

    port: str = ""
    protocol: str = ""
    endpoint: str = ""
    service: str = ""
    namespace: str = ""
    pod_or_svc: str = ""             # "" for the apex and the bare svc / pod "directories"


def match_zone(name: str, zones: Iterable[str]) -> Optional[str]:
    """The longest zone that `name` (lower-case, trailing dot) is in or equal to, else None."""
    best: Optional[str] = None
    for z in zones:
        if z == "." or name == z or name.endswith("." + z):
            if best is None or len(z) > len(best):
                best = z
    return best


def split_labels(name: str) -> list[str]:
    """dns.SplitDomainName for a name without escapes: '' → []."""
    name = name.rstrip(".")
    return name.split(".") if name else []


def trim_zone(name: str, zone: str) -> str:
    """The part of `name` left of `zone`, without the joining dot ('' at the apex)."""
    if zone == ".":
        return name.rstrip(".")
    if name == zone:
        return ""
    return name[: -len(zone) - 1]


def parse_request(name: str, zone: str) -> RecordRequest:
    """parse.go parseRequest. `name` and `zone` lower-case with trailing dots."""
    base = trim_zone(name, zone)
    if base in ("", SVC, POD):
        return RecordRequest()                     # apex or a "directory": NODATA
    segs = split_labels(base)
    last = len(segs) - 1
    pod_or_svc = segs[last]
    if pod_or_svc not in (SVC, POD):
        raise InvalidRequest(name)
    last -= 1
    namespace = segs[last] if last >= 0 else ""
    last -= 1
    service = segs[last] if last >= 0 else ""
    last -= 1
    endpoint = port = protocol = ""
    if last == 0:                                  # endpoint.service.namespace.svc
        endpoint = segs[0]
    elif last == 1:                                # _port._protocol.service.namespace.svc
        protocol = _strip_underscore(segs[1])
        port = _strip_underscore(segs[0])
    elif last > 1:                                 # too long
        raise InvalidRequest(name)
    return RecordRequest(port=port, protocol=protocol, endpoint=endpoint, service=service,
                         namespace=namespace, pod_or_svc=pod_or_svc)


def _strip_underscore(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def address_from_reverse(name: str) -> str:
    """dnsutil.ExtractAddressFromReverse: the IP a full reverse name stands for, else ''."""
    if name.endswith(".in-addr.arpa."):
        labels = split_labels(name[: -len(".in-addr.arpa.")])
        if len(labels) != 4:
            return ""
        try:
            return str(ipaddress.IPv4Address(".".join(reversed(labels))))
        except ValueError:
            return ""
    if name.endswith(".ip6.arpa."):
        labels = split_labels(name[: -len(".ip6.arpa.")])
        if len(labels) != 32 or any(len(x) != 1 for x in labels):
            return ""
        nibbles = "".join(reversed(labels))
        try:
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
        except ValueError:
            return ""
    return ""


def is_reverse(name: str) -> bool:
    return name.endswith("in-addr.arpa.") or name.endswith("ip6.arpa.")


def endpoint_hostname(ip: str, hostname: Optional[str]) -> str:
    """kubernetes.go endpointHostname without endpoint_pod_names (not in kubeadm's Corefile).

    The endpoint's hostname if set, else the IP with '.' → '-' (v4) or ':' → '-' (v6, a trailing '-'
    gets a '0': TestEndpointHostname '2001:db8:3333:4444:5555:6666::' → '...-6666--0').
    """
    if hostname:
        return hostname
    if ":" in ip:
        name = ip.replace(":", "-")
        return name + "0" if name.endswith("-") else name
    return ip.replace(".", "-")


def pod_ip_from_label(label: str) -> Optional[str]:
    """kubernetes.go findPods: a-b-c-d (exactly 3 '-' and no '--') is IPv4, else '-' → ':' as IPv6."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
    else:
        text = label.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def ip_family(ip: str) -> int:
    """4 or 6 (0 for text that is not an address)."""
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return 0


def name_problem(name: str) -> Optional[str]:
    """Why `name` cannot go into a query, in dig's words ("empty label", "label too long", "name too
    long"), or None when it can. RFC 1035 §2.3.4: a label is 1-63 octets, a name at most 255 octets
    in wire form; the root "." is legal."""
    if name in ("", "."):
        return None
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    wire = 1
    for label in labels:
        if not label:
            return "empty label"
        try:
            size = len(label.encode("idna"))
        except UnicodeError:                      # the codec itself refuses labels over 63 octets
            size = len(label.encode("utf-8", "replace"))
            if size <= 63:
                return "label is not valid IDNA"
        if size > 63:
            return "label too long"
        wire += size + 1
    return "name too long" if wire > 255 else None
