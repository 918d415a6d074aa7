"""`netsim bench --vm`: the VM's records kept apart from this machine's kernel, the same-boot ratios
between modes, their plot and REPORT.md section; and (opt-in, NETSIM_VM_TESTS=1) one real boot.

The real boot runs the kernel-connect stage for iptables, IPVS and nftables at 100 Services inside
Debian's kernel under qemu without KVM (netsim.kernel.vm): several minutes on this shared machine,
so it is opt-in like tests/test_ipvs_vm.py and skips with the reason where qemu, the kernel package
or virtme-ng is missing.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
from click.testing import CliRunner

from netsim.benchmarks.records import Record, counted, distribution, read_results, timed
from netsim.benchmarks.vm_runner import VM_LABEL, mode_ratios
from netsim.cli.main import cli

RUNNER = "vm-6.1.0-test-amd64"


def _vm(records: list[Record]) -> list[Record]:
    for r in records:
        r.labels.update(kernel_runner=RUNNER, vm=VM_LABEL)
    return records


def _connect(mode: str, n: int, position: str, backend: str, us: float) -> list[Record]:
    samples = [us * 1e-6] * 99 + [us * 3e-6]
    recs = distribution(mode, n, 1, "kernel_first_connection_latency", samples, "µs", "kernel", scale=1e6,
                        position=position, backend=backend, rules="kube-proxy")
    recs.append(timed(mode, n, 1, "kernel_cpu_per_connection", [us * 2e-6] * 5, "µs", "kernel", scale=1e6,
                      position=position, backend=backend, rules="kube-proxy", process="client"))
    return recs


def _boot() -> list[Record]:
    """What one VM boot returns at 100 and 1,000 Services (iptables grows, IPVS and nftables do not)."""
    recs: list[Record] = []
    for n, ipt in ((100, 200.0), (1000, 400.0)):
        for position, scale in (("first", 0.5), ("last", 1.0)):
            recs += _connect("iptables", n, position, "iptables-nft", ipt * scale)
            recs += _connect("iptables", n, position, "iptables-legacy", ipt * scale * 0.8)
            recs += _connect("ipvs", n, position, "ipvs", 150.0)
            recs += _connect("nftables", n, position, "nftables", 120.0)
        recs.append(timed("iptables", n, 1, "kernel_load_seconds", [1.0] * 5, "s", "kernel",
                          backend="iptables-nft", tool="iptables-restore"))
        recs.append(timed("ipvs", n, 1, "kernel_load_seconds", [0.5] * 5, "s", "kernel", backend="ipset",
                          tool="ipset restore"))
    return _vm(recs)


def test_ratios_are_each_mode_over_iptables_nft_of_the_same_boot_for_connections_only():
    recs = _boot()
    ratios = mode_ratios(recs, RUNNER)
    by = {(r.mode, r.services, r.metric, r.labels.get("position")): r for r in ratios}
    assert {r.mode for r in ratios} == {"ipvs", "nftables"}                 # iptables is the baseline
    assert by[("ipvs", 1000, "kernel_first_connection_latency_p50_ratio_to_iptables", "last")].value == \
        pytest.approx(150 / 400, abs=1e-3)
    assert by[("nftables", 100, "kernel_first_connection_latency_p50_ratio_to_iptables", "first")].value == \
        pytest.approx(120 / 100, abs=1e-3)
    assert by[("ipvs", 100, "kernel_cpu_per_connection_ratio_to_iptables", "last")].value == \
        pytest.approx(300 / 400, abs=1e-3)
    # loads are not divided: their tools differ between modes
    assert not [r for r in ratios if r.metric.startswith("kernel_load")]
    for r in ratios:
        assert r.source == "kernel" and r.unit == "ratio" and r.labels["vm"] == VM_LABEL
        assert r.labels["ratio"] == f"{r.mode} / iptables (same VM boot)"
    # every (mode, size, position) has p50, p99 and CPU ratios, nothing twice
    assert len(ratios) == len(by) == 2 * 2 * 2 * 3


def test_vm_figures_get_their_own_plot_and_section_never_the_host_columns(tmp_path):
    pytest.importorskip("matplotlib")
    from netsim.benchmarks.report import write_report
    vm = _boot()
    records = vm + mode_ratios(vm, RUNNER)
    # this machine's kernel: iptables only, other values than the VM's
    records += _connect("iptables", 1000, "last", "iptables-nft", 25.0)
    records += _connect("iptables", 1000, "first", "iptables-nft", 14.0)
    records.append(counted("iptables", 1000, 1, "ruleset_rules", 5023, "rules", table="all"))
    # a further scenario's record that counts no endpoints (bench_dns) leaves the sweep's plots and rows alone
    records.append(counted("any", 5, 0, "dns_queries_per_lookup", 2, "queries", stage="dns"))
    env = {"kernel": "6.18", "skipped": []}
    write_report(tmp_path, env, records)
    for ext in ("png", "svg"):
        assert (tmp_path / "plots" / f"vm_ratios.{ext}").stat().st_size > 1000
        assert (tmp_path / "plots" / f"ruleset_size.{ext}").stat().st_size > 1000
    report = (tmp_path / "REPORT.md").read_text()
    assert "![VM: ratio to iptables](plots/vm_ratios.png)" in report
    assert "software-emulated" in report and RUNNER in report
    assert "At 1,000 Services: ipvs 0.38× iptables' p50 to the last Service" in report
    assert "| – | 1,000 | last | nftables | 0.30 | 0.30 | 0.30 |" in report
    # the headline's kernel column is this machine's 25 µs, not the VM's 400 µs
    assert not [line for line in report.splitlines() if line.startswith("| 5 |")]
    row = next(line for line in report.splitlines() if line.startswith("| 1,000 | 5,023 |"))
    assert "| 25 / – / – |" in row, row


def vm_skip_reason() -> str | None:
    if os.environ.get("NETSIM_VM_TESTS", "0") in ("", "0"):
        return ("VM tests are opt-in (NETSIM_VM_TESTS=1): one boot of Debian's kernel under software "
                "emulation and a cluster per mode in it take 5-10 minutes on a shared machine")
    from netsim.kernel import vm
    return vm.unavailable_reason()


@pytest.mark.vm
@pytest.mark.kernel
def test_bench_vm_measures_ipvs_beside_iptables_and_nftables_in_one_boot(tmp_path):
    why = vm_skip_reason()
    if why:
        pytest.skip(why)
    out = tmp_path / "vm"
    res = CliRunner().invoke(cli, ["bench", "--vm", "--stages", "kernel-connect", "--modes", "iptables,ipvs,nftables",
                                   "--services", "100", "--backends", "iptables-nft", "--connections", "50",
                                   "--out", str(out)])
    print(res.output, file=sys.stderr)
    assert res.exit_code == 0, res.output
    _, records = read_results(out / "results.json")
    assert records and all(r.labels.get("vm") == VM_LABEL for r in records)
    env = json.loads((out / "results.json").read_text())["environment"]
    assert env["kernel_runner"].startswith("vm-")
    for mode in ("ipvs", "nftables"):
        for position in ("first", "last"):
            got = [r for r in records if r.mode == mode and r.labels.get("position") == position
                   and r.metric == "kernel_first_connection_latency_p50_ratio_to_iptables"]
            assert len(got) == 1 and got[0].value > 0, (mode, position, got)
    assert (out / "plots" / "vm_ratios.png").exists()
