"""DNS benchmarks: the stand-in's queries/s under dnsperf (UDP), the delay a burst of garbage
datagrams adds to the next good answer, the resolver's own cost in-process, and ndots:5 query
amplification.

    python -m netsim.benchmarks.bench_dns [--quick] [--duration SECONDS] [--rounds N] [--clients N]
                                          [--workers N[,N...]]

Every round is reported (median, min, max) with the load average at the start. dnsperf runs
against `netsim.dns.server.DNSServer` on 127.0.0.1 (an ephemeral port) for each worker count
(`--workers 1,2`: one process, then SO_REUSEPORT workers). The aim (issue 16, aim 3): 35,000
queries/s with 0 lost — the anchor is CoreDNS 1.2.5's 33.7k queries/s on an n1-standard-2
(coredns.io, "Scaling CoreDNS", 2018); the garbage aim: 3,000 garbage datagrams delay the next good
answer by < 100 ms. Run it under `unshare --net` (lo is brought up when it is down, which only
happens in a fresh namespace) and `nice -n 10` on a shared machine. Amplification counts the
queries glibc's getaddrinfo(AF_UNSPEC) sends from a pod with kubelet's resolv.conf (search
<ns>.svc.cluster.local svc.cluster.local cluster.local, ndots:5) — the netsim.dns.stub walk, which
the kernel tests check against real glibc. Writes benchmarks/results/dns.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dnslib import DNSRecord

from netsim.control.manifests import load_text
from netsim.dns.message import handle
from netsim.dns.resolvconf import pod_resolv_conf
from netsim.dns.resolver import ClusterDNS
from netsim.dns.server import DNSServer
from netsim.dns.stub import search, wire_query_fns

AIM_QPS = 35000
ANCHOR_QPS = 33700           # CoreDNS 1.2.5, n1-standard-2 (coredns.io "Scaling CoreDNS", 2018)
GARBAGE = 3000
AIM_GARBAGE_DELAY_MS = 100

CLUSTER = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: benchdns}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}]
  upstreamDNS: {example.com: [93.184.216.34], api.github.com: [140.82.112.6]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-hl, namespace: default}
spec: {clusterIP: None, selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: 10.96.77.7, ports: [{name: pg, port: 5432}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
"""

QUERY_MIX = ["web.default.svc.cluster.local A", "web-hl.default.svc.cluster.local A",
             "web.default.svc.cluster.local AAAA", "_http._tcp.web.default.svc.cluster.local SRV",
             "nosuch.default.svc.cluster.local A", "db.shop.svc.cluster.local A", "example.com A",
             "10.0.96.10.in-addr.arpa PTR"]

LOOKUPS = [("short (same namespace)", "web"), ("namespaced", "db.shop"), ("service FQDN, no dot", "web.default.svc.cluster.local"),
           ("service FQDN, trailing dot", "web.default.svc.cluster.local."), ("external", "example.com"),
           ("external, 2 dots", "api.github.com"), ("external, trailing dot", "example.com."), ("unknown", "nosuch")]


def amplification(cluster) -> list[dict]:
    dns = ClusterDNS(cluster)
    pod = cluster.pod("default", "client")
    rc = pod_resolv_conf(pod, cluster.config)
    udp, tcp = wire_query_fns(dns, rc, random.Random(0))
    rows = []
    for label, name in LOOKUPS:
        r = search(rc, name, udp, "AF_UNSPEC", tcp)
        rows.append({"lookup": label, "name": name, "queries": len(r.steps),
                     "nxdomain": sum(1 for s in r.steps if s.rcode == "NXDOMAIN"),
                     "result": ", ".join(r.answer_ips) if r.ok else r.error})
    return rows


class _DnslibOnly:
    """handle() finds no pre-encoded replies on this: every query is parsed and encoded by dnslib."""

    def __init__(self, dns: ClusterDNS) -> None:
        self.dns = dns

    def answer(self, request):
        return self.dns.answer(request)


def in_process_qps(cluster, seconds: float, fast: bool = True) -> float:
    """handle() called directly: the resolver's own cost without sockets (with or without the
    pre-encoded replies of netsim.dns.wire)."""
    dns = ClusterDNS(cluster)
    server = dns if fast else _DnslibOnly(dns)
    packets = [bytes(DNSRecord.question(*q.split()).pack()) for q in QUERY_MIX]
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for p in packets:
            handle(server, p, "udp")
        n += len(packets)
    return n / seconds


def ensure_loopback() -> None:
    """A fresh network namespace (`unshare --net`) starts with lo down: bring it up then, and only
    then (a host's own lo is never down). `ip link` asks the namespace itself (sysfs may still show
    the host's when /sys was not remounted)."""
    if shutil.which("ip") is None:
        return
    out = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True).stdout
    flags = out.split(">")[0].split("<")[-1].split(",") if ">" in out else []
    if flags and "UP" not in flags:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)


