"""The external load balancer host: picks a Ready node per flow and passes packets through.

It stands for a cloud L4 load balancer in passthrough mode (the destination stays the
LoadBalancer IP) and for the network admin's static route of an externalIP to one node.
"""
from __future__ import annotations

import heapq

from netsim.dataplane.end import End
from netsim.dataplane.topology import Host
from netsim.dataplane.trace import Hop, PacketTrace
from netsim.skb.packet import IPPROTO_TCP, IPPROTO_UDP, Packet

# The load balancer forgets a flow after this long without a packet, as a cloud L4 load balancer
# does (AWS Network Load Balancer: TCP 350 s, UDP 120 s, "Connection idle timeout",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/network/network-load-balancers.html).
LB_IDLE_TIMEOUT = {IPPROTO_TCP: 350.0, IPPROTO_UDP: 120.0}
LB_IDLE_TIMEOUT_OTHER = 120.0


class LoadBalancerHost:
    """The load balancer: node choice per flow, health checks, idle flow expiry.

    A part of :class:`netsim.dataplane.walker.Walker` (one class, one module per kernel seam): its
    methods use the walker's state (rng, lb_flows, _lb_expiry, topology, cluster) and call each other
    through ``self``, which keeps the per-packet path free of extra indirection."""

    def _balance(self, lb: Host, pkt: Packet, pt: PacketTrace, hop: Hop):
        """The external load balancer: pick a node for a new flow, then pass packets through unchanged.

        Candidates are nodes that are Ready. For a Service with externalTrafficPolicy Local only nodes
        with a ready endpoint of the Service pass the LB health check (healthCheckNodePort), as
        cloud LBs do. The choice is a seeded draw, remembered per flow until the flow has been idle
        for LB_IDLE_TIMEOUT (then the next packet is a new flow).
        """
        key = pkt.tuple()
        now = self.now
        self._lb_expire(now)
        hit = self.lb_flows.get(key)
        topo = self.topology
        idle = LB_IDLE_TIMEOUT.get(pkt.proto, LB_IDLE_TIMEOUT_OTHER)
        if hit is None or hit[1] <= now:
            cands, why = self._lb_candidates(pkt)
            if not cands:
                hop.add("DROPPED", f"load balancer: no healthy node for {pkt.dst_ip}:{pkt.dport} ({why})")
                return End("DROPPED", lb, f"load balancer has no healthy backend node ({why})")
            chosen = self.rng.choice(cands)
            heapq.heappush(self._lb_expiry, (now + idle, key))
            hop.add("BALANCED", f"{pkt.dst_ip}:{pkt.dport} -> node {chosen} (seeded choice among "
                    f"{', '.join(cands)}; {why})")
        else:
            chosen = hit[0]
            hop.add("BALANCED", f"existing flow -> node {chosen}")
        self.lb_flows[key] = (chosen, now + idle)
        node = topo.hosts[chosen]
        eth0 = node.interfaces["eth0"]
        pkt.decrement_ttl()
        hop.add("TRANSMITTED", f"eth0 -> {chosen} ({eth0.ip}), destination unchanged (passthrough)",
                {"interface": "eth0"})
        self._capture(pt, lb, "eth0", pkt, "passed through to a node")
        return (node, eth0, pkt, None)

    def _lb_expire(self, now: float) -> None:
        """Forget flows idle past their timeout (one heap item per flow, re-pushed when refreshed)."""
        heap = self._lb_expiry
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            hit = self.lb_flows.get(key)
            if hit is None:
                continue
            if hit[1] <= now:
                del self.lb_flows[key]
            else:
                heapq.heappush(heap, (hit[1], key))

    def _lb_candidates(self, pkt: Packet) -> tuple[list[str], str]:
        static = self.topology.external_ip_nodes.get(pkt.dst)
        if pkt.dst in self.topology.external_ips:
            # externalIPs: the admin's static route to one node (netsim.dataplane.topology.external_ip_node)
            return ([static] if static else []), "externalIP: the network admin's static route to a node"
        nodes = [n for n in self.cluster.nodes() if n.ready]
        svc = None
        for s in self.cluster.services():
            if pkt.dst_ip in s.load_balancer_ips and any(p.port == pkt.dport for p in s.ports):
                svc = s
                break
        if svc is not None and svc.external_traffic_policy == "Local":
            local = set()
            for sl in self.cluster.endpoint_slices(svc.namespace, svc.name):
                for ep in sl.endpoints:
                    if ep.ready and ep.node_name:
                        local.add(ep.node_name)
            good = [n.name for n in nodes if n.name in local]
            return sorted(good), "externalTrafficPolicy Local: health check passes only on nodes with a ready endpoint"
        return sorted(n.name for n in nodes), "every Ready node passes the health check"
