"""`netsim reach` benchmarks on the seeded synthetic cluster (benchmarks/reach_synth.py).

B1 (``--b1``, default): engines and workers on this machine — serial vs a local process pool vs Dask
(LocalCluster), 1 → 2 workers: wall time, speedup over one worker, broadcast time (pool start /
scatter), per-batch overhead (wall × workers − the workers' own compute, per batch), peak memory per
worker, and a batch-size sweep. The issue's size is 500 nodes / 5,000 Services; ``--max-probes``
caps the probes traced per round so a run fits a shared machine (the figures say how many ran).

B2 (``--b2``): the class reduction at scale — naive (source, destination) probes vs probe classes,
reduction time, model build time and memory per model key, matrix wall time (capped by
``--max-probes``), output sizes, and mismatches on a validation sample.

    python -m netsim.benchmarks.bench_reach --quick            # CI's sanity run (no timing asserted)
    nice -n 10 python -m netsim.benchmarks.bench_reach --b1 --nodes 500 --services 5000 --pods 5000
    nice -n 10 python -m netsim.benchmarks.bench_reach --b2 --nodes 5000 --services 50000 --pods 150000

Every round is reported (median, min, max); results go to --out (benchmarks/results/reach.json).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import random
import resource
import statistics
import tempfile
import time
from typing import Callable, Optional

from netsim.benchmarks.reach_synth import SynthKnobs, generate

RESULTS = os.path.join(os.path.dirname(__file__), "results", "reach.json")


def _limits():
    """Input limits for the synthetic manifests: B2's text is ~7 million YAML values."""
    from netsim.control.inputread import InputLimits
    return InputLimits(max_bytes=1 << 30, max_values=100_000_000)


def loadavg() -> list[float]:
    """/proc/loadavg's 1/5/15-minute averages: the machine is shared, so every figure carries them."""
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


