"""Turn validated Kubernetes documents (Namespace, Pod, Service, workloads, EndpointSlice) into model objects."""
from __future__ import annotations

import ipaddress
import json
from typing import Optional

from netsim.control import validation as v
from netsim.control.docfields import Doc
from netsim.control.listen import LISTEN_ANNOTATION, parse_listen
from netsim.control.model import (PROTOCOLS, TAINT_EFFECTS, ContainerPort, Deployment, Endpoint, EndpointPort,
                                  EndpointSlice, Namespace, Pod, Service, ServicePort, Toleration)

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


def metadata(doc: Doc, namespaced: bool = True, name_rule=v.dns1123_subdomain) -> tuple[str, str, dict]:
    meta = doc.get(doc.body, "metadata", "metadata", dict)
    name = doc.check(doc.get(meta, "name", "metadata.name", str), "metadata.name", name_rule)
    ns = doc.get(meta, "namespace", "metadata.namespace", str, "default") if namespaced else ""
    if namespaced:
        doc.check(ns, "metadata.namespace", v.dns1123_label)
    labels = doc.str_map(meta, "labels", "metadata.labels")
    return name, ns, labels


def namespace(doc: Doc) -> Namespace:
    name, _, labels = metadata(doc, namespaced=False, name_rule=v.dns1123_label)
    return Namespace(name, labels)


def pod_spec(doc: Doc, spec: dict, path: str) -> Pod:
    """A Pod's spec (also a workload's template spec) → Pod with name/namespace unset."""
    containers = doc.get(spec, "containers", f"{path}.containers", list)
    if not containers:
        raise doc.fail(f"{path}.containers", "Required value: at least one container")
    ports: list[ContainerPort] = []
    seen: dict[tuple, str] = {}
    names: set[str] = set()
    images: list[str] = []
    container_names: list[str] = []
    port_paths: list[str] = []
    for ci, c in enumerate(containers):
        cpath = f"{path}.containers[{ci}]"
        container_names.append(doc.get(c, "name", f"{cpath}.name", str))
        image = doc.get(c, "image", f"{cpath}.image", str, None)
        if image:
            images.append(image)
        for pi, p in enumerate(doc.get(c, "ports", f"{cpath}.ports", list, [])):
            ppath = f"{cpath}.ports[{pi}]"
            num = doc.check(doc.get(p, "containerPort", f"{ppath}.containerPort", int), f"{ppath}.containerPort",
                            v.port_number)
            proto = doc.get(p, "protocol", f"{ppath}.protocol", str, "TCP")
            if proto not in PROTOCOLS:
                raise doc.fail(f"{ppath}.protocol", f"Unsupported value: {proto!r}: supported values: "
                               + ", ".join(f'"{x}"' for x in PROTOCOLS))
            name = doc.get(p, "name", f"{ppath}.name", str, None)
            if name is not None:
                doc.check(name, f"{ppath}.name", v.port_name)
                if name in names:
                    raise doc.fail(f"{ppath}.name", f"Duplicate value: {name!r}")
                names.add(name)
            if (num, proto) in seen:
                raise doc.fail(ppath, f"Duplicate value: containerPort {num}/{proto} already declared at {seen[(num, proto)]}")
            seen[(num, proto)] = ppath
            host_port = doc.get(p, "hostPort", f"{ppath}.hostPort", int, None) or None     # 0: not set
            if host_port is not None:
                doc.check(host_port, f"{ppath}.hostPort", v.port_number)
            host_ip = doc.get(p, "hostIP", f"{ppath}.hostIP", str, None) or None
            if host_ip is not None:
                doc.check(host_ip, f"{ppath}.hostIP", v.ipv4)
            ports.append(ContainerPort(num, proto, name, host_port, host_ip))
            port_paths.append(ppath)
    dns_policy = doc.get(spec, "dnsPolicy", f"{path}.dnsPolicy", str, "ClusterFirst")
    if dns_policy not in DNS_POLICIES:
        raise doc.fail(f"{path}.dnsPolicy", f"Unsupported value: {dns_policy!r}: supported values: "
                       + ", ".join(f'"{x}"' for x in DNS_POLICIES))
    dns_config = doc.get(spec, "dnsConfig", f"{path}.dnsConfig", dict, None)
    if dns_policy == "None" and dns_config is None:
        raise doc.fail(f"{path}.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None")
    hostname = doc.get(spec, "hostname", f"{path}.hostname", str, None)
    subdomain = doc.get(spec, "subdomain", f"{path}.subdomain", str, None)
    if hostname:
        doc.check(hostname, f"{path}.hostname", v.dns1123_label)
    if subdomain:
        doc.check(subdomain, f"{path}.subdomain", v.dns1123_label)
    tolerations = parse_tolerations(doc, spec, path)
    host_network = doc.get(spec, "hostNetwork", f"{path}.hostNetwork", bool, False)
    _check_host_ports(doc, ports, port_paths, host_network)
    return Pod(name="", ports=ports, images=images, containers=container_names, tolerations=tolerations,
               node_name=doc.get(spec, "nodeName", f"{path}.nodeName", str, None),
               node_selector=doc.str_map(spec, "nodeSelector", f"{path}.nodeSelector"),
               hostname=hostname, subdomain=subdomain,
               host_network=host_network, dns_policy=dns_policy, dns_config=dns_config,
               priority_class=doc.get(spec, "priorityClassName", f"{path}.priorityClassName", str, None))


