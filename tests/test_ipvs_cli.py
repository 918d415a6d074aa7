"""`netsim ipvs show` / `netsim ipvs replay` and `netsim rules --mode ipvs`."""
from __future__ import annotations

from click.testing import CliRunner

from netsim.cli.main import cli


def test_show_lists_the_node_table():
    r = CliRunner().invoke(cli, ["ipvs", "show", "-f", "example:httpd-app", "--node", "node-2"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("IP Virtual Server version 1.2.1 (size=4096)\n")
    assert "TCP  192.168.49.3:30080 rr\n" in r.output          # NodePort on node-2's address


def test_rules_mode_ipvs_prints_three_sections():
    r = CliRunner().invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", "--mode", "ipvs"])
    assert r.exit_code == 0, r.output
    assert "# ipvsadm -Sn (node node-1)" in r.output and "create KUBE-CLUSTER-IP hash:ip,port" in r.output


def test_replay_a_dump_schedules_round_robin(tmp_path):
    dump = tmp_path / "ipvs.txt"
    dump.write_text("-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 192.168.49.2:6443 -m -w 1\n"
                    "-a -t 10.96.0.1:443 -r 192.168.49.3:6443 -m -w 1\n")
    r = CliRunner().invoke(cli, ["ipvs", "replay", "--dump", str(dump), "--src", "10.244.0.5",
                                 "--to", "10.96.0.1:443", "--count", "3"])
    assert r.exit_code == 0, r.output
    chosen = [line.rsplit(" ", 1)[1] for line in r.output.splitlines() if " dnat " in line]
    # ipvsadm -R adds in file order; the kernel list is newest first: .3 then .2
    assert chosen == ["192.168.49.3:6443", "192.168.49.2:6443", "192.168.49.3:6443"]
    assert "  -> 192.168.49.3:6443            Masq    1      2          0         " in r.output


def test_replay_bad_dump_is_one_line_error(tmp_path):
    dump = tmp_path / "bad.txt"
    dump.write_text("-A -t 10.96.0.1:443 -s nope\n")
    r = CliRunner().invoke(cli, ["ipvs", "replay", "--dump", str(dump), "--src", "1.1.1.1", "--to", "10.96.0.1:443"])
    assert r.exit_code == 2
    assert r.output.strip() == f"Error: {dump}:1: unknown scheduler 'nope' (expected one of rr, wrr, lc, wlc, sed, nq, lblc, lblcr, sh, dh, mh)"
