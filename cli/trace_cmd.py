"""`netsim trace`: follow one request (or N) from a client to a pod and back, hop by hop."""
from __future__ import annotations

import json

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, ModeChoice, file_option, load_emulator
from netsim.dataplane.summary import render_summary, summarize


@click.command("trace")
@file_option
@click.option("--from", "client", required=True, metavar="pod/NAME|node/NAME|external",
              help="Where the request starts.")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of --from pod/NAME.")
@click.option("--to", "to", required=True, metavar="TARGET",
              help="http://name[.ns][:port]/path, name[.ns[.svc...]]:port or IP:port.")
@click.option("--proto", type=click.Choice(["tcp", "udp", "icmp"]), default=None,
              help="Protocol (default: the Service port's, else tcp).")
@click.option("--mode", type=ModeChoice(), default=None,
              help="kube-proxy mode (default: the Cluster document's proxyMode).")
@click.option("--seed", type=int, default=None, help="Reseed the cluster RNG before tracing.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--pcap", "pcap", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write every packet at every hop to this pcapng file.")
@click.option("--pcap-at", "pcap_at", default=None, metavar="HOST[:IFACE]",
              help="With --pcap: keep one capture point, as `tcpdump -i IFACE` (or -i any) on HOST would see it: "
                   "node-1, node-1:cni0, pod/NAME[:eth0] (namespace -n), external, router, loadbalancer.")
@click.option("--count", type=click.IntRange(1, 1000000), default=1, show_default=True,
              help="New connections to send; >1 prints which endpoints got them.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None, metavar="PER_SECOND",
              help="With --count: connections per second of the cluster clock (conntrack entries time out "
                   "as they would); default: all at one instant.")
@click.option("-v", "--verbose", is_flag=True, help="Show every packet of the connection in full.")
@click.option("--conntrack", "show_ct", is_flag=True, help="Afterwards, print `conntrack -L` of every node with entries.")
def trace(files, client, namespace, to, proto, mode, seed, output, pcap, pcap_at, count, rate, verbose,
          show_ct) -> None:
    """Trace a request from a pod, a node or the external host to its destination and back."""
    if pcap_at and not pcap:
        raise click.UsageError("--pcap-at needs --pcap FILE")
    em = load_emulator(files, seed=seed)
    if count > 1 and output == "text" and not pcap:
        return _summed_up(em, client, to, count, rate, proto, namespace, mode, verbose, show_ct)
    try:
        traces = em.traces(client, to, count, proto=proto, namespace=namespace, mode=mode, capture=pcap is not None,
                           rate=rate)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if pcap:
        try:
            n = em.write_pcap(pcap, traces, at=pcap_at, namespace=namespace)
        except OSError as e:
            raise click.ClickException(f"--pcap {pcap}: cannot write: {e.strerror or e}") from None
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"wrote {n} packets to {pcap}" + (f" (capture point {pcap_at})" if pcap_at else ""), err=True)
    ct_text = em.conntrack(mode) if show_ct and output == "text" else ""
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


def _summed_up(em, client, to, count, rate, proto, namespace, mode, verbose, show_ct) -> None:
    """``--count N`` as text: the first connection in full, then the sums; each trace is dropped once
    counted, so a million connections take the memory of one (plus what the cluster keeps: conntrack
    entries, which time out on the cluster clock with --rate)."""
    first: list = []
    failed = False

    def stream():
        nonlocal failed
        for t in em.iter_traces(client, to, count, proto=proto, namespace=namespace, mode=mode, rate=rate):
            if not first:
                first.append(t)
            failed = failed or not t.outcome.ok
            yield t
    try:
        s = summarize(stream())
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(first[0].render(verbose=verbose))
    click.echo("")
    click.echo(render_summary(s))
    ct_text = em.conntrack(mode) if show_ct else ""
    if ct_text:
        click.echo(ct_text)
    if failed:
        raise SystemExit(EXIT_NOT_DELIVERED)
