"""kube-proxy's own ports per node (10249 /proxyMode /metrics, 10256 /healthz /livez): names, types and
values after a sync and after an endpoint change, in the emulator and on a kernel-backed node."""
from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from netsim.cli.main import cli
from netsim.control.manifests import load
from netsim.dataplane.proxy_status import HEALTH_TIMEOUT_SECONDS, KubeProxyNode

# pkg/proxy/metrics/metrics.go: RegisterMetrics(ProxyModeIPTables) families and their types
IPTABLES_FAMILIES = {
    "kubeproxy_sync_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_full_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_sync_partial_proxy_rules_duration_seconds": "histogram",
    "kubeproxy_network_programming_duration_seconds": "histogram",
    "kubeproxy_sync_proxy_rules_last_timestamp_seconds": "gauge",
    "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds": "gauge",
    "kubeproxy_sync_proxy_rules_endpoint_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_endpoint_changes": "counter",          # the parser drops _total
    "kubeproxy_sync_proxy_rules_service_changes_pending": "gauge",
    "kubeproxy_sync_proxy_rules_service_changes": "counter",
    "kubeproxy_sync_proxy_rules_iptables_restore_failures": "counter",
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures": "counter",
    "kubeproxy_sync_proxy_rules_iptables_total": "gauge",
    "kubeproxy_sync_proxy_rules_iptables_last": "gauge",
    "kubeproxy_sync_proxy_rules_no_local_endpoints_total": "gauge",
}


def parse(text: str) -> dict:
    """family name -> (type, {(sample name, frozenset(labels)): value})"""
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = (fam.type, {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples})
    return out


def value(fams: dict, family: str, sample: str = "", **labels) -> float:
    return fams[family][1][(sample or family, frozenset(labels.items()))]


def nat_rules(text: str) -> int:
    table, n = None, 0
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table == "nat" and line.startswith("-A "):
            n += 1
    return n


