"""benchmarks/bench_cold_start.py in its smallest form: every command ran, every round is kept, the
ratios come from this run's medians (no timing assertion: speed lives in benchmarks/)."""
import json

from netsim.benchmarks import bench_cold_start
from netsim.benchmarks.records import REQUIRED_FIELDS


def test_cold_start_records_every_command_and_round(tmp_path):
    out = tmp_path / "cold.json"
    assert bench_cold_start.main(["--services", "40", "--endpoints", "1", "--nodes", "2", "--rounds", "2",
                                  "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert all(all(k in r for k in REQUIRED_FIELDS) for r in rows)
    by = {r["metric"]: r for r in rows}
    for command in ("get_svc", "trace", "trace_count_1000"):
        for metric in ("wall_time", "cpu_time", "peak_rss"):
            r = by[f"cold_{command}_{metric}"]
            assert len(r["rounds"]) == 2 and r["spread"]["min"] <= r["value"] <= r["spread"]["max"]
            assert r["value"] > 0
    # the trace does more than get (it loads the same cluster, then walks packets)
    assert by["cold_trace_cpu_time"]["value"] > by["cold_get_svc_cpu_time"]["value"] * 0.9
    assert by["cold_trace_over_get_rss"]["value"] > 0
    assert "load_average" in doc["environment"]
