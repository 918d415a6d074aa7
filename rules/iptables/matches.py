"""The `-m` match modules: option syntax, canonical iptables-save text, and compiled packet tests.

Each builder turns the options written after `-m MODULE` into a Match with `pred(pkt, ctx)`.
Semantics follow the kernel's xt_* modules (named per builder); the canonical text follows
what iptables-save v1.8.9 prints (checked in a scratch netns; pinned in tests).
"""
from __future__ import annotations

from typing import Callable, Optional

from netsim.rules.iptables import match_ipvs
from netsim.rules.iptables.ruleset import Header, IptablesError, Match, Opt
from netsim.rules.iptables.values import (
    int2ip, parse_cidr, parse_int, parse_mark, parse_port_range, render_cidr,
    render_port_range, save_string,
)

# module -> {option: number of arguments}; aliases map to the canonical option name
OPTIONS: dict[str, dict[str, int]] = {
    "tcp": {"--sport": 1, "--dport": 1, "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1},
    "udp": {"--sport": 1, "--dport": 1},
    "sctp": {"--sport": 1, "--dport": 1},
    "udplite": {"--sport": 1, "--dport": 1},
    "icmp": {"--icmp-type": 1},
    "comment": {"--comment": 1},
    "mark": {"--mark": 1},
    "connmark": {"--mark": 1},
    "statistic": {"--mode": 1, "--probability": 1, "--every": 1, "--packet": 1},
    "recent": {"--name": 1, "--set": 0, "--rcheck": 0, "--update": 0, "--remove": 0, "--seconds": 1,
               "--reap": 0, "--hitcount": 1, "--rttl": 0, "--rsource": 0, "--rdest": 0, "--mask": 1},
    "addrtype": {"--src-type": 1, "--dst-type": 1, "--limit-iface-in": 0, "--limit-iface-out": 0},
    "conntrack": {"--ctstate": 1, "--ctproto": 1, "--ctorigsrc": 1, "--ctorigdst": 1, "--ctreplsrc": 1,
                  "--ctrepldst": 1, "--ctorigsrcport": 1, "--ctorigdstport": 1, "--ctreplsrcport": 1,
                  "--ctrepldstport": 1, "--ctstatus": 1, "--ctexpire": 1, "--ctdir": 1},
    "state": {"--state": 1},
    "set": {"--match-set": 2, "--return-nomatch": 0, "--update-counters": 0, "--update-subcounters": 0,
            "--packets-eq": 1, "--packets-lt": 1, "--packets-gt": 1, "--bytes-eq": 1, "--bytes-lt": 1,
            "--bytes-gt": 1},
    "multiport": {"--sports": 1, "--dports": 1, "--ports": 1},
    "physdev": {"--physdev-in": 1, "--physdev-out": 1, "--physdev-is-in": 0, "--physdev-is-out": 0,
                "--physdev-is-bridged": 0},
    "nfacct": {"--nfacct-name": 1},
    "limit": {"--limit": 1, "--limit-burst": 1},
    "iprange": {"--src-range": 1, "--dst-range": 1},
    "ipvs": match_ipvs.OPTIONS,
}
ALIASES: dict[str, dict[str, str]] = {
    "tcp": {"--source-port": "--sport", "--destination-port": "--dport"},
    "udp": {"--source-port": "--sport", "--destination-port": "--dport"},
    "sctp": {"--source-port": "--sport", "--destination-port": "--dport"},
    "udplite": {"--source-port": "--sport", "--destination-port": "--dport"},
    "set": {"--set": "--match-set"},
    "multiport": {"--source-ports": "--sports", "--destination-ports": "--dports"},
}

PROTO_MODULES = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "udplite": 136}

TCP_FLAGS = (("FIN", 0x01), ("SYN", 0x02), ("RST", 0x04), ("PSH", 0x08), ("ACK", 0x10), ("URG", 0x20))
_TCP_FLAG_BITS = dict(TCP_FLAGS) | {"ALL": 0x3F, "NONE": 0}

# conntrack state names in the order libxt_conntrack prints them
CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
CT_STATUSES = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
# rtnetlink route types in the order libxt_addrtype prints them
ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE",
              "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")
