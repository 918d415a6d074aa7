"""The IPVS data path: scheduling, DNAT, reply un-NAT, connection states and counters,
persistence templates, graceful termination.

Kernel references: ip_vs_core.c (ip_vs_in_hook / ip_vs_out_hook / ip_vs_leave), ip_vs_conn.c,
ip_vs_proto_tcp.c (tcp_states[], tcp_timeouts[], tcp_state_active_table[]), ip_vs_proto_udp.c;
kube-proxy graceful_termination.go. Cluster: see test_ipvs_proxier.py (web-1 10.244.0.2 on
node-1, web-2 10.244.1.2 on node-2); the kernel list of the VS is [web-2, web-1], so rr picks
web-2 first.
"""
from __future__ import annotations

from ipvs_helpers import cluster_with
from netsim.skb.packet import Packet, ip2int
from netsim.rules.ipvs.ipvsadm import render_connections, render_list, render_stats
from netsim.rules.ipvs.proxier import KubeProxyIpvs

VIP = "10.96.100.10"
CLIENT = "10.244.0.5"
EP1, EP2 = ("10.244.0.2", 8080), ("10.244.1.2", 8080)


def svc(extra: str = "", proto: str = "TCP") -> str:
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n"
            f"{extra}  clusterIP: {VIP}\n  selector: {{app: web}}\n"
            f"  ports: [{{name: http, port: 80, targetPort: 8080, protocol: {proto}, nodePort: 30080}}]\n"
            + ("  type: NodePort\n" if "nodePort" in extra else ""))


def proxy(extra: str = "", proto: str = "TCP", pods=None) -> KubeProxyIpvs:
    kp = KubeProxyIpvs(cluster_with(svc(extra, proto).replace(", nodePort: 30080", "") if "NodePort" not in extra
                                    else svc(extra, proto), pods=pods), "node-1")
    kp.sync()
    return kp


def syn(sport: int, dst: str = VIP, dport: int = 80, src: str = CLIENT) -> Packet:
    return Packet.tcp(src, dst, sport, dport, flags="S")


def dest_of(pkt: Packet) -> tuple[str, int]:
    return pkt.dst_ip, pkt.dport


def rs(kp: KubeProxyIpvs, ep: tuple[str, int]):
    return kp.table.get("TCP", VIP, 80).find_dest(ip2int(ep[0]), ep[1])


def test_syn_is_scheduled_and_dnatted_with_valid_checksums():
    kp = proxy()
    p = syn(40000)
    dec = kp.node.local_in(p, now=0.0)
    assert dec.action == "dnat" and dec.new_conn and dec.scheduler == "rr"
    assert dest_of(p) == EP2 and p.checksums_ok()
    assert dec.before == (VIP, 80) and dec.after == EP2
    q = syn(40001)
    assert kp.node.local_in(q, now=0.1).action == "dnat" and dest_of(q) == EP1


def test_tcp_states_timeouts_and_active_inactive_counters():
    kp = proxy()
    p = syn(40000)
    dec = kp.node.local_in(p, 0.0)
    cp, d = dec.conn, dec.dest
    # NONE --input syn--> SYN_RECV, an active state; timeout 60 s
    assert (cp.state_name, cp.expires, d.activeconns, d.inactconns) == ("SYN_RECV", 60.0, 1, 0)
    synack = Packet.tcp(EP2[0], CLIENT, 8080, 40000, flags="SA")
    back = kp.node.reply(synack, 0.01)
    assert back.action == "un-dnat" and (synack.src_ip, synack.sport) == (VIP, 80) and synack.checksums_ok()
    assert cp.state_name == "SYN_RECV"                      # output syn from sSR stays sSR
    ack = Packet.tcp(CLIENT, VIP, 40000, 80, flags="A")
    assert kp.node.local_in(ack, 0.02).conn is cp and dest_of(ack) == EP2
    assert (cp.state_name, cp.expires) == ("ESTABLISHED", 0.02 + 900)
    fin = Packet.tcp(CLIENT, VIP, 40000, 80, flags="FA")
    kp.node.local_in(fin, 1.0)
    # input fin from ESTABLISHED -> CLOSE_WAIT: inactive, 60 s
    assert (cp.state_name, cp.expires, d.activeconns, d.inactconns) == ("CLOSE_WAIT", 61.0, 0, 1)
    kp.node.reply(Packet.tcp(EP2[0], CLIENT, 8080, 40000, flags="FA"), 1.1)
    assert cp.state_name == "TIME_WAIT"                     # output fin from CLOSE_WAIT
    kp.node.conns.expire_all(1.1 + 121)
    assert (d.activeconns, d.inactconns) == (0, 0) and len(kp.node.conns) == 0


