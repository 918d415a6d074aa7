"""The matrix: one row per (probe class, version, mode), computed through an executor; the
exhaustive form (every raw probe) and the validation sample that hold the reduction to account."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from netsim.control.heap import deferred_gc
from netsim.reach.evaluate import ALL_NODES, ModelSpec, Task, outcome_of
from netsim.reach.executors import Executor
from netsim.reach.plan import Planner, ProbeClass

BATCH_SIZE = 64        # probes per batch: ~50-200 ms of work at 1-3 ms a verdict
FEW_NODES = 8          # probes meeting more nodes than this run after the others


@dataclass
class Matrix:
    """Rows (flat dicts) and what it took."""

    rows: list[dict]
    classes: list[ProbeClass]
    tasks: int
    naive_probes: int
    records: dict[tuple[str, str, str], dict] = field(default_factory=dict)


def class_tasks(planner: Planner, classes: Iterable[ProbeClass], modes: Sequence[str]) -> list[Task]:
    """One task per (class, version where it exists, mode); shared classes make none of their own."""
    with deferred_gc():       # one long-lived Task per class: no whole-heap passes while they are made
        return _class_tasks(planner, classes, modes)


def _class_tasks(planner: Planner, classes: Iterable[ProbeClass], modes: Sequence[str]) -> list[Task]:
    out: list[Task] = []
    for pc in classes:
        if pc.shared_from is not None or pc.rep is None:
            continue
        member, node = pc.rep
        for v in range(len(planner.invs)):
            raw = planner.raw_probe(pc.slot, v, member, node)
            if raw is None:
                continue
            nodes = planner.nodes_met(pc.slot, v, member, node)
            for mode in modes:
                out.append(Task(pc.key, raw.version, mode, raw.src, raw.namespace, raw.dst, raw.proto, nodes))
    return out


RawItem = tuple[Task, str]


def raw_tasks(planner: Planner, classes: Iterable[ProbeClass], modes: Sequence[str]) -> list[RawItem]:
    """``--exhaustive``: every raw probe of every class, each with its own key, and the class it is in."""
    out: list[RawItem] = []
    for pc in classes:
        for member, node in planner.expand(pc):
            out += _raw_items(planner, pc, member, node, modes)
    return out


def _raw_items(planner: Planner, pc: ProbeClass, member, node: Optional[str], modes: Sequence[str]
               ) -> list[RawItem]:
    """One raw (member, addressed node) of a class as tasks: per version where it exists, per mode."""
    out: list[RawItem] = []
    for v in range(len(planner.invs)):
        raw = planner.raw_probe(pc.slot, v, member, node)
        if raw is None:
            continue
        key = f"{pc.key} :: {member.ident}{' @' + node if node else ''}"
        nodes = planner.nodes_met(pc.slot, v, member, node)
        for mode in modes:
            out.append((Task(key, raw.version, mode, raw.src, raw.namespace, raw.dst, raw.proto, nodes), pc.key))
    return out


def batches(tasks: list[Task], size: int) -> list[list[Task]]:
    """Consecutive runs of ``size`` tasks, grouped by model so a worker builds few models, and within
    a model by the nodes the probes meet (probes meeting many nodes, or every node, last), so a
    batch's probes share the nodes whose rules a worker builds for them."""
    ordered = sorted(tasks, key=lambda t: (t.version, t.mode, t.nodes == ALL_NODES, len(t.nodes) > FEW_NODES,
                                           t.nodes))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def execute(executor: Executor, spec: ModelSpec, tasks: list[Task], batch_size: int = BATCH_SIZE,
            on_batch: Optional[Callable[[list[dict]], None]] = None, start: bool = True) -> dict:
    """Run tasks, streaming each finished batch to ``on_batch``; records by (key, version, mode)."""
    out: dict[tuple[str, str, str], dict] = {}
    if not tasks:
        return out
    if start:
        executor.start(spec)
    for recs in executor.map(batches(tasks, batch_size)):
        for r in recs:
            out[(r["key"], r["version"], r["mode"])] = r
        if on_batch is not None:
            on_batch(recs)
    return out