def _check_host_ports(doc: Doc, ports: list[ContainerPort], paths: list[str], host_network: bool) -> None:
    """hostPort as the API server takes it: SetDefaults_Pod gives a hostNetwork pod's ports hostPort =
    containerPort, and validateHostNetwork refuses any other; AccumulateUniqueHostPorts refuses the
    same hostPort/protocol (and hostIP) twice in one pod."""
    seen: set[tuple[str, int, str]] = set()
    for cp, ppath in zip(ports, paths):
        if host_network:
            if cp.host_port is None:
                cp.host_port = cp.container_port
            elif cp.host_port != cp.container_port:
                raise doc.fail(f"{ppath}.hostPort", f"Invalid value: {cp.host_port}: must match `containerPort` "
                               "when `hostNetwork` is true")
        if cp.host_port is None:
            continue
        key = (cp.protocol, cp.host_port, cp.host_ip or "")
        if key in seen:
            raise doc.fail(f"{ppath}.hostPort", f"Duplicate value: \"{cp.host_ip or ''}/{cp.protocol}/{cp.host_port}\"")
        seen.add(key)


def parse_tolerations(doc: Doc, spec: dict, path: str) -> list[Toleration]:
    """spec.tolerations, checked as ValidateTolerations (pkg/apis/core/validation) does."""
    out = []
    for i, t in enumerate(doc.get(spec, "tolerations", f"{path}.tolerations", list, [])):
        tpath = f"{path}.tolerations[{i}]"
        key = doc.get(t, "key", f"{tpath}.key", str, "")
        op = doc.get(t, "operator", f"{tpath}.operator", str, "Equal")
        value = doc.get(t, "value", f"{tpath}.value", str, "")
        effect = doc.get(t, "effect", f"{tpath}.effect", str, "")
        if key:
            doc.check(key, f"{tpath}.key", v.qualified_name)
        if op not in ("Equal", "Exists"):
            raise doc.fail(f"{tpath}.operator", f'Unsupported value: {op!r}: supported values: "Equal", "Exists"')
        if not key and op != "Exists":
            raise doc.fail(f"{tpath}.operator", f"Invalid value: {op!r}: operator must be Exists when `key` is empty, "
                           "which means \"match all values and all keys\"")
        if op == "Exists" and value:
            raise doc.fail(f"{tpath}.operator", "Invalid value: value must be empty when `operator` is 'Exists'")
        if effect and effect not in TAINT_EFFECTS:
            raise doc.fail(f"{tpath}.effect", f"Unsupported value: {effect!r}: supported values: "
                           + ", ".join(f'"{e}"' for e in TAINT_EFFECTS))
        seconds = doc.get(t, "tolerationSeconds", f"{tpath}.tolerationSeconds", int, None)
        if seconds is not None and effect != "NoExecute":
            raise doc.fail(f"{tpath}.effect", f"Invalid value: {effect!r}: effect must be 'NoExecute' when "
                           "`tolerationSeconds` is set")
        out.append(Toleration(key, op, value, effect, seconds))
    return out


