"""`netsim check`: own expectation files and netassert v2 test files, table/TAP/JSON output, exit
status 0/1/2, one-line errors naming the entry of a malformed file."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli

OWN = """
- {from: pod/client, namespace: shop, to: "http://frontend/", expect: delivered, pods: "frontend-*", port: 8080,
   balanced: {n: 300}}
- {from: external, to: "192.168.49.241:443", expect: delivered, snat: false}
- {from: pod/client, namespace: shop, to: "http://nothing/", expect: unresolved}
"""
WRONG = """
- {name: backend is blocked, from: pod/client, namespace: shop, to: "backend:8080", expect: rejected}
"""
NETASSERT = """
- name: client-to-frontend
  type: k8s
  protocol: tcp
  targetPort: 8080
  timeoutSeconds: 20
  attempts: 3
  exitCode: 0
  src:
    k8sResource: {kind: pod, name: client, namespace: shop}
  dst:
    k8sResource: {kind: deployment, name: frontend, namespace: shop}
- name: frontend-to-db-port-9999
  type: k8s
  protocol: tcp
  targetPort: 9999
  exitCode: 1
  src:
    k8sResource: {kind: deployment, name: frontend, namespace: shop}
  dst:
    host: {name: db.shop.svc.cluster.local}
"""


def run(tmp_path, text, *args):
    f = tmp_path / "expect.yaml"
    f.write_text(text)
    return CliRunner().invoke(cli, ["check", "-f", "example:shop", "--expect", str(f), *args])


def test_all_met_in_both_modes(tmp_path):
    r = run(tmp_path, OWN, "--mode", "iptables", "--mode", "ipvs")
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS") == 6 and "6 passed, 0 failed" in r.output


def test_a_failure_exits_1_and_prints_its_trace(tmp_path):
    r = run(tmp_path, WRONG)
    assert r.exit_code == 1
    assert "FAIL     iptables   backend is blocked" in r.output
    assert "=== FAIL [iptables] backend is blocked" in r.output
    assert "but it was DELIVERED to shop/backend-" in r.output and "RULE         nat:KUBE-SEP-" in r.output


def test_netassert_file_unchanged_with_tap(tmp_path):
    r = run(tmp_path, NETASSERT, "-o", "tap")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if not line.startswith("skipped")]
    assert lines[:2] == ["TAP version 14", "1..6"]           # 3 frontend pods as destinations, 3 as sources
    assert all(line.startswith("ok ") for line in lines[2:])
    assert "ok 1 - client-to-frontend (shop/client -> shop/frontend-" in r.output


def test_netassert_failure_in_tap(tmp_path):
    r = run(tmp_path, NETASSERT.replace("exitCode: 0", "exitCode: 1"), "-o", "tap", "--format", "netassert")
    assert r.exit_code == 1
    assert "not ok 1 - client-to-frontend" in r.output and "  expected: not_delivered" in r.output
    assert "  got: delivered" in r.output and "  message: |" in r.output


def test_json_output(tmp_path):
    r = run(tmp_path, WRONG, "-o", "json")
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["schema"] == "netsim.check/v1" and doc["results"][0]["ok"] is False
    assert doc["results"][0]["got"] == "delivered"


@pytest.mark.parametrize("text, message", [
    ("- {from: pod/client, to: x:80, expect: maybe}", "entry 1: expect: 'maybe': expected one of delivered"),
    ("- {from: pod/client, to: x:80, expect: delivered}\n- {name: two, to: x:80, expect: delivered}",
     "entry 2 (two): from: Required value"),
    ("- {from: pod/client, to: x:80, expect: delivered, colour: red}", "entry 1: unknown field 'colour'"),
    ("- {from: pod/client, to: x:80, expect: rejected, pods: a}", "entry 1: pods: only meaningful with expect"),
    ("- {from: pod/client, to: x:80, expect: delivered, port: eighty}", "entry 1: port: expected int"),
    ("- {from: pod/client, to: x:80, expect: delivered, balanced: lots}", "entry 1: balanced: expected true"),
    ("from: pod/client", "expected a non-empty YAML list of expectations, got dict"),
    ("- [unclosed", "line 1: not valid YAML"),
    (NETASSERT.replace("  targetPort: 9999\n", ""), "entry 2 (frontend-to-db-port-9999): targetPort: Required"),
    (NETASSERT.replace("name: frontend, namespace: shop}\n  dst:\n    host",
                       "name: nope, namespace: shop}\n  dst:\n    host"),
     "entry 2 (frontend-to-db-port-9999): src.k8sResource: no running pod of deployment shop/nope"),
    (NETASSERT.replace("exitCode: 1", "exitCode: 3"), "exitCode: 3: expected 0 (connects) or 1"),
])
def test_malformed_files_are_one_line_errors_naming_the_entry(tmp_path, text, message):
    r = run(tmp_path, text)
    assert r.exit_code == 2, r.output
    err = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and message in err[0], r.output


def test_unreadable_expectation_file(tmp_path):
    r = CliRunner().invoke(cli, ["check", "-f", "example:shop", "--expect", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2 and "none.yaml: cannot read" in r.output