def rows(planner: Planner, classes: list[ProbeClass], records: dict, modes: Sequence[str]) -> list[dict]:
    """The class-level matrix: one row per (class, version, mode) that was (or shares) a probe."""
    out = []
    for pc in classes:
        src_key = pc.shared_from or pc.key
        member, node = pc.rep if pc.rep else (None, None)
        for v, inv in enumerate(planner.invs):
            for mode in modes:
                rec = records.get((src_key, inv.version, mode))
                if rec is None or member is None:
                    continue
                raw = planner.raw_probe(pc.slot, v, member, node)
                if raw is None:
                    continue
                out.append({
                    "key": pc.key, "version": inv.version, "mode": mode,
                    "service": pc.slot.service, "dest_kind": pc.slot.kind,
                    "address": raw.dst.rsplit(":", 1)[0], "port": pc.slot.port, "proto": pc.slot.proto,
                    "source": pc.source, "count": pc.count, "samples": ",".join(pc.samples),
                    "probe_src": raw.src, "probe_namespace": raw.namespace,
                    "disposition": rec["disposition"], "endpoints": rec["endpoints"], "snat": rec["snat"],
                    "rules_evaluated": rec["rules_evaluated"], "branches": rec["branches"],
                    "error": rec.get("error", ""), "shared_from": pc.shared_from or "",
                })
    return out


def compute(planner: Planner, spec: ModelSpec, modes: Sequence[str], executor: Executor,
            batch_size: int = BATCH_SIZE, on_batch: Optional[Callable[[list[dict]], None]] = None,
            done: Optional[dict] = None) -> Matrix:
    """The whole class matrix; ``done`` holds records already computed (``--resume``)."""
    classes = planner.plan()
    tasks = class_tasks(planner, classes, modes)
    records = dict(done or {})
    todo = [t for t in tasks if (t.key, t.version, t.mode) not in records]
    try:
        records.update(execute(executor, spec, todo, batch_size, on_batch))
    finally:
        executor.close()
    naive = sum(pc.count for pc in classes) * len(modes)
    return Matrix(rows(planner, classes, records, modes), classes, len(tasks), naive, records)


@dataclass
class Mismatch:
    key: str
    raw: str
    version: str
    mode: str
    class_outcome: tuple
    raw_outcome: tuple


def check_raw(planner: Planner, matrix: Matrix, raw: list[RawItem], executor: Executor,
              spec: ModelSpec, batch_size: int = BATCH_SIZE) -> list[Mismatch]:
    """Trace raw probes the slow way and compare each with its class row (the reduction's guarantee)."""
    by_key = {pc.key: pc for pc in matrix.classes}
    try:
        got = execute(executor, spec, [t for t, _ in raw], batch_size)
    finally:
        executor.close()
    bad = []
    for t, ck in raw:
        pc = by_key[ck]
        cls_rec = matrix.records.get((pc.shared_from or pc.key, t.version, t.mode))
        rec = got[(t.key, t.version, t.mode)]
        if cls_rec is None or outcome_of(cls_rec) != outcome_of(rec):
            bad.append(Mismatch(ck, t.key, t.version, t.mode, outcome_of(cls_rec) if cls_rec else (),
                                outcome_of(rec)))
    return bad


EXPAND_AT_MOST = 200_000     # raw probes: up to this, a sample is drawn from the whole expansion


def sample_raw(planner: Planner, matrix: Matrix, modes: Sequence[str], n: int, seed: int = 0
               ) -> list[RawItem]:
    """``--validate-sample N``: N raw probes drawn uniformly over the expansion. Up to EXPAND_AT_MOST
    raw probes the expansion is walked (reservoir sampling, Vitter's algorithm R, without
    replacement); past that (billions of raw probes) a class is drawn by its member count and a raw
    probe in it by Planner.pick, distinct draws kept — the same distribution without expanding."""
    rng = random.Random(seed)
    total = sum(pc.count for pc in matrix.classes)
    if total <= EXPAND_AT_MOST:
        pool: list[RawItem] = []
        seen = 0
        for item in raw_tasks(planner, matrix.classes, modes):
            seen += 1
            if len(pool) < n:
                pool.append(item)
            else:
                j = rng.randrange(seen)
                if j < n:
                    pool[j] = item
        return pool
    classes = [pc for pc in matrix.classes if pc.count > 0]
    cum = list(itertools.accumulate(pc.count for pc in classes))
    out: dict[str, RawItem] = {}
    for _ in range(20 * n):
        if len(out) >= n:
            break
        pc = rng.choices(classes, cum_weights=cum)[0]
        member, node = planner.pick(pc, rng)
        for item in _raw_items(planner, pc, member, node, modes):
            if len(out) < n:
                out.setdefault(f"{item[0].key} {item[0].version} {item[0].mode}", item)
    return list(out.values())
