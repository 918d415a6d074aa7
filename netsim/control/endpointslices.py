"""The EndpointSlice controller: which pods back a Service, on which ports, in slices of at most 100."""
from __future__ import annotations

import random
from typing import Iterable, Optional

from netsim.control.model import Endpoint, EndpointPort, EndpointSlice, Pod, Service

MANAGED_BY = "endpointslice-controller.k8s.io"   # label endpointslice.kubernetes.io/managed-by
MAX_ENDPOINTS_PER_SLICE = 100   # kube-controller-manager --max-endpoints-per-slice default
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"   # k8s.io/apimachinery/pkg/util/rand alphanumerics


def random_suffix(rng: random.Random, n: int = 5) -> str:
    """generateName's suffix: n characters from Kubernetes' vowel-free alphabet."""
    return "".join(rng.choice(_NAME_CHARS) for _ in range(n))


def suffix_from_bytes(digest: bytes, n: int = 5) -> str:
    """A generateName-style suffix taken from `digest` instead of a random draw."""
    return "".join(_NAME_CHARS[b % len(_NAME_CHARS)] for b in digest[:n])


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def resolve_target_port(svc_port, pod: Pod) -> Optional[int]:
    """podutil.FindPort: a number is used as is; a name is looked up among the pod's container ports."""
    tp = svc_port.target_port
    if isinstance(tp, int):
        return tp if tp else svc_port.port
    return pod.port_by_name(tp, svc_port.protocol)


def pod_is_endpoint_candidate(pod: Pod) -> bool:
    """Pods with an IP that are not finished; terminating pods stay (as terminating endpoints)."""
    return bool(pod.ip) and pod.phase not in ("Failed", "Succeeded")


def endpoint_for(pod: Pod, svc: Service, zone: Optional[str]) -> Endpoint:
    """EndpointSlice conditions as podToEndpoint sets them: serving is the pod's Ready condition,
    ready is serving and not terminating, or forced true by publishNotReadyAddresses (serving is not)."""
    serving = pod.ready
    ready = svc.publish_not_ready_addresses or (serving and not pod.terminating)
    hostname = pod.hostname if (pod.hostname and pod.subdomain == svc.name) else None
    return Endpoint(addresses=[pod.ip], ready=ready, serving=serving, terminating=pod.terminating,
                    node_name=pod.node_name, hostname=hostname,
                    target_ref=("Pod", pod.namespace, pod.name), zone=zone)


def build_slices(svc: Service, pods: Iterable[Pod], zones: dict[str, Optional[str]],
                 existing: list[EndpointSlice], rng: random.Random) -> list[EndpointSlice]:
    """Desired slices for a selector Service; names of existing slices are reused, new ones generated.

    Endpoints are grouped by their resolved port set (a named targetPort may resolve to different
    container ports on different pods), each group split into slices of at most 100 endpoints.
    """
    groups: dict[tuple, list[Endpoint]] = {}
    for pod in sorted(pods, key=lambda p: (p.name)):
        if not pod_is_endpoint_candidate(pod):
            continue
        ports = []
        for sp in svc.ports:
            num = resolve_target_port(sp, pod)
            if num is None:
                continue                     # the controller skips ports a pod does not have
            ports.append((sp.name, num, sp.protocol))
        groups.setdefault(tuple(ports), []).append(endpoint_for(pod, svc, zones.get(pod.node_name or "")))

    names = [s.name for s in sorted(existing, key=lambda s: s.name)]
    slices = []
    for ports_key in sorted(groups):
        eps = groups[ports_key]
        for i in range(0, max(len(eps), 1), MAX_ENDPOINTS_PER_SLICE):
            name = names.pop(0) if names else f"{svc.name}-{random_suffix(rng)}"
            slices.append(EndpointSlice(
                name=name, namespace=svc.namespace, service_name=svc.name,
                endpoints=eps[i:i + MAX_ENDPOINTS_PER_SLICE],
                ports=[EndpointPort(port=p, protocol=proto, name=n) for n, p, proto in ports_key]))
    if not slices:
        # Kubernetes keeps one empty slice (with the Service's ports left empty) for a Service without endpoints.
        name = names.pop(0) if names else f"{svc.name}-{random_suffix(rng)}"
        slices.append(EndpointSlice(name=name, namespace=svc.namespace, service_name=svc.name))
    return slices
