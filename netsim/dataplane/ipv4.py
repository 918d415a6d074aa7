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
from netsim.dataplane.netfilter import Netfilter
from netsim.dataplane.routing import LOOPBACK_NET, Route
from netsim.dataplane.topology import Host, Interface
from netsim.dataplane.trace import Hop, PacketTrace, Step, TranslatedStep
from netsim.skb.packet import Packet


class IPv4Stack:
    """Output, input, forwarding and local delivery on a node, with the hook runs between them.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (netfilter, conntrack, ipvs, _routed) and call each other through
    ``self``, which keeps the per-packet path free of extra indirection."""

    def _output(self, host: Host, pkt: Packet, pt: PacketTrace, hop: Hop):
        """A locally generated packet leaves ``host``."""
        is_node = host.kind == "node"
        ipvs = self.ipvs(host.name) if is_node else None     # IPVS mode: kube-ipvs0's VIPs are local
        route = host.routes.lookup(pkt.dst)
        if route is None and not host.routes.is_local(pkt.dst):
            hop.add("DROPPED", f"no route to {pkt.dst_ip} (ENETUNREACH)")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        if is_node:
            nf = self.netfilter(host.name)
            ct = self.conntrack_for(host.name)
            stop, e = self._raw_conntrack_mangle(host, nf, ct, pkt, pt, hop, "OUTPUT")
            if stop is not None:
                return self._sender_sees(stop, pkt)
            if e is not None:
                if not e.confirmed and pkt.ctstate == "NEW":
                    res = self._run(host, nf, hop, pt, "nat", "OUTPUT", pkt)
                    if res.nat is not None and res.nat.kind == "DNAT":
                        self._bind(host, ct, e, res, pkt, hop)
                self._translate(ct.nat_dst(pkt, e, pkt.ct_reply), "dst", hop,
                                "DNAT" if not pkt.ct_reply else "un-SNAT (conntrack)")
            if ipvs is not None:
                dec = ipvs.reply(pkt, self.now, "LOCAL_OUT") or ipvs.local_out(pkt, self.now)
                stop = self._ipvs_step(host, hop, dec, pkt, ct, e)
                if stop is not None:
                    return stop
            route = host.routes.lookup(pkt.dst)
            local = host.routes.is_local(pkt.dst)
            if route is None and not local:
                hop.add("DROPPED", f"no route to {pkt.dst_ip} after NAT")
                return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
            res = self._run(host, nf, hop, pt, "filter", "OUTPUT", pkt)
            if res.verdict != "ACCEPT":
                return self._sender_sees(self._refused(host, hop, res, pkt, "OUTPUT"), pkt)
            if local:
                hop.add("ROUTED", f"{pkt.dst_ip} is local: loopback to INPUT")
                r = self._postrouting(host, nf, ct, e, pkt, pt, hop, "lo")
                if r is not None:
                    return self._sender_sees(r, pkt)
                return self._local_in(host, "lo", pkt, pt, hop, ct, e, nf)
            hop.steps.append(self._routed_step(route))
            r = self._postrouting(host, nf, ct, e, pkt, pt, hop, route.dev)
            if r is not None:
                return self._sender_sees(r, pkt)
            return self._transmit(host, route, pkt, pt, hop)
        if host.routes.is_local(pkt.dst):
            return self._deliver(host, "lo", pkt, hop)
        hop.steps.append(self._routed_step(route))
        return self._transmit(host, route, pkt, pt, hop)

    def _routed_step(self, route: Route) -> Step:
        """ROUTED <route>: the same text for every packet that takes the route, so one shared step."""
        hit = self._routed.get(id(route))
        if hit is None:
            hit = self._routed[id(route)] = (route, Step("ROUTED", str(route)))
        return hit[1]

    def _node_in(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, hop: Hop, bridged_to):
        name = host.name
        nf = self._nf.get(name)
        if nf is None:
            nf = self.netfilter(name)
        if self._has_ipvs:
            self.ipvs(name)             # IPVS mode: kube-ipvs0's VIPs must be local before routing
        ct = self.conntrack.get(name)
        if ct is None:
            ct = self.conntrack_for(name)
        stop, e = self._raw_conntrack_mangle(host, nf, ct, pkt, pt, hop, "PREROUTING")
        if stop is not None:
            return stop
        if e is not None:
            is_reply = pkt.ct_reply
            if not e.confirmed and pkt.ctstate == "NEW":
                res = self._run(host, nf, hop, pt, "nat", "PREROUTING", pkt)
                if res.nat is not None and res.nat.kind == "DNAT":
                    self._bind(host, ct, e, res, pkt, hop)
            if e.snat if is_reply else e.dnat:          # Conntrack.nat_dst applies only a binding
                change = ct.nat_dst(pkt, e, is_reply)
                if change is not None:
                    hop.steps.append(TranslatedStep("DNAT" if not is_reply else "un-SNAT (conntrack)",
                                                    "dst", change))
        routes = host.routes
        dst = pkt._dst
        local = dst in routes.local or (dst & 0xFF000000) == LOOPBACK_NET      # RoutingTable.is_local
        # br_netfilter: a frame bridged between two ports of cni0 skips the routing decision unless
        # DNAT changed its destination (br_nf_pre_routing_finish re-routes then).
        if bridged_to is not None and not local and pkt.dst == bridged_to.addr:
            hop.add("BRIDGED", f"cni0: {pkt.physdev_in} -> {bridged_to.bridge_port} (br_netfilter runs the "
                    "IPv4 hooks on bridged frames)")
            pkt.physdev_out = bridged_to.bridge_port
            return self._forward(host, nf, ct, e, pkt, pt, hop, None, bridged_to)
        if local:
            hop.add("ROUTED", f"{pkt.dst_ip} is local -> INPUT")
            return self._local_in(host, iface.name, pkt, pt, hop, ct, e, nf)
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
        if hairpin:
            hop.add("ROUTED", "%s%s", None, (route, "  (re-bridged on cni0: br_netfilter)"))
        else:
            hit = self._routed.get(id(route))
            hop.steps.append(hit[1] if hit is not None else self._routed_step(route))
        return self._forward(host, nf, ct, e, pkt, pt, hop, route, None)

    def _forward(self, host: Host, nf: Netfilter, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                 pt: PacketTrace, hop: Hop, route: Optional[Route], bridged_to: Optional[Interface]):
        pkt.oif = route.dev if route is not None else "cni0"
        if nf.has_rules("mangle", "FORWARD"):
            res = self._run(host, nf, hop, pt, "mangle", "FORWARD", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "FORWARD", "mangle")
        res = self._run(host, nf, hop, pt, "filter", "FORWARD", pkt)
        if res.verdict != "ACCEPT":
            return self._refused(host, hop, res, pkt, "FORWARD")
        if self._has_ipvs:
            ipvs = self.ipvs(host.name)
            if ipvs is not None:
                dec = ipvs.reply(pkt, self.now, "FORWARD")
                if dec is not None:
                    self._ipvs_step(host, hop, dec, pkt, ct, e)
        r = self._postrouting(host, nf, ct, e, pkt, pt, hop, pkt.oif)
        if r is not None:
            return r
        if bridged_to is not None:
            return self._to_port(host, bridged_to, pkt, pt, hop)
        assert route is not None
        return self._transmit(host, route, pkt, pt, hop)

    def _local_in(self, host: Host, iif: str, pkt: Packet, pt: PacketTrace, hop: Hop, ct: Conntrack,
                  e: Optional[ConntrackEntry], nf: Netfilter):
        if nf.has_rules("mangle", "INPUT"):
            res = self._run(host, nf, hop, pt, "mangle", "INPUT", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "INPUT", "mangle")
        res = self._run(host, nf, hop, pt, "filter", "INPUT", pkt)
        if res.verdict != "ACCEPT":
            return self._refused(host, hop, res, pkt, "INPUT")
        ipvs = self.ipvs(host.name)
        if ipvs is not None:
            # ip_vs_reply4 / ip_vs_remote_request4 run at LOCAL_IN priority 98, before nat INPUT (100)
            # and the conntrack confirm (INT_MAX), so IPVS can still alter the unconfirmed entry.
            dec = ipvs.reply(pkt, self.now, "LOCAL_IN") or ipvs.local_in(pkt, self.now)
            stop = self._ipvs_step(host, hop, dec, pkt, ct, e)
            if stop is not None:
                return stop
            if dec is not None and dec.action == "dnat":
                # ip_vs_nat_xmit: routed to the real server, through LOCAL_OUT and POSTROUTING
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
                res = self._run(host, nf, hop, pt, "filter", "OUTPUT", pkt)
                if res.verdict != "ACCEPT":
                    return self._refused(host, hop, res, pkt, "OUTPUT")
                r = self._postrouting(host, nf, ct, e, pkt, pt, hop, route.dev)
                if r is not None:
                    return r
                return self._transmit(host, route, pkt, pt, hop)
        if e is not None:
            self._translate(ct.nat_src(pkt, e, pkt.ct_reply), "src", hop,
                            "SNAT" if not pkt.ct_reply else "un-DNAT (conntrack)")
            if not ct.confirm(e, self.now):
                return self._insert_failed(host, hop, e)
        return self._deliver(host, iif, pkt, hop)

    def _postrouting(self, host: Host, nf: Netfilter, ct: Conntrack, e: Optional[ConntrackEntry], pkt: Packet,
                     pt: PacketTrace, hop: Hop, oif: str):
        pkt.oif = oif
        if nf.has_rules("mangle", "POSTROUTING"):
            res = self._run(host, nf, hop, pt, "mangle", "POSTROUTING", pkt)
            if res.verdict != "ACCEPT":
                return self._refused(host, hop, res, pkt, "POSTROUTING", "mangle")
        if e is not None:
            if not e.confirmed and pkt.ctstate == "NEW":
                res = self._run(host, nf, hop, pt, "nat", "POSTROUTING", pkt)
                if res.nat is not None and res.nat.kind in ("SNAT", "MASQUERADE"):
                    self._bind(host, ct, e, res, pkt, hop, oif)
            is_reply = pkt.ct_reply
            if e.dnat if is_reply else e.snat:          # Conntrack.nat_src applies only a binding
                change = ct.nat_src(pkt, e, is_reply)
                if change is not None:
                    hop.steps.append(TranslatedStep("SNAT" if not is_reply else "un-DNAT (conntrack)", "src",
                                                    change))
            if not e.confirmed:
                now = self.cluster.clock.now
                if not ct.confirm(e, now):
                    return self._insert_failed(host, hop, e)
                snap = e.snapshot(now)
                hop.steps.append(Step("CONNTRACK", "confirmed: %s", {"conntrack": snap}, (snap,)))
        return None
