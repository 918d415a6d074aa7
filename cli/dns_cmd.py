"""`netsim dns serve|query`: the CoreDNS stand-in on a socket, or one lookup printed like dig."""
from __future__ import annotations

import sys
from typing import Optional

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, file_option, load_cluster, load_emulator


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
@click.option("-v", "--verbose", is_flag=True, help="Log every query and its outcome (one line each).")
@click.option("-q", "--quiet", is_flag=True, hidden=True, help="No query log (the default).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="UDP worker processes on SO_REUSEPORT sockets (CoreDNS's `reuseport`); try one per core.")
def serve(files, listen: str, verbose: bool, quiet: bool, workers: int) -> None:
    """Answer DNS for the cluster on UDP and TCP until interrupted."""
    from netsim.dns.server import serve as start
    host, port = _listen(listen)
    cluster = load_cluster(files)
    try:
        server = start(cluster, host=host, port=port, block=False, workers=workers,
                       log=(lambda line: click.echo(line)) if verbose and not quiet else None)
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
    from netsim.api import DnsQueryError
    em = load_emulator(files)
    try:
        answer = em.resolve(name, qtype, from_pod=from_pod, namespace=namespace, tcp=tcp, family=family)
    except DnsQueryError as e:
        raise click.BadParameter(str(e), param_hint=e.param) from None
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(answer.render())
    if not answer.ok:  # grep's convention: 1 = not answered (NXDOMAIN, SERVFAIL, EAI_*, ...)
        sys.exit(EXIT_NOT_DELIVERED)
