"""Which endpoints a service port's Cluster and Local chains use on one node.

Our own implementation of the rules in kubernetes/kubernetes pkg/proxy/topology.go
``CategorizeEndpoints`` (topology hints are not modelled):

* Cluster endpoints: the Ready ones; only if there are none anywhere, the Serving∧Terminating ones.
* Local endpoints: the Ready local ones; else the Serving∧Terminating local ones (decided
  independently of the Cluster fallback).
* ``has_any_endpoints``: some endpoint is Ready, or Serving and Terminating.
* Endpoints are ordered by their ``IP:port`` string (endpointslicecache.go byEndpoint).
* Absent EndpointSlice conditions were already read by the loader (nil ready/serving = true,
  nil terminating = false: endpointslicecache.go newEndpointSliceInfo).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo


@dataclass
class CategorizedEndpoints:
    cluster: list[EndpointInfo] = field(default_factory=list)
    local: list[EndpointInfo] = field(default_factory=list)
    all_reachable: list[EndpointInfo] = field(default_factory=list)
    has_any_endpoints: bool = False


def sort_endpoints(endpoints: list[EndpointInfo]) -> list[EndpointInfo]:
    """Deduplicate by ``IP:port`` and sort by that string (endpointslicecache.go addEndpoints: the
    first one seen stays unless a later duplicate is local, "we favor a true value here")."""
    unique: dict[str, EndpointInfo] = {}
    for ep in endpoints:
        if ep.string not in unique or ep.is_local:
            unique[ep.string] = ep
    return [unique[k] for k in sorted(unique)]


def categorize_endpoints(endpoints: list[EndpointInfo], svc: ServicePortInfo) -> CategorizedEndpoints:
    """Split ``endpoints`` (already sorted) into the Cluster / Local / reachable sets kube-proxy uses."""
    result = CategorizedEndpoints()
    if svc.uses_cluster_endpoints():
        result.cluster = [ep for ep in endpoints if ep.ready]
        if not result.cluster:
            result.cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        if result.cluster:
            result.has_any_endpoints = True

    if not svc.uses_local_endpoints():
        result.all_reachable = list(result.cluster)
        return result

    local_ready = local_serving_terminating = False
    for ep in endpoints:
        if ep.ready:
            result.has_any_endpoints = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            result.has_any_endpoints = True
            local_serving_terminating = local_serving_terminating or ep.is_local

    if local_ready:
        result.local = [ep for ep in endpoints if ep.is_local and ep.ready]
    elif local_serving_terminating:
        result.local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]

    if not svc.uses_cluster_endpoints():
        result.all_reachable = list(result.local)
        return result

    seen = {ep.string for ep in result.cluster}
    result.all_reachable = list(result.cluster) + [ep for ep in result.local if ep.string not in seen]
    return result
