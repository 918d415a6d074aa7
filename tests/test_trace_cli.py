"""`netsim trace` / `netsim demo`: text, the JSON schema, --count summaries, --pcap, errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.dataplane.target import TargetError, parse_target, split_service_name
from netsim.dataplane.trace import SCHEMA

from walker_cluster import SCENARIO_YAML


@pytest.fixture
def manifest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(SCENARIO_YAML % {"pod_network": "vxlan"})
    return str(p)


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_parse_targets():
    t = parse_target("http://web.default:8080/x")
    assert (t.host, t.port, t.http, t.path) == ("web.default", 8080, True, "/x")
    assert parse_target("http://web/").port == 80
    assert (parse_target("web:http").port_name, parse_target("10.96.0.1:53").is_ip) == ("http", True)
    assert split_service_name("web.shop.svc.cluster.local", "default", "cluster.local") == ("web", "shop")
    assert split_service_name("web", "shop", "cluster.local") == ("web", "shop")
    with pytest.raises(TargetError, match="out of range"):
        parse_target("web:70000")
    with pytest.raises(TargetError, match="only http"):
        parse_target("ftp://web/")


def test_text_trace_by_name_uses_dns_through_the_data_plane(manifest):
    r = run("trace", "-f", manifest, "--from", "pod/client-1", "--to", "http://web/")
    assert r.exit_code == 0, r.output
    assert "note  DNS web.default.svc.cluster.local. A -> 10.96.0.10:53 (DNAT to kube-system/coredns-" in r.output
    assert "DELIVERED default/web-" in r.output and "HTTP/1.1 200 OK" in r.output
    assert '"default/web:http cluster IP"' in r.output


def test_json_schema(manifest):
    r = run("trace", "-f", manifest, "--from", "external", "--to", "192.168.49.4:30080", "-o", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["schema"] == SCHEMA and d["mode"] == "iptables"
    assert set(d["flow"]) >= {"client", "proto", "src", "sport", "dst", "dport", "target", "resolved_by"}
    assert [p["direction"] for p in d["packets"]] == ["request", "reply"]
    hop = d["packets"][0]["hops"][1]
    assert hop["host"] == "node-3" and hop["kind"] == "node"
    rule = next(s for s in hop["steps"] if s["action"] == "RULE")
    assert set(rule) >= {"table", "chain", "rule", "rule_number"}
    o = d["outcome"]
    assert o["disposition"] == "DELIVERED" and o["reply"]["matches_request"] is True
    assert o["reply"]["from"] == "192.168.49.4:30080" and d["rules_evaluated"] > 0


def test_count_summary(manifest):
    r = run("trace", "-f", manifest, "--from", "pod/client-3", "--to", "web:80", "--count", "40", "--seed", "5")
    assert r.exit_code == 0, r.output
    assert "40 new connections" in r.output
    assert "default/web-1 10.244.0.2:8080" in r.output and "default/web-2 10.244.1.3:8080" in r.output
    assert "outcomes: DELIVERED 40" in r.output
    j = json.loads(run("trace", "-f", manifest, "--from", "pod/client-3", "--to", "web:80",
                       "--count", "10", "-o", "json").stdout)
    assert j["count"] == 10 and sum(j["endpoints"].values()) == 10 and len(j["traces"]) == 10


def test_failed_trace_exits_1_and_bad_input_exits_2(manifest):
    r = run("trace", "-f", manifest, "--from", "pod/client-1", "--to", "empty:80")
    assert r.exit_code == 1 and "REJECTED" in r.output
    r = run("trace", "-f", manifest, "--from", "pod/nobody", "--to", "web:80")
    assert r.exit_code == 2 and "no pod 'nobody' in namespace 'default'" in r.output
    assert "Traceback" not in r.output
    # a ClusterIP is not routable from outside the cluster: the router has no route for it
    r = run("trace", "-f", manifest, "--from", "external", "--to", "web:80")
    assert r.exit_code == 1 and "direct lookup in the cluster model" in r.output
    assert "NO_ROUTE router" in r.output


def test_conntrack_flag_lists_node_tables(manifest):
    r = run("trace", "-f", manifest, "--from", "external", "--to", "192.168.49.4:30080", "--conntrack")
    assert r.exit_code == 0, r.output
    assert "# conntrack -L (node node-3)" in r.output
    line = next(l for l in r.output.splitlines() if l.startswith("tcp ") and "dport=30080" in l)
    assert "SYN_RECV src=192.168.49.100 dst=192.168.49.4" in line and "dst=10.244.2.0" in line


def test_pcap_option(manifest, tmp_path):
    out = tmp_path / "x.pcapng"
    r = CliRunner().invoke(cli, ["trace", "-f", manifest, "--from", "pod/client-1", "--to", "10.244.1.3:8080",
                                 "--pcap", str(out)])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a" and b"node-1/flannel.1" in data


def test_demo_runs_every_mode():
    r = run("demo", "--count", "4")
    assert r.exit_code == 0, r.output
    assert "=== [iptables] example:httpd-app (the httpd-app example with a client pod): pod client -> " \
           "Service httpd-app by name" in r.output
    assert "=== [iptables] example:httpd-app (the httpd-app example with a client pod): external client -> " \
           "NodePort 30080" in r.output
    assert "=== [ipvs] example:kubectl-httpd" in r.output
    assert "=== [nftables] example:kubectl-httpd" in r.output
    assert r.output.count("4 new connections") == 9         # three demos in each of the three modes


def test_an_unresolvable_name_is_a_trace_outcome(manifest):
    """UNRESOLVED in text and JSON, exit 1 (not delivered), never an input error."""
    r = run("trace", "-f", manifest, "--from", "pod/client-1", "--to", "http://nothing/")
    assert r.exit_code == 1, r.output
    assert "-> ? TCP   (http://nothing/)" in r.stdout
    assert "note  DNS nothing.default.svc.cluster.local. A -> 10.96.0.10:53" in r.stdout
    # no upstreamDNS table: the last query of the search walk ("nothing.") gets SERVFAIL, so EAI_AGAIN
    assert "UNRESOLVED default/client-1\n  nothing: cannot resolve 'nothing': EAI_AGAIN (8 queries)" in r.stdout
    j = json.loads(run("trace", "-f", manifest, "--from", "node/node-1", "--to", "nothing:80", "-o", "json").stdout)
    assert j["schema"] == SCHEMA and j["packets"] == [] and j["flow"]["dst"] is None and j["flow"]["dport"] == 80
    assert j["outcome"]["disposition"] == "UNRESOLVED" and j["outcome"]["client_error"] == "EAI_NONAME"
    assert "no Service 'nothing' in namespace 'default'" in j["outcome"]["detail"]
    many = run("trace", "-f", manifest, "--from", "external", "--to", "nothing:80", "--count", "3", "-o", "json")
    assert many.exit_code == 1 and json.loads(many.stdout)["outcomes"] == {"UNRESOLVED": 3}


def test_count_prints_the_documented_summary_schema(manifest):
    """`--count N -o json` is netsim.trace-summary/v1, exactly the fields README documents."""
    r = run("trace", "-f", manifest, "--from", "pod/client-1", "--to", "web:80", "--count", "4", "-o", "json")
    s = json.loads(r.stdout)
    assert list(s) == ["schema", "count", "outcomes", "endpoints", "first", "traces"]
    assert s["schema"] == "netsim.trace-summary/v1" and s["count"] == 4 and sum(s["outcomes"].values()) == 4
    assert s["first"]["schema"] == SCHEMA and len(s["traces"]) == 4
    assert all(list(t) == ["outcome", "flow"] for t in s["traces"])
    assert all(key.startswith("default/web-") and key.rsplit(" ", 1)[1].count(":") == 1 for key in s["endpoints"])