ICMP_TYPES = {
    "any": (255, 0, 255), "echo-reply": (0, 0, 255), "pong": (0, 0, 255),
    "destination-unreachable": (3, 0, 255), "network-unreachable": (3, 0, 0),
    "host-unreachable": (3, 1, 1), "protocol-unreachable": (3, 2, 2), "port-unreachable": (3, 3, 3),
    "fragmentation-needed": (3, 4, 4), "source-quench": (4, 0, 255), "redirect": (5, 0, 255),
    "echo-request": (8, 0, 255), "ping": (8, 0, 255), "time-exceeded": (11, 0, 255),
    "ttl-exceeded": (11, 0, 255), "parameter-problem": (12, 0, 255),
}

RECENT_IP_LIST_TOT = 100      # xt_recent module parameter ip_list_tot (entries per list)
RECENT_IP_PKT_LIST_TOT = 20   # xt_recent module parameter ip_pkt_list_tot (stamps per entry)



def always_true(p, c) -> bool:
    """The test of a match that always matches (comment, nfacct, limit)."""
    return True


def _one(opts: list[Opt], name: str) -> Optional[Opt]:
    """The last occurrence of option `name` (iptables keeps the last value given)."""
    for o in reversed(opts):
        if o.name == name:
            return o
    return None


def neg_expr(fmt: str, neg: bool) -> str:
    return f"not ({fmt})" if neg else fmt


def and_exprs(exprs: list[tuple[str, tuple]]) -> Optional[tuple[str, tuple]]:
    if not exprs:
        return None
    if len(exprs) == 1:
        return exprs[0]
    return " and ".join(f"({f})" for f, _ in exprs), tuple(v for _, vals in exprs for v in vals)


def _negstr(o: Opt) -> str:
    return "! " if o.neg else ""


def _require_proto(header: Header, module: str, where: str, protos: tuple[int, ...]) -> None:
    if header.proto is None or header.proto[1] or header.proto[0] not in protos:
        raise IptablesError(f"{where}: -m {module} needs -p {module if module in PROTO_MODULES else 'tcp|udp|sctp'}"
                            " (the match is only valid for that protocol)")


# --- tcp / udp / sctp (xt_tcpudp.c, xt_sctp.c) --------------------------------------------
def _ports_match(module: str, opts: list[Opt], header: Header, where: str) -> Match:
    _require_proto(header, module, where, (PROTO_MODULES[module],))
    tests: list[Callable] = []
    exprs: list[tuple[str, tuple]] = []
    parts: list[str] = []
    dport_hint: Optional[int] = None
    for name in ("--sport", "--dport"):
        o = _one(opts, name)
        if o is None:
            continue
        lo, hi = parse_port_range(o.args[0], where)
        if (lo, hi) == (0, 65535) and not o.neg:
            continue  # iptables-save omits the full range
        parts.append(f"{_negstr(o)}{name} {render_port_range(lo, hi)}")
        attr = "sport" if name == "--sport" else "dport"
        tests.append(_port_test(attr, lo, hi, o.neg))
        exprs.append((neg_expr(f"p.{attr} == {{}}", o.neg), (lo,)) if lo == hi else
                     (neg_expr(f"{{}} <= p.{attr} <= {{}}", o.neg), (lo, hi)))
        if name == "--dport" and lo == hi and not o.neg:
            dport_hint = lo
    if module == "tcp":
        o = _one(opts, "--tcp-option")
        if o is not None:
            raise IptablesError(f"{where}: --tcp-option is not supported by the emulator")
        syn = _one(opts, "--syn")
        flags = _one(opts, "--tcp-flags")
        if syn is not None:
            flags = Opt("--tcp-flags", ("FIN,SYN,RST,ACK", "SYN"), syn.neg)
        if flags is not None:
            mask = _tcp_flags(flags.args[0], where)
            comp = _tcp_flags(flags.args[1], where)
            parts.append(f"{_negstr(flags)}--tcp-flags {_render_flags(mask)} {_render_flags(comp)}")
            neg = flags.neg
            tests.append(lambda p, c, m=mask, v=comp, n=neg: ((p.tcp_flags & m) == v) != n)
            exprs.append((neg_expr("(p.tcp_flags & {}) == {}", neg), (mask, comp)))
    text = " ".join([f"-m {module}"] + parts)
    return Match(module, opts, text, _all(tests), True, dport_hint,
                 dport_only=dport_hint is not None and len(tests) == 1, always=not tests, expr=and_exprs(exprs))


def _port_test(attr: str, lo: int, hi: int, neg: bool) -> Callable:
    if lo == hi:
        if attr == "dport":
            return lambda p, c: (p.dport == lo) != neg
        return lambda p, c: (p.sport == lo) != neg
    if attr == "dport":
        return lambda p, c: (lo <= p.dport <= hi) != neg
    return lambda p, c: (lo <= p.sport <= hi) != neg