def listen_annotation(doc: Doc, meta: dict, path: str) -> Optional[list[tuple[int, str]]]:
    """metadata.annotations["netsim.io/listen"]: the exact ports the pod's processes listen on."""
    ann = doc.get(meta, "annotations", f"{path}.annotations", dict, {})
    value = ann.get(LISTEN_ANNOTATION)
    if value is None:
        return None
    where = f"{path}.annotations.{LISTEN_ANNOTATION}"
    if not isinstance(value, str):
        raise doc.fail(where, f"expected a string, e.g. \"80/tcp,53/udp\", got {value!r}")
    try:
        return parse_listen(value)
    except ValueError as e:
        raise doc.fail(where, f"Invalid value: {e}") from None


def pod(doc: Doc) -> Pod:
    name, ns, labels = metadata(doc)
    p = pod_spec(doc, doc.get(doc.body, "spec", "spec", dict), "spec")
    p.name, p.namespace, p.labels = name, ns, labels
    p.listen = listen_annotation(doc, doc.body["metadata"], "metadata")
    # a pod being deleted, as `kubectl get pod -o yaml` shows it during its grace period: the loader
    # deletes it once it runs (netsim.control.manifests._apply), so it is Terminating with its endpoints
    # terminating (serving while Ready: EndpointSlice controller podToEndpoint)
    meta = doc.body["metadata"]
    if doc.get(meta, "deletionTimestamp", "metadata.deletionTimestamp", str, None):
        p.deletion_grace_period = float(doc.get(meta, "deletionGracePeriodSeconds",
                                                "metadata.deletionGracePeriodSeconds", int, 30))
    status = doc.get(doc.body, "status", "status", dict, {})
    for i, cond in enumerate(doc.get(status, "conditions", "status.conditions", list, [])):
        ctype = doc.get(cond, "type", f"status.conditions[{i}].type", str)
        cstat = doc.get(cond, "status", f"status.conditions[{i}].status", str)
        if ctype == "Ready":
            if cstat not in ("True", "False", "Unknown"):
                raise doc.fail(f"status.conditions[{i}].status", f"Unsupported value: {cstat!r}: "
                               'supported values: "True", "False", "Unknown"')
            p.ready = cstat == "True"
    return p


def workload(doc: Doc) -> Deployment:
    name, ns, _ = metadata(doc)
    spec = doc.get(doc.body, "spec", "spec", dict)
    # a DaemonSet has no replicas: one pod per eligible node (netsim.control.cluster._sync_daemonset)
    replicas = 0 if doc.kind == "DaemonSet" else doc.get(spec, "replicas", "spec.replicas", int, 1)
    if replicas < 0:
        raise doc.fail("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")
    sel = doc.get(spec, "selector", "spec.selector", dict)
    match = doc.str_map(sel, "matchLabels", "spec.selector.matchLabels")
    if not match:
        raise doc.fail("spec.selector.matchLabels", "Required value: a selector with at least one label")
    tmpl = doc.get(spec, "template", "spec.template", dict)
    tmeta = doc.get(tmpl, "metadata", "spec.template.metadata", dict, {})
    tlabels = doc.str_map(tmeta, "labels", "spec.template.metadata.labels")
    if any(tlabels.get(k) != val for k, val in match.items()):
        raise doc.fail("spec.template.metadata.labels", f"Invalid value: {tlabels}: `selector` does not match "
                       f"template `labels` {match}")
    proto = pod_spec(doc, doc.get(tmpl, "spec", "spec.template.spec", dict), "spec.template.spec")
    proto.labels = tlabels
    proto.listen = listen_annotation(doc, tmeta, "spec.template.metadata")
    service_name = None
    if doc.kind == "StatefulSet":
        service_name = doc.get(spec, "serviceName", "spec.serviceName", str, None)
    return Deployment(kind=doc.kind, name=name, namespace=ns, replicas=replicas, selector=match,
                      template=proto, template_hash=pod_template_hash(tmpl), service_name=service_name)


