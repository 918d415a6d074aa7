"""A saved cluster for the imperative flow (`netsim run / expose / scale / apply / delete`).

The state directory holds `operations.yaml`: every change made to the cluster, in order, as the
documents that were applied (kubectl's generated objects for run/expose) or the scale/delete
requests. The cluster is rebuilt by replaying it: the cluster's RNG is seeded, so names, IPs and
ports come out the same every time, and the file stays readable and diffable. Every command that
reads manifests reads a state directory as `-f state:DIR`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from netsim.control import manifests
from netsim.control.cluster import Cluster, ClusterError
from netsim.control.docfields import Doc, ManifestError
from netsim.control.events import Event
from netsim.control.manifests import STATE_PREFIX

DEFAULT_STATE_DIR = ".netsim-state"
LOG_NAME = "operations.yaml"
WORKLOAD_KINDS = {"deployment": "Deployment", "replicaset": "ReplicaSet", "statefulset": "StatefulSet",
                  "daemonset": "DaemonSet"}
# kubectl's resource names and short names for the kinds `netsim delete` / `scale` take
RESOURCE_ALIASES = {
    "deployment": "deployment", "deployments": "deployment", "deploy": "deployment",
    "replicaset": "replicaset", "replicasets": "replicaset", "rs": "replicaset",
    "statefulset": "statefulset", "statefulsets": "statefulset", "sts": "statefulset",
    "daemonset": "daemonset", "daemonsets": "daemonset", "ds": "daemonset",
    "service": "service", "services": "service", "svc": "service",
    "pod": "pod", "pods": "pod", "po": "pod",
}
_RESOURCE = {"Deployment": "deployment.apps", "ReplicaSet": "replicaset.apps", "StatefulSet": "statefulset.apps",
             "DaemonSet": "daemonset.apps",
             "Service": "service", "Pod": "pod", "Namespace": "namespace", "EndpointSlice":
             "endpointslice.discovery.k8s.io"}


class StateError(ValueError):
    """A state directory that cannot be read, or a change the API server would refuse."""


@dataclass
class StepResult:
    """What one imperative step did: kubectl's one-line answers and the control plane's events."""
    changes: list[tuple[str, str, str]] = field(default_factory=list)   # (resource, name, verb), e.g. created
    events: list[Event] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    first_event: Optional[int] = None        # on a new cluster: the first event after kubeadm's bootstrap

    @property
    def lines(self) -> list[str]:
        """kubectl's answers: `deployment.apps/web created`, `service "web" deleted`."""
        return [f'{res} "{name}" deleted' if verb == "deleted" else f"{res}/{name} {verb}"
                for res, name, verb in self.changes]


