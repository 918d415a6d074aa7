"""Packet: real IPv4 bytes, in-place field writes, incremental checksums checked against scapy.

Ground truth for every checksum is scapy's own computation (it fills ``chksum``
from scratch when the field is deleted), so an RFC 1624 patching mistake shows
up as a mismatch here.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.sctp import SCTP

from netsim.skb.packet import (
    IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Packet, PacketError,
    csum_replace16, int2ip, ip2int,
)


def scapy_recomputed(pkt: Packet) -> bytes:
    """The same datagram with every checksum recomputed by scapy."""
    s = IP(bytes(pkt.buf))
    del s.chksum
    for layer in (TCP, UDP, ICMP):
        if s.haslayer(layer):
            if layer is UDP and s[UDP].chksum == 0:
                break  # no checksum sent: scapy would fill one in; keep it absent
            del s[layer].chksum
    if s.haslayer(SCTP):
        del s[SCTP].chksum
    return bytes(s.__class__(bytes(s)))


def assert_checksums_match_scapy(pkt: Packet) -> None:
    assert bytes(pkt.buf) == scapy_recomputed(pkt)
    assert pkt.checksums_ok()


def test_ip_conversions() -> None:
    assert ip2int("10.96.0.1") == 0x0A600001
    assert int2ip(0xC0A83102) == "192.168.49.2"
    with pytest.raises(PacketError, match="not an IPv4 address"):
        ip2int("10.96.0")


def test_tcp_builder_matches_scapy() -> None:
    p = Packet.tcp("10.244.1.2", "10.96.0.10", 40000, 80, flags="S", seq=1000)
    s = IP(bytes(p.buf))
    assert s[IP].src == "10.244.1.2" and s[IP].dst == "10.96.0.10"
    assert s[TCP].sport == 40000 and s[TCP].dport == 80 and s[TCP].flags == "S" and s[TCP].seq == 1000
    assert p.proto == IPPROTO_TCP and p.tcp_flags == 0x02 and p.tcp_flags_str == "S"
    assert_checksums_match_scapy(p)


def test_udp_icmp_sctp_builders_match_scapy() -> None:
    u = Packet.udp("10.244.1.2", "10.96.0.10", 53000, 53, payload=b"query")
    assert u.proto == IPPROTO_UDP and u.payload == b"query" and (u.sport, u.dport) == (53000, 53)
    assert_checksums_match_scapy(u)
    i = Packet.icmp("10.244.1.2", "10.244.2.3", id=777, seq=1, payload=b"ping")
    assert i.proto == IPPROTO_ICMP and i.sport == 777 and i.dport == 777
    assert IP(bytes(i.buf))[ICMP].id == 777
    assert_checksums_match_scapy(i)
    sc = Packet.sctp("10.244.1.2", "10.96.5.5", 5000, 3868, vtag=0x1234, chunks=b"\x01\x00\x00\x04")
    assert sc.proto == IPPROTO_SCTP and (sc.sport, sc.dport) == (5000, 3868)
    assert_checksums_match_scapy(sc)


def test_dnat_and_snat_writes_patch_checksums() -> None:
    # The rewrite kube-proxy's KUBE-SEP DNAT and MASQUERADE perform.
    p = Packet.tcp("10.244.1.2", "10.96.0.1", 40000, 80, flags="PA", payload=b"GET / HTTP/1.1\r\n\r\n")
    p.dst = ip2int("10.244.2.7")
    p.dport = 8080
    p.src = ip2int("192.168.49.3")
    p.sport = 61000
    p.ttl = 63
    assert (p.src_ip, p.sport, p.dst_ip, p.dport, p.ttl) == ("192.168.49.3", 61000, "10.244.2.7", 8080, 63)
    assert p.payload == b"GET / HTTP/1.1\r\n\r\n"
    assert_checksums_match_scapy(p)


def test_udp_zero_checksum_stays_zero() -> None:
    # RFC 768: checksum 0 means "not computed"; a NAT must not invent one.
    s = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2, chksum=0) / b"x"
    p = Packet(bytes(s))
    p.dst = ip2int("10.0.0.9")
    assert p.buf[26:28] == b"\x00\x00"
    assert p.dst_ip == "10.0.0.9" and p.checksums_ok()
    assert bytes(p.buf) == scapy_recomputed(p)


def test_icmp_echo_id_rewrite_and_error_quote() -> None:
    i = Packet.icmp("10.244.1.2", "10.244.2.3", id=5, seq=9)
    i.sport = 6000  # conntrack NATs the echo identifier
    assert i.sport == 6000 and i.dport == 6000
    assert_checksums_match_scapy(i)
    u = Packet.udp("10.244.1.2", "10.244.2.3", 5353, 9999, payload=b"abc")
    err = Packet.icmp_error("10.244.2.3", u)
    assert err.dst_ip == "10.244.1.2" and err.icmp_type == 3 and err.icmp_code == 3
    assert err.is_icmp_error and not err.is_icmp_query
    inner = err.inner
    assert inner is not None and inner.tuple() == u.tuple()
    assert_checksums_match_scapy(err)
    with pytest.raises(PacketError):
        err.sport = 5


def test_payload_replace_recomputes_lengths() -> None:
    p = Packet.udp("10.244.1.2", "10.244.2.3", 1000, 2000, payload=b"a")
    p.payload = b"hello world"
    assert p.total_length == 20 + 8 + 11
    assert IP(bytes(p.buf))[UDP].len == 19
    assert_checksums_match_scapy(p)


def test_copy_is_independent_and_keeps_metadata() -> None:
    p = Packet.tcp("10.244.1.2", "10.96.0.1", 40000, 80)
    p.mark = 0x4000
    p.iif = "eth0"
    q = p.copy()
    q.dst = ip2int("10.244.9.9")
    assert p.dst_ip == "10.96.0.1" and q.dst_ip == "10.244.9.9"
    assert q.mark == 0x4000 and q.iif == "eth0"


def test_scapy_roundtrip_and_bad_input() -> None:
    s = IP(src="1.2.3.4", dst="5.6.7.8") / TCP(sport=1, dport=2, flags="SA")
    p = Packet.from_scapy(s)
    assert p.tcp_flags_str == "SA"
    assert bytes(p.to_scapy()) == bytes(s)
    with pytest.raises(PacketError, match="IPv4"):
        Packet(b"\x60" + b"\x00" * 39)


def test_rfc1624_example() -> None:
    # RFC 1624 §4 worked example: HC=0xDD2F, m=0x5555 -> m'=0x3285 gives HC'=0x0000.
    assert csum_replace16(0xDD2F, 0x5555, 0x3285) == 0x0000


ips = st.integers(min_value=0, max_value=0xFFFFFFFF)
ports = st.integers(min_value=0, max_value=0xFFFF)


@settings(max_examples=150, deadline=None)
@given(proto=st.sampled_from(["tcp", "udp", "icmp"]), src=ips, dst=ips, sp=ports, dp=ports,
       ttl=st.integers(1, 255), payload=st.binary(max_size=40))
def test_random_rewrites_keep_checksums_valid(proto: str, src: int, dst: int, sp: int, dp: int,
                                              ttl: int, payload: bytes) -> None:
    if proto == "tcp":
        p = Packet.tcp("10.0.0.1", "10.0.0.2", 1234, 80, flags="PA", payload=payload)
    elif proto == "udp":
        p = Packet.udp("10.0.0.1", "10.0.0.2", 1234, 53, payload=payload)
    else:
        p = Packet.icmp("10.0.0.1", "10.0.0.2", id=1, payload=payload)
    p.src = src
    p.dst = dst
    p.sport = sp
    if proto != "icmp":
        p.dport = dp
    p.ttl = ttl
    assert (p.src, p.dst, p.sport, p.ttl) == (src, dst, sp, ttl)
    assert_checksums_match_scapy(p)


# ---------------------------------------------------------------------- fast paths == reference
def rfc1071(data: bytes, initial: int = 0) -> int:
    """RFC 1071 §4.1 word loop: the reference the big-integer checksum must equal."""
    if len(data) & 1:
        data += b"\x00"
    s = initial
    for i in range(0, len(data), 2):
        s += data[i] << 8 | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=90), initial=st.integers(0, 0x3FFFF))
def test_checksum_equals_rfc1071_word_loop(data: bytes, initial: int) -> None:
    from netsim.skb.packet import checksum
    assert checksum(data, initial) == rfc1071(data, initial)


def test_checksum_edge_cases() -> None:
    from netsim.skb.packet import checksum
    assert checksum(b"") == 0xFFFF                     # sum 0 -> ~0
    assert checksum(b"\xff\xff") == 0x0000             # sum 0xFFFF (ones' complement -0) -> 0
    assert checksum(b"\xff\xff\xff\xff") == 0x0000


@settings(max_examples=100, deadline=None)
@given(ttl=st.integers(1, 255), payload=st.binary(max_size=9))
def test_decrement_ttl_equals_the_setter(ttl: int, payload: bytes) -> None:
    a = Packet.tcp("10.0.0.1", "10.0.0.2", 1, 2, ttl=ttl, payload=payload)
    b = a.copy()
    a.decrement_ttl()
    b.ttl = ttl - 1
    assert bytes(a.buf) == bytes(b.buf) and a.ttl == ttl - 1
    assert_checksums_match_scapy(a)


def test_builders_take_integer_addresses() -> None:
    s, d = ip2int("10.244.1.2"), ip2int("10.96.0.10")
    assert bytes(Packet.tcp(s, d, 1, 2, flags="SA", seq=7, ack=9, payload=b"abc").buf) == \
        bytes(Packet.tcp("10.244.1.2", "10.96.0.10", 1, 2, flags="SA", seq=7, ack=9, payload=b"abc").buf)
    assert bytes(Packet.udp(s, d, 1, 2, payload=b"x").buf) == bytes(Packet.udp("10.244.1.2", "10.96.0.10", 1, 2,
                                                                              payload=b"x").buf)


def test_udp_without_dont_fragment_matches_scapy() -> None:
    # flannel's VXLAN outer header leaves DF clear (tcpdump on a flannel underlay; drivers/net/vxlan vxlan_xmit_one: df unset by default)
    p = Packet.udp("192.168.49.4", "192.168.49.2", 40000, 8472, payload=b"\x08" + b"\x00" * 60, df=False)
    assert not p.buf[6] & 0x40 and IP(bytes(p.buf)).flags == 0
    assert_checksums_match_scapy(p)


def test_decoded_fields_follow_writes() -> None:
    p = Packet.icmp("10.0.0.1", "10.0.0.2", id=5)
    p.dport = 9                                           # the echo id is both "ports"
    assert (p.sport, p.dport) == (9, 9) and p.tuple()[2] == p.tuple()[4] == 9
    q = Packet.tcp("10.0.0.1", "10.0.0.2", 1000, 80)
    q.buf[16:20] = bytes([10, 0, 0, 3])                  # a direct write: reparse picks it up
    q.reparse()
    assert q.dst == ip2int("10.0.0.3") and q.dst_ip == "10.0.0.3"
    r = Packet(bytes(q.buf))
    assert r.tuple() == q.tuple()


def test_sctp_port_rewrite_in_an_icmp_quote_leaves_the_checksum_alone() -> None:
    # An ICMP error quotes only 8 bytes of the SCTP header: un-NATing the quoted ports cannot reach the
    # CRC32c (net/netfilter/nf_nat_proto.c sctp_manip_pkt skips it); found by the netsim reach fuzz.
    sc = Packet.sctp("10.244.1.2", "10.96.5.5", 5000, 3868, vtag=0x1234, chunks=b"\x01\x00\x00\x04")
    err = Packet.icmp_error("10.244.2.7", sc)
    inner = Packet(err.buf[err._l4 + 8:err._l4 + 8 + 28])
    inner.sport = 6000
    assert inner.sport == 6000 and len(inner.buf) == 28


@settings(max_examples=400, deadline=None)
@given(proto=st.sampled_from(["tcp", "udp", "udp0", "icmp"]), src=ips, dst=ips, sp=ports, dp=ports,
       ip=ips, port=ports, dst_side=st.booleans(), payload=st.binary(max_size=11),
       csum=st.integers(0, 0xFFFF))
def test_nat_rewrite_equals_the_setters(proto: str, src: int, dst: int, sp: int, dp: int, ip: int, port: int,
                                        dst_side: bool, payload: bytes, csum: int) -> None:
    """Packet.nat_rewrite (conntrack's NAT manip in one call) writes the bytes and fields that the
    address setter then the port setter write, whatever the checksums held before (a random
    checksum word: its ones'-complement corner cases -0 and +0 included); UDP without a checksum
    keeps none."""
    if proto == "tcp":
        a = Packet.tcp(src, dst, sp, dp, flags="PA", payload=payload)
        a.buf[36:38] = csum.to_bytes(2, "big")
    elif proto == "icmp":
        a = Packet.icmp(src, dst, id=sp, payload=payload)
        dp = sp
    else:
        a = Packet.udp(src, dst, sp, dp, payload=payload)
        a.buf[26:28] = (0 if proto == "udp0" else csum).to_bytes(2, "big")
    a.buf[10:12] = csum.to_bytes(2, "big")
    b = a.copy()
    old = a.nat_rewrite(dst_side, ip, port)
    if dst_side:
        assert old == (dst, dp)
        b.dst = ip
        if proto != "icmp" and dp != port:
            b.dport = port
        elif proto == "icmp" and sp != port:
            b.dport = port
    else:
        assert old == (src, sp)
        b.src = ip
        if sp != port:
            b.sport = port
    assert bytes(a.buf) == bytes(b.buf)
    assert a.tuple() == b.tuple() and (a.src, a.dst, a.sport, a.dport) == (b.src, b.dst, b.sport, b.dport)