def pod_template_hash(template: dict) -> str:
    """Deployment's pod-template-hash: FNV-1a (32 bit) of the template, digits mapped to the safe alphabet."""
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True, default=str).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[ord(c) % len(alphabet)] for c in str(h))


def service(doc: Doc) -> Service:
    name, ns, labels = metadata(doc, name_rule=v.dns1035_label)
    spec = doc.get(doc.body, "spec", "spec", dict)
    typ = doc.get(spec, "type", "spec.type", str, "ClusterIP")
    if typ not in SERVICE_TYPES:
        raise doc.fail("spec.type", f"Unsupported value: {typ!r}: supported values: "
                       + ", ".join(f'"{t}"' for t in SERVICE_TYPES))
    svc = Service(name=name, namespace=ns, type=typ, labels=labels)
    if typ == "ExternalName":
        # ValidateService: the name is checked without its trailing dot (an absolute name is fine)
        svc.external_name = doc.get(spec, "externalName", "spec.externalName", str)
        doc.check(svc.external_name, "spec.externalName", lambda n: v.dns1123_subdomain(n[:-1] if n.endswith(".") else n))
    cip = doc.get(spec, "clusterIP", "spec.clusterIP", str, None)
    if typ == "ExternalName" and cip:
        raise doc.fail("spec.clusterIP", "Forbidden: may not be set for ExternalName services")
    if cip not in (None, "", "None"):
        doc.check(cip, "spec.clusterIP", v.ipv4)
    if cip == "None" and typ not in ("ClusterIP",):
        raise doc.fail("spec.clusterIP", "Invalid value: \"None\": may only be set to 'None' for ClusterIP services")
    svc.cluster_ip = cip or None
    _check_cluster_ips(doc, spec, cip)
    if "selector" in spec and spec["selector"] is not None:
        svc.selector = doc.str_map(spec, "selector", "spec.selector")
    svc.ports = service_ports(doc, spec, typ)
    svc.external_ips = [doc.check(doc.check(ip, f"spec.externalIPs[{i}]", v.ipv4), f"spec.externalIPs[{i}]",
                                  v.non_special_ip)
                        for i, ip in enumerate(doc.get(spec, "externalIPs", "spec.externalIPs", list, []))]
    svc.load_balancer_source_ranges = _source_ranges(doc, spec, typ)
    svc.session_affinity = _enum(doc, spec, "sessionAffinity", ("None", "ClientIP"), "None")
    if svc.session_affinity == "None" and spec.get("sessionAffinityConfig") is not None:
        raise doc.fail("spec.sessionAffinityConfig", "Forbidden: must not be set when `sessionAffinity` is None")
    if svc.session_affinity == "ClientIP":
        cfg = doc.get(spec, "sessionAffinityConfig", "spec.sessionAffinityConfig", dict, {})
        cip_cfg = doc.get(cfg, "clientIP", "spec.sessionAffinityConfig.clientIP", dict, {})
        t = doc.get(cip_cfg, "timeoutSeconds", "spec.sessionAffinityConfig.clientIP.timeoutSeconds", int, 10800)
        if not 0 < t <= 86400:
            raise doc.fail("spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                           f"Invalid value: {t}: must be greater than 0 and less than 86400")
        svc.affinity_timeout = t
    svc.external_traffic_policy = _enum(doc, spec, "externalTrafficPolicy", ("Cluster", "Local"), "Cluster")
    # validateServiceExternalTrafficPolicy: only for apiservice.ExternallyAccessible Services (NodePort,
    # LoadBalancer, or ClusterIP with externalIPs); SetDefaults_Service defaults it to Cluster on those
    externally_accessible = typ in ("NodePort", "LoadBalancer") or (typ == "ClusterIP" and bool(svc.external_ips))
    if spec.get("externalTrafficPolicy") is not None and not externally_accessible:
        raise doc.fail("spec.externalTrafficPolicy", f"Invalid value: {svc.external_traffic_policy!r}: may only be "
                       "set for externally-accessible services")
    svc.internal_traffic_policy = _enum(doc, spec, "internalTrafficPolicy", ("Cluster", "Local"), "Cluster")
    svc.publish_not_ready_addresses = doc.get(spec, "publishNotReadyAddresses", "spec.publishNotReadyAddresses",
                                              bool, False)
    # SetDefaults_Service: true for type LoadBalancer; ValidateService forbids it on other types
    alloc = doc.get(spec, "allocateLoadBalancerNodePorts", "spec.allocateLoadBalancerNodePorts", bool, None)
    if alloc is not None and typ != "LoadBalancer":
        raise doc.fail("spec.allocateLoadBalancerNodePorts", "Forbidden: may only be used when `type` is "
                       "'LoadBalancer'")
    svc.allocate_load_balancer_node_ports = True if alloc is None else alloc
    hc = doc.get(spec, "healthCheckNodePort", "spec.healthCheckNodePort", int, None) or None    # 0: not set
    if hc is not None and not (typ == "LoadBalancer" and svc.external_traffic_policy == "Local"):
        raise doc.fail("spec.healthCheckNodePort", f"Invalid value: {hc}: may only be set when `type` is "
                       "'LoadBalancer' and `externalTrafficPolicy` is 'Local'")
    svc.health_check_node_port = hc
    svc.ip_family_policy, svc.ip_families = _ip_families(doc, spec, svc)
    status = doc.get(doc.body, "status", "status", dict, {})
    lb = doc.get(status, "loadBalancer", "status.loadBalancer", dict, {})
    for i, ing in enumerate(doc.get(lb, "ingress", "status.loadBalancer.ingress", list, [])):
        ip = doc.get(ing, "ip", f"status.loadBalancer.ingress[{i}].ip", str, None)
        if ip:
            svc.load_balancer_ips.append(doc.check(ip, f"status.loadBalancer.ingress[{i}].ip", v.ipv4))
    if svc.load_balancer_ips and typ != "LoadBalancer":
        raise doc.fail("status.loadBalancer.ingress", "Invalid value: only a LoadBalancer Service has ingress IPs")
    return svc


def service_ports(doc: Doc, spec: dict, typ: str) -> list[ServicePort]:
    raw = doc.get(spec, "ports", "spec.ports", list, [])
    if not raw and typ != "ExternalName" and spec.get("clusterIP") != "None":
        raise doc.fail("spec.ports", "Required value")
    ports: list[ServicePort] = []
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str, int]] = set()
    for i, p in enumerate(raw):
        path = f"spec.ports[{i}]"
        num = doc.check(doc.get(p, "port", f"{path}.port", int), f"{path}.port", v.port_number)
        proto = doc.get(p, "protocol", f"{path}.protocol", str, "TCP")
        if proto not in PROTOCOLS:
            raise doc.fail(f"{path}.protocol", f"Unsupported value: {proto!r}: supported values: "
                           + ", ".join(f'"{x}"' for x in PROTOCOLS))
        name = doc.get(p, "name", f"{path}.name", str, "")
        if len(raw) > 1 and not name:
            raise doc.fail(f"{path}.name", "Required value: when there is more than one port, each must be named")
        if name:
            doc.check(name, f"{path}.name", v.dns1123_label)
            if name in names:
                raise doc.fail(f"{path}.name", f"Duplicate value: {name!r}")
            names.add(name)
        tp = doc.get(p, "targetPort", f"{path}.targetPort", (int, str), num)
        if tp in (0, ""):       # SetDefaults_Service (pkg/apis/core/v1/defaults.go): unset targetPort = port
            tp = num
        if isinstance(tp, int):
            doc.check(tp, f"{path}.targetPort", v.port_number)
        else:       # IntOrString: a quoted number is a string, so it must be a valid port name
            doc.check(tp, f"{path}.targetPort", v.port_name)
        np = doc.get(p, "nodePort", f"{path}.nodePort", int, None) or None      # 0: not set
        if np is not None:
            if typ not in ("NodePort", "LoadBalancer"):
                raise doc.fail(f"{path}.nodePort", f"Forbidden: may not be used when `type` is '{typ}'")
            # The API server allocates node ports (storage beginCreate -> alloc.go initNodePorts) before
            # ValidateService runs, so a nodePort out of range, or the same nodePort on two port numbers,
            # is reported by the allocator (netsim/control/cluster.py). ValidateService's duplicate check, on
            # (protocol, nodePort) pairs, is only reachable for two ports of the same number.
            if (np, proto, num) in node_ports:
                raise doc.fail(f"{path}.nodePort", f"Duplicate value: {np}")
            node_ports.add((np, proto, num))
        if (num, proto) in seen:
            raise doc.fail(path, f"Duplicate value: {{port: {num}, protocol: {proto}}}")
        seen.add((num, proto))
        ports.append(ServicePort(port=num, protocol=proto, name=name, target_port=tp, node_port=np,
                                 app_protocol=doc.get(p, "appProtocol", f"{path}.appProtocol", str, None)))
    return ports


