"""kube-proxy modes side by side in the emulator: iptables vs IPVS at 100 and 10,000 Services.

    python -m netsim.benchmarks.bench_modes [--quick]

Cluster: 3 nodes, web pods on node-1 and node-2, a client pod on node-3, N ClusterIP Services
selecting the web pods (one TCP port each). For each mode and N:

* ``build_ms``       – programming one node, as the walker does it lazily on first use:
                       iptables: kube-proxy's iptables-save text rendered, parsed and compiled;
                       IPVS: one syncProxyRules pass (virtual servers, real servers, ipsets) plus
                       its constant iptables text parsed and compiled;
* ``objects``        – what that node holds: iptables rules (``-A`` lines) / IPVS virtual servers,
                       real servers and iptables rules;
* ``trace_us``       – one new connection through the walker with the full trace (SYN there and
                       SYN-ACK back), from the client pod to a random Service (best of 3 rounds);
* ``rules_first_pkt``– iptables rules the kernel would evaluate for the SYN, over all its hops
                       (the Walker's count; in IPVS mode the constant ipset-matching rules);
* ``ipvs_lookups``   – IPVS mode: hash-table lookups the SYN costs in ip_vs (virtual-server table
                       + connection table, counted on the emulator's tables, which mirror the
                       kernel's); iptables mode: 0;
* ``kernel_ms``      – the real-kernel anchor for iptables mode from benchmarks/results/kernel.json
                       (first connect() to the first / last Service, iptables-nft in a netns) when
                       present. IPVS has no kernel anchor here (the VM has no ip_vs module); its
                       kernel cost is flat in N by construction (hash lookups: ip_vs_ctl.c
                       ip_vs_service_find, ip_vs_conn.c ip_vs_conn_in_get; KEP-3866) – state that next to any IPVS figure.

Prints a markdown table and writes benchmarks/results/modes.json. --quick: N = 100 and 1,000 and
fewer traces (a CI smoke run). As a `netsim bench` stage (``modes``), :func:`modes_records` gives
the same figures as records (records.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional

from netsim.benchmarks.bench_dataplane import build_cluster  # the same 3-node cluster
from netsim.benchmarks.records import Record, counted, timed
from netsim.control.cluster import Cluster
from netsim.dataplane.walker import Walker

RESULTS = Path(__file__).parent / "results" / "modes.json"
KERNEL = Path(__file__).parent / "results" / "kernel.json"
ROUNDS = 3
ENDPOINTS_PER_SERVICE = 2                 # build_cluster: every Service selects the two web pods


def _count_calls(obj: Any, name: str, counter: list[int]) -> None:
    """Wrap one instance's method so that each call bumps counter[0] (measurement pass only)."""
    orig: Callable = getattr(obj, name)

    def counted(*a, **kw):
        counter[0] += 1
        return orig(*a, **kw)
    setattr(obj, name, counted)


def node_objects(w: Walker, mode: str, node: str) -> dict:
    nf = w.netfilter(node)
    rules = sum(1 for line in nf.save().splitlines() if line.startswith("-A "))
    out = {"iptables_rules": rules}
    hooks = w.ipvs(node)                       # None unless the mode programs IPVS
    if hooks is not None:
        table = hooks.state.table
        out["virtual_servers"] = len(table)
        out["real_servers"] = sum(len(vs.dests) for vs in table)
    return out


def bench_build(c: Cluster, mode: str, node: str = "node-3") -> tuple[float, dict]:
    w = Walker(c, mode)
    w.sync()
    t0 = time.perf_counter()
    w.netfilter(node)
    w.ipvs(node)
    dt = time.perf_counter() - t0
    return dt, node_objects(w, mode, node)


