"""Benchmark the nftables engine at 100 vs 10,000 ClusterIP Services, beside what the kernel evaluates.

The ruleset is kube-proxy's `ip kube-proxy` table as our nftables proxier renders it (netsim.rules.
nftables.proxier_sync, default release) for N ClusterIP Services with 5 endpoints each (the inputs
of benchmarks/sync.py). Measured: loading the text (`nft -f` semantics: parse + compile every rule),
and per packet the prerouting hook of a new connection to a random Service (filter-prerouting-pre-dnat,
then nat-prerouting: `services` vmap lookup, service chain, numgen vmap, endpoint chain DNAT). The
kernel's cost is reported as rules entered and set/map lookups per packet: both stay flat with N (one
verdict-map lookup finds the Service), where iptables mode walks KUBE-SERVICES (bench_iptables_engine).
Times are this process's CPU time (time.process_time: the machine is shared, wall time mostly
measures the others); every round is printed (median, min, max over rounds).

    python -m netsim.benchmarks.bench_nft_engine [--quick] [--rounds N]
"""
from __future__ import annotations

import argparse
import gc
import json
import pathlib
import random
import statistics
import time

from netsim.benchmarks.sync import synthetic_inputs
from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.engine import NftContext, NftEngine
from netsim.rules.nftables.parse import load
from netsim.rules.nftables.proxier_sync import NFTablesProxier
from netsim.skb.packet import Packet, ip2int

ENDPOINTS = 5
RESULTS = pathlib.Path(__file__).parent / "results" / "nft_engine.json"


def ruleset_text(n_services: int, endpoints: int = ENDPOINTS) -> tuple[str, list[str]]:
    """The node's table for N Services (nft -f text) and the Services' ClusterIPs."""
    ports, eps, cfg = synthetic_inputs(n_services, endpoints)
    fp = NFTablesProxier(NFTablesConfig(node_name=cfg.node_name, node_ip=cfg.node_ip,
                                        local_detector=cfg.local_detector, service_cidrs=["10.96.0.0/12"]))
    fp.sync(ports, eps)
    return fp.state.dump(), [p.cluster_ip for p in ports]


def build(n_services: int, packets: int, seed: int = 1) -> dict:
    text, cips = ruleset_text(n_services)
    t0 = time.process_time()
    rs = load(text, source=f"synthetic-{n_services}")
    load_s = time.process_time() - t0
    rng = random.Random(seed)
    pkts = [Packet.tcp("10.200.0.9", cips[rng.randrange(n_services)], rng.randrange(32768, 61000), 80)
            for _ in range(packets)]
    return {"n": n_services, "engine": NftEngine(rs), "rs": rs, "text": text, "pkts": pkts, "load_s": load_s,
            "eval_s": [], "rules": [], "lookups": [], "seed": seed}


def eval_pass(b: dict) -> None:
    """One timed pass: each packet through the prerouting hook as a new connection (the NAT binding
    is returned, as to the data plane, not applied)."""
    eng = b["engine"]
    ctx = NftContext(local_addrs={ip2int("192.168.49.2")}, rng=random.Random(b["seed"]))
    pkts = b["pkts"]
    for p in pkts:
        p.mark = 0
    results = []
    s = time.process_time()
    for p in pkts:
        results.append(eng.run_hook("prerouting", p, ctx, trace=False))
    b["eval_s"].append((time.process_time() - s) / len(pkts))
    if not all(res[-1].nat is not None and res[-1].nat.kind == "DNAT" for res in results):
        raise AssertionError("every packet to a Service with endpoints must be DNATed")
    b["rules"] = [sum(r.rules_evaluated for r in res) for res in results]
    b["lookups"] = [sum(r.lookups for r in res) for res in results]


def row(b: dict) -> dict:
    us = [x * 1e6 for x in b["eval_s"]]
    t = b["rs"].table("ip", "kube-proxy")
    return {
        "services": b["n"],
        "chains": len(t.chains),
        "rules": sum(len(c.rules) for c in t.chains.values()),
        "elements": sum(len(s) for s in t.sets.values()),
        "text_lines": b["text"].count("\n"),
        "load_cpu_s": round(b["load_s"], 3),
        "eval_us_per_packet_median": round(statistics.median(us), 2),
        "eval_us_per_packet_min": round(min(us), 2),
        "eval_us_per_packet_max": round(max(us), 2),
        "eval_us_per_packet_rounds": [round(x, 2) for x in us],
        "kernel_rules_per_packet": round(statistics.mean(b["rules"]), 2),
        "kernel_lookups_per_packet": round(statistics.mean(b["lookups"]), 2),
        "packets": len(b["pkts"]),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer packets and rounds (CI smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="timed passes per size (default 5, quick 2)")
    args = ap.parse_args(argv)
    packets = 2000 if args.quick else 20000
    rounds = args.rounds or (2 if args.quick else 5)
    small, large = build(100, packets), build(10_000, packets)
    # the 10,000-Service table with packets to 100 of its Services only: separates the algorithmic
    # cost (flat) from CPU-cache misses over a large working set of rules
    hot = dict(large, pkts=[p.copy() for p in small["pkts"]], eval_s=[], rules=[], lookups=[])
    # the tables live as long as the run (as a node's do in an emulator): keep them out of the cyclic
    # GC's collections, which would otherwise walk 10,000 Services' rules during the small case's passes
    gc.collect()
    gc.freeze()
    for _ in range(rounds):               # interleaved, so machine load hits every case alike
        for b in (small, large, hot):
            eval_pass(b)
    rows = [row(small), row(large)]
    hot_us = [x * 1e6 for x in hot["eval_s"]]
    rows[1]["eval_us_per_packet_hot100_median"] = round(statistics.median(hot_us), 2)
    rows[1]["eval_us_per_packet_hot100_rounds"] = [round(x, 2) for x in hot_us]
    print(f"{'services':>8} {'rules':>7} {'elements':>8} {'load s':>7} {'eval us/pkt median':>18} {'min':>6} "
          f"{'max':>6} {'kernel rules/pkt':>16} {'lookups/pkt':>11}")
    for r in rows:
        print(f"{r['services']:>8} {r['rules']:>7} {r['elements']:>8} {r['load_cpu_s']:>7.2f} "
              f"{r['eval_us_per_packet_median']:>18.2f} {r['eval_us_per_packet_min']:>6.2f} "
              f"{r['eval_us_per_packet_max']:>6.2f} {r['kernel_rules_per_packet']:>16.2f} "
              f"{r['kernel_lookups_per_packet']:>11.2f}")
        print(f"{'':>8} rounds (us/pkt): {', '.join(f'{x:.2f}' for x in r['eval_us_per_packet_rounds'])}")
    ratio = rows[1]["eval_us_per_packet_median"] / rows[0]["eval_us_per_packet_median"]
    hot_ratio = rows[1]["eval_us_per_packet_hot100_median"] / rows[0]["eval_us_per_packet_median"]
    print(f"per-packet time ratio 10000/100 (medians): {ratio:.2f}; 10000-Service table, packets to 100 "
          f"Services: {hot_ratio:.2f}; kernel rules per packet {rows[0]['kernel_rules_per_packet']} vs "
          f"{rows[1]['kernel_rules_per_packet']}, lookups {rows[0]['kernel_lookups_per_packet']} vs "
          f"{rows[1]['kernel_lookups_per_packet']}")
    result = {"benchmark": "nft_engine", "quick": args.quick, "rounds": rounds, "rows": rows,
              "eval_ratio_10000_over_100": round(ratio, 3), "eval_ratio_hot100": round(hot_ratio, 3)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
