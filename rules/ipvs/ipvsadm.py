"""ipvsadm's text: ``-Ln``, ``-Sn``, ``-Lnc``, ``-Ln --stats`` (ipvsadm 1.31 ipvsadm.c), and a parser
for ``ipvsadm -Sn`` so a dump from a real node can be replayed into an :class:`IpvsTable`.

Sorting follows libipvs ``ipvs_cmp_services`` / ``ipvs_cmp_dests``: fwmark, af, protocol number,
then the address compared as ``(int)(ntohl(a) - ntohl(b))`` – an unsigned difference read as a
signed 32-bit int, so addresses more than 2^31 apart sort "backwards" (172.16.x and 192.168.x
list before 10.x; seen in real output, kubernetes issue #75443) – then the port.
"""
from __future__ import annotations

import shlex
from functools import cmp_to_key
from typing import Iterable, Optional

from netsim.skb.packet import PacketError, int2ip, ip2int
from netsim.rules.ipvs.conn import IpvsConn
from netsim.rules.ipvs.schedulers import SCHED_FLAG_NAMES, SCHEDULERS
from netsim.rules.ipvs.table import (FWD_LOCAL, FWD_MASQ, FWD_ROUTE, FWD_TUNNEL, IP_VS_SVC_F_ONEPACKET,
                                     IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_SCHED1, IP_VS_SVC_F_SCHED2,
                                     IP_VS_SVC_F_SCHED3, IPPROTO, IpvsError, IpvsTable, RealServer,
                                     VirtualServer)

IP_VS_VERSION = "1.2.1"
CONN_TAB_SIZE = 4096            # 1 << CONFIG_IP_VS_TAB_BITS (12)

_FWD_SWITCH = {FWD_MASQ: "-m", FWD_TUNNEL: "-i", FWD_ROUTE: "-g", FWD_LOCAL: "-g"}
_SWITCH_FWD = {"-m": FWD_MASQ, "--masquerading": FWD_MASQ, "-i": FWD_TUNNEL, "--ipip": FWD_TUNNEL,
               "-g": FWD_ROUTE, "--gatewaying": FWD_ROUTE}
_PROTO_SWITCH = {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}
_SWITCH_PROTO = {"-t": "TCP", "--tcp-service": "TCP", "-u": "UDP", "--udp-service": "UDP",
                 "--sctp-service": "SCTP"}


def _wrap_cmp(a: int, b: int) -> int:
    """C: int r = ntohl(a) - ntohl(b) (unsigned subtraction, read as signed int)."""
    r = (a - b) & 0xFFFFFFFF
    return r - 0x100000000 if r & 0x80000000 else r


def _cmp_services(s1: VirtualServer, s2: VirtualServer) -> int:
    r = IPPROTO[s1.protocol] - IPPROTO[s2.protocol]
    if r:
        return r
    r = _wrap_cmp(s1.ip, s2.ip)
    if r:
        return r
    return s1.port - s2.port


def _cmp_dests(d1: RealServer, d2: RealServer) -> int:
    r = _wrap_cmp(d1.ip, d2.ip)
    if r:
        return r
    return d1.port - d2.port


def sorted_services(services: Iterable[VirtualServer]) -> list[VirtualServer]:
    return sorted(services, key=cmp_to_key(_cmp_services))


def sorted_dests(dests: Iterable[RealServer]) -> list[RealServer]:
    return sorted(dests, key=cmp_to_key(_cmp_dests))


def _svc_name(vs: VirtualServer) -> str:
    return "%-4s %s" % (vs.protocol, vs.addr)


def _sched_flags(vs: VirtualServer) -> str:
    names = SCHED_FLAG_NAMES.get(vs.scheduler, {})
    out = []
    for bit, generic in ((IP_VS_SVC_F_SCHED1, "flag-1"), (IP_VS_SVC_F_SCHED2, "flag-2"),
                         (IP_VS_SVC_F_SCHED3, "flag-3")):
        if vs.flags & bit:
            out.append(names.get(bit, generic))
    return ",".join(out)


def _netmask_str(mask: int) -> str:
    return int2ip(mask)


