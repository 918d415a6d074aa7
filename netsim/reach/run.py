"""`netsim reach` as a function: load each version, plan the classes over all of them, compute the
matrix through an executor, write what was asked, diff, validate. The CLI is a thin layer on this."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from netsim.reach.diff import Diff, Side, diff_rows
from netsim.reach.evaluate import WORKER_MEMORY_MB, ModelSpec
from netsim.reach.executors import make_executor
from netsim.reach.inventory import Inventory
from netsim.reach.matrix import BATCH_SIZE, Matrix, Mismatch, check_raw, compute, raw_tasks, sample_raw
from netsim.reach.plan import Planner


def available_modes() -> tuple[str, ...]:
    """The modes a probe can be walked in, as the provider registry lists them."""
    from netsim.rules.registry import available_modes as registry_modes
    return registry_modes(walks_packets=True)


@dataclass
class ReachRun:
    """Everything one run produced."""

    planner: Planner
    matrix: Matrix
    modes: list[str]
    versions: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    diffs: list[Diff] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    validated: int = 0
    written: list[str] = field(default_factory=list)
    spec: Optional[ModelSpec] = None
    witnesses: list[dict] = field(default_factory=list)


def source_texts(sources: Sequence[str]) -> tuple[str, ...]:
    """What a worker can load anywhere: a file's text (YAML), ``example:NAME`` as it is."""
    out = []
    for s in sources:
        if s.startswith("example:") or "\n" in s:
            out.append(s)
        elif s == "-":
            import sys
            out.append(sys.stdin.read())
        else:
            with open(s) as f:
                out.append(f.read())
    return tuple(out)


