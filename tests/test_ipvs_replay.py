"""`netsim ipvs replay`: open vs closed clients, the kernel's connection timers, the destination trash.

Expected choices follow the kernel's schedulers (net/netfilter/ipvs/ip_vs_sed.c, ip_vs_nq.c) with
its counters: an open TCP connection (ESTABLISHED) is active, a closed one (TIME_WAIT) inactive
(ip_vs_proto_tcp.c tcp_state_active_table); timeouts from tcp_timeouts[] / udp_timeouts[].
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.skb.packet import Packet, ip2int
from netsim.rules.ipvs.datapath import IpvsNode
from netsim.rules.ipvs.replay import replay
from netsim.rules.ipvs.table import IP_VS_DEST_TRASH_PERIOD, IpvsTable

VIP, A, B = "10.96.0.10", "10.244.1.5", "10.244.2.6"


def _dump(tmp_path, sched: str):
    p = tmp_path / f"{sched}.txt"
    # ipvsadm -R adds B then A: the kernel list is newest first, A at the head
    p.write_text(f"-A -t {VIP}:80 -s {sched}\n-a -t {VIP}:80 -r {B}:80 -m -w 1\n"
                 f"-a -t {VIP}:80 -r {A}:80 -m -w 1\n")
    return str(p)


def _run(*args: str) -> list[str]:
    r = CliRunner().invoke(cli, ["ipvs", "replay", *args])
    assert r.exit_code == 0, r.output
    return r.output.splitlines()


def _chosen(lines: list[str]) -> list[str]:
    return [line.rsplit(" ", 1)[1].split(":")[0] for line in lines if "  dnat  " in line]


def _counts(lines: list[str], ip: str) -> tuple[int, int]:
    row = next(line for line in lines if line.startswith(f"  -> {ip}:"))
    _, _, _, _, active, inactive = row.split()
    return int(active), int(inactive)


@pytest.mark.parametrize("sched", ["sed", "nq"])
def test_open_clients_spread_closed_clients_stay_on_the_first_server(tmp_path, sched):
    dump = _dump(tmp_path, sched)
    base = ["--dump", dump, "--src", "10.244.0.9:40000", "--to", f"{VIP}:80", "--count", "4"]
    opened = _run(*base)
    closed = _run(*base, "--close")
    # open: each connection stays active, so (active + 1) / weight alternates between the two
    assert _chosen(opened) == [A, B, A, B]
    assert _counts(opened, A) == (2, 0) and _counts(opened, B) == (2, 0)
    # closed: every finished connection is inactive (TIME_WAIT), which sed/nq ignore: A every time
    assert _chosen(closed) == [A, A, A, A]
    assert _counts(closed, A) == (0, 4) and _counts(closed, B) == (0, 0)


def test_wlc_counts_inactive_connections_so_closed_clients_still_alternate(tmp_path):
    lines = _run("--dump", _dump(tmp_path, "wlc"), "--src", "10.244.0.9", "--to", f"{VIP}:80",
                 "--count", "4", "--close")
    assert _chosen(lines) == [A, B, A, B]


def test_connections_expire_on_the_kernel_timeouts(tmp_path):
    dump = _dump(tmp_path, "sed")
    base = ["--dump", dump, "--src", "10.244.0.9", "--to", f"{VIP}:80", "--count", "3"]
    # ESTABLISHED lives 900 s: 1000 s apart, each connection has expired before the next one
    lines = _run(*base, "--interval", "1000")
    assert _chosen(lines) == [A, A, A] and _counts(lines, A) == (1, 0)
    # TIME_WAIT lives 120 s
    assert _counts(_run(*base, "--close", "--interval", "50"), A) == (0, 3)
    assert _counts(_run(*base, "--close", "--interval", "130"), A) == (0, 1)
    # UDP: 300 s, always inactive
    udp = tmp_path / "udp.txt"
    udp.write_text(f"-A -u {VIP}:53 -s rr\n-a -u {VIP}:53 -r {A}:53 -m -w 1\n")
    u = ["--dump", str(udp), "--src", "10.244.0.9", "--to", f"{VIP}:53", "--proto", "udp", "--count", "3"]
    assert _counts(_run(*u, "--interval", "200"), A) == (0, 2)


def test_help_says_what_each_form_models():
    r = CliRunner().invoke(cli, ["ipvs", "replay", "--help"])
    text = " ".join(r.output.split())
    assert "--close" in text and "short-lived" in text and "long-lived" in text


def _table_with_conn():
    table = IpvsTable()
    vs = table.add_service("TCP", VIP, 80)
    vs.add_dest(ip2int(B), 80)
    vs.add_dest(ip2int(A), 80)
    node = IpvsNode(table)
    dec = node.local_in(Packet.tcp("10.244.0.9", VIP, 40000, 80, flags="S"), 0.0)
    assert dec.dest.ip == ip2int(A)
    return table, vs, node, dec


def test_a_deleted_real_server_comes_back_from_the_trash_with_its_counters():
    table, vs, node, dec = _table_with_conn()
    old = vs.del_dest(ip2int(A), 80)
    assert old.activeconns == 1 and vs.find_dest(ip2int(A), 80) is None
    again = vs.add_dest(ip2int(A), 80)
    assert again is old and again.activeconns == 1 and again.available
    assert vs.dests[0] is again                     # back at the head of the list
    # its connection goes on
    p = Packet.tcp("10.244.0.9", VIP, 40000, 80, flags="A")
    assert node.local_in(p, 1.0).dest is again


def test_the_trash_forgets_a_server_one_period_after_its_last_connection():
    table, vs, node, dec = _table_with_conn()
    vs.del_dest(ip2int(A), 80)
    node.conns.expire(dec.conn)                     # its last connection goes
    # the timer (every half period) stamps it idle, and frees it a full period after the stamp
    node.advance(IP_VS_DEST_TRASH_PERIOD)
    assert table.trash
    node.advance(IP_VS_DEST_TRASH_PERIOD * 2)
    assert not table.trash
    fresh = vs.add_dest(ip2int(A), 80)
    assert fresh.activeconns == 0 and fresh.inactconns == 0


def test_a_referenced_server_stays_in_the_trash():
    table, vs, node, dec = _table_with_conn()
    vs.del_dest(ip2int(A), 80)
    node.table.expire_trash(10 * IP_VS_DEST_TRASH_PERIOD)
    assert vs.add_dest(ip2int(A), 80).activeconns == 1


def test_replay_function_yields_each_connection():
    table, vs, node, _ = _table_with_conn()
    got = list(replay(node, "tcp", "10.244.0.8", 50000, VIP, 80, 2, close=True, interval=5.0))
    assert [c.start for c in got] == [0.0, 5.0] and all(c.decision.action == "dnat" for c in got)
    assert got[0].decision.conn.state_name == "TIME_WAIT"
