"""The ipset model: entry syntax, packet tests per set type, `ipset save` / `ipset list` text.

SAVE below is verbatim `ipset save` output from ipset v7.17 in a scratch netns (the sets kube-proxy's
IPVS mode uses, kube-proxy pkg/proxy/ipvs/ipset.go, plus nomatch/timeout/comment variants).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from netsim.skb.packet import Packet
from netsim.rules.ipset import IpsetError, IpsetStore, parse_save

SAVE = """\
create A hash:ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xa21eae35
add A 10.0.0.1
create B hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x01166fb3
add B 10.96.0.10,udp:53
add B 10.96.0.10,tcp:80
add B 10.96.0.10,tcp:53
create C hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x765bebcb
add C 1.2.3.4
add C 10.0.0.0/8
add C 10.1.0.0/16 nomatch
create D hash:ip,port,ip family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x97b7e415
add D 10.244.0.2,udp:53,10.244.0.2
create E hash:ip,port,net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xb747b1a6
add E 1.2.3.4,tcp:80,203.0.113.0/25
create F bitmap:port range 0-65535
add F 30080
add F 30081
create G hash:ip family inet hashsize 1024 maxelem 65536 timeout 10 bucketsize 12 initval 0x19040ff2
add G 1.1.1.1 timeout 9
create H hash:ip,port family inet hashsize 1024 maxelem 65536 comment bucketsize 12 initval 0xd8dc8c5f
add H 1.1.1.1,tcp:1 comment "hi"
"""


def test_save_round_trips_real_ipset_output():
    assert parse_save(SAVE).save() == SAVE


@pytest.mark.parametrize("name,pkt,dirs,hit", [
    ("A", Packet.tcp("10.0.0.1", "9.9.9.9", 1, 2), ("src",), True),
    ("A", Packet.tcp("10.0.0.1", "9.9.9.9", 1, 2), ("dst",), False),
    ("B", Packet.udp("1.1.1.1", "10.96.0.10", 5, 53), ("dst", "dst"), True),
    ("B", Packet.tcp("1.1.1.1", "10.96.0.10", 5, 53), ("dst", "dst"), True),
    ("B", Packet.udp("1.1.1.1", "10.96.0.10", 5, 80), ("dst", "dst"), False),     # protocol is part of the key
    ("B", Packet.udp("1.1.1.1", "10.96.0.10", 5, 53), ("dst",), False),           # fewer dirs than the dimension
    ("B", Packet.icmp("1.1.1.1", "10.96.0.10"), ("dst", "dst"), False),
    ("C", Packet.tcp("10.2.3.4", "9.9.9.9", 1, 2), ("src",), True),
    ("C", Packet.tcp("10.1.3.4", "9.9.9.9", 1, 2), ("src",), False),             # most specific entry is nomatch
    ("C", Packet.tcp("1.2.3.4", "9.9.9.9", 1, 2), ("src",), True),
    ("D", Packet.udp("10.244.0.2", "10.244.0.2", 9, 53), ("dst", "dst", "src"), True),   # KUBE-LOOP-BACK
    ("D", Packet.udp("10.244.0.3", "10.244.0.2", 9, 53), ("dst", "dst", "src"), False),
    ("E", Packet.tcp("203.0.113.9", "1.2.3.4", 9, 80), ("dst", "dst", "src"), True),
    ("E", Packet.tcp("203.0.113.200", "1.2.3.4", 9, 80), ("dst", "dst", "src"), False),
    ("F", Packet.tcp("1.1.1.1", "2.2.2.2", 9, 30081), ("dst",), True),
    ("F", Packet.tcp("1.1.1.1", "2.2.2.2", 30081, 9), ("dst",), False),
])
def test_packet_membership(name, pkt, dirs, hit):
    store = parse_save(SAVE)
    assert store.get(name).test(pkt, dirs) is hit


def test_timeout_entries_expire_and_list_format():
    store = parse_save(SAVE, now=100.0)
    p = Packet.tcp("1.1.1.1", "2.2.2.2", 1, 2)
    assert store.test("G", p, ("src",), now=108.0)
    assert not store.test("G", p, ("src",), now=109.0)
    store.add("B", "10.96.0.1,tcp:443")
    assert "10.96.0.1,tcp:443" in store.get("B")
    assert store.list(["B"], references={"B": 3}) == (
        "Name: B\nType: hash:ip,port\nRevision: 7\n"
        "Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x01166fb3\n"
        "References: 3\nNumber of entries: 4\nMembers:\n"
        "10.96.0.10,udp:53\n10.96.0.10,tcp:80\n10.96.0.10,tcp:53\n10.96.0.1,tcp:443\n")


def test_kube_proxy_style_creation_and_bitmap_range():
    s = IpsetStore()
    s.create("KUBE-NODE-PORT-TCP", "bitmap:port", port_range=(0, 65535))
    s.add("KUBE-NODE-PORT-TCP", "30080")
    s.create("KUBE-CLUSTER-IP", "hash:ip,port")
    s.add("KUBE-CLUSTER-IP", "10.96.0.10,53")            # protocol defaults to tcp
    assert s.save() == ("create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 30080\n"
                        "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n"
                        "add KUBE-CLUSTER-IP 10.96.0.10,tcp:53\n")
    s.delete("KUBE-CLUSTER-IP", "10.96.0.10,tcp:53")
    assert s.get("KUBE-CLUSTER-IP").entries() == []


@pytest.mark.parametrize("text,msg", [
    ("create X hash:mac\n", "<s>:1: set X: unsupported set type 'hash:mac'"),
    ("create X hash:ip\nadd X 10.0.0\n", "<s>:2: expected an IPv4 address"),
    ("create X hash:ip,port\nadd X 10.0.0.1,icmp:8\n", "<s>:2: expected protocol tcp, udp or sctp"),
    ("add Y 1.2.3.4\n", "<s>:1: add to set 'Y' which was not created"),
    ("create X bitmap:port range 1000-2000\nadd X 80\n", "<s>:2: port 80 outside the set range 1000-2000"),
    ("create X hash:ip\nadd X 1.1.1.1 nomatch\n", "nomatch is only valid for net set types"),
])
def test_errors_name_line(text, msg):
    with pytest.raises(IpsetError) as e:
        parse_save(text, source="<s>")
    assert msg in str(e.value)


@pytest.mark.kernel
def test_kernel_ipset_accepts_our_save_output():
    if shutil.which("ipset") is None or subprocess.run(["unshare", "--net", "true"]).returncode != 0:
        pytest.skip("needs ipset and unshare --net (root)")
    s = IpsetStore()
    s.create("KUBE-LOOP-BACK", "hash:ip,port,ip")
    s.add("KUBE-LOOP-BACK", "10.244.0.2,udp:53,10.244.0.2")
    s.create("KUBE-NODE-PORT-TCP", "bitmap:port")
    s.add("KUBE-NODE-PORT-TCP", "30080")
    r = subprocess.run(["unshare", "--net", "sh", "-c", "ipset restore && ipset save"], input=s.save(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    again = parse_save(r.stdout)
    assert again.get("KUBE-LOOP-BACK").entries() == ["10.244.0.2,udp:53,10.244.0.2"]
    assert again.get("KUBE-NODE-PORT-TCP").entries() == ["30080"]