class StateDir:
    """A directory holding operations.yaml; load it, or add a step to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.log = self.path / LOG_NAME

    # ------------------------------------------------------------------ reading
    def operations(self) -> list[dict]:
        if not self.log.exists():
            return []
        try:
            ops = [op for op in yaml.safe_load_all(self.log.read_text()) if op is not None]
        except (OSError, yaml.YAMLError) as e:
            raise StateError(f"{self.log}: cannot read the saved cluster: {str(e).splitlines()[0]}") from None
        for i, op in enumerate(ops, start=1):
            if not isinstance(op, dict) or op.get("op") not in ("apply", "scale", "delete"):
                raise StateError(f"{self.log}: operation {i}: expected op: apply|scale|delete")
        return ops

    def cluster(self, validate: str = "strict") -> Cluster:
        """The saved cluster (replayed); a directory with no operations is an error."""
        ops = self.operations()
        if not ops:
            raise StateError(f"{STATE_PREFIX}{self.path}: no saved cluster here (start one with `netsim run`, "
                             f"`netsim apply -f FILE --state {self.path}`)")
        cluster, _ = self._replay(ops, validate)
        return cluster

    def _replay(self, ops: list[dict], validate: str) -> tuple[Optional[Cluster], dict]:
        cluster: Optional[Cluster] = None
        docs_by_key: dict[tuple[str, str, str], dict] = {}
        for i, op in enumerate(ops, start=1):
            try:
                cluster = _perform(cluster, op, docs_by_key, validate)
            except (ManifestError, ClusterError, StateError) as e:
                raise StateError(f"{self.log}: operation {i} ({op.get('command', op['op'])}): {e}") from None
        return cluster, docs_by_key

    # ------------------------------------------------------------------ writing
    def step(self, op: dict, validate: str = "strict") -> StepResult:
        """Perform one operation on the saved cluster (or start one), record it, and report."""
        ops = self.operations()
        cluster, docs_by_key = self._replay(ops, validate) if ops else (None, {})
        before = len(cluster.event_log) if cluster is not None else 0
        result = StepResult()
        cluster = _perform(cluster, op, docs_by_key, validate, result)
        result.events = cluster.event_log[result.first_event if result.first_event is not None else before:]
        result.notices = list(cluster.notices)
        self.path.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as f:
            f.write(yaml.safe_dump(op, sort_keys=False, explicit_start=True))
        return result


def _bootstrap(op: dict, validate: str) -> Cluster:
    """The cluster before the first step: kubeadm's (nodes, CoreDNS), shaped by the netsim.io/v1
    Cluster document when the first apply carries one."""
    if op["op"] != "apply":
        raise StateError("no saved cluster yet: start one with `netsim run` or `netsim apply`")
    config = [Doc(op.get("source", LOG_NAME), i, body) for i, body in enumerate(op.get("documents") or [], start=1)
              if isinstance(body, dict) and body.get("apiVersion") == "netsim.io/v1"]
    return manifests.build_documents(config, validate)


def _key(body: dict) -> tuple[str, str, str]:
    meta = body.get("metadata") or {}
    ns = "" if body.get("kind") == "Namespace" else (meta.get("namespace") or "default")
    return body.get("kind", "?"), ns, meta.get("name", "?")


def _perform(cluster: Optional[Cluster], op: dict, docs_by_key: dict, validate: str,
             result: Optional[StepResult] = None) -> Cluster:
    out = result if result is not None else StepResult()
    kind = op["op"]
    if kind == "apply":
        source = op.get("source", "operations.yaml")
        docs = [Doc(source, i, body) for i, body in enumerate(op.get("documents") or [], start=1)]
        if cluster is None:
            cluster = _bootstrap(op, validate)
            out.first_event = len(cluster.event_log)
            docs = [d for d in docs if d.body.get("apiVersion") != "netsim.io/v1"]
        elif any(d.body.get("apiVersion") == "netsim.io/v1" for d in docs):
            raise StateError("a netsim.io/v1 Cluster document can only start a saved cluster (the first apply)")
        fresh = []
        for d in docs:
            key = _key(d.body)
            prev = docs_by_key.get(key)
            if prev is None:
                fresh.append(d)
            elif prev == d.body:
                out.changes.append((*_resource(d.body), "unchanged"))
            elif _only_replicas_differ(prev, d.body):
                _scale(cluster, key[1], key[2], key[0], int(d.body["spec"].get("replicas", 1)))
                docs_by_key[key] = d.body
                out.changes.append((*_resource(d.body), "configured"))
            else:
                raise StateError(f"{d.where}: {'/'.join(_resource(d.body))} exists and netsim apply can only change a "
                                 "workload's replicas: delete it first (netsim delete)")
        manifests.apply_documents(cluster, fresh, validate)
        for d in fresh:
            docs_by_key[_key(d.body)] = d.body
            out.changes.append((*_resource(d.body), "created"))
        return cluster
    if cluster is None:
        raise StateError("no saved cluster yet: start one with `netsim run` or `netsim apply`")
    ns, name, res = op.get("namespace", "default"), op["name"], op["resource"]
    if kind == "scale":
        wkind = WORKLOAD_KINDS.get(res)
        if wkind is None or wkind == "DaemonSet":       # apps/v1 DaemonSet has no scale subresource
            raise StateError(f'the server doesn\'t have a resource type "{res}" that can be scaled')
        _scale(cluster, ns, name, wkind, int(op["replicas"]))
        body = docs_by_key.get((wkind, ns, name))
        if body is not None:
            body = copy.deepcopy(body)
            body.setdefault("spec", {})["replicas"] = int(op["replicas"])
            docs_by_key[(wkind, ns, name)] = body
        out.changes.append((_RESOURCE[wkind], name, "scaled"))
        return cluster
    # delete: waits until the object and the pods it owned are gone, as `kubectl delete --cascade=foreground`
    # does, running the cluster clock through their grace period
    if res == "service":
        cluster.delete_service(ns, name)
        docs_by_key.pop(("Service", ns, name), None)
        out.changes.append(("service", name, "deleted"))
    elif res == "pod":
        cluster.delete_pod(ns, name)
        docs_by_key.pop(("Pod", ns, name), None)
        _wait_gone(cluster, lambda: cluster.pod(ns, name) is None)
        out.changes.append(("pod", name, "deleted"))
    elif res in WORKLOAD_KINDS:
        wkind = WORKLOAD_KINDS[res]
        owned = [p.key for p in cluster.pods(ns) if p.owner == (wkind, name)]
        cluster.delete_workload(ns, name, wkind)
        docs_by_key.pop((wkind, ns, name), None)
        _wait_gone(cluster, lambda: not any(cluster.pod(*k.split("/", 1)) for k in owned))
        out.changes.append((_RESOURCE[wkind], name, "deleted"))
    else:
        raise StateError(f'the server doesn\'t have a resource type "{res}"')
    return cluster


def _wait_gone(cluster: Cluster, gone) -> None:
    for _ in range(120):                    # at most 10 minutes of cluster time
        if gone():
            return
        cluster.advance(5.0)


def _scale(cluster: Cluster, ns: str, name: str, kind: str, replicas: int) -> None:
    w = next((w for w in cluster.workloads(ns) if w.name == name and w.kind == kind), None)
    if w is None:
        raise StateError(f'{kind.lower()}s.apps "{name}" not found')
    cluster.scale(ns, name, replicas)


def _only_replicas_differ(a: dict, b: dict) -> bool:
    if a.get("kind") not in WORKLOAD_KINDS.values() or a.get("kind") != b.get("kind"):
        return False
    a2, b2 = copy.deepcopy(a), copy.deepcopy(b)
    a2.get("spec", {}).pop("replicas", None)
    b2.get("spec", {}).pop("replicas", None)
    return a2 == b2


def _resource(body: dict) -> tuple[str, str]:
    return _RESOURCE.get(body.get("kind", ""), str(body.get("kind", "?")).lower()), str(_key(body)[2])


def find_document(state: "StateDir", resource: str, name: str, namespace: str) -> dict:
    """The document a saved object was created from (for `netsim expose`)."""
    _, docs = state._replay(state.operations(), "ignore") if state.operations() else (None, {})
    kind = {"deployment": "Deployment", "replicaset": "ReplicaSet", "statefulset": "StatefulSet",
            "pod": "Pod", "service": "Service"}.get(resource)
    body = docs.get((kind, namespace, name)) if kind else None
    if body is None:
        raise StateError(f'{_RESOURCE.get(kind or "", resource)} "{name}" not found in namespace {namespace}')
    return body


# the component of the control plane that produced an event (its `source`), for the step report
def component(source: str) -> str:
    if source == "kube-apiserver":
        return "kube-apiserver"
    if source == "default-scheduler":
        return "kube-scheduler"
    if source.startswith("kubelet/"):
        return f"kubelet ({source.split('/', 1)[1]})"
    if source.startswith("kube-proxy/"):
        return f"kube-proxy ({source.split('/', 1)[1]})"
    if source.endswith("-controller"):
        return f"kube-controller-manager ({source})"
    return source


def describe_events(events: list[Event]) -> list[list[str]]:
    """Rows COMPONENT, REASON, OBJECT, MESSAGE in the order the control plane produced them."""
    return [[component(e.source), e.reason,
             (f"{e.namespace}/" if e.namespace not in ("", "default") else "") + e.object, e.message]
            for e in events]


def load_state(source: str, validate: str = "strict") -> Cluster:
    """`state:DIR` → the saved cluster (ManifestError on anything wrong, for the loaders' callers)."""
    try:
        return StateDir(source[len(STATE_PREFIX):] or DEFAULT_STATE_DIR).cluster(validate)
    except StateError as e:
        raise ManifestError(str(e)) from None


def op_apply(documents: list[dict], source: str, command: str) -> dict[str, Any]:
    return {"op": "apply", "command": command, "source": source, "documents": documents}
