"""kubectl's table printers for the kinds netsim models (kubernetes pkg/printers/internalversion/
printers.go, the *ColumnDefinitions and print* functions), with AGE from the cluster clock."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from netsim.control.serialize import node_to_k8s, pod_to_k8s, service_to_k8s, slice_to_k8s

KUBELET_VERSION = "v1.33.0"


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration HumanDuration, as kubectl prints AGE."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


_CREATED_POD = re.compile(r"^Created pod: (\S+)")
_SCALED_RS = re.compile(r"^Scaled up replica set (\S+)")


def creation_times(cluster: Any) -> dict[tuple[str, str, str], float]:
    """(kind, namespace, name) -> cluster time the object was created, read from the event log
    (the first event about it, or its controller's SuccessfulCreate / ScalingReplicaSet)."""
    out: dict[tuple[str, str, str], float] = {}
    kinds = {"node": "nodes", "pod": "pods", "service": "services", "endpointslice": "endpointslices",
             "deployment": "deployments", "replicaset": "replicasets", "statefulset": "statefulsets",
             "daemonset": "daemonsets"}
    for e in cluster.event_log:
        kind, _, name = e.object.partition("/")
        key = (kinds.get(kind, kind), e.namespace if kind != "node" else "", name)
        out.setdefault(key, e.time)
        m = _CREATED_POD.match(e.message) or None
        if m:
            out.setdefault(("pods", e.namespace, m.group(1)), e.time)
        m = _SCALED_RS.match(e.message)
        if m:
            out.setdefault(("replicasets", e.namespace, m.group(1)), e.time)
    return out


def _age(kind: str, obj: Any, created: dict, now: float) -> str:
    ns = getattr(obj, "namespace", "") if kind != "nodes" else ""
    return human_duration(now - created.get((kind, ns, obj.name), 0.0))


def _selector(sel: Optional[dict]) -> str:
    return ",".join(f"{k}={v}" for k, v in (sel or {}).items()) or "<none>"


# ---------------------------------------------------------------------------------------- rows
def _nodes(objs, wide, created, now):
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        header += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    rows = []
    for n in objs:
        # printers.go findNodeRoles: node-role.kubernetes.io/ROLE labels and kubernetes.io/role
        roles = ",".join(sorted({k.split("/", 1)[1] for k in n.labels if k.startswith("node-role.kubernetes.io/")}
                                | ({n.labels["kubernetes.io/role"]} if n.labels.get("kubernetes.io/role") else set()))
                         ) or "<none>"
        row = [n.name, "Ready" if n.ready else "NotReady", roles, _age("nodes", n, created, now), KUBELET_VERSION]
        if wide:   # printNode: empty nodeInfo fields print as <unknown>
            row += [n.ip, "<none>", "<unknown>", "<unknown>", "<unknown>"]
        rows.append(row)
    return header, rows


def _pods(objs, wide, created, now):
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows = []
    for p in objs:
        containers = max(1, len(p.containers))
        ready = containers if p.ready and p.phase == "Running" else 0
        status = "Terminating" if p.terminating else p.phase
        row = [p.name, f"{ready}/{containers}", status, "0", _age("pods", p, created, now)]
        if wide:
            row += [p.ip or "<none>", p.node_name or "<none>", "<none>", "<none>"]
        rows.append(row)
    return header, rows


def _services(objs, wide, created, now):
    header = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + (["SELECTOR"] if wide else [])
    rows = []
    for s in objs:
        ext = s.load_balancer_ips + s.external_ips
        external = ",".join(ext) if ext else (s.external_name if s.type == "ExternalName" else
                                              ("<pending>" if s.type == "LoadBalancer" else "<none>"))
        ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
                         for p in s.ports) or "<none>"
        row = [s.name, s.type, s.cluster_ip or "<none>", external, ports, _age("services", s, created, now)]
        if wide:
            row.append(_selector(s.selector))
        rows.append(row)
    return header, rows


