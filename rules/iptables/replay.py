"""Replay one packet through a ruleset: one hook, or its whole path through the node, once or for
every outcome the statistic rules allow.

The packet's path follows the kernel (include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities:
raw -300, mangle -150, nat DNAT -100, filter 0, nat SNAT 100):

* arriving (PREROUTING): raw, mangle, nat; then the routing decision on the post-DNAT destination:
  a local address (``local_addrs``, 127/8) goes to INPUT (mangle, filter, nat), anything else to
  FORWARD (mangle, filter) and POSTROUTING (mangle, nat);
* locally generated (OUTPUT): raw, mangle, nat, filter; POSTROUTING (mangle, nat); and INPUT when the
  destination is local (delivered over lo).

nat runs for a connection's first packet only (ctstate NEW). ``replay_all`` explores every way the
``-m statistic --mode random`` rules can fall (a fresh draw per rule, xt_statistic.c), so it returns
the whole set of endpoints a packet may be DNATed to, as kube-proxy's packet-flow tests ask
(pkg/proxy/iptables/proxier_test.go tracePacket / runPacketFlowTests); ``-m recent --rcheck`` finds
an empty list, as on a connection's first packet from a new client.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

from netsim.rules.iptables.engine import HOOK_TABLES, Engine, EvalContext, Verdict
from netsim.rules.iptables.ruleset import IptablesError

START_HOOKS = ("PREROUTING", "OUTPUT")
MAX_PATHS = 4096


@dataclass
class _ReplayConn:
    """The conntrack entry a first packet has: NEW, with the NAT bindings the nat table made."""
    dnat: bool = False
    snat: bool = False
    mark: int = 0


@dataclass
class ReplayPath:
    """One way the packet went: every table that ran, in order, and what became of the packet."""
    hooks: list[str] = field(default_factory=list)
    tables: list[tuple[str, Verdict]] = field(default_factory=list)   # (hook, verdict of one table)
    verdict: str = "ACCEPT"                 # ACCEPT | DROP | REJECT (the last table's)
    reject_with: Optional[str] = None
    by_rule: bool = False                   # a rule (not a chain policy) gave a filter verdict
    dnat: Optional[str] = None              # "ip:port" after DNAT
    masquerade: bool = False                # nat POSTROUTING SNAT/MASQUERADE
    route: Optional[str] = None             # "local" | "forward" (full path only)
    mark: int = 0
    rewrites: list[str] = field(default_factory=list)

    @property
    def rules_evaluated(self) -> int:
        return sum(v.rules_evaluated for _, v in self.tables)


class _Draws:
    """A stand-in RNG for xt_statistic: each draw follows a script of match / no-match choices; draws
    past the script match, and are recorded so the caller can try the other way."""

    def __init__(self, script: list[bool]) -> None:
        self.script = script
        self.taken: list[bool] = []

    def getrandbits(self, k: int) -> int:
        i = len(self.taken)
        match = self.script[i] if i < len(self.script) else True
        self.taken.append(match)
        return 0 if match else (1 << k) - 1     # 0 is below any threshold; all ones above any p < 1


def replay(engine: Engine, make_packet: Callable[[], object], hook: str, local_addrs: set[int], *,
           full_path: bool = False, rng: Optional[object] = None, ctstate: str = "NEW", mark: int = 0,
           iif: Optional[str] = None, oif: Optional[str] = None) -> ReplayPath:
    """Walk one packet (built by ``make_packet``) from ``hook``; statistic draws come from ``rng``."""
    if hook not in START_HOOKS:
        raise IptablesError(f"replay starts at PREROUTING or OUTPUT, not {hook!r}")
    pkt = make_packet()
    pkt.mark, pkt.ctstate = mark, ctstate
    conn = _ReplayConn()
    pkt.ct = conn if ctstate == "NEW" else None
    pkt.iif = iif if hook == "PREROUTING" else None
    pkt.oif = oif if hook == "OUTPUT" else None
    ctx = EvalContext(local_addrs=set(local_addrs), rng=rng if rng is not None else random.Random(0))
    path = ReplayPath()
    first = ctstate in ("NEW", "RELATED")

    def local(addr: int) -> bool:
        return addr >> 24 == 127 or addr in ctx.local_addrs

    def run(h: str) -> bool:
        path.hooks.append(h)
        for table in HOOK_TABLES[h]:
            if table == "nat" and not first:
                continue
            if not engine.has_chain(table, h):
                continue
            v = engine.run(table, h, pkt, ctx)
            path.tables.append((h, v))
            if v.nat is not None:
                _apply_nat(pkt, v, conn, path)
            if v.verdict != "ACCEPT":
                path.verdict, path.reject_with = v.verdict, v.reject_with
                path.by_rule = bool(v.steps) and not v.steps[-1].policy
                return False
            if table == "filter" and v.steps and not v.steps[-1].policy:
                path.by_rule = True                 # a rule ACCEPTed
        return True

    if hook == "PREROUTING":
        ok = run("PREROUTING")
        if ok and full_path:
            if local(pkt.dst):
                path.route = "local"
                run("INPUT")
            else:
                path.route = "forward"
                pkt.oif = oif
                if run("FORWARD"):
                    run("POSTROUTING")
    else:
        ok = run("OUTPUT")
        if ok and full_path:
            path.route = "local" if local(pkt.dst) else "forward"
            if run("POSTROUTING") and path.route == "local":
                pkt.iif = "lo"
                run("INPUT")
    path.mark = pkt.mark
    return path


def replay_all(engine: Engine, make_packet: Callable[[], object], hook: str, local_addrs: set[int], *,
               full_path: bool = False, max_paths: int = MAX_PATHS, **kw) -> list[ReplayPath]:
    """Every distinct way the packet can go, one ReplayPath each, in rule order (the first endpoint
    of a KUBE-SVC chain first)."""
    out: list[ReplayPath] = []
    pending: list[list[bool]] = [[]]
    runs = 0
    while pending:
        runs += 1
        if runs > max_paths:
            raise IptablesError(f"more than {max_paths} ways through the statistic rules; not enumerated")
        script = pending.pop()
        draws = _Draws(script)
        p = replay(engine, make_packet, hook, local_addrs, full_path=full_path, rng=draws, **kw)
        out.append(p)
        # the other way of every draw this run made past its script (pushed deepest first, so the
        # next run is the shallowest alternative: KUBE-SVC's endpoints come out in rule order)
        for i in range(len(draws.taken) - 1, len(script) - 1, -1):
            pending.append(draws.taken[:i] + [not draws.taken[i]])
    return out


def flow_summary(paths: list[ReplayPath]) -> tuple[str, bool]:
    """What kube-proxy's packet-flow tests compare (proxier_test.go runPacketFlowTests): the DNAT
    destinations ("IP:port, IP:port" in rule order), else the verdict a rule gave (ACCEPT, DROP,
    REJECT), else ""; and whether the packet is masqueraded."""
    endpoints: list[str] = []
    verdicts: list[str] = []
    for p in paths:
        if p.dnat and p.dnat not in endpoints:
            endpoints.append(p.dnat)
        if p.by_rule and (p.verdict != "ACCEPT" or not p.dnat) and p.verdict not in verdicts:
            verdicts.append(p.verdict)
    if endpoints:
        out = endpoints + [v for v in verdicts if v != "ACCEPT"]
    else:
        out = verdicts
    return ", ".join(out), any(p.masquerade for p in paths)


def _apply_nat(pkt, v: Verdict, conn: _ReplayConn, path: ReplayPath) -> None:
    """What conntrack does with the binding before the next table: DNAT rewrites the destination
    now; SNAT/MASQUERADE (POSTROUTING) are noted (the source is rewritten on the way out)."""
    nat = v.nat
    if nat.kind == "DNAT":
        before = f"{pkt.dst_ip}:{pkt.dport}"
        if nat.ip is not None:
            pkt.dst = nat.ip
        if nat.port is not None:
            pkt.dport = nat.port
        conn.dnat = True
        path.dnat = f"{pkt.dst_ip}:{pkt.dport}"
        path.rewrites.append(f"{nat.kind} {before} -> {path.dnat}")
    else:
        conn.snat = True
        path.masquerade = True
        path.rewrites.append(nat.kind + (" (source becomes the outgoing interface's address)"
                                         if nat.kind == "MASQUERADE" else ""))


def with_kube_proxy_jumps(text: str) -> tuple[str, list[str]]:
    """kube-proxy's restore input has no rules in the built-in chains: on a full sync it adds the
    jumps with EnsureChain + EnsureRule(Prepend) (proxier.go syncProxyRules, iptablesJumpChains).
    For each of filter and nat that has KUBE-* chains but no built-in chain rule, add those jumps
    (and declare the chains they jump to) just before the table's COMMIT, so the dump's own line
    numbers stay as they are. Returns the text and one note per table changed."""
    from netsim.rules.iptables.proxier import JUMP_RULES, _builtin_jump_rules
    jumps = _builtin_jump_rules()
    lines = text.split("\n")
    notes: list[str] = []
    out: list[str] = []
    table: Optional[str] = None
    body: list[str] = []
    for line in lines:
        s = line.strip()
        if s.startswith("*"):
            table, body = s[1:], []
            out.append(line)
            continue
        if s == "COMMIT" and table in jumps:
            builtin = tuple(jumps[table])
            has_jump = any(b.startswith(f"-A {c} ") for b in body for c in builtin)
            declared = {b[1:].split()[0] for b in body if b.startswith(":")}
            if not has_jump and any(d.startswith("KUBE-") for d in declared):
                targets = [j.dst_chain for j in JUMP_RULES if j.table == table]
                out += [f":{c} - [0:0]" for c in dict.fromkeys(targets) if c not in declared]
                added = [r for c in builtin for r in jumps[table][c]]
                out += added
                notes.append(f"*{table}: no rule in the built-in chains; added the {len(added)} jump rules "
                              "kube-proxy ensures (EnsureRule) at the end of the table")
            table = None
        elif table is not None:
            body.append(s)
        out.append(line)
    return "\n".join(out), notes
