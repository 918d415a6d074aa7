"""`netsim get nodes|pods|services|endpointslices`: kubectl get, on the emulated cluster."""
from __future__ import annotations

import json

import click
import yaml

from netsim.cli.common import file_option, load_cluster
from netsim.events import format_table
from netsim.serialize import node_to_k8s, pod_to_k8s, service_to_k8s, slice_to_k8s

RESOURCES = {
    "nodes": "nodes", "node": "nodes", "no": "nodes",
    "pods": "pods", "pod": "pods", "po": "pods",
    "services": "services", "service": "services", "svc": "services",
    "endpointslices": "endpointslices", "endpointslice": "endpointslices",
}


@click.command("get")
@click.argument("resource", type=click.Choice(sorted(RESOURCES)), metavar="nodes|pods|services|endpointslices")
@file_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["wide", "json", "yaml"]), default=None)
def get(resource: str, files, namespace: str, all_namespaces: bool, output) -> None:
    """Display nodes, pods, services or endpoint slices like kubectl get."""
    cluster = load_cluster(files)
    kind = RESOURCES[resource]
    ns = None if all_namespaces else namespace
    objs, to_k8s, table = {
        "nodes": (cluster.nodes(), node_to_k8s, _nodes),
        "pods": (cluster.pods(ns), pod_to_k8s, _pods),
        "services": (cluster.services(ns), service_to_k8s, _services),
        "endpointslices": (cluster.endpoint_slices(ns), slice_to_k8s, _slices),
    }[kind]
    if output in ("json", "yaml"):
        doc = {"apiVersion": "v1", "kind": "List", "items": [to_k8s(o) for o in objs]}
        click.echo(json.dumps(doc, indent=4) if output == "json" else yaml.safe_dump(doc, sort_keys=False).rstrip())
        return
    if not objs:
        where = "" if kind == "nodes" or all_namespaces else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    if kind != "nodes":
        objs = sorted(objs, key=lambda o: (o.namespace, o.name))
    header, rows = table(objs, output == "wide")
    if all_namespaces and kind != "nodes":
        header = ["NAMESPACE"] + header
        rows = [[o.namespace] + r for o, r in zip(objs, rows)]
    click.echo(format_table(header, rows))


def _nodes(nodes, wide):
    header = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] + (["INTERNAL-IP", "POD-CIDR"] if wide else [])
    rows = []
    for n in nodes:
        # kubectl's node printer: every node-role.kubernetes.io/ROLE label, and kubernetes.io/role
        roles = sorted({k.split("/", 1)[1] for k in n.labels if k.startswith("node-role.kubernetes.io/")}
                       | ({n.labels["kubernetes.io/role"]} if n.labels.get("kubernetes.io/role") else set()))
        row = [n.name, "Ready" if n.ready else "NotReady", ",".join(roles) or "<none>", "-", "v1.33.0"]
        rows.append(row + ([n.ip, n.pod_cidr] if wide else []))
    return header, rows


def _pods(pods, wide):
    header = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE"] if wide else [])
    rows = []
    for p in pods:
        status = "Terminating" if p.terminating else p.phase
        row = [p.name, "1/1" if p.ready and p.phase == "Running" else "0/1", status, "0", "-"]
        rows.append(row + ([p.ip or "<none>", p.node_name or "<none>"] if wide else []))
    return header, rows


def _services(svcs, wide):
    header = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + (["SELECTOR"] if wide else [])
    rows = []
    for s in svcs:
        ext = s.load_balancer_ips + s.external_ips
        external = ",".join(ext) if ext else (s.external_name if s.type == "ExternalName" else
                                              ("<pending>" if s.type == "LoadBalancer" else "<none>"))
        ports = ",".join(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
                         for p in s.ports) or "<none>"
        row = [s.name, s.type, s.cluster_ip or "<none>", external, ports, "-"]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in (s.selector or {}).items()) or "<none>")
        rows.append(row)
    return header, rows


def _slices(slices, wide):
    header = ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    rows = []
    for s in slices:
        addrs = [a for e in s.endpoints for a in e.addresses]
        shown = ",".join(addrs[:3]) + (f" + {len(addrs) - 3} more..." if len(addrs) > 3 else "")
        ports = ",".join(str(p.port) for p in s.ports) or "<unset>"
        rows.append([s.name, s.address_type, ports, shown or "<unset>", "-"])
    return header, rows
