"""`netsim events`: the control-plane flow of loading a cluster, as `kubectl get events` prints it."""
from __future__ import annotations

import click

from netsim.cli.common import file_option, load_emulator
from netsim.control.events import format_events


@click.command("events")
@file_option
@click.option("-n", "--namespace", default=None, help="Only events of this namespace (cluster-scoped ones always shown).")
def events(files, namespace) -> None:
    """Print the ordered event log: apply, scheduling, pod start, endpoint slices, kube-proxy syncs."""
    em = load_emulator(files)              # with --stop-node / --delete-pod / --advance applied
    click.echo(format_events(em.events(namespace)))
