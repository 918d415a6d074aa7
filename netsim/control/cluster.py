"""The cluster: an API store with watch events, and the controllers that reconcile it on a clock.

Controllers modelled: scheduler, IPAM (node podCIDRs, pod IPs, ClusterIPs, NodePorts, LB IPs),
workload controllers (Deployment/ReplicaSet/StatefulSet → pods), the EndpointSlice controller,
kubelet (starts pods, heartbeats) and the node lifecycle controller (NotReady, eviction).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import ipaddress
import math
import random
from typing import Iterable, Optional

from netsim.control import endpointslices as eps
from netsim.control.events import EventLog, WatchEvent, Watcher
from netsim.control.ipam import (AllocationError, ClusterIPAllocator, LoadBalancerIPAllocator,
                         NodeCIDRAllocator, PodIPAllocator, PortAllocator)
from netsim.control.model import (ClusterConfig, Deployment, EndpointSlice, Namespace, Node, Pod, Service, Taint,
                                  Toleration)
from netsim.control.scheduler import (ScoringIndex, feasible_nodes, filter_key, schedule, unschedulable_message,
                                      untolerated_taint, wanted_host_ports)

NODE_MONITOR_PERIOD = 5.0          # kube-controller-manager --node-monitor-period
TERMINATION_GRACE_PERIOD = 30.0    # pod.spec.terminationGracePeriodSeconds default
TAINT_EVICTION_CONTROLLER = "taint-eviction-controller"   # kube-controller-manager's event source (v1.29+)
AWAITING_KUBELET = math.inf        # deletion deadline of a pod whose kubelet cannot confirm the kill
UNREACHABLE_TAINT = Taint("node.kubernetes.io/unreachable", "", "NoExecute")   # node lifecycle controller's taint
# the tolerations the DaemonSet controller adds to every pod it creates
# (pkg/controller/daemon/util/daemonset_util.go AddOrUpdateDaemonPodTolerations): not-ready and
# unreachable NoExecute for ever, the node-condition NoSchedule taints, network-unavailable for hostNetwork
DAEMON_TOLERATIONS = (Toleration("node.kubernetes.io/not-ready", "Exists", "", "NoExecute"),
                      Toleration("node.kubernetes.io/unreachable", "Exists", "", "NoExecute"),
                      Toleration("node.kubernetes.io/disk-pressure", "Exists", "", "NoSchedule"),
                      Toleration("node.kubernetes.io/memory-pressure", "Exists", "", "NoSchedule"),
                      Toleration("node.kubernetes.io/pid-pressure", "Exists", "", "NoSchedule"),
                      Toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule"))
HOST_NETWORK_DAEMON_TOLERATION = Toleration("node.kubernetes.io/network-unavailable", "Exists", "", "NoSchedule")


class ClusterError(ValueError):
    """A change the API server would refuse (the message says which object and why)."""


class Clock:
    """The cluster's clock in seconds since the cluster was created."""

    def __init__(self) -> None:
        self.now = 0.0


