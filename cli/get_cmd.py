"""`netsim get TYPE[,TYPE...] [NAME...]`: kubectl get, on the emulated cluster.

Resource names, short names and the `all` category are kubectl's (`kubectl api-resources`); the
table columns are kubectl's printers (kubernetes pkg/printers/internalversion/printers.go:
podColumnDefinitions, nodeColumnDefinitions, serviceColumnDefinitions, endpointsColumnDefinitions,
endpointSliceColumnDefinitions, deploymentColumnDefinitions, replicaSetColumnDefinitions,
statefulSetColumnDefinitions); AGE is k8s.io/apimachinery duration.HumanDuration of the cluster
clock since the object was created. Several types (or `all`) print one table per type with
`kind/name` names, as kubectl does.
"""
from __future__ import annotations

import json

import click
import yaml

from netsim.cli.common import EXIT_NOT_DELIVERED, file_option, load_cluster
from netsim.cli.printers import PRINTERS, creation_times, k8s_object
from netsim.control.events import format_table

# kubectl's resource names: plural, singular and short names (kubectl api-resources)
RESOURCES = {
    "nodes": "nodes", "node": "nodes", "no": "nodes",
    "pods": "pods", "pod": "pods", "po": "pods",
    "services": "services", "service": "services", "svc": "services",
    "endpoints": "endpoints", "ep": "endpoints",
    "endpointslices": "endpointslices", "endpointslice": "endpointslices",
    "deployments": "deployments", "deployment": "deployments", "deploy": "deployments",
    "replicasets": "replicasets", "replicaset": "replicasets", "rs": "replicasets",
    "statefulsets": "statefulsets", "statefulset": "statefulsets", "sts": "statefulsets",
    "daemonsets": "daemonsets", "daemonset": "daemonsets", "ds": "daemonsets",
}
# the "all" category, in kubectl's order (the types it has that netsim models)
ALL = ("pods", "services", "daemonsets", "deployments", "replicasets", "statefulsets")
# kubectl's kind/name prefix when several types are printed
PREFIX = {"nodes": "node", "pods": "pod", "services": "service", "endpoints": "endpoints",
          "endpointslices": "endpointslice.discovery.k8s.io", "deployments": "deployment.apps",
          "replicasets": "replicaset.apps", "statefulsets": "statefulset.apps", "daemonsets": "daemonset.apps"}


def _types(arg: str) -> list[str]:
    out: list[str] = []
    for word in arg.split(","):
        if word == "all":
            out += [t for t in ALL if t not in out]
            continue
        kind = RESOURCES.get(word.lower())
        if kind is None:
            raise click.UsageError(f'the server doesn\'t have a resource type "{word}"')
        if kind not in out:
            out.append(kind)
    return out


@click.command("get")
@click.argument("resource", metavar="TYPE[,TYPE...]|all")
@click.argument("names", nargs=-1, metavar="[NAME...]")
@file_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["wide", "json", "yaml"]), default=None)
def get(resource: str, names, files, namespace: str, all_namespaces: bool, output) -> None:
    """Display nodes, pods, services, endpoints, endpoint slices, deployments, replica sets or
    stateful sets like kubectl get (short names, TYPE,TYPE, all, NAME...)."""
    kinds = _types(resource)
    if names and (len(kinds) > 1 or resource == "all"):
        raise click.UsageError("there is no need to specify a resource type as a separate argument when passing "
                               "arguments in resource/name form (one TYPE with NAME...)")
    cluster = load_cluster(files)
    ns = None if all_namespaces else namespace
    created = creation_times(cluster)
    now = cluster.clock.now
    found: list[tuple[str, list]] = []
    missing: list[str] = []
    for kind in kinds:
        objs = PRINTERS[kind].list(cluster, ns)
        objs.sort(key=lambda o: (getattr(o, "namespace", ""), o.name))
        if names:
            by_name = {o.name: o for o in objs}
            missing += [f'Error from server (NotFound): {kind} "{n}" not found' for n in names if n not in by_name]
            objs = [by_name[n] for n in names if n in by_name]
        found.append((kind, objs))
    if output in ("json", "yaml"):
        items = [k8s_object(kind, o, cluster) for kind, objs in found for o in objs]
        doc = items[0] if names and len(items) == 1 else \
            {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
        click.echo(json.dumps(doc, indent=4, sort_keys=True) if output == "json"
                   else yaml.safe_dump(doc, sort_keys=True).rstrip())
    else:
        _print_tables(found, kinds, created, now, output == "wide", all_namespaces, namespace)
    for m in missing:
        click.echo(m, err=True)
    if missing:
        raise SystemExit(EXIT_NOT_DELIVERED)


def _print_tables(found, kinds, created, now, wide, all_namespaces, namespace) -> None:
    several = len(kinds) > 1
    printed = 0
    for kind, objs in found:
        if not objs:
            continue
        p = PRINTERS[kind]
        header, rows = p.table(objs, wide, created, now)
        if several:
            rows = [[f"{PREFIX[kind]}/{r[0]}"] + r[1:] for r in rows]
        if all_namespaces and p.namespaced:
            header = ["NAMESPACE"] + header
            rows = [[o.namespace] + r for o, r in zip(objs, rows)]
        if printed:
            click.echo("")
        click.echo(format_table(header, rows))
        printed += 1
    if not printed:
        namespaced = any(PRINTERS[k].namespaced for k in kinds)
        where = f" in {namespace} namespace" if namespaced and not all_namespaces else ""
        click.echo(f"No resources found{where}.", err=True)
