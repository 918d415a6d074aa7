"""The emulator's own speed (``source: emulator``): full request traces/s, established packets/s, peak RSS.

The cluster and the timed loops are bench_dataplane's (3 nodes, 2 server pods, a client pod on the
third node, N Services; endpoints_per_service is 2). Each (mode, N) runs in a fresh interpreter
(``multiprocessing`` spawn) so the peak RSS (``ru_maxrss``) is that scenario's alone. Python speed
says nothing about the kernel: these records never share a series with kernel or model ones.
"""
from __future__ import annotations

import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor

from netsim.benchmarks.records import Record, counted

ENDPOINTS = 2          # bench_dataplane.build_cluster: web-1 and web-2


def _scenario(mode: str, n: int, traces: int, packets: int, rounds: int) -> list[dict]:
    from netsim.benchmarks.bench_dataplane import bench_established, bench_traces
    tr = bench_traces(n, traces, rounds=rounds, mode=mode, changes=False)
    est = bench_established(n, packets, rounds=rounds, mode=mode)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # KiB on Linux
    return [_rate(mode, n, "traces_per_second", tr["rounds_traces_per_s"], "traces/s", traces=traces),
            _rate(mode, n, "established_packets_per_second", est["rounds_packets_per_s"], "packets/s",
                  packets=packets),
            counted(mode, n, ENDPOINTS, "peak_rss_bytes", peak, "bytes", "emulator",
                    process="fresh interpreter").to_dict()]


def _rate(mode: str, n: int, metric: str, rounds: list[float], unit: str, **labels) -> dict:
    import statistics
    return Record(mode, n, ENDPOINTS, metric, round(statistics.median(rounds), 1), unit, "emulator",
                  repeats=len(rounds), spread={"min": min(rounds), "max": max(rounds)}, labels=labels,
                  rounds=list(rounds)).to_dict()


def speed_records(mode: str, n: int, traces: int = 1000, packets: int = 5000, rounds: int = 5) -> list[Record]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        rows = pool.submit(_scenario, mode, n, traces, packets, rounds).result()
    return [Record.from_dict(r) for r in rows]