@dataclass
class _Endpoints:
    """The v1 Endpoints the endpoints controller keeps for a Service with a selector."""
    name: str
    namespace: str
    addresses: list[str]


def _list_endpoints(cluster, ns) -> list[_Endpoints]:
    return [_Endpoints(s.name, s.namespace, _endpoint_addresses(cluster, s)) for s in cluster.services(ns) if s.selector]


def _endpoint_addresses(cluster, svc) -> list[str]:
    """Every ready address with every port (ip:port), ports in the Service's order, addresses by IP."""
    pairs = []
    for sl in cluster.endpoint_slices(svc.namespace, svc.name):
        ips = sorted((a for e in sl.endpoints if e.ready for a in e.addresses),
                     key=lambda ip: tuple(int(x) for x in ip.split(".")))
        ports = [p.port for p in sl.ports if p.port is not None]
        pairs += [f"{ip}:{port}" for port in ports for ip in ips] if ports else ips
    return pairs


def _endpoints(objs, wide, created, now):
    """printers.go formatEndpoints: at most three, then ' + N more...'; <none> when empty."""
    rows = []
    for e in objs:
        a = e.addresses
        text = ",".join(a[:3]) + (f" + {len(a) - 3} more..." if len(a) > 3 else "")
        rows.append([e.name, text or "<none>", _age("services", e, created, now)])
    return ["NAME", "ENDPOINTS", "AGE"], rows


def _slices(objs, wide, created, now):
    rows = []
    for s in objs:
        addrs = [a for e in s.endpoints for a in e.addresses]
        shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
        ports = ",".join(str(p.port) for p in s.ports) or "<unset>"
        rows.append([s.name, s.address_type, ports, shown or "<unset>", _age("endpointslices", s, created, now)])
    return ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], rows


@dataclass
class _Workload:
    """A Deployment, ReplicaSet (given or a Deployment's) or StatefulSet with its pods counted."""
    name: str
    namespace: str
    desired: int
    current: int
    ready: int
    template: Any
    selector: dict
    source: Any


WORKLOAD_KINDS = {"deployments": "Deployment", "replicasets": "ReplicaSet", "statefulsets": "StatefulSet",
                  "daemonsets": "DaemonSet"}


def _owned(cluster, ns: str, kind: str, name: str) -> list:
    return [p for p in cluster.pods(ns) if p.owner == (kind, name) and not p.terminating]


def _list_workloads(kind: str) -> Callable:
    def lister(cluster, ns):
        out = []
        for w in cluster.workloads(ns):
            if kind == "replicasets" and w.kind == "Deployment":
                rs = f"{w.name}-{w.template_hash}"
                pods = _owned(cluster, w.namespace, "Deployment", w.name)   # the model links pods to the Deployment
                sel = {**w.selector, "pod-template-hash": w.template_hash}
                out.append(_Workload(rs, w.namespace, w.replicas, len(pods), sum(p.ready for p in pods),
                                     w.template, sel, w))
            elif w.kind == WORKLOAD_KINDS[kind]:
                pods = _owned(cluster, w.namespace, w.kind, w.name)
                # a DaemonSet desires one pod per node that should run it: the pods its controller made
                desired = len(pods) if w.kind == "DaemonSet" else w.replicas
                current = sum(1 for p in pods if p.node_name) if w.kind == "DaemonSet" else len(pods)
                out.append(_Workload(w.name, w.namespace, desired, current, sum(p.ready for p in pods),
                                     w.template, w.selector, w))
        return out
    return lister


def _containers(w: _Workload) -> list[str]:
    """CONTAINERS and IMAGES as printers.go layoutContainerCells joins them."""
    return [",".join(w.template.containers) or "<none>", ",".join(w.template.images) or "<none>"]


def _deployments(objs, wide, created, now):
    header = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] + (["CONTAINERS", "IMAGES", "SELECTOR"] if wide else [])
    rows = []
    for w in objs:
        row = [w.name, f"{w.ready}/{w.desired}", str(w.current), str(w.ready), _age("deployments", w, created, now)]
        rows.append(row + (_containers(w) + [_selector(w.selector)] if wide else []))
    return header, rows


