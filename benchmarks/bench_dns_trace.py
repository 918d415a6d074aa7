"""By-name traces/s, in-process: ``Emulator.trace("pod/client", "http://svc-N")`` — the pod's
getaddrinfo (kubelet's resolv.conf, ndots:5, A + AAAA per step, each query a UDP packet walked
through kube-dns's DNAT to a CoreDNS pod and back), then the TCP connection to the ClusterIP.

    python -m netsim.benchmarks.bench_dns_trace [--quick] [--services N] [--traces N] [--rounds N]

The cluster is bench_api's (3 nodes, two web pods, a client pod, N Services) with kubeadm's CoreDNS
Deployment and kube-dns Service. Every round is reported (median, min, max) and counted, collector
pauses included; results go to benchmarks/results/dns_trace.json. The aim (issue 16, aim 2) is
5,000 by-name traces/s; by-IP traces to the same Services are measured alongside, so the DNS share
of a by-name trace is their difference. Rates are given per wall-clock second and per CPU second of
the process (time.process_time): on a shared machine the second depends less on the other users
(though not at all on nothing: caches and cores are shared too).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time

RESULTS = os.path.join(os.path.dirname(__file__), "results", "dns_trace.json")
AIM_TRACES_PER_S = 5000


def _rounds(em, targets: list[str], rounds: int) -> tuple[list[float], list[float]]:
    """Traces per wall-clock second and per CPU second of this process, each round."""
    wall, cpu = [], []
    for _ in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        for dst in targets:
            em.trace("pod/client", dst)
        wall.append(len(targets) / (time.perf_counter() - t0))
        cpu.append(len(targets) / max(time.process_time() - c0, 1e-9))
    return wall, cpu


def _stats(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "rounds": [round(r, 1) for r in rates]}


def bench(services: int, traces: int, rounds: int) -> dict:
    import netsim
    from netsim.benchmarks.bench_api import cluster_yaml
    em = netsim.load(cluster_yaml(services))
    em.prepare()
    rng = random.Random(5)
    names = [f"svc-{rng.randrange(services)}" for _ in range(traces)]
    ips = {s.name: s.cluster_ip for s in em.cluster.services() if s.name.startswith("svc-")}
    by_name = [f"http://{n}" for n in names]
    by_ip = [f"{ips[n]}:80" for n in names]
    first = em.trace("pod/client", by_name[0])
    ok = first.outcome.ok
    dns_queries = sum(1 for n in first.notes if n.startswith("DNS "))
    _rounds(em, by_name[:50] + by_ip[:50], 1)                  # warm: compile the chains these flows enter
    name_rates, name_cpu = _rounds(em, by_name, rounds)
    ip_rates, ip_cpu = _rounds(em, by_ip, rounds)
    return {"services": services, "traces_per_round": traces, "first_trace_delivered": ok,
            "dns_queries_per_trace": dns_queries, "by_name_traces_per_s": _stats(name_rates),
            "by_ip_traces_per_s": _stats(ip_rates), "by_name_traces_per_cpu_s": _stats(name_cpu),
            "by_ip_traces_per_cpu_s": _stats(ip_cpu)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_dns_trace")
    ap.add_argument("--quick", action="store_true", help="a few hundred traces, 2 rounds")
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--traces", type=int, default=2000, help="traces per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    traces, rounds = (200, 2) if args.quick else (args.traces, args.rounds)
    row = bench(args.services, traces, rounds)
    load = os.getloadavg()
    n, i = row["by_name_traces_per_s"], row["by_ip_traces_per_s"]
    print(f"{args.services} Services, {traces} traces x {rounds} rounds, load average {load[0]:.2f}")
    print(f"  by name ({row['dns_queries_per_trace']} DNS queries each): median {n['median']:,.0f}/s "
          f"(min {n['min']:,.0f}, max {n['max']:,.0f})   aim {AIM_TRACES_PER_S:,}/s")
    print(f"  by IP:                         median {i['median']:,.0f}/s (min {i['min']:,.0f}, max {i['max']:,.0f})")
    nc, ic = row["by_name_traces_per_cpu_s"], row["by_ip_traces_per_cpu_s"]
    print(f"  per CPU second of this process: by name median {nc['median']:,.0f} "
          f"(min {nc['min']:,.0f}, max {nc['max']:,.0f}), by IP median {ic['median']:,.0f} "
          f"(min {ic['min']:,.0f}, max {ic['max']:,.0f})")
    result = {**row, "aim_traces_per_s": AIM_TRACES_PER_S, "load_average": list(load),
              "python": platform.python_version(), "cpus": os.cpu_count(), "quick": args.quick}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
