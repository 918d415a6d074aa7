"""benchmarks/bench_api.py measures what it says (structure only; timings are never asserted)."""
from __future__ import annotations

from netsim.benchmarks.bench_api import bench_services


def test_bench_api_reports_every_round():
    r = bench_services(20, rounds=3, load_rounds=1)
    assert r["services"] == 20
    for key in ("copy", "trace_on_copy", "copy_plus_trace", "first_fault_on_copy", "first_trace_after_fault"):
        s = r[key]
        assert s["rounds"] == len(s["all_ms"]) == 3
        assert s["min_ms"] <= s["median_ms"] <= s["max_ms"]
    assert r["load"]["rounds"] == 1
