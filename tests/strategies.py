"""Hypothesis strategies: whole clusters as Kubernetes manifests (YAML text), valid for the API server.

`clusters()` draws a `GeneratedCluster`: 1-4 nodes (vxlan or host-gw, masqueradeAll on/off), bare Pods
pinned to chosen nodes (Ready True/False/absent, some Terminating), and Services of every type
(ClusterIP, NodePort, LoadBalancer, ExternalName, headless, selector-less with hand-written
EndpointSlices) crossed with internalTrafficPolicy, externalTrafficPolicy, sessionAffinity, 1-3 ports
(TCP/UDP/SCTP, named and numeric targetPorts, one number shared by two protocols), externalIPs inside
and outside the node network and loadBalancerSourceRanges. Hand-written endpoints carry every
combination of the ready/serving/terminating conditions (true, false or absent).

Only what the API server accepts is drawn (kubernetes/kubernetes pkg/apis/core/validation/validation.go
ValidateService, pkg/apis/discovery/validation): port names when there are several ports, unique
(port, protocol) pairs, nodePorts only on NodePort/LoadBalancer Services and from the static band
(KEP-3668) so they never meet a dynamically allocated one, externalTrafficPolicy only on externally
reachable Services, loadBalancerSourceRanges only on LoadBalancer Services, clusterIP None only on
ClusterIP Services.

A generated cluster prints as its YAML plus the one command that reproduces a failure
(`GeneratedCluster.reproduce`), so a falsifying example can be pasted into a file and run.
"""
from __future__ import annotations

import ipaddress
import textwrap
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml
from hypothesis import strategies as st

NODE_NET = "192.168.49.0/24"
POD_CIDR = "10.244.0.0/16"
# externalIPs: inside the node network (away from nodes .2-.5, the router .1, the external client .100,
# the load balancer host .254 and the LoadBalancer pool .240/28), and outside every cluster network.
EXTERNAL_IPS_INSIDE = [f"192.168.49.{i}" for i in range(50, 60)]
EXTERNAL_IPS_OUTSIDE = [f"203.0.113.{i}" for i in range(10, 20)]
SOURCE_RANGES = ["192.168.49.100/32", "192.168.49.0/24", "10.0.0.0/8", "198.51.100.0/24", "0.0.0.0/0"]
# KEP-3668: the first min(max(16, 2768/32), 128) = 86 ports of 30000-32767 are left for explicit nodePorts
STATIC_NODE_PORTS = range(30000, 30086)

# Container ports of the two pod variants: the same names on different numbers, so a named targetPort
# resolves per pod (EndpointSlice controller, podutil.FindPort).
POD_PORTS = {
    "a": [("http", 8080, "TCP"), ("alt", 8081, "TCP"), ("echo", 5353, "UDP"), ("assoc", 9000, "SCTP")],
    "b": [("http", 8081, "TCP"), ("echo", 5354, "UDP"), ("alt", 8080, "TCP")],
}
TARGET_NAMES = {"TCP": ["http", "alt", "missing"], "UDP": ["echo", "missing"], "SCTP": ["assoc"]}
TARGET_NUMBERS = {"TCP": [8080, 8081, 8082], "UDP": [5353, 5354], "SCTP": [9000]}
APPS = ["web", "api"]

# Defects the generator has found that are not fixed yet: the generator leaves out the construct (so the
# bounded CI fuzz stays green and keeps looking for new ones) and tests/test_fuzz_found.py keeps the
# minimal example as xfail(strict=True). Remove an entry when its fix lands.
OPEN_DEFECTS: dict[str, str] = {}


@dataclass
class GeneratedCluster:
    """One drawn cluster: the manifests as YAML and what the oracles need to know about it."""
    text: str
    node_names: list[str]
    proxy_mode: str = "iptables"
    summary: dict[str, Any] = field(default_factory=dict)

    def reproduce(self, path: str = "fuzz.yaml") -> str:
        return f"netsim verify -f {path} --flows 200"

    def __repr__(self) -> str:                   # what hypothesis prints for a falsifying example
        return ("GeneratedCluster (save as fuzz.yaml, then: sudo unshare --net --mount -- "
                f"{self.reproduce()})\n---\n{self.text}")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:     # hypothesis' pretty printer
        printer.text(repr(self))

    def load(self) -> Any:
        from netsim.control.manifests import load_text
        return load_text(self.text, source="fuzz.yaml")


def _dump(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=None, width=120)


@st.composite
def _cluster_doc(draw: Any, name: str) -> tuple[dict, list[str]]:
    n_nodes = draw(st.integers(1, 4))
    nodes = [{"name": f"node-{i + 1}", "ip": f"192.168.49.{i + 2}"} for i in range(n_nodes)]
    spec = {
        "nodes": nodes,
        "nodeNetwork": NODE_NET,
        "podCIDR": POD_CIDR,
        "proxyMode": "iptables",
        "podNetwork": draw(st.sampled_from(["vxlan", "host-gw"])),
        "masqueradeAll": draw(st.booleans()),
        "coredns": {"enabled": True, "replicas": 1},
        "seed": draw(st.integers(0, 1000)),
    }
    return {"apiVersion": "netsim.io/v1", "kind": "Cluster", "metadata": {"name": name}, "spec": spec}, \
        [n["name"] for n in nodes]


