"""The `-j` targets: option syntax, canonical iptables-save text, and what each does to a packet.

Kernel behaviour (net/ipv4/netfilter/ip_tables.c ipt_do_table; iptables-extensions(8)): ACCEPT/DROP end the table at this hook; REJECT drops and
answers; DNAT/SNAT/MASQUERADE return ACCEPT after recording a NAT binding (the walker applies
it); MARK/CONNMARK/LOG/NFLOG/CT continue with the next rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from netsim.skb.packet import int2ip
from netsim.rules.iptables.ruleset import Header, IptablesError, Opt, Target
from netsim.rules.iptables.values import ip2int, parse_int, parse_mark, save_string

BUILTIN_VERDICTS = ("ACCEPT", "DROP", "RETURN")

OPTIONS: dict[str, dict[str, int]] = {
    "ACCEPT": {}, "DROP": {}, "RETURN": {},
    "REJECT": {"--reject-with": 1},
    "DNAT": {"--to-destination": 1, "--random": 0, "--persistent": 0},
    "SNAT": {"--to-source": 1, "--random": 0, "--random-fully": 0, "--persistent": 0},
    "MASQUERADE": {"--to-ports": 1, "--random": 0, "--random-fully": 0},
    "MARK": {"--set-xmark": 1, "--set-mark": 1, "--or-mark": 1, "--xor-mark": 1, "--and-mark": 1},
    "CONNMARK": {"--set-xmark": 1, "--set-mark": 1, "--or-mark": 1, "--xor-mark": 1, "--and-mark": 1,
                 "--save-mark": 0, "--restore-mark": 0, "--nfmask": 1, "--ctmask": 1, "--mask": 1},
    "LOG": {"--log-level": 1, "--log-prefix": 1, "--log-tcp-sequence": 0, "--log-tcp-options": 0,
            "--log-ip-options": 0, "--log-uid": 0, "--log-macdecode": 0},
    "NFLOG": {"--nflog-group": 1, "--nflog-prefix": 1, "--nflog-range": 1, "--nflog-size": 1,
              "--nflog-threshold": 1},
    "CT": {"--notrack": 0, "--zone": 1, "--helper": 1},
}
ALIASES: dict[str, dict[str, str]] = {"DNAT": {"--to": "--to-destination"}, "SNAT": {"--to": "--to-source"}}

REJECT_WITH = {
    "icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable", "proto-unreach": "icmp-proto-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
    "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}
NAT_TABLE_ONLY = ("DNAT", "SNAT", "MASQUERADE")


@dataclass(frozen=True)
class NatAction:
    """The NAT binding a rule asks for; the walker/conntrack applies it to the connection."""

    kind: str                        # "DNAT" | "SNAT" | "MASQUERADE"
    ip: Optional[int] = None         # first address of the range; None for MASQUERADE
    port: Optional[int] = None       # first port of the range; None keeps the port
    random_fully: bool = False
    ip_max: Optional[int] = None     # last address of an address range (else == ip)
    port_max: Optional[int] = None   # last port of a port range (else == port)
    random: bool = False
    persistent: bool = False


@dataclass(frozen=True)
class Verdict_:
    """A terminating target: ACCEPT, DROP or REJECT (with its --reject-with)."""

    verdict: str
    reject_with: Optional[str] = None


@dataclass(frozen=True)
class MarkAction:
    """MARK: pkt.mark = (pkt.mark & ~mask) ^ value (xt_MARK.c)."""

    value: int
    mask: int


@dataclass(frozen=True)
class ConnmarkAction:
    """CONNMARK (xt_connmark.c): set on the conntrack entry, save skb→ct, restore ct→skb."""

    mode: str          # "set" | "save" | "restore"
    value: int = 0
    ctmask: int = 0xFFFFFFFF
    nfmask: int = 0xFFFFFFFF


@dataclass(frozen=True)
class Continue:
    """LOG, NFLOG, CT: record the hit and carry on (CT --notrack marks the packet untracked)."""

    name: str
    notrack: bool = False


def _one(opts: list[Opt], name: str) -> Optional[Opt]:
    found = [o for o in opts if o.name == name]
    return found[-1] if found else None


def _has(opts: list[Opt], name: str) -> bool:
    return any(o.name == name for o in opts)


def _nat_range(text: str, where: str) -> tuple[int, int, Optional[int], Optional[int]]:
    """'1.1.1.1-1.1.1.5:100-200' → (ip, ip_max, port, port_max)."""
    addr, sep, ports = text.partition(":")
    lo_s, dash, hi_s = addr.partition("-")
    ip = ip2int(lo_s, where)
    ip_max = ip2int(hi_s, where) if dash else ip
    port = port_max = None
    if sep:
        p_lo, pdash, p_hi = ports.partition("-")
        port = parse_int(p_lo, where, "port", 0, 65535)
        port_max = parse_int(p_hi, where, "port", 0, 65535) if pdash else port
    return ip, ip_max, port, port_max


def _render_range(ip: int, ip_max: int, port: Optional[int], port_max: Optional[int]) -> str:
    s = int2ip(ip) if ip == ip_max else f"{int2ip(ip)}-{int2ip(ip_max)}"
    if port is not None:
        s += f":{port}" if port == port_max else f":{port}-{port_max}"
    return s


def _need_ports_proto(header: Header, where: str, name: str) -> None:
    if header.proto is None or header.proto[1] or header.proto[0] not in (6, 17, 132, 33, 136):
        raise IptablesError(f"{where}: {name} with a port needs -p tcp, udp or sctp")


def build_target(name: str, opts: list[Opt], header: Header, table: str, where: str, goto: bool) -> Target:
    """Compile a built-in/extension target. A jump to a user chain is resolved by the parser."""
    flag = "-g" if goto else "-j"
    if name in ("ACCEPT", "DROP"):
        return Target(name, opts, goto, f"{flag} {name}", Verdict_(name))
    if name == "RETURN":
        return Target(name, opts, goto, f"{flag} RETURN", "RETURN")
    if goto:
        raise IptablesError(f"{where}: -g needs a user-defined chain, not the target {name}")
    if name in NAT_TABLE_ONLY and table != "nat":
        raise IptablesError(f"{where}: target {name} is only valid in the nat table, not {table}")
    if name == "REJECT":
        if table == "nat":
            raise IptablesError(f"{where}: target REJECT is not valid in the nat table")
        o = _one(opts, "--reject-with")
        kind = "icmp-port-unreachable"
        if o is not None:
            if o.args[0] not in REJECT_WITH:
                raise IptablesError(f"{where}: unknown --reject-with {o.args[0]!r} "
                                    f"(expected one of {', '.join(sorted(set(REJECT_WITH.values())))})")
            kind = REJECT_WITH[o.args[0]]
            if kind == "tcp-reset" and (header.proto is None or header.proto != (6, False)):
                raise IptablesError(f"{where}: --reject-with tcp-reset needs -p tcp")
        return Target(name, opts, goto, f"-j REJECT --reject-with {kind}", Verdict_("REJECT", kind))
    if name in ("DNAT", "SNAT"):
        opt = "--to-destination" if name == "DNAT" else "--to-source"
        o = _one(opts, opt)
        if o is None:
            raise IptablesError(f"{where}: {name} needs {opt} IP[-IP][:PORT[-PORT]]")
        ip, ip_max, port, port_max = _nat_range(o.args[0], where)
        if port is not None:
            _need_ports_proto(header, where, name)
        rnd, rf, pers = _has(opts, "--random"), _has(opts, "--random-fully"), _has(opts, "--persistent")
        text = f"-j {name} {opt} {_render_range(ip, ip_max, port, port_max)}"
        text += " --random" * rnd + " --random-fully" * rf + " --persistent" * pers
        return Target(name, opts, goto, text, NatAction(name, ip, port, rf, ip_max, port_max, rnd, pers))
    if name == "MASQUERADE":
        o = _one(opts, "--to-ports")
        port = port_max = None
        if o is not None:
            _need_ports_proto(header, where, name)
            lo, dash, hi = o.args[0].partition("-")
            port = parse_int(lo, where, "port", 0, 65535)
            port_max = parse_int(hi, where, "port", 0, 65535) if dash else port
        rnd, rf = _has(opts, "--random"), _has(opts, "--random-fully")
        text = "-j MASQUERADE"
        if port is not None:
            text += f" --to-ports {port}" if port == port_max else f" --to-ports {port}-{port_max}"
        text += " --random" * rnd + " --random-fully" * rf
        return Target(name, opts, goto, text, NatAction("MASQUERADE", None, port, rf, None, port_max, rnd))
    if name == "MARK":
        value, mask = _mark_op(opts, where, "MARK")
        return Target(name, opts, goto, f"-j MARK --set-xmark 0x{value:x}/0x{mask:x}", MarkAction(value, mask))
    if name == "CONNMARK":
        return _connmark(opts, where)
    if name == "LOG":
        return Target(name, opts, goto, _log_text(opts, where), Continue(name))
    if name == "NFLOG":
        return Target(name, opts, goto, _nflog_text(opts, where), Continue(name))
    if name == "CT":
        notrack = _has(opts, "--notrack")
        parts = ["-j CT"] + [o.name + "".join(" " + a for a in o.args) for o in opts]
        return Target(name, opts, goto, " ".join(parts), Continue("CT", notrack))
    raise IptablesError(f"{where}: unknown target {name!r} (not a built-in target and no such chain in the table)")


# syslog levels by name (iptables extensions/libxt_LOG.c log_names)
_LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4, "warn": 4,
               "notice": 5, "info": 6, "debug": 7, "panic": 0}
_LOG_FLAGS = ("--log-tcp-sequence", "--log-tcp-options", "--log-ip-options", "--log-uid", "--log-macdecode")


def _log_text(opts: list[Opt], where: str) -> str:
    """How iptables-save prints LOG (libxt_LOG.c LOG_save): prefix, level unless the default 4,
    then the flags in a fixed order, whatever order they were written in."""
    parts = ["-j LOG"]
    prefix = _one(opts, "--log-prefix")
    if prefix is not None and prefix.args[0]:
        parts.append(f"--log-prefix {save_string(prefix.args[0])}")
    level = _one(opts, "--log-level")
    if level is not None:
        word = level.args[0].lower()
        n = _LOG_LEVELS.get(word)
        if n is None:
            n = parse_int(word, where, "--log-level")
            if not 0 <= n <= 7:
                raise IptablesError(f"{where}: --log-level must be 0-7 or a syslog level name, got {word!r}")
        if n != 4:
            parts.append(f"--log-level {n}")
    parts += [f for f in _LOG_FLAGS if _has(opts, f)]
    return " ".join(parts)


def _nflog_text(opts: list[Opt], where: str) -> str:
    """How iptables-save prints NFLOG (libxt_NFLOG.c nflog_print): prefix, group unless 0, size,
    threshold unless 1; --nflog-range is accepted and dropped as the nf_tables backend does (the
    legacy backend keeps printing it)."""
    parts = ["-j NFLOG"]
    prefix = _one(opts, "--nflog-prefix")
    if prefix is not None and prefix.args[0]:
        parts.append(f"--nflog-prefix {save_string(prefix.args[0])}")
    for flag, default in (("--nflog-group", 0), ("--nflog-size", None), ("--nflog-threshold", 1)):
        o = _one(opts, flag)
        if o is not None and parse_int(o.args[0], where, flag) != default:
            parts.append(f"{flag} {parse_int(o.args[0], where, flag)}")
    return " ".join(parts)


def _mark_op(opts: list[Opt], where: str, what: str) -> tuple[int, int]:
    """libxt_MARK normalisation to (value, mask) for --set-xmark."""
    ops = [o for o in opts if o.name in ("--set-xmark", "--set-mark", "--or-mark", "--xor-mark", "--and-mark")]
    if len(ops) != 1:
        raise IptablesError(f"{where}: {what} needs exactly one of --set-xmark, --set-mark, --or-mark, --xor-mark, --and-mark")
    o = ops[0]
    if o.name == "--set-xmark":
        return parse_mark(o.args[0], where)
    if o.name == "--set-mark":
        v, m = parse_mark(o.args[0], where)
        return v, (m | v) & 0xFFFFFFFF
    v = parse_int(o.args[0], where, "mark")
    if o.name == "--or-mark":
        return v, v
    if o.name == "--xor-mark":
        return v, 0
    return 0, ~v & 0xFFFFFFFF      # --and-mark


def _connmark(opts: list[Opt], where: str) -> Target:
    if _has(opts, "--save-mark") or _has(opts, "--restore-mark"):
        mode = "save" if _has(opts, "--save-mark") else "restore"
        mask_o = _one(opts, "--mask")
        both = parse_int(mask_o.args[0], where, "mask") if mask_o else 0xFFFFFFFF
        nf_o, ct_o = _one(opts, "--nfmask"), _one(opts, "--ctmask")
        nfmask = parse_int(nf_o.args[0], where, "nfmask") if nf_o else both
        ctmask = parse_int(ct_o.args[0], where, "ctmask") if ct_o else both
        text = f"-j CONNMARK --{mode}-mark --nfmask 0x{nfmask:x} --ctmask 0x{ctmask:x}"
        return Target("CONNMARK", opts, False, text, ConnmarkAction(mode, 0, ctmask, nfmask))
    value, mask = _mark_op(opts, where, "CONNMARK")
    return Target("CONNMARK", opts, False, f"-j CONNMARK --set-xmark 0x{value:x}/0x{mask:x}",
                  ConnmarkAction("set", value, mask))


def apply_mark(action: MarkAction, pkt) -> None:
    pkt.mark = ((pkt.mark & ~action.mask) ^ action.value) & 0xFFFFFFFF


def apply_connmark(action: ConnmarkAction, pkt) -> None:
    ct = pkt.ct
    if ct is None:
        return  # xt_connmark does nothing for untracked packets
    ctmark = getattr(ct, "mark", 0) or 0
    if action.mode == "set":
        ct.mark = ((ctmark & ~action.ctmask) ^ action.value) & 0xFFFFFFFF
    elif action.mode == "save":
        ct.mark = ((ctmark & ~action.ctmask) ^ (pkt.mark & action.nfmask)) & 0xFFFFFFFF
    else:
        pkt.mark = ((pkt.mark & ~action.nfmask) ^ (ctmark & action.ctmask)) & 0xFFFFFFFF