def endpoint_slice(doc: Doc) -> EndpointSlice:
    name, ns, labels = metadata(doc)
    svc_name = labels.get("kubernetes.io/service-name")
    if not svc_name:
        raise doc.fail("metadata.labels.kubernetes.io/service-name",
                       "Required value: the Service this slice belongs to")
    at = doc.get(doc.body, "addressType", "addressType", str)
    if at not in ("IPv4", "IPv6", "FQDN"):
        raise doc.fail("addressType", f'Unsupported value: {at!r}: supported values: "IPv4", "IPv6", "FQDN"')
    # pkg/apis/discovery/validation ValidateEndpointSlice: validateEndpoints, validatePorts
    endpoints = []
    raw_endpoints = doc.get(doc.body, "endpoints", "endpoints", list, [])
    if len(raw_endpoints) > 1000:
        raise doc.fail("endpoints", f"Too many: {len(raw_endpoints)}: must have at most 1000 items")
    for i, e in enumerate(raw_endpoints):
        path = f"endpoints[{i}]"
        addrs = doc.get(e, "addresses", f"{path}.addresses", list, [])
        if not addrs:
            raise doc.fail(f"{path}.addresses", "Required value: must contain at least 1 address")
        if len(addrs) > 100:
            raise doc.fail(f"{path}.addresses", f"Too many: {len(addrs)}: must have at most 100 items")
        if at == "IPv4":
            for j, a in enumerate(addrs):
                # discovery validation: a valid IPv4 address, then ValidateNonSpecialIP
                doc.check(doc.check(a, f"{path}.addresses[{j}]", v.ipv4), f"{path}.addresses[{j}]", v.non_special_ip)
        # discovery.k8s.io/v1 EndpointConditions: a nil ready or serving is "true", a nil terminating
        # "false" (types.go), as kube-proxy reads them (endpointslicecache.go newEndpointSliceInfo) and
        # CoreDNS does for ready. Absent is not a copy of another condition.
        cond = doc.get(e, "conditions", f"{path}.conditions", dict, {})
        ref = doc.get(e, "targetRef", f"{path}.targetRef", dict, None)
        endpoints.append(Endpoint(
            addresses=list(addrs),
            ready=_condition(doc, cond, "ready", path, True),
            serving=_condition(doc, cond, "serving", path, True),
            terminating=_condition(doc, cond, "terminating", path, False),
            node_name=_checked(doc, e, "nodeName", path, v.dns1123_subdomain),      # ValidateNodeName
            hostname=_checked(doc, e, "hostname", path, v.dns1123_label),
            zone=doc.get(e, "zone", f"{path}.zone", str, None),
            target_ref=(ref.get("kind", "Pod"), ref.get("namespace", ns), ref.get("name", "")) if ref else None))
    ports = []
    port_names: set[str] = set()
    for i, p in enumerate(doc.get(doc.body, "ports", "ports", list, [])):
        path = f"ports[{i}]"
        pname = doc.get(p, "name", f"{path}.name", str, "")          # SetDefaults_EndpointPort: ""
        if pname:
            doc.check(pname, f"{path}.name", v.dns1123_label)
        if pname in port_names:
            raise doc.fail(f"{path}.name", f"Duplicate value: {pname!r}")
        port_names.add(pname)
        proto = doc.get(p, "protocol", f"{path}.protocol", str, "TCP")   # SetDefaults_EndpointPort: TCP
        if proto not in PROTOCOLS:
            raise doc.fail(f"{path}.protocol", f"Unsupported value: {proto!r}: supported values: "
                           + ", ".join(f'"{x}"' for x in sorted(PROTOCOLS)))
        num = doc.get(p, "port", f"{path}.port", int, None)
        if not num:
            # the API server accepts a port without a number ("all ports", not implemented); kube-proxy
            # skips it (endpointslicecache.go: "Ignoring invalid endpoint port"), so it is not kept
            continue
        ports.append(EndpointPort(doc.check(num, f"{path}.port", v.port_number), proto, pname))
    return EndpointSlice(name=name, namespace=ns, service_name=svc_name, address_type=at, endpoints=endpoints,
                         ports=ports, managed_by=labels.get("endpointslice.kubernetes.io/managed-by", "user"))


