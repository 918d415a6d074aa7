"""Data-plane speed: full request traces/s at 100 and 10,000 Services, and established-packet throughput.

A "full request trace" is one new TCP connection from a pod to a random Service's ClusterIP:
SYN through the client's node (nat PREROUTING → KUBE-SERVICES → KUBE-SVC → KUBE-SEP DNAT,
filter FORWARD, nat POSTROUTING, conntrack), over VXLAN when the endpoint is remote, delivered to
the pod's socket, and the SYN-ACK walked back and un-NATed by conntrack — every step recorded.
"Established packets" are further packets of open connections (conntrack hit, no nat table).
"Change" columns: the first trace after a cluster change — a Pod nobody selects (kube-proxy's inputs
unchanged: the walker rebuilds hosts but keeps each node's compiled rules) and a new Service (the
visited nodes' rules are rendered, parsed and compiled again, as a kube-proxy sync would).

    python -m netsim.benchmarks.bench_dataplane [--quick] [--sizes 100,10000] [--rounds N] [--freeze] [--out FILE]

prints a table and writes benchmarks/results/dataplane.json. Every timed round is reported and
counted (median, min, max; never the best of them), collector pauses included: the cyclic garbage
collector runs as it would for any user of the API. Rates are given per wall-clock second and per
CPU second of the process (time.process_time: on a shared machine it depends less on the other
users); the load average before and after is recorded, and the collector's passes in each round
(how many of each generation, and the seconds they took). The aims are issue 16's aim 2: ≥ 20,000
traces/s at 10,000 Services, 10k/100 cost ratio ≤ 1.5, ≥ 100,000 established packets/s (4 hops).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import time

from netsim.control.cluster import Cluster
from netsim.control.model import ClusterConfig, ContainerPort, Node, Pod, Service, ServicePort
from netsim.skb.packet import Packet
from netsim.dataplane.walker import Walker

RESULTS = os.path.join(os.path.dirname(__file__), "results", "dataplane.json")


def build_cluster(n_services: int, seed: int = 1) -> Cluster:
    """3 nodes; 2 web pods on two nodes and a client pod on the third; n Services selecting the web pods."""
    c = Cluster(ClusterConfig(seed=seed, coredns=False, service_cidr="10.96.0.0/12"))
    objs: list = [Node("node-1", "192.168.49.2"), Node("node-2", "192.168.49.3"), Node("node-3", "192.168.49.4")]
    for i, node in ((1, "node-1"), (2, "node-2")):
        objs.append(Pod(f"web-{i}", labels={"app": "web"}, node_name=node,
                        ports=[ContainerPort(8080, name="http")]))
    objs.append(Pod("client", labels={"app": "client"}, node_name="node-3"))
    for i in range(n_services):
        objs.append(Service(f"svc-{i}", selector={"app": "web"},
                            ports=[ServicePort(80, "TCP", "http", "http")]))
    c.apply(objs)
    return c


class CollectorLog:
    """The cyclic collector's passes while the log is on (gc.callbacks): per round, how many of
    each generation and the seconds they took, so a slow round can be told apart."""

    def __init__(self) -> None:
        self.rounds: list[dict] = []
        self._t0 = 0.0

    def __enter__(self) -> "CollectorLog":
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._cb)

    def new_round(self) -> None:
        self.rounds.append({"gen0": 0, "gen1": 0, "gen2": 0, "seconds": 0.0})

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self.rounds:
            r = self.rounds[-1]
            r[f"gen{info['generation']}"] += 1
            r["seconds"] = round(r["seconds"] + time.perf_counter() - self._t0, 4)


def _stats(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1),
            "max": round(max(rates), 1), "rounds": [round(r, 1) for r in rates]}


def bench_traces(n_services: int, n_traces: int, rounds: int = 5, mode: str = "iptables",
                 changes: bool = True, freeze: bool = False) -> dict:
    """``rounds`` timed rounds of ``n_traces`` new connections to random ClusterIPs; every round's
    rate in ``rounds_traces_per_s`` (wall clock) and the statistics over them. ``freeze``: after the
    warm-up, gc.freeze() moves the cluster and its compiled rules out of later collections (what
    the pytest plugin does with its cached emulator); unfrozen at the end."""
    t0 = time.perf_counter()
    c = build_cluster(n_services)
    w = Walker(c, mode)
    client = w.host_for("pod/client")
    ips = [s.cluster_ip for s in c.services() if s.name.startswith("svc-")]
    # warm-up: render + compile each node's rules once (kube-proxy's sync, not per packet); the engine
    # compiles a chain when a packet first enters it, so compile them all here, as the kernel has
    # every rule loaded after iptables-restore
    for _ in range(5):
        w.connect(client, ips[0], 80)
    for node in ("node-1", "node-2", "node-3"):
        compile_all = getattr(getattr(w.netfilter(node), "engine", None), "compile_all", None)
        if compile_all is not None:
            compile_all()
    setup = time.perf_counter() - t0
    if freeze:
        gc.freeze()
    rng = random.Random(3)
    delivered = rules = 0
    wall: list[float] = []
    cpu: list[float] = []
    log = CollectorLog()
    with log:
        for _ in range(rounds):
            log.new_round()
            targets = [rng.choice(ips) for _ in range(n_traces)]
            delivered = rules = 0
            dt = dc = 0.0
            for i in range(0, n_traces, 100):
                # 20 new connections per cluster second: half-open entries (SYN_RECV, 60 s) expire as
                # they would, instead of piling up into reply-tuple clashes (insert_failed drops)
                c.advance(5)
                t1, c1 = time.perf_counter(), time.process_time()
                for ip in targets[i:i + 100]:
                    tr = w.connect(client, ip, 80)
                    delivered += tr.outcome.ok and tr.outcome.reply.matches_request
                    rules += tr.rules_evaluated
                dt += time.perf_counter() - t1
                dc += time.process_time() - c1
            wall.append(n_traces / dt)
            cpu.append(n_traces / max(dc, 1e-9))
    if freeze:
        gc.unfreeze()
    change = bench_changes(c, w, client) if changes else {}
    st = _stats(wall)
    return {"services": n_services, "traces": n_traces, "mode": mode, "gc_frozen": freeze,
            "traces_per_s": st["median"],
            "traces_per_s_stats": st, "rounds_traces_per_s": st["rounds"],
            "traces_per_cpu_s_stats": _stats(cpu), "collector_per_round": log.rounds,
            "delivered_with_reply_last_round": delivered,
            "kernel_rules_per_trace": round(rules / n_traces, 1), "setup_s": round(setup, 2), **change}


def bench_changes(c: Cluster, w: Walker, client) -> dict:
    """Seconds for the first trace after a Pod-only change, and after a Service is added."""
    ip = next(s.cluster_ip for s in c.services() if s.name == "svc-0")
    c.add(Pod("idle", labels={"app": "idle"}, node_name="node-1"))
    t1 = time.perf_counter()
    ok_pod = w.connect(w.host_for("pod/client"), ip, 80).outcome.ok
    pod_s = time.perf_counter() - t1
    c.add(Service("svc-new", selector={"app": "web"}, ports=[ServicePort(80, "TCP", "http", "http")]))
    new_ip = c.service("default", "svc-new").cluster_ip
    t1 = time.perf_counter()
    ok_svc = w.connect(w.host_for("pod/client"), new_ip, 80).outcome.ok
    svc_s = time.perf_counter() - t1
    assert ok_pod and ok_svc
    return {"after_pod_change_s": round(pod_s, 4), "after_service_change_s": round(svc_s, 2)}


def bench_established(n_services: int, n_packets: int, rounds: int = 5, mode: str = "iptables") -> dict:
    """Further packets (ACK) of one open connection, client pod -> node-3 -> VXLAN -> node-1/2 -> pod:
    4 hops each; every round's rate in ``rounds_packets_per_s``."""
    c = build_cluster(n_services)
    w = Walker(c, mode)
    client = w.host_for("pod/client")
    ip = next(s.cluster_ip for s in c.services() if s.name == "svc-0")
    tr = w.connect(client, ip, 80, sport=45000)
    assert tr.outcome.ok
    src = tr.flow.src
    pkt = Packet.tcp(src, ip, 45000, 80, flags="A", seq=1, ack=1)
    client = w.host_for("pod/client")
    hops = 0
    end = None
    wall: list[float] = []
    cpu: list[float] = []
    log = CollectorLog()
    with log:
        for _ in range(rounds):
            log.new_round()
            hops = 0
            t1, c1 = time.perf_counter(), time.process_time()
            for _ in range(n_packets):
                end, pt = w.send(client, pkt.copy())
                hops += len(pt.hops)
            wall.append(n_packets / (time.perf_counter() - t1))
            cpu.append(n_packets / max(time.process_time() - c1, 1e-9))
    st = _stats(wall)
    return {"services": n_services, "packets": n_packets, "mode": mode, "packets_per_s": st["median"],
            "packets_per_s_stats": st, "rounds_packets_per_s": st["rounds"],
            "packets_per_cpu_s_stats": _stats(cpu), "collector_per_round": log.rounds,
            "hops_per_packet": round(hops / n_packets, 1),
            "final_disposition": end.disposition if end else None}


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    ap.add_argument("--sizes", default="100,10000", help="Service counts, smallest first (default 100,10000)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5; quick 2)")
    ap.add_argument("--freeze", action="store_true",
                    help="gc.freeze() after each cluster's warm-up (its structures leave later collections)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    n = 300 if args.quick else 3000
    rounds = args.rounds or (2 if args.quick else 5)
    sizes = tuple(int(x) for x in args.sizes.split(","))
    load_before = _loadavg()
    rows = [bench_traces(s, n, rounds, freeze=args.freeze) for s in sizes]
    est = bench_established(sizes[0], 2000 if args.quick else 20000, rounds)
    load_after = _loadavg()
    ratio = rows[0]["traces_per_s"] / rows[-1]["traces_per_s"]
    big = rows[-1]["traces_per_s"]
    aims = {"traces_per_s": 20000, "slowdown_max": 1.5, "established_per_s": 100000}
    out = {"benchmark": "dataplane", "quick": args.quick, "python": platform.python_version(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "rounds": rounds,
           "counting": "every round (median of the rounds; min and max beside it), collector pauses included",
           "loadavg_before": load_before, "loadavg_after": load_after, "traces": rows, "established": est,
           "slowdown_10k_vs_100": round(ratio, 2), "aims": aims,
           "aims_met": {"traces_per_s": big >= aims["traces_per_s"], "slowdown_max": ratio <= aims["slowdown_max"],
                        "established_per_s": est["packets_per_s"] >= aims["established_per_s"]}}
    print(f"load average before: {load_before}")
    print(f"{'services':>9} {'traces':>7} {'traces/s median (min-max)':>27} {'per CPU s':>10} "
          f"{'kernel rules/trace':>19} {'setup s':>8} {'pod change s':>13} {'svc change s':>13}")
    for r in rows:
        st, sc = r["traces_per_s_stats"], r["traces_per_cpu_s_stats"]
        print(f"{r['services']:>9} {r['traces']:>7} {st['median']:>10.0f} ({st['min']:.0f}-{st['max']:.0f})"
              f"{'':>4} {sc['median']:>10.0f} {r['kernel_rules_per_trace']:>19} {r['setup_s']:>8} "
              f"{r['after_pod_change_s']:>13} {r['after_service_change_s']:>13}")
    print(f"slowdown {sizes[-1]}/{sizes[0]}: {ratio:.2f}x (aim <= 1.5)")
    es = est["packets_per_s_stats"]
    print(f"established packets/s: median {es['median']:.0f} (min {es['min']:.0f}, max {es['max']:.0f}; per CPU s "
          f"{est['packets_per_cpu_s_stats']['median']:.0f}; {est['hops_per_packet']} hops each; aim >= 100k)")
    print(f"load average after: {load_after}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    return out


if __name__ == "__main__":
    main()
