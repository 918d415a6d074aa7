"""netsim reach on Dask distributed: a LocalCluster run equals the serial run, and a worker killed in
the middle of a run is survived (its batches are computed again elsewhere).

Dask's LocalCluster talks TCP over 127.0.0.1. The suite runs under ``unshare --net``, where the
loopback is down; there each test runs its body in a network namespace of its own (``unshare --net``,
``ip link set lo up``) in a fresh interpreter and compares what it reports."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is the optional extra "
                                  "kube-netsim[reach] (scripts/test.sh installs it); without it "
                                  "--engine dask refuses to start")

from netsim.reach.evaluate import ModelSpec   # noqa: E402
from netsim.reach.executors import DaskExecutor, SerialExecutor  # noqa: E402
from netsim.reach.inventory import Inventory  # noqa: E402
from netsim.reach.matrix import class_tasks, execute  # noqa: E402
from netsim.reach.plan import Planner  # noqa: E402
from netsim.reach.run import reach  # noqa: E402

SRC = "example:httpd-app"
TESTS = os.path.dirname(os.path.abspath(__file__))


def _loopback_up() -> bool:
    import socket
    try:
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            with socket.create_connection(srv.getsockname(), timeout=2):
                return True
    except OSError:
        return False


def _with_loopback(body: str) -> dict:
    """``body()`` (a function of this module) where 127.0.0.1 works: here when the loopback is up,
    else in a fresh interpreter in a network namespace of its own with lo brought up."""
    if _loopback_up():
        return globals()[body]()
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("no loopback in this network namespace and no way to make one with it (needs root, "
                    "unshare and ip): Dask's LocalCluster talks TCP over 127.0.0.1")
    code = (f"import json, sys; sys.path.insert(0, {TESTS!r}); import test_reach_dask as t; "
            f"print('RESULT ' + json.dumps(t.{body}()))")
    r = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
                        'ip link set lo up && exec "$0" -c "$1"', sys.executable, code],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the body in its own namespace failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


def _rows(run) -> list:
    return sorted([r["key"], r["mode"], r["disposition"], r["branches"], r["snat"]] for r in run.matrix.rows)


def local_cluster_body() -> dict:
    serial = reach([("v", [SRC])], ["iptables"], engine="serial")
    dask = reach([("v", [SRC])], ["iptables"], engine="dask", workers=2, batch_size=4)
    return {"serial": _rows(serial), "dask": _rows(dask)}


def killed_worker_body() -> dict:
    import netsim
    planner = Planner([Inventory.from_emulator(netsim.load(SRC), "v")])
    spec = ModelSpec((("v", (SRC,)),))
    tasks = class_tasks(planner, planner.plan(), ["iptables"])
    want = execute(SerialExecutor(), spec, tasks, batch_size=2)
    ex = DaskExecutor(workers=2)
    killed: list[int] = []

    def kill_one(_recs):
        if killed:
            return
        pids = ex.client.run(os.getpid)                   # {worker address: pid}
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL)                      # the worker process dies mid-run; its nanny restarts it
        killed.append(pid)

    try:
        ex.start(spec)
        got = execute(ex, spec, tasks, batch_size=2, on_batch=kill_one, start=False)
    finally:
        ex.close()
    flat = lambda recs: {"|".join(k): [r["disposition"], r["branches"]] for k, r in recs.items()}  # noqa: E731
    return {"killed": killed, "batches": -(-len(tasks) // 2), "got": flat(got), "want": flat(want)}


def test_dask_local_cluster_equals_serial():
    out = _with_loopback("local_cluster_body")
    assert out["dask"] == out["serial"] and len(out["serial"]) > 10


def test_a_killed_worker_is_survived():
    out = _with_loopback("killed_worker_body")
    assert out["killed"] and out["batches"] > 2
    assert out["got"] == out["want"]