def _tcp_flags(text: str, where: str) -> int:
    v = 0
    for f in text.upper().split(","):
        if f not in _TCP_FLAG_BITS:
            raise IptablesError(f"{where}: unknown TCP flag {f!r} (expected FIN,SYN,RST,PSH,ACK,URG,ALL,NONE)")
        v |= _TCP_FLAG_BITS[f]
    return v


def _render_flags(v: int) -> str:
    names = [n for n, b in TCP_FLAGS if v & b]
    return ",".join(names) if names else "NONE"


def _all(tests: list[Callable]) -> Callable:
    if not tests:
        return always_true
    if len(tests) == 1:
        return tests[0]
    return lambda p, c: all(t(p, c) for t in tests)


def _icmp(opts, header, where, key) -> Match:
    _require_proto(header, "icmp", where, (1,))
    o = _one(opts, "--icmp-type")
    if o is None:
        return Match("icmp", opts, "-m icmp", always_true, always=True)
    spec = o.args[0]
    if spec.lower() in ICMP_TYPES:
        typ, cmin, cmax = ICMP_TYPES[spec.lower()]
    else:
        t, sep, code = spec.partition("/")
        typ = parse_int(t, where, "icmp type", 0, 255)
        cmin, cmax = (parse_int(code, where, "icmp code", 0, 255),) * 2 if sep else (0, 255)
    rendered = "any" if typ == 255 else (str(typ) if (cmin, cmax) == (0, 255) else f"{typ}/{cmin}")
    neg = o.neg

    def test(p, c):
        b = p.buf
        off = (b[0] & 15) * 4
        if typ == 255:
            ok = True
        else:
            ok = b[off] == typ and cmin <= b[off + 1] <= cmax
        return ok != neg
    return Match("icmp", opts, f"-m icmp {_negstr(o)}--icmp-type {rendered}", test)


# --- comment, nfacct, limit (always match) ------------------------------------------------
def _comment(opts, header, where, key) -> Match:
    o = _one(opts, "--comment")
    if o is None:
        raise IptablesError(f"{where}: -m comment needs --comment TEXT")
    if len(o.args[0]) > 255:
        raise IptablesError(f"{where}: comment longer than 255 characters")
    return Match("comment", opts, f"-m comment --comment {save_string(o.args[0])}", always_true,
                 always=True)


def _nfacct(opts, header, where, key) -> Match:
    o = _one(opts, "--nfacct-name")
    if o is None:
        raise IptablesError(f"{where}: -m nfacct needs --nfacct-name NAME")
    # libxt_nfacct prints two spaces before the name (iptables extensions/libxt_nfacct.c nfacct_save)
    return Match("nfacct", opts, f"-m nfacct --nfacct-name  {o.args[0]}", always_true, always=True)


# xt_limit's fixed point (include/uapi/linux/netfilter/xt_limit.h XT_LIMIT_SCALE) and the units
# libxt_limit.c parses and prints, largest first (print_rate picks the largest that keeps the rate whole).
_LIMIT_SCALE = 10000
_LIMIT_UNITS = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))
_LIMIT_PARSE = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _limit_period(text: str, where: str) -> int:
    """libxt_limit.c parse_rate: 'N/unit' (unit any prefix of second, minute, hour, day) → period."""
    num, _, unit = text.partition("/")
    mult = 1
    if unit:
        hits = [m for name, m in _LIMIT_PARSE.items() if name.startswith(unit.lower())]
        if len(hits) != 1:
            raise IptablesError(f"{where}: bad --limit rate {text!r} (expected N/sec, N/min, N/hour or N/day)")
        mult = hits[0]
    rate = parse_int(num, where, "--limit", 1)
    period = _LIMIT_SCALE * mult // rate
    if period == 0:
        raise IptablesError(f"{where}: --limit {text!r}: rate too fast")
    return period


def _limit_rate_text(period: int) -> str:
    """libxt_limit.c print_rate."""
    i = 1
    while i < len(_LIMIT_UNITS):
        mult = _LIMIT_UNITS[i][1] * _LIMIT_SCALE
        if period > mult or mult // period < mult % period:
            break
        i += 1
    name, secs = _LIMIT_UNITS[i - 1]
    return f"{secs * _LIMIT_SCALE // period}/{name}"


