"""`netsim dns serve|query`: the CoreDNS stand-in on a socket, or one lookup printed like dig."""
from __future__ import annotations

import random
import sys
from typing import Optional

import click
from dnslib import QTYPE, RCODE, DNSRecord

from netsim.cli.common import EXIT_NOT_DELIVERED, file_option, load_cluster


@click.group("dns")
def dns() -> None:
    """Cluster DNS as CoreDNS answers it (kubeadm Corefile: ttl 30, pods insecure)."""


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:5353")
    return host.strip("[]") or "127.0.0.1", int(port)


@dns.command("serve")
@file_option
@click.option("--listen", default="127.0.0.1:5353", show_default=True, help="HOST:PORT for UDP and TCP.")
@click.option("-q", "--quiet", is_flag=True, help="Do not log queries.")
def serve(files, listen: str, quiet: bool) -> None:
    """Answer DNS for the cluster on UDP and TCP until interrupted."""
    from netsim.dns.server import serve as start
    host, port = _listen(listen)
    cluster = load_cluster(files)
    try:
        server = start(cluster, host=host, port=port, block=False,
                       log=None if quiet else (lambda line: click.echo(line)))
    except OSError as e:
        raise click.ClickException(f"--listen {listen}: cannot bind: {e.strerror or e}") from None
    click.echo(f"serving {cluster.config.cluster_domain} on {host}:{server.port} (udp+tcp); Ctrl-C stops",
               err=True)
    sys.stdout.flush()
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@dns.command("query")
@file_option
@click.argument("name")
@click.argument("qtype", default="A", metavar="[TYPE]")
@click.option("--from", "from_pod", default=None, metavar="pod/NAME",
              help="Resolve as getaddrinfo() in this pod: its resolv.conf and glibc's search walk.")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of --from.")
@click.option("--family", type=click.Choice(["AF_UNSPEC", "AF_INET", "AF_INET6"]), default="AF_UNSPEC",
              show_default=True, help="With --from: which address families getaddrinfo asks for.")
@click.option("--tcp", is_flag=True, help="Without --from: ask over TCP (no truncation).")
def query(files, name: str, qtype: str, from_pod: Optional[str], namespace: str, family: str, tcp: bool) -> None:
    """Ask the cluster's DNS for NAME (dig-like), or with --from walk the pod's search list."""
    from netsim.dns.message import handle
    from netsim.dns.names import name_problem
    from netsim.dns.resolver import ClusterDNS
    qtype = qtype.upper()
    try:
        getattr(QTYPE, qtype)
    except Exception:
        raise click.BadParameter(f"{qtype!r}: expected a record type such as A, AAAA, SRV, PTR, TXT, NS, SOA",
                                 param_hint="TYPE") from None
    why = name_problem(name)
    if why:
        raise click.BadParameter(f"{name!r} is not a legal name ({why})", param_hint="NAME")
    cluster = load_cluster(files)
    resolver = ClusterDNS(cluster)
    if from_pod:
        _walk(cluster, resolver, name, from_pod, namespace, family)
        return
    q = DNSRecord.question(name, qtype)
    q.header.id = random.Random(cluster.config.seed).getrandbits(16)
    reply = DNSRecord.parse(handle(resolver, q.pack(), "tcp" if tcp else "udp"))
    click.echo(f"; <<>> netsim dns query <<>> {name} {qtype}")
    click.echo(f";; SERVER: CoreDNS stand-in, zone {cluster.config.cluster_domain} "
               f"({cluster.config.dns_service_ip}#53/{'tcp' if tcp else 'udp'})")
    click.echo(str(reply))
    if reply.header.rcode != RCODE.NOERROR:  # grep's convention: 1 = not answered (NXDOMAIN, SERVFAIL, ...)
        sys.exit(EXIT_NOT_DELIVERED)


def _walk(cluster, resolver, name: str, from_pod: str, namespace: str, family: str) -> None:
    from netsim.dns.resolvconf import ResolvConfError, pod_resolv_conf
    from netsim.dns.stub import search, wire_query_fns
    kind, sep, rest = from_pod.partition("/")
    if sep and kind not in ("pod", "pods", "po"):
        raise click.ClickException(f"--from {from_pod}: expected pod/NAME (the search walk needs a pod's resolv.conf)")
    pod_name = rest if sep else from_pod
    pod = cluster.pod(namespace, pod_name)
    if pod is None:
        raise click.ClickException(f'--from: pod "{pod_name}" not found in namespace "{namespace}"')
    try:
        rc = pod_resolv_conf(pod, cluster.config)
    except ResolvConfError as e:
        raise click.ClickException(str(e)) from None
    udp, tcp = wire_query_fns(resolver, rc, random.Random(cluster.config.seed))
    result = search(rc, name, udp, family, tcp_query_fn=tcp)
    click.echo(f"# /etc/resolv.conf in {namespace}/{pod_name}")
    for line in rc.render().splitlines():
        click.echo(f"  {line}")
    click.echo(f"# getaddrinfo({name!r}, {family}): glibc search walk, {len(result.steps)} queries")
    width = max((len(s.qname) for s in result.steps), default=10)
    for i, s in enumerate(result.steps, 1):
        answers = ", ".join(s.answers) if s.answers else ""
        flag = " TC" if s.truncated else ""
        click.echo(f"  {i:>2}  {s.transport}  {s.qname:<{width}}  {s.qtype:<4}  "
                   f"{s.rcode or 'no reply'}{flag}  {answers}".rstrip())
    if result.ok:
        click.echo(f"=> {', '.join(result.answer_ips)}  ({result.answered_name})")
    else:
        click.echo(f"=> {result.error}")
        sys.exit(EXIT_NOT_DELIVERED)
