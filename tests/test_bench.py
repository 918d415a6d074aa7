"""`netsim bench`: the quick profile end to end (as CI runs it), the result format, --compare."""
from __future__ import annotations

import csv
import json
import os

import pytest
from click.testing import CliRunner

from netsim.benchmarks.compare import compare, render_compare
from netsim.benchmarks.harness import in_own_netns
from netsim.benchmarks.records import REQUIRED_FIELDS, SOURCES, Record, counted, read_results, timed
from netsim.cli.main import cli


def _one(records, **want):
    got = [r for r in records
           if all({"mode": r.mode, "services": r.services, "metric": r.metric,
                   "endpoints_per_service": r.endpoints_per_service, **r.labels}.get(k) == v
                  for k, v in want.items())]
    assert len(got) == 1, (want, got)
    return got[0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = CliRunner().invoke(cli, ["bench", "--profile", "quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, res


def test_quick_profile_records_have_their_fields(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text())
    env = data["environment"]
    for key in ("kernel", "cpu", "python", "packages", "iptables", "commit", "seed"):
        assert key in env, key
    assert data["results"], "no records"
    for row in data["results"]:
        missing = [k for k in REQUIRED_FIELDS if k not in row]
        assert not missing, (row, missing)
        assert row["source"] in SOURCES
        if row["spread"] is not None and row["unit"] in ("s", "traces/s", "packets/s"):
            assert row["repeats"] >= 5 and len(row["rounds"]) == row["repeats"], row
            assert row["spread"]["min"] <= row["value"] <= row["spread"]["max"], row
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(data["results"])


def test_quick_profile_iptables_grows_with_services_ipvs_and_nftables_are_flat(quick_run):
    out, _ = quick_run
    _, records = read_results(out / "results.json")
    for position in ("last", "middle"):
        small = _one(records, mode="iptables", services=100, metric="rules_first_packet", position=position)
        big = _one(records, mode="iptables", services=1000, metric="rules_first_packet", position=position)
        assert big.value >= 5 * small.value, (position, small.value, big.value)
    for mode in ("ipvs", "nftables"):
        for metric, extra in (("rules_first_packet", {"position": "last"}),
                              ("rules_first_packet", {"position": "first"}), ("rules_first_packet_mean", {}),
                              ("rules_first_packet_p99", {}), ("rules_established_packet", {})):
            small = _one(records, mode=mode, services=100, metric=metric, **extra)
            big = _one(records, mode=mode, services=1000, metric=metric, **extra)
            assert big.value == small.value, (mode, metric, small.value, big.value)
    # nftables: the last Service costs what the first does (one verdict-map rule dispatches them all)
    assert _one(records, mode="nftables", services=1000, metric="rules_first_packet", position="last").value == \
        _one(records, mode="nftables", services=1000, metric="rules_first_packet", position="first").value
    # nftables' table grows with the Services (a chain per Service and per endpoint), its walk does not
    assert _one(records, mode="nftables", services=1000, metric="ruleset_chains").value >= \
        10 * _one(records, mode="nftables", services=100, metric="ruleset_chains").value // 2
    # the rule-set size follows kube-proxy's TestNumberIptablesRules: nat = 5 + N * (2 + 3E)
    assert _one(records, mode="iptables", services=1000, metric="ruleset_rules", table="nat").value == 5 + 1000 * 5
    assert _one(records, mode="ipvs", services=1000, metric="virtual_servers").value == 1000


def test_quick_profile_kernel_records_exist_when_root(quick_run):
    out, res = quick_run
    _, records = read_results(out / "results.json")
    kernel = [r for r in records if r.source == "kernel"]
    if os.geteuid() != 0 or not in_own_netns():
        assert not kernel and "skipping kernel measurements" in res.output
        pytest.skip("not root inside a private network namespace: the kernel records are (rightly) absent")
    for backend in ("iptables-nft", "iptables-legacy"):
        for n in (100, 1000):
            load = _one(records, mode="iptables", services=n, metric="kernel_load_seconds", backend=backend,
                        tool="iptables-restore")
            assert load.repeats >= 5 and load.value > 0
            for position in ("first", "last"):
                p50 = _one(records, mode="iptables", services=n, metric="kernel_first_connection_latency_p50",
                           backend=backend, position=position)
                assert p50.repeats >= 100 and p50.value > 0
    floor = _one(records, services=0, metric="kernel_first_connection_latency_p50", position="pod-ip")
    assert floor.labels["rules"] == "none"
    assert _one(records, mode="ipvs", services=1000, metric="kernel_load_seconds", tool="ipset restore").value > 0
    # nftables mode: its table through `nft -f` (full, then the one-endpoint change), its first connection
    for n in (100, 1000):
        assert _one(records, mode="nftables", services=n, metric="kernel_load_seconds", tool="nft -f").value > 0
        assert _one(records, mode="nftables", services=n, metric="kernel_incremental_seconds",
                    tool="nft -f").value > 0
        for position in ("first", "last"):
            p50 = _one(records, mode="nftables", services=n, metric="kernel_first_connection_latency_p50",
                       position=position)
            assert p50.repeats >= 100 and p50.value > 0 and "vm" not in p50.labels


def test_compare_against_itself_flags_nothing_and_reports_every_metric(quick_run):
    out, _ = quick_run
    res = CliRunner().invoke(cli, ["bench", "--report-only", "--out", str(out),
                                   "--compare", str(out / "results.json")])
    assert res.exit_code == 0, res.output
    _, records = read_results(out / "results.json")
    assert f"compare: {len(records)} metrics, 0 changed beyond the measured spread" in res.output


def test_compare_flags_changes_beyond_the_spread():
    old = [timed("iptables", 100, 1, "render_seconds", [1.0, 1.1, 0.9, 1.0, 1.05], "s", "emulator"),
           counted("iptables", 100, 1, "ruleset_rules", 505, "rules")]
    new = [timed("iptables", 100, 1, "render_seconds", [2.0, 2.1, 1.9, 2.0, 2.2], "s", "emulator"),
           counted("iptables", 100, 1, "ruleset_rules", 505, "rules")]
    changes = compare(old, new)
    assert [c.flagged for c in changes] == [True, False]
    assert changes[0].ratio == pytest.approx(2.0)
    text = render_compare(changes)
    assert "1 changed beyond the measured spread" in text and "+100.0%" in text
    within = [timed("iptables", 100, 1, "render_seconds", [1.05, 1.0, 0.95, 1.02, 1.08], "s", "emulator")]
    assert not compare(old[:1], within)[0].flagged


def test_record_roundtrip_keeps_labels_and_rounds(tmp_path):
    from netsim.benchmarks.records import write_results
    r = timed("ipvs", 10, 1, "render_seconds", [0.1] * 5, "s", "emulator", sync="full")
    write_results(tmp_path, {"seed": 1}, [r])
    _, back = read_results(tmp_path / "results.json")
    assert back[0].to_dict() == r.to_dict() and back[0].labels == {"sync": "full"}
    with pytest.raises(ValueError):
        Record("iptables", 1, 1, "x", 1, "s", "guess")


def test_compare_with_a_file_that_is_not_results_is_a_one_line_error(tmp_path):
    bad = tmp_path / "old.json"
    bad.write_text('{"rows": []}')
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"environment": {}, "results": []}))
    res = CliRunner().invoke(cli, ["bench", "--report-only", "--out", str(out), "--compare", str(bad)])
    assert res.exit_code == 2
    assert f"{bad}: expected a netsim bench results.json" in res.output
    assert "Traceback" not in res.output