def _limit(opts, header, where, key) -> Match:
    # Tolerated: the emulator does not model token buckets, so a limit always matches. Printed as
    # libxt_limit.c limit_save does: the rate in its largest whole unit (default 3/hour), the
    # burst unless it is the default 5.
    rate = _one(opts, "--limit")
    period = _limit_period(rate.args[0], where) if rate is not None else _LIMIT_SCALE * 3600 // 3
    parts = ["-m limit", f"--limit {_limit_rate_text(period)}"]
    burst = _one(opts, "--limit-burst")
    if burst is not None:
        n = parse_int(burst.args[0], where, "--limit-burst", 1)
        if n != 5:
            parts.append(f"--limit-burst {n}")
    return Match("limit", opts, " ".join(parts), always_true, always=True)


# --- mark / connmark (xt_mark.c, xt_connmark.c): (mark & mask) == value --------------------
def _mark(opts, header, where, key, module="mark") -> Match:
    o = _one(opts, "--mark")
    if o is None:
        raise IptablesError(f"{where}: -m {module} needs --mark VALUE[/MASK]")
    value, mask = parse_mark(o.args[0], where)
    txt = f"0x{value:x}" if mask == 0xFFFFFFFF else f"0x{value:x}/0x{mask:x}"
    neg = o.neg
    expr = None
    if module == "mark":
        test = lambda p, c: ((p.mark & mask) == value) != neg  # noqa: E731
        expr = (neg_expr("(p.mark & {}) == {}", neg), (mask, value))
    else:
        test = lambda p, c: (((getattr(p.ct, "mark", 0) or 0) & mask) == value) != neg  # noqa: E731
    return Match(module, opts, f"-m {module} {_negstr(o)}--mark {txt}", test, expr=expr)


def _connmark(opts, header, where, key) -> Match:
    return _mark(opts, header, where, key, "connmark")


# --- statistic (xt_statistic.c) -------------------------------------------------------------
def _statistic(opts, header, where, key) -> Match:
    mode = _one(opts, "--mode")
    if mode is None or mode.args[0] not in ("random", "nth"):
        raise IptablesError(f"{where}: -m statistic needs --mode random|nth")
    if mode.args[0] == "random":
        o = _one(opts, "--probability")
        if o is None:
            raise IptablesError(f"{where}: statistic --mode random needs --probability P")
        try:
            prob = float(o.args[0])
        except ValueError:
            prob = -1.0
        if not 0.0 <= prob <= 1.0:
            raise IptablesError(f"{where}: --probability must be between 0 and 1, got {o.args[0]!r}")
        # libxt_statistic stores lround(p * 2^31); the kernel matches (prandom & 0x7FFFFFFF) < that
        threshold = round(prob * 0x80000000)
        neg = o.neg
        text = f"-m statistic --mode random {_negstr(o)}--probability {threshold / 0x80000000:.11f}"

        def test(p, c):
            return ((c.rng.getrandbits(32) & 0x7FFFFFFF) < threshold) != neg
        expr = (neg_expr("(c.rng.getrandbits(32) & 2147483647) < {}", neg), (threshold,))
        return Match("statistic", opts, text, test, pure=False, expr=expr)
    every_o = _one(opts, "--every")
    if every_o is None:
        raise IptablesError(f"{where}: statistic --mode nth needs --every N")
    every = parse_int(every_o.args[0], where, "--every", 1)
    pkt_o = _one(opts, "--packet")
    if pkt_o is None:           # libxt_statistic: --every's option entry is also_requires --packet
        raise IptablesError(f'{where}: statistic: option "--every" also requires "--packet"')
    packet = parse_int(pkt_o.args[0], where, "--packet", 0, every - 1)
    neg = every_o.neg
    text = f"-m statistic --mode nth {_negstr(every_o)}--every {every} --packet {packet}"

    # Kernel: a per-rule counter; --packet P matches the packets whose 0-based index within
    # this rule's evaluations is P mod N (checked in a netns: --every 3 --packet 1 hit packets 2, 5).
    def test_nth(p, c):
        n = c.nth.get(key, 0)
        c.nth[key] = n + 1
        return (n % every == packet) != neg
    return Match("statistic", opts, text, test_nth, pure=False, per_rule=True)


