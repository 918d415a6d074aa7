"""The hook runner: per host and hook, the registered functions in priority order, and their verdicts.

As the kernel keeps them (include/linux/netfilter.h struct nf_hook_ops, nf_hook_slow): every hook
of a node has a list of functions ordered by priority (netsim.skb.netfilter): the mode's provider
registers its own (iptables tables, nftables base chains, IPVS), and the data plane adds what the
kernel's conntrack and NAT register:

* conntrack at NF_IP_PRI_CONNTRACK (-200) on PREROUTING and OUTPUT (nf_conntrack_in: the packet gets
  its entry, a new one unconfirmed; before it, a packet has none and ``--ctstate`` reads INVALID;
  a raw-table ``CT --notrack`` makes it UNTRACKED, and conntrack leaves it alone);
* nf_nat at NF_IP_PRI_NAT_DST (-100) on PREROUTING/OUTPUT and NF_IP_PRI_NAT_SRC (100) on
  INPUT/POSTROUTING (nf_nat_ipv4_ops): for a connection's first packet it asks the NAT-type
  functions of the hook (iptables' nat table, nft nat chains) in their priority order for a binding,
  then applies the connection's binding to every packet (nf_nat_packet);
* the conntrack confirm at NF_IP_PRI_CONNTRACK_CONFIRM (INT_MAX) on INPUT and POSTROUTING.

Equal priorities run in the kernel's order: net/netfilter/core.c nf_hook_entries_grow inserts a new
registration before the first entry whose priority is not lower, so the later registration runs
first. The registrations come in the order they were made (the data plane's conntrack first, then
the provider's in its order); nf_nat's hooks count as made with the first NAT function.

A DROP or REJECT ends the walk (a local sender learns it as the socket layer would); STOLEN hands
the packet to the caller (IPVS transmits it itself).
"""
from __future__ import annotations

from typing import Any, Optional

from netsim.dataplane.conntrack import TABLE_FULL, Conntrack, ConntrackEntry
from netsim.dataplane.end import End
from netsim.dataplane.hopmemo import OP_CONFIRM, OP_CT, OP_NAT
from netsim.skb.hook_result import HookResult
from netsim.dataplane.topology import Host
from netsim.dataplane.trace import Hop, PacketSnapshot, PacketTrace, Step, TranslatedStep
from netsim.skb.netfilter import (FORWARD, HOOKS, INPUT, NAT, NF_IP_PRI_CONNTRACK, NF_IP_PRI_CONNTRACK_CONFIRM,
                                  NF_IP_PRI_FILTER, NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC, OUTPUT, POSTROUTING,
                                  PREROUTING, HookRegistration)
from netsim.skb.packet import IPPROTO_TCP, Packet, int2ip

_CHAIN, _CONNTRACK, _NAT, _CONFIRM = 0, 1, 2, 3      # what an entry of a hook's list is
STOLEN = "STOLEN"


