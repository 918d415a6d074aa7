"""By-name traces/s, in-process: ``Emulator.trace("pod/client", "http://svc-N")`` — the pod's
getaddrinfo (kubelet's resolv.conf, ndots:5, A + AAAA per step, each query a UDP packet walked
through kube-dns's DNAT to a CoreDNS pod and back), then the TCP connection to the ClusterIP.

    python -m netsim.benchmarks.bench_dns_trace [--quick] [--services N] [--traces N] [--rounds N]

The cluster is bench_api's (3 nodes, two web pods, a client pod, N Services) with kubeadm's CoreDNS
Deployment and kube-dns Service. Every round is reported (median, min, max) and counted, collector
pauses included; results go to benchmarks/results/dns_trace.json. The aim (issue 16, aim 2) is
5,000 by-name traces/s. Measured alongside, each round:

* by-IP traces of the same shape (``http://<ClusterIP>``: the same connection, GET and response,
  without the lookup), so the lookup's cost is the difference;
* where a by-name trace's time goes: the lookup (``target.resolve``: the stub's search walk, its
  queries and replies walked through the data plane, CoreDNS answering in the pod), CoreDNS's
  answers alone (the pods' handlers timed), and the client's DNS work alone — the same lookups run
  again with every packet walk replayed from a recording (neither the walker nor its sync runs),
  leaving the stub, the query and reply bytes and the notes. The rest of the lookup is packet
  walking; the rest of the trace is the connection;
* the same split measured inside the traces themselves ("in situ": the lookup and the connection
  each timed as ``Emulator.trace`` runs them, in rounds of their own), since a lookup run alone, with
  its data warm in the CPU's caches, costs less than one between two connections.

Rates are given per wall-clock second and per CPU second of the process (time.process_time): on a
shared machine the second depends less on the other users (though not at all on nothing: caches
and cores are shared too). Shares are of CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from typing import Any

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


def _lookup_split(em, targets: list[str], rounds: int) -> dict[str, list[float]]:
    """CPU µs per lookup, each round: the lookup with its packet walks ("lookup"), the client's DNS
    work alone ("client"), and CoreDNS answering in the pods ("server", wall µs of the handlers).

    Each round records what every walk returns (untimed), times the same lookups as they run (the
    CoreDNS pods' handlers timed on the way), then runs them once more with the walker answering
    from the recording, in order (the stub asks the same queries in the same order: same names,
    same replies), so that only the client's side of DNS is left."""
    from netsim.dataplane import target as T
    from netsim.skb.packet import IPPROTO_TCP, IPPROTO_UDP
    walker = em._walker(None)
    host = walker.host_for("pod/client", "default")
    parsed = [T.parse_target(t) for t in targets]
    real_walk = walker._walk
    out: dict[str, list[float]] = {"lookup": [], "client": [], "server": []}
    listeners = [socks.listeners[k] for socks in walker.sockets.values()
                 for k in ((IPPROTO_UDP, 53), (IPPROTO_TCP, 53))
                 if k in socks.listeners and socks.listeners[k].handler is not None]
    handlers = [lst.handler for lst in listeners]
    spent = [0]

    def timed(handler: Any) -> Any:
        def answer(*args: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return handler(*args)
            finally:
                spent[0] += time.perf_counter_ns() - t
        return answer

    def lookups() -> None:
        for t in parsed:
            T.resolve(walker, host, t, None, "default")
    try:
        for _ in range(rounds):
            record: list[Any] = []

            def recording(*args: Any, **kw: Any) -> Any:
                result = real_walk(*args, **kw)
                record.append(result)
                return result
            walker._walk = recording            # every walk: the queries' (through send) and the replies'
            lookups()
            del walker._walk
            for lst, h in zip(listeners, handlers):
                lst.handler = timed(h)
            spent[0] = 0
            c0 = time.process_time()
            lookups()
            out["lookup"].append((time.process_time() - c0) / len(parsed) * 1e6)
            out["server"].append(spent[0] / 1e3 / len(parsed))
            for lst, h in zip(listeners, handlers):
                lst.handler = h
            replay = iter(record)
            walker.send = walker._walk = lambda *args, **kw: next(replay)
            c0 = time.process_time()
            lookups()
            out["client"].append((time.process_time() - c0) / len(parsed) * 1e6)
            del walker.send, walker._walk        # the class's methods again
    finally:
        walker.__dict__.pop("send", None)
        walker.__dict__.pop("_walk", None)
        for lst, h in zip(listeners, handlers):
            lst.handler = h
    return out


def _in_situ_split(em, targets: list[str], rounds: int) -> dict[str, list[float]]:
    """CPU µs per trace, each round: the whole trace, its lookup (``target.resolve``) and its
    connection (``Walker.connect``), each timed where ``Emulator.trace`` calls it."""
    from netsim.dataplane import target as T
    walker = em._walker(None)
    real_resolve, real_connect = T.resolve, walker.connect
    spent = {"lookup": 0.0, "connection": 0.0}

    def timed(what: str, fn: Any) -> Any:
        def run(*args: Any, **kw: Any) -> Any:
            c0 = time.process_time()
            try:
                return fn(*args, **kw)
            finally:
                spent[what] += time.process_time() - c0
        return run
    out: dict[str, list[float]] = {"trace": [], "lookup": [], "connection": []}
    T.resolve, walker.connect = timed("lookup", real_resolve), timed("connection", real_connect)
    try:
        for _ in range(rounds):
            spent.update(lookup=0.0, connection=0.0)
            c0 = time.process_time()
            for dst in targets:
                em.trace("pod/client", dst)
            out["trace"].append((time.process_time() - c0) / len(targets) * 1e6)
            out["lookup"].append(spent["lookup"] / len(targets) * 1e6)
            out["connection"].append(spent["connection"] / len(targets) * 1e6)
    finally:
        T.resolve = real_resolve
        del walker.connect                       # the class's method again
    return out


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
    by_ip = [f"http://{ips[n]}" for n in names]
    first = em.trace("pod/client", by_name[0])
    ok = first.outcome.ok
    dns_queries = sum(1 for n in first.notes if n.startswith("DNS "))
    _rounds(em, by_name[:50] + by_ip[:50], 1)                  # warm: compile the chains these flows enter
    name_rates, name_cpu = _rounds(em, by_name, rounds)
    ip_rates, ip_cpu = _rounds(em, by_ip, rounds)
    split = _lookup_split(em, by_name, rounds)
    situ = _in_situ_split(em, by_name, rounds)
    trace_us = statistics.median(1e6 / r for r in name_cpu)
    lookup, client, server = (statistics.median(split[k]) for k in ("lookup", "client", "server"))
    share = {"trace_cpu_us": round(trace_us, 1), "lookup_cpu_us": _stats(split["lookup"]),
             "dns_client_cpu_us": _stats(split["client"]), "dns_server_us": _stats(split["server"]),
             "dns_work": round((client + server) / trace_us, 3),
             "dns_packet_walks": round((lookup - client - server) / trace_us, 3),
             "connection_and_rest": round(1 - lookup / trace_us, 3),
             "in_situ_cpu_us": {k: _stats(v) for k, v in situ.items()},
             "in_situ_lookup": round(statistics.median(situ["lookup"]) / statistics.median(situ["trace"]), 3),
             "in_situ_connection": round(statistics.median(situ["connection"]) / statistics.median(situ["trace"]), 3)}
    return {"services": services, "traces_per_round": traces, "first_trace_delivered": ok,
            "dns_queries_per_trace": dns_queries, "by_name_traces_per_s": _stats(name_rates),
            "by_ip_traces_per_s": _stats(ip_rates), "by_name_traces_per_cpu_s": _stats(name_cpu),
            "by_ip_traces_per_cpu_s": _stats(ip_cpu), "by_name_share": share}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_dns_trace")
    ap.add_argument("--quick", action="store_true", help="a few hundred traces, 2 rounds")
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--traces", type=int, default=2000, help="traces per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    traces, rounds = (200, 2) if args.quick else (args.traces, args.rounds)
    load_start = os.getloadavg()
    row = bench(args.services, traces, rounds)
    load = os.getloadavg()
    n, i = row["by_name_traces_per_s"], row["by_ip_traces_per_s"]
    print(f"{args.services} Services, {traces} traces x {rounds} rounds, load average {load_start[0]:.2f} "
          f"(start) {load[0]:.2f} (end)")
    print(f"  by name ({row['dns_queries_per_trace']} DNS queries each): median {n['median']:,.0f}/s "
          f"(min {n['min']:,.0f}, max {n['max']:,.0f})   aim {AIM_TRACES_PER_S:,}/s")
    print(f"  by IP (http://ClusterIP):      median {i['median']:,.0f}/s (min {i['min']:,.0f}, max {i['max']:,.0f})")
    nc, ic = row["by_name_traces_per_cpu_s"], row["by_ip_traces_per_cpu_s"]
    print(f"  per CPU second of this process: by name median {nc['median']:,.0f} "
          f"(min {nc['min']:,.0f}, max {nc['max']:,.0f}), by IP median {ic['median']:,.0f} "
          f"(min {ic['min']:,.0f}, max {ic['max']:,.0f})")
    s = row["by_name_share"]
    print(f"  a by-name trace: {s['trace_cpu_us']:,.0f} CPU-us; its lookup {s['lookup_cpu_us']['median']:,.0f} "
          f"(rounds {s['lookup_cpu_us']['rounds']}), of which the stub's DNS work "
          f"{s['dns_client_cpu_us']['median']:,.0f} (rounds {s['dns_client_cpu_us']['rounds']}) and CoreDNS "
          f"answering {s['dns_server_us']['median']:,.1f} (rounds {s['dns_server_us']['rounds']})")
    print(f"  shares of a by-name trace: DNS work {s['dns_work']:.0%}, DNS packets walked {s['dns_packet_walks']:.0%}, "
          f"the connection and the rest {s['connection_and_rest']:.0%}")
    si = s["in_situ_cpu_us"]
    print(f"  in situ (timed inside the traces): trace {si['trace']['median']:,.0f} CPU-us, lookup "
          f"{si['lookup']['median']:,.0f} ({s['in_situ_lookup']:.0%}; rounds {si['lookup']['rounds']}), connection "
          f"{si['connection']['median']:,.0f} ({s['in_situ_connection']:.0%}; rounds {si['connection']['rounds']})")
    result = {**row, "aim_traces_per_s": AIM_TRACES_PER_S, "load_average": list(load_start),
              "load_average_end": list(load), "python": platform.python_version(), "cpus": os.cpu_count(),
              "quick": args.quick}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
