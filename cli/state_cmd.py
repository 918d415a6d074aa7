"""The imperative flow on a saved cluster: `netsim run / expose / scale / apply / delete --state DIR`.

Each command answers as kubectl does (`deployment.apps/web created`) and then prints the events the
control plane produced for that step, in order: kube-apiserver → kube-controller-manager →
kube-scheduler → kubelet → kube-proxy. Every other command reads the saved cluster as `-f state:DIR`.
"""
from __future__ import annotations

from typing import Optional

import click

from netsim.cli.common import input_limits, validate_mode, validate_option
from netsim.control.docfields import ManifestError
from netsim.control.events import format_table

state_option = click.option("--state", "state_dir", default=".netsim-state", show_default=True, metavar="DIR",
                            help="Directory of the saved cluster (read it elsewhere with -f state:DIR).")
namespace_option = click.option("-n", "--namespace", default="default", show_default=True)


def _step(state_dir: str, op: dict) -> None:
    from netsim.control.cluster import ClusterError
    from netsim.control.statedir import StateDir, StateError, describe_events
    try:
        result = StateDir(state_dir).step(op, validate_mode())
    except (StateError, ManifestError, ClusterError) as e:
        raise click.ClickException(str(e)) from None
    for line in result.lines:
        click.echo(line)
    for n in result.notices:
        click.echo(n, err=True)
    rows = []
    stored = {e.object for e in result.events if e.source == "kube-apiserver"}
    for res, name, verb in result.changes:
        if verb != "unchanged" and f"{res.split('.', 1)[0]}/{name}" not in stored:
            rows.append(["kube-apiserver", verb.capitalize(), f"{res}/{name}",
                         "validated, written to etcd, watchers notified"])
    rows += describe_events(result.events)
    if rows:
        click.echo("")
        click.echo(format_table(["COMPONENT", "REASON", "OBJECT", "MESSAGE"], rows))


@click.command("run")
@click.argument("name")
@click.option("--image", required=True, help="Container image, e.g. httpd or nginx:1.27.")
@click.option("--replicas", type=click.IntRange(min=0), default=None,
              help="Make a Deployment of N pods (kubectl <= 1.17's run); without it, one Pod (kubectl run).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Declare this containerPort.")
@namespace_option
@state_option
@validate_option
def run(name: str, image: str, replicas: Optional[int], port: Optional[int], namespace: str, state_dir: str) -> None:
    """kubectl run NAME --image=IMG [--replicas=N] on the saved cluster (started if there is none)."""
    from netsim.control import generators
    from netsim.control.statedir import op_apply
    body = generators.run(name, image, replicas, port)
    if namespace != "default":
        body["metadata"]["namespace"] = namespace
    cmd = f"netsim run {name} --image {image}" + (f" --replicas {replicas}" if replicas is not None else "") \
        + (f" --port {port}" if port else "")
    _step(state_dir, op_apply([body], "netsim run", cmd))


@click.command("expose")
@click.argument("resource", type=click.Choice(["deployment", "deploy", "pod", "po", "replicaset", "rs",
                                               "statefulset", "sts"]))
@click.argument("name")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="The Service port.")
@click.option("--target-port", default=None, help="Port number or name on the pods (default: --port).")
@click.option("--type", "type_", type=click.Choice(["ClusterIP", "NodePort", "LoadBalancer"]), default=None)
@click.option("--name", "svc_name", default=None, help="Service name (default: NAME).")
@click.option("--protocol", type=click.Choice(["TCP", "UDP", "SCTP"]), default="TCP", show_default=True)
@namespace_option
@state_option
@validate_option
def expose(resource, name, port, target_port, type_, svc_name, protocol, namespace, state_dir) -> None:
    """kubectl expose deployment|pod NAME --port=P [--target-port=T] [--type=NodePort]."""
    from netsim.control import generators
    from netsim.control.statedir import RESOURCE_ALIASES, StateDir, StateError, find_document, op_apply
    try:
        body = find_document(StateDir(state_dir), RESOURCE_ALIASES[resource], name, namespace)
        svc = generators.expose(body, port, target_port, type_, svc_name, protocol)
    except (StateError, generators.GeneratorError) as e:
        raise click.ClickException(str(e)) from None
    if namespace != "default":
        svc["metadata"]["namespace"] = namespace
    cmd = f"netsim expose {RESOURCE_ALIASES[resource]} {name}" + (f" --type {type_}" if type_ else "") + \
        (f" --port {port}" if port else "") + (f" --target-port {target_port}" if target_port else "")
    _step(state_dir, op_apply([svc], "netsim expose", cmd))


@click.command("scale")
@click.argument("resource", type=click.Choice(["deployment", "deploy", "replicaset", "rs", "statefulset", "sts"]))
@click.argument("name")
@click.option("--replicas", type=click.IntRange(min=0), required=True)
@namespace_option
@state_option
@validate_option
def scale(resource, name, replicas, namespace, state_dir) -> None:
    """kubectl scale deployment NAME --replicas=N."""
    from netsim.control.statedir import RESOURCE_ALIASES
    res = RESOURCE_ALIASES[resource]
    _step(state_dir, {"op": "scale", "command": f"netsim scale {res} {name} --replicas {replicas}",
                      "resource": res, "name": name, "namespace": namespace, "replicas": replicas})


@click.command("apply")
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="Manifest file (multi-document YAML) or example:NAME; repeatable.")
@state_option
@validate_option
def apply(files, state_dir) -> None:
    """kubectl apply -f FILE on the saved cluster (a first apply may carry the netsim.io/v1 Cluster document)."""
    from netsim.control.manifests import read_documents
    from netsim.control.statedir import op_apply
    try:
        docs = read_documents(files, input_limits())
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    _step(state_dir, op_apply([d.body for d in docs], ",".join(files), "netsim apply " +
                              " ".join(f"-f {f}" for f in files)))


@click.command("delete")
@click.argument("resource", type=click.Choice(["deployment", "deploy", "replicaset", "rs", "statefulset", "sts",
                                               "daemonset", "ds", "service", "svc", "pod", "po"]))
@click.argument("name")
@namespace_option
@state_option
@validate_option
def delete(resource, name, namespace, state_dir) -> None:
    """kubectl delete KIND NAME; waits until it and its pods are gone (the cluster clock runs through
    their grace period)."""
    from netsim.control.statedir import RESOURCE_ALIASES
    res = RESOURCE_ALIASES[resource]
    _step(state_dir, {"op": "delete", "command": f"netsim delete {res} {name}", "resource": res, "name": name,
                      "namespace": namespace})


STATE_COMMANDS = (run, expose, scale, apply, delete)
