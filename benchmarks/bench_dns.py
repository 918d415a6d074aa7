"""DNS benchmarks: the stand-in's queries/s under dnsperf (UDP), and ndots:5 query amplification.

    python -m netsim.benchmarks.bench_dns [--quick] [--duration SECONDS] [--clients N]

Amplification counts the queries glibc's getaddrinfo(AF_UNSPEC) sends from a pod with kubelet's
resolv.conf (search <ns>.svc.cluster.local svc.cluster.local cluster.local, ndots:5) — the
netsim.dns.stub walk, which the kernel tests check against real glibc. Writes
benchmarks/results/dns.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from dnslib import DNSRecord

from netsim.dns.message import handle
from netsim.dns.resolvconf import pod_resolv_conf
from netsim.dns.resolver import ClusterDNS
from netsim.dns.server import DNSServer
from netsim.dns.stub import search, wire_query_fns
from netsim.control.manifests import load_text

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


def in_process_qps(cluster, seconds: float) -> float:
    """handle() called directly: the resolver's own cost without sockets."""
    dns = ClusterDNS(cluster)
    packets = [DNSRecord.question(*q.split()).pack() for q in QUERY_MIX]
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for p in packets:
            handle(dns, p, "udp")
        n += len(packets)
    return n / seconds


def dnsperf_qps(cluster, seconds: float, clients: int) -> dict:
    if shutil.which("dnsperf") is None:
        return {"error": "dnsperf not installed (Debian package dnsperf)"}
    with DNSServer(ClusterDNS(cluster), "127.0.0.1", 0) as srv, tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join(QUERY_MIX) + "\n")
        f.flush()
        out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(srv.port), "-d", f.name, "-l", str(seconds),
                              "-c", str(clients), "-Q", "100000", "-t", "2"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    def grab(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")
    return {"queries_per_second": grab(r"Queries per second:\s+([\d.]+)"),
            "queries_sent": grab(r"Queries sent:\s+(\d+)"),
            "queries_lost": grab(r"Queries lost:\s+(\d+)"),
            "avg_latency_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_dns")
    ap.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    ap.add_argument("--duration", type=float, default=30.0, help="dnsperf run length in seconds (default 30)")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dns.json"))
    args = ap.parse_args(argv)
    duration = 3.0 if args.quick else args.duration
    cluster = load_text(CLUSTER)
    rows = amplification(cluster)
    print("ndots:5 amplification (getaddrinfo AF_UNSPEC, glibc search walk)")
    print(f"  {'lookup':<28} {'name':<34} {'queries':>7} {'NXDOMAIN':>8}  result")
    for r in rows:
        print(f"  {r['lookup']:<28} {r['name']:<34} {r['queries']:>7} {r['nxdomain']:>8}  {r['result']}")
    direct = in_process_qps(cluster, min(duration, 3.0))
    perf = dnsperf_qps(cluster, duration, args.clients)
    print(f"\nquery throughput ({len(QUERY_MIX)}-query mix)")
    print(f"  in-process handle():      {direct:>10.0f} queries/s")
    if "error" in perf:
        print(f"  dnsperf UDP:              {perf['error']}")
    else:
        print(f"  dnsperf UDP {duration:.0f}s, -c {args.clients}: {perf['queries_per_second']:>8.0f} queries/s, "
              f"lost {perf['queries_lost']:.0f}/{perf['queries_sent']:.0f}, avg {perf['avg_latency_ms']:.2f} ms")
    result = {"amplification": rows, "in_process_qps": direct, "dnsperf": perf, "duration_s": duration,
              "python": platform.python_version(), "cpus": os.cpu_count(), "quick": args.quick}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
