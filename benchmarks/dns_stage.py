"""`netsim bench` stage ``dns``: bench_dns's measurements as bench records (records.py).

bench_dns.py stays the DNS scenario (runnable alone: ``python -m netsim.benchmarks.bench_dns``);
this module only calls its public functions and turns their results into records, so the DNS
figures land in the same results.json, CSV and report as the rest of the sweep:

* ``dns_queries_per_lookup`` (model): queries glibc's getaddrinfo(AF_UNSPEC) sends for each lookup
  form under kubelet's resolv.conf (ndots:5 search walk), with the NXDOMAIN count;
* ``dns_in_process_queries_per_second`` (emulator): the resolver called directly, `rounds` rounds;
* ``dns_udp_queries_per_second`` (emulator): dnsperf against the stand-in over UDP on loopback, when
  dnsperf is installed (else the stage says why it skipped it).

Mode is ``any``: DNS does not depend on kube-proxy's mode.
"""
from __future__ import annotations

from typing import Callable

from netsim.benchmarks.records import Record, counted, timed

MODE = "any"


def dns_records(seconds: float = 1.0, rounds: int = 5, dnsperf_seconds: float = 5.0, clients: int = 4,
                note: Callable[[str], None] = lambda text: None) -> list[Record]:
    from netsim.benchmarks import bench_dns as b
    from netsim.control.manifests import load_text
    cluster = load_text(b.CLUSTER)
    services = len(cluster.services())
    out: list[Record] = []
    for row in b.amplification(cluster):
        out.append(counted(MODE, services, 0, "dns_queries_per_lookup", row["queries"], "queries",
                           lookup=row["lookup"], name=row["name"], nxdomain=row["nxdomain"],
                           resolver="glibc getaddrinfo AF_UNSPEC, ndots:5"))
    qps = [b.in_process_qps(cluster, seconds) for _ in range(rounds)]
    out.append(timed(MODE, services, 0, "dns_in_process_queries_per_second", qps, "queries/s", "emulator",
                     digits=0, query_mix=len(b.QUERY_MIX), seconds_per_round=seconds))
    perf = [b.dnsperf_qps(cluster, dnsperf_seconds, clients) for _ in range(rounds)]
    errors = [p["error"] for p in perf if "error" in p]
    if errors:
        note(f"dns: dnsperf skipped: {errors[0]}")
        return out
    out.append(timed(MODE, services, 0, "dns_udp_queries_per_second", [p["queries_per_second"] for p in perf],
                     "queries/s", "emulator", digits=0, tool="dnsperf", clients=clients,
                     seconds_per_round=dnsperf_seconds,
                     lost=sum(p["queries_lost"] for p in perf), sent=sum(p["queries_sent"] for p in perf)))
    out.append(timed(MODE, services, 0, "dns_udp_latency", [p["avg_latency_ms"] for p in perf], "ms", "emulator",
                     digits=3, tool="dnsperf", statistic="mean", clients=clients))
    return out
