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
    for command in ("get_svc", "trace", "trace_count_1000", "verify_predict", "pytest_first_test", "pytest_alone"):
        for metric in ("wall_time", "cpu_time", "peak_rss"):
            r = by[f"cold_{command}_{metric}"]
            assert len(r["rounds"]) == 2 and r["spread"]["min"] <= r["value"] <= r["spread"]["max"]
            assert r["value"] > 0
    # the trace does more than get (it loads the same cluster, then walks packets)
    assert by["cold_trace_cpu_time"]["value"] > by["cold_get_svc_cpu_time"]["value"] * 0.9
    assert by["cold_trace_over_get_rss"]["value"] > 0
    for name in ("trace", "verify_predict", "pytest_first_test"):
        assert by[f"cold_{name}_over_get_wall"]["value"] > 0
    # pytest with the fixture does more than pytest alone
    assert by["cold_pytest_first_test_cpu_time"]["value"] > by["cold_pytest_alone_cpu_time"]["value"]
    assert by["cold_pytest_first_test_without_pytest_over_get_cpu"]["value"] > 0
    assert len(doc["environment"]["loadavg_before"]) == 3 and len(doc["environment"]["loadavg_after"]) == 3


def test_count_memory_samples_rss_over_a_long_count_run(tmp_path):
    """benchmarks/bench_count_memory.py --quick: the CLI's --count run sampled from outside, every
    sample kept; the run printed its sums (no figure asserted: speed and memory live in benchmarks/)."""
    from netsim.benchmarks import bench_count_memory
    out = tmp_path / "mem.json"
    assert bench_count_memory.main(["--quick", "--out", str(out)]) == 0
    by = {r["metric"]: r for r in json.loads(out.read_text())["results"]}
    samples = by["count_run_rss_samples"]
    assert samples["rounds"] and len(samples["rounds"]) == len(samples["sample_times_s"])
    assert by["count_run_peak_rss"]["value"] >= max(samples["rounds"]) * 0.9
    assert any("2000 new connections" in line for line in by["count_run_connections_per_s"]["summary"])


def test_python_default_bytecode_writes_a_cache_the_commands_reuse(tmp_path):
    """--bytecode python-default: the children run without PYTHONDONTWRITEBYTECODE and with their own
    PYTHONPYCACHEPREFIX, so Python writes bytecode there; the mode is recorded with every figure."""
    env = bench_cold_start.child_env("python-default", str(tmp_path / "pyc"))
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path / "pyc")
    assert bench_cold_start.child_env("inherit", str(tmp_path / "x")) is None
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", "import netsim.control.model"], env=env, check=True)
    cached = list((tmp_path / "pyc").rglob("model*.pyc"))
    assert cached, "no bytecode written under PYTHONPYCACHEPREFIX"
    out = tmp_path / "cold.json"
    assert bench_cold_start.main(["--services", "20", "--endpoints", "1", "--nodes", "2", "--rounds", "2",
                                  "--bytecode", "python-default", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert rows and all(r["bytecode"] == "python-default" for r in rows)
