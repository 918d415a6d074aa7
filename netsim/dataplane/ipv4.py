"""A host's IPv4 stack between the netfilter hooks: the routing decisions.

As net/ipv4 takes them: a locally generated packet is routed, then OUTPUT, a re-route when NAT
changed the destination, POSTROUTING (ip_local_out / ip_output); a received one goes through
PREROUTING, then the input route lookup sends it to INPUT (ip_local_deliver) or FORWARD
(ip_forward: TTL) and POSTROUTING. A frame bridged between two cni0 ports runs the IPv4 hooks
without a routing decision (br_netfilter) unless DNAT changed its destination.
"""
from __future__ import annotations

from typing import Optional

from netsim.dataplane.conntrack import Conntrack, ConntrackEntry
from netsim.dataplane.end import End
from netsim.dataplane.hooks import STOLEN, HookTable
from netsim.dataplane.hopmemo import (BRIDGED, FORWARD, LOCAL, OP_BRIDGED, OP_CHAIN, OP_CONFIRM, OP_LOCAL, OP_NAT,
                                      OP_ROUTE, HopRecording)
from netsim.dataplane.routing import LOOPBACK_NET, Route
from netsim.dataplane.topology import Host, Interface
from netsim.dataplane.trace import Hop, PacketTrace, Step
from netsim.skb.packet import Packet


