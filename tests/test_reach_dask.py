"""netsim reach on Dask distributed: a LocalCluster run equals the serial run, and a worker killed in
the middle of a run is survived (its batches are computed again elsewhere)."""
from __future__ import annotations

import os
import signal

import pytest

distributed = pytest.importorskip("distributed", reason="Dask distributed is the optional extra "
                                  "kube-netsim[reach]; without it --engine dask refuses to start")



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


if not _loopback_up():
    pytest.skip("no loopback in this network namespace (lo down under unshare --net): Dask's LocalCluster "
                "talks TCP over 127.0.0.1", allow_module_level=True)

from netsim.reach.evaluate import ModelSpec   # noqa: E402
from netsim.reach.executors import DaskExecutor, SerialExecutor  # noqa: E402
from netsim.reach.inventory import Inventory  # noqa: E402
from netsim.reach.matrix import class_tasks, execute  # noqa: E402
from netsim.reach.plan import Planner  # noqa: E402
from netsim.reach.run import reach  # noqa: E402

SRC = "example:httpd-app"


def _rows(run):
    return sorted((r["key"], r["mode"], r["disposition"], r["branches"], r["snat"]) for r in run.matrix.rows)


def test_dask_local_cluster_equals_serial():
    serial = reach([("v", [SRC])], ["iptables"], engine="serial")
    dask = reach([("v", [SRC])], ["iptables"], engine="dask", workers=2, batch_size=4)
    assert _rows(dask) == _rows(serial) and len(serial.matrix.rows) > 10


def test_a_killed_worker_is_survived():
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
    assert killed
    assert {k: (r["disposition"], r["branches"]) for k, r in got.items()} == \
        {k: (r["disposition"], r["branches"]) for k, r in want.items()}
