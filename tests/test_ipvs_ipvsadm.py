"""ipvsadm text as ipvsadm 1.31 prints it (ipvsadm.c print_service_entry / print_title /
print_largenum / list_conn, libipvs ipvs_cmp_services / ipvs_cmp_dests), and -Sn parsing."""
from __future__ import annotations

import pytest

from netsim.skb.packet import ip2int
from netsim.rules.ipvs.ipvsadm import _largenum, parse_save, render_list, render_save, sorted_services
from netsim.rules.ipvs.table import IP_VS_SVC_F_PERSISTENT, IP_VS_SVC_F_SCHED2, IpvsError, IpvsTable


def sample() -> IpvsTable:
    t = IpvsTable()
    t.add_service("UDP", "10.96.0.10", 53).add_dest(ip2int("10.244.0.2"), 53)
    web = t.add_service("TCP", "10.100.108.207", 80, flags=IP_VS_SVC_F_PERSISTENT, timeout=10800)
    web.add_dest(ip2int("10.244.0.25"), 8000)
    web.add_dest(ip2int("10.244.0.24"), 8000, weight=0)
    t.add_service("TCP", "10.96.0.1", 443).add_dest(ip2int("192.168.49.2"), 8443)
    t.add_service("TCP", "192.168.49.2", 30080).add_dest(ip2int("10.244.0.25"), 8000)
    t.add_service("TCP", "10.96.5.5", 80, scheduler="mh", flags=IP_VS_SVC_F_SCHED2)
    return t


LIST = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.49.2:30080 rr
  -> 10.244.0.25:8000             Masq    1      0          0         
TCP  10.96.0.1:443 rr
  -> 192.168.49.2:8443            Masq    1      0          0         
TCP  10.96.5.5:80 mh (mh-port)
TCP  10.100.108.207:80 rr persistent 10800
  -> 10.244.0.24:8000             Masq    0      0          0         
  -> 10.244.0.25:8000             Masq    1      0          0         
UDP  10.96.0.10:53 rr
  -> 10.244.0.2:53                Masq    1      0          0         
"""


def test_list_format_and_sort_order():
    # TCP (6) before UDP (17); 192.168.49.2 sorts before 10.x because ipvsadm compares
    # (int)(ntohl(a) - ntohl(b)) (seen in real output, kubernetes issue #75443)
    assert render_list(sample()) == LIST


SAVE = """\
-A -t 192.168.49.2:30080 -s rr
-a -t 192.168.49.2:30080 -r 10.244.0.25:8000 -m -w 1
-A -t 10.96.0.1:443 -s rr
-a -t 10.96.0.1:443 -r 192.168.49.2:8443 -m -w 1
-A -t 10.96.5.5:80 -s mh -b mh-port
-A -t 10.100.108.207:80 -s rr -p 10800
-a -t 10.100.108.207:80 -r 10.244.0.24:8000 -m -w 0
-a -t 10.100.108.207:80 -r 10.244.0.25:8000 -m -w 1
-A -u 10.96.0.10:53 -s rr
-a -u 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
"""


def test_save_format():
    assert render_save(sample()) == SAVE


def test_save_parses_back_to_the_same_table():
    t = parse_save(SAVE)
    assert render_save(t) == SAVE
    vs = t.get("TCP", "10.100.108.207", 80)
    assert vs.persistent and vs.timeout == 10800
    assert t.get("TCP", "10.96.5.5", 80).flags == IP_VS_SVC_F_SCHED2


def test_wrap_around_sort_puts_172_16_before_10():
    t = IpvsTable()
    for ip in ("10.96.0.1", "172.16.1.7", "192.168.49.2", "10.244.0.1"):
        t.add_service("TCP", ip, 80)
    assert [vs.addr.split(":")[0] for vs in sorted_services(t)] == [
        "172.16.1.7", "192.168.49.2", "10.96.0.1", "10.244.0.1"]


def test_largenum_units():
    assert _largenum(12) == "       12"
    assert _largenum(830843000) == "  830843K"
    assert _largenum(1135_000_000) == "    1135M"


@pytest.mark.parametrize("text, message", [
    ("-A -t 10.0.0.1:80 -s bogus\n", "<t>:1: unknown scheduler 'bogus'"),
    ("-a -t 10.0.0.1:80 -r 10.1.1.1:80 -m -w 1\n", "<t>:1: server for TCP 10.0.0.1:80, which no earlier -A line"),
    ("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.1:80 -m\n", "<t>:2: expected an IPv4 address"),
    ("-A -t 10.0.0.1 -s rr\n", "<t>:1: expected ADDRESS:PORT"),
    ("-X\n", "<t>:1: expected a line starting with -A"),
    ("-A -t 10.0.0.1:80 -s rr -w 1\n", "<t>:1: option -w is not valid on a service (-A) line"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(IpvsError) as e:
        parse_save(text, source="<t>")
    assert str(e.value).startswith(message)


def test_replayed_dump_schedules_in_kernel_list_order():
    # ipvsadm -R adds servers in file order, so the last listed is first in the kernel list
    t = parse_save("-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n"
                   "-a -t 10.0.0.1:80 -r 10.1.0.2:80 -m -w 1\n")
    vs = t.get("TCP", "10.0.0.1", 80)
    first = vs.sched.schedule(vs, 1, 1, vs.ip, 80)
    assert first.addr == "10.1.0.2:80"