def _checked(doc: Doc, obj: dict, key: str, path: str, rule) -> Optional[str]:
    value = doc.get(obj, key, f"{path}.{key}", str, None)
    return None if value is None else doc.check(value, f"{path}.{key}", rule)


def _condition(doc: Doc, cond: dict, name: str, path: str, if_nil: bool) -> bool:
    """One EndpointConditions field; absent or null (nil) reads as ``if_nil``."""
    value = doc.get(cond, name, f"{path}.conditions.{name}", bool, None)
    return if_nil if value is None else value


def _source_ranges(doc: Doc, spec: dict, typ: str) -> list[str]:
    """ValidateService on loadBalancerSourceRanges: LoadBalancer only, a list of CIDRs (space padding
    allowed, host bits allowed: apiservice.GetLoadBalancerSourceRanges). The field path is spelled
    ``spec.LoadBalancerSourceRanges`` there, as the API server's messages show it."""
    ranges = doc.get(spec, "loadBalancerSourceRanges", "spec.loadBalancerSourceRanges", list, [])
    if not ranges:
        return []
    path = "spec.LoadBalancerSourceRanges"
    if typ != "LoadBalancer":
        raise doc.fail(path, "Forbidden: may only be used when `type` is 'LoadBalancer'")
    if any(not isinstance(r, str) or _cidr_loose(r.strip()) for r in ranges):
        shown = "[" + " ".join(str(r) for r in ranges) + "]"
        raise doc.fail(path, f"Invalid value: {shown!r}: must be a list of IP ranges. For example, "
                       "10.240.0.0/24,10.250.0.0/24")
    return [r.strip() for r in ranges]