def reach(versions: Sequence[tuple[str, Sequence[str]]], modes: Sequence[str], *, engine: str = "local",
          workers: Optional[int] = None, scheduler: Optional[str] = None, batch_size: int = BATCH_SIZE,
          seed: Optional[int] = None, exhaustive: bool = False, validate_sample: int = 0,
          share: bool = True, done: Optional[dict] = None, witness: bool = True,
          on_batch: Optional[Callable[[list[dict]], None]] = None, planner_factory=Planner,
          limits: Any = None, worker_memory_mb: int = WORKER_MEMORY_MB, node_budget: int = 0) -> ReachRun:
    """The matrix of every version (name, manifest sources) in every mode; with two versions (or one
    version and two modes) the diff of the two sides too. ``limits`` (an InputLimits) bounds every
    load, here and on the workers. ``worker_memory_mb`` / ``node_budget``: how many nodes' rules a
    worker's model holds (netsim.reach.evaluate.ModelCache)."""
    import netsim
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spec = ModelSpec(tuple((name, source_texts(src)) for name, src in versions), seed, limits,
                     node_budget=node_budget, worker_memory_mb=worker_memory_mb)
    invs = [Inventory.from_emulator(netsim.load(*spec.sources(name), seed=seed, limits=limits), name)
            for name, _ in versions]
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    planner = planner_factory(invs, share=share and not exhaustive, modes=list(modes))
    timings["plan"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mx = compute(planner, spec, list(modes), make_executor(engine, workers, scheduler), batch_size, on_batch, done)
    timings["matrix"] = time.perf_counter() - t0
    run = ReachRun(planner, mx, list(modes), [v for v, _ in versions], timings, spec=spec)
    if exhaustive:
        raw = raw_tasks(planner, mx.classes, modes)
    elif validate_sample:
        raw = sample_raw(planner, mx, modes, validate_sample, seed or 0)
    else:
        raw = []
    if raw:
        t0 = time.perf_counter()
        run.mismatches = check_raw(planner, mx, raw, make_executor(engine, workers, scheduler), spec, batch_size)
        run.validated = len(raw)
        timings["validate"] = time.perf_counter() - t0
    sides = _sides(run.versions, run.modes)
    if sides is not None:
        cache: dict = {}
        wfn = (lambda side, row: _witness(spec, cache, side, row)) if witness else None
        run.diffs.append(diff_rows(mx.rows, *sides, witness=wfn))
    return run


WITNESS_LIMIT = 100


def witness_rows(run: ReachRun, patterns: Sequence[str], limit: int = WITNESS_LIMIT) -> list[dict]:
    """Full traces (with steps) for the rows a user asks about — ``--witness PATTERN``: a shell-style
    pattern (fnmatch) over the row's probe key or its Service (ns/name) — at most ``limit`` rows."""
    from fnmatch import fnmatchcase
    assert run.spec is not None, "a run made by reach()"
    cache: dict = {}
    out: list[dict] = []
    for r in run.matrix.rows:
        if not any(fnmatchcase(r["key"], p) or fnmatchcase(r["service"], p) for p in patterns):
            continue
        if len(out) >= limit:
            break
        out.append({"key": r["key"], "version": r["version"], "mode": r["mode"], "source": r["source"],
                    "destination": {"service": r["service"], "address": r["address"], "port": r["port"],
                                    "proto": r["proto"], "kind": r["dest_kind"]},
                    "verdict": {"disposition": r["disposition"], "endpoints": r["endpoints"], "snat": r["snat"]},
                    "witness": _witness(run.spec, cache, Side(r["version"], r["mode"]), r)})
    run.witnesses = out
    return out


def _sides(versions: list[str], modes: list[str]) -> Optional[tuple[Side, Side]]:
    if len(versions) == 2 and len(modes) >= 1:
        return Side(versions[0], modes[0]), Side(versions[1], modes[0])
    if len(versions) == 1 and len(modes) >= 2:
        return Side(versions[0], modes[0]), Side(versions[0], modes[1])
    return None


def _witness(spec: ModelSpec, cache: dict, side: Side, row: dict) -> Optional[dict]:
    """A full trace (with steps) of the row's representative probe: only for rows that differ."""
    from netsim.reach.evaluate import ModelCache
    mc = cache.get("models")
    if mc is None:
        mc = cache["models"] = ModelCache(spec)
    em = mc.get(side.version, side.mode).copy()
    dst = f"{row['address']}:{row['port']}"
    try:
        t = em.trace(row["probe_src"], dst, proto=row["proto"], namespace=row["probe_namespace"], mode=side.mode)
    except ValueError as e:
        return {"error": str(e)}
    d = t.to_dict()
    d["text"] = t.render()
    return d


def write_outputs(run: ReachRun, out_dir: str, *, csv_too: bool = False, html: bool = True,
                  png: bool = False) -> list[str]:
    """matrix.parquet / expansion.parquet (or CSV), diff.json + diff.md, report.html (and heatmap.png)."""
    import json

    from netsim.reach.output import EXPANSION_COLUMNS, MATRIX_COLUMNS, write_table
    os.makedirs(out_dir, exist_ok=True)
    written = write_table(os.path.join(out_dir, "matrix"), run.matrix.rows, MATRIX_COLUMNS, csv_too=csv_too,
                          partition=["version", "mode"])
    written += write_table(os.path.join(out_dir, "expansion"), expansion_rows(run), EXPANSION_COLUMNS,
                           csv_too=csv_too)
    if run.witnesses:
        p = os.path.join(out_dir, "witness.json")
        with open(p, "w") as f:
            json.dump({"schema": "netsim.reach.witness/v1", "rows": run.witnesses}, f, indent=1, sort_keys=True)
        written.append(p)
    for d in run.diffs:
        from netsim.reach.diff import render_md
        p = os.path.join(out_dir, "diff.json")
        with open(p, "w") as f:
            json.dump(d.to_dict(), f, indent=1, sort_keys=True)
        with open(os.path.join(out_dir, "diff.md"), "w") as f:
            f.write(render_md(d))
        written += [p, os.path.join(out_dir, "diff.md")]
    if html:
        try:
            from netsim.reach.report import write_report
            p = os.path.join(out_dir, "report.html")
            models = [(v, m) for v in run.versions for m in run.modes]
            write_report(p, run.matrix.rows, models, run.diffs[0] if run.diffs else None)
            written.append(p)
        except ImportError:
            pass
    if png:
        from netsim.reach.report import write_png
        p = os.path.join(out_dir, "heatmap.png")
        write_png(p, run.matrix.rows, [(v, m) for v in run.versions for m in run.modes])
        written.append(p)
    run.written = written
    return written


def expansion_rows(run: ReachRun) -> list[dict]:
    """pod → source bucket, node → its view per Service, Service → signature group."""
    pl = run.planner
    out = []
    for v, inv in enumerate(pl.invs):
        for ident, per in pl.member_of.items():
            m = per[v]
            if m is not None:
                out.append({"version": inv.version, "what": m.kind, "name": ident,
                            "class": f"{m.kind}@{pl.atoms.label_of(m.ip)} node={m.node}"})
        sigs: dict = {}
        for key, sf in sorted(inv.services.items()):
            sig = sf.signature()
            first = sigs.setdefault(sig, key)
            out.append({"version": inv.version, "what": "service", "name": key, "class": f"signature of {first}"})
    return out
