"""`netsim ipvs`: a node's IPVS table as ipvsadm prints it, and replaying connections through a
real node's ``ipvsadm -Sn`` dump to see which real server each one gets."""
from __future__ import annotations

import click

from netsim.cli.common import file_option, load_cluster, read_dump
from netsim.skb.packet import PacketError, ip2int


def _endpoint(text: str, what: str) -> tuple[str, int]:
    ip, sep, port = text.rpartition(":")
    try:
        ip2int(ip)
        p = int(port)
        if not sep or not 0 < p < 65536:
            raise ValueError
    except (PacketError, ValueError):
        raise click.BadParameter(f"expected IP:PORT, got {text!r}", param_hint=what) from None
    return ip, p


@click.group()
def ipvs() -> None:
    """kube-proxy's IPVS tables (ipvsadm -Ln / -Sn / --stats) and scheduling replays."""


@ipvs.command("show")
@file_option
@click.option("--node", required=True, metavar="NODE", help="Node whose IPVS table to show.")
@click.option("--format", "fmt", type=click.Choice(["list", "save", "ipset", "ipset-list", "iptables", "all"]),
              default="list", show_default=True,
              help="list = ipvsadm -Ln, save = ipvsadm -Sn, ipset = ipset save, ipset-list = ipset list, "
                   "iptables = iptables-save, all = -Sn + ipset save + iptables-save.")
@click.option("--scheduler", type=click.Choice(["rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "sh", "dh", "mh"]),
              default=None, help="Override the Cluster document's ipvsScheduler.")
def show(files, node: str, fmt: str, scheduler) -> None:
    """What kube-proxy --proxy-mode=ipvs programs on NODE."""
    from netsim.rules.iptables.proxier_inputs import ProxierInputError
    from netsim.rules.ipvs.proxier import build
    cluster = load_cluster(files, quiet=True)
    try:
        st = build(cluster, node, scheduler=scheduler)
    except (ProxierInputError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    text = {"list": st.ipvsadm_list, "save": st.ipvsadm_save, "ipset": st.ipset_save, "ipset-list": st.ipset_list,
            "iptables": lambda: st.iptables, "all": st.render}[fmt]()
    click.echo(text, nl=False)


@ipvs.command("replay")
@click.option("--dump", required=True, type=click.Path(exists=True, dir_okay=False),
              help="ipvsadm -Sn output (e.g. from a real node).")
@click.option("--src", "src", required=True, metavar="IP[:PORT]", help="Client address (first source port).")
@click.option("--to", "dst", required=True, metavar="VIP:PORT", help="Virtual server to connect to.")
@click.option("--proto", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--count", type=click.IntRange(1, 100000), default=1, show_default=True,
              help="New connections, from consecutive source ports.")
@click.option("--close", is_flag=True,
              help="Complete and close each TCP connection before the next starts (a short-lived "
                   "client: it ends in TIME_WAIT, an inactive connection for 2 minutes). Without it "
                   "every connection completes its handshake and stays open (ESTABLISHED, active for "
                   "15 minutes: long-lived or concurrent clients).")
@click.option("--interval", type=click.FloatRange(0, 86400), default=1.0, show_default=True,
              help="Seconds between new connections; the kernel's connection timers run on this clock.")
def replay(dump: str, src: str, dst: str, proto: str, count: int, close: bool, interval: float) -> None:
    """Schedule COUNT new connections through the dump's virtual servers, as the kernel would.

    \b
    The schedulers that count connections (lc, wlc, sed, nq, lblc, lblcr) see active
    (open) connections and inactive (closed, TIME_WAIT; or UDP) ones differently, so the
    two forms can choose differently:
      default   each connection stays open: long-lived or concurrent clients
      --close   each connection closes before the next: short-lived clients
    Connections expire on the kernel's timeouts (tcp 900 s, TIME_WAIT 120 s, udp 300 s)."""
    from netsim.rules.ipvs.datapath import IpvsNode
    from netsim.rules.ipvs.ipvsadm import parse_save, render_list
    from netsim.rules.ipvs.replay import replay as run_replay
    from netsim.rules.ipvs.table import IpvsError
    try:
        table = parse_save(read_dump(dump, "ipvsadm -Sn output"), source=dump)
    except IpvsError as e:
        raise click.ClickException(str(e)) from None
    if ":" not in src:
        src += ":40000"
    sip, sport = _endpoint(src, "--src")
    dip, dport = _endpoint(dst, "--to")
    node = IpvsNode(table)
    try:
        for c in run_replay(node, proto, sip, sport, dip, dport, count, close=close, interval=interval):
            click.echo(f"{sip}:{c.sport} -> {dip}:{dport}  {c.decision.action}  {c.decision.reason}")
    except LookupError:
        raise click.ClickException(f"no virtual server {proto.upper()} {dip}:{dport} in {dump}") from None
    click.echo()
    click.echo(render_list(table), nl=False)
