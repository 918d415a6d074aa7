"""`netsim demo`: the built-in examples end to end, in each kube-proxy mode available."""
from __future__ import annotations

import click

from netsim.cli.common import ModeChoice
from netsim.dataplane.summary import render_summary, summarize


def demo_scenarios(cluster, example: str) -> list[tuple[str, str, str]]:
    """(client, target, title) to trace in an example: pod → Service by name when the example has a
    client pod, and external → the first NodePort on the first worker node."""
    out = []
    if example == "httpd-app":
        out.append(("pod/client", "http://httpd-app/", "pod client -> Service httpd-app by name"))
    nodes = cluster.nodes()
    node = nodes[1] if len(nodes) > 1 else nodes[0]
    nodeport = next((sp.node_port for s in cluster.services() for sp in s.ports
                     if s.type in ("NodePort", "LoadBalancer") and sp.node_port), None)
    if nodeport:
        out.append(("external", f"http://{node.ip}:{nodeport}/",
                    f"external client -> NodePort {nodeport} on {node.name}"))
    return out


EXAMPLES = (
    ("kubectl-httpd", "kubectl create deployment httpd-app --image=httpd --replicas=2 && "
                      "kubectl expose deployment httpd-app --type=NodePort --port=80"),
    ("httpd-app", "the httpd-app example with a client pod"),
)


@click.command("demo")
@click.option("--mode", type=ModeChoice(kube_proxy_only=True, walks_packets=True, extra=("all",)), default="all", show_default=True)
@click.option("--count", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Connections for the distribution summary.")
@click.option("-v", "--verbose", is_flag=True)
def demo(mode, count, verbose) -> None:
    """kubectl's own manifests of the httpd-app flow (external → NodePort), then the httpd-app example
    (pod → Service by name, external → NodePort), traced in each proxy mode."""
    from netsim.api import load
    from netsim.rules.registry import available_modes
    for example, what in EXAMPLES:
        for m in available_modes(kube_proxy_only=True, walks_packets=True) if mode == "all" else (mode,):
            em = load(f"example:{example}", mode=m)
            for n in em.notices:
                click.echo(n, err=True)
            for client, to, title in demo_scenarios(em.cluster, example):
                click.secho(f"=== [{m}] example:{example} ({what}): {title}", bold=True)
                try:
                    first = em.copy().trace(client, to)
                    many = em.copy().traces(client, to, count)
                except ValueError as e:
                    raise click.ClickException(str(e)) from None
                click.echo(first.render(verbose=verbose))
                click.echo("")
                click.echo(render_summary(summarize(many)))
                click.echo("")
