"""Exit status follows grep's convention for every command: 0 delivered, 1 not delivered, 2 usage or
input error (README "Exit status")."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli

from walker_cluster import SCENARIO_YAML


@pytest.fixture
def manifest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(SCENARIO_YAML % {"pod_network": "vxlan"})
    return str(p)


def code(*args: str) -> int:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False).exit_code


def test_trace_delivered_0_not_delivered_1_bad_input_2(manifest):
    assert code("trace", "-f", manifest, "--from", "pod/client-1", "--to", "web:80") == 0
    assert code("trace", "-f", manifest, "--from", "pod/client-1", "--to", "empty:80") == 1
    assert code("trace", "-f", manifest, "--from", "pod/client-1", "--to", "empty:80", "--count", "3") == 1
    assert code("trace", "-f", manifest, "--from", "pod/client-1", "--to", "web:80", "--count", "3") == 0
    assert code("trace", "-f", manifest, "--from", "pod/nobody", "--to", "web:80") == 2
    assert code("trace", "-f", manifest, "--from", "pod/client-1") == 2          # missing --to: usage


@pytest.mark.parametrize("args", [
    ["get", "pods", "-f", "/no/such.yaml"],
    ["rules", "-f", "example:httpd-app", "--node", "node-9"],
    ["events", "-f", "example:httpd-app", "--stop-node", "node-9"],
    ["dns", "query", "-f", "example:shop", "a..b"],
    ["get", "pods", "-f", "example:nope"],
    ["ipvs", "show", "-f", "example:httpd-app", "--node", "node-9"],
    ["get", "frobs", "-f", "example:httpd-app"],
])
def test_every_input_error_exits_2(args):
    assert code(*args) == 2


def test_dns_answered_0_not_answered_1():
    assert code("dns", "query", "-f", "example:shop", "db-0.db.shop.svc.cluster.local") == 0
    assert code("dns", "query", "-f", "example:shop", "nothing.shop.svc.cluster.local") == 1
    assert code("dns", "query", "-f", "example:shop", "backend", "--from", "pod/client", "-n", "shop") == 0
    assert code("dns", "query", "-f", "example:shop", "nothing", "--from", "pod/client", "-n", "shop") == 1


def test_replay_accept_0_drop_1(tmp_path):
    dump = tmp_path / "d.rules"
    dump.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                    "-A OUTPUT -d 10.0.0.2/32 -j DROP\nCOMMIT\n")
    base = ["iptables", "replay", "--dump", str(dump), "--src", "10.0.0.1", "--hook", "OUTPUT"]
    assert code(*base, "--dst", "10.0.0.3:80") == 0
    assert code(*base, "--dst", "10.0.0.2:80") == 1