def test_udp_connections_stay_inactive_with_300s_timeout():
    kp = proxy(proto="UDP")
    p = Packet.udp(CLIENT, VIP, 5353, 80, b"q")
    dec = kp.node.local_in(p, 0.0)
    assert dec.action == "dnat" and dec.conn.state_name == "UDP" and dec.conn.expires == 300.0
    assert (dec.dest.activeconns, dec.dest.inactconns) == (0, 1)


def test_packets_ipvs_does_not_claim():
    kp = proxy()
    assert kp.node.local_in(syn(40000, dport=22), 0.0) is None           # no virtual server
    assert kp.node.local_in(Packet.icmp(CLIENT, VIP), 0.0) is None       # not schedulable
    assert kp.node.reply(Packet.tcp("10.244.1.99", CLIENT, 8080, 1, flags="A"), 0.0) is None
    ack = Packet.tcp(CLIENT, VIP, 40000, 80, flags="A")
    dec = kp.node.local_in(ack, 0.0)                                     # only a SYN creates a connection
    assert dec.action == "accept" and ack.dst_ip == VIP


def test_no_endpoints_rejects_with_icmp_port_unreachable():
    kp = proxy(pods={})
    p = syn(40000)
    dec = kp.node.local_in(p, 0.0)
    assert dec.action == "reject" and "no destination available" in dec.reason
    assert (dec.icmp.icmp_type, dec.icmp.icmp_code, dec.icmp.src_ip, dec.icmp.dst_ip) == (3, 3, VIP, CLIENT)


def test_nodeport_request_to_node_address():
    kp = proxy("  type: NodePort\n  # nodePort\n")
    p = syn(40000, dst="192.168.49.2", dport=30080, src="192.168.49.1")
    dec = kp.node.local_in(p, 0.0)
    assert dec.action == "dnat" and dest_of(p) in (EP1, EP2) and str(dec.vs) == "192.168.49.2:30080/TCP"


def test_client_ip_affinity_pins_a_client_until_the_template_expires():
    kp = proxy("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 100}}\n")
    first = kp.node.local_in(syn(40000), 0.0)
    assert first.template is not None and dest_of_conn(first) == EP2
    for i, t in enumerate((1.0, 2.0, 50.0)):
        assert dest_of_conn(kp.node.local_in(syn(40001 + i), t)) == EP2       # same client, same backend
    other = kp.node.local_in(syn(40000, src="10.244.0.6"), 3.0)
    assert dest_of_conn(other) == EP1                                        # another client: rr moves on
    listing = render_connections(kp.node.conns.all(), 50.0)
    assert "TCP 01:40  NONE        10.244.0.5:0" in listing                  # the template, port 0
    # the SYN_RECV connections expire after 60 s; the template 100 s after its last use (t=50)
    kp.node.conns.expire_all(149.0)
    assert kp.node.conns.template_get(6, ip2int(CLIENT), ip2int(VIP), 80, 149.0) is not None
    kp.node.conns.expire_all(151.0)
    again = kp.node.local_in(syn(40010), 151.0)
    # a fresh template, scheduled by rr (pointer was at web-1, so it wraps to web-2)
    assert again.template is not first.template and "new persistence template" in again.reason
    assert dest_of_conn(again) == EP2


