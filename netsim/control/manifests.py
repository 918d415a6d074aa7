"""Load multi-document Kubernetes YAML (plus a netsim.io/v1 Cluster document) into a reconciled Cluster."""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from importlib import resources
from typing import Iterable, Optional, Union

import yaml
from netaddr import IPSet

from netsim.control import apischema, kubeadm, listen, objects
from netsim.control import validation as v
from netsim.control.cluster import Cluster, ClusterError
from netsim.control.docfields import Doc, ManifestError
from netsim.control.endpointslices import resolve_target_port
from netsim.control.heap import deferred_gc
from netsim.control.progress import task
from netsim.control.inputread import STDIN, InputLimits, read_source, yaml_documents
from netsim.control.model import (CONTROL_PLANE_TAINT_KEY, TAINT_EFFECTS, ClusterConfig, ContainerPort, Deployment, Node,
                          Pod, Service, ServicePort, Taint, Toleration)
from netsim.rules import registry

EXAMPLE_PREFIX = "example:"
STATE_PREFIX = "state:"          # a saved cluster (netsim.control.statedir), e.g. state:.netsim-state
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when available: ~10x faster
KINDS = {
    ("v1", "Namespace"): objects.namespace,
    ("v1", "Pod"): objects.pod,
    ("v1", "Service"): objects.service,
    ("apps/v1", "Deployment"): objects.workload,
    ("apps/v1", "ReplicaSet"): objects.workload,
    ("apps/v1", "StatefulSet"): objects.workload,
    ("apps/v1", "DaemonSet"): objects.workload,
    ("discovery.k8s.io/v1", "EndpointSlice"): objects.endpoint_slice,
}
IPVS_SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh")

__all__ = ["load", "load_text", "ManifestError", "list_examples", "example_path"]


def list_examples() -> dict[str, str]:
    """Built-in examples: name → first comment line of the file (its description)."""
    out = {}
    for f in sorted(resources.files("netsim").joinpath("examples").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".yaml"):
            first = f.read_text().splitlines()[0] if f.read_text() else ""
            out[f.name[:-5]] = first.lstrip("# ").strip()
    return out


def example_path(name: str) -> str:
    f = resources.files("netsim").joinpath("examples").joinpath(f"{name}.yaml")
    if not f.is_file():
        raise ManifestError(f"{EXAMPLE_PREFIX}{name}: no such built-in example (have: {', '.join(list_examples())})")
    return str(f)


def load(sources: Union[str, Iterable[str]], validate: str = "strict",
         limits: Optional[InputLimits] = None, kubeadm: Optional[bool] = None) -> Cluster:
    """Read files (``-`` is standard input, ``example:NAME`` a built-in example, a str with a
    newline is YAML text) and build the cluster, several sources merged as ``-f a -f b`` is;
    ManifestError on bad input.

    `validate` is kubectl's --validate: "strict" refuses fields the Kubernetes API does not have,
    "warn" loads and adds a warning to the notices, "ignore" says nothing. `limits` bounds each
    source's size, YAML values and alias expansion (netsim.control.inputread). `kubeadm` False leaves out
    kubeadm's own objects (default/kubernetes, the static control-plane Pods, the kube-proxy
    DaemonSet; netsim.control.kubeadm) whatever the Cluster document says; None keeps the document's choice."""
    if isinstance(sources, str):
        sources = [sources]
    sources = [os.fspath(s) for s in sources]
    states = [s for s in sources if "\n" not in s and s.startswith(STATE_PREFIX)]
    if states:
        if len(sources) > 1:
            raise ManifestError(f"{states[0]}: a saved cluster is read alone (apply more files to it with "
                                "`netsim apply -f FILE --state DIR`)")
        from netsim.control.statedir import load_state
        return load_state(states[0], validate)
    notices: list[str] = []
    names = ", ".join("<string>" if "\n" in s else s for s in sources)
    with deferred_gc():
        with task(f"reading {names}"):
            docs = read_documents(sources, limits, notices)
        with task(f"building the cluster ({len(docs)} documents)"):
            cluster = build_documents(docs, validate, kubeadm, consume=True)
    cluster.notices[:0] = notices
    return cluster


