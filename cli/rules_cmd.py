"""`netsim rules -f FILE --node NODE`: the rule text kube-proxy programs on one node."""
from __future__ import annotations

import importlib

import click

from netsim.cli.common import file_option, load_cluster


@click.command("rules")
@file_option
@click.option("--node", required=True, metavar="NODE", help="Node whose rules to show.")
@click.option("--mode", type=click.Choice(["iptables", "ipvs", "nftables"]), default=None,
              help="Proxy mode (default: the Cluster document's proxyMode).")
@click.option("--table", "tables", multiple=True, type=click.Choice(["filter", "nat", "mangle"]),
              help="Only this table (repeatable; iptables mode).")
@click.option("--restore-input", is_flag=True,
              help="Print exactly what kube-proxy hands to iptables-restore (no built-in chains or jumps).")
def rules(files, node: str, mode, tables, restore_input: bool) -> None:
    """Show the rules kube-proxy writes on NODE, as iptables-save would list them."""
    cluster = load_cluster(files, quiet=True)
    mode = mode or cluster.config.proxy_mode
    if mode == "nftables":
        raise click.ClickException("--mode nftables: not yet supported by `netsim rules`")
    if mode == "ipvs":
        try:
            ipvs_proxier = importlib.import_module("netsim.rules.ipvs.proxier")
        except ModuleNotFoundError:
            raise click.ClickException("--mode ipvs: the IPVS proxier (netsim.rules.ipvs.proxier) "
                                       "is not available in this build") from None
        click.echo(ipvs_proxier.render(cluster, node), nl=False)
        return
    from netsim.rules.iptables.proxier import ProxierInputError, node_view_text, restore_data
    try:
        data = restore_data(cluster, node)
        if restore_input:
            text = data.text()
        else:
            text = node_view_text(data, tables=tuple(tables) or None)
    except ProxierInputError as e:
        raise click.ClickException(str(e)) from None
    click.echo(text, nl=False)
