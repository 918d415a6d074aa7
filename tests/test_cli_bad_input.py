"""Bad input to the `netsim` commands ends in one line naming what was wrong and a non-zero exit,
never a traceback (DESIGN.md "Bad input names ... what was expected — never a traceback").

Name legality follows RFC 1035 §2.3.4 (labels 1-63 octets, names at most 255 octets on the wire);
the wording is dig's ("'a..b' is not a legal name (empty label)", ISC result texts).
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.dns.names import name_problem
from netsim.control.manifests import load
from netsim.dataplane.target import TargetError, parse_target

LONG_LABEL = "a" * 64


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_one_line_error(r, exit_code: int, text: str) -> None:
    assert r.exit_code == exit_code, r.output
    assert "Traceback" not in r.output
    assert text in r.output
    assert len([ln for ln in r.output.splitlines() if ln.startswith("Error:")]) == 1


@pytest.mark.parametrize("name, why", [
    ("a..b", "empty label"), (".x", "empty label"), ("a" * 64, "label too long"),
    (LONG_LABEL + ".com", "label too long"), (("a" * 63 + ".") * 4, "name too long"),
])
def test_illegal_names_say_why(name, why):
    assert name_problem(name) == why


@pytest.mark.parametrize("name", [".", "x.", "a" * 63, ("a" * 63 + ".") * 3 + "a" * 61, "my-svc.default.svc.cluster.local."])
def test_legal_names_pass(name):
    assert name_problem(name) is None


def test_dns_query_rejects_an_illegal_name_without_a_traceback():
    r = run("dns", "query", "-f", "example:httpd-app", "a..b")
    assert_one_line_error(r, 2, "'a..b' is not a legal name (empty label)")
    r = run("dns", "query", "-f", "example:httpd-app", LONG_LABEL, "--from", "pod/client")
    assert_one_line_error(r, 2, "is not a legal name (label too long)")


def test_dns_query_from_a_node_asks_for_a_pod():
    r = run("dns", "query", "-f", "example:httpd-app", "httpd-app", "--from", "node/node-1")
    assert_one_line_error(r, 2, "--from node/node-1: expected pod/NAME")
    r = run("dns", "query", "-f", "example:httpd-app", "httpd-app", "--from", "pod/nope")
    assert_one_line_error(r, 2, 'pod "nope" not found in namespace "default"')


def test_trace_rejects_an_illegal_target_name():
    with pytest.raises(TargetError, match=r"'a\.\.b' is not a legal name \(empty label\)"):
        parse_target("http://a..b/")
    r = run("trace", "-f", "example:httpd-app", "--from", "pod/client", "--to", f"{LONG_LABEL}:80")
    assert_one_line_error(r, 2, "is not a legal name (label too long)")


def test_trace_url_port_zero_is_refused_like_the_host_port_form():
    with pytest.raises(TargetError, match="port 0 out of range 1-65535"):
        parse_target("http://httpd-app:0/")
    with pytest.raises(TargetError, match="port 0 out of range 1-65535"):
        parse_target("httpd-app:0")
    assert parse_target("http://httpd-app/").port == 80


def test_trace_pcap_into_a_missing_directory(tmp_path):
    out = tmp_path / "no-such-dir" / "x.pcapng"
    r = run("trace", "-f", "example:httpd-app", "--from", "pod/client", "--to", "httpd-app:80", "--pcap", str(out))
    assert_one_line_error(r, 2, f"--pcap {out}: cannot write: No such file or directory")


def test_events_refuses_to_run_the_clock_backwards():
    r = run("events", "-f", "example:httpd-app", "--advance", "-5")
    assert r.exit_code == 2 and "Traceback" not in r.output and "x>=0" in r.output
    c = load("example:httpd-app")
    with pytest.raises(ValueError, match="only runs forward"):
        c.advance(-1)
    assert c.clock.now == 0


@pytest.mark.parametrize("argv, expected", [
    (["iptables", "replay", "--src", "10.0.0.1", "--dst", "10.96.0.1:80"], "iptables-save output"),
    (["ipvs", "replay", "--src", "10.0.0.1", "--to", "10.96.0.1:80"], "ipvsadm -Sn output"),
])
def test_replay_of_a_binary_dump(tmp_path, argv, expected):
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\x80\xf3\xff\x00garbage")
    r = run(*argv, "--dump", str(dump))
    assert_one_line_error(r, 2, f"{dump}: not a text file (expected {expected})")


def test_nftables_mode_is_loaded_rendered_and_traced(tmp_path):
    """nftables is a proxyMode kube-proxy has: the loader takes it without a notice, `rules` prints
    the table, and `trace` walks packets through it in `nft monitor trace` words."""
    from click.testing import CliRunner
    from netsim.cli.main import cli
    f = tmp_path / "nft.yaml"
    f.write_text("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: nft}\nspec: {proxyMode: nftables}\n")
    runner = CliRunner()
    got = runner.invoke(cli, ["get", "pods", "-A", "-f", str(f)])
    assert got.exit_code == 0 and "proxyMode nftables" not in got.output
    shown = runner.invoke(cli, ["rules", "-f", str(f), "--node", "node-1"])
    assert shown.exit_code == 0 and 'add table ip kube-proxy { comment "rules for kube-proxy" ; }' in shown.output
    res = runner.invoke(cli, ["trace", "-f", str(f), "--from", "node/node-1", "--to", "10.96.0.10:53", "--proto", "udp"])
    assert res.exit_code == 0, res.output
    assert "ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (verdict goto service-" \
        in res.output
