"""The public API's costs: ``netsim.load`` vs ``Emulator.copy()`` vs one trace on a copy, at 100 and
10,000 Services — what the pytest plugin pays per session (load + prepare) and per test (copy, traces,
and the first change a test makes, which gives its copy a control plane of its own). Also pytest's
start-up with the plugin installed vs disabled (``-p no:netsim``).

    python -m netsim.benchmarks.bench_api [--quick] [--services 100,10000] [--rounds N]

Every round is reported (median, min, max); results go to benchmarks/results/api.json. The cluster is
bench_dataplane's: 3 nodes, two web pods and a client pod, N Services selecting the web pods, given
to ``netsim.load`` as YAML text.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

RESULTS = os.path.join(os.path.dirname(__file__), "results", "api.json")


def cluster_yaml(n_services: int) -> str:
    out = ["apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  seed: 1\n"
           "  nodes:\n    - {name: node-1, ip: 192.168.49.2}\n    - {name: node-2, ip: 192.168.49.3}\n"
           "    - {name: node-3, ip: 192.168.49.4}\n"]
    for i, node in ((1, "node-1"), (2, "node-2")):
        out.append(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-{i}, labels: {{app: web}}}}\n"
                   f"spec:\n  nodeName: {node}\n  containers: [{{name: c, image: app, "
                   f"ports: [{{name: http, containerPort: 8080}}]}}]\n")
    out.append("---\napiVersion: v1\nkind: Pod\nmetadata: {name: client, labels: {app: client}}\n"
               "spec:\n  nodeName: node-3\n  containers: [{name: c, image: busybox}]\n")
    for i in range(n_services):
        out.append(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec:\n"
                   f"  selector: {{app: web}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n")
    return "".join(out)


def _stats(samples: list[float]) -> dict:
    return {"rounds": len(samples), "median_ms": statistics.median(samples) * 1e3,
            "min_ms": min(samples) * 1e3, "max_ms": max(samples) * 1e3,
            "all_ms": [round(s * 1e3, 3) for s in samples]}


def _timed(fn: Callable[[], object], rounds: int, setup: Callable[[], object] = lambda: None) -> dict:
    samples = []
    for _ in range(rounds):
        arg = setup()
        t0 = time.perf_counter()
        fn() if arg is None else fn(arg)           # type: ignore[call-arg]
        samples.append(time.perf_counter() - t0)
    return _stats(samples)


def bench_services(n: int, rounds: int, load_rounds: int) -> dict:
    import netsim
    text = cluster_yaml(n)
    ems: list = []
    load = _timed(lambda: ems.append(netsim.load(text)), load_rounds)
    base = ems[-1]
    ems.clear()
    ip = base.cluster.service("default", "svc-7").cluster_ip
    dst = f"{ip}:80"
    t0 = time.perf_counter()
    base.prepare()                              # kube-proxy's first sync on every node, once per session
    prepare_ms = (time.perf_counter() - t0) * 1e3
    base.copy().trace("pod/client", dst)        # warm: compiles the chains this flow enters
    copy = _timed(lambda: base.copy(), rounds)
    trace = _timed(lambda c: c.trace("pod/client", dst), rounds, setup=base.copy)
    both = _timed(lambda: base.copy().trace("pod/client", dst), rounds)
    fault_rounds = max(1, min(rounds, 3 if n > 1000 else rounds))
    fault = _timed(lambda c: c.set_pod_ready("web-1", False), fault_rounds, setup=base.copy)

    def faulted():
        c = base.copy()
        c.set_pod_ready("web-1", False)
        return c
    after = _timed(lambda c: c.trace("pod/client", dst), fault_rounds, setup=faulted)
    return {"services": n, "load": load, "prepare_ms": prepare_ms, "copy": copy, "trace_on_copy": trace,
            "copy_plus_trace": both, "first_fault_on_copy": fault, "first_trace_after_fault": after}


def bench_pytest_startup(rounds: int) -> dict:
    """``pytest --collect-only`` of one trivial test file: plugin installed vs disabled."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "test_x.py"), "w") as f:
            f.write("def test_x():\n    pass\n")
        out = {}
        for label, extra in (("plugin_disabled", ["-p", "no:netsim"]), ("plugin_installed", [])):
            def run(extra=extra):
                subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                                *extra, d], cwd=d, check=True, capture_output=True)
            run()                               # warm the OS file cache
            out[label] = _timed(run, rounds)
        out["difference_median_ms"] = out["plugin_installed"]["median_ms"] - out["plugin_disabled"]["median_ms"]
        return out


def _row(name: str, s: dict) -> str:
    return f"  {name:<28} median {s['median_ms']:>10.2f} ms   min {s['min_ms']:>10.2f}   max {s['max_ms']:>10.2f}   " \
           f"({s['rounds']} rounds)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 Services only, few rounds")
    ap.add_argument("--services", default="100,10000", help="comma-separated Service counts")
    ap.add_argument("--rounds", type=int, default=20, help="rounds of copy/trace measurements")
    ap.add_argument("--load-rounds", type=int, default=3)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    sizes = [100] if args.quick else [int(x) for x in args.services.split(",")]
    rounds = 5 if args.quick else args.rounds
    result = {"schema": "netsim.bench-api/v1", "python": platform.python_version(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "sizes": []}
    for n in sizes:
        r = bench_services(n, rounds, 1 if args.quick else args.load_rounds)
        result["sizes"].append(r)
        print(f"{n} Services (prepare, once: {r['prepare_ms']:.0f} ms)")
        for key in ("load", "copy", "trace_on_copy", "copy_plus_trace", "first_fault_on_copy",
                    "first_trace_after_fault"):
            print(_row(key, r[key]))
    result["pytest_startup"] = bench_pytest_startup(3 if args.quick else 10)
    p = result["pytest_startup"]
    print("pytest start-up (collect one trivial test)")
    print(_row("plugin disabled", p["plugin_disabled"]))
    print(_row("plugin installed", p["plugin_installed"]))
    print(f"  difference of medians: {p['difference_median_ms']:+.1f} ms")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