class HookTable:
    """One node's hooks: per hook, the provider's registrations and the data plane's own, by priority.

    Each list holds ``(kind, what)`` entries. OUTPUT comes in two parts: ``output`` runs before the
    route is looked up again (everything that may change the destination: raw, conntrack, mangle,
    nat, IPVS), ``output_routed`` after it (filter and later), as a locally generated packet is
    re-routed when NAT changed its destination (ip_route_me_harder)."""

    __slots__ = ("prerouting", "input", "forward", "output", "output_routed", "postrouting", "registrations",
                 "listing")

    def __init__(self, registrations: tuple[HookRegistration, ...]) -> None:
        self.registrations = registrations
        lists: dict[str, list] = {h: [] for h in HOOKS}
        nat: dict[str, list] = {h: [] for h in HOOKS}
        order = [0]

        def add(hook: str, priority: int, kind: int, what) -> None:
            # net/netfilter/core.c nf_hook_entries_grow inserts a new registration before the first
            # one whose priority is not lower: at equal priority the later registration runs first
            order[0] += 1
            lists[hook].append((priority, -order[0], kind, what))

        def add_nat() -> None:
            # nf_nat_register_fn registers nf_nat's four hooks (nf_nat_ipv4_ops) with the first NAT
            # function; the NAT functions themselves go into its lookup lists (nf_hook_entries_insert_raw)
            for hook, priority, manip in ((PREROUTING, NF_IP_PRI_NAT_DST, "dst"), (OUTPUT, NF_IP_PRI_NAT_DST, "dst"),
                                          (INPUT, NF_IP_PRI_NAT_SRC, "src"), (POSTROUTING, NF_IP_PRI_NAT_SRC, "src")):
                add(hook, priority, _NAT, (manip, nat[hook]))

        for hook in (PREROUTING, OUTPUT):
            add(hook, NF_IP_PRI_CONNTRACK, _CONNTRACK, None)
        for reg in registrations:
            if reg.type == NAT:
                if not any(nat.values()):
                    add_nat()
                order[0] += 1
                nat[reg.hook].append((reg.priority, -order[0], reg))
            else:
                add(reg.hook, reg.priority, _CHAIN, reg)
        if not any(nat.values()):
            add_nat()
        for hook, lst in lists.items():
            for i, (p, n, kind, what) in enumerate(lst):
                if kind == _NAT:     # the lookup list in the same order (nf_hook_entries_grow again)
                    lst[i] = (p, n, kind, (what[0], tuple(r for _p, _n, r in sorted(what[1], key=lambda x: x[:2]))))
        add(INPUT, NF_IP_PRI_CONNTRACK_CONFIRM, _CONFIRM, False)
        add(POSTROUTING, NF_IP_PRI_CONNTRACK_CONFIRM, _CONFIRM, True)      # (True: the trace shows it)
        ordered = {h: tuple((kind, what) for _p, _n, kind, what in sorted(lst, key=lambda x: x[:2]))
                   for h, lst in lists.items()}
        out = sorted(lists[OUTPUT], key=lambda x: x[:2])
        self.prerouting = ordered[PREROUTING]
        self.input = ordered[INPUT]
        self.forward = ordered[FORWARD]
        self.output = tuple((k, w) for p, _n, k, w in out if p < NF_IP_PRI_FILTER)
        self.output_routed = tuple((k, w) for p, _n, k, w in out if p >= NF_IP_PRI_FILTER)
        self.postrouting = ordered[POSTROUTING]
        # per hook, what runs in order: (priority, name, NAT functions asked in order as (priority, name))
        names = {_CONNTRACK: "nf_conntrack_in", _CONFIRM: "nf_conntrack_confirm", _NAT: "nf_nat_inet_fn"}
        self.listing = {h: tuple((p, what.name if kind == _CHAIN else names[kind],
                                  tuple((r.priority, r.name) for r in what[1]) if kind == _NAT else ())
                                 for p, _n, kind, what in sorted(lst, key=lambda x: x[:2]))
                        for h, lst in lists.items()}


