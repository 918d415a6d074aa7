"""The hook runner: what runs at a netfilter hook, in the kernel's priority order, and its verdicts.

raw (-300), conntrack (-200: nf_conntrack_in classifies the packet, a new entry stays unconfirmed),
mangle (-150), nat (first packet of a connection only: the binding it makes is applied by conntrack
to every later packet), filter (0), IPVS's decisions, the conntrack confirm at the end of the
hooks (include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities); a DROP or REJECT ends the walk,
and a local sender learns about it as the socket layer would.
"""
from __future__ import annotations

from typing import Optional

from netsim.dataplane.conntrack import TABLE_FULL, Conntrack, ConntrackEntry
from netsim.dataplane.end import End
from netsim.dataplane.netfilter import HookResult, Netfilter
from netsim.dataplane.topology import Host
from netsim.dataplane.trace import Hop, PacketSnapshot, PacketTrace, Step, TranslatedStep
from netsim.skb.packet import IPPROTO_TCP, Packet, int2ip


class HookRunner:
    """The netfilter hooks of one host: chains run, conntrack, NAT bindings, verdicts.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (cluster clock, rng, stats) and call each other through ``self``,
    which keeps the per-packet path free of extra indirection."""

    def _insert_failed(self, host: Host, hop: Hop, e: ConntrackEntry) -> End:
        hop.add("DROPPED", "conntrack insert failed: another connection already holds tuple %s "
                "(__nf_conntrack_confirm drops the packet; conntrack -S insert_failed)", None,
                (e.snapshot(self.now),))
        return End("DROPPED", host, "conntrack insert_failed (tuple clash)")

    def _raw_conntrack_mangle(self, host: Host, nf: Netfilter, ct: Conntrack, pkt: Packet, pt: PacketTrace,
                              hop: Hop, hook: str) -> tuple[Optional[End], Optional[ConntrackEntry]]:
        """The hook's first three stages in priority order (netfilter_ipv4.h: NF_IP_PRI_RAW -300,
        NF_IP_PRI_CONNTRACK -200, NF_IP_PRI_MANGLE -150). Returns (how the walk ended, or None; the
        packet's conntrack entry, None when it is untracked or invalid)."""
        pkt.ct, pkt.ct_reply, pkt.ctstate = None, False, None
        if nf.has_rules("raw", hook):
            # before conntrack the packet has no entry: --ctstate sees INVALID (xt_conntrack, no ct)
            pkt.ctstate = "INVALID"
            res = self._run(host, nf, hop, pt, "raw", hook, pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, hook, "raw"), None
            if pkt.ctstate != "UNTRACKED":
                pkt.ctstate = None
        if pkt.ctstate == "UNTRACKED":
            hop.add("CONNTRACK", "ctstate UNTRACKED (raw CT --notrack): no conntrack entry, so no NAT either")
            e = None
        else:
            e = self._conntrack_in(host, ct, pkt, hop)
            if pkt.ctstate == TABLE_FULL:
                return End("DROPPED", host, f"{host.name}: nf_conntrack table full"), None
            if pkt.ctstate == "INVALID":
                e = None
        if nf.has_rules("mangle", hook):
            res = self._run(host, nf, hop, pt, "mangle", hook, pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, hook, "mangle"), e
        return None, e

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

    def _conntrack_in(self, host: Host, ct: Conntrack, pkt: Packet, hop: Hop) -> Optional[ConntrackEntry]:
        now = self.cluster.clock.now
        e, is_reply, state = ct.classify(pkt, now)
        pkt.ct, pkt.ct_reply, pkt.ctstate = e, is_reply, state
        if state == TABLE_FULL:
            hop.add("DROPPED", f"nf_conntrack: table full, dropping packet (nf_conntrack_max {ct.max_entries}, "
                    "no entry early_drop could evict)")
            return None
        if e is None:
            hop.add("CONNTRACK", "ctstate %s: no connection matches %s", None, (state, PacketSnapshot(bytes(pkt.buf))))
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
                                  (PacketSnapshot(bytes(pkt.buf)),)))
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

    def _translate(self, change, which: str, hop: Hop, label: str) -> None:
        if change is not None:
            hop.steps.append(TranslatedStep(label, which, change))

    def _run(self, host: Host, nf: Netfilter, hop: Hop, pt: PacketTrace, table: str, chain: str,
             pkt: Packet) -> HookResult:
        if not nf.has_rules(table, chain):
            return _NO_RULES
        # RULE steps are appended as the rules match: built once per rule, shared (read-only)
        res = nf.run(table, chain, pkt, self.cluster.clock.now, hop.steps)
        n = res.rules_evaluated
        pt.rules += n
        self.stats["rules_evaluated"] += n
        return res

    def _refused(self, host: Host, hop: Hop, res: HookResult, pkt: Packet, chain: str, table: str = "filter") -> End:
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

    def _ipvs_step(self, host: Host, hop: Hop, dec, pkt: Packet, ct: Conntrack, e: Optional[ConntrackEntry]):
        if dec is None:
            return None
        before = f"{dec.before[0]}:{dec.before[1]}" if dec.before[0] else ""
        after = f"{dec.after[0]}:{dec.after[1]}" if dec.after[0] else ""
        extra = {"before": before, "after": after} if before else None
        hop.add("IPVS", f"{dec.hook}: {dec.action} {before + ' -> ' + after if before else ''} ({dec.reason})".replace("  ", " "),
                extra)
        if dec.action == "dnat" and e is not None and not pkt.ct_reply and not e.confirmed:
            # net.ipv4.vs.conntrack=1: ip_vs_update_conntrack alters the reply tuple of the still
            # unconfirmed entry (no NAT binding: IPVS itself rewrites the replies)
            ct.bind_dnat(e, pkt.dst, pkt.dport)
            e.dnat = False
        if dec.action == "reject":
            gen = [(host, dec.icmp)] if getattr(dec, "icmp", None) is not None else []
            return End("REJECTED", host, dec.reason, generated=gen)
        if dec.action == "drop":
            return End("DROPPED", host, dec.reason)
        return None


# net.ipv4.tcp_syn_retries = 6: SYNs at 0, 1, 3, 7, 15, 31, 63 s, connect() gives up at 127 s
# (Documentation/networking/ip-sysctl.rst)
TCP_SYN_TIMEOUT = 127
_NO_RULES = HookResult()          # an empty chain: ACCEPT, nothing matched (shared, never mutated)
