"""`netsim proxy-status`: what a node's kube-proxy answers on its own ports (10249 metrics, 10256 healthz)."""
from __future__ import annotations

from typing import Optional

import click

from netsim.cli.common import file_option, load_cluster


@click.command("proxy-status")
@file_option
@click.option("--node", required=True, metavar="NODE", help="The node whose kube-proxy answers.")
@click.option("--path", "path", default="/proxyMode", show_default=True,
              help="/proxyMode, /metrics (port 10249) or /healthz, /livez (port 10256).")
@click.option("--port", type=click.Choice(["10249", "10256"]), default=None,
              help="Ask this port (default: 10256 for /healthz and /livez, else 10249).")
@click.option("-i", "--include", is_flag=True, help="Print the status line and Content-Type first, like curl -i.")
def proxy_status(files: tuple[str, ...], node: str, path: str, port: Optional[str], include: bool) -> None:
    """Print what `curl 127.0.0.1:PORT/PATH` on NODE answers after kube-proxy's first sync: the proxy mode,
    its Prometheus metrics (kube-proxy's names, types and buckets, filled by the sync that just ran) or
    its health JSON. Exit status 0 when the answer is 200, 1 otherwise."""
    from netsim.rules.registry import ProxyModeError
    from netsim.dataplane.proxy_status import KubeProxyNode, port_for
    cluster = load_cluster(files)
    try:
        kp = KubeProxyNode(cluster, node)
    except (LookupError, ProxyModeError) as e:
        raise click.ClickException(str(e).strip("'\"")) from None
    if not path.startswith("/"):
        raise click.ClickException(f"--path: expected a path starting with /, got {path!r}")
    kp.sync()
    code, ctype, body = kp.answer(port_for(path, int(port) if port else None), path)
    if include:
        click.echo(f"HTTP/1.1 {code}\nContent-Type: {ctype}\n")
    click.echo(body, nl=not body.endswith("\n"))
    raise SystemExit(0 if code == 200 else 1)