def test_quick_profile_writes_plots_and_a_report_from_the_results(quick_run):
    out, res = quick_run
    for name in ("rules_evaluated", "sync_time", "ruleset_size", "kernel_latency"):
        if name == "kernel_latency" and (os.geteuid() != 0 or not in_own_netns()):
            continue
        for ext in ("png", "svg"):
            assert (out / "plots" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
    report = (out / "REPORT.md").read_text()
    _, records = read_results(out / "results.json")
    rules = _one(records, mode="iptables", services=1000, metric="ruleset_rules", table="all")
    assert f"| 1,000 | {int(rules.value):,} | 1,000 |" in report          # the headline row, from the records
    assert "![rules evaluated vs Services](plots/rules_evaluated.png)" in report
    assert "https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/" in report
    (out / "REPORT.md").unlink()
    again = CliRunner().invoke(cli, ["bench", "--report-only", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / "REPORT.md").read_text() == report


def test_published_anchors_name_their_public_source():
    from netsim.benchmarks.anchors import FIRST_PACKET, published_ratio
    assert FIRST_PACKET and all(a.source.startswith("https://") for a in FIRST_PACKET)
    assert published_ratio("iptables", "kernel_first_connection_latency_p50", 5000, 30000) == pytest.approx(272 / 48)


def test_stage_groups_run_apart_merge_into_one_run(tmp_path):
    runner = CliRunner()
    parts = []
    for stage in ("sync", "first-packet"):
        out = tmp_path / stage
        res = runner.invoke(cli, ["bench", "--modes", "iptables", "--services", "10,100", "--no-kernel",
                                  "--stages", stage, "--out", str(out)])
        assert res.exit_code == 0, res.output
        parts.append(out / "results.json")
    res = runner.invoke(cli, ["bench", "--report-only", "--out", str(tmp_path / "all"),
                              *[a for p in parts for a in ("--merge", str(p))]])
    assert res.exit_code == 0, res.output
    env, merged = read_results(tmp_path / "all" / "results.json")
    assert len(merged) == sum(len(read_results(p)[1]) for p in parts)
    assert {r.labels["stage"] for r in merged} == {"sync", "first-packet"}
    assert env["merged_from"] == [str(p) for p in parts]
    report = (tmp_path / "all" / "REPORT.md").read_text()
    assert "ran as 2 processes" in report and "| first-packet |" in report          # a row per part
    assert [p["stages"] for p in env["parts"]] == [["sync"], ["first-packet"]]
    res = runner.invoke(cli, ["bench", "--stages", "sync,bogus", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--stages" in res.output


def test_further_scenarios_run_as_stages_in_the_one_result_format(tmp_path):
    """bench_iptables_engine, bench_modes, bench_load and bench_dns as `netsim bench` stages: records
    with every field, sources kept apart, their headline line, and a table each in REPORT.md."""
    from netsim.benchmarks.harness import EXTRA_STAGES, Profile, Progress, run_bench
    from netsim.benchmarks.report import write_report
    out = tmp_path / "extra"
    small = Profile("test", ("iptables", "ipvs"), (20, 200), (1,), repeats=5, engine_packets=200, modes_traces=20,
                    load_max_services=20, dns_seconds=0.1, dnsperf_seconds=1.0)
    lines: list[str] = []
    result = run_bench(small, out=out, kernel=False, progress=Progress(finish_stage=lambda s, h: lines.append(f"{s}: {h}")),
                       stages=EXTRA_STAGES)
    write_report(out, result.environment, result.records)
    assert [line.split(":")[0] for line in lines] == list(EXTRA_STAGES)
    assert all(": N=" in line for line in lines), lines
    raw = json.loads((out / "results.json").read_text())["results"]
    assert all(all(k in row for k in REQUIRED_FIELDS) for row in raw)
    _, recs = read_results(out / "results.json")
    assert {r.labels["stage"] for r in recs} == {"iptables-engine", "modes", "load", "dns"}
    assert all(r.source in SOURCES for r in recs)
    # timings are medians of the profile's repeats, with their spread
    for r in recs:
        if r.source == "emulator" and r.spread:
            assert r.repeats >= 5 and r.spread["min"] <= r.value <= r.spread["max"], r
    # the kernel's count grows with the Services in iptables mode (model), not in IPVS mode
    lo = _one(recs, metric="rules_evaluated_nat_prerouting_mean", services=20)
    hi = _one(recs, metric="rules_evaluated_nat_prerouting_mean", services=200)
    assert hi.value > 5 * lo.value and lo.source == "model"
    ipt = _one(recs, mode="iptables", metric="rules_first_packet_all_hops_mean", services=200)
    ipvs = _one(recs, mode="ipvs", metric="rules_first_packet_all_hops_mean", services=200)
    assert ipvs.value < ipt.value
    assert _one(recs, mode="ipvs", metric="node_virtual_servers", services=200).value == 200
    assert _one(recs, metric="load_yaml_seconds", services=20).mode == "any"
    # glibc's ndots:5 walk: a short name in the pod's own namespace is found first try (A + AAAA)
    short = _one(recs, metric="dns_queries_per_lookup", lookup="short (same namespace)")
    assert short.value == 2 and short.source == "model"
    report = (out / "REPORT.md").read_text()
    assert "## Further scenarios" in report and "| dns_queries_per_lookup | any |" in report