# --- recent (xt_recent.c) -----------------------------------------------------------------
def _recent(opts, header, where, key) -> Match:
    modes = [o for o in opts if o.name in ("--set", "--rcheck", "--update", "--remove")]
    if len(modes) != 1:
        raise IptablesError(f"{where}: -m recent needs exactly one of --set, --rcheck, --update, --remove")
    mode = modes[0].name
    neg = modes[0].neg
    name_o = _one(opts, "--name")
    name = name_o.args[0] if name_o else "DEFAULT"
    secs_o = _one(opts, "--seconds")
    seconds = parse_int(secs_o.args[0], where, "--seconds", 0) if secs_o else 0
    hit_o = _one(opts, "--hitcount")
    hitcount = parse_int(hit_o.args[0], where, "--hitcount", 0, RECENT_IP_PKT_LIST_TOT) if hit_o else 0
    reap = _one(opts, "--reap") is not None
    rttl = _one(opts, "--rttl") is not None
    if mode in ("--set", "--remove") and (seconds or hitcount or reap or rttl):
        raise IptablesError(f"{where}: recent {mode} cannot take --seconds, --hitcount, --reap or --rttl")
    if reap and not seconds:
        raise IptablesError(f"{where}: recent --reap needs --seconds")
    mask_o = _one(opts, "--mask")
    mask = parse_cidr("0.0.0.0/" + mask_o.args[0], where)[1] if mask_o else 0xFFFFFFFF
    dest = _one(opts, "--rdest") is not None
    parts = ["-m recent", f"{'! ' if neg else ''}{mode}"]
    if seconds:
        parts.append(f"--seconds {seconds}")
    if reap:
        parts.append("--reap")
    if hitcount:
        parts.append(f"--hitcount {hitcount}")
    if rttl:
        parts.append("--rttl")
    parts += [f"--name {name}", f"--mask {int2ip(mask)}", "--rdest" if dest else "--rsource"]

    def test(p, c):
        addr = (p.dst if dest else p.src) & mask
        return c.recent.check(name, addr, mode, c.now, seconds, hitcount, reap, p.ttl if rttl else 0) != neg
    return Match("recent", opts, " ".join(parts), test, pure=False)


# --- addrtype (xt_addrtype.c) ---------------------------------------------------------------
def _addrtype(opts, header, where, key) -> Match:
    parts = ["-m addrtype"]
    tests = []
    lim_in = _one(opts, "--limit-iface-in") is not None
    lim_out = _one(opts, "--limit-iface-out") is not None
    if lim_in and lim_out:
        raise IptablesError(f"{where}: addrtype takes only one of --limit-iface-in/--limit-iface-out")
    for name, attr in (("--src-type", "src"), ("--dst-type", "dst")):
        o = _one(opts, name)
        if o is None:
            continue
        types = o.args[0].upper().split(",")
        for t in types:
            if t not in ADDR_TYPES:
                raise IptablesError(f"{where}: unknown address type {t!r} (expected one of {', '.join(ADDR_TYPES)})")
            if t not in ("LOCAL", "UNICAST", "BROADCAST", "MULTICAST"):
                raise IptablesError(f"{where}: address type {t} is not modelled (LOCAL, UNICAST, BROADCAST, MULTICAST are)")
        ordered = [t for t in ADDR_TYPES if t in types]
        parts.append(f"{_negstr(o)}{name} {','.join(ordered)}")
        tests.append(_addrtype_test(attr, frozenset(ordered), o.neg, "iif" if lim_in else "oif" if lim_out else None))
    if lim_in:
        parts.append("--limit-iface-in")
    if lim_out:
        parts.append("--limit-iface-out")
    expr = None
    if len(tests) == 1 and not (lim_in or lim_out):
        o = _one(opts, "--src-type") or _one(opts, "--dst-type")
        if o.args[0].upper() == "LOCAL":
            a = "p.dst" if o.name == "--dst-type" else "p.src"
            expr = (neg_expr(f"{a} >> 24 == 127 or {a} in c.local_addrs", o.neg), ())
    return Match("addrtype", opts, " ".join(parts), _all(tests), expr=expr)


def _addrtype_test(attr: str, types: frozenset, neg: bool, iface_attr: Optional[str]) -> Callable:
    def route_type(addr: int, p, c) -> str:
        if iface_attr is not None:
            dev = getattr(p, iface_attr)
            local = addr >> 24 == 127 or addr in (c.iface_addrs or {}).get(dev, ())
        else:
            local = addr >> 24 == 127 or addr in c.local_addrs
        if local:
            return "LOCAL"
        if addr >> 28 == 0xE:
            return "MULTICAST"
        if addr == 0xFFFFFFFF:
            return "BROADCAST"
        return "UNICAST"

    if types == frozenset(("LOCAL",)) and iface_attr is None:
        if attr == "dst":
            return lambda p, c: (p.dst >> 24 == 127 or p.dst in c.local_addrs) != neg
        return lambda p, c: (p.src >> 24 == 127 or p.src in c.local_addrs) != neg
    if attr == "dst":
        return lambda p, c: (route_type(p.dst, p, c) in types) != neg
    return lambda p, c: (route_type(p.src, p, c) in types) != neg