def dnsperf_qps(cluster, seconds: float, clients: int, workers: int = 1) -> dict:
    """One dnsperf run against a fresh server (its pre-encoded replies warmed by one pass of the mix)."""
    if shutil.which("dnsperf") is None:
        return {"error": "dnsperf not installed (Debian package dnsperf)"}
    ensure_loopback()
    with DNSServer(ClusterDNS(cluster), "127.0.0.1", 0, workers=workers) as srv, \
            tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join(QUERY_MIX) + "\n")
        f.flush()
        out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(srv.port), "-d", f.name, "-l", str(seconds),
                              "-c", str(clients), "-Q", "1000000", "-t", "2"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout

    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")
    return {"queries_per_second": grab(r"Queries per second:\s+([\d.]+)"),
            "queries_sent": grab(r"Queries sent:\s+(\d+)"),
            "queries_completed": grab(r"Queries completed:\s+(\d+)"),
            "queries_lost": grab(r"Queries lost:\s+(\d+)"),
            "avg_latency_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000}


def garbage_delay_ms(cluster, count: int = GARBAGE, workers: int = 1, seed: int = 0) -> dict:
    """Send `count` random datagrams (1-512 bytes) as fast as the socket takes them, then one good
    query from another socket: milliseconds until its answer (None: no answer within 5 s)."""
    ensure_loopback()
    rng = random.Random(seed)
    good = bytes(DNSRecord.question("web.default.svc.cluster.local", "A").pack())
    with DNSServer(ClusterDNS(cluster), "127.0.0.1", 0, workers=workers) as srv:
        addr = ("127.0.0.1", srv.port)
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ask = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ask.settimeout(5)
            ask.sendto(good, addr)                       # warm: the answer is pre-encoded after two asks
            ask.recv(4096)
            ask.sendto(good, addr)
            ask.recv(4096)
            for _ in range(count):
                junk.sendto(rng.randbytes(rng.randint(1, 512)), addr)
            t0 = time.perf_counter()
            ask.sendto(good, addr)
            try:
                while True:
                    reply = ask.recv(4096)
                    if reply[:2] == good[:2]:
                        return {"delay_ms": (time.perf_counter() - t0) * 1000, "answered": True}
            except socket.timeout:
                return {"delay_ms": None, "answered": False}
        finally:
            junk.close()
            ask.close()


def _stats(values: list) -> dict:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return {"median": None, "min": None, "max": None, "rounds": values}
    return {"median": round(statistics.median(vals), 2), "min": round(min(vals), 2), "max": round(max(vals), 2),
            "rounds": [None if v is None else round(v, 2) for v in values]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_dns")
    ap.add_argument("--quick", action="store_true", help="1 s, one round (a sanity run)")
    ap.add_argument("--duration", type=float, default=10.0, help="dnsperf run length in seconds (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="dnsperf runs per worker count (default 3)")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    ap.add_argument("--workers", default="1,2", help="server worker counts to measure, comma-separated")
    ap.add_argument("--garbage-rounds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dns.json"))
    args = ap.parse_args(argv)
    duration, rounds, grounds = (1.0, 1, 1) if args.quick else (args.duration, args.rounds, args.garbage_rounds)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    load_start = os.getloadavg()
    cluster = load_text(CLUSTER)
    rows = amplification(cluster)
    print("ndots:5 amplification (getaddrinfo AF_UNSPEC, glibc search walk)")
    print(f"  {'lookup':<28} {'name':<34} {'queries':>7} {'NXDOMAIN':>8}  result")
    for r in rows:
        print(f"  {r['lookup']:<28} {r['name']:<34} {r['queries']:>7} {r['nxdomain']:>8}  {r['result']}")
    direct = in_process_qps(cluster, min(duration, 2.0))
    slow = in_process_qps(cluster, min(duration, 2.0), fast=False)
    print(f"\nquery throughput ({len(QUERY_MIX)}-query mix), load average {load_start[0]:.2f}")
    print(f"  in-process handle(), encoded replies: {direct:>9,.0f} queries/s")
    print(f"  in-process handle(), dnslib each time: {slow:>8,.0f} queries/s")
    perf: dict = {}
    for w in workers:
        runs = []
        for _ in range(rounds):
            la = os.getloadavg()[0]
            r = dnsperf_qps(cluster, duration, args.clients, w)
            r["load_average"] = la
            runs.append(r)
            if "error" in r:
                break
        if "error" in runs[0]:
            print(f"  dnsperf UDP:  {runs[0]['error']}")
            perf[str(w)] = {"error": runs[0]["error"]}
            continue
        qps = _stats([r["queries_per_second"] for r in runs])
        lost = [int(r["queries_lost"]) if r["queries_lost"] == r["queries_lost"] else None for r in runs]
        perf[str(w)] = {"queries_per_second": qps, "lost": lost, "runs": runs}
        print(f"  dnsperf UDP {duration:.0f}s x {rounds}, -c {args.clients}, {w} worker(s): median "
              f"{qps['median']:,.0f} q/s (min {qps['min']:,.0f}, max {qps['max']:,.0f}), lost {lost}, "
              f"load {[round(r['load_average'], 2) for r in runs]}   aim {AIM_QPS:,} (CoreDNS {ANCHOR_QPS:,})")
    delays = [garbage_delay_ms(cluster, GARBAGE, workers=1, seed=i) for i in range(grounds)]
    gstats = _stats([d["delay_ms"] for d in delays])
    print(f"  {GARBAGE} garbage datagrams, then a good query: answered {sum(d['answered'] for d in delays)}/{grounds}, "
          f"delay median {gstats['median']} ms (min {gstats['min']}, max {gstats['max']})   aim < {AIM_GARBAGE_DELAY_MS} ms")
    result = {"amplification": rows, "in_process_qps": direct, "in_process_qps_dnslib": slow, "dnsperf": perf,
              "garbage": {"datagrams": GARBAGE, "delay_ms": gstats, "answered": [d["answered"] for d in delays]},
              "duration_s": duration, "rounds": rounds, "clients": args.clients,
              "aims": {"queries_per_second": AIM_QPS, "anchor_coredns_qps": ANCHOR_QPS,
                       "garbage_delay_ms": AIM_GARBAGE_DELAY_MS},
              "load_average": list(load_start), "python": platform.python_version(), "cpus": os.cpu_count(),
              "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