class HookRunner:
    """The netfilter hooks of one host: chains run, conntrack, NAT bindings, verdicts.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (cluster clock, rng, stats) and call each other through ``self``,
    which keeps the per-packet path free of extra indirection."""

    def _hook(self, host: Host, entries: tuple, hook: str, ct: Conntrack, e: Optional[ConntrackEntry],
              pkt: Packet, pt: PacketTrace, hop: Hop, sender: bool = False) -> tuple[Any, Optional[ConntrackEntry]]:
        """Run one hook's ``entries`` on ``pkt``. Returns (how the walk ended, STOLEN, or None to go on;
        the packet's conntrack entry, None when untracked or invalid). ``sender``: the packet is this
        host's own (OUTPUT, and POSTROUTING after it): a DROP/REJECT is also the sending process's error.
        While the walker records a hop (netsim.dataplane.hopmemo), what ran is written down as the
        hop's replay: the results of pure functions, and which live steps (conntrack, NAT) came."""
        now = self.cluster.clock.now
        steps = hop.steps
        rec = self._rec
        if rec is not None:
            rec.hooks += 1
        for kind, what in entries:
            if kind == _CHAIN:
                if rec is not None:
                    before = len(steps)
                res = what.fn(pkt, now, steps)
                n = res.rules_evaluated
                if n:
                    pt.rules += n
                    self.stats["rules_evaluated"] += n
                verdict = res.verdict
                if verdict == "ACCEPT":
                    if res.ct_dnat:
                        self._ct_follows(ct, e, pkt)
                    if rec is not None:
                        if rec.pure(res):
                            rec.chain(steps[before:], n, pkt.mark)
                        else:
                            self._rec = rec = None      # not kept: the rest of the hop is not written down
                    continue
                if rec is not None:
                    rec.ok = False
                if verdict == STOLEN:
                    if res.ct_dnat:
                        self._ct_follows(ct, e, pkt)
                    return STOLEN, e
                if res.reason:                 # a hook that is not a rule table ended it (IPVS)
                    gen = [(host, res.reply)] if res.reply is not None else []
                    return End("REJECTED" if verdict == "REJECT" else "DROPPED", host, res.reason,
                               generated=gen), e
                end = self._refused(host, hop, res, pkt, hook, what.name)
                return (self._sender_sees(end, pkt) if sender else end), e
            if kind == _CONNTRACK:
                if pkt.ctstate == "UNTRACKED":
                    if rec is not None:
                        rec.ok = False
                    hop.add("CONNTRACK", "ctstate UNTRACKED (raw CT --notrack): no conntrack entry, so no NAT either")
                    e = None
                    continue
                stop, e = self._ct_in(host, ct, pkt, hop, sender)
                if stop is not None:
                    return stop, None
                if rec is not None:
                    rec.ops.append(OP_CT)
                continue
            if e is None:
                continue
            if kind == _NAT:
                manip, lookups = what
                looked = None
                if lookups and not e.confirmed and pkt.ctstate == "NEW":
                    looked = [] if rec is not None else None
                    refused = self._nat_lookup(host, ct, e, lookups, manip, pkt, pt, hop, now, looked)
                    if rec is not None and self._rec is None:
                        rec = None                      # (_nat_lookup stopped the recording)
                    if refused is not None:
                        if rec is not None:
                            rec.ok = False
                        end = self._refused(host, hop, refused[0], pkt, hook, refused[1].name)
                        return (self._sender_sees(end, pkt) if sender else end), e
                self._nat_apply(ct, e, manip, pkt, steps)
                # recorded when a lookup ran or the entry has a binding of this kind (then it may rewrite)
                if rec is not None and (looked is not None or ((e.snat if pkt.ct_reply else e.dnat) if manip == "dst"
                                                               else (e.dnat if pkt.ct_reply else e.snat))):
                    rec.ops.append((OP_NAT, manip, tuple(looked) if looked is not None else None))
                continue
            # _CONFIRM: __nf_conntrack_confirm
            confirmed = e.confirmed
            end = self._confirm(host, ct, e, what, pkt, hop, now, sender)
            if end is not None:
                return end, e
            if rec is not None and not confirmed:     # (an entry conntrack found is confirmed: nothing to do)
                rec.ops.append((OP_CONFIRM, what))
        return None, e

    def _ct_in(self, host: Host, ct: Conntrack, pkt: Packet, hop: Hop, sender: bool, found: Optional[tuple] = None
               ) -> tuple[Optional[End], Optional[ConntrackEntry]]:
        """nf_conntrack_in at its hook: (the end of the walk when the table is full, the entry; None
        when the packet is INVALID)."""
        e = self._conntrack_in(host, ct, pkt, hop, found)
        state = pkt.ctstate
        if state == TABLE_FULL:
            end = End("DROPPED", host, f"{host.name}: nf_conntrack table full")
            return (self._sender_sees(end, pkt) if sender else end), None
        if state == "INVALID":
            return None, None
        return None, e

    @staticmethod
    def _nat_apply(ct: Conntrack, e: ConntrackEntry, manip: str, pkt: Packet, steps: list) -> None:
        """nf_nat_packet: the connection's binding of this hook's kind applied to the packet."""
        is_reply = pkt.ct_reply
        if manip == "dst":
            if e.snat if is_reply else e.dnat:          # Conntrack.nat_dst applies only a binding
                change = ct.nat_dst(pkt, e, is_reply)
                if change is not None:
                    steps.append(TranslatedStep("DNAT" if not is_reply else "un-SNAT (conntrack)", "dst", change))
        elif e.dnat if is_reply else e.snat:            # Conntrack.nat_src applies only a binding
            change = ct.nat_src(pkt, e, is_reply)
            if change is not None:
                steps.append(TranslatedStep("SNAT" if not is_reply else "un-DNAT (conntrack)", "src", change))

    def _confirm(self, host: Host, ct: Conntrack, e: ConntrackEntry, shown: bool, pkt: Packet, hop: Hop,
                 now: float, sender: bool) -> Optional[End]:
        """__nf_conntrack_confirm (``shown``: at POSTROUTING, where the trace shows the new entry);
        the end of the walk when the entry's tuples clash with another connection's."""
        if shown:
            if not e.confirmed:
                if not ct.confirm(e, now):
                    end = self._insert_failed(host, hop, e)
                    return self._sender_sees(end, pkt) if sender else end
                snap = e.snapshot(now)
                hop.steps.append(Step("CONNTRACK", "confirmed: %s", {"conntrack": snap}, (snap,)))
        elif not ct.confirm(e, self.now):
            return self._insert_failed(host, hop, e)
        return None

    def _nat_lookup(self, host: Host, ct: Conntrack, e: ConntrackEntry, lookups: tuple, manip: str, pkt: Packet,
                    pt: PacketTrace, hop: Hop, now: float, looked: Optional[list] = None
                    ) -> Optional[tuple[HookResult, HookRegistration]]:
        """nf_nat_inet_fn for a connection's first packet: the NAT functions of the hook, in priority
        order, until one asks for a binding of this hook's kind (destination or source). A function
        that does not accept the packet (an nft nat chain may drop) ends it: returned with its result.
        ``looked`` (while a hop is recorded): gets (RULE steps, rules, mark after, the result whose
        binding was made or None) per function asked."""
        steps = hop.steps
        for reg in lookups:
            if looked is not None:
                before = len(steps)
            res = reg.fn(pkt, now, steps)
            n = res.rules_evaluated
            pt.rules += n
            self.stats["rules_evaluated"] += n
            if res.verdict != "ACCEPT":
                return res, reg
            nat = res.nat
            bind = None
            if nat is not None:
                if manip == "dst" and nat.kind == "DNAT":
                    bind = res
                elif manip == "src" and nat.kind in ("SNAT", "MASQUERADE"):
                    bind = res
            if looked is not None:
                if self._rec.pure(res):
                    looked.append((tuple(steps[before:]), n, pkt.mark, bind))
                else:
                    looked = self._rec = None           # not kept: the rest of the hop is not written down
            if bind is not None:
                self._bind(host, ct, e, res, pkt, hop, pkt.oif if manip == "src" else None)
                return None
        return None

    @staticmethod
    def _ct_follows(ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet) -> None:
        """A hook rewrote the destination of a connection's first packet itself (IPVS with
        net.ipv4.vs.conntrack=1: ip_vs_update_conntrack): the unconfirmed entry's reply tuple
        follows, with no NAT binding (the hook rewrites the replies itself)."""
        if e is not None and not pkt.ct_reply and not e.confirmed:
            ct.bind_dnat(e, pkt.dst, pkt.dport)
            e.dnat = False

    def _insert_failed(self, host: Host, hop: Hop, e: ConntrackEntry) -> End:
        hop.add("DROPPED", "conntrack insert failed: another connection already holds tuple %s "
                "(__nf_conntrack_confirm drops the packet; conntrack -S insert_failed)", None,
                (e.snapshot(self.now),))
        return End("DROPPED", host, "conntrack insert_failed (tuple clash)")

    @staticmethod
    def _sender_sees(end: End, pkt: Packet) -> End:
        """What the local process learns when its own packet ends in OUTPUT or POSTROUTING.

        NF_DROP from a hook makes ip_local_out return -EPERM (nf_hook_slow): UDP's and ICMP's send()
        fails with EPERM at once, whether a rule DROPs or REJECTs. TCP's tcp_connect ignores its
        SYN's error and retransmits (tcp_syn_retries), so a DROP ends in ETIMEDOUT; a REJECT's ICMP
        error (or RST) reaches the socket in SYN_SENT (tcp_v4_err) and connect() fails with
        ECONNREFUSED. Checked in a scratch netns: tests/test_local_drop.py."""
        if end.disposition not in ("DROPPED", "REJECTED"):
            return end
        if pkt.proto == IPPROTO_TCP or pkt.proto == 132:
            if end.disposition == "DROPPED":
                end.client_error = "ETIMEDOUT"
                end.detail += (f"; the client's connect() retransmits the SYN and fails with ETIMEDOUT after "
                               f"about {TCP_SYN_TIMEOUT} s (tcp_syn_retries 6)")
            else:
                end.client_error = "ECONNREFUSED"
                end.detail += "; the client's connect() fails at once with ECONNREFUSED"
        else:
            end.client_error = "EPERM"
            end.detail += "; the client's send() fails at once with EPERM (Operation not permitted)"
        return end

    def _conntrack_in(self, host: Host, ct: Conntrack, pkt: Packet, hop: Hop,
                      found: Optional[tuple] = None) -> Optional[ConntrackEntry]:
        """nf_conntrack_in; ``found``: the (entry, is_reply) Conntrack.peek found for the packet."""
        now = self.cluster.clock.now
        e, is_reply, state = ct.classify(pkt, now) if found is None else ct.classify_found(found, now)
        pkt.ct, pkt.ct_reply, pkt.ctstate = e, is_reply, state
        if state == TABLE_FULL:
            hop.add("DROPPED", f"nf_conntrack: table full, dropping packet (nf_conntrack_max {ct.max_entries}, "
                    "no entry early_drop could evict)")
            return None
        if e is None:
            hop.add("CONNTRACK", "ctstate %s: no connection matches %s", None, (state, PacketSnapshot(pkt.buf)))
            return None
        if state == "RELATED":
            hop.add("CONNTRACK", "ctstate RELATED (ICMP error about %s)", None, (e.snapshot(now),))
            return e
        ct.update(e, pkt, is_reply, now)
        if e.confirmed:
            snap = e.snapshot(now)
            hop.steps.append(Step("CONNTRACK", "ctstate %s%s: %s", {"conntrack": snap},
                                  (state, " (reply direction)" if is_reply else "", snap)))
        else:
            hop.steps.append(Step("CONNTRACK", "ctstate NEW: new entry (unconfirmed) for %s", None,
                                  (PacketSnapshot(pkt.buf),)))
        return e

    def _bind(self, host: Host, ct: Conntrack, e: ConntrackEntry, res: HookResult, pkt: Packet, hop: Hop,
              oif: Optional[str] = None) -> None:
        nat = res.nat
        assert nat is not None
        if nat.kind == "DNAT":
            ct.bind_dnat(e, nat.ip if nat.ip is not None else pkt.dst, nat.port or pkt.dport)
            return
        ip = nat.ip
        if nat.kind == "MASQUERADE":
            ip = host.primary_address(oif or "eth0")
            if ip is None:
                hop.add("DROPPED", f"MASQUERADE: {oif} has no address")
                return
        assert ip is not None
        port = ct.bind_snat(e, ip, nat.port, self.rng, nat.random_fully, oif)
        how = "--random-fully: port drawn" if nat.random_fully else \
            ("source port kept" if port == pkt.sport else "port clash: new source port")
        hop.add("CONNTRACK", f"{nat.kind} binding: source -> {int2ip(ip)}:{port} ({how})")

    def _refused(self, host: Host, hop: Hop, res: HookResult, pkt: Packet, chain: str, table: str) -> End:
        last = res.hits[-1] if res.hits else None
        where = f"{table}:{chain}" + (f" ({last.chain} #{last.number})" if last else "")
        if res.verdict == "REJECT":
            err = self._reject_packet(host, pkt, res.reject_with)
            hop.add("REJECTED", f"{where}: REJECT --reject-with {res.reject_with}; "
                    f"sends {err.summary() if err else 'nothing'}")
            return End("REJECTED", host, f"{where} {last.text if last else ''}".strip(),
                       generated=[(host, err)] if err is not None else [])
        hop.add("DROPPED", f"{where}: DROP")
        return End("DROPPED", host, f"{where} {last.text if last else ''}".strip())

    def _reject_packet(self, host: Host, pkt: Packet, how: str) -> Optional[Packet]:
        # icmp_send: source = the rejected packet's destination if that is local; otherwise (with
        # net.ipv4.icmp_errors_use_inbound_ifaddr=0, the default: Documentation/networking/ip-sysctl)
        # the primary address of the interface the error leaves by, i.e. the route back to the sender.
        if host.routes.is_local(pkt.dst):
            src = pkt.dst
        else:
            r = host.routes.lookup(pkt.src)
            src = (r.src if r and r.src is not None else host.primary_address(r.dev if r else "eth0")) or pkt.dst
        if how == "tcp-reset" and pkt.proto == IPPROTO_TCP:
            return Packet.tcp(pkt.dst_ip, pkt.src_ip, pkt.dport, pkt.sport, flags="RA", ack=pkt.seq + 1)
        code = {"icmp-port-unreachable": 3, "icmp-host-unreachable": 1, "icmp-net-unreachable": 0,
                "icmp-admin-prohibited": 13, "icmp-host-prohibited": 10, "icmp-net-prohibited": 9,
                "icmp-proto-unreachable": 2}.get(how, 3)
        # the original packet as received (conntrack may have rewritten it: quote the current bytes)
        return Packet.icmp_error(int2ip(src), pkt, code=code)


# net.ipv4.tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s, connect() gives up at 127 s
# (Documentation/networking/ip-sysctl.rst)
TCP_SYN_TIMEOUT = 127