# --- conntrack / state (xt_conntrack.c, xt_state.c) ----------------------------------------
def packet_ctstates(p) -> set[str]:
    """The packet's conntrack states, including the virtual SNAT/DNAT states.

    A packet the walker did not mark (ctstate None) is taken as NEW: conntrack classifies
    every packet it sees before the first table runs (include/uapi/linux/netfilter_ipv4.h:
    NF_IP_PRI_CONNTRACK = -200). SNAT/DNAT come from the entry's NAT bindings (netsim.dataplane.conntrack.ConntrackEntry.snat/.dnat).
    """
    states = {p.ctstate or "NEW"}
    ct = p.ct
    if ct is not None:
        if getattr(ct, "snat", False):
            states.add("SNAT")
        if getattr(ct, "dnat", False):
            states.add("DNAT")
    return states


def ct_statuses(ct) -> set[str]:
    """Kernel IPS_* status bits of a conntrack entry, by name."""
    if ct is None:
        return set()
    out = set()
    for name, attr in (("SEEN_REPLY", "seen_reply"), ("ASSURED", "assured"), ("CONFIRMED", "confirmed"),
                       ("EXPECTED", "expected")):
        if getattr(ct, attr, False):
            out.add(name)
    return out


# conntrack tuple field -> (tuple attribute, index in netsim.dataplane.conntrack's (proto, src, sport, dst, dport))
_CT_FIELDS = {
    "orig_src": ("orig", 1), "orig_dst": ("orig", 3), "orig_sport": ("orig", 2), "orig_dport": ("orig", 4),
    "reply_src": ("reply", 1), "reply_dst": ("reply", 3), "reply_sport": ("reply", 2), "reply_dport": ("reply", 4),
}


def _ct_field(ct, name: str):
    if ct is None:
        return None
    attr, idx = _CT_FIELDS[name]
    tup = getattr(ct, attr, None)
    return tup[idx] if tup is not None else None


def _conntrack(opts, header, where, key) -> Match:
    parts = ["-m conntrack"]
    tests = []
    expr = None
    o = _one(opts, "--ctstate")
    if o is not None:
        states = _names(o.args[0], CT_STATES, "conntrack state", where)
        parts.append(f"{_negstr(o)}--ctstate {','.join(states)}")
        sset, neg = frozenset(states), o.neg
        if len(sset) == 1 and not ({"SNAT", "DNAT"} & sset):
            only = next(iter(sset))
            tests.append(lambda p, c: ((p.ctstate or "NEW") == only) != neg)
            expr = (neg_expr('(p.ctstate or "NEW") == {}', neg), (only,))
        else:
            tests.append(lambda p, c: bool(packet_ctstates(p) & sset) != neg)
    o = _one(opts, "--ctproto")
    if o is not None:
        from netsim.rules.iptables.values import parse_proto
        num = parse_proto(o.args[0], where)
        parts.append(f"{_negstr(o)}--ctproto {num}")
        tests.append(lambda p, c, n=num, ng=o.neg: (p.proto == n) != ng)
    for name, attr, fallback in (("--ctorigsrc", "orig_src", "src"), ("--ctorigdst", "orig_dst", "dst"),
                                 ("--ctreplsrc", "reply_src", None), ("--ctrepldst", "reply_dst", None)):
        o = _one(opts, name)
        if o is None:
            continue
        net, mask = parse_cidr(o.args[0], where)
        txt = int2ip(net) if mask == 0xFFFFFFFF else render_cidr(net, mask)   # libxt_conntrack omits /32
        parts.append(f"{_negstr(o)}{name} {txt}")
        tests.append(_ct_addr_test(attr, fallback, net, mask, o.neg))
    for name, attr, fallback in (("--ctorigsrcport", "orig_sport", "sport"), ("--ctorigdstport", "orig_dport", "dport"),
                                 ("--ctreplsrcport", "reply_sport", None), ("--ctrepldstport", "reply_dport", None)):
        o = _one(opts, name)
        if o is None:
            continue
        lo, hi = parse_port_range(o.args[0], where)
        parts.append(f"{_negstr(o)}{name} {render_port_range(lo, hi)}")
        tests.append(_ct_port_test(attr, fallback, lo, hi, o.neg))
    o = _one(opts, "--ctstatus")
    if o is not None:
        statuses = _names(o.args[0], CT_STATUSES + ("NONE",), "conntrack status", where)
        parts.append(f"{_negstr(o)}--ctstatus {','.join(statuses)}")
        want, neg = frozenset(statuses), o.neg

        def status_test(p, c):
            st = ct_statuses(p.ct)
            ok = bool(st & want) or ("NONE" in want and not st & set(CT_STATUSES))
            return ok != neg
        tests.append(status_test)
    o = _one(opts, "--ctexpire")
    if o is not None:
        raise IptablesError(f"{where}: conntrack --ctexpire is not modelled")
    o = _one(opts, "--ctdir")
    if o is not None:
        d = o.args[0].upper()
        if d not in ("ORIGINAL", "REPLY"):
            raise IptablesError(f"{where}: --ctdir must be ORIGINAL or REPLY, got {o.args[0]!r}")
        parts.append(f"--ctdir {d}")
        tests.append(lambda p, c, r=(d == "REPLY"): bool(p.ct_reply) == r)
    if len(parts) == 1:
        raise IptablesError(f"{where}: -m conntrack needs at least one option (e.g. --ctstate)")
    return Match("conntrack", opts, " ".join(parts), _all(tests), expr=expr if len(tests) == 1 else None)


