"""`netsim events`: the control-plane flow of loading a cluster, as `kubectl get events` prints it."""
from __future__ import annotations

import click

from netsim.cli.common import file_option, load_emulator
from netsim.events import format_events


@click.command("events")
@file_option
@click.option("-n", "--namespace", default=None, help="Only events of this namespace (cluster-scoped ones always shown).")
@click.option("--advance", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS", help="Run the cluster clock forward first.")
@click.option("--stop-node", multiple=True, metavar="NODE", help="Stop a node's kubelet at t=0 (fault injection).")
def events(files, namespace, advance: float, stop_node) -> None:
    """Print the ordered event log: apply, scheduling, pod start, endpoint slices, kube-proxy syncs."""
    em = load_emulator(files)
    for n in stop_node:
        if em.cluster.node(n) is None:
            raise click.ClickException(f"--stop-node: no node named {n!r}")
        em.stop_node(n)
    if advance:
        em.advance(advance)
    click.echo(format_events(em.events(namespace)))