# ---------------------------------------------------------------------------- ipvsadm -Ln
def render_list(table: IpvsTable, header: bool = True) -> str:
    """``ipvsadm -Ln``: every service line, then its destinations (Forward Weight ActiveConn InActConn)."""
    lines = []
    if header:
        lines.append(f"IP Virtual Server version {IP_VS_VERSION} (size={CONN_TAB_SIZE})")
    lines.append("Prot LocalAddress:Port Scheduler Flags")
    lines.append("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
    for vs in sorted_services(table):
        line = f"{_svc_name(vs)} {vs.scheduler}"
        sf = _sched_flags(vs)
        if sf:
            line += f" ({sf})"
        if vs.flags & IP_VS_SVC_F_PERSISTENT:
            line += f" persistent {vs.timeout}"
            if vs.netmask != 0xFFFFFFFF:
                line += f" mask {_netmask_str(vs.netmask)}"
        if vs.flags & IP_VS_SVC_F_ONEPACKET:
            line += " ops"
        lines.append(line)
        for d in sorted_dests(vs.dests):
            lines.append("  -> %-28s %-7s %-6d %-10u %-10u" % (d.addr, d.forward, d.weight, d.activeconns,
                                                              d.inactconns))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- ipvsadm -Sn
def render_save(table: IpvsTable) -> str:
    """``ipvsadm -Sn`` (``ipvsadm-save -n``): rules that ``ipvsadm -R`` restores."""
    lines = []
    for vs in sorted_services(table):
        svc = f"{_PROTO_SWITCH[vs.protocol]} {vs.addr}"
        line = f"-A {svc} -s {vs.scheduler}"
        if vs.flags & IP_VS_SVC_F_PERSISTENT:
            line += f" -p {vs.timeout}"
            if vs.netmask != 0xFFFFFFFF:
                line += f" -M {_netmask_str(vs.netmask)}"
        if vs.flags & IP_VS_SVC_F_ONEPACKET:
            line += " -o"
        sf = _sched_flags(vs)
        if sf:
            line += f" -b {sf}"
        lines.append(line)
        for d in sorted_dests(vs.dests):
            dl = f"-a {svc} -r {d.addr} {_FWD_SWITCH[d.forward]} -w {d.weight}"
            if d.u_threshold:
                dl += f" -x {d.u_threshold}"
            if d.l_threshold:
                dl += f" -y {d.l_threshold}"
            lines.append(dl)
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------------------- ipvsadm -Lnc
def _expire(cp: IpvsConn, now: float) -> str:
    left = max(0, int(cp.expires - now))
    return "%02d:%02d" % (left // 60, left % 60)


def render_connections(conns: Iterable[IpvsConn], now: float) -> str:
    """``ipvsadm -Lnc``: the connection table (templates show client port 0 and state NONE)."""
    lines = ["IPVS connection entries",
             "pro expire state       source             virtual            destination"]
    for cp in conns:
        lines.append("%-3s %-6s %-11s %-18s %-18s %s" % (
            cp.protocol, _expire(cp, now), cp.state_name, f"{int2ip(cp.caddr)}:{cp.cport}",
            f"{int2ip(cp.vaddr)}:{cp.vport}", f"{int2ip(cp.daddr)}:{cp.dport}"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- ipvsadm -Ln --stats
def _largenum(n: int) -> str:
    """print_largenum(): 9 wide, then K/M/G/T with 8 digits."""
    if n < 100_000_000:
        return "%9d" % n
    if n < 1_000_000_000:
        return "%8dK" % (n // 1000)
    if n < 100_000_000_000:
        return "%8dM" % (n // 1_000_000)
    if n < 100_000_000_000_000:
        return "%8dG" % (n // 1_000_000_000)
    return "%8dT" % (n // 1_000_000_000_000)


def render_stats(table: IpvsTable, header: bool = True) -> str:
    """``ipvsadm -Ln --stats``: Conns InPkts OutPkts InBytes OutBytes per service and destination."""
    lines = []
    if header:
        lines.append(f"IP Virtual Server version {IP_VS_VERSION} (size={CONN_TAB_SIZE})")
    lines.append("%-33s %8s %8s %8s %8s %8s" % ("Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts",
                                                 "InBytes", "OutBytes"))
    lines.append("  -> RemoteAddress:Port")
    for vs in sorted_services(table):
        s = vs.stats
        lines.append("%-33s" % _svc_name(vs) + "".join(
            _largenum(v) for v in (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)))
        for d in sorted_dests(vs.dests):
            s = d.stats
            lines.append("  -> %-28s" % d.addr + "".join(
                _largenum(v) for v in (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- parse ipvsadm -Sn
def _hostport(text: str, where: str) -> tuple[int, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise IpvsError(f"{where}: expected ADDRESS:PORT, got {text!r}")
    try:
        ip = ip2int(host)
    except PacketError:
        raise IpvsError(f"{where}: expected an IPv4 address, got {host!r}") from None
    try:
        p = int(port)
    except ValueError:
        raise IpvsError(f"{where}: expected a port number, got {port!r}") from None
    if not 0 <= p <= 65535:
        raise IpvsError(f"{where}: port must be 0-65535, got {p}")
    return ip, p


def _int(text: Optional[str], what: str, where: str) -> int:
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise IpvsError(f"{where}: {what} must be an integer, got {text!r}") from None


def _sched_flags_from(text: str, where: str) -> int:
    bits = 0
    for name in text.split(","):
        kind = name.rpartition("-")[2]
        if kind == "fallback":
            bits |= IP_VS_SVC_F_SCHED1
        elif kind == "port":
            bits |= IP_VS_SVC_F_SCHED2
        elif name in ("flag-1", "flag-2", "flag-3"):
            bits |= {"flag-1": IP_VS_SVC_F_SCHED1, "flag-2": IP_VS_SVC_F_SCHED2,
                     "flag-3": IP_VS_SVC_F_SCHED3}[name]
        else:
            raise IpvsError(f"{where}: unknown scheduler flag {name!r} (expected sh-/mh-fallback, sh-/mh-port)")
    return bits


def parse_save(text: str, source: str = "<ipvsadm -Sn>", table: Optional[IpvsTable] = None) -> IpvsTable:
    """Parse ``ipvsadm -Sn`` output (``-A`` service and ``-a`` destination lines) into a table.

    Destinations are added in file order, so (as with ``ipvsadm -R``) the last one listed ends
    up first in the kernel list.
    """
    table = table if table is not None else IpvsTable()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        try:
            toks = shlex.split(line)
        except ValueError as e:
            raise IpvsError(f"{where}: cannot split line ({e})") from None
        cmd = toks[0]
        if cmd not in ("-A", "--add-service", "-a", "--add-server"):
            raise IpvsError(f"{where}: expected a line starting with -A (service) or -a (server), got {toks[0]!r}")
        opts: dict[str, Optional[str]] = {}
        proto = vaddr = None
        i = 1
        while i < len(toks):
            t = toks[i]
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if t in _SWITCH_PROTO:
                if nxt is None:
                    raise IpvsError(f"{where}: {t} needs ADDRESS:PORT")
                proto, vaddr = _SWITCH_PROTO[t], _hostport(nxt, where)
                i += 2
            elif t in ("-f", "--fwmark-service"):
                raise IpvsError(f"{where}: fwmark services are not supported (kube-proxy does not use them)")
            elif t in ("-s", "--scheduler", "-p", "--persistent", "-M", "--netmask", "-b", "--sched-flags",
                       "-r", "--real-server", "-w", "--weight", "-x", "--u-threshold", "-y", "--l-threshold",
                       "--pe"):
                if t in ("-p", "--persistent") and (nxt is None or nxt.startswith("-")):
                    opts["-p"] = "300"          # ipvsadm's default persistence timeout
                    i += 1
                    continue
                if nxt is None:
                    raise IpvsError(f"{where}: option {t} needs a value")
                opts[{"--scheduler": "-s", "--persistent": "-p", "--netmask": "-M", "--sched-flags": "-b",
                      "--real-server": "-r", "--weight": "-w", "--u-threshold": "-x",
                      "--l-threshold": "-y"}.get(t, t)] = nxt
                i += 2
            elif t in _SWITCH_FWD:
                opts["fwd"] = _SWITCH_FWD[t]
                i += 1
            elif t in ("-o", "--ops"):
                opts["-o"] = "1"
                i += 1
            else:
                raise IpvsError(f"{where}: unknown option {t!r}")
        if proto is None or vaddr is None:
            raise IpvsError(f"{where}: missing -t/-u/--sctp-service ADDRESS:PORT")
        is_service = cmd in ("-A", "--add-service")
        wrong = [o for o in opts if o in (("-r", "-w", "-x", "-y", "fwd") if is_service
                                          else ("-s", "-p", "-M", "-b", "-o", "--pe"))]
        if wrong:
            raise IpvsError(f"{where}: option {wrong[0]} is not valid on a {'service (-A)' if is_service else 'server (-a)'} line")
        if cmd in ("-A", "--add-service"):
            sched = opts.get("-s") or "wlc"         # ipvsadm's default scheduler
            if sched not in SCHEDULERS:
                raise IpvsError(f"{where}: unknown scheduler {sched!r} (expected one of {', '.join(SCHEDULERS)})")
            flags = 0
            timeout = 0
            if "-p" in opts:
                flags |= IP_VS_SVC_F_PERSISTENT
                timeout = _int(opts["-p"], "persistence timeout", where)
            if "-o" in opts:
                flags |= IP_VS_SVC_F_ONEPACKET
            if "-b" in opts:
                flags |= _sched_flags_from(opts["-b"] or "", where)
            netmask = 0xFFFFFFFF
            if "-M" in opts:
                try:
                    netmask = ip2int(opts["-M"] or "")
                except PacketError:
                    raise IpvsError(f"{where}: -M expects a netmask like 255.255.255.0, got {opts['-M']!r}") from None
            if table.lookup(IPPROTO[proto], *vaddr) is not None:
                raise IpvsError(f"{where}: service {proto} {int2ip(vaddr[0])}:{vaddr[1]} listed twice")
            table.add_service(proto, vaddr[0], vaddr[1], scheduler=sched, flags=flags, timeout=timeout,
                              netmask=netmask)
        else:
            vs = table.lookup(IPPROTO[proto], *vaddr)
            if vs is None:
                raise IpvsError(f"{where}: server for {proto} {int2ip(vaddr[0])}:{vaddr[1]}, "
                                "which no earlier -A line created")
            if "-r" not in opts:
                raise IpvsError(f"{where}: -a needs -r ADDRESS:PORT")
            rip, rport = _hostport(opts["-r"] or "", where)
            weight = _int(opts.get("-w", "1"), "weight", where)
            try:
                d = vs.add_dest(rip, rport, weight=weight, forward=opts.get("fwd") or FWD_ROUTE)
            except IpvsError as e:
                raise IpvsError(f"{where}: {e}") from None
            if "-x" in opts:
                d.u_threshold = _int(opts["-x"], "upper threshold", where)
            if "-y" in opts:
                d.l_threshold = _int(opts["-y"], "lower threshold", where)
    return table