@st.composite
def _pods(draw: Any, node_names: list[str]) -> list[dict]:
    docs = []
    n = draw(st.integers(1, 5))
    for i in range(n):
        app = draw(st.sampled_from(APPS))
        variant = draw(st.sampled_from(sorted(POD_PORTS)))
        ports = [{"name": nm, "containerPort": num, "protocol": proto} for nm, num, proto in POD_PORTS[variant]]
        meta: dict[str, Any] = {"name": f"{app}-{i}", "labels": {"app": app}}
        if draw(st.integers(0, 4)) == 0:         # being deleted: Terminating for its grace period
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            meta["deletionGracePeriodSeconds"] = 30
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                               "spec": {"nodeName": draw(st.sampled_from(node_names)),
                                        "containers": [{"name": "srv", "image": "httpd", "ports": ports}]}}
        ready = draw(st.sampled_from(["True", "False", None]))
        if ready is not None:
            pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}
        docs.append(pod)
    docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
                 "spec": {"nodeName": draw(st.sampled_from(node_names)),
                          "containers": [{"name": "client", "image": "curlimages/curl"}]}})
    return docs


@st.composite
def _service_ports(draw: Any, typ: str, node_ports: list[int]) -> list[dict]:
    n = draw(st.integers(1, 3))
    ports: list[dict] = []
    used: set[tuple[int, str]] = set()
    for i in range(n):
        if i > 0 and draw(st.booleans()):
            # share the previous port's number with another protocol (TCP 53 + UDP 53 style)
            num = ports[-1]["port"]
            proto = draw(st.sampled_from([p for p in ("TCP", "UDP") if (num, p) not in used] or ["SCTP"]))
        else:
            num = draw(st.sampled_from([80, 443, 53, 8080, 9000]))
            proto = draw(st.sampled_from(["TCP", "TCP", "UDP", "SCTP"]))
        if (num, proto) in used:
            continue
        used.add((num, proto))
        p: dict[str, Any] = {"name": f"p{i}", "port": num, "protocol": proto}
        kind = draw(st.sampled_from(["name", "number", "absent"]))
        if kind == "name":
            p["targetPort"] = draw(st.sampled_from(TARGET_NAMES[proto]))
        elif kind == "number":
            p["targetPort"] = draw(st.sampled_from(TARGET_NUMBERS[proto]))
        if typ in ("NodePort", "LoadBalancer") and draw(st.integers(0, 3)) == 0:
            same = [q for q in ports if q["port"] == num and "nodePort" in q]
            if same and "nodeport-per-number" not in OPEN_DEFECTS and draw(st.booleans()):
                p["nodePort"] = same[0]["nodePort"]     # one nodePort for TCP and UDP of one number
            elif node_ports:
                p["nodePort"] = node_ports.pop(0)
        ports.append(p)
    if len(ports) == 1 and draw(st.booleans()):
        del ports[0]["name"]                            # a single port may stay unnamed
    return ports


@st.composite
def _service(draw: Any, i: int, node_ports: list[int], external_ips: list[str], lb_left: list[int]) -> dict:
    kinds = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "headless", "selectorless"]
    kind = draw(st.sampled_from(kinds))
    if kind == "LoadBalancer" and not lb_left[0]:
        kind = "NodePort"
    typ = {"headless": "ClusterIP", "selectorless": draw(st.sampled_from(["ClusterIP", "NodePort"]))
           }.get(kind, kind)
    if kind == "LoadBalancer":
        lb_left[0] -= 1
    spec: dict[str, Any] = {}
    if typ != "ClusterIP":
        spec["type"] = typ
    if kind == "ExternalName":
        spec["externalName"] = draw(st.sampled_from(["example.com", "db.example.org.", "web.default.svc.cluster.local"]))
        if draw(st.booleans()):
            spec["ports"] = [{"port": 80}]
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"}, "spec": spec,
                "netsim-fuzz": kind}
    if kind == "headless":
        spec["clusterIP"] = "None"
    if kind != "selectorless":
        spec["selector"] = {"app": draw(st.sampled_from(APPS))}
    spec["ports"] = draw(_service_ports(typ, node_ports))
    if kind != "headless":
        if draw(st.integers(0, 2)) == 0 and external_ips:
            spec["externalIPs"] = [external_ips.pop(0)]
        spec["internalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local", None]))
        if typ in ("NodePort", "LoadBalancer") or spec.get("externalIPs"):
            spec["externalTrafficPolicy"] = draw(st.sampled_from(["Cluster", "Local", None]))
    affinity = draw(st.sampled_from(["None", "ClientIP", None]))
    if affinity is not None:
        spec["sessionAffinity"] = affinity
        if affinity == "ClientIP" and draw(st.booleans()):
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": draw(st.sampled_from([10, 10800]))}}
    if typ == "LoadBalancer":
        if draw(st.booleans()):
            ranges = [r for r in SOURCE_RANGES if r != "0.0.0.0/0" or "zero-cidr-source-range" not in OPEN_DEFECTS]
            spec["loadBalancerSourceRanges"] = draw(st.lists(st.sampled_from(ranges), min_size=1,
                                                             max_size=2, unique=True))
        if draw(st.integers(0, 3)) == 0:
            spec["allocateLoadBalancerNodePorts"] = False
            for p in spec["ports"]:
                p.pop("nodePort", None)
    spec = {k: v for k, v in spec.items() if v is not None}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"}, "spec": spec, "netsim-fuzz": kind}