def _replicasets(objs, wide, created, now):
    header = ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] + (["CONTAINERS", "IMAGES", "SELECTOR"] if wide else [])
    rows = []
    for w in objs:
        row = [w.name, str(w.desired), str(w.current), str(w.ready), _age("replicasets", w, created, now)]
        rows.append(row + (_containers(w) + [_selector(w.selector)] if wide else []))
    return header, rows


def _statefulsets(objs, wide, created, now):
    header = ["NAME", "READY", "AGE"] + (["CONTAINERS", "IMAGES"] if wide else [])
    rows = []
    for w in objs:
        row = [w.name, f"{w.ready}/{w.desired}", _age("statefulsets", w, created, now)]
        rows.append(row + (_containers(w) if wide else []))
    return header, rows


def _daemonsets(objs, wide, created, now):
    """printers.go daemonSetColumnDefinitions: NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE NODE SELECTOR AGE."""
    header = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"] + (
        ["CONTAINERS", "IMAGES", "SELECTOR"] if wide else [])
    rows = []
    for w in objs:
        sel = ",".join(f"{k}={v}" for k, v in w.template.node_selector.items()) or "<none>"
        row = [w.name, str(w.desired), str(w.current), str(w.ready), str(w.current), str(w.ready), sel,
               _age("daemonsets", w, created, now)]
        rows.append(row + (_containers(w) + [_selector(w.selector)] if wide else []))
    return header, rows


@dataclass
class Printer:
    list: Callable                # (cluster, namespace or None) -> objects
    table: Callable               # (objects, wide, created, now) -> (header, rows)
    namespaced: bool = True


PRINTERS: dict[str, Printer] = {
    "nodes": Printer(lambda c, ns: c.nodes(), _nodes, namespaced=False),
    "pods": Printer(lambda c, ns: c.pods(ns), _pods),
    "services": Printer(lambda c, ns: c.services(ns), _services),
    "endpoints": Printer(_list_endpoints, _endpoints),
    "endpointslices": Printer(lambda c, ns: c.endpoint_slices(ns), _slices),
    "deployments": Printer(_list_workloads("deployments"), _deployments),
    "replicasets": Printer(_list_workloads("replicasets"), _replicasets),
    "statefulsets": Printer(_list_workloads("statefulsets"), _statefulsets),
    "daemonsets": Printer(_list_workloads("daemonsets"), _daemonsets),
}


def k8s_object(kind: str, obj: Any, cluster: Any) -> dict:
    """The object as the API server returns it for `-o json|yaml` (the fields netsim models)."""
    if kind == "nodes":
        return node_to_k8s(obj)
    if kind == "pods":
        return pod_to_k8s(obj)
    if kind == "services":
        return service_to_k8s(obj)
    if kind == "endpointslices":
        return slice_to_k8s(obj)
    meta = {"name": obj.name, "namespace": obj.namespace}
    if kind == "endpoints":
        return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                "subsets": [{"addresses": [{"ip": a.rsplit(":", 1)[0]} for a in obj.addresses]}] if obj.addresses
                else []}
    api_kind = WORKLOAD_KINDS[kind]
    if api_kind == "DaemonSet":     # apps/v1 DaemonSetSpec has no replicas; DaemonSetStatus counts nodes
        return {"apiVersion": "apps/v1", "kind": api_kind, "metadata": meta,
                "spec": {"selector": {"matchLabels": dict(obj.selector)}},
                "status": {"desiredNumberScheduled": obj.desired, "currentNumberScheduled": obj.current,
                           "numberReady": obj.ready, "numberAvailable": obj.ready, "updatedNumberScheduled": obj.current}}
    return {"apiVersion": "apps/v1", "kind": api_kind, "metadata": meta,
            "spec": {"replicas": obj.desired, "selector": {"matchLabels": dict(obj.selector)}},
            "status": {"replicas": obj.current, "readyReplicas": obj.ready}}