def _check_cluster_ips(doc: Doc, spec: dict, cip: Optional[str]) -> None:
    """spec.clusterIPs next to spec.clusterIP (ValidateServiceClusterIPsRelatedFields; the API server fills
    clusterIPs from clusterIP, never the reverse), and a second cluster IP on a single-stack cluster
    (alloc.go initIPFamilyFields)."""
    ips = doc.get(spec, "clusterIPs", "spec.clusterIPs", list, [])
    if not ips:
        return
    if not cip:
        raise doc.fail("spec.clusterIPs", f"Invalid value: {ips!r}: must be empty when `clusterIP` is not specified")
    if ips[0] != cip:
        raise doc.fail("spec.clusterIPs", f"Invalid value: {ips!r}: first value must match `clusterIP`")
    if len(ips) > 1:
        policy = spec.get("ipFamilyPolicy") or "SingleStack"
        if policy == "SingleStack":
            raise doc.fail("spec.ipFamilyPolicy", "Invalid value: 'SingleStack': must be 'RequireDualStack' or "
                           "'PreferDualStack' when multiple cluster IPs are specified")
        family = "IPv6" if ":" in str(ips[1]) else "IPv4"
        raise doc.fail("spec.clusterIPs[1]", f"Invalid value: {ips!r}: {family} is not configured on this cluster")


