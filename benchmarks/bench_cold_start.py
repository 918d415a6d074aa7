"""Cold start as a user meets it: whole `netsim` commands, each in a fresh process, on one big file.

    python -m netsim.benchmarks.bench_cold_start [--quick] [--services 10000] [--endpoints 5]
                                                 [--nodes 100] [--rounds 3] [--out FILE]

The cluster is bench_load's (N ClusterIP Services, one E-replica Deployment each, K nodes). Measured
per round, for each command: wall time, CPU time (user + system, from wait4's rusage: less sensitive
to other load on the machine than wall time) and peak RSS of the command's process:

- `netsim get svc -f FILE`                       (the baseline: load + print)
- `netsim trace -f FILE --from pod/C --to NAME`  (one trace by name: DNS, then two or more nodes' rules)
- the same trace with `--count 1000`             (what 999 more connections add)
- verify's prediction side                       (`netsim verify`'s emulator half, netsim.kernel.verify.judge:
  load, one Walker, predict() for 20 ClusterIP flows from random pods; the kernel half is not run)
- the pytest plugin's first test                 (`pytest` on one test using the ``netsim_cluster`` fixture
  that traces once: pytest start-up, load, every node's rules prepared, the copy, the trace)
- pytest alone                                   (the same `pytest` command on a test that uses no netsim
  fixture: pytest's own start-up and that of the plugins installed beside it, e.g. hypothesis's, which
  imports hypothesis at the end of every session; what the first test's figure holds that is not netsim's)

and the issue's ratios, from medians of this one run: trace/get wall, CPU and RSS, count-1000 minus trace
wall, and pytest's first test without pytest's own start-up ((first test - pytest alone) / get). Every round is reported (median, min, max; nothing dropped). Results go to --out in the
`netsim bench` record format (source "emulator").

``--bytecode`` says how the commands' Python treats its bytecode cache: ``inherit`` (the default) runs
them with this process's environment, so a shell with PYTHONDONTWRITEBYTECODE set (this project's
machines) makes every command compile netsim's modules, and pytest rewrite and compile every module it
rewrites (hypothesis's plugin's too), again in every round; ``python-default`` unsets
PYTHONDONTWRITEBYTECODE and points PYTHONPYCACHEPREFIX at a fresh directory, as an ordinary install
runs (Python writes its bytecode cache, pytest keeps its rewritten modules: "Assertion rewriting",
docs.pytest.org). That cache starts empty, so the first round of every command pays the compilation
and later rounds reuse it; every round is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

from netsim.benchmarks.bench_load import cluster_yaml
from netsim.benchmarks.records import SCHEMA, Record, environment, timed

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "results", "cold_start.json")


def run_command(argv: list[str], expect: str = "", env: Optional[dict] = None) -> dict:
    """Run one command to completion; its wall time, CPU time and peak RSS (its own rusage). Its
    standard output must contain ``expect`` (a command that stopped early is no measurement)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1) or expect not in text:      # 1 = not delivered: still a completed trace
        raise RuntimeError(f"{' '.join(argv)} exited {code} (expected {expect!r} in its output): "
                           f"{(err or text).strip()[-300:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


VERIFY_PREDICT = """
import random, sys
import netsim
from netsim.control.heap import one_shot_process
one_shot_process()                 # as the netsim command (netsim verify) runs
from netsim.dataplane.walker import Walker
from netsim.kernel.verify import FlowSpec, predict
cluster = netsim.load(sys.argv[1]).cluster
rng = random.Random(0)
pods = sorted((p for p in cluster.pods() if p.ip and not p.host_network and p.namespace == "default"),
              key=lambda p: p.key)
svcs = sorted((s for s in cluster.services() if s.name.startswith("app-")), key=lambda s: s.key)
walker = Walker(cluster)
outcomes = []
for _ in range(int(sys.argv[2])):
    p, s = rng.choice(pods), rng.choice(svcs)
    spec = FlowSpec(f"pod/{p.name}", p.namespace, "", s.cluster_ip, 80, "TCP", f"ClusterIP {s.key}:80")
    outcomes.append(sorted(predict(walker, spec, spec.dst).outcomes)[0][0])
print("predicted", len(outcomes), "flows:", sorted(set(outcomes)))
"""

PYTEST_FIRST = """
import pytest

pytestmark = pytest.mark.netsim(manifests={path!r})


def test_first(netsim_cluster):
    t = netsim_cluster.trace({client!r}, {target!r})
    assert t.outcome.disposition == "DELIVERED", t
"""

PYTEST_ALONE = """
def test_alone():
    assert sum(range(3)) == 3
"""


PICK_CLIENT = """
import sys
import netsim
emu = netsim.load(sys.argv[1])
print(sorted(p.name for p in emu.cluster.pods() if p.name.startswith("app-0-"))[0])
"""


def pick_client_and_target(path: str, services: int) -> tuple[str, str]:
    """A client pod of the first app and the last Service's name (not measured). Loaded in a child
    process: a command's peak RSS (wait4's ru_maxrss) counts the image it was forked from until its
    exec (Linux exec_mmap keeps the old mm's high-water mark), so this process must stay small."""
    out = subprocess.run([sys.executable, "-c", PICK_CLIENT, path], check=True, capture_output=True, text=True)
    return f"pod/{out.stdout.strip()}", f"app-{services - 1}.default:80"


def child_env(bytecode: str, cache_dir: str) -> Optional[dict]:
    """The commands' environment for ``--bytecode`` (see the module's docstring); None: inherit ours."""
    if bytecode == "inherit":
        return None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def measure(services: int, endpoints: int, nodes: int, rounds: int,
            netsim_cmd: Optional[list[str]] = None, bytecode: str = "inherit") -> list[Record]:
    # what the `netsim` console script runs (netsim.cli.main:main), with this interpreter
    cmd = netsim_cmd or [sys.executable, "-c", "from netsim.cli.main import main; main()"]
    with tempfile.TemporaryDirectory(prefix="netsim-cold-") as tmp:
        path = os.path.join(tmp, "cluster.yaml")
        with open(path, "w") as f:
            f.write(cluster_yaml(services, endpoints, nodes))
        client, target = pick_client_and_target(path, services)
        test_file = os.path.join(tmp, "test_first.py")
        with open(test_file, "w") as f:
            f.write(PYTEST_FIRST.format(path=path, client=client, target=target))
        alone_file = os.path.join(tmp, "test_alone.py")
        with open(alone_file, "w") as f:
            f.write(PYTEST_ALONE)
        commands = {
            "get_svc": (cmd + ["get", "svc", "-f", path], "app-0"),
            "trace": (cmd + ["trace", "-f", path, "--from", client, "--to", target], "DELIVERED"),
            "trace_count_1000": (cmd + ["trace", "-f", path, "--from", client, "--to", target, "--count", "1000"],
                                 "1000 new connections"),
            "verify_predict": ([sys.executable, "-c", VERIFY_PREDICT, path, "20"], "predicted 20 flows"),
            "pytest_first_test": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                                   "addopts=", "--rootdir", tmp, test_file], "1 passed"),
            "pytest_alone": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                              "addopts=", "--rootdir", tmp, alone_file], "1 passed"),
        }
        env = child_env(bytecode, os.path.join(tmp, "pycache"))
        samples: dict[str, list[dict]] = {k: [] for k in commands}
        load_before = loadavg()
        for _ in range(rounds):                      # interleaved, so slow periods hit every command
            for name, (argv, expect) in commands.items():
                samples[name].append(run_command(argv, expect, env))
        load_after = loadavg()
    out: list[Record] = []
    for name, rows in samples.items():
        for key, unit, metric in (("wall_s", "s", "wall_time"), ("cpu_s", "s", "cpu_time"),
                                  ("rss_mib", "MiB", "peak_rss")):
            out.append(timed("iptables", services, endpoints, f"cold_{name}_{metric}", [r[key] for r in rows],
                             unit, "emulator", digits=3, nodes=nodes, command=name, bytecode=bytecode))
    med = {(name, key): statistics.median(r[key] for r in rows) for name, rows in samples.items()
           for key in ("wall_s", "cpu_s", "rss_mib")}
    ratios = []
    for name in ("trace", "verify_predict", "pytest_first_test"):
        for key, short in (("wall_s", "wall"), ("cpu_s", "cpu"), ("rss_mib", "rss")):
            ratios.append((f"cold_{name}_over_get_{short}", med[(name, key)] / med[("get_svc", key)], "ratio"))
    for key, short in (("wall_s", "wall"), ("cpu_s", "cpu")):
        own = med[("pytest_first_test", key)] - med[("pytest_alone", key)]
        ratios.append((f"cold_pytest_first_test_without_pytest_over_get_{short}", own / med[("get_svc", key)],
                       "ratio"))
    ratios += [("cold_count_1000_added_wall", med[("trace_count_1000", "wall_s")] - med[("trace", "wall_s")], "s"),
               ("cold_count_1000_added_cpu", med[("trace_count_1000", "cpu_s")] - med[("trace", "cpu_s")], "s")]
    for metric, value, unit in ratios:
        out.append(Record("iptables", services, endpoints, metric, round(value, 3), unit, "emulator",
                          repeats=rounds, spread=None,
                          labels={"nodes": nodes, "of": "medians of this run", "loadavg_before": load_before,
                                  "loadavg_after": load_after, "bytecode": bytecode}))
    return out