def first_packet_costs(c: Cluster, mode: str, ips: list[str], samples: int = 20) -> dict:
    """Rules evaluated for the SYN and IPVS hash lookups per connection (a fresh walker)."""
    w = Walker(c, mode)
    client = w.host_for("pod/client")
    lookups = [0]
    for node in ("node-1", "node-2", "node-3"):
        w.netfilter(node)
        hooks = w.ipvs(node)                    # IPVS hooks when the mode programs IPVS
        if hooks is not None:
            kp = hooks.kp
            _count_calls(kp.node.table, "lookup", lookups)        # ip_vs_service_find
            _count_calls(kp.node.conns, "in_get", lookups)        # ip_vs_conn_in_get
            _count_calls(kp.node.conns, "out_get", lookups)       # ip_vs_conn_out_get
            _count_calls(kp.node.conns, "template_get", lookups)  # persistence templates
    rng = random.Random(5)
    rules = []
    per_conn = []
    for _ in range(samples):
        before = lookups[0]
        t = w.connect(client, rng.choice(ips), 80)
        assert t.outcome.disposition == "DELIVERED", t.outcome
        rules.append(t.request.rules)
        per_conn.append(lookups[0] - before)          # SYN + SYN-ACK of this connection
    return {"rules_first_pkt": round(sum(rules) / len(rules), 1), "rules_min": min(rules), "rules_max": max(rules),
            "ipvs_lookups_per_conn": round(sum(per_conn) / len(per_conn), 1)}


def bench_traces(c: Cluster, mode: str, ips: list[str], n_traces: int, rounds: int = ROUNDS) -> dict:
    w = Walker(c, mode)
    client = w.host_for("pod/client")
    for _ in range(5):                          # programs the nodes (kube-proxy's sync), not timed
        w.connect(client, ips[0], 80)
    rng = random.Random(3)
    best: Optional[float] = None
    delivered = 0
    per_round: list[float] = []
    for _ in range(rounds):
        targets = [rng.choice(ips) for _ in range(n_traces)]
        delivered = 0
        dt = 0.0
        for i in range(0, n_traces, 100):
            c.advance(5)                        # half-open entries expire as they would
            w.sync()                            # re-sync outside the timed region
            w.connect(client, targets[i], 80)
            t1 = time.perf_counter()
            for ip in targets[i:i + 100]:
                tr = w.connect(client, ip, 80)
                delivered += tr.outcome.disposition == "DELIVERED" and tr.outcome.reply.matches_request
            dt += time.perf_counter() - t1
        best = dt if best is None else min(best, dt)
        per_round.append(dt / n_traces)
    assert best is not None
    return {"trace_us": round(best / n_traces * 1e6, 1), "traces_per_s": round(n_traces / best, 1),
            "delivered_with_reply": delivered, "traces": n_traces, "rounds_s": per_round}


def kernel_anchor(n: int) -> Optional[dict]:
    try:
        data = json.loads(KERNEL.read_text())
    except (OSError, ValueError):
        return None
    for row in data.get("services", []):
        if row.get("services") == n:
            return {"first_connect_ms_first_service": row.get("first_connect_ms_first_service"),
                    "first_connect_ms_last_service": row.get("first_connect_ms_last_service"),
                    "rules": row.get("rules"), "restore_s": row.get("restore_s"),
                    "kernel": data.get("kernel")}
    return None


def run(n: int, n_traces: int) -> list[dict]:
    t0 = time.perf_counter()
    c = build_cluster(n)
    setup = time.perf_counter() - t0
    ips = [s.cluster_ip for s in c.services() if s.name.startswith("svc-")]
    from netsim.rules.registry import available_modes, get
    rows = []
    for mode in available_modes(kube_proxy_only=True, walks_packets=True):
        build_s, objects = bench_build(c, mode)
        costs = first_packet_costs(c, mode, ips)
        tr = bench_traces(c, mode, ips, n_traces)
        row = {"mode": mode, "services": n, "build_ms": round(build_s * 1e3, 1), "objects": objects,
               **costs, **tr, "cluster_setup_s": round(setup, 2),
               "kernel_anchor": kernel_anchor(n) if get(mode).iptables_only else None}
        rows.append(row)
    return rows