IP_FAMILY_POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")


def _ip_families(doc: Doc, spec: dict, svc: Service) -> tuple[Optional[str], list[str]]:
    """ipFamilyPolicy / ipFamilies on a single-stack IPv4 cluster (netsim's): ValidateServiceClusterIPsRelatedFields
    then alloc.go initIPFamilyFields. Defaults: SingleStack and [IPv4]; headless selector-less Services
    RequireDualStack and [IPv4, IPv6] (the one dual-family case a single-stack cluster allows);
    ExternalName Services none."""
    policy = doc.get(spec, "ipFamilyPolicy", "spec.ipFamilyPolicy", str, None)
    families = doc.get(spec, "ipFamilies", "spec.ipFamilies", list, [])
    if svc.type == "ExternalName":
        if policy is not None:
            raise doc.fail("spec.ipFamilyPolicy", "Forbidden: must not be set for ExternalName services")
        if families:
            raise doc.fail("spec.ipFamilies", "Forbidden: must not be set for ExternalName services")
        return None, []
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        raise doc.fail("spec.ipFamilyPolicy", f"Unsupported value: {policy!r}: supported values: "
                       + ", ".join(f'"{p}"' for p in IP_FAMILY_POLICIES))
    if len(families) > 2:
        raise doc.fail("spec.ipFamilies", f"Invalid value: {families!r}: may specify no more than two IP families")
    for i, fam in enumerate(families):
        if fam not in ("IPv4", "IPv6"):
            raise doc.fail(f"spec.ipFamilies[{i}]", f'Unsupported value: {fam!r}: supported values: "IPv4", "IPv6"')
        if fam in families[:i]:
            raise doc.fail(f"spec.ipFamilies[{i}]", f"Duplicate value: {fam!r}")
    headless_selectorless = svc.cluster_ip == "None" and not svc.selector
    if policy is None:
        policy = "RequireDualStack" if headless_selectorless else "SingleStack"
    if policy == "SingleStack" and len(families) == 2:
        raise doc.fail("spec.ipFamilyPolicy", "Invalid value: 'SingleStack': must be 'RequireDualStack' or "
                       "'PreferDualStack' when multiple IP families are specified")
    if headless_selectorless:
        families = list(families) or ["IPv4"]
        if len(families) < 2 and policy != "SingleStack":
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        return policy, families
    if policy == "RequireDualStack":
        raise doc.fail("spec.ipFamilyPolicy", "Invalid value: 'RequireDualStack': this cluster is not configured "
                       "for dual-stack services")
    for i, fam in enumerate(families):
        if fam != "IPv4":
            raise doc.fail(f"spec.ipFamilies[{i}]", f"Invalid value: {fam!r}: not configured on this cluster")
    return policy, families or ["IPv4"]


def _enum(doc: Doc, spec: dict, key: str, allowed: tuple, default: str) -> str:
    val = doc.get(spec, key, f"spec.{key}", str, default)
    if val not in allowed:
        raise doc.fail(f"spec.{key}", f"Unsupported value: {val!r}: supported values: "
                       + ", ".join(f'"{a}"' for a in allowed))
    return val


def _cidr_loose(s) -> str | None:
    try:
        ipaddress.IPv4Network(s, strict=False)
    except (ValueError, TypeError):
        return "must be a valid IPv4 CIDR"
    return None