def _ct_addr_test(attr, fallback, net, mask, neg):
    def test(p, c):
        v = _ct_field(p.ct, attr)
        if v is None:
            if fallback is None:
                return neg
            v = getattr(p, fallback)
        return ((v & mask) == net) != neg
    return test


def _ct_port_test(attr, fallback, lo, hi, neg):
    def test(p, c):
        v = _ct_field(p.ct, attr)
        if v is None:
            if fallback is None:
                return neg
            v = getattr(p, fallback)
        return (lo <= v <= hi) != neg
    return test


def _names(text: str, known: tuple[str, ...], what: str, where: str) -> list[str]:
    given = text.upper().split(",")
    for g in given:
        if g not in known:
            raise IptablesError(f"{where}: unknown {what} {g!r} (expected {', '.join(known)})")
    return [k for k in known if k in given]


def _state(opts, header, where, key) -> Match:
    o = _one(opts, "--state")
    if o is None:
        raise IptablesError(f"{where}: -m state needs --state LIST")
    states = _names(o.args[0], CT_STATES[:5], "state", where)
    sset, neg = frozenset(states), o.neg
    return Match("state", opts, f"-m state {_negstr(o)}--state {','.join(states)}",
                 lambda p, c: ((p.ctstate or "NEW") in sset) != neg)


# --- set (xt_set.c) -------------------------------------------------------------------------
def _set(opts, header, where, key) -> Match:
    o = _one(opts, "--match-set")
    if o is None:
        raise IptablesError(f"{where}: -m set needs --match-set NAME src|dst[,...]")
    name, dirs_s = o.args
    dirs = tuple(dirs_s.split(","))
    if not 1 <= len(dirs) <= 6 or any(d not in ("src", "dst") for d in dirs):
        raise IptablesError(f"{where}: --match-set flags must be src/dst separated by commas, got {dirs_s!r}")
    parts = [f"-m set {_negstr(o)}--match-set {name} {dirs_s}"]
    return_nomatch = False
    for x in opts:
        if x.name == "--match-set":
            continue
        if x.name == "--return-nomatch":
            return_nomatch = True
        elif x.name.startswith(("--packets-", "--bytes-")):
            raise IptablesError(f"{where}: set {x.name} counter matching is not modelled")
        parts.append(f"{_negstr(x)}{x.name}" + "".join(" " + a for a in x.args))
    neg = o.neg

    def test(p, c):
        if c.ipsets is None or name not in c.ipsets:
            raise IptablesError(f"{where}: ipset {name!r} does not exist (the kernel refuses such a rule)")
        return c.ipsets.get(name).test(p, dirs, c.now, return_nomatch) != neg
    return Match("set", opts, " ".join(parts), test, per_rule=True)    # `test` names this rule's line


