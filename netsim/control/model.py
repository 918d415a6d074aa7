"""Cluster model: plain dataclasses for the Kubernetes objects that shape Service networking."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

PROTOCOLS = ("TCP", "UDP", "SCTP")


def _key(obj) -> str:
    """``namespace/name``, made once per object while its name and namespace stay the same objects:
    the store's dicts, its indexes and the data plane's maps then all hold one string per object
    instead of a fresh copy per lookup (at 50,000 pods those copies were ~30 MB after a trace)."""
    key = obj._key
    ns, name = obj.namespace, obj.name
    if key is None or len(key) != len(ns) + 1 + len(name) or not key.startswith(ns) or not key.endswith(name) \
            or key[len(ns)] != "/":
        key = obj._key = f"{ns}/{name}"
    return key


def _key_cache() -> Any:
    """The field ``_key`` (what ``_key()`` keeps): not an argument, not compared, not shown."""
    return field(default=None, init=False, repr=False, compare=False)


# Slotted (no per-object dict): a 10,000-Service cluster holds 60,000 pods and 10,000 each of
# Services, slices, workloads and their ports.


@dataclass(slots=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    name: Optional[str] = None
    host_port: Optional[int] = None           # the CNI portmap plugin maps NODE:hostPort to it
    host_ip: Optional[str] = None             # hostIP: only that node address (None: every address)


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CONTROL_PLANE_TAINT_KEY = "node-role.kubernetes.io/control-plane"   # kubeadm's control-plane label and taint


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __str__(self) -> str:                  # as kubectl describe node prints it
        return f"{self.key}{'=' + self.value if self.value else ''}:{self.effect}"


@dataclass(frozen=True)
class Toleration:
    key: str = ""                              # empty with operator Exists: tolerates every taint
    operator: str = "Equal"                    # Equal | Exists
    value: str = ""
    effect: str = ""                           # empty: every effect
    seconds: Optional[int] = None              # tolerationSeconds (NoExecute): None tolerates for ever

    def tolerates(self, taint: Taint) -> bool:
        """core/v1 Toleration.ToleratesTaint (staging/src/k8s.io/api/core/v1/toleration.go)."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return self.value == taint.value


@dataclass
class Node:
    name: str
    ip: str                                   # InternalIP on the node network
    labels: dict[str, str] = field(default_factory=dict)
    pod_cidr: Optional[str] = None            # assigned by IPAM (a /24 of the cluster CIDR)
    ready: bool = True                        # NodeReady condition
    running: bool = True                      # kubelet alive (fault injection: stop/start)
    last_heartbeat: float = 0.0               # cluster clock seconds
    zone: Optional[str] = None
    taints: list[Taint] = field(default_factory=list)

    @property
    def control_plane(self) -> bool:
        return CONTROL_PLANE_TAINT_KEY in self.labels


@dataclass(slots=True)
class Pod:
    name: str
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[ContainerPort] = field(default_factory=list)
    node_name: Optional[str] = None
    node_selector: dict[str, str] = field(default_factory=dict)
    ip: Optional[str] = None
    hostname: Optional[str] = None
    subdomain: Optional[str] = None
    ready: bool = True                        # Ready condition (readiness probe)
    phase: str = "Pending"                    # Pending | Running | Failed
    terminating: bool = False                 # deletionTimestamp set
    deletion_grace_period: Optional[float] = None   # a manifest's deletionTimestamp: delete once placed
    host_network: bool = False
    dns_policy: str = "ClusterFirst"
    dns_config: Optional[dict] = None          # {nameservers, searches, options:[{name,value}]}
    owner: Optional[tuple[str, str]] = None   # (kind, name) of the controller
    uid: str = ""
    images: list[str] = field(default_factory=list)             # spec.containers[].image
    containers: list[str] = field(default_factory=list)         # spec.containers[].name
    # annotation netsim.io/listen (None: absent); an entry may carry a third item, the one address the
    # socket is bound to (kubeadm's control-plane components bind some ports to 127.0.0.1 only)
    listen: Optional[list[tuple]] = None
    tolerations: list[Toleration] = field(default_factory=list)
    # the DaemonSet controller's node affinity (matchFields metadata.name In [NODE]): the scheduler
    # may bind the pod to this node only
    required_node: Optional[str] = None
    priority_class: Optional[str] = None                        # spec.priorityClassName
    _key: Optional[str] = _key_cache()

    @property
    def key(self) -> str:
        return _key(self)

    def port_by_name(self, name: str, protocol: str) -> Optional[int]:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.container_port
        return None


