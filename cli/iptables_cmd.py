"""`netsim iptables replay`: run one packet through an iptables-save dump and print every rule it hit."""
from __future__ import annotations

import random

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, read_dump
from netsim.skb.packet import Packet, ip2int
from netsim.rules.iptables import Engine, IptablesError, parse
from netsim.rules.iptables.engine import Verdict

from netsim.rules.iptables.replay import START_HOOKS, ReplayPath, flow_summary, replay as replay_one, \
    replay_all, with_kube_proxy_jumps

_PACKETS = {"tcp": lambda s, d, sp, dp: Packet.tcp(s, d, sp, dp, flags="S"),
            "udp": lambda s, d, sp, dp: Packet.udp(s, d, sp, dp),
            "sctp": lambda s, d, sp, dp: Packet.sctp(s, d, sp, dp)}


def _endpoint(text: str, what: str, need_port: bool) -> tuple[str, int]:
    ip, sep, port = text.partition(":")
    try:
        ip2int(ip)
    except Exception:
        raise click.BadParameter(f"expected IP{':PORT' if need_port else '[:PORT]'}, got {text!r}", param_hint=what)
    if not sep:
        if need_port:
            raise click.BadParameter(f"expected IP:PORT, got {text!r}", param_hint=what)
        return ip, 40000
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"port must be 1-65535, got {port!r}", param_hint=what)
    return ip, int(port)


def _print_table(v: Verdict) -> None:
    click.echo(f"*{v.table} {v.chain}")
    for s in v.steps:
        if s.policy:
            click.echo(f"  policy {s.chain} {s.target} (line {s.line})  [{s.rules_evaluated} rules evaluated]")
            continue
        note = f"  ({s.note})" if s.note else ""
        click.echo(f"  line {s.line:>5}  {s.chain} #{s.number}: {s.text}  [{s.rules_evaluated}]{note}")
    extra = f" --reject-with {v.reject_with}" if v.reject_with else ""
    click.echo(f"  => {v.verdict}{extra}; {v.rules_evaluated} rules evaluated")


@click.group()
def iptables() -> None:
    """Evaluate packets through iptables-save dumps (ours or a real node's)."""


@iptables.command()
@click.option("--dump", "dump", required=True, type=click.Path(exists=True, dir_okay=False),
              help="iptables-save output (or kube-proxy's iptables-restore input) to evaluate")
@click.option("--src", required=True, help="source IP[:PORT] (default port 40000)")
@click.option("--dst", required=True, help="destination IP:PORT")
@click.option("--proto", type=click.Choice(sorted(_PACKETS)), default="tcp", show_default=True)
@click.option("--hook", type=click.Choice(START_HOOKS), default="PREROUTING", show_default=True,
              help="where the packet enters: PREROUTING (arriving) or OUTPUT (sent by the node)")
@click.option("--full-path", is_flag=True,
              help="go on after the routing decision: INPUT when the (DNATed) destination is a --local-addr, "
                   "else FORWARD and POSTROUTING")
@click.option("--all", "all_paths", is_flag=True,
              help="every way the statistic rules can fall: the whole set of endpoints the packet may reach")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for -m statistic draws (one walk)")
@click.option("--local-addr", "local_addrs", multiple=True,
              help="an address of the node (addrtype LOCAL, routing to INPUT); repeatable")
@click.option("--in-interface", "iif", default=None, help="input device (PREROUTING), e.g. eth0")
@click.option("--out-interface", "oif", default=None, help="output device (OUTPUT, FORWARD, POSTROUTING)")
@click.option("--mark", type=str, default="0", help="initial packet mark, e.g. 0x4000")
@click.option("--ctstate", type=click.Choice(["NEW", "ESTABLISHED", "RELATED", "INVALID"]), default="NEW",
              show_default=True)
@click.option("--lenient", is_flag=True, help="treat rules with unknown matches/targets as non-matching")
def replay(dump: str, src: str, dst: str, proto: str, hook: str, full_path: bool, all_paths: bool, seed: int,
           local_addrs: tuple[str, ...], iif: str | None, oif: str | None, mark: str, ctstate: str,
           lenient: bool) -> None:
    """Replay one packet through DUMP from HOOK: raw, mangle, nat (and filter at OUTPUT); with
    --full-path also INPUT or FORWARD and POSTROUTING; with --all every endpoint it may reach."""
    s_ip, s_port = _endpoint(src, "--src", False)
    d_ip, d_port = _endpoint(dst, "--dst", True)
    try:
        local = {ip2int(a) for a in local_addrs}
    except Exception:
        raise click.BadParameter(f"expected IPv4 addresses, got {', '.join(local_addrs)}", param_hint="--local-addr")
    try:
        mark_v = int(mark, 0)
    except ValueError:
        raise click.BadParameter(f"expected a number like 0x4000, got {mark!r}", param_hint="--mark")
    text, jump_notes = with_kube_proxy_jumps(read_dump(dump, "iptables-save output"))
    try:
        rs = parse(text, source=dump, lenient=lenient)
        engine = Engine(rs)
    except IptablesError as e:
        raise click.ClickException(str(e))
    build = _PACKETS[proto]

    def make() -> Packet:
        return build(s_ip, d_ip, s_port, d_port)

    kw = dict(full_path=full_path, ctstate=ctstate, mark=mark_v, iif=iif, oif=oif)
    click.echo(f"replay {proto} {s_ip}:{s_port} -> {d_ip}:{d_port} at {hook}"
               f"{' (full path)' if full_path else ''} ({dump})")
    for msg in jump_notes:
        click.echo(f"note: {msg}")
    for msg in rs.unsupported:
        click.echo(f"warning: {msg}")
    try:
        if all_paths:
            paths = replay_all(engine, make, hook, local, **kw)
        else:
            paths = [replay_one(engine, make, hook, local, rng=random.Random(seed), **kw)]
    except IptablesError as e:
        raise click.ClickException(str(e))
    if all_paths:
        _print_all(paths)
    else:
        _print_path(paths[0])
    if all(p.verdict != "ACCEPT" for p in paths):  # grep's convention: 1 = the packet did not get through
        raise SystemExit(EXIT_NOT_DELIVERED)


def _verdict_text(p: ReplayPath) -> str:
    return p.verdict + (f" ({p.reject_with})" if p.reject_with else "")


def _print_path(p: ReplayPath) -> None:
    hook = None
    for h, v in p.tables:
        if h != hook and len(p.hooks) > 1:
            click.echo(f"[{h}]" + (f"  route: {p.route}" if h in ("INPUT", "FORWARD") and p.route else ""))
        hook = h
        _print_table(v)
    click.echo(f"verdict: {_verdict_text(p)}")
    click.echo(f"rewrite: {'; '.join(p.rewrites) if p.rewrites else 'none'}")
    click.echo(f"mark: 0x{p.mark:x}")
    click.echo(f"rules evaluated: {p.rules_evaluated}")


def _print_all(paths: list[ReplayPath]) -> None:
    click.echo(f"{len(paths)} way{'s' if len(paths) != 1 else ''} through the rules:")
    for i, p in enumerate(paths, 1):
        click.echo(f"  {i}. {' -> '.join(p.hooks)}: {_verdict_text(p)}"
                   f"{'; DNAT to ' + p.dnat if p.dnat else ''}{'; masqueraded' if p.masquerade else ''}"
                   f"; {p.rules_evaluated} rules evaluated")
    reaches, masq = flow_summary(paths)
    click.echo(f"reaches: {reaches or '(no rule decided: the chain policies accept it unchanged)'}")
    click.echo(f"masquerade: {'yes' if masq else 'no'}")
