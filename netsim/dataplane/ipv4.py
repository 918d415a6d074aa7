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
        route = host.routes.lookup(pkt.dst)
        if route is None and not host.routes.is_local(pkt.dst):
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
        hooks = self._hooktab.get(name)
        if hooks is None:
            hooks = self.hooks(name)    # (a mode's local addresses must be LOCAL before routing)
        ct = self.conntrack.get(name)
        if ct is None:
            ct = self.conntrack_for(name)
        pkt.ct, pkt.ct_reply, pkt.ctstate, pkt.ipvs_property = None, False, "INVALID", False
        stop, e = self._hook(host, hooks.prerouting, "PREROUTING", ct, None, pkt, pt, hop)
        if stop is not None:
            return stop
        routes = host.routes
        dst = pkt._dst
        local = dst in routes.local or (dst & 0xFF000000) == LOOPBACK_NET      # RoutingTable.is_local
        # br_netfilter: a frame bridged between two ports of cni0 skips the routing decision unless
        # DNAT changed its destination (br_nf_pre_routing_finish re-routes then).
        if bridged_to is not None and not local and pkt.dst == bridged_to.addr:
            hop.add("BRIDGED", f"cni0: {pkt.physdev_in} -> {bridged_to.bridge_port} (br_netfilter runs the "
                    "IPv4 hooks on bridged frames)")
            pkt.physdev_out = bridged_to.bridge_port
            return self._forward(host, hooks, ct, e, pkt, pt, hop, None, bridged_to)
        if local:
            hop.add("ROUTED", f"{pkt.dst_ip} is local -> INPUT")
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
        if hairpin:
            hop.add("ROUTED", "%s%s", None, (route, "  (re-bridged on cni0: br_netfilter)"))
        else:
            hit = self._routed.get(id(route))
            hop.steps.append(hit[1] if hit is not None else self._routed_step(route))
        return self._forward(host, hooks, ct, e, pkt, pt, hop, route, None)

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
