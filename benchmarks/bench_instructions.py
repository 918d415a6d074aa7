"""Machine instructions per data-plane operation, counted by valgrind: a measure the load of a shared
machine does not move, for A/B comparisons of the warm path (issue 16, aim 2) where timings cannot.

    python -m netsim.benchmarks.bench_instructions [--quick] [--what established,trace,byname] [--out FILE]

Each workload runs twice in a child Python under ``valgrind --tool=cachegrind --cache-sim=no``
(valgrind's instruction count, "I refs"), with N1 and then N2 operations after the same set-up; the
difference divided by N2 − N1 is the instructions per operation, the set-up (imports, the cluster,
the first walks, every node's chains compiled as bench_dataplane's warm-up does) cancelling out.
PYTHONHASHSEED is fixed and the set-up's objects are frozen out of the collector's passes before the operations (gc.freeze), so a run repeats to within a few
instructions and two trees laid out differently compare fairly; the collector's young passes over
what the operations allocate are counted. The workloads are bench_dataplane's and bench_dns_trace's, at 100 Services:

* ``established``: a further packet (ACK) of one open connection, 4 hops;
* ``trace``: a new connection to a random ClusterIP, SYN and SYN-ACK walked, every step recorded;
* ``byname``: ``Emulator.trace("pod/client", "http://svc-N")``: the pod's DNS lookup, then the
  connection with its HTTP request and response.

Instructions are not time (a cache miss costs more than an add), but for the same Python on the
same machine fewer instructions for the same work is faster; results go to
benchmarks/results/instructions.json with the commit, the counts and the rates they imply nowhere.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from netsim.benchmarks.records import git_commit

RESULTS = os.path.join(os.path.dirname(__file__), "results", "instructions.json")
WORKLOADS = ("established", "trace", "byname")
# operations (N1, N2) per workload: full and --quick
COUNTS = {"established": ((100, 600), (20, 120)), "trace": ((100, 600), (20, 120)), "byname": ((50, 250), (10, 50))}


def _settled() -> None:
    """After the set-up: collect, and freeze what is left out of later collections (gc.freeze), so
    that a whole-heap pass over the set-up's objects does not fall into one run's operations and
    not the other's (it moved counts by ~3% between runs of the same code laid out differently)."""
    import gc
    gc.collect()
    gc.freeze()


def _child(what: str, n: int, services: int) -> None:
    """The workload itself (run under valgrind): set-up, then ``n`` operations."""
    import random
    if what in ("established", "trace"):
        from netsim.benchmarks.bench_dataplane import build_cluster
        from netsim.dataplane.walker import Walker
        from netsim.skb.packet import Packet
        c = build_cluster(services)
        w = Walker(c, "iptables")
        client = w.host_for("pod/client")
        ips = [s.cluster_ip for s in c.services() if s.name.startswith("svc-")]
        w.connect(client, ips[0], 80)
        for node in ("node-1", "node-2", "node-3"):     # as bench_dataplane's warm-up: every chain compiled
            compile_all = getattr(getattr(w.netfilter(node), "engine", None), "compile_all", None)
            if compile_all is not None:
                compile_all()
        if what == "established":
            t = w.connect(client, ips[0], 80, sport=45000)
            pkt = Packet.tcp(t.flow.src, ips[0], 45000, 80, flags="A", seq=1, ack=1)
            for _ in range(50):
                w.send(client, pkt.copy())
            _settled()
            for _ in range(n):
                w.send(client, pkt.copy())
        else:
            rng = random.Random(3)
            for i in range(100 + n):
                if i == 100:
                    _settled()
                if i % 100 == 0:
                    c.advance(5)            # as bench_dataplane: half-open entries expire as they would
                w.connect(client, rng.choice(ips), 80)
        return
    import netsim
    from netsim.benchmarks.bench_api import cluster_yaml
    em = netsim.load(cluster_yaml(services))
    em.prepare()
    rng = random.Random(5)
    for i in range(20 + n):
        if i == 20:
            _settled()
        em.trace("pod/client", f"http://svc-{rng.randrange(services)}")


def _instructions(what: str, n: int, services: int) -> int:
    """valgrind's instruction count of one child run."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
           sys.executable, "-m", "netsim.benchmarks.bench_instructions", "--child", what, str(n), str(services)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    m = re.search(r"I\s+refs:\s+([\d,]+)", p.stderr)
    if p.returncode != 0 or m is None:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-5:])
        raise RuntimeError(f"bench_instructions: {what} x {n} under valgrind failed (exit {p.returncode}): {tail}")
    return int(m.group(1).replace(",", ""))


def measure(what: str, quick: bool = False, services: int = 100) -> dict:
    n1, n2 = COUNTS[what][1 if quick else 0]
    a, b = _instructions(what, n1, services), _instructions(what, n2, services)
    return {"workload": what, "services": services, "operations": [n1, n2], "instructions": [a, b],
            "instructions_per_operation": round((b - a) / (n2 - n1))}


def main(argv: Optional[list[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_instructions",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer operations (CI's sanity run)")
    ap.add_argument("--what", default=",".join(WORKLOADS), help=f"workloads, of {', '.join(WORKLOADS)}")
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--child", nargs=3, metavar=("WHAT", "N", "SERVICES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return {}
    what = [w for w in args.what.split(",") if w]
    bad = [w for w in what if w not in WORKLOADS]
    if bad:
        ap.error(f"--what: unknown workload {bad[0]!r} (expected {', '.join(WORKLOADS)})")
    if shutil.which("valgrind") is None:
        ap.error("valgrind is not installed (Debian: apt-get install valgrind)")
    rows = [measure(w, args.quick, args.services) for w in what]
    out = {"benchmark": "instructions", "quick": args.quick, "commit": git_commit(), "python": platform.python_version(),
           "machine": platform.machine(), "counter": "valgrind cachegrind I refs, (N2 run - N1 run) / (N2 - N1)",
           "results": rows}
    for r in rows:
        print(f"{r['workload']:>12}: {r['instructions_per_operation']:>10,} instructions per operation "
              f"({r['services']} Services; {r['operations'][0]} and {r['operations'][1]} operations)")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