def read_documents(sources: Iterable[str], limits: Optional[InputLimits] = None,
                   notices: Optional[list[str]] = None) -> list[Doc]:
    """The documents of files (``-`` = standard input, or `example:NAME`), in order, a `kind: List`
    opened up. A source without objects is a warning in `notices`; all of them empty, an error
    (kubectl: "no objects passed to apply")."""
    limits = limits or InputLimits()
    sources = list(sources)
    docs: list[Doc] = []
    empty: list[str] = []
    for i, s in enumerate(sources):
        if "\n" in s:                                  # YAML text (netsim.load)
            name = "<string>" if len(sources) == 1 else f"<string {i + 1}>"
            found = _documents(name, s, limits)
            if not found:
                empty.append(name)
            docs += found
            continue
        path = example_path(s[len(EXAMPLE_PREFIX):]) if s.startswith(EXAMPLE_PREFIX) else s
        name = "stdin" if s == STDIN else s
        found = _documents(name, read_source(path, limits, name), limits)
        if not found:
            empty.append(name)
        docs += found
    if sources and len(empty) == len(sources):
        raise ManifestError(f"{', '.join(empty)}: no objects in the input (empty, or only comments and "
                            "'---'; expected Kubernetes manifests)")
    if notices is not None:
        notices += [f"warning: {name}: no objects in it (empty, or only comments and '---')" for name in empty]
    return docs


def load_text(text: str, source: str = "<string>", validate: str = "strict",
              kubeadm: Optional[bool] = None) -> Cluster:
    return build_documents(_documents(source, text), validate, kubeadm)


def build_documents(docs: list[Doc], validate: str = "strict", with_kubeadm: Optional[bool] = None,
                    consume: bool = False) -> Cluster:
    """A new cluster from parsed documents: the Cluster document (or kubeadm's defaults), the nodes,
    kubeadm's own objects, CoreDNS, then every Kubernetes object, applied together. `with_kubeadm`
    False (or the Cluster document's spec.kubeadm.enabled false) leaves kubeadm's objects out.

    `consume` True: ``docs`` is emptied once its objects are parsed, before the controllers run, so
    the parse trees (at 10,000 Services ~60 MiB of dicts, lists and strings) are freed while the
    cluster is built and their memory is taken again by its pods, slices and events instead of
    being left as free holes below a higher peak."""
    validate = apischema.normalize_mode(validate)
    config_docs = [d for d in docs if d.body.get("apiVersion") == "netsim.io/v1"]
    if len(config_docs) > 1:
        raise ManifestError(f"{config_docs[1].where}: only one netsim.io/v1 Cluster document is allowed "
                            f"(first at {config_docs[0].where})")
    config, nodes = cluster_config(config_docs[0]) if config_docs else (ClusterConfig(), None)
    if nodes is None:
        nodes = default_nodes(config)
    if with_kubeadm is not None:
        config.kubeadm = with_kubeadm
    objs: list = list(nodes)
    origins: list[str] = [config_docs[0].where if config_docs else "default nodes"] * len(nodes)
    if config.kubeadm:      # what `kubeadm init` creates before any addon
        more_objs = kubeadm.kubeadm_objects(config, nodes)
        objs += more_objs
        origins += ["built-in kubeadm objects"] * len(more_objs)
    if config.coredns:      # kubeadm installs CoreDNS before any user workload
        objs += coredns_objects(config)
        origins += ["built-in CoreDNS"] * 2
    notices: list[str] = []
    skipped: dict[str, list[str]] = {}          # kind -> where each skipped object was
    more, more_origins = parse_objects([d for d in docs if d not in config_docs], validate, notices, skipped)
    if consume:
        docs.clear()
        del config_docs
    cluster = Cluster(config)
    _apply(cluster, objs + more, origins + more_origins)
    notice = registry.notice(config.proxy_mode)
    if notice:
        notices.append(f"notice: {notice}")
    _set_notices(cluster, notices, skipped)
    return cluster