class Cluster:
    """API store + controllers. Mutate only through add/apply/delete and the fault-injection methods."""

    def __init__(self, config: Optional[ClusterConfig] = None) -> None:
        self.config = config or ClusterConfig()
        self.rng = random.Random(self.config.seed)
        self.clock = Clock()
        self.event_log = EventLog()
        self._names: dict[str, str] = {}               # Cluster._shared_name
        self.notices: list[str] = []                   # loader notices and warnings (skipped kinds, ...)
        self.skipped: list[str] = []                   # one line per object the loader skipped (shown with -v)
        self._watchers: list[Watcher] = []
        self._shared = False                            # read-only, shared by emulator copies (share())
        self._namespaces: dict[str, Namespace] = {}
        self._nodes: dict[str, Node] = {}
        self._pods: dict[str, Pod] = {}
        self._services: dict[str, Service] = {}
        self._slices: dict[str, EndpointSlice] = {}
        self._workloads: dict[str, Deployment] = {}
        self._pod_ipam: dict[str, PodIPAllocator] = {}
        self._deleting: dict[str, float] = {}          # pod key -> time its deletion completes (inf: awaiting kubelet)
        self._deletion_grace: dict[str, float] = {}    # pod key -> metadata.deletionGracePeriodSeconds
        self._not_ready_since: dict[str, float] = {}   # node -> time it went NotReady
        self._cidrs = NodeCIDRAllocator(self.config.pod_cidr or self.config.cluster_cidr, self.config.node_cidr_mask)
        self._cluster_ips = ClusterIPAllocator(self.config.service_cidr, self.rng)
        lo, hi = self.config.node_port_range
        self._node_ports = PortAllocator(lo, hi, self.rng)
        self._lb_ips = LoadBalancerIPAllocator(self.config.load_balancer_pool)
        self._order: dict[str, int] = {}                # pod key -> creation serial
        self._serial = 0
        self._dirty: set[str] = set()                  # service keys whose slices need reconciling
        # Indexes (kept in step with the store) so that 10,000 Services and 50,000 pods stay cheap.
        # Their member sets are dicts with None values: 232 bytes at five members where a set takes 728.
        self._pod_labels: dict[tuple[str, str, str], dict[str, None]] = {}     # (ns, key, value) -> pod keys
        self._svc_labels: dict[tuple[str, str, str], dict[str, None]] = {}     # selector item -> service keys
        self._pods_by_owner: dict[tuple[str, str, str], dict[str, None]] = {}  # (ns, kind, name) -> pod keys
        self._pods_by_ip: dict[str, str] = {}                           # pod IP -> pod key (not hostNetwork)
        self._pods_per_node: dict[str, int] = {}                        # bound pods, as the scheduler counts
        self._host_port_pods: dict[str, None] = {}                      # pods mapping a hostPort, in creation order
        self._pending: dict[str, None] = {}                             # pods not yet running, in creation order
        self._slices_by_svc: dict[str, dict[str, EndpointSlice]] = {}   # "ns/service" -> slice key -> slice
        self._unschedulable_reported: set[str] = set()
        self._sandbox_failed: set[str] = set()
        self._proxy_dirty = False
        for ns in ("default", "kube-system"):
            self._store_namespace(Namespace(ns))

    # ------------------------------------------------------------------ queries
    def namespaces(self) -> list[Namespace]:
        return list(self._namespaces.values())

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def node(self, name: str) -> Optional[Node]:
        return self._nodes.get(name)

    def pods(self, namespace: Optional[str] = None) -> list[Pod]:
        return [p for p in self._pods.values() if namespace is None or p.namespace == namespace]

    def pod(self, namespace: str, name: str) -> Optional[Pod]:
        return self._pods.get(f"{namespace}/{name}")

    def services(self, namespace: Optional[str] = None) -> list[Service]:
        return [s for s in self._services.values() if namespace is None or s.namespace == namespace]

    def service(self, namespace: str, name: str) -> Optional[Service]:
        return self._services.get(f"{namespace}/{name}")

    def workloads(self, namespace: Optional[str] = None) -> list[Deployment]:
        return [w for w in self._workloads.values() if namespace is None or w.namespace == namespace]

    def endpoint_slices(self, namespace: Optional[str] = None,
                        service: Optional[str] = None) -> list[EndpointSlice]:
        if namespace is not None and service is not None:
            return list(self._slices_by_svc.get(f"{namespace}/{service}", {}).values())
        return [s for s in self._slices.values()
                if (namespace is None or s.namespace == namespace)
                and (service is None or s.service_name == service)]

    def host_port_pods(self) -> list[Pod]:
        """Pods with a containerPort that maps a hostPort, in creation order (what CNI portmap sees)."""
        return [self._pods[k] for k in self._host_port_pods]

    def pod_by_ip(self, ip: str) -> Optional[Pod]:
        key = self._pods_by_ip.get(ip)
        return self._pods[key] if key else None

    def select_pods(self, namespace: str, selector: dict[str, str]) -> list[Pod]:
        """Pods of `namespace` whose labels match every item of `selector`, by name.
        An empty selector selects nothing (a Service's empty selector is treated as none)."""
        if not selector:
            return []
        keys: Optional[set[str]] = None
        for k, v in selector.items():
            found = self._pod_labels.get((namespace, k, v))
            if not found:
                return []
            keys = set(found) if keys is None else keys & found.keys()
            if not keys:
                return []
        return [self._pods[k] for k in sorted(keys or ())]

    # ------------------------------------------------------------------ watch / events
    def watch(self, callback: Watcher) -> None:
        if not self._shared:
            self._watchers.append(callback)

    def share(self) -> None:
        """Declare this cluster read-only from now on, shared by several emulators
        (``netsim.api.Emulator.copy``): it will never change again, so it keeps no watchers and
        ``watch`` registers none. Whoever wants to change it works on a copy (pickle or snapshot)."""
        self._shared = True
        self._watchers = []

    def __getstate__(self) -> dict:
        """Copies and pickles of a cluster carry its objects, clock and RNG, not its watchers
        (callbacks belong to whoever registered them in this process); a copy is not shared."""
        state = self.__dict__.copy()
        state["_watchers"] = []
        state["_shared"] = False
        return state

    def snapshot(self) -> "Cluster":
        """An independent deep copy (no watchers): what-if analysis without touching this cluster."""
        return copy.deepcopy(self)

    def _notify(self, type_: str, kind: str, obj) -> None:
        if kind in ("Service", "EndpointSlice", "Node"):
            self._proxy_dirty = True
        ev = WatchEvent(type_, kind, obj)
        for w in list(self._watchers):
            w(ev)

    def record(self, reason: str, obj: str, message: str, source: str,
               namespace: str = "", type_: str = "Normal", *, template: Optional[str] = None,
               arg: str = "", prefix: str = "") -> None:
        """Append an event; ``template`` and ``arg``: a message written out when read (``Event``);
        ``prefix``: ``obj`` is a name and the event's object ``prefix + obj`` (``EventLog.record``)."""
        self.event_log.record(self.clock.now, type_, reason, obj, namespace, self._shared_name(source),
                              message, template=template, arg=arg, prefix=prefix)

    def _shared_name(self, text: str) -> str:
        """One string object per distinct component or controller name (``kubelet/node-7``,
        ``replicaset/app-7-6b7d78b79d``) however many events name it."""
        got = self._names.get(text)
        if got is None:
            got = self._names[text] = text
        return got

    # ------------------------------------------------------------------ apply
    def add(self, obj) -> None:
        self.apply([obj])

    def apply(self, objs: Iterable, origins: Optional[list[str]] = None) -> None:
        """Create objects as `kubectl apply` would, then let the controllers reconcile.

        `origins` (one per object, e.g. "app.yaml document 3") prefixes any refusal."""
        objs = list(objs)
        origins = origins or [""] * len(objs)
        order = {Namespace: 0, Node: 1, Service: 2, Deployment: 3, Pod: 4, EndpointSlice: 5}
        for obj, origin in sorted(zip(objs, origins), key=lambda t: order.get(type(t[0]), 9)):
            try:
                self._create(obj)
            except (AllocationError, ClusterError) as e:
                prefix = f"{origin}: " if origin else ""
                raise ClusterError(f"{prefix}{_describe(obj)}: {e}") from None
        self._reconcile()

    def _create(self, obj) -> None:
        if isinstance(obj, Namespace):
            if obj.name not in self._namespaces:
                self._store_namespace(obj)
        elif isinstance(obj, Node):
            self._create_node(obj)
        elif isinstance(obj, Service):
            self._create_service(obj)
        elif isinstance(obj, Deployment):
            self._create_workload(obj)
        elif isinstance(obj, Pod):
            self._create_pod(obj, source="kube-apiserver")
        elif isinstance(obj, EndpointSlice):
            self._create_slice(obj)
        else:
            raise ClusterError(f"unsupported object {type(obj).__name__}")

    def _store_namespace(self, ns: Namespace) -> None:
        self._namespaces[ns.name] = ns
        self._notify("ADDED", "Namespace", ns)

    def _require_namespace(self, ns: str) -> None:
        if ns not in self._namespaces:
            raise ClusterError(f'namespaces "{ns}" not found')

    def _create_node(self, node: Node) -> None:
        if node.name in self._nodes:
            raise ClusterError(f'nodes "{node.name}" already exists')
        if any(n.ip == node.ip for n in self._nodes.values()):
            raise ClusterError(f"node IP {node.ip} is already used by another node")
        node.pod_cidr = node.pod_cidr or self._cidrs.allocate()
        self._cidrs.used.add(node.pod_cidr)
        node.last_heartbeat = self.clock.now
        self._nodes[node.name] = node
        self._pod_ipam[node.name] = PodIPAllocator(node.pod_cidr)
        self._notify("ADDED", "Node", node)
        self.record("RegisteredNode", f"node/{node.name}",
                    f"Node {node.name} event: Registered Node {node.name} in Controller (podCIDR {node.pod_cidr})",
                    "node-controller")

    def _create_service(self, svc: Service) -> None:
        self._require_namespace(svc.namespace)
        if svc.key in self._services:
            raise ClusterError(f'services "{svc.name}" already exists')
        svc = _copy_service(svc)
        allocated: list = []
        try:
            self._allocate_service(svc, allocated)
        except (AllocationError, ClusterError):
            for kind, v in allocated:
                {"ip": self._cluster_ips.release, "port": self._node_ports.release,
                 "lb": self._lb_ips.release}[kind](v)
            raise
        self._services[svc.key] = svc
        for k, v in (svc.selector or {}).items():
            self._svc_labels.setdefault((svc.namespace, k, v), {})[svc.key] = None
        self._notify("ADDED", "Service", svc)
        detail = svc.cluster_ip if svc.type != "ExternalName" else svc.external_name
        self.record("Created", f"service/{svc.name}", f"Allocated {svc.type} {detail}"
                    + "".join(f" {p.port}:{p.node_port}/{p.protocol}" if p.node_port else f" {p.port}/{p.protocol}"
                              for p in svc.ports), "kube-apiserver", svc.namespace)
        if svc.selector is not None:
            self._dirty.add(svc.key)

    def _allocate_service(self, svc: Service, allocated: list) -> None:
        if svc.type == "ExternalName":
            svc.cluster_ip = None
            return
        if svc.cluster_ip in (None, ""):
            svc.cluster_ip = self._cluster_ips.allocate()
            allocated.append(("ip", svc.cluster_ip))
        elif svc.cluster_ip != "None":
            try:
                self._cluster_ips.reserve(svc.cluster_ip)
            except AllocationError as e:
                raise ClusterError(f"spec.clusterIP: Invalid value: {svc.cluster_ip!r}: {e}") from None
            allocated.append(("ip", svc.cluster_ip))
        for i, p in enumerate(svc.ports):
            if p.node_port and svc.type not in ("NodePort", "LoadBalancer"):
                raise ClusterError(f"spec.ports[{i}].nodePort: Forbidden: may not be used when `type` is '{svc.type}'")
        if svc.type in ("NodePort", "LoadBalancer"):
            self._allocate_node_ports(svc, allocated)
        if svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local":
            # alloc.go allocHealthCheckNodePort (apiservice.NeedsHealthCheck): the requested one, or any
            hc = svc.health_check_node_port
            try:
                if hc:
                    self._node_ports.reserve(hc)
                else:
                    svc.health_check_node_port = hc = self._node_ports.allocate()
            except AllocationError as e:
                what = f"requested HealthCheck NodePort {hc}" if hc else "a HealthCheck NodePort 0"
                raise ClusterError(f"Internal error occurred: failed to allocate {what}: {e}") from None
            allocated.append(("port", hc))
        if svc.type == "LoadBalancer":
            if svc.load_balancer_ips:
                for ip in svc.load_balancer_ips:
                    self._lb_ips.reserve(ip)
            else:
                try:
                    svc.load_balancer_ips = [self._lb_ips.allocate()]
                    allocated.append(("lb", svc.load_balancer_ips[0]))
                except AllocationError as e:
                    # as MetalLB does: the Service is accepted, its EXTERNAL-IP stays <pending>
                    self.record("AllocationFailed", f"service/{svc.name}", f"Failed to allocate IP for "
                                f'"{svc.key}": {e}', "netsim-lb-controller", svc.namespace, "Warning")

    def _allocate_node_ports(self, svc: Service, allocated: list) -> None:
        """kube-apiserver's initNodePorts (pkg/registry/core/service/storage/alloc.go): node ports go
        per service port *number*. The first port of a number takes the nodePort requested by any port
        of that number (findRequestedNodePort) or the next free one; a later port of the same number
        (another protocol) without one reuses it, one that names a different nodePort allocates that too.
        Without ``allocateLoadBalancerNodePorts`` only requested nodePorts are allocated."""
        allocate_new = svc.type == "NodePort" or svc.allocate_load_balancer_node_ports
        by_number: dict[int, int] = {}
        for i, p in enumerate(svc.ports):
            if not p.node_port and not allocate_new:
                continue
            have = by_number.get(p.port, 0)
            if have and (not p.node_port or p.node_port == have):
                p.node_port = have
                continue
            wanted = p.node_port or (0 if have else next(
                (q.node_port for q in svc.ports if q.port == p.port and q.node_port), 0))
            if wanted:
                try:
                    self._node_ports.reserve(wanted)
                except AllocationError as e:
                    raise ClusterError(f"spec.ports[{i}].nodePort: Invalid value: {wanted}: {e}") from None
                p.node_port = wanted
            else:
                try:
                    p.node_port = self._node_ports.allocate()
                except AllocationError as e:
                    raise ClusterError(f"Internal error occurred: failed to allocate a nodePort: {e}") from None
            allocated.append(("port", p.node_port))
            by_number.setdefault(p.port, p.node_port)

    def _create_workload(self, w: Deployment) -> None:
        self._require_namespace(w.namespace)
        if w.key in self._workloads:
            raise ClusterError(f'{w.kind.lower()}s.apps "{w.name}" already exists')
        self._workloads[w.key] = w
        self._notify("ADDED", w.kind, w)
        if w.kind == "Deployment":
            self.record("ScalingReplicaSet", f"deployment/{w.name}",
                        f"Scaled up replica set {w.name}-{w.template_hash} to {w.replicas}",
                        "deployment-controller", w.namespace)
        self._sync_workload(w)

    def _sync_workload(self, w: Deployment) -> None:
        """ReplicaSet/StatefulSet controller: create or delete pods to reach spec.replicas."""
        owned = [self._pods[k] for k in self._pods_by_owner.get((w.namespace, w.kind, w.name), ())]
        owned.sort(key=lambda p: self._order[p.key])
        mine = [p for p in owned if not p.terminating]
        if w.kind == "DaemonSet":
            self._sync_daemonset(w, mine)
            return
        if w.kind == "StatefulSet":
            have = {p.name for p in owned}
            shape = _replica_shape(w)
            for i in range(w.replicas):
                name = f"{w.name}-{i}"
                if name not in have:
                    pod = self._pod_from_template(w, name, shape)
                    pod.hostname, pod.subdomain = name, w.service_name
                    self._create_pod(pod, source="statefulset-controller")
            for p in sorted(mine, key=lambda p: -int(p.name.rsplit("-", 1)[1])):
                if int(p.name.rsplit("-", 1)[1]) >= w.replicas:
                    self._start_deletion(p)
            return
        base = f"{w.name}-{w.template_hash}" if w.kind == "Deployment" else w.name
        rs = self._shared_name(f"replicaset/{base}")
        shape = _replica_shape(w)
        for _ in range(w.replicas - len(mine)):
            name = f"{base}-{eps.random_suffix(self.rng)}"
            while f"{w.namespace}/{name}" in self._pods:
                name = f"{base}-{eps.random_suffix(self.rng)}"
            self.record("SuccessfulCreate", rs, "", "replicaset-controller", w.namespace,
                        template="Created pod: {arg}", arg=name)
            self._create_pod(self._pod_from_template(w, name, shape), source="replicaset-controller")
        if len(mine) > w.replicas:
            # The ReplicaSet controller deletes the newest / least-ready pods first; we take the last created.
            for p in mine[w.replicas:]:
                self._start_deletion(p)

    def _sync_daemonset(self, w: Deployment, mine: list[Pod]) -> None:
        """The DaemonSet controller (pkg/controller/daemon/daemon_controller.go manage): one pod per
        node that should run it (NodeShouldRunDaemonPod: the template's nodeName, nodeSelector, and
        taints tolerated with the daemon tolerations added), none elsewhere. Each pod carries node
        affinity to its node (util.ReplaceDaemonSetPodNodeNameNodeAffinity) and the default scheduler
        binds it. A pod's generated name suffix is a hash of (DaemonSet, node, attempt) rather than a
        draw from the cluster's RNG, so a DaemonSet leaves every other seeded draw where it was."""
        template = _copy_pod(w.template)
        template.tolerations = list(template.tolerations)          # (its own: added to below)
        for t in DAEMON_TOLERATIONS + ((HOST_NETWORK_DAEMON_TOLERATION,) if template.host_network else ()):
            if not any(x.key == t.key and x.effect == t.effect for x in template.tolerations):
                template.tolerations.append(t)
        have: dict[str, list[Pod]] = {}
        for p in mine:
            have.setdefault(p.required_node or p.node_name or "", []).append(p)
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            should_run = (not template.node_name or template.node_name == node.name) \
                and all(node.labels.get(k) == v for k, v in template.node_selector.items()) \
                and untolerated_taint(template, node) is None
            pods = have.pop(node.name, [])
            if should_run and not pods:
                pod = _copy_pod(template)
                attempt = 0
                while True:
                    digest = hashlib.sha256(f"{w.key}/{node.name}/{attempt}".encode()).digest()
                    name = f"{w.name}-{eps.suffix_from_bytes(digest)}"
                    if f"{w.namespace}/{name}" not in self._pods:
                        break
                    attempt += 1
                pod.name, pod.namespace, pod.owner = name, w.namespace, (w.kind, w.name)
                pod.node_name, pod.required_node = None, node.name
                pod.uid = digest[8:16].hex()
                pod.labels = {**pod.labels, "controller-revision-hash": w.template_hash or "1",
                              "pod-template-generation": "1"}
                self.record("SuccessfulCreate", f"daemonset/{w.name}", f"Created pod: {name}",
                            "daemonset-controller", w.namespace)
                self._create_pod(pod, source="daemonset-controller")
            elif not should_run:
                for p in pods:
                    self.record("SuccessfulDelete", f"daemonset/{w.name}", f"Deleted pod: {p.name}",
                                "daemonset-controller", w.namespace)
                    self._start_deletion(p)
        for pods in have.values():            # pods of nodes that no longer exist
            for p in pods:
                self._start_deletion(p)

    def _pod_from_template(self, w: Deployment, name: str, shape: tuple[dict[str, str], tuple[str, str]]) -> Pod:
        """A pod of ``w`` named ``name``; ``shape``: ``_replica_shape(w)``, shared by the pods of one sync."""
        pod = _copy_pod(w.template)
        pod.name, pod.namespace = name, w.namespace
        pod.labels, pod.owner = shape
        return pod

    def _create_pod(self, pod: Pod, source: str) -> None:
        self._require_namespace(pod.namespace)
        if pod.key in self._pods:
            raise ClusterError(f'pods "{pod.name}" already exists')
        if pod.node_name and pod.node_name not in self._nodes:
            raise ClusterError(f'spec.nodeName: node "{pod.node_name}" not found')
        pod.phase, pod.ip = "Pending", None
        pod.uid = pod.uid or f"{self.rng.getrandbits(64):016x}"
        self._store_pod(pod)
        self._notify("ADDED", "Pod", pod)
        self._mark_services_for(pod)

    def _store_pod(self, pod: Pod) -> None:
        self._pods[pod.key] = pod
        self._order[pod.key] = self._serial
        self._serial += 1
        for k, v in pod.labels.items():
            self._pod_labels.setdefault((pod.namespace, k, v), {})[pod.key] = None
        if pod.owner:
            self._pods_by_owner.setdefault((pod.namespace, pod.owner[0], pod.owner[1]), {})[pod.key] = None
        if pod.node_name:
            self._pods_per_node[pod.node_name] = self._pods_per_node.get(pod.node_name, 0) + 1
        if any(cp.host_port for cp in pod.ports):
            self._host_port_pods[pod.key] = None
        self._pending[pod.key] = None

    def _remove_pod(self, key: str) -> Pod:
        pod = self._pods.pop(key)
        del self._order[key]
        for k, v in pod.labels.items():
            self._discard(self._pod_labels, (pod.namespace, k, v), key)
        if pod.owner:
            self._discard(self._pods_by_owner, (pod.namespace, pod.owner[0], pod.owner[1]), key)
        if pod.node_name:
            self._pods_per_node[pod.node_name] -= 1
        if pod.ip and self._pods_by_ip.get(pod.ip) == key:
            del self._pods_by_ip[pod.ip]
        self._pending.pop(key, None)
        self._host_port_pods.pop(key, None)
        self._unschedulable_reported.discard(key)
        self._sandbox_failed.discard(key)
        return pod

    @staticmethod
    def _discard(index: dict, k, member: str) -> None:
        members = index.get(k)
        if members is not None:
            members.pop(member, None)
            if not members:
                del index[k]

    def _store_slice(self, s: EndpointSlice) -> None:
        self._slices[s.key] = s
        self._slices_by_svc.setdefault(f"{s.namespace}/{s.service_name}", {})[s.key] = s

    def _remove_slice(self, s: EndpointSlice) -> None:
        del self._slices[s.key]
        by_svc = self._slices_by_svc.get(f"{s.namespace}/{s.service_name}", {})
        by_svc.pop(s.key, None)
        if not by_svc:
            self._slices_by_svc.pop(f"{s.namespace}/{s.service_name}", None)

    def _create_slice(self, s: EndpointSlice) -> None:
        self._require_namespace(s.namespace)
        if s.key in self._slices:
            raise ClusterError(f'endpointslices.discovery.k8s.io "{s.name}" already exists')
        svc = self._services.get(f"{s.namespace}/{s.service_name}")
        if svc is not None and svc.selector is not None:
            # The controller leaves slices it does not manage alone; kube-proxy merges every slice
            # labelled with the Service's name, so these endpoints are used alongside the managed ones.
            self.record("UnmanagedSlice", f"endpointslice/{s.name}",
                        f"Service {s.service_name} has a selector; this slice (managed-by {s.managed_by}) is "
                        "not managed by the EndpointSlice controller and is used alongside its slices",
                        "netsim", s.namespace, "Warning")
        self._store_slice(s)
        self._notify("ADDED", "EndpointSlice", s)

    # ------------------------------------------------------------------ reconcile loop
    def _mark_services_for(self, pod: Pod) -> None:
        seen: set[str] = set()
        for k, v in pod.labels.items():
            for key in self._svc_labels.get((pod.namespace, k, v), ()):
                if key in seen:
                    continue
                seen.add(key)
                svc = self._services.get(key)
                if svc is not None and svc.selector and eps.selector_matches(svc.selector, pod.labels):
                    self._dirty.add(key)

    def _reconcile(self) -> None:
        self._schedule_pending()
        self._reconcile_slices()
        if self._proxy_dirty:
            self._proxy_dirty = False
            n_eps = sum(len(s.endpoints) for s in self._slices.values())
            for node in self._nodes.values():
                if node.running:
                    self.record("SyncProxyRules", f"node/{node.name}",
                                f"kube-proxy ({self.config.proxy_mode}) resynced: {len(self._services)} services, "
                                f"{n_eps} endpoints", f"kube-proxy/{node.name}")

    def _schedule_pending(self) -> None:
        counts = self._pods_per_node
        nodes = list(self._nodes.values())
        index_by_key: dict[tuple, ScoringIndex] = {}     # node state is fixed during one pass
        for key in list(self._pending):
            pod = self._pods[key]
            if pod.phase != "Pending" or pod.terminating:
                del self._pending[key]
                continue
            if not pod.node_name:
                if pod.required_node is not None:
                    # a DaemonSet pod: its node affinity names one node, the Filter phase looks at that
                    # one and spreading has nothing to choose between (not every node and every sibling
                    # per pod: that was quadratic in the nodes)
                    only = self._nodes.get(pod.required_node)
                    index = ScoringIndex(feasible_nodes(pod, [only] if only is not None else []), counts)
                    siblings: dict[str, int] = {}
                else:
                    fkey = filter_key(pod)
                    index = index_by_key.get(fkey)
                    if index is None:
                        index = index_by_key[fkey] = ScoringIndex(feasible_nodes(pod, nodes), counts)
                    siblings = self._siblings_per_node(pod)
                used = self._used_host_ports() if wanted_host_ports(pod) else None
                chosen = schedule(pod, nodes, counts, self.rng, siblings, index=index, used_host_ports=used)
                if chosen is None:
                    if key not in self._unschedulable_reported:
                        self._unschedulable_reported.add(key)
                        self.record("FailedScheduling", f"pod/{pod.name}", unschedulable_message(pod, nodes, used),
                                    "default-scheduler", pod.namespace, "Warning")
                    continue
                pod.node_name = chosen
                counts[chosen] = counts.get(chosen, 0) + 1
                for other in index_by_key.values():
                    other.placed(chosen)
                self.record("Scheduled", pod.name, "", "default-scheduler", pod.namespace,
                            template="Successfully assigned {namespace}/{name} to {arg}", arg=chosen,
                            prefix="pod/")
                self._kubelet_start(pod)
                continue
            self._kubelet_start(pod)

    def _used_host_ports(self) -> dict[str, set]:
        """Per node, the host ports its bound pods hold (the NodePorts filter's view)."""
        out: dict[str, set] = {}
        for p in self.host_port_pods():
            if p.node_name:
                out.setdefault(p.node_name, set()).update(wanted_host_ports(p))
        return out

    def _siblings_per_node(self, pod: Pod) -> dict[str, int]:
        """Bound pods with the same owner as `pod`, per node (what default topology spreading counts)."""
        out: dict[str, int] = {}
        if pod.owner:
            for key in self._pods_by_owner.get((pod.namespace, pod.owner[0], pod.owner[1]), ()):
                other = self._pods[key]
                if other.node_name and not other.terminating:
                    out[other.node_name] = out.get(other.node_name, 0) + 1
        return out

    def _kubelet_start(self, pod: Pod) -> None:
        node = self._nodes[pod.node_name]
        if not node.running:
            return
        if pod.host_network:
            pod.ip = node.ip
        else:
            ipam = self._pod_ipam[node.name]
            try:
                pod.ip = ipam.allocate()
            except AllocationError:
                # the CNI ADD fails; the kubelet retries sandbox creation, the pod stays ContainerCreating
                if pod.key not in self._sandbox_failed:
                    self._sandbox_failed.add(pod.key)
                    first = ipaddress.ip_address(int(ipam.network.network_address) + 2)
                    last = ipaddress.ip_address(int(ipam.network.broadcast_address) - 1)
                    self.record("FailedCreatePodSandBox", f"pod/{pod.name}",
                                'Failed to create pod sandbox: plugin type="host-local" failed (add): failed to '
                                f"allocate for range 0: no IP addresses available in range set: {first}-{last}",
                                f"kubelet/{node.name}", pod.namespace, "Warning")
                return
            self._sandbox_failed.discard(pod.key)
        pod.phase = "Running"
        self._pending.pop(pod.key, None)
        if not pod.host_network:
            self._pods_by_ip[pod.ip] = pod.key
        self._notify("MODIFIED", "Pod", pod)
        self.record("Started", pod.name, "", f"kubelet/{node.name}", pod.namespace,
                    template="Started pod sandbox with IP {arg} (hostNetwork)" if pod.host_network
                    else "Started pod sandbox with IP {arg}", arg=pod.ip, prefix="pod/")
        self._mark_services_for(pod)

    def _reconcile_slices(self) -> None:
        if not self._dirty:
            return
        zones = {n.name: n.zone for n in self._nodes.values()}
        for key in sorted(self._dirty):
            svc = self._services.get(key)
            if svc is None or svc.selector is None or svc.type == "ExternalName":
                continue
            existing = [s for s in self._slices_by_svc.get(key, {}).values() if s.managed_by == eps.MANAGED_BY]
            desired = eps.build_slices(svc, self.select_pods(svc.namespace, svc.selector), zones, existing, self.rng)
            self._replace_slices(svc, existing, desired)
        self._dirty.clear()

    def _replace_slices(self, svc: Service, existing: list[EndpointSlice], desired: list[EndpointSlice]) -> None:
        old = {s.name: s for s in existing}
        for s in desired:
            prev = old.pop(s.name, None)
            if prev == s:
                continue
            self._store_slice(s)
            self._notify("MODIFIED" if prev else "ADDED", "EndpointSlice", s)
            ready = sum(1 for e in s.endpoints if e.ready)
            self.record("EndpointSliceUpdated" if prev else "EndpointSliceCreated", f"endpointslice/{s.name}",
                        f"{svc.name}: {ready}/{len(s.endpoints)} endpoints ready "
                        f"[{', '.join(e.addresses[0] + _condition_note(e) for e in s.endpoints)}]",
                        "endpointslice-controller", svc.namespace)
        for s in old.values():
            self._remove_slice(s)
            self._notify("DELETED", "EndpointSlice", s)

    # ------------------------------------------------------------------ deletion
    def delete_pod(self, namespace: str, name: str, grace_period: float = TERMINATION_GRACE_PERIOD,
                   force: bool = False) -> None:
        """`kubectl delete pod`: the pod terminates (its endpoint is terminating: not ready, serving while
        Ready) until its kubelet has stopped the containers — `grace_period` seconds — and then goes; a
        ReplicaSet creates the replacement at once, a StatefulSet only once the old pod object is gone.

        The kubelet confirms the deletion, so a pod on a stopped node stays Terminating until the node
        is back. `force=True` (or grace_period 0) is `kubectl delete --force --grace-period=0`: the
        object goes at once, whatever its node (the containers may still be running there)."""
        pod = self._pods.get(f"{namespace}/{name}")
        if pod is None:
            raise ClusterError(f'pods "{name}" not found in namespace {namespace}')
        if grace_period < 0:
            raise ClusterError(f"gracePeriodSeconds: Invalid value: {grace_period}: must be >= 0")
        self._start_deletion(pod, 0.0 if force else grace_period)
        owner = pod.owner and self._workloads.get(f"{namespace}/{pod.owner[1]}")
        if owner and owner.kind != "StatefulSet":
            self._sync_workload(owner)
        self._finish_deletions()
        self._reconcile()

    def _start_deletion(self, pod: Pod, grace: float = TERMINATION_GRACE_PERIOD) -> None:
        """Set the deletion timestamp (pod strategy CheckGracefulDelete: an unscheduled or finished pod
        goes at once). A second delete may shorten the grace period, never lengthen it."""
        if not pod.node_name or pod.phase in ("Failed", "Succeeded"):
            grace = 0.0
        if pod.terminating:
            if grace >= self._deletion_grace[pod.key]:
                return
            self._deletion_grace[pod.key] = grace
            if grace <= 0:
                self._deleting[pod.key] = self.clock.now
            elif self._deleting[pod.key] != AWAITING_KUBELET:
                self._deleting[pod.key] = min(self._deleting[pod.key], self.clock.now + grace)
            return
        pod.terminating = True
        self._deletion_grace[pod.key] = grace
        node = self._nodes.get(pod.node_name or "")
        if grace <= 0:
            self._deleting[pod.key] = self.clock.now          # removed from the store at once
        elif node is not None and node.running:
            self._deleting[pod.key] = self.clock.now + grace
        else:
            self._deleting[pod.key] = AWAITING_KUBELET        # nobody can stop the containers and confirm
        if node is not None and node.running:
            self._record_killing(pod, grace)
        self._notify("MODIFIED", "Pod", pod)
        self._mark_services_for(pod)

    def _record_killing(self, pod: Pod, grace: float) -> None:
        self.record("Killing", f"pod/{pod.name}", f"Stopping container (grace period {grace:g}s)",
                    f"kubelet/{pod.node_name}", pod.namespace)

    def _finish_deletions(self) -> None:
        """The kubelet reports the containers stopped and deletes the pod object (grace 0)."""
        for key, when in list(self._deleting.items()):
            if when > self.clock.now:
                continue
            pod = self._pods[key]
            node = self._nodes.get(pod.node_name or "")
            if self._deletion_grace[key] > 0 and node is not None and not node.running:
                self._deleting[key] = AWAITING_KUBELET        # the node stopped mid-termination
                continue
            del self._deleting[key]
            del self._deletion_grace[key]
            pod = self._remove_pod(key)
            if pod.ip and pod.node_name and not pod.host_network:
                self._pod_ipam[pod.node_name].release(pod.ip)
            self._notify("DELETED", "Pod", pod)
            self._mark_services_for(pod)
            owner = pod.owner and self._workloads.get(f"{pod.namespace}/{pod.owner[1]}")
            if owner and owner.kind == "StatefulSet":
                self._sync_workload(owner)

    def delete_workload(self, namespace: str, name: str, kind: str) -> None:
        """`kubectl delete deployment|replicaset|statefulset NAME`: the object goes, and the garbage
        collector deletes the pods it owns (each terminating with its grace period)."""
        w = self._workloads.get(f"{namespace}/{name}")
        if w is None or w.kind != kind:
            raise ClusterError(f'{kind.lower()}s.apps "{name}" not found in namespace {namespace}')
        del self._workloads[w.key]
        self._notify("DELETED", w.kind, w)
        for key in sorted(self._pods_by_owner.get((namespace, w.kind, w.name), ()), key=lambda k: self._order[k]):
            pod = self._pods[key]
            if not pod.terminating:
                self._start_deletion(pod)
        self._finish_deletions()
        self._reconcile()

    def delete_service(self, namespace: str, name: str) -> None:
        svc = self._services.pop(f"{namespace}/{name}", None)
        if svc is None:
            raise ClusterError(f'services "{name}" not found in namespace {namespace}')
        for k, v in (svc.selector or {}).items():
            self._discard(self._svc_labels, (namespace, k, v), svc.key)
        self._cluster_ips.release(svc.cluster_ip)
        for p in svc.ports:
            self._node_ports.release(p.node_port)
        self._node_ports.release(svc.health_check_node_port)
        for ip in svc.load_balancer_ips:
            self._lb_ips.release(ip)
        for s in self.endpoint_slices(namespace, name):
            if s.managed_by == eps.MANAGED_BY:
                self._remove_slice(s)
                self._notify("DELETED", "EndpointSlice", s)
        self._notify("DELETED", "Service", svc)
        self._reconcile()

    # ------------------------------------------------------------------ faults and the clock
    def set_pod_ready(self, namespace: str, name: str, ready: bool) -> None:
        """A readiness probe result: flips the pod's Ready condition."""
        pod = self._pods.get(f"{namespace}/{name}")
        if pod is None:
            raise ClusterError(f'pods "{name}" not found in namespace {namespace}')
        if pod.ready != ready:
            pod.ready = ready
            self._notify("MODIFIED", "Pod", pod)
            self.record("Readiness", f"pod/{name}", f"Readiness probe {'succeeded' if ready else 'failed'}",
                        f"kubelet/{pod.node_name}", namespace, "Normal" if ready else "Warning")
            self._mark_services_for(pod)
            self._reconcile()

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        w = self._workloads.get(f"{namespace}/{name}")
        if w is None:
            raise ClusterError(f'workload "{name}" not found in namespace {namespace}')
        if w.kind == "DaemonSet":       # apps/v1 DaemonSet has no scale subresource
            raise ClusterError(f'daemonsets.apps "{name}": a DaemonSet runs one pod per eligible node and '
                               "cannot be scaled")
        if replicas < 0:
            raise ClusterError(f"spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")
        was, w.replicas = w.replicas, replicas
        if w.kind == "Deployment":      # deployment controller's event (pkg/controller/deployment/sync.go scaleReplicaSet)
            self.record("ScalingReplicaSet", f"deployment/{name}",
                        f"Scaled {'up' if replicas > was else 'down'} replica set {w.name}-{w.template_hash} "
                        f"from {was} to {replicas}", "deployment-controller", namespace)
        else:
            self.record("ScalingReplicaSet", f"{w.kind.lower()}/{name}", f"Scaled to {replicas}",
                        f"{w.kind.lower()}-controller", namespace)
        self._sync_workload(w)
        self._finish_deletions()                       # unscheduled pods scaled away go at once
        self._reconcile()

    def stop_node(self, name: str) -> None:
        """The kubelet stops reporting (node crash, network partition). Nothing changes until the
        node lifecycle controller notices the missing heartbeats."""
        node = self._require_node(name)
        node.running = False
        self.record("NodeStopped", f"node/{name}", "kubelet stopped posting node status (fault injected)",
                    "netsim", type_="Warning")

    def start_node(self, name: str) -> None:
        """The kubelet comes back: it heartbeats at once and the node turns Ready. The taint eviction
        controller cancels the evictions it had scheduled (the unreachable taint is gone); the pods
        that are not terminating become ready; pods deleted meanwhile (evicted, or `kubectl delete`)
        are killed now with their deletion grace period, after which the kubelet deletes them."""
        node = self._require_node(name)
        node.running = True
        node.last_heartbeat = self.clock.now
        scheduled_eviction = self._not_ready_since.pop(name, None) is not None
        if not node.ready:
            node.ready = True
            self._notify("MODIFIED", "Node", node)
            self.record("NodeReady", f"node/{name}", f"Node {name} status is now: NodeReady", f"kubelet/{name}")
        for pod in list(self._pods.values()):
            if pod.node_name != name:
                continue
            if pod.terminating:
                if self._deleting.get(pod.key) == AWAITING_KUBELET:
                    grace = self._deletion_grace[pod.key]
                    self._deleting[pod.key] = self.clock.now + grace
                    self._record_killing(pod, grace)
                continue
            if scheduled_eviction:
                self.record("TaintManagerEviction", f"pod/{pod.name}", f"Cancelling deletion of Pod {pod.key}",
                            TAINT_EVICTION_CONTROLLER, pod.namespace)
            if not pod.ready:
                pod.ready = True
                self._notify("MODIFIED", "Pod", pod)
                self._mark_services_for(pod)
        self._finish_deletions()
        self._reconcile()

    def _require_node(self, name: str) -> Node:
        node = self._nodes.get(name)
        if node is None:
            raise ClusterError(f'nodes "{name}" not found')
        return node

    def advance(self, seconds: float) -> None:
        """Run the clock forward. kubelets heartbeat every `heartbeat_interval` (10 s); the node
        lifecycle controller checks every 5 s and marks a node NotReady once its last heartbeat is
        more than node_monitor_grace_period (50 s) old, making its pods not ready; pods on a
        NotReady node are evicted pod_eviction_timeout (300 s, the unreachable taint's toleration)
        later: they turn Terminating (and stay so while their node is down), ReplicaSets replace
        them at once, StatefulSets once the old pod is gone; terminating pods on running nodes go
        after their grace period."""
        if seconds < 0:
            raise ValueError(f"advance: the clock only runs forward, got {seconds} s")
        end = self.clock.now + seconds
        while True:
            nxt = min(self._next_tick(self.clock.now), end)
            self.clock.now = nxt
            self._tick()
            if nxt >= end:
                break
        self._reconcile()

    @staticmethod
    def _next_tick(now: float) -> float:
        return (int(now // NODE_MONITOR_PERIOD) + 1) * NODE_MONITOR_PERIOD

    def _tick(self) -> None:
        now, cfg = self.clock.now, self.config
        on_tick = now % NODE_MONITOR_PERIOD == 0
        if on_tick and now % cfg.heartbeat_interval == 0:
            for node in self._nodes.values():
                if node.running:
                    node.last_heartbeat = now
        self._finish_deletions()
        if not on_tick:
            return
        for node in self._nodes.values():
            if node.ready and now - node.last_heartbeat > cfg.node_monitor_grace_period:
                node.ready = False
                self._not_ready_since[node.name] = now
                self._notify("MODIFIED", "Node", node)
                self.record("NodeNotReady", f"node/{node.name}", f"Node {node.name} status is now: NodeNotReady "
                            f"(last heartbeat at t+{node.last_heartbeat:g}s)", "node-controller", type_="Warning")
                for pod in self._pods.values():
                    if pod.node_name == node.name and pod.ready:
                        pod.ready = False
                        self._notify("MODIFIED", "Pod", pod)
                        self.record("NodeNotReady", f"pod/{pod.name}", "Node is not ready", "node-controller",
                                    pod.namespace, "Warning")
                        self._mark_services_for(pod)
            since = self._not_ready_since.get(node.name)
            if since is not None and now >= since + cfg.pod_eviction_timeout:
                self._evict(node)
        self._reconcile()

    def _evict(self, node: Node) -> None:
        """The taint eviction controller deletes every pod on the node whose toleration of the
        unreachable taint ran out (an ordinary delete: the pod's grace period). The kubelet is gone,
        so the pods stay Terminating until the node returns or someone force-deletes them;
        ReplicaSets replace them at once (terminating pods are not active), StatefulSets do not
        (a pod with the same identity is created only after the old object is gone)."""
        del self._not_ready_since[node.name]
        owners: dict[str, Deployment] = {}
        for pod in list(self._pods.values()):
            if pod.node_name != node.name or pod.terminating:
                continue
            if any(t.seconds is None and t.tolerates(UNREACHABLE_TAINT) for t in pod.tolerations):
                continue        # tolerates the unreachable taint for ever (DaemonSet and mirror pods)
            self.record("TaintManagerEviction", f"pod/{pod.name}", f"Marking for deletion Pod {pod.key}",
                        TAINT_EVICTION_CONTROLLER, pod.namespace)
            self._start_deletion(pod, TERMINATION_GRACE_PERIOD)
            owner = pod.owner and self._workloads.get(f"{pod.namespace}/{pod.owner[1]}")
            if owner:
                owners[owner.key] = owner
        self._finish_deletions()
        for w in owners.values():
            self._sync_workload(w)


def _condition_note(e) -> str:
    """How the event log marks an endpoint that is not ready."""
    if e.ready:
        return ""
    return "(terminating)" if e.terminating else "(not ready)"


def _copy_pod(template: Pod) -> Pod:
    """A new pod from a template. What it holds (labels, container ports, images, node selector,
    tolerations, listen annotation, DNS config) is shared with the template and every other pod
    made from it: the store's objects change only through its methods (``Cluster``), which assign
    new values and never change these in place; at 50,000 pods a copy of each cost ~20 MB."""
    return dataclasses.replace(template)


def _replica_shape(w: Deployment) -> tuple[dict[str, str], tuple[str, str]]:
    """The labels (a Deployment's pods: the template's plus pod-template-hash) and the owner
    reference of ``w``'s pods: one of each for all the pods one sync creates."""
    labels = {**w.template.labels, "pod-template-hash": w.template_hash} if w.kind == "Deployment" \
        else w.template.labels
    return labels, (w.kind, w.name)


def _copy_service(svc: Service) -> Service:
    """The stored copy of a Service (the caller's object is never mutated by allocation)."""
    return dataclasses.replace(
        svc, selector=dict(svc.selector) if svc.selector is not None else None,
        ports=[dataclasses.replace(p) for p in svc.ports], external_ips=list(svc.external_ips),
        load_balancer_ips=list(svc.load_balancer_ips),
        load_balancer_source_ranges=list(svc.load_balancer_source_ranges), labels=dict(svc.labels),
        ip_families=list(svc.ip_families))


def _describe(obj) -> str:
    kind = obj.kind if isinstance(obj, Deployment) else type(obj).__name__
    ns = getattr(obj, "namespace", None)
    name = getattr(obj, "name", None)
    if not isinstance(name, str):
        return kind
    return f"{kind} {ns + '/' if ns else ''}{name}"