def modes_records(n: int, n_traces: int = 300, rounds: int = 5) -> list[Record]:
    """This scenario at `n` Services as bench records (records.py), both modes: the node build
    (`rounds` fresh walkers), what the node holds, rules and IPVS lookups per new connection (model),
    and one traced connection's cost over `rounds` rounds (emulator)."""
    c = build_cluster(n)
    ips = [s.cluster_ip for s in c.services() if s.name.startswith("svc-")]
    from netsim.rules.registry import available_modes
    out: list[Record] = []
    for mode in available_modes(kube_proxy_only=True, walks_packets=True):
        builds = [bench_build(c, mode) for _ in range(rounds)]
        objects = builds[-1][1]
        costs = first_packet_costs(c, mode, ips)
        tr = bench_traces(c, mode, ips, n_traces, rounds)
        common = (mode, n, ENDPOINTS_PER_SERVICE)
        out.append(timed(*common, "node_build_seconds", [b[0] for b in builds], "s", "emulator", node="node-3"))
        for key, value in sorted(objects.items()):
            out.append(counted(*common, f"node_{key}", value, key.split("_", 1)[-1] if "_" in key else key,
                               node="node-3"))
        out.append(Record(*common, "rules_first_packet_all_hops_mean", costs["rules_first_pkt"], "rules", "model",
                          repeats=20, spread={"min": costs["rules_min"], "max": costs["rules_max"]},
                          labels={"hops": "client node and endpoint node", "samples": 20}))
        if "virtual_servers" in objects:          # the mode programs IPVS
            out.append(counted(*common, "ipvs_lookups_per_connection", costs["ipvs_lookups_per_conn"], "lookups",
                               counts="ip_vs_service_find + ip_vs_conn_{in,out}_get for SYN and SYN-ACK"))
        out.append(timed(*common, "traced_connection_seconds", tr["rounds_s"], "µs", "emulator", scale=1e6, digits=2,
                         traces=n_traces, trace="full (SYN and SYN-ACK)"))
    return out


def _objects_text(row: dict) -> str:
    o = row["objects"]
    if "virtual_servers" in o:
        return f"{o['virtual_servers']} VS / {o['real_servers']} RS / {o['iptables_rules']} rules"
    return f"{o['iptables_rules']} rules"


def _kernel_text(row: dict) -> str:
    from netsim.rules.registry import get
    k = row.get("kernel_anchor")
    if not get(row["mode"]).iptables_only:
        return "n/a (no ip_vs here)"
    if not k:
        return "not measured"
    return f"{k['first_connect_ms_first_service']}-{k['first_connect_ms_last_service']}"


def table(rows: list[dict]) -> str:
    head = ("| mode | services | node build ms | node holds | trace µs | traces/s | rules / first pkt "
            "(min-max) | IPVS lookups / conn | kernel connect ms |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['services']} | {r['build_ms']} | {_objects_text(r)} | {r['trace_us']} | "
                     f"{r['traces_per_s']} | {r['rules_first_pkt']} ({r['rules_min']}-{r['rules_max']}) | "
                     f"{r['ipvs_lookups_per_conn']} | {_kernel_text(r)} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 100 and 1,000, fewer traces (CI smoke run)")
    args = ap.parse_args(argv)
    sizes = (100, 1000) if args.quick else (100, 10_000)
    n_traces = 300 if args.quick else 2000
    rows = [r for n in sizes for r in run(n, n_traces)]
    out = {"benchmark": "modes", "quick": args.quick, "python": platform.python_version(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows,
           "ip_vs_available": os.path.exists("/proc/net/ip_vs"),
           "notes": ["IPVS kernel cost is not measured here (no ip_vs module); it rests on the published "
                     "shape: hash lookups, flat in N (ip_vs_ctl.c ip_vs_service_find, ip_vs_conn.c ip_vs_conn_in_get; KEP-3866).",
                     "rules_first_pkt counts every hop of the SYN (client node and endpoint node).",
                     "ipvs_lookups_per_conn counts ip_vs service and connection-table lookups for the SYN "
                     "and the SYN-ACK of one connection."]}
    print(table(rows))
    from netsim.rules.registry import DEFAULT_MODE
    for n in sizes:
        by = {r["mode"]: r for r in rows if r["services"] == n}
        base = by[DEFAULT_MODE]
        for mode, r in by.items():
            if mode != base["mode"]:
                print(f"N={n}: trace cost {base['mode']}/{mode} = {base['trace_us'] / r['trace_us']:.2f}x, "
                      f"rules per first packet {base['rules_first_pkt']} vs {r['rules_first_pkt']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