def loadavg() -> list[float]:
    """/proc/loadavg's 1, 5 and 15 minute figures (the machine is shared: recorded with each run)."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_cold_start",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 Services x 2 endpoints on 5 nodes, 2 rounds")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--bytecode", choices=("inherit", "python-default"), default="inherit",
                    help="the commands' bytecode cache: this environment's, or Python's default (see above)")
    a = ap.parse_args(argv)
    if a.quick:
        a.services, a.endpoints, a.nodes, a.rounds = 300, 2, 5, 2
    before = loadavg()
    records = measure(a.services, a.endpoints, a.nodes, a.rounds, bytecode=a.bytecode)
    load = loadavg()
    doc = {"schema": SCHEMA, "environment": environment(1, "quick" if a.quick else "full",
                                                         loadavg_before=before, loadavg_after=load),
           "results": [r.to_dict() for r in records]}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"cold start: {a.services} Services x {a.endpoints} endpoints on {a.nodes} nodes, {a.rounds} rounds "
          f"(load average before {before[0]:.1f}, after {load[0]:.1f}; bytecode: {a.bytecode})")
    print(f"{'metric':44} {'median':>9} {'min':>9} {'max':>9} unit")
    for r in records:
        lo = r.spread["min"] if r.spread else r.value
        hi = r.spread["max"] if r.spread else r.value
        print(f"{r.metric:44} {r.value:9.3f} {lo:9.3f} {hi:9.3f} {r.unit}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
