"""`netsim iptables replay`: run one packet through an iptables-save dump and print every rule it hit."""
from __future__ import annotations

import random

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, read_dump
from netsim.packet import Packet, ip2int
from netsim.rules.iptables import Engine, EvalContext, IptablesError, parse
from netsim.rules.iptables.engine import Verdict

# Tables run in priority order at each hook (include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities).
REPLAY_TABLES = {"PREROUTING": ("raw", "mangle", "nat"), "OUTPUT": ("raw", "mangle", "nat", "filter")}


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


def _apply_dnat(pkt: Packet, v: Verdict) -> str:
    """What conntrack would do before the next table: rewrite the destination (presentation only)."""
    nat = v.nat
    before = f"{pkt.dst_ip}:{pkt.dport}"
    if nat.kind == "DNAT":
        pkt.dst = nat.ip
        if nat.port is not None:
            pkt.dport = nat.port
    return f"{nat.kind} {before} -> {pkt.dst_ip}:{pkt.dport}"


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
              help="iptables-save output to evaluate")
@click.option("--src", required=True, help="source IP[:PORT] (default port 40000)")
@click.option("--dst", required=True, help="destination IP:PORT")
@click.option("--proto", type=click.Choice(["tcp", "udp"]), default="tcp", show_default=True)
@click.option("--hook", type=click.Choice(sorted(REPLAY_TABLES)), default="PREROUTING", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="seed for -m statistic draws")
@click.option("--local-addr", "local_addrs", multiple=True,
              help="an address of the node (addrtype LOCAL); repeatable")
@click.option("--in-interface", "iif", default=None, help="input device (PREROUTING), e.g. eth0")
@click.option("--out-interface", "oif", default=None, help="output device (OUTPUT)")
@click.option("--mark", type=str, default="0", help="initial packet mark, e.g. 0x4000")
@click.option("--ctstate", type=click.Choice(["NEW", "ESTABLISHED", "RELATED", "INVALID"]), default="NEW",
              show_default=True)
@click.option("--lenient", is_flag=True, help="treat rules with unknown matches/targets as non-matching")
def replay(dump: str, src: str, dst: str, proto: str, hook: str, seed: int, local_addrs: tuple[str, ...],
           iif: str | None, oif: str | None, mark: str, ctstate: str, lenient: bool) -> None:
    """Replay one packet through DUMP at HOOK: raw, mangle, nat (and filter at OUTPUT)."""
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
    text = read_dump(dump, "iptables-save output")
    try:
        rs = parse(text, source=dump, lenient=lenient)
        engine = Engine(rs)
    except IptablesError as e:
        raise click.ClickException(str(e))
    build = Packet.tcp if proto == "tcp" else Packet.udp
    pkt = build(s_ip, d_ip, s_port, d_port)
    pkt.mark, pkt.ctstate = mark_v, ctstate
    pkt.iif = iif if hook == "PREROUTING" else None
    pkt.oif = oif if hook == "OUTPUT" else None
    ctx = EvalContext(local_addrs=local, rng=random.Random(seed))
    click.echo(f"replay {proto} {s_ip}:{s_port} -> {d_ip}:{d_port} at {hook} ({dump})")
    for msg in rs.unsupported:
        click.echo(f"warning: {msg}")
    rewrites: list[str] = []
    final = "ACCEPT"
    total = 0
    for table in REPLAY_TABLES[hook]:
        if not engine.has_chain(table, hook):
            continue
        try:
            v = engine.run(table, hook, pkt, ctx)
        except IptablesError as e:
            raise click.ClickException(str(e))
        _print_table(v)
        total += v.rules_evaluated
        if v.nat is not None:
            rewrites.append(_apply_dnat(pkt, v))
        if v.verdict != "ACCEPT":
            final = v.verdict + (f" ({v.reject_with})" if v.reject_with else "")
            break
    click.echo(f"verdict: {final}")
    click.echo(f"rewrite: {'; '.join(rewrites) if rewrites else 'none'}")
    click.echo(f"mark: 0x{pkt.mark:x}")
    click.echo(f"rules evaluated: {total}")
    if final != "ACCEPT":  # grep's convention: 1 = the packet did not get through
        raise SystemExit(EXIT_NOT_DELIVERED)
