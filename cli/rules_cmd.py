"""`netsim rules -f FILE --node NODE`: the rule text kube-proxy programs on one node."""
from __future__ import annotations

import click

from netsim.cli.common import ModeChoice, fault_options, load_emulator, validate_option


@click.command("rules")
@fault_options[0]
@fault_options[1]
@fault_options[2]
@validate_option
@click.option("-f", "--filename", "files", multiple=True, metavar="FILE",
              help="Manifest file (multi-document YAML) or example:NAME; repeatable (not needed with --live).")
@click.option("--node", required=True, metavar="NODE", help="Node whose rules to show.")
@click.option("--mode", type=ModeChoice(kube_proxy_only=True, unemulated=True), default=None,
              help="Proxy mode (default: the Cluster document's proxyMode).")
@click.option("--table", "tables", multiple=True, type=click.Choice(["filter", "nat", "mangle"]),
              help="Only this table (repeatable; iptables mode).")
@click.option("--restore-input", is_flag=True,
              help="Print exactly what kube-proxy hands to iptables-restore, in its own spelling "
                   "(no built-in chains or jumps; in IPVS mode the iptables part as kube-proxy writes it).")
@click.option("--kube-proxy-release", "release", default=None, metavar="X.Y",
              help="nftables mode: the kube-proxy release whose ruleset to print (1.31-1.36; default 1.34).")
@click.option("--live", is_flag=True,
              help="Read `iptables-save -c` (with counters) from NODE's namespace in a running `netsim up` cluster.")
@click.option("--name", default=None, help="With --live: the kernel cluster (default: the only one up).")
def rules(files, node: str, mode, tables, restore_input: bool, release, live: bool, name) -> None:
    """Show the rules kube-proxy writes on NODE, as iptables-save prints them once loaded.

    Rules come in iptables-save's canonical spelling (-s/-d/-p first, /32 on addresses, MARK as
    --set-xmark, tables and chains in save order), the same text a trace shows for a matched rule;
    --restore-input prints kube-proxy's own spelling instead. In nftables mode the output is the
    node's `ip kube-proxy` table as `nft -f` input (loadable in one transaction); --restore-input
    prints the transaction kube-proxy itself sends on its first sync."""
    if live:
        _live(node, name)
        return
    if not files:
        raise click.UsageError("Missing option '-f' / '--filename' (or use --live).")
    em = load_emulator(files, quiet=True)
    try:
        text = em.rules(node, mode=mode, restore_input=restore_input, tables=tuple(tables) or None,
                        release=release)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(text, nl=False)


def _live(node: str, name) -> None:
    """The kernel's own view: `iptables-save -c` inside the node's namespace."""
    from netsim.cli.kernel_cmd import pick_running
    from netsim.kernel import live_iptables_save
    try:
        click.echo(live_iptables_save(pick_running(name), node), nl=False)
    except LookupError as e:
        raise click.ClickException(str(e)) from None