def test_metrics_names_types_and_values_after_a_sync_and_an_endpoint_change():
    cluster = load(["example:httpd-app"])
    kp = KubeProxyNode(cluster, "node-1")
    services, slices = len(cluster.services()), len(cluster.endpoint_slices())
    kp.sync()
    code, ctype, body = kp.answer(10249, "/metrics")
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    fams = parse(body)
    assert {n: t for n, (t, _) in fams.items() if n in IPTABLES_FAMILIES} == IPTABLES_FAMILIES
    assert "# HELP kubeproxy_sync_proxy_rules_duration_seconds [ALPHA] SyncProxyRules latency in seconds" in body
    # buckets: ExponentialBuckets(0.001, 2, 15)
    les = sorted(float(dict(k[1])["le"]) for k in fams["kubeproxy_sync_proxy_rules_duration_seconds"][1]
                 if k[0].endswith("_bucket"))
    assert les[:3] == [0.001, 0.002, 0.004] and les[-2] == pytest.approx(16.384) and len(les) == 16
    assert value(fams, "kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_proxy_rules_duration_seconds_count") == 1
    assert value(fams, "kubeproxy_sync_full_proxy_rules_duration_seconds",
                 "kubeproxy_sync_full_proxy_rules_duration_seconds_count") == 1
    assert value(fams, "kubeproxy_sync_proxy_rules_service_changes",
                 "kubeproxy_sync_proxy_rules_service_changes_total") == services
    assert value(fams, "kubeproxy_sync_proxy_rules_endpoint_changes",
                 "kubeproxy_sync_proxy_rules_endpoint_changes_total") == slices
    assert value(fams, "kubeproxy_sync_proxy_rules_endpoint_changes_pending") == 0
    # the gauges hold what the proxier wrote: the node's nat rules
    from netsim.rules.iptables.proxier import restore_text
    full_nat = nat_rules(restore_text(cluster, "node-1"))
    assert value(fams, "kubeproxy_sync_proxy_rules_iptables_total", table="nat") == full_nat
    assert value(fams, "kubeproxy_sync_proxy_rules_iptables_last", table="nat") == full_nat
    synced_at = value(fams, "kubeproxy_sync_proxy_rules_last_timestamp_seconds")
    assert abs(synced_at - time.time()) < 60

    # one endpoint more: a partial sync (KEP-3453) that writes fewer nat rules than the node holds
    web = next(w for w in cluster.workloads() if w.name == "httpd-app")
    cluster.scale(web.namespace, web.name, web.replicas + 1)
    assert kp.pending
    body = kp.answer(10249, "/metrics")[2]
    assert value(parse(body), "kubeproxy_sync_proxy_rules_endpoint_changes_pending") >= 1
    kp.sync()
    fams = parse(kp.answer(10249, "/metrics")[2])
    assert value(fams, "kubeproxy_sync_proxy_rules_endpoint_changes",
                 "kubeproxy_sync_proxy_rules_endpoint_changes_total") > slices
    assert value(fams, "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                 "kubeproxy_sync_partial_proxy_rules_duration_seconds_count") == 1
    assert value(fams, "kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_proxy_rules_duration_seconds_count") == 2
    assert value(fams, "kubeproxy_network_programming_duration_seconds",
                 "kubeproxy_network_programming_duration_seconds_count") >= 1
    total = value(fams, "kubeproxy_sync_proxy_rules_iptables_total", table="nat")
    assert total == nat_rules(restore_text(cluster, "node-1")) > full_nat
    assert value(fams, "kubeproxy_sync_proxy_rules_iptables_last", table="nat") < total


def test_ipvs_mode_registers_its_own_families_only():
    cluster = load(["example:httpd-app"])
    kp = KubeProxyNode(cluster, "node-2", "ipvs")
    kp.sync()
    assert kp.answer(10249, "/proxyMode") == (200, "text/plain; charset=utf-8", "ipvs")
    fams = parse(kp.answer(10249, "/metrics")[2])
    assert "kubeproxy_sync_proxy_rules_iptables_restore_failures" in fams
    assert "kubeproxy_sync_full_proxy_rules_duration_seconds" not in fams
    assert "kubeproxy_sync_proxy_rules_iptables_total" not in fams


def test_healthz_and_livez_shape_and_the_health_timeout():
    cluster = load(["example:httpd-app"])
    kp = KubeProxyNode(cluster, "node-1")
    kp.sync()
    code, ctype, body = kp.answer(10256, "/healthz")
    assert (code, ctype) == (200, "application/json")
    go_time = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC m=\+\d+\.\d{9}"
    assert re.fullmatch(rf'\{{"lastUpdated": "{go_time}","currentTime": "{go_time}", "nodeEligible": true\}}', body)
    assert json.loads(body)["nodeEligible"] is True
    code, _, body = kp.answer(10256, "/livez")
    assert code == 200 and set(json.loads(body)) == {"lastUpdated", "currentTime"}
    # a change queued longer than healthTimeout (2 x syncPeriod) and not synced: 503
    cluster.scale("default", "httpd-app", 3)
    kp.status.oldest_pending_ns -= int((HEALTH_TIMEOUT_SECONDS + 1) * 1e9)
    assert kp.answer(10256, "/healthz")[0] == 503 and kp.answer(10256, "/livez")[0] == 503
    fams = parse(kp.answer(10249, "/metrics")[2])
    assert value(fams, "kubeproxy_proxy_healthz", "kubeproxy_proxy_healthz_total", code="503") == 1
    assert value(fams, "kubeproxy_proxy_healthz", "kubeproxy_proxy_healthz_total", code="200") == 1
    kp.sync()
    assert kp.answer(10256, "/healthz")[0] == 200
    assert kp.answer(10249, "/nothing")[0] == 404


def test_proxy_status_cli():
    runner = CliRunner()
    res = runner.invoke(cli, ["proxy-status", "-f", "example:httpd-app", "--node", "node-2"])
    assert res.exit_code == 0 and res.output == "iptables\n"
    res = runner.invoke(cli, ["proxy-status", "-f", "example:httpd-app", "--node", "node-2", "--path", "/metrics"])
    assert res.exit_code == 0
    fams = parse(res.output)
    assert value(fams, "kubeproxy_sync_full_proxy_rules_duration_seconds",
                 "kubeproxy_sync_full_proxy_rules_duration_seconds_count") == 1
    res = runner.invoke(cli, ["proxy-status", "-f", "example:httpd-app", "--node", "node-2", "--path", "/healthz"])
    assert res.exit_code == 0 and json.loads(res.output)["nodeEligible"] is True
    res = runner.invoke(cli, ["proxy-status", "-f", "example:httpd-app", "--node", "node-9"])
    assert res.exit_code == 2 and "node 'node-9' not found (nodes: node-1, node-2, node-3)" in res.output
    res = runner.invoke(cli, ["proxy-status", "-f", "example:httpd-app", "--node", "node-2", "--path", "/x"])
    assert res.exit_code == 1 and "404 page not found" in res.output


@pytest.mark.kernel
def test_kernel_node_answers_on_its_kube_proxy_ports(kernel_run_dir):
    from kernel_helpers import require_root_and_tools
    from netsim.kernel import netns
    from netsim.rules.iptables import kernel as rules
    require_root_and_tools("curl")
    from netsim.kernel.build import KernelCluster
    cluster = load(["example:httpd-app"])
    kc = KernelCluster.up(cluster, "kp" + uuid.uuid4().hex[:5])
    try:
        ns = kc.plan.nodes["node-1"].netns

        def curl(url: str) -> str:
            return netns.run(ns, ["curl", "-s", "--max-time", "5", url]).stdout

        assert curl("127.0.0.1:10249/proxyMode") == "iptables"
        fams = parse(curl("127.0.0.1:10249/metrics"))
        assert {n: t for n, (t, _) in fams.items() if n in IPTABLES_FAMILIES} == IPTABLES_FAMILIES
        # the gauge counts what iptables-restore really loaded: the nat table minus the 3 built-in jumps
        loaded = nat_rules(rules.save(ns, counters=False)) - 3
        assert value(fams, "kubeproxy_sync_proxy_rules_iptables_total", table="nat") == loaded
        assert value(fams, "kubeproxy_sync_full_proxy_rules_duration_seconds",
                     "kubeproxy_sync_full_proxy_rules_duration_seconds_count") == 1
        health = json.loads(curl("127.0.0.1:10256/healthz"))
        assert health["nodeEligible"] is True
        before = value(fams, "kubeproxy_sync_proxy_rules_endpoint_changes",
                       "kubeproxy_sync_proxy_rules_endpoint_changes_total")
        cluster.scale("default", "httpd-app", 3)
        kc.reconcile()
        fams = parse(curl("127.0.0.1:10249/metrics"))
        assert value(fams, "kubeproxy_sync_proxy_rules_endpoint_changes",
                     "kubeproxy_sync_proxy_rules_endpoint_changes_total") > before
        assert value(fams, "kubeproxy_sync_proxy_rules_duration_seconds",
                     "kubeproxy_sync_proxy_rules_duration_seconds_count") == 2
        assert value(fams, "kubeproxy_sync_proxy_rules_iptables_total", table="nat") == \
            nat_rules(rules.save(ns, counters=False)) - 3
        assert value(fams, "kubeproxy_proxy_healthz", "kubeproxy_proxy_healthz_total", code="200") == 1
    finally:
        kc.down()