# --- multiport (xt_multiport.c) -------------------------------------------------------------
def _multiport(opts, header, where, key) -> Match:
    _require_proto(header, "multiport", where, (6, 17, 132, 136))
    found = [o for o in opts if o.name in ("--sports", "--dports", "--ports")]
    if len(found) != 1:
        raise IptablesError(f"{where}: -m multiport needs exactly one of --sports, --dports, --ports")
    o = found[0]
    ranges = [parse_port_range(x, where) for x in o.args[0].split(",")]
    if sum(1 if lo == hi else 2 for lo, hi in ranges) > 15:
        raise IptablesError(f"{where}: multiport takes at most 15 ports (a range counts as two)")
    txt = ",".join(render_port_range(lo, hi) for lo, hi in ranges)
    neg = o.neg
    singles = frozenset(lo for lo, hi in ranges if lo == hi)
    spans = tuple((lo, hi) for lo, hi in ranges if lo != hi)

    def hit(v: int) -> bool:
        return v in singles or any(lo <= v <= hi for lo, hi in spans)
    if o.name == "--dports":
        test = lambda p, c: hit(p.dport) != neg  # noqa: E731
    elif o.name == "--sports":
        test = lambda p, c: hit(p.sport) != neg  # noqa: E731
    else:
        test = lambda p, c: (hit(p.sport) or hit(p.dport)) != neg  # noqa: E731
    return Match("multiport", opts, f"-m multiport {_negstr(o)}{o.name} {txt}", test)


# --- physdev (xt_physdev.c), iprange (xt_iprange.c) -----------------------------------------
def _physdev(opts, header, where, key) -> Match:
    # Bridge ports are read from pkt.physdev_in / pkt.physdev_out when the walker sets them;
    # a packet without them was not bridged.
    parts, tests = ["-m physdev"], []
    for o in opts:
        parts.append(f"{_negstr(o)}{o.name}" + "".join(" " + a for a in o.args))
        if o.name in ("--physdev-in", "--physdev-out"):
            attr = "physdev_in" if o.name == "--physdev-in" else "physdev_out"
            tests.append(_iface_test(attr, o.args[0], o.neg))
        else:
            attr = {"--physdev-is-in": "physdev_in", "--physdev-is-out": "physdev_out",
                    "--physdev-is-bridged": "physdev_out"}[o.name]
            tests.append(lambda p, c, a=attr, n=o.neg: (getattr(p, a, None) is not None) != n)
    return Match("physdev", opts, " ".join(parts), _all(tests))


def iface_matches(name: Optional[str], pattern: str) -> bool:
    if name is None:
        return False
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _iface_test(attr: str, pattern: str, neg: bool) -> Callable:
    return lambda p, c: iface_matches(getattr(p, attr, None), pattern) != neg


def _iprange(opts, header, where, key) -> Match:
    from netsim.rules.iptables.values import ip2int
    parts, tests = ["-m iprange"], []
    for o in opts:
        lo_s, sep, hi_s = o.args[0].partition("-")
        lo = ip2int(lo_s, where)
        hi = ip2int(hi_s, where) if sep else lo
        parts.append(f"{_negstr(o)}{o.name} {int2ip(lo)}-{int2ip(hi)}")
        attr = "src" if o.name == "--src-range" else "dst"
        tests.append(lambda p, c, a=attr, l=lo, h=hi, n=o.neg: (l <= getattr(p, a) <= h) != n)
    return Match("iprange", opts, " ".join(parts), _all(tests))


BUILDERS: dict[str, Callable[..., Match]] = {
    "tcp": lambda o, h, w, k: _ports_match("tcp", o, h, w),
    "udp": lambda o, h, w, k: _ports_match("udp", o, h, w),
    "sctp": lambda o, h, w, k: _ports_match("sctp", o, h, w),
    "udplite": lambda o, h, w, k: _ports_match("udplite", o, h, w),
    "icmp": _icmp,
    "comment": _comment,
    "nfacct": _nfacct,
    "limit": _limit,
    "mark": _mark,
    "connmark": _connmark,
    "statistic": _statistic,
    "recent": _recent,
    "addrtype": _addrtype,
    "conntrack": _conntrack,
    "state": _state,
    "set": _set,
    "multiport": _multiport,
    "physdev": _physdev,
    "iprange": _iprange,
    "ipvs": match_ipvs.build,
}


def build_match(module: str, opts: list[Opt], header: Header, where: str, key: object) -> Match:
    """Compile one match; `key` identifies the rule's per-rule state (statistic nth counter)."""
    if module not in BUILDERS:
        raise IptablesError(f"{where}: unknown match module -m {module}")
    return BUILDERS[module](opts, header, where, key)