def test_affinity_template_survives_while_it_controls_connections():
    kp = proxy("  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}\n")
    dec = kp.node.local_in(syn(40000), 0.0)
    kp.node.local_in(Packet.tcp(CLIENT, VIP, 40000, 80, flags="A"), 0.1)     # ESTABLISHED, 900 s
    kp.node.conns.expire_all(30.0)
    assert kp.node.conns.template_get(6, ip2int(CLIENT), ip2int(VIP), 80, 30.0) is dec.template


def dest_of_conn(dec) -> tuple[str, int]:
    from netsim.skb.packet import int2ip
    return int2ip(dec.dest.ip), dec.dest.port


def test_graceful_termination_tcp_quiesces_then_deletes():
    kp = proxy()
    c = kp.cluster
    dec = kp.node.local_in(syn(40000), 0.0)                  # to web-2
    kp.node.local_in(Packet.tcp(CLIENT, VIP, 40000, 80, flags="A"), 0.1)
    assert dest_of_conn(dec) == EP2
    c.delete_pod("default", "web-2")                         # terminating; web-1 is Ready
    st = kp.sync()
    vs = kp.table.get("TCP", VIP, 80)
    assert rs(kp, EP2).weight == 0 and st.graceful == [f"{VIP}:80/TCP/10.244.1.2:8080"]
    assert "-a -t 10.96.100.10:80 -r 10.244.1.2:8080 -m -w 0" in st.ipvsadm_save()
    assert "  -> 10.244.1.2:8080              Masq    0      1          0         " in render_list(kp.table)
    # new connections avoid the quiesced server; the established one still flows to it
    assert all(dest_of_conn(kp.node.local_in(syn(41000 + i), 1.0)) == EP1 for i in range(3))
    p = Packet.tcp(CLIENT, VIP, 40000, 80, flags="PA", payload=b"GET /")
    assert kp.node.local_in(p, 2.0).action == "dnat" and dest_of(p) == EP2
    # the 1-minute loop keeps it while connections remain ...
    assert kp.advance(60.0) == [] and rs(kp, EP2) is not None
    # ... and deletes it once ActiveConn + InactiveConn reach 0
    kp.node.local_in(Packet.tcp(CLIENT, VIP, 40000, 80, flags="R"), 61.0)   # RST -> CLOSE, 10 s
    assert kp.advance(120.0) == [f"{VIP}:80/TCP/10.244.1.2:8080"]
    assert rs(kp, EP2) is None and [d.port for d in vs.dests] == [8080]


def test_graceful_termination_udp_deletes_at_once_and_expires_nodest_conns():
    kp = proxy(proto="UDP")
    p = Packet.udp(CLIENT, VIP, 5353, 80, b"q")
    dec = kp.node.local_in(p, 0.0)
    assert dest_of(p) == EP2
    kp.cluster.delete_pod("default", "web-2")
    st = kp.sync()
    assert st.graceful == [] and kp.table.get("UDP", VIP, 80).find_dest(ip2int(EP2[0]), 8080) is None
    # kernel >= 5.9: deleting the real server queued ip_vs_expire_nodest_conn_flush
    # (expire_nodest_conn=1), so the old flow's next packet is scheduled afresh
    assert dec.conn not in kp.node.conns.all()
    q = Packet.udp(CLIENT, VIP, 5353, 80, b"q")
    again = kp.node.local_in(q, 1.0)
    assert again.action == "dnat" and again.new_conn and dest_of(q) == EP1


def test_endpoint_coming_back_is_revived_from_the_dest_trash():
    """kube-proxy deletes the weight-0 real server and adds it again (MoveRSOutofGracefulDeleteList
    + AddRealServer); the kernel takes the deleted destination back out of its trash
    (ip_vs_add_dest -> ip_vs_trash_get_dest) with its counters, and its connection keeps flowing."""
    kp = proxy()
    first = kp.node.local_in(syn(40000), 0.0)                # keeps web-2 busy
    c = kp.cluster
    c.set_pod_ready("default", "web-2", False)
    kp.sync()
    old = rs(kp, EP2)
    assert old.weight == 0
    c.set_pod_ready("default", "web-2", True)
    st = kp.sync()
    assert rs(kp, EP2) is old and old.weight == 1 and st.graceful == []
    assert old.activeconns == 1 and first.conn in kp.node.conns.all()
    p = Packet.tcp(CLIENT, VIP, 40000, 80, flags="A")
    assert kp.node.local_in(p, 1.0).action == "dnat" and dest_of(p) == EP2


