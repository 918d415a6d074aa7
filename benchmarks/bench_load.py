"""How long the control plane takes to load and reconcile a big cluster, and how much memory it holds.

    python -m netsim.benchmarks.bench_load [--quick] [--services N] [--endpoints E] [--nodes K]

As a `netsim bench` stage (``load``), :func:`load_records` gives the same figures as records.

Default: 10,000 Services x 5 endpoints (one 5-replica Deployment each) over 100 nodes, built two ways:
from generated multi-document YAML through `load_text` (parse + validate + reconcile), and from model
objects through `Cluster.apply` (reconcile only). Each measurement runs in a fresh process so that peak
RSS (ru_maxrss) belongs to it alone; a further run under tracemalloc gives the Python heap's peak.
Prints a table and writes benchmarks/results/load.json.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

from netsim.benchmarks.records import Record, counted, timed

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
# clear of the default Service range 10.96.0.0/12 (the API server refuses overlapping ranges); a /22
# per node leaves room for 8,192 nodes
POD_CIDR = "10.128.0.0/9"


# ---------------------------------------------------------------- inputs
def cluster_yaml(services: int, endpoints: int, nodes: int) -> str:
    """The Cluster document (a /22 per node so 500+ pods fit) plus a Deployment and a Service per app."""
    out = ["apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n"
           f"  podCIDR: {POD_CIDR}\n  nodeCIDRMaskSize: 22\n  nodeNetwork: 172.16.0.0/16\n  seed: 1\n  nodes:\n"]
    out += [f"    - {{name: node-{i}, ip: 172.16.{i // 250}.{i % 250 + 2}}}\n" for i in range(nodes)]
    for i in range(services):
        out.append(
            f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app-{i}, namespace: default}}\n"
            f"spec:\n  replicas: {endpoints}\n  selector: {{matchLabels: {{app: app-{i}}}}}\n"
            f"  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n"
            f"      containers: [{{name: c, image: app, ports: [{{name: http, containerPort: 8080}}]}}]\n"
            f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: app-{i}, namespace: default}}\n"
            f"spec:\n  selector: {{app: app-{i}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n")
    return "".join(out)


def cluster_objects(services: int, endpoints: int, nodes: int):
    from netsim.control.model import ClusterConfig, ContainerPort, Deployment, Node, Pod, Service, ServicePort
    cfg = ClusterConfig(name="bench", cluster_cidr=POD_CIDR, node_cidr_mask=22, node_network="172.16.0.0/16",
                        seed=1)
    objs: list = [Node(f"node-{i}", f"172.16.{i // 250}.{i % 250 + 2}",
                       labels={"kubernetes.io/hostname": f"node-{i}"}) for i in range(nodes)]
    for i in range(services):
        sel = {"app": f"app-{i}"}
        objs.append(Deployment("Deployment", f"app-{i}", "default", endpoints, sel,
                               Pod("", labels=dict(sel), ports=[ContainerPort(8080, name="http")]),
                               template_hash=f"{i:x}"))
        objs.append(Service(f"app-{i}", selector=sel, ports=[ServicePort(80, name="http", target_port="http")]))
    return cfg, objs


# ---------------------------------------------------------------- measurements (each in its own process)
def _summary(cluster) -> dict:
    eps = [e for s in cluster.endpoint_slices() for e in s.endpoints]
    return {"services": len(cluster.services()), "pods": len(cluster.pods()),
            "endpoint_slices": len(cluster.endpoint_slices()), "endpoints": len(eps),
            "ready_endpoints": sum(e.ready for e in eps), "events": len(cluster.event_log)}


def measure_yaml(services: int, endpoints: int, nodes: int) -> dict:
    import yaml
    from netsim.control import manifests
    text = cluster_yaml(services, endpoints, nodes)
    t0 = time.perf_counter()
    n_docs = sum(1 for _ in yaml.load_all(text, Loader=manifests._SafeLoader))
    t_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster = manifests.load_text(text, "bench.yaml")
    t_load = time.perf_counter() - t0
    return {"seconds": t_load, "yaml_parse_seconds": t_parse, "documents": n_docs, "yaml_bytes": len(text),
            "max_rss_mib": _max_rss_mib(), **_summary(cluster)}


def measure_apply(services: int, endpoints: int, nodes: int) -> dict:
    from netsim.control.cluster import Cluster
    cfg, objs = cluster_objects(services, endpoints, nodes)
    t0 = time.perf_counter()
    cluster = Cluster(cfg)
    cluster.apply(objs)
    t_apply = time.perf_counter() - t0
    return {"seconds": t_apply, "max_rss_mib": _max_rss_mib(), **_summary(cluster)}


def measure_heap(services: int, endpoints: int, nodes: int) -> dict:
    import gc
    import tracemalloc
    from netsim.control.cluster import Cluster
    cfg, objs = cluster_objects(services, endpoints, nodes)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    cluster = Cluster(cfg)
    cluster.apply(objs)
    del objs
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"heap_peak_mib": (peak - base) / 2**20, "heap_retained_mib": (current - base) / 2**20,
            "services": len(cluster.services())}


def measure_baseline(*_args) -> dict:
    import netsim.control.cluster  # noqa: F401  (the import's own footprint)
    import netsim.control.manifests  # noqa: F401
    return {"max_rss_mib": _max_rss_mib()}


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports KiB


def _in_child(fn: Callable[..., dict], *args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def load_records(services: int, endpoints: int = 5, nodes: int = 20, rounds: int = 5) -> list[Record]:
    """This scenario as bench records (records.py), source ``emulator``: each measurement `rounds`
    times, each in a fresh process (peak RSS is that process's own, above a bare import's)."""
    shape = (services, endpoints, nodes)
    floor = _in_child(measure_baseline)["max_rss_mib"]     # a bare import's RSS (steady: measured once)
    yaml_runs = [_in_child(measure_yaml, *shape) for _ in range(rounds)]
    apply_runs = [_in_child(measure_apply, *shape) for _ in range(rounds)]
    heap = _in_child(measure_heap, *shape)                # deterministic: one tracemalloc run
    want = services * endpoints
    for r in yaml_runs + apply_runs:
        if r["ready_endpoints"] < want or r["services"] < services:
            raise AssertionError(f"load scenario built {r['services']} Services, {r['ready_endpoints']} endpoints")
    labels = {"nodes": nodes, "pods": yaml_runs[0]["pods"], "documents": yaml_runs[0]["documents"]}
    common = ("any", services, endpoints)
    return [
        timed(*common, "load_yaml_seconds", [r["seconds"] for r in yaml_runs], "s", "emulator",
              what="load_text: parse + validate + reconcile", **labels),
        timed(*common, "yaml_parse_seconds", [r["yaml_parse_seconds"] for r in yaml_runs], "s", "emulator", **labels),
        timed(*common, "apply_seconds", [r["seconds"] for r in apply_runs], "s", "emulator",
              what="Cluster.apply of model objects: reconcile only", **labels),
        timed(*common, "load_yaml_peak_rss_mib", [r["max_rss_mib"] - floor for r in yaml_runs], "MiB", "emulator",
              digits=1, above="a bare import", **labels),
        timed(*common, "apply_peak_rss_mib", [r["max_rss_mib"] - floor for r in apply_runs], "MiB", "emulator",
              digits=1, above="a bare import", **labels),
        counted(*common, "heap_retained_mib", round(heap["heap_retained_mib"], 1), "MiB", "emulator",
                measured="tracemalloc after Cluster.apply", **labels),
        counted(*common, "heap_peak_mib", round(heap["heap_peak_mib"], 1), "MiB", "emulator",
                measured="tracemalloc during Cluster.apply", **labels),
    ]


# ---------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.bench_load", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 Services over 20 nodes (a few seconds)")
    ap.add_argument("--services", type=int)
    ap.add_argument("--endpoints", type=int, default=5)
    ap.add_argument("--nodes", type=int)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    services = args.services or (1000 if args.quick else 10000)
    nodes = args.nodes or (20 if args.quick else 100)
    shape = (services, args.endpoints, nodes)

    base = _in_child(measure_baseline)
    from_yaml = _in_child(measure_yaml, *shape)
    from_objects = _in_child(measure_apply, *shape)
    heap = _in_child(measure_heap, *shape)
    want_pods = services * args.endpoints
    for r in (from_yaml, from_objects):
        assert r["ready_endpoints"] >= want_pods and r["services"] >= services, r   # + kube-dns / CoreDNS

    rows = [
        ("load_text(YAML): parse+validate+reconcile", from_yaml["seconds"], from_yaml["max_rss_mib"] - base["max_rss_mib"]),
        ("  of which YAML parsing alone", from_yaml["yaml_parse_seconds"], None),
        ("Cluster.apply(model objects)", from_objects["seconds"], from_objects["max_rss_mib"] - base["max_rss_mib"]),
    ]
    print(f"control plane load: {services} Services x {args.endpoints} endpoints over {nodes} nodes "
          f"({from_yaml['documents']} documents, {from_yaml['yaml_bytes'] / 2**20:.1f} MiB of YAML)")
    print(f"{'phase':46} {'seconds':>8} {'us/endpoint':>12} {'peak RSS +MiB':>14}")
    for name, sec, rss in rows:
        print(f"{name:46} {sec:8.2f} {sec / want_pods * 1e6:12.1f} {'' if rss is None else f'{rss:14.0f}'}")
    print(f"python heap (tracemalloc, Cluster.apply): peak {heap['heap_peak_mib']:.0f} MiB, "
          f"retained {heap['heap_retained_mib']:.0f} MiB "
          f"({heap['heap_retained_mib'] * 2**20 / want_pods / 1024:.1f} KiB per endpoint incl. pod, slice share, events)")
    print(f"result: {from_yaml['services']} services, {from_yaml['pods']} pods, {from_yaml['endpoint_slices']} "
          f"slices, {from_yaml['endpoints']} endpoints, {from_yaml['events']} events")

    result = {
        "benchmark": "load", "quick": args.quick,
        "shape": {"services": services, "endpoints_per_service": args.endpoints, "nodes": nodes},
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
        "baseline_rss_mib": base["max_rss_mib"],
        "load_text": from_yaml, "apply": from_objects, "heap": heap,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
