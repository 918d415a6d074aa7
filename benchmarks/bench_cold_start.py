"""Cold start as a user meets it: whole `netsim` commands, each in a fresh process, on one big file.

    python -m netsim.benchmarks.bench_cold_start [--quick] [--services 10000] [--endpoints 5]
                                                 [--nodes 100] [--rounds 3] [--out FILE]

The cluster is bench_load's (N ClusterIP Services, one E-replica Deployment each, K nodes). Measured
per round, for each command: wall time, CPU time (user + system, from wait4's rusage: less sensitive
to other load on the machine than wall time) and peak RSS of the command's process:

- `netsim get svc -f FILE`                       (the baseline: load + print)
- `netsim trace -f FILE --from pod/C --to NAME`  (one trace by name: DNS, then two or more nodes' rules)
- the same trace with `--count 1000`             (what 999 more connections add)

and the issue's ratios, from medians of this one run: trace/get wall, CPU and RSS, count-1000 minus trace
wall. Every round is reported (median, min, max; nothing dropped). Results go to --out in the
`netsim bench` record format (source "emulator").
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


def run_command(argv: list[str]) -> dict:
    """Run one command to completion; its wall time, CPU time and peak RSS (its own rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):          # 1 = not delivered: still a completed trace
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {err.strip()[-300:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}


def pick_client_and_target(path: str, services: int) -> tuple[str, str]:
    """A client pod of the first app and the last Service's name (not measured)."""
    import netsim
    emu = netsim.load(path)
    client = sorted(p.name for p in emu.cluster.pods() if p.name.startswith("app-0-"))[0]
    return f"pod/{client}", f"app-{services - 1}.default:80"


def measure(services: int, endpoints: int, nodes: int, rounds: int,
            netsim_cmd: Optional[list[str]] = None) -> list[Record]:
    # what the `netsim` console script runs (netsim.cli.main:main), with this interpreter
    cmd = netsim_cmd or [sys.executable, "-c", "from netsim.cli.main import main; main()"]
    with tempfile.TemporaryDirectory(prefix="netsim-cold-") as tmp:
        path = os.path.join(tmp, "cluster.yaml")
        with open(path, "w") as f:
            f.write(cluster_yaml(services, endpoints, nodes))
        client, target = pick_client_and_target(path, services)
        commands = {
            "get_svc": cmd + ["get", "svc", "-f", path],
            "trace": cmd + ["trace", "-f", path, "--from", client, "--to", target],
            "trace_count_1000": cmd + ["trace", "-f", path, "--from", client, "--to", target, "--count", "1000"],
        }
        samples: dict[str, list[dict]] = {k: [] for k in commands}
        for _ in range(rounds):                      # interleaved, so slow periods hit every command
            for name, argv in commands.items():
                samples[name].append(run_command(argv))
    out: list[Record] = []
    for name, rows in samples.items():
        for key, unit, metric in (("wall_s", "s", "wall_time"), ("cpu_s", "s", "cpu_time"),
                                  ("rss_mib", "MiB", "peak_rss")):
            out.append(timed("iptables", services, endpoints, f"cold_{name}_{metric}", [r[key] for r in rows],
                             unit, "emulator", digits=3, nodes=nodes, command=name))
    med = {(name, key): statistics.median(r[key] for r in rows) for name, rows in samples.items()
           for key in ("wall_s", "cpu_s", "rss_mib")}
    for metric, value, unit in (
            ("cold_trace_over_get_wall", med[("trace", "wall_s")] / med[("get_svc", "wall_s")], "ratio"),
            ("cold_trace_over_get_cpu", med[("trace", "cpu_s")] / med[("get_svc", "cpu_s")], "ratio"),
            ("cold_trace_over_get_rss", med[("trace", "rss_mib")] / med[("get_svc", "rss_mib")], "ratio"),
            ("cold_count_1000_added_wall", med[("trace_count_1000", "wall_s")] - med[("trace", "wall_s")], "s")):
        out.append(Record("iptables", services, endpoints, metric, round(value, 3), unit, "emulator",
                          repeats=rounds, spread=None, labels={"nodes": nodes, "of": "medians of this run"}))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_cold_start",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 Services x 2 endpoints on 5 nodes, 2 rounds")
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    if a.quick:
        a.services, a.endpoints, a.nodes, a.rounds = 300, 2, 5, 2
    records = measure(a.services, a.endpoints, a.nodes, a.rounds)
    load = os.getloadavg()
    doc = {"schema": SCHEMA, "environment": environment(1, "quick" if a.quick else "full",
                                                         load_average=[round(x, 2) for x in load]),
           "results": [r.to_dict() for r in records]}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"cold start: {a.services} Services x {a.endpoints} endpoints on {a.nodes} nodes, {a.rounds} rounds "
          f"(load average {load[0]:.1f})")
    print(f"{'metric':44} {'median':>9} {'min':>9} {'max':>9} unit")
    for r in records:
        lo = r.spread["min"] if r.spread else r.value
        hi = r.spread["max"] if r.spread else r.value
        print(f"{r.metric:44} {r.value:9.3f} {lo:9.3f} {hi:9.3f} {r.unit}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
