"""Devices and links: a packet arriving on an interface, leaving by one, bridged, or through VXLAN.

veth pairs between a pod and its node's cni0 bridge, the node network between eth0s, flannel's
VXLAN device (flannel.1: encapsulation in UDP 8472 to the remote VTEP its FDB names, and
decapsulation on arrival), ARP as "is there a neighbour with this address on the segment", and the
packet capture points (what tcpdump -i IFACE would see).
"""
from __future__ import annotations

import zlib

from netsim.dataplane.end import End
from netsim.dataplane.routing import LOOPBACK_NET, Route
from netsim.dataplane.servers import EPHEMERAL_PORTS
from netsim.dataplane.topology import FLANNEL_VNI, FLANNEL_VXLAN_PORT, Host, Interface
from netsim.dataplane.trace import Addr, Hop, PacketSnapshot, PacketTrace, Step
from netsim.skb.packet import _UDP_HDR, IPPROTO_UDP, Packet, _finish, _ip_sum, _pseudo_sum, int2ip


class DeviceLayer:
    """Receive on an interface, transmit on a route's device, VXLAN encap/decap, capture.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (topology, _links, _vxlan_prefix, _iface_extra) and call each other
    through ``self``, which keeps the per-packet path free of extra indirection."""

    def _receive(self, host: Host, iface: Interface, pkt: Packet, pt: PacketTrace, extra):
        """A packet arrives on ``iface`` of ``host``."""
        bridged_from = extra
        hops = pt.hops
        hop = Hop(len(hops) + 1, host.name, host.kind)
        hops.append(hop)
        ifname = iface.name
        extra = self._iface_extra.get(ifname)
        if extra is None:
            extra = self._iface_extra[ifname] = {"interface": ifname}     # shared, read-only
        port_in = pkt.physdev_in
        if port_in:
            hop.steps.append(Step("RECEIVED", "%s (bridge port %s): %s", extra, (ifname, port_in, PacketSnapshot(pkt.buf))))
        else:
            hop.steps.append(Step("RECEIVED", "%s: %s", extra, (ifname, PacketSnapshot(pkt.buf))))
        if pt.pcap is not None:
            self._capture(pt, host, ifname, pkt, "received")
        if not host.up:
            hop.add("DROPPED", f"{host.name} is down: the packet is lost (the client would time out)")
            return End("LOST", host, f"{host.name} is down")
        pkt.iif = ifname
        pkt.oif = None
        kind = host.kind
        if kind == "node":
            if ifname == "eth0" and pkt._proto == IPPROTO_UDP and pkt._dport == FLANNEL_VXLAN_PORT \
                    and (pkt._dst in host.routes.local or (pkt._dst & 0xFF000000) == LOOPBACK_NET) \
                    and "flannel.1" in host.interfaces:                      # (RoutingTable.is_local inlined)
                inner = self._decap(pkt)
                hop.steps.append(Step("DECAPSULATED", "vxlan vni %s from %s:%s -> inner %s arrives on flannel.1",
                                      _FLANNEL_EXTRA,
                                      (FLANNEL_VNI, Addr(pkt._src), pkt._sport, PacketSnapshot(inner.buf))))
                pkt = inner
                pkt.iif = "flannel.1"
                iface = host.interfaces["flannel.1"]
                if pt.pcap is not None:
                    self._capture(pt, host, "flannel.1", pkt, "decapsulated")
            return self._node_in(host, iface, pkt, pt, hop, bridged_from)
        if kind == "pod" and pkt._dst in host.routes.local:
            return self._deliver(host, ifname, pkt, hop)      # the common case of is_local below
        if host.kind == "loadbalancer" and (pkt.dst in self.topology.lb_ips or pkt.dst in self.topology.external_ips):
            return self._balance(host, pkt, pt, hop)
        if host.routes.is_local(pkt.dst):
            return self._deliver(host, iface.name, pkt, hop)
        if not host.forwarding:
            hop.add("DROPPED", f"{pkt.dst_ip} is not an address of {host.name} and it does not forward")
            return End("DROPPED", host, f"{host.name} is not {pkt.dst_ip} (no forwarding)")
        route = host.routes.lookup(pkt.dst)
        if route is None:
            hop.add("DROPPED", f"no route to {pkt.dst_ip}")
            return End("NO_ROUTE", host, f"{host.name}: no route to {pkt.dst_ip}")
        if pkt.ttl <= 1:
            hop.add("DROPPED", "TTL exceeded")
            return End("TTL_EXCEEDED", host)
        pkt.decrement_ttl()
        hop.steps.append(self._routed_step(route))
        return self._transmit(host, route, pkt, pt, hop)

    def _transmit(self, host: Host, route: Route, pkt: Packet, pt: PacketTrace, hop: Hop):
        dev = host.interfaces.get(route.dev)
        if dev is None:
            hop.add("DROPPED", f"route via missing device {route.dev}")
            return End("NO_ROUTE", host)
        nh = route.via if route.via is not None else pkt._dst
        pkt.oif = dev.name
        if dev.kind == "vxlan":
            remote = dev.fdb.get(nh)
            if remote is None:
                hop.add("DROPPED", f"flannel.1: no FDB entry for VTEP {int2ip(nh)}")
                return End("NEIGHBOR_UNREACHABLE", host)
            outer = self._encap(host, pkt, remote)
            hop.steps.append(Step("ENCAPSULATED", "flannel.1 vxlan vni %s: outer %s", _FLANNEL_EXTRA,
                                  (FLANNEL_VNI, PacketSnapshot(outer.buf))))
            if pt.pcap is not None:
                self._capture(pt, host, "flannel.1", pkt, "sent into the VXLAN tunnel")
            pkt = outer
            dev = host.interfaces["eth0"]
            nh = remote
        link = self._links.get((id(dev), nh))
        if link is None:
            seg = dev.segment
            peer = seg.neighbours.get(nh) if seg is not None else None
            if peer is None:
                hop.add("DROPPED", f"no neighbour answers ARP for {int2ip(nh)} on {dev.name}")
                return End("NEIGHBOR_UNREACHABLE", host, f"{host.name}: {int2ip(nh)} unreachable on {dev.name}")
            # TRANSMITTED names only the link: one shared step per (device, next hop) and topology
            link = self._links[(id(dev), nh)] = (peer, Step(
                "TRANSMITTED", f"{dev.name} -> {peer.host.name} ({peer.name}, {int2ip(nh)})",
                {"interface": dev.name}))
        peer = link[0]
        hop.steps.append(link[1])
        if pt.pcap is not None:
            self._capture(pt, host, dev.name, pkt, "transmitted")
        if host.kind == "node" and dev.kind == "bridge":
            # out through the pod's veth (bridge port)
            pkt.physdev_out = peer.bridge_port
            pkt.physdev_in = None
            return (peer.host, peer, pkt, None)
        if host.kind == "pod" and peer.host.kind == "pod":
            # pod -> pod on the same bridge: the node's cni0 bridges it (br_netfilter hooks run)
            node = self.topology.hosts[host.node_name]
            pkt.physdev_in = dev.bridge_port
            return (node, node.interfaces["cni0"], pkt, peer)
        if host.kind == "pod":
            pkt.physdev_in = dev.bridge_port
            return (peer.host, peer, pkt, None)
        pkt.physdev_in = None
        return (peer.host, peer, pkt, None)

    def _to_port(self, node: Host, port: Interface, pkt: Packet, pt: PacketTrace, hop: Hop):
        hop.add("TRANSMITTED", f"cni0 port {port.bridge_port} -> {port.host.name}", {"interface": "cni0"})
        if pt.pcap is not None:
            self._capture(pt, node, "cni0", pkt, "bridged")
        pkt.physdev_in = None
        return (port.host, port, pkt, None)

    def _encap(self, host: Host, pkt: Packet, remote: int) -> Packet:
        """flannel VXLAN: outer IP (TTL 64, DF clear) / UDP sport=flow hash, dport 8472 / VXLAN / Ethernet.

        The outer header is the one Packet.udp(src, remote, sport, 8472, payload, df=False) builds; the
        parts that do not depend on the inner packet (addresses, VXLAN header, inner Ethernet header and
        their checksum words) are kept per (host, remote VTEP), so per packet only the lengths, the
        source port and the checksums over them and the inner datagram are filled in."""
        key = (host.name, remote)
        tpl = self._vxlan_prefix.get(key)
        if tpl is None:
            fl = host.interfaces["flannel.1"]
            inner_eth = bytes.fromhex(("02" * 6) + fl.mac.replace(":", "")) + b"\x08\x00"
            vx = bytes([0x08, 0, 0, 0]) + FLANNEL_VNI.to_bytes(3, "big") + b"\x00"
            src = host.interfaces["eth0"].addr
            tpl = self._vxlan_prefix[key] = (vx + inner_eth, src, _ip_sum(src, remote, IPPROTO_UDP, 0, 64, 0, 0),
                                             _pseudo_sum(src, remote, IPPROTO_UDP, 0) + FLANNEL_VXLAN_PORT)
        prefix, src, ip_base, udp_base = tpl
        buf = pkt.buf
        l4 = (buf[0] & 15) * 4
        h = zlib.crc32(buf[l4:l4 + 4], zlib.crc32(buf[12:20]))   # addresses, then ports
        lo, hi = EPHEMERAL_PORTS
        sport = lo + h % (hi - lo + 1)          # udp_flow_src_port: a hash of the inner flow
        payload = prefix + buf
        ulen = 8 + len(payload)
        total = 20 + ulen
        v = int.from_bytes(payload, "big")
        if ulen & 1:
            v <<= 8                             # odd length: pad with a zero byte
        c = _finish(udp_base + ulen + ulen + sport + v) or 0xFFFF     # RFC 768: a computed 0 is sent as all ones
        # the outer header as iptunnel_xmit writes it: DF not set (vxlan's df unset), TTL 64, and the IP ID
        # from __ip_select_ident (a hashed, randomly advanced counter; here bits of the flow hash)
        ident = h >> 16
        out = bytearray(_UDP_HDR.pack(0x45, 0, total, ident, 0, 64, IPPROTO_UDP, _finish(ip_base + total + ident),
                                      src, remote, sport, FLANNEL_VXLAN_PORT, ulen, c))
        out += payload
        outer = Packet._built(out, IPPROTO_UDP, src, remote, 20, sport, FLANNEL_VXLAN_PORT)
        self._encapsulated = (outer, pkt)
        return outer

    def _decap(self, outer: Packet) -> Packet:
        """The inner packet of a VXLAN datagram, as it arrives on flannel.1: none of the sender's
        skb state (mark, devices, conntrack) crosses the tunnel. When ``outer`` is the datagram the
        last :meth:`_encap` made (its bytes untouched since: the link carries it straight to the
        receiving eth0), the inner Packet it was made from is taken, with the same bytes, instead of
        parsing them again."""
        last = self._encapsulated
        if last is not None and last[0] is outer:
            self._encapsulated = None
            inner = last[1]
            inner.iif = inner.oif = inner.ct = inner.ctstate = inner.physdev_in = inner.physdev_out = None
            inner.ct_reply = inner.ipvs_property = False
        else:
            inner = Packet(outer.buf[outer._l4 + 8 + 8 + 14:])     # UDP header, VXLAN header, inner Ethernet
        inner.mark = 0
        return inner

    def _capture(self, pt: PacketTrace, host: Host, iface: str, pkt: Packet, what: str) -> None:
        if pt.pcap is None:
            return
        note = f"{pt.direction} {host.name}/{iface} {what}: {pkt.summary()}"
        if what in ("transmitted", "bridged") and pt.hops:
            done = [s.detail for s in pt.hops[-1].steps if s.action in ("TRANSLATED", "IPVS", "BALANCED")]
            jumps = [s.extra["chain"] + " -> " + s.extra["rule"].rsplit(" -j ", 1)[-1]
                     for s in pt.hops[-1].steps if s.action == "RULE" and s.extra
                     and ("DNAT" in s.extra["rule"] or "MASQUERADE" in s.extra["rule"])]
            if jumps or done:
                note += " | " + "; ".join(jumps + done)
        pt.pcap.append((host.name, iface, bytes(pkt.buf), note))


_FLANNEL_EXTRA = {"interface": "flannel.1"}   # shared, read-only