def apply_documents(cluster: Cluster, docs: list[Doc], validate: str = "strict") -> list:
    """`kubectl apply` of more documents to an existing cluster; returns the model objects created.
    The cluster's notices become this apply's notices."""
    validate = apischema.normalize_mode(validate)
    for d in docs:
        if d.body.get("apiVersion") == "netsim.io/v1":
            raise ManifestError(f"{d.where}: a netsim.io/v1 Cluster document can only create a cluster "
                                "(the first apply), not change one")
    notices: list[str] = []
    skipped: dict[str, list[str]] = {}
    objs, origins = parse_objects(docs, validate, notices, skipped)
    _apply(cluster, objs, origins)
    _set_notices(cluster, notices, skipped)
    return objs


def parse_objects(docs: list[Doc], validate: str, notices: list[str],
                  skipped: dict[str, list[str]]) -> tuple[list, list[str]]:
    """Kubernetes documents → model objects (and where each came from); other kinds are recorded in
    `skipped`, field-validation warnings in `notices`."""
    objs: list = []
    origins: list[str] = []
    for d in docs:
        for field in ("apiVersion", "kind"):
            d.get(d.body, field, field, str, None)
        parser = KINDS.get((d.body.get("apiVersion"), d.kind))
        if parser is None:
            if not isinstance(d.body.get("apiVersion"), str) or d.kind == "?":
                raise ManifestError(f"{d.where}: apiVersion and kind: Required value (a Kubernetes object)")
            known_kinds = {k for _, k in KINDS}
            if d.kind in known_kinds:
                want = next(av for av, k in KINDS if k == d.kind)
                raise d.fail("apiVersion", f"Unsupported value: {d.body.get('apiVersion')!r}: expected {want!r}")
            skipped.setdefault(d.kind, []).append(d.where)
            continue
        if validate != "ignore":
            check_fields(d, validate, notices)
        objs.append(parser(d))
        origins.append(d.where)
    return objs, origins


def _apply(cluster: Cluster, objs: list, origins: list[str]) -> None:
    try:
        cluster.apply(objs, origins)
        for pod in objs:        # manifests of pods being deleted (metadata.deletionTimestamp)
            if isinstance(pod, Pod) and pod.deletion_grace_period is not None and not pod.terminating:
                cluster.delete_pod(pod.namespace, pod.name, grace_period=pod.deletion_grace_period)
    except ClusterError as e:
        raise ManifestError(str(e)) from None


def _set_notices(cluster: Cluster, notices: list[str], skipped: dict[str, list[str]]) -> None:
    summary, cluster.skipped = skipped_notices(skipped)
    cluster.notices = summary + notices + selector_warnings(cluster)


# Kinds that do change what a Service's traffic does in a real cluster, but that netsim does not model.
NOT_EMULATED = {
    "NetworkPolicy": "NetworkPolicy is not emulated: no traffic is filtered by it (the CNI plugin "
                     "enforces it in a real cluster)",
    "Endpoints": "v1 Endpoints are not emulated: the EndpointSlice mirroring controller would mirror them "
                 "into EndpointSlices for a selector-less Service; write discovery.k8s.io/v1 EndpointSlices",
}


