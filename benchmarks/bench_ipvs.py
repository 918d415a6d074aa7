"""Benchmark: the IPVS emulator's per-packet cost and the proxier's table build time.

    python -m netsim.benchmarks.bench_ipvs [--quick]

N ClusterIP Services × 3 endpoints (N = 100 and 10,000; --quick: 100 and 1,000), scheduler rr,
flat (one port each). Per packet, on one node's IpvsNode:

* ``new``: a SYN to a VIP – virtual-server lookup, rr scheduling, connection creation, DNAT;
* ``est``: a packet of an existing connection – connection-table hit, state update, DNAT;
* ``reply``: the real server's answer – reverse lookup and un-DNAT.

The kernel keeps services and connections in hash tables, so neither cost should grow with N;
the numbers (best of 3 runs) show whether the emulator keeps that property. ``build`` is desired_state() +
apply() (ipsets, iptables text, table) on a fresh node. Results: benchmarks/results/ipvs.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import os
import time
from pathlib import Path

from netsim.skb.packet import Packet
from netsim.benchmarks.sync import synthetic_inputs
from netsim.rules.iptables.proxier_inputs import ProxierConfig, ServicePortInfo
from netsim.rules.ipvs.proxier import KubeProxyIpvs, desired_state

RESULTS = Path(__file__).parent / "results" / "ipvs.json"
ENDPOINTS = 3
REPEATS = 3


def build_inputs(n: int) -> tuple[list[ServicePortInfo], dict, ProxierConfig]:
    """N Services × 3 endpoints (the `netsim bench` sync scenario's inputs)."""
    return synthetic_inputs(n, ENDPOINTS)


def run(n: int, packets: int) -> dict:
    ports, eps, cfg = build_inputs(n)
    t0 = time.perf_counter()
    kp = KubeProxyIpvs(None, "node-1", config=cfg, node_addresses=["192.168.49.2"])
    kp.apply(desired_state(ports, eps, cfg, ["192.168.49.2"]))
    build_s = time.perf_counter() - t0

    node = kp.node
    step = max(1, n // 97)
    targets = [ports[(k * step) % n].cluster_ip for k in range(packets)]
    best = {"new": float("inf"), "est": float("inf"), "reply": float("inf")}
    for rep in range(REPEATS):                  # best of REPEATS: the machine is shared and noisy
        syns = [Packet.tcp(f"10.{200 + rep}.{k // 60000}.{1 + (k // 250) % 250}", targets[k], 1024 + k % 60000,
                           80, "S") for k in range(packets)]
        t0 = time.perf_counter()
        decisions = [node.local_in(p, 0.0) for p in syns]
        best["new"] = min(best["new"], time.perf_counter() - t0)
        assert all(d is not None and d.action == "dnat" for d in decisions)

        acks = [Packet.tcp(syns[k].src_ip, targets[k], syns[k].sport, 80, "A") for k in range(packets)]
        t0 = time.perf_counter()
        for p in acks:
            node.local_in(p, 1.0)
        best["est"] = min(best["est"], time.perf_counter() - t0)

        replies = [Packet.tcp(d.after[0], syns[k].src_ip, d.after[1], syns[k].sport, "A")
                   for k, d in enumerate(decisions)]
        t0 = time.perf_counter()
        for p in replies:
            node.reply(p, 1.0)
        best["reply"] = min(best["reply"], time.perf_counter() - t0)
        assert replies[0].src_ip == targets[0]
    new_s, est_s, reply_s = best["new"], best["est"], best["reply"]
    return {
        "services": n, "endpoints_per_service": ENDPOINTS, "virtual_servers": len(kp.table),
        "packets": packets, "repeats": REPEATS, "build_seconds": round(build_s, 3),
        "new_conn_us": round(new_s / packets * 1e6, 2), "established_us": round(est_s / packets * 1e6, 2),
        "reply_us": round(reply_s / packets * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 and 1,000 services, fewer packets")
    args = ap.parse_args(argv)
    sizes = (100, 1000) if args.quick else (100, 10000)
    packets = 5000 if args.quick else 20000
    rows = [run(n, packets) for n in sizes]
    print(f"{'services':>9} {'VSs':>6} {'build s':>8} {'new µs':>8} {'est µs':>8} {'reply µs':>9}")
    for r in rows:
        print(f"{r['services']:>9} {r['virtual_servers']:>6} {r['build_seconds']:>8} {r['new_conn_us']:>8} "
              f"{r['established_us']:>8} {r['reply_us']:>9}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "ipvs", "quick": args.quick, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
