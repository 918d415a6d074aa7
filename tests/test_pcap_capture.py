"""`--pcap` reads like a real capture (checked with tshark): wall-clock timestamps (the run's start
plus the cluster clock), a by-name trace's DNS packets, the handshake's final ACK, IP IDs and DF as
Linux sets them, and `--pcap-at HOST[:IFACE]` keeping one capture point as `tcpdump -i` would.
"""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
FIELDS = ["frame.time_epoch", "frame.interface_name", "ip.src", "ip.dst", "ip.id", "ip.flags.df",
          "tcp.flags.str", "dns.qry.name", "ip.checksum.status"]


def capture(tmp_path, *extra: str) -> list[dict]:
    out = tmp_path / "t.pcapng"
    r = CliRunner().invoke(cli, ["trace", "-f", "example:httpd-app", "--from", "pod/client", "--to",
                                 "http://httpd-app/", "--pcap", str(out), *extra])
    assert r.exit_code == 0, r.output
    rows = subprocess.run(["tshark", "-r", str(out), "-o", "ip.check_checksum:TRUE", "-T", "fields",
                           "-E", "occurrence=l", *[a for f in FIELDS for a in ("-e", f)]],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    return [dict(zip(FIELDS, row.split("\t"))) for row in rows]


def test_a_by_name_trace_captures_dns_then_the_whole_handshake(tmp_path):
    before = time.time()
    rows = capture(tmp_path)
    after = time.time()
    at_client = [r for r in rows if r["frame.interface_name"] == "default/client/eth0"]
    # glibc asks A and AAAA (search list: the first name answers), then connects
    assert [r["dns.qry.name"] for r in at_client[:4]] == ["httpd-app.default.svc.cluster.local"] * 4
    flags = [r["tcp.flags.str"].replace("\u00b7", "") for r in at_client[4:]]
    assert flags[:3] == ["S", "AS", "A"], flags                              # SYN, SYN-ACK, final ACK
    assert "AP" in flags[3]                                                 # then the request
    syn, synack, ack, req = at_client[4:8]
    # ip_build_and_send_pkt: the SYN-ACK has DF and IP ID 0; the client socket counts up from a random ID
    assert synack["ip.id"] == "0x0000" and synack["ip.flags.df"] == "1"
    assert int(ack["ip.id"], 16) == int(syn["ip.id"], 16) + 1 and int(req["ip.id"], 16) == int(syn["ip.id"], 16) + 2
    assert all(r["ip.flags.df"] == "1" for r in at_client)                  # TCP and UDP from sockets: DF
    vxlan = [r for r in rows if r["frame.interface_name"].endswith("/eth0") and r["ip.src"].startswith("192.168.49.")]
    assert vxlan and all(r["ip.flags.df"] == "0" for r in vxlan)            # iptunnel_xmit: DF clear
    assert all(r["ip.checksum.status"] == "1" for r in rows)                # every header checksum verified
    stamps = [float(r["frame.time_epoch"]) for r in rows]
    assert before - 1 <= stamps[0] <= after and stamps == sorted(stamps)    # wall clock at the run's start


def test_timestamps_follow_the_cluster_clock(tmp_path):
    before = time.time()
    rows = capture(tmp_path, "--advance", "3600")
    assert float(rows[0]["frame.time_epoch"]) >= before + 3600 - 1


def test_pcap_at_keeps_one_capture_point(tmp_path):
    cni = capture(tmp_path, "--pcap-at", "node-1:cni0")
    assert cni and {r["frame.interface_name"] for r in cni} == {"node-1/cni0"}
    assert [r["tcp.flags.str"].replace("\u00b7", "") for r in cni if r["tcp.flags.str"]][:3] == ["S", "AS", "A"]
    node = capture(tmp_path, "--pcap-at", "node-1")                         # tcpdump -i any on node-1
    assert {r["frame.interface_name"] for r in node} == {"node-1/cni0", "node-1/flannel.1", "node-1/eth0"}
    pod = capture(tmp_path, "--pcap-at", "pod/client")
    assert {r["frame.interface_name"] for r in pod} == {"default/client/eth0"}
    bad = CliRunner().invoke(cli, ["trace", "-f", "example:httpd-app", "--from", "pod/client", "--to",
                                   "http://httpd-app/", "--pcap", str(tmp_path / "x.pcapng"), "--pcap-at", "node-1:wlan0"])
    assert bad.exit_code == 2 and "node-1 has no interface 'wlan0'" in bad.output