@dataclass(slots=True)
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str = 0                # number, or a container port name
    node_port: Optional[int] = None
    app_protocol: Optional[str] = None


@dataclass(slots=True)
class Service:
    name: str
    namespace: str = "default"
    type: str = "ClusterIP"                   # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ip: Optional[str] = None          # "None" for headless
    selector: Optional[dict[str, str]] = None # None: selector-less (manual EndpointSlices)
    ports: list[ServicePort] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)
    load_balancer_ips: list[str] = field(default_factory=list)   # status.loadBalancer.ingress[].ip
    load_balancer_source_ranges: list[str] = field(default_factory=list)
    external_name: Optional[str] = None
    session_affinity: str = "None"            # None | ClientIP
    affinity_timeout: int = 10800             # sessionAffinityConfig.clientIP.timeoutSeconds
    external_traffic_policy: str = "Cluster"  # Cluster | Local
    internal_traffic_policy: str = "Cluster"  # Cluster | Local
    publish_not_ready_addresses: bool = False
    health_check_node_port: Optional[int] = None
    labels: dict[str, str] = field(default_factory=dict)
    allocate_load_balancer_node_ports: bool = True
    ip_family_policy: Optional[str] = "SingleStack"   # None for ExternalName (API server defaults)
    ip_families: list[str] = field(default_factory=lambda: ["IPv4"])
    _key: Optional[str] = _key_cache()

    @property
    def key(self) -> str:
        return _key(self)

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass(slots=True)
class EndpointPort:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(slots=True)            # one per pod behind a Service: 50,000 at 10,000 Services x 5
class Endpoint:
    addresses: list[str]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: Optional[str] = None
    hostname: Optional[str] = None
    target_ref: Optional[tuple[str, str, str]] = None   # (kind, namespace, name)
    zone: Optional[str] = None


@dataclass(slots=True)
class EndpointSlice:
    name: str
    namespace: str
    service_name: str
    address_type: str = "IPv4"
    endpoints: list[Endpoint] = field(default_factory=list)
    ports: list[EndpointPort] = field(default_factory=list)
    managed_by: str = "endpointslice-controller.k8s.io"
    _key: Optional[str] = _key_cache()

    @property
    def key(self) -> str:
        return _key(self)


@dataclass
class Namespace:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Deployment:
    """Deployment, ReplicaSet, StatefulSet or DaemonSet: a pod template with a replica count
    (a DaemonSet's count is the number of eligible nodes: `replicas` is not used)."""
    kind: str
    name: str
    namespace: str
    replicas: int
    selector: dict[str, str]
    template: Pod                             # the pod template, parsed (name and node unset)
    template_hash: str = ""                   # pod-template-hash label value (Deployments)
    service_name: Optional[str] = None        # StatefulSet spec.serviceName
    _key: Optional[str] = _key_cache()

    @property
    def key(self) -> str:
        return _key(self)


@dataclass
class ClusterConfig:
    """The netsim.io/v1 Cluster document (defaults are kubeadm's)."""
    name: str = "netsim"
    cluster_cidr: str = "10.244.0.0/16"       # pod network (--cluster-cidr)
    node_cidr_mask: int = 24                  # per-node podCIDR size
    service_cidr: str = "10.96.0.0/12"
    node_network: str = "192.168.49.0/24"     # where node InternalIPs live
    cluster_domain: str = "cluster.local"
    dns_service_ip: str = "10.96.0.10"
    node_port_range: tuple[int, int] = (30000, 32767)
    proxy_mode: str = "iptables"              # iptables | ipvs | nftables
    ipvs_scheduler: str = "rr"
    masquerade_all: bool = False
    masquerade_bit: int = 14                  # mark 0x4000
    pod_network: str = "vxlan"                # vxlan | host-gw
    load_balancer_pool: str = "192.168.49.240/28"
    external_client_ip: Optional[str] = None  # default: a free address on the node network
    coredns: bool = True
    kubeadm: bool = True                      # default/kubernetes, static control-plane Pods, kube-proxy DaemonSet
    coredns_replicas: int = 2
    upstream_dns: dict[str, list[str]] = field(default_factory=dict)  # name -> A records
    seed: int = 0
    node_monitor_grace_period: float = 50.0   # kube-controller-manager default since v1.32 (was 40 s)
    pod_eviction_timeout: float = 300.0
    heartbeat_interval: float = 10.0
    pod_cidr: Optional[str] = None            # podCIDR: where node podCIDRs are carved (None: cluster_cidr)
