"""`netsim trace`: follow one request (or N) from a client to a pod and back, hop by hop."""
from __future__ import annotations

import json
from collections import Counter
from typing import Optional

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, file_option, load_cluster


def run_traces(cluster, client: str, namespace: str, to: str, proto: Optional[str], mode: Optional[str],
               count: int, capture: bool):
    """Resolve the target and walk ``count`` new connections; returns (walker, traces). Raises ValueError."""
    from netsim.target import parse_target, resolve
    from netsim.walker import Walker
    walker = Walker(cluster, mode)
    host = walker.host_for(client, namespace)
    target = parse_target(to)
    ns = host.name.split("/", 1)[0] if host.kind == "pod" else namespace
    traces = []
    for _ in range(count):
        r = resolve(walker, host, target, proto, ns)
        full = target.http and r.proto == "tcp"
        payload = f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode() if full else b""
        traces.append(walker.connect(host, r.ip, r.port, r.proto, full=full, payload=payload, capture=capture,
                                     target=to, resolved_by=r.how, notes=r.notes))
    return walker, traces


def conntrack_tables(walker) -> str:
    out = []
    for node in sorted(walker.conntrack):
        if len(walker.conntrack[node]):
            out.append(f"# conntrack -L (node {node})")
            out.append(walker.conntrack_listing(node))
    return "\n".join(out)


def summarize(traces) -> dict:
    by_endpoint: Counter = Counter()
    by_outcome: Counter = Counter()
    for t in traces:
        o = t.outcome
        by_outcome[o.disposition] += 1
        if o.ok:
            by_endpoint[f"{o.pod or o.host} {o.ip}:{o.port}"] += 1
    return {"schema": "netsim.trace-summary/v1", "count": len(traces),
            "outcomes": dict(sorted(by_outcome.items())), "endpoints": dict(sorted(by_endpoint.items()))}


def render_summary(s: dict) -> str:
    lines = [f"{s['count']} new connections"]
    lines.append(f"{'ENDPOINT':<60} {'CONNECTIONS':>11} {'SHARE':>6}")
    for ep, n in s["endpoints"].items():
        lines.append(f"{ep:<60} {n:>11} {100.0 * n / s['count']:>5.1f}%")
    lines.append("outcomes: " + ", ".join(f"{k} {v}" for k, v in s["outcomes"].items()))
    return "\n".join(lines)


@click.command("trace")
@file_option
@click.option("--from", "client", required=True, metavar="pod/NAME|node/NAME|external",
              help="Where the request starts.")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of --from pod/NAME.")
@click.option("--to", "to", required=True, metavar="TARGET",
              help="http://name[.ns][:port]/path, name[.ns[.svc...]]:port or IP:port.")
@click.option("--proto", type=click.Choice(["tcp", "udp", "icmp"]), default=None,
              help="Protocol (default: the Service port's, else tcp).")
@click.option("--mode", type=click.Choice(["iptables", "ipvs", "none"]), default=None,
              help="kube-proxy mode (default: the Cluster document's proxyMode).")
@click.option("--seed", type=int, default=None, help="Reseed the cluster RNG before tracing.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--pcap", "pcap", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every packet at every hop to this pcapng file.")
@click.option("--count", type=click.IntRange(1, 100000), default=1, show_default=True,
              help="New connections to send; >1 prints which endpoints got them.")
@click.option("-v", "--verbose", is_flag=True, help="Show every packet of the connection in full.")
@click.option("--conntrack", "show_ct", is_flag=True, help="Afterwards, print `conntrack -L` of every node with entries.")
def trace(files, client, namespace, to, proto, mode, seed, output, pcap, count, verbose, show_ct) -> None:
    """Trace a request from a pod, a node or the external host to its destination and back."""
    cluster = load_cluster(files)
    if seed is not None:
        cluster.rng.seed(seed)
    try:
        walker, traces = run_traces(cluster, client, namespace, to, proto, mode, count, pcap is not None)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if pcap:
        from netsim.pcap import save_traces
        try:
            n = save_traces(pcap, traces, cluster.clock.now)
        except OSError as e:
            raise click.ClickException(f"--pcap {pcap}: cannot write: {e.strerror or e}") from None
        click.echo(f"wrote {n} packets to {pcap}", err=True)
    ct_text = conntrack_tables(walker) if show_ct and output == "text" else ""
    if count == 1:
        t = traces[0]
        click.echo(t.to_json() if output == "json" else t.render(verbose=verbose))
        if ct_text:
            click.echo(ct_text)
        if not t.outcome.ok:
            raise SystemExit(EXIT_NOT_DELIVERED)
        return
    s = summarize(traces)
    if output == "json":
        s["first"] = traces[0].to_dict()
        s["traces"] = [{"outcome": t.outcome.to_dict(), "flow": t.flow.to_dict()} for t in traces]
        click.echo(json.dumps(s, indent=2))
    else:
        click.echo(traces[0].render(verbose=verbose))
        click.echo("")
        click.echo(render_summary(s))
        if ct_text:
            click.echo(ct_text)
    if any(not t.outcome.ok for t in traces):
        raise SystemExit(EXIT_NOT_DELIVERED)