def skipped_notices(skipped: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """One summary line per reason (`skipped 11 objects that do not affect Service networking:
    ServiceAccount x11`), and one line per object for -v."""
    summary, detail = [], []
    for kind, reason in NOT_EMULATED.items():
        wheres = skipped.get(kind, [])
        if wheres:
            summary.append(f"skipped {_objects(len(wheres))} that netsim does not emulate: {kind} x{len(wheres)} "
                           f"({reason})")
            detail += [f"{w}: skipped: {reason}" for w in wheres]
    rest = sorted(((k, w) for k, w in skipped.items() if k not in NOT_EMULATED), key=lambda kw: (-len(kw[1]), kw[0]))
    if rest:
        total = sum(len(w) for _, w in rest)
        summary.append(f"skipped {_objects(total)} that {'does' if total == 1 else 'do'} not affect Service networking: "
                       + ", ".join(f"{k} x{len(w)}" for k, w in rest))
        detail += [f"{w}: skipped: {k} does not affect Service networking" for k, w in rest for w in w]
    return summary, detail


def _objects(n: int) -> str:
    return f"{n} object" if n == 1 else f"{n} objects"


def check_fields(doc: Doc, validate: str, notices: list[str]) -> None:
    """kubectl's field validation against the API's schema: strict refuses the document (naming the
    first unknown field and the closest known one), warn adds one warning per unknown field."""
    unknown = apischema.unknown_fields(doc.body["apiVersion"], doc.kind, doc.body)
    if not unknown:
        return
    if validate == "strict":
        more = f" (and {len(unknown) - 1} more unknown fields)" if len(unknown) > 1 else ""
        raise ManifestError(f"{doc.where}: strict decoding error: {unknown[0].describe()}{more}; "
                            "--validate=warn or --validate=ignore to load it anyway")
    for u in unknown:
        notices.append(f"warning: {doc.where}: {u.describe()}")


MAX_NESTING = 1000


def _flow_depth(text: str) -> int:
    """Deepest nesting of [ ] and { } (brackets inside strings counted too: an upper bound)."""
    brackets = _NOT_BRACKETS.sub("", text)
    if len(brackets) <= MAX_NESTING:
        return len(brackets)                   # an upper bound, and already small enough
    depth = deepest = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _documents(source: str, text: str, limits: Optional[InputLimits] = None) -> list[Doc]:
    if _flow_depth(text) > MAX_NESTING:
        # libyaml recurses once per level and overflows the C stack near 40,000 levels
        raise ManifestError(f"{source}: nesting deeper than {MAX_NESTING} levels (not a Kubernetes manifest)")
    try:
        raw = list(yaml_documents(source, text, limits or InputLimits()))
    except RecursionError:
        raise ManifestError(f"{source}: nesting too deep to parse (not a Kubernetes manifest)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{source}:{where}: invalid YAML: {problem}") from None
    docs = []
    for i, body in enumerate(raw, start=1):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ManifestError(f"{source}: document {i}: expected a mapping (a Kubernetes object), "
                                f"got {type(body).__name__}")
        if body.get("kind") == "List" and isinstance(body.get("items"), list):
            for j, item in enumerate(body["items"]):
                if not isinstance(item, dict):
                    raise ManifestError(f"{source}: document {i}: items[{j}]: expected a mapping")
                docs.append(Doc(source, i, item))
            continue
        docs.append(Doc(source, i, body))
    return docs


def cluster_config(doc: Doc) -> tuple[ClusterConfig, Optional[list[Node]]]:
    """The netsim.io/v1 Cluster document: nodes, CIDRs, proxy mode, pod network, DNS, seed."""
    if doc.kind != "Cluster":
        raise doc.fail("kind", f"Unsupported value: {doc.kind!r}: netsim.io/v1 has only kind 'Cluster'")
    cfg = ClusterConfig()
    meta = doc.get(doc.body, "metadata", "metadata", dict, {})
    cfg.name = doc.check(doc.get(meta, "name", "metadata.name", str, cfg.name), "metadata.name", v.dns1123_label)
    if len(cfg.name) > 8:
        raise doc.fail("metadata.name", f"Invalid value: {cfg.name!r}: must be at most 8 characters "
                       "(it prefixes kernel namespace and interface names)")
    spec = doc.get(doc.body, "spec", "spec", dict, {})
    _no_unknown_fields(doc, spec, "spec", CLUSTER_SPEC_FIELDS)
    # podCIDR: kube-controller-manager's --cluster-cidr, carved into node podCIDRs; clusterCIDR:
    # kube-proxy's --cluster-cidr. kubeadm sets both from podSubnet, so the second defaults to the first.
    pod_cidr = doc.check(doc.get(spec, "podCIDR", "spec.podCIDR", str, cfg.cluster_cidr), "spec.podCIDR", v.ipv4_cidr)
    cfg.cluster_cidr = doc.check(doc.get(spec, "clusterCIDR", "spec.clusterCIDR", str, pod_cidr),
                                 "spec.clusterCIDR", v.ipv4_cidr)
    cfg.pod_cidr = pod_cidr if pod_cidr != cfg.cluster_cidr else None
    cfg.node_cidr_mask = doc.get(spec, "nodeCIDRMaskSize", "spec.nodeCIDRMaskSize", int, cfg.node_cidr_mask)
    if not ipaddress.ip_network(pod_cidr).prefixlen < cfg.node_cidr_mask <= 30:
        raise doc.fail("spec.nodeCIDRMaskSize", f"Invalid value: {cfg.node_cidr_mask}: must be longer than the "
                       f"cluster CIDR's prefix and at most 30")
    cfg.service_cidr = doc.check(doc.get(spec, "serviceCIDR", "spec.serviceCIDR", str, cfg.service_cidr),
                                 "spec.serviceCIDR", v.ipv4_cidr)
    cfg.node_network = doc.check(doc.get(spec, "nodeNetwork", "spec.nodeNetwork", str, cfg.node_network),
                                 "spec.nodeNetwork", v.ipv4_cidr)
    cfg.cluster_domain = doc.check(doc.get(spec, "clusterDomain", "spec.clusterDomain", str, cfg.cluster_domain),
                                   "spec.clusterDomain", v.dns1123_subdomain)
    svc_net = ipaddress.ip_network(cfg.service_cidr)
    default_dns = str(svc_net.network_address + 10)
    cfg.dns_service_ip = doc.check(doc.get(spec, "dnsServiceIP", "spec.dnsServiceIP", str, default_dns),
                                   "spec.dnsServiceIP", v.ipv4)
    if ipaddress.ip_address(cfg.dns_service_ip) not in svc_net:
        raise doc.fail("spec.dnsServiceIP", f"Invalid value: {cfg.dns_service_ip!r}: not in serviceCIDR {svc_net}")
    rng = doc.get(spec, "nodePortRange", "spec.nodePortRange", str, "30000-32767")
    try:
        lo, hi = (int(x) for x in rng.split("-"))
        assert 1 <= lo <= hi <= 65535
    except (ValueError, AssertionError):
        raise doc.fail("spec.nodePortRange", f"Invalid value: {rng!r}: expected 'LOW-HIGH', e.g. 30000-32767") from None
    cfg.node_port_range = (lo, hi)
    cfg.proxy_mode = _choice(doc, spec, "proxyMode", registry.known_modes(kube_proxy_only=True), cfg.proxy_mode)
    cfg.ipvs_scheduler = _choice(doc, spec, "ipvsScheduler", IPVS_SCHEDULERS, cfg.ipvs_scheduler)
    cfg.masquerade_all = doc.get(spec, "masqueradeAll", "spec.masqueradeAll", bool, False)
    cfg.pod_network = _choice(doc, spec, "podNetwork", ("vxlan", "host-gw"), cfg.pod_network)
    cfg.seed = doc.get(spec, "seed", "spec.seed", int, 0)
    node_net = ipaddress.ip_network(cfg.node_network)
    default_pool = f"{node_net.broadcast_address - 15}/28" if node_net.prefixlen <= 28 else cfg.node_network
    cfg.load_balancer_pool = doc.check(doc.get(spec, "loadBalancerPool", "spec.loadBalancerPool", str, default_pool),
                                       "spec.loadBalancerPool", v.ipv4_cidr)
    check_address_plan(doc, pod_cidr, cfg)
    cfg.external_client_ip = doc.get(spec, "externalClientIP", "spec.externalClientIP", str, None)
    if cfg.external_client_ip:
        doc.check(cfg.external_client_ip, "spec.externalClientIP", v.ipv4)
    dns = doc.get(spec, "coredns", "spec.coredns", dict, {})
    _no_unknown_fields(doc, dns, "spec.coredns", ("enabled", "replicas"))
    cfg.coredns = doc.get(dns, "enabled", "spec.coredns.enabled", bool, True)
    cfg.coredns_replicas = doc.get(dns, "replicas", "spec.coredns.replicas", int, cfg.coredns_replicas)
    kadm = doc.get(spec, "kubeadm", "spec.kubeadm", dict, {})
    _no_unknown_fields(doc, kadm, "spec.kubeadm", ("enabled",))
    cfg.kubeadm = doc.get(kadm, "enabled", "spec.kubeadm.enabled", bool, True)
    if cfg.coredns_replicas < 0:
        raise doc.fail("spec.coredns.replicas", f"Invalid value: {cfg.coredns_replicas}: must be greater than or "
                       "equal to 0")
    up = doc.get(spec, "upstreamDNS", "spec.upstreamDNS", dict, {})
    for name, addrs in up.items():
        if not isinstance(addrs, list):
            raise doc.fail(f"spec.upstreamDNS.{name}", "expected a list of IPv4 addresses")
        cfg.upstream_dns[str(name).rstrip(".").lower()] = [
            doc.check(a, f"spec.upstreamDNS.{name}[{i}]", v.ipv4) for i, a in enumerate(addrs)]
    raw_nodes = doc.get(spec, "nodes", "spec.nodes", list, None)
    if raw_nodes is None:
        return cfg, None
    if not raw_nodes:
        raise doc.fail("spec.nodes", "Required value: at least one node")
    node_net = ipaddress.ip_network(cfg.node_network)
    nodes, names = [], set()
    roles: list[Optional[str]] = []
    taints: list[Optional[list[Taint]]] = []
    for i, n in enumerate(raw_nodes):
        path = f"spec.nodes[{i}]"
        if isinstance(n, str):
            n = {"name": n}
        if isinstance(n, dict):
            _no_unknown_fields(doc, n, path, ("ip", "labels", "name", "role", "taints", "zone"))
        name = doc.check(doc.get(n, "name", f"{path}.name", str), f"{path}.name", v.dns1123_subdomain)
        if name in names:
            raise doc.fail(f"{path}.name", f"Duplicate value: {name!r}")
        names.add(name)
        ip = doc.get(n, "ip", f"{path}.ip", str, str(node_net.network_address + 2 + i))
        doc.check(ip, f"{path}.ip", v.ipv4)
        if ipaddress.ip_address(ip) not in node_net:
            raise doc.fail(f"{path}.ip", f"Invalid value: {ip!r}: not in nodeNetwork {node_net}")
        labels = doc.str_map(n, "labels", f"{path}.labels")
        labels.setdefault("kubernetes.io/hostname", name)
        for k, val in kubeadm.NODE_OS_LABELS.items():
            labels.setdefault(k, val)
        zone = doc.get(n, "zone", f"{path}.zone", str, labels.get("topology.kubernetes.io/zone"))
        if zone:
            labels["topology.kubernetes.io/zone"] = zone
        taken = next((n.name for n in nodes if n.ip == ip), None)
        if taken:
            raise doc.fail(f"{path}.ip", f"Duplicate value: {ip!r} is already the IP of node {taken!r}")
        role = doc.get(n, "role", f"{path}.role", str, None)
        if role not in (None, "control-plane", "worker"):
            raise doc.fail(f"{path}.role", f'Unsupported value: {role!r}: supported values: "control-plane", "worker"')
        roles.append(role)
        taints.append(_node_taints(doc, n, path))
        nodes.append(Node(name=name, ip=ip, labels=labels, zone=zone))
    kubeadm_roles(nodes, roles, taints)
    return cfg, nodes


def _node_taints(doc: Doc, n: dict, path: str) -> Optional[list[Taint]]:
    """A node's taints as kubeadm's nodeRegistration.taints sets them (None: kubeadm's default)."""
    raw = doc.get(n, "taints", f"{path}.taints", list, None)
    if raw is None:
        return None
    out = []
    for j, t in enumerate(raw):
        tpath = f"{path}.taints[{j}]"
        if isinstance(t, dict):
            _no_unknown_fields(doc, t, tpath, ("effect", "key", "value"))
        key = doc.check(doc.get(t, "key", f"{tpath}.key", str), f"{tpath}.key", v.qualified_name)
        effect = doc.get(t, "effect", f"{tpath}.effect", str)
        if effect not in TAINT_EFFECTS:
            raise doc.fail(f"{tpath}.effect", f"Unsupported value: {effect!r}: supported values: "
                           + ", ".join(f'"{e}"' for e in TAINT_EFFECTS))
        out.append(Taint(key, doc.get(t, "value", f"{tpath}.value", str, ""), effect))
    return out


def kubeadm_roles(nodes: list[Node], roles: list[Optional[str]], taints: list[Optional[list[Taint]]]) -> None:
    """kubeadm's node roles: the node `kubeadm init` ran on (the first, unless some node says
    `role: control-plane`) is the control plane, labelled node-role.kubernetes.io/control-plane and
    node.kubernetes.io/exclude-from-external-load-balancers and tainted
    node-role.kubernetes.io/control-plane:NoSchedule (kubeadm's default nodeRegistration.taints).
    A one-node cluster's control plane is not tainted: workloads must run somewhere (the kubeadm
    docs' "control plane node isolation" step for single-machine clusters, minikube and kind)."""
    if "control-plane" not in roles:
        roles = ["control-plane"] + list(roles[1:]) if roles and roles[0] is None else list(roles)
    for node, role, own in zip(nodes, roles, taints):
        if role == "control-plane":
            node.labels.setdefault(CONTROL_PLANE_TAINT_KEY, "")
            node.labels.setdefault("node.kubernetes.io/exclude-from-external-load-balancers", "")
        default = [Taint(CONTROL_PLANE_TAINT_KEY, "", "NoSchedule")] if role == "control-plane" and len(nodes) > 1 else []
        node.taints = list(own) if own is not None else default


def check_address_plan(doc: Doc, pod_cidr: str, cfg: ClusterConfig) -> None:
    """kubeadm refuses overlapping pod, service and node networks (routing would be ambiguous: a
    ClusterIP inside the pod CIDR would be routed to a node instead of being DNATed); the
    LoadBalancer pool must not take pod or service addresses either. netaddr's IPSet does the
    set algebra."""
    # clusterCIDR is left out: kube-proxy's --cluster-cidr only tells local traffic apart and may be
    # wider than the pod network (kube-proxy's own tests use 10.0.0.0/8).
    nets = [("spec.podCIDR", pod_cidr), ("spec.serviceCIDR", cfg.service_cidr),
            ("spec.nodeNetwork", cfg.node_network)]
    for i, (field_a, a) in enumerate(nets):
        for field_b, b in nets[i + 1:]:
            common = IPSet([a]) & IPSet([b])
            if common:
                raise doc.fail(field_b, f"Invalid value: {b!r}: overlaps {field_a} {a} "
                               f"(at {common.iter_cidrs()[0]})")
    pool = IPSet([cfg.load_balancer_pool])
    for field_a, a in nets[:-1]:
        if pool & IPSet([a]):
            raise doc.fail("spec.loadBalancerPool", f"Invalid value: {cfg.load_balancer_pool!r}: overlaps "
                           f"{field_a} {a}")


def default_nodes(cfg: ClusterConfig, count: int = 3) -> list[Node]:
    """Without a Cluster document: three nodes node-1..node-3 at .2, .3, .4 of the node network."""
    net = ipaddress.ip_network(cfg.node_network)
    nodes = [Node(name=f"node-{i}", ip=str(net.network_address + 1 + i),
                  labels={"kubernetes.io/hostname": f"node-{i}", **kubeadm.NODE_OS_LABELS})
             for i in range(1, count + 1)]
    kubeadm_roles(nodes, [None] * count, [None] * count)
    return nodes


def coredns_objects(cfg: ClusterConfig) -> list:
    """kubeadm's CoreDNS: Deployment `coredns` and Service `kube-dns` in kube-system."""
    template = Pod(name="", namespace="kube-system", labels={"k8s-app": "kube-dns"},
                   ports=[ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"),
                          ContainerPort(9153, "TCP", "metrics")], dns_policy="Default",
                   images=["registry.k8s.io/coredns/coredns:v1.12.0"],
                   # kubeadm's CoreDNS Deployment (cmd/kubeadm/app/phases/addons/dns/manifests.go)
                   tolerations=[Toleration("CriticalAddonsOnly", "Exists"),
                                Toleration(CONTROL_PLANE_TAINT_KEY, "Equal", "", "NoSchedule")])
    deploy = Deployment(kind="Deployment", name="coredns", namespace="kube-system", replicas=cfg.coredns_replicas,
                        selector={"k8s-app": "kube-dns"}, template=template,
                        template_hash=objects.pod_template_hash({"coredns": cfg.coredns_replicas}))
    svc = Service(name="kube-dns", namespace="kube-system", cluster_ip=cfg.dns_service_ip,
                  selector={"k8s-app": "kube-dns"},
                  labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
                  ports=[ServicePort(53, "UDP", "dns", 53), ServicePort(53, "TCP", "dns-tcp", 53),
                         ServicePort(9153, "TCP", "metrics", 9153)])
    return [deploy, svc]


def selector_warnings(cluster: Cluster) -> list[str]:
    """What `kubectl apply` would not catch but a user wants to know: selectors matching nothing,
    named targetPorts no selected pod declares, and targetPorts no selected pod listens on (a wrong
    targetPort is a common bug: the Service has endpoints, and every connection is refused)."""
    out = []
    for svc in cluster.services():
        if not svc.selector or svc.type == "ExternalName":
            continue
        pods = cluster.select_pods(svc.namespace, svc.selector)
        if not pods:
            out.append(f"warning: Service {svc.key}: selector {svc.selector} matches no pods")
            continue
        for sp in svc.ports:
            resolved = [(p, resolve_target_port(sp, p)) for p in pods]
            resolved = [(p, port) for p, port in resolved if port is not None]
            if not resolved:
                out.append(f"warning: Service {svc.key}: port {sp.name or sp.port}: targetPort "
                           f"{sp.target_port!r} is not a {sp.protocol} containerPort name of any selected pod")
            elif not any(listen.listens_on(p, port, sp.protocol) for p, port in resolved):
                pod, port = resolved[0]
                more = f" (and {len(resolved) - 1} more selected pods)" if len(resolved) > 1 else ""
                how = listen.hint(pod, port, sp.protocol)
                out.append(f"warning: Service {svc.key}: port {sp.name or sp.port}: targetPort "
                           f"{port}/{sp.protocol.lower()}: no selected pod listens on it: "
                           f"{listen.describe(pod)}{more}" + (f"; {how}" if how else ""))
    return out


CLUSTER_SPEC_FIELDS = (
    "nodes", "podCIDR", "clusterCIDR", "nodeCIDRMaskSize", "serviceCIDR", "nodeNetwork", "clusterDomain",
    "dnsServiceIP", "nodePortRange", "proxyMode", "ipvsScheduler", "masqueradeAll", "podNetwork",
    "loadBalancerPool", "externalClientIP", "coredns", "kubeadm", "upstreamDNS", "seed")


def _no_unknown_fields(doc: Doc, obj: dict, path: str, known: tuple) -> None:
    """netsim's own schema is strict (a typo must not silently fall back to a default)."""
    for key in obj:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f'did you mean "{near[0]}"?' if near else f"known: {', '.join(sorted(known))}"
            raise doc.fail(f"{path}.{key}", f"unknown field ({hint})")


def _choice(doc: Doc, spec: dict, key: str, allowed: tuple, default: str) -> str:
    val = doc.get(spec, key, f"spec.{key}", str, default)
    if val not in allowed:
        raise doc.fail(f"spec.{key}", f"Unsupported value: {val!r}: supported values: "
                       + ", ".join(f'"{a}"' for a in allowed))
    return val
