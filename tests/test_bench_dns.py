"""The DNS benchmarks in their quick form (as CI runs them): they run end to end and measure
something real. No timing assertion: the figures live in benchmarks/results and the README."""
from __future__ import annotations

import json
import shutil

from netsim.benchmarks import bench_dns, bench_dns_trace


def test_bench_dns_quick(tmp_path):
    out = tmp_path / "dns.json"
    assert bench_dns.main(["--quick", "--workers", "1,2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["queries"] for r in res["amplification"]][:2] == [2, 4]       # short name, name.namespace
    assert res["in_process_qps"] > 0 and res["in_process_qps_dnslib"] > 0
    assert res["garbage"]["answered"] == [True]                              # the good query got its answer
    if shutil.which("dnsperf") is None:
        assert "error" in res["dnsperf"]["1"]
        return
    for workers in ("1", "2"):
        run = res["dnsperf"][workers]["runs"][0]
        assert run["queries_completed"] > 0 and run["queries_per_second"] > 0


def test_bench_dns_trace_quick(tmp_path):
    out = tmp_path / "dns_trace.json"
    assert bench_dns_trace.main(["--quick", "--services", "20", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["first_trace_delivered"] and res["dns_queries_per_trace"] == 2        # A + AAAA, first search domain
    assert res["by_name_traces_per_s"]["median"] > 0 and len(res["by_name_traces_per_s"]["rounds"]) == 2
    assert res["by_ip_traces_per_s"]["median"] > 0
    share = res["by_name_share"]               # where a by-name trace's time goes (CPU time)
    assert 0 < share["dns_client_cpu_us"]["median"] < share["lookup_cpu_us"]["median"]
    assert share["dns_server_us"]["median"] > 0 and len(share["lookup_cpu_us"]["rounds"]) == 2
    situ = share["in_situ_cpu_us"]             # the same split timed inside the traces
    assert len(situ["trace"]["rounds"]) == 2
    assert 0 < situ["lookup"]["median"] < situ["trace"]["median"]
    assert 0 < situ["connection"]["median"] < situ["trace"]["median"]
    assert 0 < share["in_situ_lookup"] + share["in_situ_connection"] <= 1
