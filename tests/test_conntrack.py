"""Conntrack: tuples, states, timeouts, NAT bindings, MASQUERADE ports, ICMP RELATED, cleanup.

Expectations: conntrack(8) and nf_conntrack_proto_tcp.c tcp_timeouts / nf_conntrack_proto_udp.c
nf_conntrack_udp_packet (tuples, default timeouts, UDP stream rule, ASSURED), nf_nat_core.c
get_unique_tuple (MASQUERADE keeps the port unless taken; --random-fully draws), kube-proxy
pkg/proxy/conntrack/cleanup.go (UDP cleanup).
"""
from __future__ import annotations

import random

from netsim.dataplane.conntrack import Conntrack, ConntrackTimeouts, flush_stale_udp
from netsim.control.model import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort
from netsim.skb.packet import Packet, ip2int


def syn(src="10.244.1.2", dst="10.96.0.10", sport=41540, dport=80):
    return Packet.tcp(src, dst, sport, dport, flags="S")


def test_new_then_dnat_then_reply_is_unnated():
    ct = Conntrack()
    p = syn()
    e, is_reply, state = ct.classify(p, 0.0)
    assert (is_reply, state) == (False, "NEW") and not e.confirmed
    ct.update(e, p, False, 0.0)
    ct.bind_dnat(e, ip2int("10.244.2.3"), 8080)
    assert ct.nat_dst(p, e, False) == (ip2int("10.96.0.10"), 80, ip2int("10.244.2.3"), 8080)
    ct.confirm(e)
    # the reply tuple is the inverse of the post-NAT original
    assert e.reply == (6, ip2int("10.244.2.3"), 8080, ip2int("10.244.1.2"), 41540)
    r = Packet.tcp("10.244.2.3", "10.244.1.2", 8080, 41540, flags="SA")
    e2, is_reply, state = ct.classify(r, 1.0)
    assert e2 is e and is_reply and state == "ESTABLISHED"
    ct.update(e, r, True, 1.0)
    assert e.tcp_state == "SYN_RECV" and e.seen_reply
    assert ct.nat_src(r, e, True) is not None
    assert (r.src_ip, r.sport) == ("10.96.0.10", 80) and r.checksums_ok()


def test_tcp_state_timeouts_are_kernel_defaults():
    to = ConntrackTimeouts()
    assert (to.tcp_syn_sent, to.tcp_established, to.udp, to.udp_stream, to.icmp) == (120, 432000, 30, 120, 30)
    assert ConntrackTimeouts.kube_proxy().tcp_established == 86400
    ct = Conntrack()
    p = syn()
    e, _, _ = ct.classify(p, 0.0)
    ct.update(e, p, False, 0.0)
    ct.confirm(e)
    assert e.expires == 120 and e.tcp_state == "SYN_SENT"
    ct.update(e, Packet.tcp("10.96.0.10", "10.244.1.2", 80, 41540, flags="SA"), True, 1.0)
    ct.update(e, Packet.tcp("10.244.1.2", "10.96.0.10", 41540, 80, flags="A"), False, 2.0)
    assert e.tcp_state == "ESTABLISHED" and e.assured and e.expires == 2.0 + 432000
    assert ct.lookup(p.tuple(), 432001.0) == (e, False)
    assert ct.lookup(p.tuple(), 432003.0) is None          # timed out and gone
    assert len(ct) == 0


def test_udp_stream_rule_and_assured():
    ct = Conntrack()
    q = Packet.udp("10.244.1.2", "10.96.0.10", 5000, 53, b"q")
    e, _, _ = ct.classify(q, 0.0)
    ct.update(e, q, False, 0.0)
    ct.confirm(e)
    a = Packet.udp("10.96.0.10", "10.244.1.2", 53, 5000, b"a")
    ct.update(e, a, True, 0.5)
    # one request/reply: 30 s, not ASSURED (kernel sets SEEN_REPLY after the handler)
    assert e.expires == 30.5 and not e.assured and e.seen_reply
    ct.update(e, q, False, 1.0)                            # younger than 2 s: still 30 s
    assert e.expires == 31.0 and not e.assured
    ct.update(e, q, False, 3.0)                            # older than 2 s with replies: stream
    assert e.expires == 123.0 and e.assured


def test_masquerade_keeps_port_unless_taken_and_random_fully_draws():
    ct = Conntrack()
    rng = random.Random(1)
    node_ip = ip2int("192.168.49.3")
    first = None
    for i, client in enumerate(("192.168.49.100", "192.168.49.101")):
        p = Packet.tcp(client, "192.168.49.3", 40000, 30080, flags="S")
        e, _, _ = ct.classify(p, 0.0)
        ct.bind_dnat(e, ip2int("10.244.2.7"), 8080)
        port = ct.bind_snat(e, node_ip, None, rng)
        ct.confirm(e)
        if i == 0:
            first = port
            assert port == 40000                           # kept: the tuple is unique
        else:
            assert port != first and 1024 <= port <= 65535   # clash: another port
    p = Packet.tcp("192.168.49.102", "192.168.49.3", 40000, 30080, flags="S")
    e, _, _ = ct.classify(p, 0.0)
    ct.bind_dnat(e, ip2int("10.244.2.7"), 8080)
    drawn = ct.bind_snat(e, node_ip, None, random.Random(7), random_fully=True)
    assert drawn == 1024 + random.Random(7).randint(0, 65535 - 1024)


