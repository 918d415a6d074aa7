"""Model objects back to Kubernetes API shape (what `kubectl get -o json|yaml` prints)."""
from __future__ import annotations

from netsim.control.model import EndpointSlice, Node, Pod, Service


def node_to_k8s(n: Node) -> dict:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": dict(n.labels)},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
            "conditions": [{"type": "Ready", "status": "True" if n.ready else "Unknown",
                            "reason": "KubeletReady" if n.ready else "NodeStatusUnknown"}],
        },
    }


def pod_to_k8s(p: Pod) -> dict:
    containers = [{"name": "main", "ports": [
        {k: v for k, v in (("name", cp.name), ("containerPort", cp.container_port), ("protocol", cp.protocol),
                           ("hostPort", cp.host_port), ("hostIP", cp.host_ip))
         if v is not None} for cp in p.ports]}]
    spec: dict = {"containers": containers, "dnsPolicy": p.dns_policy}
    for key, val in (("nodeName", p.node_name), ("hostname", p.hostname), ("subdomain", p.subdomain)):
        if val:
            spec[key] = val
    if p.node_selector:
        spec["nodeSelector"] = dict(p.node_selector)
    if p.host_network:
        spec["hostNetwork"] = True
    if p.priority_class:
        spec["priorityClassName"] = p.priority_class
    meta: dict = {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels), "uid": p.uid}
    if p.owner:
        meta["ownerReferences"] = [{"kind": p.owner[0], "name": p.owner[1], "controller": True}]
    status: dict = {"phase": p.phase, "conditions": [{"type": "Ready", "status": "True" if p.ready else "False"}]}
    if p.ip:
        status["podIP"] = p.ip
        status["podIPs"] = [{"ip": p.ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def service_to_k8s(s: Service) -> dict:
    spec: dict = {"type": s.type}
    if s.type == "ExternalName":
        spec["externalName"] = s.external_name
    else:
        spec["clusterIP"] = s.cluster_ip
        spec["clusterIPs"] = [s.cluster_ip]
    if s.selector is not None:
        spec["selector"] = dict(s.selector)
    ports = []
    for p in s.ports:
        d: dict = {"port": p.port, "protocol": p.protocol, "targetPort": p.target_port or p.port}
        if p.name:
            d["name"] = p.name
        if p.node_port:
            d["nodePort"] = p.node_port
        ports.append(d)
    if ports:
        spec["ports"] = ports
    if s.external_ips:
        spec["externalIPs"] = list(s.external_ips)
    if s.load_balancer_source_ranges:
        spec["loadBalancerSourceRanges"] = list(s.load_balancer_source_ranges)
    spec["sessionAffinity"] = s.session_affinity
    if s.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": s.affinity_timeout}}
    if s.type in ("NodePort", "LoadBalancer") or (s.type == "ClusterIP" and s.external_ips):
        spec["externalTrafficPolicy"] = s.external_traffic_policy       # SetDefaults_Service
    if s.type == "LoadBalancer":
        spec["allocateLoadBalancerNodePorts"] = s.allocate_load_balancer_node_ports
    if s.type != "ExternalName":
        if s.cluster_ip:
            spec["clusterIPs"] = [s.cluster_ip]
        spec["ipFamilies"] = list(s.ip_families)
        spec["ipFamilyPolicy"] = s.ip_family_policy
    if s.type != "ExternalName":
        spec["internalTrafficPolicy"] = s.internal_traffic_policy
    if s.health_check_node_port:
        spec["healthCheckNodePort"] = s.health_check_node_port
    if s.publish_not_ready_addresses:
        spec["publishNotReadyAddresses"] = True
    status: dict = {"loadBalancer": {}}
    if s.load_balancer_ips:
        status["loadBalancer"] = {"ingress": [{"ip": ip} for ip in s.load_balancer_ips]}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": dict(s.labels)},
            "spec": spec, "status": status}


def slice_to_k8s(s: EndpointSlice) -> dict:
    endpoints = []
    for e in s.endpoints:
        d: dict = {"addresses": list(e.addresses),
                   "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating}}
        if e.node_name:
            d["nodeName"] = e.node_name
        if e.hostname:
            d["hostname"] = e.hostname
        if e.zone:
            d["zone"] = e.zone
        if e.target_ref:
            d["targetRef"] = {"kind": e.target_ref[0], "namespace": e.target_ref[1], "name": e.target_ref[2]}
        endpoints.append(d)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": s.name, "namespace": s.namespace,
                         # the apiserver's own slice for default/kubernetes has no managed-by label
                         "labels": {"kubernetes.io/service-name": s.service_name,
                                    **({"endpointslice.kubernetes.io/managed-by": s.managed_by}
                                       if s.managed_by else {})}},
            "addressType": s.address_type, "endpoints": endpoints,
            "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in s.ports]}
