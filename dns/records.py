"""The cluster state CoreDNS's kubernetes plugin indexes: services, ready endpoints, namespaces, reverse maps.

A `RecordIndex` is an immutable snapshot built from the live cluster store (what CoreDNS's informers
cache), so request threads can read it without locks. Ground truth: plugin/kubernetes/object/service.go
(ClusterIPs, the port −1 sentinel), object/endpoint.go (EndpointSliceToEndpoints keeps only endpoints
whose Ready condition is unset or true), controller.go (SvcIndexReverse / EpIndexReverse).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.control.heap import deferred_gc
from netsim.dns.names import ip_family

# object/service.go / object/endpoint.go: a Service or EndpointSlice without ports gets one port −1.
NO_PORT = -1
# The kubeadm CoreDNS pods carry this label; their Service (kube-dns) becomes the zone's NS.
COREDNS_POD_LABEL = ("k8s-app", "kube-dns")


# slotted: a 10,000-Service cluster's index holds ~50,000 endpoint addresses and 20,000 port records
@dataclass(frozen=True, slots=True)
class PortRecord:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointAddress:
    """One ready address of a Service's endpoints (object.EndpointAddress + the slice's ports)."""

    ip: str
    hostname: Optional[str]
    ports: tuple[PortRecord, ...]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    namespace: str
    name: str
    type: str
    cluster_ips: tuple[str, ...]            # empty for headless and ExternalName
    headless: bool
    external_name: str
    ports: tuple[PortRecord, ...]


@dataclass
class RecordIndex:
    namespaces: frozenset[str] = frozenset()
    services: dict[tuple[str, str], ServiceRecord] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], list[EndpointAddress]] = field(default_factory=dict)
    services_by_ip: dict[str, list[ServiceRecord]] = field(default_factory=dict)
    # endpoint IP -> (namespace, Service, hostname) of every slice holding it: a tuple, one per slice
    # shared by all its unnamed endpoints (50,000 one-item lists were ~6 MiB at 10,000 Services)
    endpoints_by_ip: dict[str, tuple[tuple[str, str, Optional[str]], ...]] = field(default_factory=dict)
    pods_by_ip: dict[str, frozenset[str]] = field(default_factory=dict)   # pod IP -> namespaces
    coredns_ips: tuple[str, ...] = ()
    serial: int = 0

    def namespace_exists(self, ns: str) -> bool:
        return ns in self.namespaces


@deferred_gc()                     # the index lives until the store changes (netsim.control.heap)
def build_index(cluster: Any, serial: int = 0) -> RecordIndex:
    """Snapshot the cluster store (anything with services(), endpoint_slices(), namespaces(), pods())."""
    idx = RecordIndex(serial=serial)
    namespaces = {ns.name for ns in cluster.namespaces()}
    for svc in cluster.services():
        namespaces.add(svc.namespace)
        rec = _service_record(svc)
        idx.services[(svc.namespace, svc.name)] = rec
        for ip in rec.cluster_ips:
            idx.services_by_ip.setdefault(ip, []).append(rec)
    for sl in cluster.endpoint_slices():
        if (sl.namespace, sl.service_name) not in idx.services:
            continue                       # a slice without its Service answers nothing
        ports = tuple(PortRecord(p.name or "", p.protocol, p.port) for p in sl.ports) \
            or (PortRecord("", "", NO_PORT),)
        bucket = idx.endpoints.setdefault((sl.namespace, sl.service_name), [])
        unnamed = ((sl.namespace, sl.service_name, None),)   # one reverse entry for the slice's unnamed endpoints
        by_ip = idx.endpoints_by_ip
        for ep in sl.endpoints:
            if not ep.ready:               # conditions.ready false: left out of every record
                continue
            refs = unnamed if ep.hostname is None else ((sl.namespace, sl.service_name, ep.hostname),)
            for ip in ep.addresses:
                bucket.append(EndpointAddress(ip=ip, hostname=ep.hostname, ports=ports))
                have = by_ip.get(ip)
                by_ip[ip] = refs if have is None else have + refs
    coredns = []
    pods_by_ip: dict[str, frozenset[str]] = {}
    alone: dict[str, frozenset[str]] = {}          # namespace -> frozenset({namespace}), one per namespace
    for pod in cluster.pods():
        namespaces.add(pod.namespace)
        if pod.ip and not pod.host_network:
            ns = alone.get(pod.namespace)
            if ns is None:
                ns = alone[pod.namespace] = frozenset((pod.namespace,))
            have = pods_by_ip.get(pod.ip)
            pods_by_ip[pod.ip] = ns if have is None or have == ns else have | ns
        key, value = COREDNS_POD_LABEL
        if pod.labels.get(key) == value and pod.ip:
            coredns.append(pod.ip)
    idx.coredns_ips = tuple(sorted(coredns))
    idx.pods_by_ip = pods_by_ip
    idx.namespaces = frozenset(namespaces)
    return idx


def _service_record(svc: Any) -> ServiceRecord:
    headless = svc.cluster_ip == "None"
    ips: tuple[str, ...] = ()
    ext = ""
    if svc.type == "ExternalName":
        ext = svc.external_name or ""
    elif svc.cluster_ip and not headless and ip_family(svc.cluster_ip):
        ips = (svc.cluster_ip,)                      # single-stack: the model has one ClusterIP
    ports = tuple(PortRecord(p.name or "", p.protocol, p.port) for p in svc.ports) \
        or (PortRecord("", "", NO_PORT),)
    return ServiceRecord(namespace=svc.namespace, name=svc.name, type=svc.type, cluster_ips=ips,
                         headless=headless, external_name=ext, ports=ports)
