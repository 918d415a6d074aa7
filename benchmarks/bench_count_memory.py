"""Memory over a long `netsim trace --count N` run: does it stay flat?

    python -m netsim.benchmarks.bench_count_memory [--quick] [--count 1000000] [--rates 1000,instant]
                                                   [--services 300] [--endpoints 2] [--nodes 5] [--out FILE]

One `netsim trace -f FILE --from pod/C --to CLUSTER-IP:80 --count N [--rate R]` process per rate (the
text output: the first trace in full, then the sums; no trace is kept once counted). The parent reads
the child's VmRSS from /proc/PID/status every --every seconds and reports every sample (elapsed
seconds, RSS MiB), the peak (VmHWM), and the growth from the sample at a quarter of the run to the
last one (flat: ~0; what grows with N: per-connection state kept forever). With ``--rate R`` the
connections are R per second of the cluster clock, so conntrack entries (SYN_RECV: 60 s, DNS over
UDP: 30 s) time out and the table holds about 60 x R per node; without, they all happen at one
instant and the table is bounded by nf_conntrack_max (131072, early_drop of unassured entries).
Load average before and after is recorded: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Optional

from netsim.benchmarks.bench_load import cluster_yaml
from netsim.benchmarks.records import SCHEMA, Record, environment

DEFAULT_OUT = os.path.join(os.path.dirname(__file__), "results", "count_memory.json")


def _status(pid: int) -> dict[str, float]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) / 1024
    except OSError:
        pass
    return out


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def pick(path: str) -> tuple[str, str]:
    """A client pod of the first app and the last app's ClusterIP:80 (not measured)."""
    import netsim
    em = netsim.load(path)
    client = sorted(p.name for p in em.cluster.pods() if p.name.startswith("app-0-"))[0]
    svcs = sorted((s for s in em.cluster.services() if s.name.startswith("app-")), key=lambda s: int(s.name[4:]))
    return f"pod/{client}", f"{svcs[-1].cluster_ip}:80"


def run_one(argv: list[str], every: float, progress: bool = False) -> dict:
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
        samples: list[tuple[float, float]] = []
        hwm = 0.0
        while proc.poll() is None:
            st = _status(proc.pid)
            if "VmRSS" in st:
                samples.append((round(time.perf_counter() - t0, 2), round(st["VmRSS"], 1)))
                hwm = max(hwm, st.get("VmHWM", 0.0))
                if progress:
                    print(f"  {samples[-1][0]:8.1f} s  RSS {samples[-1][1]:7.1f} MiB", flush=True)
            time.sleep(every)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode not in (0, 1) or "new connections" not in text:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-300:]}")
    summary = text[text.index("new connections") - 12:].strip().splitlines()
    return {"wall_s": wall, "samples": samples, "hwm_mib": round(hwm, 1), "summary": summary}


def measure(count: int, rates: list[Optional[float]], services: int, endpoints: int, nodes: int,
            every: float, progress: bool = False) -> list[Record]:
    cmd = [sys.executable, "-c", "from netsim.cli.main import main; main()"]
    out: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="netsim-mem-") as tmp:
        path = os.path.join(tmp, "cluster.yaml")
        with open(path, "w") as f:
            f.write(cluster_yaml(services, endpoints, nodes))
        client, target = pick(path)
        for rate in rates:
            argv = cmd + ["trace", "-f", path, "--from", client, "--to", target, "--count", str(count)]
            if rate is not None:
                argv += ["--rate", str(rate)]
            before = loadavg()
            r = run_one(argv, every, progress)
            after = loadavg()
            rss = [s[1] for s in r["samples"]]
            quarter = rss[len(rss) // 4] if rss else 0.0
            labels = {"count": count, "rate": rate if rate is not None else "one instant", "nodes": nodes,
                      "loadavg_before": before, "loadavg_after": after}
            out.append(Record("iptables", services, endpoints, "count_run_rss_samples", rss[-1] if rss else 0.0,
                              "MiB", "emulator", repeats=len(rss),
                              spread={"min": min(rss), "max": max(rss)} if rss else None,
                              labels={**labels, "every_s": every, "sample_times_s": [t for t, _ in r["samples"]]},
                              rounds=rss))
            out.append(Record("iptables", services, endpoints, "count_run_peak_rss", r["hwm_mib"], "MiB", "emulator",
                              repeats=1, spread=None, labels=labels))
            out.append(Record("iptables", services, endpoints, "count_run_rss_growth_after_first_quarter",
                              round((rss[-1] - quarter) if rss else 0.0, 1), "MiB", "emulator", repeats=1,
                              spread=None, labels=labels))
            out.append(Record("iptables", services, endpoints, "count_run_connections_per_s",
                              round(count / r["wall_s"], 1), "connections/s", "emulator", repeats=1, spread=None,
                              labels={**labels, "wall_s": round(r["wall_s"], 1), "summary": r["summary"]}))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_count_memory",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 connections on 50 Services, one rate")
    ap.add_argument("--count", type=int, default=1000000)
    ap.add_argument("--rates", default="1000,instant", help="comma-separated connections/s of the cluster clock; "
                                                            "'instant' = all at one instant")
    ap.add_argument("--services", type=int, default=300)
    ap.add_argument("--endpoints", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between RSS samples")
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    if a.quick:
        a.count, a.rates, a.services, a.endpoints, a.nodes, a.every = 2000, "100", 50, 2, 3, 0.2
    rates = [None if r.strip() == "instant" else float(r) for r in a.rates.split(",")]
    before = loadavg()
    records = measure(a.count, rates, a.services, a.endpoints, a.nodes, a.every, progress=not a.quick)
    doc = {"schema": SCHEMA, "environment": environment(1, "quick" if a.quick else "full",
                                                         loadavg_before=before, loadavg_after=loadavg()),
           "results": [r.to_dict() for r in records]}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"--count {a.count} on {a.services} Services x {a.endpoints} endpoints, {a.nodes} nodes "
          f"(load average before {before[0]:.1f})")
    for r in records:
        if r.metric == "count_run_rss_samples":
            print(f"rate {r.labels['rate']}: RSS every {a.every:g} s (MiB): "
                  + " ".join(f"{v:.0f}" for v in r.rounds or []))
        else:
            print(f"rate {r.labels['rate']}: {r.metric} {r.value} {r.unit}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