def _stats(samples: list[float]) -> dict:
    return {"rounds": len(samples), "median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples), "all_s": [round(s, 4) for s in samples]}


def prepare(knobs: SynthKnobs, mode: Optional[str]) -> dict:
    """Generate, load, read the inventory and plan: what the reduction costs and gives."""
    import netsim
    from netsim.reach.evaluate import ALL_NODES, ModelSpec
    from netsim.reach.inventory import Inventory
    from netsim.reach.matrix import class_tasks
    from netsim.reach.plan import Planner
    text = generate(knobs)
    t0 = time.perf_counter()
    em = netsim.load(text, mode=mode, limits=_limits())
    t_load = time.perf_counter() - t0
    mode = mode or em.mode
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    inv = Inventory.from_emulator(em, "v")
    planner = Planner([inv], modes=[mode])
    classes = planner.plan()
    t_plan = time.perf_counter() - t0
    tasks = class_tasks(planner, classes, [mode])
    t_tasks = time.perf_counter() - t0 - t_plan
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kinds: dict[str, int] = {}
    for pc in classes:
        kinds[pc.slot.kind] = kinds.get(pc.slot.kind, 0) + 1
    return {"text": text, "em": em, "mode": mode, "planner": planner, "classes": classes, "tasks": tasks,
            "spec": ModelSpec((("v", (text,)),), limits=_limits()),
            "figures": {"nodes": knobs.nodes, "services": knobs.services, "pods": len(em.cluster.pods()),
                        "manifest_bytes": len(text), "load_s": t_load, "reduction_s": t_plan, "tasks_s": t_tasks,
                        "peak_rss_before_plan_mb": rss0 / 1024, "peak_rss_after_plan_mb": rss1 / 1024,
                        "tasks_meeting_every_node": sum(1 for t in tasks if t.nodes == ALL_NODES),
                        "tasks_meeting_over_8_nodes": sum(1 for t in tasks if len(t.nodes) > 8 or t.nodes == ALL_NODES),
                        "tasks_meeting_over_32_nodes": sum(1 for t in tasks if len(t.nodes) > 32 or t.nodes == ALL_NODES),
                        "nodes_met_per_task_median": statistics.median(len(t.nodes) for t in tasks) if tasks else 0,
                        "classes": len(classes), "classes_by_destination": kinds,
                        "shared_classes": sum(1 for c in classes if c.shared_from),
                        "probes_reduced": len(tasks), "probes_naive": sum(c.count for c in classes),
                        "atoms": len(planner.atoms), "member_buckets": len(planner.buckets)}}


def run_engine(engine: str, workers: int, spec, tasks, batch_size: int) -> dict:
    """One round: wall time, broadcast, worker compute, overhead per batch, peak RSS per worker."""
    from netsim.reach.executors import make_executor
    from netsim.reach.matrix import execute
    load_before = loadavg()
    ex = make_executor(engine, workers)
    t0 = time.perf_counter()
    ex.start(spec)
    broadcast = time.perf_counter() - t0
    try:
        recs = execute(ex, spec, tasks, batch_size, start=False)
    finally:
        ex.close()
    wall = time.perf_counter() - t0
    compute = sum(r["seconds"] for r in recs.values())
    rss: dict[int, int] = {}
    for r in recs.values():
        rss[r["worker_pid"]] = max(rss.get(r["worker_pid"], 0), r["worker_rss_kb"])
    n_batches = max(1, -(-len(tasks) // batch_size))
    return {"wall_s": wall, "broadcast_s": broadcast, "compute_s": compute,
            "overhead_per_batch_ms": max(0.0, (wall - broadcast) * workers - compute) / n_batches * 1e3,
            "per_probe_ms": compute / max(1, len(tasks)) * 1e3, "workers_seen": len(rss),
            "rss_per_worker_mb": sorted(round(v / 1024, 1) for v in rss.values()), "batches": n_batches,
            "loadavg_before": load_before, "loadavg_after": loadavg()}


def _nothing(_partial: dict) -> None:
    pass


def b1(knobs: SynthKnobs, mode: Optional[str], rounds: int, engines: list[str], workers: list[int],
       batch_sizes: list[int], max_probes: int, save: Callable[[dict], None] = _nothing) -> dict:
    """``save`` gets the partial result after every round, so a run cut short still reports what ran."""
    out: dict = {"loadavg_start": loadavg(), "stage": "prepare"}
    save(out)
    p = prepare(knobs, mode)
    tasks = first_probes(p["tasks"], max_probes)
    out.update({"figures": p["figures"], "mode": p["mode"], "probes_per_round": len(tasks), "engines": {},
                "batch_size_sweep": {}, "probes_chosen": "the first in the executor's order (by the nodes they "
                                                         "meet, netsim.reach.matrix.batches)" if max_probes else "all",
                "nodes_met_per_round": len(_nodes_met(tasks, p["figures"]["nodes"]))})
    base_bs = batch_sizes[len(batch_sizes) // 2]
    configs = [(e, w) for e in engines for w in ([1] if e == "serial" else workers)]
    for (engine, w) in configs:
        out["engines"][f"{engine}/{w}"] = {"batch_size": base_bs, "rounds": []}
    # round-robin over the configurations, so load drifting during the run falls on all of them alike
    for _ in range(rounds):
        for (engine, w) in configs:
            out["stage"] = f"{engine}/{w}"
            entry = out["engines"][f"{engine}/{w}"]
            runs: list[dict] = entry["rounds"]
            runs.append(run_engine(engine, w, p["spec"], tasks, base_bs))
            entry.update(wall=_stats([r["wall_s"] for r in runs]),
                         broadcast=_stats([r["broadcast_s"] for r in runs]),
                         overhead_per_batch_ms=_stats([r["overhead_per_batch_ms"] for r in runs]))
            _speedups(out)
            save(out)
    sweep_engine = "local" if "local" in engines else engines[0]
    for bs in batch_sizes:
        out["stage"] = f"sweep {bs}"
        runs = []
        entry = out["batch_size_sweep"][str(bs)] = {"engine": f"{sweep_engine}/{max(workers)}", "rounds": runs}
        same = out["engines"].get(f"{sweep_engine}/{max(workers)}")
        if bs == base_bs and same:                  # these rounds ran above: the same measurement
            runs.extend(same["rounds"])
            entry.update(wall=same["wall"], overhead_per_batch_ms=statistics.median(
                r["overhead_per_batch_ms"] for r in runs), same_rounds_as=f"engines.{sweep_engine}/{max(workers)}")
            continue
        for _ in range(rounds):
            runs.append(run_engine(sweep_engine, max(workers), p["spec"], tasks, bs))
            entry.update(wall=_stats([r["wall_s"] for r in runs]),
                         overhead_per_batch_ms=statistics.median(r["overhead_per_batch_ms"] for r in runs))
            save(out)
    out["stage"] = "done"
    out["loadavg_end"] = loadavg()
    save(out)
    return out


def first_probes(tasks: list, n: int) -> list:
    """The first ``n`` probes in the order the executor runs them (all with ``n`` 0)."""
    from netsim.reach.matrix import batches
    if not n:
        return tasks
    return [t for b in batches(tasks, n) for t in b][:n]


def _nodes_met(tasks: list, all_nodes: int) -> set:
    from netsim.reach.evaluate import ALL_NODES
    out: set = set()
    for t in tasks:
        out.update(range(all_nodes) if t.nodes == ALL_NODES else t.nodes)
    return out


def _speedups(out: dict) -> None:
    """Each engine/workers' median wall against one worker of the same engine (serial against itself)."""
    for k, v in out["engines"].items():
        one = out["engines"].get(k.split("/")[0] + "/1")
        if one and "wall" in one and "wall" in v:
            v["speedup_vs_1"] = one["wall"]["median_s"] / v["wall"]["median_s"]
        serial = out["engines"].get("serial/1")
        if serial and "wall" in serial and "wall" in v:
            v["speedup_vs_serial"] = serial["wall"]["median_s"] / v["wall"]["median_s"]


def rss_mb() -> dict:
    """This process's resident set now and its peak so far (MiB): what a stage left behind and what
    it needed on the way."""
    now = 0.0
    try:
        with open("/proc/self/statm") as f:
            now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        pass
    return {"rss_mb": round(now, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _stage(out: dict, name: str, save: Callable[[dict], None]) -> Callable[..., dict]:
    """Start stage ``name`` (saved as running); the returned function ends it with its wall time,
    memory and load average (plus any figures given) under ``out["stages"][name]``."""
    out["stage"] = name
    save(out)
    t0 = time.perf_counter()

    def done(**figures) -> dict:
        rec = out.setdefault("stages", {})[name] = {"wall_s": round(time.perf_counter() - t0, 3), **rss_mb(),
                                                    "loadavg": loadavg(), **figures}
        out.setdefault("stages_done", []).append(name)
        save(out)
        return rec
    return done


def model_per_node(em, mode: str, n: int, out: dict, save: Callable[[dict], None]) -> None:
    """Compile time and memory per model key, the way a worker builds one: each node's rules are
    rendered, parsed and compiled when a probe first meets them (a worker's model is the loaded
    cluster, as ``em`` here, plus the nodes it met). Measured for the first ``n`` nodes in a forked
    child (copy-on-write: what it renders is freed with it, so the plan below does not carry it),
    with two verdicts from a pod on the node to the last ClusterIP Service (the first also renders
    the endpoint's node; the second shows what is left per probe)."""
    out["model_per_node"] = per_node = []
    done = _stage(out, f"model: {n} nodes' rules (forked child)", save)
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: measure, report line by line, exit
        os.close(r)
        code = 0
        try:
            with os.fdopen(wfd, "w") as pipe:
                # what the loop needs, read once: asking ``em.cluster`` after a verdict (which works on
                # copies) gives the emulator a store of its own (a clone) and its walkers a topology
                # rebuild on the next packet, which is no part of a node's cost
                cl = em.cluster
                svc = next(x for x in reversed(cl.services())
                           if x.type == "ClusterIP" and x.cluster_ip not in (None, "", "None") and x.ports)
                first_pod: dict = {}
                for x in cl.pods():
                    if not x.host_network and x.namespace == "default" and x.ip:
                        first_pod.setdefault(x.node_name, x)
                names = [x.name for x in cl.nodes()][:n]
                del cl
                w = em._walker(mode)
                w.sync()
                if getattr(w.proxy, "keep_text", None) is not None:
                    w.proxy.keep_text = False         # as a worker's model (netsim.reach.evaluate.ModelCache)
                for node in names:
                    before = rss_mb()["rss_mb"]
                    t0 = time.perf_counter()
                    nf = w.netfilter(node)
                    rec = {"node": node, "render_parse_s": round(time.perf_counter() - t0, 3),
                           "rules_text_bytes": len(getattr(nf, "text", "")),
                           "rules_lines": getattr(nf, "text", "").count("\n")}
                    rec["rss_growth_mb"] = round(rss_mb()["rss_mb"] - before, 1)
                    pod = first_pod.get(node)
                    if pod is not None:
                        dst = f"{svc.cluster_ip}:{svc.ports[0].port}"
                        rec["verdict"] = {"src": f"pod/{pod.name}", "dst": dst, "service": svc.name}
                        for which in ("first_s", "second_s"):
                            t0 = time.perf_counter()
                            v = em.verdict(f"pod/{pod.name}", dst, mode=mode)
                            rec["verdict"][which] = round(time.perf_counter() - t0, 3)
                        rec["verdict"]["disposition"] = v.disposition
                    rec.update(rss_mb())
                    rec["loadavg"] = loadavg()
                    pipe.write(json.dumps(rec) + "\n")
                    pipe.flush()
        except BaseException as e:                 # noqa: BLE001 - reported to the parent, then exit
            try:
                with os.fdopen(os.dup(1), "w") as err:
                    err.write(f"model child: {type(e).__name__}: {e}\n")
            finally:
                code = 1
        os._exit(code)
    os.close(wfd)
    with os.fdopen(r) as pipe:
        for line in pipe:
            per_node.append(json.loads(line))
            save(out)
    _, status = os.waitpid(pid, 0)
    done(nodes_measured=len(per_node), child_exit=os.waitstatus_to_exitcode(status))


def b2_prepare(knobs: SynthKnobs, mode: Optional[str], out: dict, save: Callable[[dict], None],
               model_nodes: int = 0, reduce: bool = True) -> dict:
    """B2's generate / load / inventory / (per-node model cost) / reduction, each a stage of its own in
    ``out`` (time, RSS now and peak, load average), so a run stopped part-way says which ran."""
    import netsim
    from netsim.reach.evaluate import ModelSpec
    from netsim.reach.inventory import Inventory
    from netsim.reach.matrix import class_tasks
    from netsim.reach.plan import Planner
    done = _stage(out, "generate", save)
    text = generate(knobs)
    done(manifest_bytes=len(text))
    done = _stage(out, "load", save)
    em = netsim.load(text, mode=mode, limits=_limits())
    mode = mode or em.mode
    done(pods=len(em.cluster.pods()), services=len(em.cluster.services()), nodes=len(em.cluster.nodes()))
    done = _stage(out, "topology + inventory", save)
    inv = Inventory.from_emulator(em, "v")
    topo = em._walker(None).topology
    done(members=len(inv.members), shared_pod_routes=len(topo.pod_routes))
    if model_nodes:
        model_per_node(em, mode, model_nodes, out, save)
    if not reduce:
        return {"text": text, "em": em, "mode": mode}
    done = _stage(out, "reduce", save)
    planner = Planner([inv], modes=[mode])
    classes = planner.plan()
    kinds: dict[str, int] = {}
    for pc in classes:
        kinds[pc.slot.kind] = kinds.get(pc.slot.kind, 0) + 1
    done(classes=len(classes), classes_by_destination=kinds,
         shared_classes=sum(1 for c in classes if c.shared_from), atoms=len(planner.atoms),
         member_buckets=len(planner.buckets), probes_naive=sum(c.count for c in classes))
    done = _stage(out, "probes", save)
    tasks = class_tasks(planner, classes, [mode])
    done(probes_reduced=len(tasks))
    return {"text": text, "em": em, "mode": mode, "planner": planner, "classes": classes, "tasks": tasks,
            "spec": ModelSpec((("v", (text,)),), limits=_limits())}


def b2_model(knobs: SynthKnobs, mode: Optional[str], model_nodes: int,
             save: Callable[[dict], None] = _nothing) -> dict:
    """B2's stages up to the per-node model cost alone (``--model-only``): generate, load, topology
    and inventory, ``model_nodes`` nodes' rules with a verdict each."""
    out: dict = {"loadavg_start": loadavg(), "start": rss_mb(), "knobs": dataclasses.asdict(knobs),
                 "stage": "start"}
    b2_prepare(knobs, mode, out, save, model_nodes, reduce=False)
    out["stage"] = "done"
    out["loadavg_end"] = loadavg()
    save(out)
    return out


def _nodes_met_histogram(tasks: list) -> dict:
    """How many probes meet how many nodes' rules (a verdict follows every random branch, so a probe
    of a Service with endpoints on k nodes meets k of them; "every": an external client through the
    load balancer)."""
    from netsim.reach.evaluate import ALL_NODES
    edges = (2, 4, 8, 32, 256, 1024)
    out = {f"<= {e}": 0 for e in edges}
    out[f"> {edges[-1]}"] = out["every"] = 0
    for t in tasks:
        if t.nodes == ALL_NODES:
            out["every"] += 1
            continue
        n = len(t.nodes)
        out[next((f"<= {e}" for e in edges if n <= e), f"> {edges[-1]}")] += 1
    return out


def b2(knobs: SynthKnobs, mode: Optional[str], max_probes: int, validate: int, workers: int,
       save: Callable[[dict], None] = _nothing, model_nodes: int = 3, few_nodes: int = 0,
       worker_memory_mb: int = 0) -> dict:
    """Stage by stage (``stage`` names the one running, ``stages_done`` the finished ones with their
    figures; ``save`` gets each), so a run stopped by the clock or a memory cap reports how far it went.

    ``few_nodes``: trace a seeded random sample of ``max_probes`` of the probes meeting at most this
    many nodes (0: the first ``max_probes`` probes, whatever they meet) — on one machine a worker
    cannot hold every node's rules, which a probe of a Service with endpoints on most nodes needs;
    the histogram of nodes met says how many probes that leaves out."""
    from netsim.reach.executors import make_executor
    from netsim.reach.matrix import Matrix, check_raw, execute, rows, sample_raw
    from netsim.reach.output import EXPANSION_COLUMNS, MATRIX_COLUMNS, write_table
    from netsim.reach.run import ReachRun, expansion_rows
    out: dict = {"loadavg_start": loadavg(), "start": rss_mb(), "knobs": dataclasses.asdict(knobs),
                 "stage": "start"}
    p = b2_prepare(knobs, mode, out, save, model_nodes)
    st = out["stages"]
    out["mode"] = p["mode"]
    out["figures"] = {"nodes": knobs.nodes, "services": knobs.services, "pods": st["load"]["pods"],
                      "manifest_bytes": st["generate"]["manifest_bytes"], "load_s": st["load"]["wall_s"],
                      "reduction_s": st["reduce"]["wall_s"], "classes": st["reduce"]["classes"],
                      "probes_naive": st["reduce"]["probes_naive"], "probes_reduced": st["probes"]["probes_reduced"]}
    out["nodes_met_per_probe"] = _nodes_met_histogram(p["tasks"])
    if worker_memory_mb:
        p["spec"] = dataclasses.replace(p["spec"], worker_memory_mb=worker_memory_mb)
    if few_nodes:
        from netsim.reach.evaluate import ALL_NODES
        pool = [t for t in p["tasks"] if t.nodes != ALL_NODES and len(t.nodes) <= few_nodes]
        tasks = random.Random(knobs.seed).sample(pool, min(max_probes, len(pool))) if max_probes else pool
        chosen = f"a seeded random sample of the {len(pool)} probes meeting <= {few_nodes} nodes"
    else:
        tasks = p["tasks"][:max_probes] if max_probes else p["tasks"]
        chosen = "the first probes in plan order"
    p["em"] = None                 # the main process's model: the workers build their own
    done = _stage(out, f"matrix ({len(tasks)} probes)", save)
    t0 = time.perf_counter()
    recs = execute(make_executor("local", workers), p["spec"], tasks, 16)
    wall = time.perf_counter() - t0
    secs = [r["seconds"] for r in recs.values()]
    out["matrix"] = {"probes": len(tasks), "of": len(p["tasks"]), "chosen": chosen, "wall_s": wall,
                     "workers": workers, "loadavg_after": loadavg(),
                     "seconds_per_probe_on_a_worker": _stats(secs) if secs else None,
                     "errors": sum(1 for r in recs.values() if r["disposition"] == "ERROR"),
                     "worker_peak_rss_mb": max((r["worker_rss_kb"] for r in recs.values()), default=0) / 1024,
                     "dispositions": dict(collections.Counter(r["disposition"] for r in recs.values()))}
    done()
    done = _stage(out, "outputs", save)
    keys = {(t.key, t.version, t.mode) for t in tasks}
    classes = [c for c in p["classes"] if (c.shared_from or c.key, "v", p["mode"]) in keys]
    mx = Matrix(rows(p["planner"], classes, recs, [p["mode"]]), classes, len(tasks),
                sum(c.count for c in classes), recs)
    with tempfile.TemporaryDirectory() as d:
        run = ReachRun(p["planner"], mx, [p["mode"]], ["v"])
        paths = write_table(os.path.join(d, "matrix"), mx.rows, MATRIX_COLUMNS, partition=["version", "mode"])
        paths += write_table(os.path.join(d, "expansion"), expansion_rows(run), EXPANSION_COLUMNS)
        out["outputs"] = {os.path.basename(x): _size(x) for x in paths}
    done(rows=len(mx.rows))
    if validate:
        done = _stage(out, f"validation ({validate} raw probes)", save)
        raw = sample_raw(p["planner"], mx, [p["mode"]], validate, seed=knobs.seed)
        t0 = time.perf_counter()
        bad = check_raw(p["planner"], mx, raw, make_executor("local", workers), p["spec"])
        out["validation"] = {"sample": len(raw), "mismatches": len(bad), "wall_s": time.perf_counter() - t0,
                             "drawn_from": "the classes traced above", "loadavg_after": loadavg(),
                             "first_mismatches": [vars(m) for m in bad[:5]]}
        done()
    out["stage"] = "done"
    out["loadavg_end"] = loadavg()
    save(out)
    return out


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small cluster, one round (CI)")
    ap.add_argument("--b1", action="store_true")
    ap.add_argument("--b2", action="store_true")
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--services", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--mode", default=None, help="a mode of the provider registry (default: the cluster's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines", default="serial,local,dask")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--batch-sizes", default="16,64,256")
    ap.add_argument("--max-probes", type=int, default=2000, help="probes traced per round (0: all)")
    ap.add_argument("--validate", type=int, default=10000)
    ap.add_argument("--model-nodes", type=int, default=2,
                    help="B2: nodes whose rules are built and measured (compile time and memory per model key)")
    ap.add_argument("--model-only", action="store_true",
                    help="B2: only generate, load and the per-node model cost (--model-nodes nodes)")
    ap.add_argument("--few-nodes", type=int, default=0,
                    help="B2: trace a random sample of the probes meeting at most this many nodes (0: the first)")
    ap.add_argument("--worker-memory", type=int, default=0, help="B2: MB of nodes' rules a worker may hold")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--note", default="", help="what else ran on the machine (saved with the figures)")
    a = ap.parse_args(argv)
    engines = [e for e in a.engines.split(",") if e]
    if "dask" in engines:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("dask: not installed (pip install 'kube-netsim[reach]'), left out")
            engines.remove("dask")
    workers = [int(w) for w in a.workers.split(",")]
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "platform": platform.platform(), "shared": a.note}}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)

    def saver(name: str) -> Callable[[dict], None]:
        def save(partial: dict) -> None:
            result[name] = partial
            with open(a.out + ".tmp", "w") as f:
                json.dump(result, f, indent=1, sort_keys=True, default=str)
            os.replace(a.out + ".tmp", a.out)
        return save

    def stopped(name: str, run: Callable[[], object]) -> bool:
        """Run one benchmark; an error (MemoryError under a ulimit, a refused manifest) is saved beside
        the stage it stopped in, so the results say exactly what did not run."""
        try:
            run()
            return True
        except (Exception, MemoryError) as e:
            partial = result.get(name, {})
            partial["stopped"] = {"stage": partial.get("stage"), "error": f"{type(e).__name__}: {e}"[:2000],
                                  "loadavg": loadavg()}
            saver(name)(partial)
            print(f"{name}: stopped in stage {partial.get('stage')!r}: {type(e).__name__}: {e}"[:500])
            return False

    knobs = SynthKnobs(nodes=a.nodes, services=a.services, pods=a.pods, seed=a.seed)
    ok = True
    if a.quick:
        tiny = SynthKnobs(nodes=4, services=6, pods=8, seed=a.seed)
        ok &= stopped("b1", lambda: b1(tiny, a.mode, 1, engines, [1, 2], [8, 32], 60, save=saver("b1")))
        ok &= stopped("b2", lambda: b2(tiny, a.mode, 60, 20, 2, save=saver("b2")))
    else:
        if a.b1 or not a.b2:
            ok &= stopped("b1", lambda: b1(knobs, a.mode, a.rounds, engines, workers, sizes, a.max_probes,
                                           save=saver("b1")))
        if a.b2 and a.model_only:
            ok &= stopped("b2_model", lambda: b2_model(knobs, a.mode, a.model_nodes, save=saver("b2_model")))
        elif a.b2:
            ok &= stopped("b2", lambda: b2(knobs, a.mode, a.max_probes, a.validate, max(workers), save=saver("b2"),
                                           model_nodes=a.model_nodes, few_nodes=a.few_nodes,
                                           worker_memory_mb=a.worker_memory))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1, default=str)[:6000])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
