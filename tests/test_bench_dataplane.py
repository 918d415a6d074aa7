"""bench_dataplane in its quick form (as CI runs it): every round is reported and counted, every
trace is delivered with its reply un-NATed, established packets take their 4 hops. No timing
assertion: speed goals live in benchmarks/ (issue 16, aim 2)."""
from __future__ import annotations

import json

from netsim.benchmarks import bench_dataplane


def test_bench_dataplane_quick(tmp_path):
    out = tmp_path / "dataplane.json"
    res = bench_dataplane.main(["--quick", "--sizes", "20,200", "--rounds", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == res
    assert res["loadavg_before"] and res["loadavg_after"]
    for row in res["traces"]:
        st = row["traces_per_s_stats"]
        assert len(st["rounds"]) == 3 and st["min"] <= st["median"] <= st["max"]
        assert row["traces_per_s"] == st["median"]              # the median round, not the best
        assert row["traces"] == 300 and row["delivered_with_reply_last_round"] >= 285   # a rare port clash drops one
        assert row["kernel_rules_per_trace"] > 0
        assert len(row["collector_per_round"]) == 3 and all(r["gen0"] >= 0 for r in row["collector_per_round"])
    assert res["traces"][1]["kernel_rules_per_trace"] > res["traces"][0]["kernel_rules_per_trace"]
    est = res["established"]
    assert est["hops_per_packet"] == 4.0 and est["final_disposition"] == "DELIVERED"
    assert len(est["packets_per_s_stats"]["rounds"]) == 3
    assert set(res["aims_met"]) == {"traces_per_s", "slowdown_max", "established_per_s"}
