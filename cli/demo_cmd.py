"""`netsim demo`: the httpd-app example end to end, in each kube-proxy mode available."""
from __future__ import annotations

import click

from netsim.cli.trace_cmd import render_summary, run_traces, summarize


MODES = ("iptables", "ipvs")


@click.command("demo")
@click.option("--mode", type=click.Choice(["all", *MODES]), default="all", show_default=True)
@click.option("--count", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Connections for the distribution summary.")
@click.option("-v", "--verbose", is_flag=True)
def demo(mode, count, verbose) -> None:
    """pod → Service by name, and external → NodePort, traced in each proxy mode."""
    from netsim.manifests import load
    for m in MODES if mode == "all" else (mode,):
        cluster = load(["example:httpd-app"])
        node = cluster.nodes()[0]
        nodeport = next((sp.node_port for s in cluster.services() for sp in s.ports
                         if s.type in ("NodePort", "LoadBalancer") and sp.node_port), None)
        scenarios = [("pod/client", "http://httpd-app/", "pod client -> Service httpd-app by name")]
        if nodeport:
            scenarios.append(("external", f"{node.ip}:{nodeport}",
                              f"external client -> NodePort {nodeport} on {node.name}"))
        for client, to, title in scenarios:
            click.secho(f"=== [{m}] {title}", bold=True)
            try:
                _w, traces = run_traces(cluster, client, "default", to, None, m, 1, False)
                _w2, many = run_traces(cluster, client, "default", to, None, m, count, False)
            except ValueError as e:
                raise click.ClickException(str(e)) from None
            click.echo(traces[0].render(verbose=verbose))
            click.echo("")
            click.echo(render_summary(summarize(many)))
            click.echo("")
