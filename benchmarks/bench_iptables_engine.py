"""Benchmark the iptables engine at 100 vs 10,000 ClusterIP Services.

Each Service has the chains kube-proxy writes (kube-proxy proxier_test.go TestOverallIPTablesRules): a
KUBE-SERVICES rule, a KUBE-SVC chain (masquerade rule + 5 statistic rules) and 5 KUBE-SEP
chains (hairpin masquerade + DNAT), in iptables-save form. Measures parse, Engine build (chains
compile lazily, on a packet's first entry), compiling every chain (`Engine.compile_all`), and
per-packet evaluation of nat PREROUTING for a random Service, and reports the mean number of
rules the kernel would have evaluated (which grows with N, while our time should not).
Evaluation is timed on the lazily compiled engine (what the walker uses; its first pass pays
for compiling the chains it reaches, so the best pass is reported with the median beside it)
and on an eagerly compiled one.

    python -m netsim.benchmarks.bench_iptables_engine [--quick]

As a `netsim bench` stage (``iptables-engine``), :func:`engine_records` gives the same figures as
records (records.py): source ``emulator`` for the engine's timings, ``model`` for the kernel's count.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import time

from netsim.benchmarks.records import Record, counted, timed
from netsim.skb.packet import Packet
from netsim.rules.iptables import Engine, EvalContext, parse

ENDPOINTS = 5
RESULTS = pathlib.Path(__file__).parent / "results" / "iptables_engine.json"


def kube_proxy_dump(n_services: int, endpoints: int = ENDPOINTS) -> str:
    """A synthetic kube-proxy nat table in iptables-save form."""
    decl = [":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
            ":KUBE-MARK-MASQ - [0:0]", ":KUBE-NODEPORTS - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-SERVICES - [0:0]"]
    rules = ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
             '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
             '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
             "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
             "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
             "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
             '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully']
    svc_rules, chain_rules = [], []
    for i in range(n_services):
        cip = f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"
        name = f"ns/svc{i}:http"
        svc = f"KUBE-SVC-{i:016d}"
        decl.append(f":{svc} - [0:0]")
        svc_rules.append(f'-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                         f"-m tcp --dport 80 -j {svc}")
        chain_rules.append(f'-A {svc} ! -s 10.244.0.0/16 -d {cip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                           f"-m tcp --dport 80 -j KUBE-MARK-MASQ")
        for e in range(endpoints):
            ep = f"10.244.{(i * endpoints + e) // 250 % 256}.{(i * endpoints + e) % 250 + 2}"
            sep = f"KUBE-SEP-{i:012d}{e:04d}"
            decl.append(f":{sep} - [0:0]")
            stat = (f"-m statistic --mode random --probability {round(1 / (endpoints - e) * 2**31) / 2**31:.11f} "
                    if e < endpoints - 1 else "")
            chain_rules.append(f'-A {svc} -m comment --comment "{name} -> {ep}:8080" {stat}-j {sep}')
            chain_rules.append(f'-A {sep} -s {ep}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            chain_rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination {ep}:8080')
    svc_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
                     'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return "*nat\n" + "\n".join(decl + rules + svc_rules + chain_rules) + "\nCOMMIT\n"


def build(n_services: int, packets: int, seed: int = 1, spread: int | None = None) -> dict:
    """Generate, parse and compile a dump; prepare packets to random Services among the first `spread`."""
    text = kube_proxy_dump(n_services)
    t0 = time.perf_counter()
    rs = parse(text, source=f"synthetic-{n_services}")
    t1 = time.perf_counter()
    engine = Engine(rs)
    t2 = time.perf_counter()
    eager = Engine(rs)
    t3 = time.perf_counter()
    eager.compile_all()
    t4 = time.perf_counter()
    rng = random.Random(seed)
    pkts = [Packet.tcp("10.244.200.9", f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                       rng.randrange(32768, 61000), 80)
            for i in (rng.randrange(spread or n_services) for _ in range(packets))]
    return {"engine": engine, "eager": eager, "pkts": pkts, "text": text, "rs": rs, "parse_s": t1 - t0,
            "compile_s": t2 - t1, "compile_all_s": t4 - t3, "eval_s": [], "eager_eval_s": [], "evaluated": [],
            "n": n_services, "seed": seed}


def eval_pass(b: dict, which: str = "engine") -> None:
    """One timed pass of nat PREROUTING over the prepared packets (`which`: "engine" or "eager")."""
    engine, pkts = b[which], b["pkts"]
    ctx = EvalContext(rng=random.Random(b["seed"]), local_addrs={0xC0A83102})
    for p in pkts:
        p.mark = 0
    evaluated = []
    s = time.perf_counter()
    for p in pkts:
        v = engine.run("nat", "PREROUTING", p, ctx)
        evaluated.append(v.rules_evaluated)
    b["eval_s" if which == "engine" else "eager_eval_s"].append((time.perf_counter() - s) / len(pkts))
    if any(x is None for x in evaluated):
        raise AssertionError("every packet should have been evaluated")
    if b["evaluated"] and b["evaluated"] != evaluated:
        raise AssertionError("the lazily and eagerly compiled engines disagree")
    b["evaluated"] = evaluated


def row(b: dict) -> dict:
    rs = b["rs"]
    return {
        "services": b["n"],
        "rules": sum(len(c.rules) for t in rs.tables.values() for c in t.chains.values()),
        "dump_lines": b["text"].count("\n"),
        "parse_s": round(b["parse_s"], 4),
        "compile_s": round(b["compile_s"], 4),
        "compile_all_s": round(b["compile_all_s"], 4),
        "eval_us_per_packet": round(min(b["eval_s"]) * 1e6, 2),
        "eval_us_per_packet_median": round(statistics.median(b["eval_s"]) * 1e6, 2),
        "eval_us_per_packet_eager": round(min(b["eager_eval_s"]) * 1e6, 2),
        "kernel_rules_evaluated_mean": round(statistics.mean(b["evaluated"]), 1),
        "packets": len(b["pkts"]),
    }


def engine_records(n_services: int, packets: int = 2000, rounds: int = 5, seed: int = 1) -> list[Record]:
    """The engine at `n_services` ClusterIP Services (ENDPOINTS each) as bench records: parse, lazy
    build and eager compile timed `rounds` times (one fresh build each), per-packet evaluation over
    `rounds` passes on the lazy and the eager engine, and the kernel's mean rules per packet."""
    builds = [build(n_services, packets, seed) for _ in range(rounds)]
    b = builds[-1]
    for _ in range(rounds):
        eval_pass(b)
        eval_pass(b, "eager")
    r = row(b)
    common = ("iptables", n_services, ENDPOINTS)
    out = [timed(*common, "engine_parse_seconds", [x["parse_s"] for x in builds], "s", "emulator"),
           timed(*common, "engine_build_seconds", [x["compile_s"] for x in builds], "s", "emulator",
                 engine="lazy"),
           timed(*common, "engine_compile_all_seconds", [x["compile_all_s"] for x in builds], "s", "emulator",
                 engine="eager"),
           timed(*common, "engine_eval_per_packet", b["eval_s"], "µs", "emulator", scale=1e6, digits=3,
                 engine="lazy", chain="nat PREROUTING", packets=len(b["pkts"])),
           timed(*common, "engine_eval_per_packet", b["eager_eval_s"], "µs", "emulator", scale=1e6, digits=3,
                 engine="eager", chain="nat PREROUTING", packets=len(b["pkts"])),
           counted(*common, "engine_ruleset_rules", r["rules"], "rules", dump_lines=r["dump_lines"]),
           counted(*common, "rules_evaluated_nat_prerouting_mean", r["kernel_rules_evaluated_mean"], "rules",
                   packets=len(b["pkts"]))]
    del builds
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer packets (CI smoke run)")
    args = ap.parse_args(argv)
    packets = 2000 if args.quick else 20000
    small, large = build(100, packets), build(10_000, packets)
    # the same 10,000-Service engine, but packets only to 100 of its Services: separates the
    # algorithmic cost (flat) from CPU-cache misses on a large working set
    hot = dict(large, pkts=[p.copy() for p in build(100, packets)["pkts"]], eval_s=[], evaluated=[])
    for _ in range(5):                 # interleave passes so machine load hits every case alike
        for b in (small, large):
            eval_pass(b)
            eval_pass(b, "eager")
        eval_pass(hot)
    rows = [row(small), row(large)]
    rows[1]["eval_us_per_packet_hot100"] = round(min(hot["eval_s"]) * 1e6, 2)
    ratio = rows[1]["eval_us_per_packet"] / rows[0]["eval_us_per_packet"]
    hot_ratio = rows[1]["eval_us_per_packet_hot100"] / rows[0]["eval_us_per_packet"]
    eager_ratio = rows[1]["eval_us_per_packet_eager"] / rows[0]["eval_us_per_packet_eager"]
    print(f"{'services':>8} {'rules':>8} {'parse s':>8} {'build s':>8} {'compile all s':>13} {'eval us/pkt':>11} "
          f"{'(median)':>8} {'eager':>6} {'kernel rules/pkt':>16}")
    for r in rows:
        print(f"{r['services']:>8} {r['rules']:>8} {r['parse_s']:>8.3f} {r['compile_s']:>8.3f} {r['compile_all_s']:>13.3f} "
              f"{r['eval_us_per_packet']:>11.2f} {r['eval_us_per_packet_median']:>8.2f} "
              f"{r['eval_us_per_packet_eager']:>6.2f} {r['kernel_rules_evaluated_mean']:>16.1f}")
    print(f"per-packet time ratio 10000/100: {ratio:.2f} lazy, {eager_ratio:.2f} eager (target <= 1.5); "
          f"10000 engine, packets to 100 Services: {hot_ratio:.2f}")
    result = {"benchmark": "iptables_engine", "quick": args.quick, "rows": rows,
              "eval_ratio_10000_over_100": round(ratio, 3), "eval_ratio_10000_over_100_eager": round(eager_ratio, 3),
              "eval_ratio_hot100": round(hot_ratio, 3)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