def test_icmp_error_is_related_and_translated():
    ct = Conntrack()
    u = Packet.udp("10.244.1.2", "10.96.0.20", 5000, 53, b"q")
    e, _, _ = ct.classify(u, 0.0)
    ct.bind_dnat(e, ip2int("10.244.2.3"), 5353)
    ct.nat_dst(u, e, False)
    ct.confirm(e)
    err = Packet.icmp_error("10.244.2.3", u)                # the pod quotes what it received
    e2, is_reply, state = ct.classify(err, 1.0)
    assert e2 is e and is_reply and state == "RELATED"
    ct.nat_src(err, e, True)
    assert err.src_ip == "10.96.0.20"
    inner = err.inner
    assert (inner.dst_ip, inner.dport) == ("10.96.0.20", 53)   # quoted header un-DNATed too
    assert err.checksums_ok()


def test_lone_rst_and_synack_without_entry_are_invalid():
    ct = Conntrack()
    assert ct.classify(Packet.tcp("1.1.1.1", "2.2.2.2", 1, 2, flags="R"), 0)[2] == "INVALID"
    assert ct.classify(Packet.tcp("1.1.1.1", "2.2.2.2", 1, 2, flags="SA"), 0)[2] == "INVALID"
    e, _, state = ct.classify(Packet.tcp("1.1.1.1", "2.2.2.2", 1, 2, flags="A"), 0)
    assert state == "NEW"                                   # nf_conntrack_tcp_loose=1 picks it up
    ct.update(e, Packet.tcp("1.1.1.1", "2.2.2.2", 1, 2, flags="A"), False, 0)
    assert e.tcp_state == "ESTABLISHED"


def test_listing_format():
    ct = Conntrack()
    p = syn()
    e, _, _ = ct.classify(p, 0.0)
    ct.update(e, p, False, 0.0)
    ct.bind_dnat(e, ip2int("10.244.1.1"), 8080)
    ct.confirm(e)
    line = e.line(0.0)
    assert line == ("tcp      6 120 SYN_SENT src=10.244.1.2 dst=10.96.0.10 sport=41540 dport=80 [UNREPLIED] "
                    "src=10.244.1.1 dst=10.244.1.2 sport=8080 dport=41540 mark=0 use=1")
    assert ct.listing(0.0).endswith("1 flow entries have been shown.")


def test_flush_stale_udp_follows_kube_proxy_cleanup():
    svc = Service("dns", "ns", cluster_ip="10.96.0.20", selector={"a": "b"},
                  ports=[ServicePort(53, "UDP", "dns", 5353)])
    sl = EndpointSlice("dns-x", "ns", "dns", endpoints=[Endpoint(["10.244.2.4"])],
                       ports=[EndpointPort(5353, "UDP", "dns")])
    ct = Conntrack()
    for ep in ("10.244.2.3", "10.244.2.4"):
        u = Packet.udp("10.244.1.2", "10.96.0.20", 5000 if ep.endswith("3") else 5001, 53)
        e, _, _ = ct.classify(u, 0.0)
        ct.bind_dnat(e, ip2int(ep), 5353)
        ct.confirm(e)
    assert flush_stale_udp(ct, [svc], {"ns/dns": [sl]}) == 1      # only the gone endpoint's entry
    assert [e.reply[1] for e in ct.entries()] == [ip2int("10.244.2.4")]
    # a service with no serving endpoint gets no cleanup at all (cleanup.go)
    assert flush_stale_udp(ct, [svc], {"ns/dns": []}) == 0


def test_reply_tuple_clash_fails_the_insert():
    # __nf_conntrack_confirm refuses an entry whose tuple is taken (insert_failed), kernel nf_conntrack_core.c
    ct = Conntrack()
    entries = []
    for vip in ("10.96.0.10", "10.96.0.11"):                 # two ClusterIPs, same client port
        p = syn(dst=vip, sport=50000)
        e, _, _ = ct.classify(p, 0.0)
        ct.bind_dnat(e, ip2int("10.244.2.3"), 8080)           # ... DNATed to the same endpoint
        entries.append(e)
    assert ct.confirm(entries[0], 0.0) is True
    assert ct.confirm(entries[1], 0.0) is False and ct.insert_failed == 1
    assert not entries[1].confirmed and len(ct) == 1
    # once the first entry has timed out, the insert succeeds
    assert ct.confirm(entries[1], entries[0].expires + 1) is True