_CONDITION = st.sampled_from([True, False, None])


@st.composite
def _endpoint_slices(draw: Any, svc: dict, pod_ips: dict[str, tuple[str, str]], node_names: list[str]) -> list[dict]:
    """Hand-written slices for a selector-less Service: endpoints at real pod IPs (on their node) or at
    free pod-network addresses, with every combination of ready/serving/terminating."""
    name = svc["metadata"]["name"]
    free_ips = ["10.244.0.200", "10.244.1.200"]
    candidates = sorted(pod_ips.items())
    endpoints = []
    for _ in range(draw(st.integers(0, 3))):
        if candidates and draw(st.integers(0, 3)) > 0:
            _, (ip, node) = draw(st.sampled_from(candidates))
        else:
            ip, node = draw(st.sampled_from(free_ips)), draw(st.sampled_from(node_names))
        if any(e["addresses"] == [ip] for e in endpoints):
            continue
        ep: dict[str, Any] = {"addresses": [ip]}
        cond = {k: draw(_CONDITION) for k in ("ready", "serving", "terminating")}
        cond = {k: v for k, v in cond.items() if v is not None}
        if cond or draw(st.booleans()):
            ep["conditions"] = cond
        if draw(st.integers(0, 4)) > 0:
            ep["nodeName"] = node
        endpoints.append(ep)
    ports = []
    for p in svc["spec"].get("ports", []):
        target = p.get("targetPort", p["port"])
        num = target if isinstance(target, int) else dict(
            (nm, n) for nm, n, proto in POD_PORTS["a"] if proto == p["protocol"]).get(target, 8080)
        ports.append({k: v for k, v in (("name", p.get("name", "")), ("port", num),
                                        ("protocol", p["protocol"])) if v != ""})
    return [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": f"{name}-manual", "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4", "endpoints": endpoints, "ports": ports}]


@st.composite
def clusters(draw: Any, max_services: int = 4) -> GeneratedCluster:
    """A valid cluster as manifests; see the module docstring for what varies."""
    cluster_doc, node_names = draw(_cluster_doc("fz"))
    pods = draw(_pods(node_names))
    node_ports = list(STATIC_NODE_PORTS[:40])
    external_ips = draw(st.permutations(EXTERNAL_IPS_INSIDE[:3] + EXTERNAL_IPS_OUTSIDE[:3]))
    lb_left = [4]
    services = [draw(_service(i, node_ports, list(external_ips[i:i + 1]), lb_left))
                for i in range(draw(st.integers(1, max_services)))]
    kinds = {s["metadata"]["name"]: s.pop("netsim-fuzz") for s in services}
    base = [cluster_doc] + pods + services
    slices: list[dict] = []
    if any(k == "selectorless" for k in kinds.values()):
        from netsim.control.manifests import ManifestError, load_text
        try:    # pod IPs are deterministic (host-local IPAM): learn them from the cluster without slices
            pods_now = load_text(_dump(base), source="fuzz.yaml").pods()
        except ManifestError:
            pods_now = []        # the loader refuses the cluster: the oracle reports it, slices or not
        pod_ips = {p.key: (p.ip, p.node_name) for p in pods_now
                   if p.ip and p.namespace == "default" and p.name != "client"}
        for s in services:
            if kinds[s["metadata"]["name"]] == "selectorless":
                slices += draw(_endpoint_slices(s, pod_ips, node_names))
    text = _dump(base + slices)
    summary = {"nodes": len(node_names), "podNetwork": cluster_doc["spec"]["podNetwork"],
               "masqueradeAll": cluster_doc["spec"]["masqueradeAll"],
               "services": sorted(kinds.values())}
    return GeneratedCluster(text=text, node_names=node_names, summary=summary)


def describe(gc: GeneratedCluster) -> str:
    """A failing example as a reader wants it: the YAML (also saved to a file) and the command that
    reproduces it."""
    import hashlib
    import tempfile
    from pathlib import Path
    out = Path(tempfile.gettempdir()) / "netsim-fuzz"
    out.mkdir(exist_ok=True)
    path = out / f"fuzz-{hashlib.sha256(gc.text.encode()).hexdigest()[:12]}.yaml"
    path.write_text(gc.text)
    return textwrap.dedent(f"""\
        # reproduce (saved as {path}), as root:
        #   unshare --net --mount --propagation private -- {gc.reproduce(str(path))}
        """) + gc.text


__all__ = ["GeneratedCluster", "clusters", "describe", "NODE_NET", "EXTERNAL_IPS_INSIDE", "EXTERNAL_IPS_OUTSIDE"]