def test_new_syn_on_time_wait_connection_is_rescheduled():
    kp = proxy()
    kp.node.local_in(syn(40000), 0.0)                        # -> web-2
    kp.node.local_in(Packet.tcp(CLIENT, VIP, 40000, 80, flags="A"), 0.1)
    kp.node.local_in(Packet.tcp(CLIENT, VIP, 40000, 80, flags="FA"), 0.2)
    kp.node.reply(Packet.tcp(EP2[0], CLIENT, 8080, 40000, flags="FA"), 0.3)
    old = kp.node.conns.in_get(6, ip2int(CLIENT), 40000, ip2int(VIP), 80, 0.3)
    assert old.state_name == "TIME_WAIT"
    p = syn(40000)                                           # same 4-tuple, conn_reuse_mode=1
    dec = kp.node.local_in(p, 1.0)
    assert dec.new_conn and dest_of(p) == EP1 and dec.conn is not old


def test_stats_listing_counts_connections_packets_bytes():
    kp = proxy()
    p = syn(40000)
    n = len(p)
    kp.node.local_in(p, 0.0)
    kp.node.reply(Packet.tcp(EP2[0], CLIENT, 8080, 40000, flags="SA"), 0.1)
    text = render_stats(kp.table)
    # "%-33s" then print_largenum's "%9llu" per column (ipvsadm.c)
    assert "TCP  10.96.100.10:80" + " " * 13 + "%9d%9d%9d%9d%9d" % (1, 1, 1, n, n) in text
    assert "  -> 10.244.1.2:8080" + " " * 13 + "%9d%9d%9d%9d%9d" % (1, 1, 1, n, n) in text


def test_affinity_to_a_quiesced_server_is_rescheduled():
    # expire_quiescent_template=1 (kube-proxy NewProxier): ip_vs_check_template drops a template
    # whose destination has weight 0, so the client is scheduled again.
    kp = proxy("  sessionAffinity: ClientIP\n")
    first = kp.node.local_in(syn(40000), 0.0)
    assert dest_of_conn(first) == EP2
    kp.cluster.set_pod_ready("default", "web-2", False)
    kp.sync()                                                # web-2 busy -> weight 0, not deleted
    assert rs(kp, EP2).weight == 0
    dec = kp.node.local_in(syn(40001), 1.0)
    assert dest_of_conn(dec) == EP1 and dec.template is not first.template


def test_icmp_port_unreachable_from_the_real_server_is_translated_back_to_the_vip():
    # ip_vs_out_icmp / ip_vs_nat_icmp: the client must see VIP:vport in the quoted packet
    kp = proxy(proto="UDP")
    req = Packet.udp(CLIENT, VIP, 5353, 80, b"q")
    kp.node.local_in(req, 0.0)                               # now CLIENT:5353 -> 10.244.1.2:8080
    err = Packet.icmp_error(EP2[0], req)                     # the pod has no UDP listener
    dec = kp.node.reply(err, 0.1, "FORWARD")
    assert dec.action == "un-dnat" and "ICMP error" in dec.reason
    inner = err.inner
    assert (err.src_ip, err.dst_ip, err.icmp_type, err.icmp_code) == (VIP, CLIENT, 3, 3)
    assert (inner.src_ip, inner.sport, inner.dst_ip, inner.dport) == (CLIENT, 5353, VIP, 80)
    assert err.checksums_ok()
    # an ICMP error about an unknown flow is left alone
    stray = Packet.icmp_error("10.244.1.9", Packet.udp(CLIENT, "10.244.1.9", 1, 2))
    assert kp.node.reply(stray, 0.2) is None
