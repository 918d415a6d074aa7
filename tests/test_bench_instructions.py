"""bench_instructions (machine instructions per data-plane operation under valgrind) in its quick
form: the workloads run, the set-up cancels out, the counts are sane. No speed assertion."""
from __future__ import annotations

import json
import shutil

import pytest

from netsim.benchmarks import bench_instructions as B


@pytest.mark.parametrize("what", B.WORKLOADS)
def test_the_workloads_run_as_measured(what):
    B._child(what, 3, 5)                 # natively: what valgrind runs, set-up and 3 operations


def test_per_operation_is_the_difference_over_the_extra_operations(monkeypatch, tmp_path):
    monkeypatch.setattr(B, "_instructions", lambda what, n, services: 1_000_000 + 2_500 * n)
    monkeypatch.setattr(B.shutil, "which", lambda name: "/usr/bin/valgrind")
    res = B.main(["--quick", "--what", "established,byname", "--out", str(tmp_path / "i.json")])
    assert [r["instructions_per_operation"] for r in res["results"]] == [2_500, 2_500]
    assert json.loads((tmp_path / "i.json").read_text()) == res
    with pytest.raises(SystemExit):
        B.main(["--what", "nonsense", "--out", str(tmp_path / "j.json")])


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (Debian package valgrind)")
def test_bench_instructions_quick_under_valgrind(tmp_path):
    res = B.main(["--quick", "--what", "established", "--services", "5", "--out", str(tmp_path / "i.json")])
    (row,) = res["results"]
    a, b = row["instructions"]
    assert b > a > 0
    # a 4-hop packet walk in CPython is tens to hundreds of thousands of instructions
    assert 10_000 < row["instructions_per_operation"] < 5_000_000
