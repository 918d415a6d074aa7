"""Kernel backend benchmarks: build/teardown time, real first-connection latency through iptables as the
number of Services grows, iptables-restore time per ruleset size, and `verify` over 1,000 flows.

    python -m netsim.benchmarks.bench_kernel [--quick]      (root; run under `unshare --net`)

* up/down: `KernelCluster.up` / `down` for 3 nodes x 10 pods and 10 nodes x 100 pods per node.
* first-connection latency: a client pod opens new TCP connections (SYN to SYN-ACK through nat
  PREROUTING: KUBE-SERVICES is a linear list, one rule per service port) to the Service whose
  KUBE-SERVICES rule comes first and to the one that comes last, with 100 / 5,000 / 10,000 Services.
* iptables-restore: time to load one node's ruleset (the proxier's text) into a fresh node namespace.
* verify: 1,000 flows on each built-in example, disagreements counted.
Writes benchmarks/results/kernel.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from netsim.kernel import netns
from netsim.rules.iptables import kernel as rules
from netsim.kernel.build import KernelCluster
from netsim.control.manifests import load_text
from netsim.control.model import Service, ServicePort

TOPOLOGY = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {{name: benchk}}
spec:
  nodes: [{nodes}]
  proxyMode: iptables
  podNetwork: vxlan
  seed: 1
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: httpd, ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node-1
  containers: [{{name: client, image: curlimages/curl}}]
"""


def topology(nodes: int, pods_per_node: int) -> Any:
    node_list = ", ".join(f"{{name: node-{i + 1}, ip: 192.168.49.{i + 2}}}" for i in range(nodes))
    text = TOPOLOGY.format(nodes=node_list, replicas=max(0, nodes * pods_per_node - 1))
    return load_text(text, source=f"bench {nodes}x{pods_per_node}")


def _name() -> str:
    return "bk" + uuid.uuid4().hex[:6]


def bench_up_down(nodes: int, pods_per_node: int) -> dict:
    cluster = topology(nodes, pods_per_node)
    t0 = time.perf_counter()
    kc = KernelCluster.up(cluster, _name())
    t_up = time.perf_counter() - t0
    n_ns = len(kc.state.netns)
    t0 = time.perf_counter()
    kc.down()
    t_down = time.perf_counter() - t0
    return {"nodes": nodes, "pods_per_node": pods_per_node, "pods": len(kc.plan.pods), "namespaces": n_ns,
            "up_s": round(t_up, 3), "down_s": round(t_down, 3)}


def _connect_times(netns_name: str, ip: str, port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        with netns.entered(netns_name):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3.0)
        t0 = time.perf_counter()
        s.connect((ip, port))
        out.append(time.perf_counter() - t0)
        s.close()
    return out


def bench_services(n_services: int, samples: int) -> dict:
    cluster = topology(2, 1)
    cluster.apply([Service(name=f"svc-{i:05d}", namespace="default", selector={"app": "web"},
                           ports=[ServicePort(port=80, target_port=8080, name="http")])
                   for i in range(n_services)])
    t0 = time.perf_counter()
    text = rules.restore_input(cluster, "node-1")
    t_render = time.perf_counter() - t0
    kc = KernelCluster.up(cluster, _name(), load_rules=False)
    try:
        node = kc.plan.nodes["node-1"]
        t0 = time.perf_counter()
        rules.restore(node.netns, text)
        t_restore = time.perf_counter() - t0
        kc.sync_rules([n for n in kc.plan.nodes if n != "node-1"])
        order = [l.split("-d ")[1].split()[0] for l in text.splitlines()
                 if l.startswith("-A KUBE-SERVICES") and "cluster IP" in l and "default/svc-" in l]
        if not order:                               # large-cluster mode drops comments; take -d order
            order = [l.split("-d ")[1].split()[0] for l in text.splitlines()
                     if l.startswith("-A KUBE-SERVICES") and " -d " in l and "--dport 80 " in l]
        client = kc.plan.pods["default/client"].netns
        _connect_times(client, order[0], 80, 5)     # warm up ARP / neighbour entries
        first = _connect_times(client, order[0], 80, samples)
        last = _connect_times(client, order[-1], 80, samples)
    finally:
        kc.down()
    rule_lines = sum(1 for l in text.splitlines() if l.startswith("-A "))
    return {"services": n_services, "rules": rule_lines, "render_s": round(t_render, 3),
            "restore_s": round(t_restore, 3),
            "first_connect_ms_first_service": round(statistics.median(first) * 1e3, 3),
            "first_connect_ms_last_service": round(statistics.median(last) * 1e3, 3),
            "samples": samples}


def bench_verify(example: str, flows: int) -> dict:
    from netsim.kernel.verify import run_verify
    from netsim.control.manifests import load
    t0 = time.perf_counter()
    report = run_verify(load([f"example:{example}"]), _name(), flows=flows)
    return {"example": example, "flows": len(report.results), "kinds": len(report.predictions),
            "disagreements": len(report.disagreements), "kernel_s": round(report.seconds_kernel, 3),
            "emulator_s": round(report.seconds_emulator, 3), "total_s": round(time.perf_counter() - t0, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_kernel")
    ap.add_argument("--quick", action="store_true", help="small sizes only (CI smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "kernel.json"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_kernel needs root (network namespaces); run under `unshare --net`", file=sys.stderr)
        return 2
    sizes = [(3, 10)] if args.quick else [(3, 10), (10, 100)]
    svc_sizes = [100, 1000] if args.quick else [100, 5000, 10000]
    samples = 20 if args.quick else 200
    flows = 200 if args.quick else 1000

    updown = [bench_up_down(n, p) for n, p in sizes]
    print(f"{'cluster':<14}{'pods':>6}{'netns':>7}{'up s':>8}{'down s':>8}")
    for r in updown:
        print(f"{r['nodes']:>2} x {r['pods_per_node']:<3} pods{r['pods']:>7}{r['namespaces']:>7}"
              f"{r['up_s']:>8.2f}{r['down_s']:>8.2f}")
    svc = [bench_services(n, samples) for n in svc_sizes]
    print(f"\n{'services':>9}{'rules':>8}{'render s':>10}{'restore s':>11}{'1st svc ms':>12}{'last svc ms':>13}")
    for r in svc:
        print(f"{r['services']:>9}{r['rules']:>8}{r['render_s']:>10.2f}{r['restore_s']:>11.3f}"
              f"{r['first_connect_ms_first_service']:>12.3f}{r['first_connect_ms_last_service']:>13.3f}")
    ver = [bench_verify(e, flows) for e in ("httpd-app", "shop")]
    print(f"\n{'verify':<12}{'flows':>6}{'kinds':>7}{'disagree':>10}{'kernel s':>10}{'emulator s':>12}")
    for r in ver:
        print(f"{r['example']:<12}{r['flows']:>6}{r['kinds']:>7}{r['disagreements']:>10}"
              f"{r['kernel_s']:>10.2f}{r['emulator_s']:>12.2f}")
    result = {"benchmark": "kernel", "quick": args.quick, "python": platform.python_version(),
              "kernel": platform.release(), "cpus": os.cpu_count(), "up_down": updown,
              "services": svc, "verify": ver}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
