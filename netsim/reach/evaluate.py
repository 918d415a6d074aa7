"""The work a worker does: build each model (version, mode) once from the broadcast, keep an LRU of
them, and answer batches of probes with verdicts (``netsim.api.Emulator.verdict``)."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from netsim.api import Emulator

MODEL_LRU = 4          # compiled models kept per worker


@dataclass(frozen=True)
class ModelSpec:
    """The broadcast: what a worker needs to build any model — per version the manifests (YAML text
    or ``example:NAME``), and the seed."""

    versions: tuple[tuple[str, tuple[str, ...]], ...]
    seed: Optional[int] = None
    limits: Any = None          # netsim.control.inputread.InputLimits for every load (None: the defaults)

    def sources(self, version: str) -> tuple[str, ...]:
        for v, src in self.versions:
            if v == version:
                return src
        raise KeyError(f"no version {version!r} in the model spec")


@dataclass(frozen=True)
class Task:
    """One class's probe in one model."""

    key: str
    version: str
    mode: str
    src: str
    namespace: str
    dst: str
    proto: str


@dataclass
class ModelCache:
    """Models built lazily per (version, mode), least recently used dropped past ``size``."""

    spec: ModelSpec
    size: int = MODEL_LRU
    models: "OrderedDict[tuple[str, str], Emulator]" = field(default_factory=OrderedDict)
    build_seconds: dict = field(default_factory=dict)

    def get(self, version: str, mode: str) -> "Emulator":
        k = (version, mode)
        em = self.models.get(k)
        if em is not None:
            self.models.move_to_end(k)
            return em
        import netsim
        t0 = time.perf_counter()
        em = netsim.load(*self.spec.sources(version), mode=mode, seed=self.spec.seed, limits=self.spec.limits)
        em.prepare(mode)
        self.build_seconds[k] = time.perf_counter() - t0
        self.models[k] = em
        while len(self.models) > self.size:
            self.models.popitem(last=False)
        return em


def run_task(cache: ModelCache, t: Task) -> dict:
    """One verdict as a flat record (an error becomes the ERROR disposition with its message)."""
    import json
    em = cache.get(t.version, t.mode)
    rec = {"key": t.key, "version": t.version, "mode": t.mode, "probe_src": t.src, "probe_dst": t.dst,
           "proto": t.proto}
    try:
        v = em.verdict(t.src, t.dst, proto=t.proto, namespace=t.namespace, mode=t.mode)
    except ValueError as e:
        rec.update(disposition="ERROR", endpoints="{}", snat=None, rules_evaluated=0, paths=0,
                   branches="[]", error=str(e))
        return rec
    rec.update(disposition=v.disposition, endpoints=json.dumps(v.endpoints, sort_keys=True), snat=v.snat,
               rules_evaluated=v.rules_evaluated, paths=v.paths,
               branches=json.dumps([b.to_dict() for b in v.branches], sort_keys=True), error="")
    return rec


def run_batch(cache: ModelCache, batch: list[Task]) -> list[dict]:
    """Verdicts of a batch, each record with the seconds it took on the worker (model builds
    included where one happened) and the worker's pid and peak RSS (for the benchmarks)."""
    import os
    import resource
    out = []
    for t in batch:
        t0 = time.perf_counter()
        rec = run_task(cache, t)
        rec["seconds"] = time.perf_counter() - t0
        out.append(rec)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for rec in out:
        rec["worker_pid"], rec["worker_rss_kb"] = os.getpid(), rss
    return out


def outcome_of(rec: dict) -> tuple:
    """What a class row promises each member: the branches (disposition, endpoint, SNAT, errno, share).
    A branch ending at the probed address itself (the addressed node's own socket, NO_LISTENER on a
    node address nothing translated) says so rather than naming that node's address, which differs
    between the members of a NodePort class by construction."""
    branches = rec["branches"]
    dst = rec.get("probe_dst")
    if dst and f'"{dst}"' in branches:
        import json
        bs = json.loads(branches)
        for b in bs:
            if b.get("endpoint") == dst:
                b["endpoint"] = "(the probed address)"
        branches = json.dumps(bs, sort_keys=True)
    return (rec["disposition"], branches)