class IPv4Stack:
    """Output, input, forwarding and local delivery on a node, with the hook runs between them.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (netfilter, conntrack, ipvs, _routed) and call each other through
    ``self``, which keeps the per-packet path free of extra indirection."""

    def _output(self, host: Host, pkt: Packet, pt: PacketTrace, hop: Hop):
        """A locally generated packet leaves ``host``."""
        is_node = host.kind == "node"
        hooks = self.hooks(host.name) if is_node else None     # (a mode's local addresses are routed as LOCAL)
        routes = host.routes
        dst = pkt._dst
        route = routes.lookup(dst)
        local = dst in routes.local or (dst & 0xFF000000) == LOOPBACK_NET      # RoutingTable.is_local
        if route is None and not local:
            hop.add("DROPPED", f"no route to {pkt.dst_ip} (ENETUNREACH)")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        if hooks is not None:
            ct = self.conntrack_for(host.name)
            pkt.ct, pkt.ct_reply, pkt.ctstate, pkt.ipvs_property = None, False, "INVALID", False
            stop, e = self._hook(host, hooks.output, "OUTPUT", ct, None, pkt, pt, hop, True)
            if stop is not None:
                return stop
            # re-routed after NAT (or IPVS) changed the destination (ip_route_me_harder)
            route = host.routes.lookup(pkt.dst)
            local = host.routes.is_local(pkt.dst)
            if route is None and not local:
                hop.add("DROPPED", f"no route to {pkt.dst_ip} after NAT")
                return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
            stop, e = self._hook(host, hooks.output_routed, "OUTPUT", ct, e, pkt, pt, hop, True)
            if stop is not None:
                return stop
            if local:
                hop.add("ROUTED", f"{pkt.dst_ip} is local: loopback to INPUT")
                r = self._postrouting(host, hooks, ct, e, pkt, pt, hop, "lo", True)
                if r is not None:
                    return r
                return self._local_in(host, "lo", pkt, pt, hop, ct, e, hooks)
            hop.steps.append(self._routed_step(route))
            r = self._postrouting(host, hooks, ct, e, pkt, pt, hop, route.dev, True)
            if r is not None:
                return r
            return self._transmit(host, route, pkt, pt, hop)
        if local:
            return self._deliver(host, "lo", pkt, hop)
        hit = self._routed.get(id(route))
        hop.steps.append(hit[1] if hit is not None else self._routed_step(route))
        return self._transmit(host, route, pkt, pt, hop)

    def _routed_step(self, route: Route) -> Step:
        """ROUTED <route>: the same text for every packet that takes the route, so one shared step."""
        hit = self._routed.get(id(route))
        if hit is None:
            hit = self._routed[id(route)] = (route, Step("ROUTED", str(route)))
        return hit[1]

    def _node_in(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to):
        name = host.name
        hooks = self._hooktab.get(name)
        if hooks is None:
            hooks = self.hooks(name)    # (a mode's local addresses must be LOCAL before routing)
        ct = self.conntrack.get(name)
        if ct is None:
            ct = self.conntrack_for(name)
        pkt.ct, pkt.ct_reply, pkt.ctstate, pkt.ipvs_property = None, False, "INVALID", False
        if pt.pcap is not None or not self.hop_memo:
            return self._node_walk(host, iface, pkt, pt, hop, bridged_to, hooks, ct)
        # the whole-hop memo (netsim.dataplane.hopmemo): replay a remembered hop, or record this one
        peek = ct.peek(pkt, self.cluster.clock.now)          # None: the hop is walked live, not memoised
        if peek is None:
            return self._node_walk(host, iface, pkt, pt, hop, bridged_to, hooks, ct)
        what, nd, np, hit = peek
        found = self._hop_memo.lookup(host, iface, pkt, what, nd, np, hit, bridged_to)
        plan = found[3]
        if plan is not None:
            return self._node_replay(plan, host, iface, pkt, pt, hop, ct, found[4])
        outer = self._rec
        rec = self._rec = HopRecording()
        try:
            out = self._node_walk(host, iface, pkt, pt, hop, bridged_to, hooks, ct)
        finally:
            self._rec = outer
        self._hop_memo.store(found, rec)
        return out

    def _node_replay(self, plan: tuple, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop,
                     ct: Conntrack, found: Optional[tuple], e: Optional[ConntrackEntry] = None):
        """A remembered hop (netsim.dataplane.hopmemo): the pure functions' results appended as they
        were recorded; conntrack, NAT bindings, confirmation, the TTL, transmission and delivery run
        live, as :meth:`_node_walk` runs them. ``found``: the conntrack entry the key was made with
        (nothing before conntrack in a remembered hop changes the table). A remembered tail (what
        follows a PREROUTING walked live, :meth:`_node_tail`) starts with that PREROUTING's entry ``e``."""
        steps = hop.steps
        for op in plan[1]:
            kind = op[0]
            if kind == OP_CHAIN:
                _k, hits, n, mark = op
                if hits:
                    steps += hits
                pt.rules += n
                self.stats["rules_evaluated"] += n
                pkt.mark = mark
            elif kind == OP_NAT:
                _k, manip, looked = op
                if looked is not None:
                    for hits, n, mark, bind in looked:
                        if hits:
                            steps += hits
                        pt.rules += n
                        self.stats["rules_evaluated"] += n
                        pkt.mark = mark
                        if bind is not None:
                            self._bind(host, ct, e, bind, pkt, hop, pkt.oif if manip == "src" else None)
                self._nat_apply(ct, e, manip, pkt, steps)
            elif kind == OP_ROUTE:
                _k, route, hairpin = op
                if hairpin:
                    hop.add("ROUTED", "%s%s", None, (route, "  (re-bridged on cni0: br_netfilter)"))
                else:
                    pkt.decrement_ttl()
                    hit = self._routed.get(id(route))
                    steps.append(hit[1] if hit is not None else self._routed_step(route))
                pkt.oif = route.dev
            elif kind == OP_LOCAL:
                steps.append(Step("ROUTED", op[1]))
            elif kind == OP_BRIDGED:
                self._bridged(hop, pkt, op[1])
                pkt.oif = "cni0"                       # as _forward sets it for a bridged frame
            elif kind == OP_CONFIRM:
                end = self._confirm(host, ct, e, op[1], pkt, hop, self.cluster.clock.now, False)
                if end is not None:
                    return end
            elif found is not None:
                # the live entry the key was made with: neither a full table nor INVALID (what _ct_in adds)
                e = self._conntrack_in(host, ct, pkt, hop, found)
            else:
                stop, e = self._ct_in(host, ct, pkt, hop, False, found)
                if stop is not None:
                    return stop
        if plan[0] == LOCAL:
            return self._deliver(host, iface.name, pkt, hop)
        if plan[0] == BRIDGED:
            return self._to_port(host, plan[2], pkt, pt, hop)
        return self._transmit(host, plan[2], pkt, pt, hop)

    def _node_walk(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to,
                   hooks: HookTable, ct: Conntrack):
        """A received packet on a node, walked live: PREROUTING, the routing decision, then INPUT or
        FORWARD and POSTROUTING (or bridged on cni0)."""
        rec = self._rec
        stop, e = self._hook(host, hooks.prerouting, "PREROUTING", ct, None, pkt, pt, hop)
        if stop is not None:
            return stop
        if rec is not None and self._rec is None:
            # PREROUTING drew or kept state, so the hop is not kept whole; what follows it may be
            return self._node_tail(host, iface, pkt, pt, hop, bridged_to, hooks, ct, e)
        return self._node_route(host, iface, pkt, pt, hop, bridged_to, hooks, ct, e)

    def _node_tail(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to,
                   hooks: HookTable, ct: Conntrack, e: Optional[ConntrackEntry]):
        """What follows a PREROUTING walked live (a nat walk that drew at a statistic rule, say):
        replayed when remembered under the state PREROUTING left (HopMemo.lookup_tail), else walked
        live and recorded."""
        found = self._hop_memo.lookup_tail(host, iface, pkt, e, bridged_to)
        plan = found[3]
        if plan is not None:
            return self._node_replay(plan, host, iface, pkt, pt, hop, ct, None, e)
        rec = self._rec = HopRecording(after_prerouting=True)
        try:
            out = self._node_route(host, iface, pkt, pt, hop, bridged_to, hooks, ct, e)
        finally:
            self._rec = None
        self._hop_memo.store(found, rec)
        return out

    def _node_route(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to,
                    hooks: HookTable, ct: Conntrack, e: Optional[ConntrackEntry]):
        """After PREROUTING: the routing decision on the destination it left, then INPUT or FORWARD
        and POSTROUTING (or bridged on cni0)."""
        rec = self._rec
        routes = host.routes
        dst = pkt._dst
        local = dst in routes.local or (dst & 0xFF000000) == LOOPBACK_NET      # RoutingTable.is_local
        # br_netfilter: a frame bridged between two ports of cni0 skips the routing decision unless
        # DNAT changed its destination (br_nf_pre_routing_finish re-routes then).
        if bridged_to is not None and not local and pkt.dst == bridged_to.addr:
            if rec is not None:
                rec.tail = (BRIDGED, bridged_to)
                rec.ops.append((OP_BRIDGED, bridged_to))
            self._bridged(hop, pkt, bridged_to)
            return self._forward(host, hooks, ct, e, pkt, pt, hop, None, bridged_to)
        if local:
            detail = f"{pkt.dst_ip} is local -> INPUT"
            hop.add("ROUTED", detail)
            if rec is not None:
                rec.tail = (LOCAL,)
                rec.ops.append((OP_LOCAL, detail))
            return self._local_in(host, iface.name, pkt, pt, hop, ct, e, hooks)
        route = routes.lookup(dst)
        if route is None:
            hop.add("DROPPED", f"no route to {pkt.dst_ip}")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        hairpin = route.dev == "cni0" and iface.name == "cni0"
        if not hairpin:
            if pkt.ttl <= 1:
                hop.add("DROPPED", "TTL exceeded")
                return End("TTL_EXCEEDED", host)
            pkt.decrement_ttl()
        if rec is not None:
            rec.tail = (FORWARD, route)
            rec.ops.append((OP_ROUTE, route, hairpin))
        if hairpin:
            hop.add("ROUTED", "%s%s", None, (route, "  (re-bridged on cni0: br_netfilter)"))
        else:
            hit = self._routed.get(id(route))
            hop.steps.append(hit[1] if hit is not None else self._routed_step(route))
        return self._forward(host, hooks, ct, e, pkt, pt, hop, route, None)

    @staticmethod
    def _bridged(hop: Hop, pkt: Packet, port: Interface) -> None:
        """br_netfilter: a frame between two cni0 ports goes FORWARD and POSTROUTING out by ``port``
        without a routing decision (its TTL untouched)."""
        hop.add("BRIDGED", f"cni0: {pkt.physdev_in} -> {port.bridge_port} (br_netfilter runs the "
                "IPv4 hooks on bridged frames)")
        pkt.physdev_out = port.bridge_port

    def _forward(self, host: Host, hooks: HookTable, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                 pt: PacketTrace, hop: Hop, route: Optional[Route], bridged_to: Optional[Interface]):
        pkt.oif = route.dev if route is not None else "cni0"
        stop, e = self._hook(host, hooks.forward, "FORWARD", ct, e, pkt, pt, hop)
        if stop is not None:
            return stop
        r = self._postrouting(host, hooks, ct, e, pkt, pt, hop, pkt.oif)
        if r is not None:
            return r
        if bridged_to is not None:
            return self._to_port(host, bridged_to, pkt, pt, hop)
        assert route is not None
        return self._transmit(host, route, pkt, pt, hop)

    def _local_in(self, host: Host, iif: str, pkt: Packet, pt: PacketTrace, hop: Hop, ct: Conntrack,
                  e: Optional[ConntrackEntry], hooks: HookTable):
        stop, e = self._hook(host, hooks.input, "INPUT", ct, e, pkt, pt, hop)
        if stop is None:
            return self._deliver(host, iif, pkt, hop)
        if stop is not STOLEN:
            return stop
        if self._rec is not None:
            self._rec.ok = False
        # IPVS took the packet (ip_vs_in_hook at LOCAL_IN): ip_vs_nat_xmit routes it to the real
        # server and sends it through LOCAL_OUT's filter and POSTROUTING
        route = host.routes.lookup(pkt.dst)
        if route is None:
            hop.add("DROPPED", f"IPVS: no route to real server {pkt.dst_ip}")
            return End("NO_ROUTE", host)
        hop.add("ROUTED", f"{route}  (ip_vs_nat_xmit)")
        if host.routes.is_local(pkt.dst):
            if e is not None and not ct.confirm(e, self.now):
                return self._insert_failed(host, hop, e)
            return self._deliver(host, iif, pkt, hop)
        pkt.oif = route.dev
        stop, e = self._hook(host, hooks.output_routed, "OUTPUT", ct, e, pkt, pt, hop)
        if stop is not None:
            return stop
        r = self._postrouting(host, hooks, ct, e, pkt, pt, hop, route.dev)
        if r is not None:
            return r
        return self._transmit(host, route, pkt, pt, hop)

    def _postrouting(self, host: Host, hooks: HookTable, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                     pt: PacketTrace, hop: Hop, oif: str, sender: bool = False):
        pkt.oif = oif
        return self._hook(host, hooks.postrouting, "POSTROUTING", ct, e, pkt, pt, hop, sender)[0]
