"""The work a worker does: build each model (version, mode) once from the broadcast, keep an LRU of
them, and answer batches of probes with verdicts (``netsim.api.Emulator.verdict``)."""
from __future__ import annotations

import gc
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from netsim.api import Emulator

MODEL_LRU = 4          # compiled models kept per worker
WORKER_MEMORY_MB = 2048  # the nodes' rules a worker's model holds at most (measured per node), 0: no limit
MIN_NODES = 8          # ... but at least this many nodes' rules


@dataclass(frozen=True)
class ModelSpec:
    """The broadcast: what a worker needs to build any model — per version the manifests (YAML text
    or ``example:NAME``), and the seed."""

    versions: tuple[tuple[str, tuple[str, ...]], ...]
    seed: Optional[int] = None
    limits: Any = None          # netsim.control.inputread.InputLimits for every load (None: the defaults)
    node_budget: int = 0        # nodes' rules one worker's model may hold (0: as worker_memory_mb allows)
    worker_memory_mb: int = WORKER_MEMORY_MB

    def sources(self, version: str) -> tuple[str, ...]:
        for v, src in self.versions:
            if v == version:
                return src
        raise KeyError(f"no version {version!r} in the model spec")


@dataclass(frozen=True, slots=True)
class Task:
    """One class's probe in one model."""

    key: str
    version: str
    mode: str
    src: str
    namespace: str
    dst: str
    proto: str
    nodes: tuple[str, ...] = ()     # the nodes whose rules the probe can meet (ALL_NODES: any); a hint only


ALL_NODES = ("*",)


class OverBudget(ValueError):
    """A probe meets more nodes than a worker may hold the rules of (``--worker-memory``)."""


def _rss_bytes() -> int:
    """This process's resident set now (/proc/self/statm), 0 where there is none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class ModelCache:
    """Models built lazily per (version, mode), least recently used dropped past ``size``.

    Each node's rules are rendered, parsed and compiled when a probe first needs them
    (:meth:`get` with the probe's nodes), not all at load: on a cluster whose nodes all differ (a
    Local-policy Service's endpoints make each node's kube-proxy text its own) every node's rules
    cost ~60 MB and ~1 s at 5,000 Services, so a worker holds at most ``node_budget`` nodes' rules
    per model (``spec.node_budget``; else as many as ``spec.worker_memory_mb`` holds at the size the
    held nodes measure: resident bytes grown since the model was loaded, over the nodes held — a
    node's chains are compiled when packets first enter them, after it was prepared; measured
    until the first nodes are forgotten, as freed memory stays with the process). Past that it
    forgets the nodes it met least recently (``Emulator.release``), or, where the mode cannot,
    starts the model afresh. A probe whose nodes alone exceed
    the budget (an external client through the load balancer meets every node; a Service with
    endpoints on most nodes) is not run: its row says so (ERROR, OverBudget's message) rather than
    the worker running out of memory — unprepared, each of its paths would render the nodes it
    meets on a copy of its own, garbage only a full collection frees. Results do not depend on
    what is prepared (a node's rules are the same text either way)."""

    spec: ModelSpec
    size: int = MODEL_LRU
    models: "OrderedDict[tuple[str, str], Emulator]" = field(default_factory=OrderedDict)
    build_seconds: dict = field(default_factory=dict)
    built: dict = field(default_factory=dict)           # model key -> nodes whose rules it holds
    node_bytes: int = 0                                 # measured resident bytes per node's rules
    restarts: int = 0                                   # models started afresh to stay in budget
    released: dict = field(default_factory=dict)        # model key -> nodes' rules forgotten to stay in budget
    base_rss: dict = field(default_factory=dict)        # model key -> resident bytes with no node's rules

    def get(self, version: str, mode: str, nodes: Optional[tuple[str, ...]] = None) -> "Emulator":
        """The model; ``nodes`` None: with every node's rules (a witness trace, a model's cost), else
        with those nodes' rules at least (ALL_NODES: every node, within the budget)."""
        k = (version, mode)
        em = self.models.get(k)
        if em is None:
            em = self._load(k)
        else:
            self.models.move_to_end(k)
        held = self.built[k]
        if held and self.base_rss.get(k) and not self.released.get(k):
            # what the model's nodes hold now, per node: their rules grow after prepare (a chain is
            # parsed and compiled when a packet first enters it), so the first nodes' figure is low
            grown = _rss_bytes() - self.base_rss[k]
            if grown > 0:
                self.node_bytes = max(1, grown // len(held))
        want = set(self._names(em) if nodes is None or nodes == ALL_NODES else nodes)
        need = want - held.keys()
        for n in want - need:
            held.move_to_end(n)                 # (least recently met first)
        if not need:
            return em
        if nodes is not None:
            budget = self.budget()
            if len(want) > budget:
                raise OverBudget(f"the probe meets {len(want)} nodes; a worker holds the rules of {budget} "
                                 f"(~{self.node_bytes >> 20} MB each; raise --worker-memory)")
            if held and len(held) + len(need) > budget:
                # forget the least recently met nodes (a quarter of the budget more than needed, so
                # that a collection frees many at once), where the mode can; else start afresh
                drop = [n for n in held if n not in want][:len(held) + len(need) - budget + budget // 4]
                if drop and len(held) - len(drop) + len(need) <= budget and em.release(mode, drop):
                    for n in drop:
                        del held[n]
                    self.released[k] = self.released.get(k, 0) + len(drop)
                    gc.collect()                # (a node's compiled chains and rules are cycles)
                else:
                    em = None                   # (no reference left to the old model while the new one loads)
                    em = self._load(k)          # start afresh: the old model's rules are freed with it
                    self.restarts += 1
                    held, need = self.built[k], want
        before = _rss_bytes()
        t0 = time.perf_counter()
        em.prepare(mode, nodes=sorted(need))
        self.build_seconds[k] = self.build_seconds.get(k, 0.0) + time.perf_counter() - t0
        for n in sorted(need):
            held[n] = None
        if not self.node_bytes and before:
            self.node_bytes = max(1, (_rss_bytes() - before) // len(need))
        return em

    def budget(self) -> int:
        """How many nodes' rules one model may hold."""
        if self.spec.node_budget:
            return self.spec.node_budget
        if not self.node_bytes or not self.spec.worker_memory_mb:
            return 1 << 30
        return max(MIN_NODES, (self.spec.worker_memory_mb << 20) // self.node_bytes)

    def _load(self, k: tuple[str, str]) -> "Emulator":
        import netsim
        version, mode = k
        if self.models.pop(k, None) is not None:
            # a model is a web of cycles whose builds went straight to the oldest generation
            # (netsim.control.heap): collect it now, before the next one is built beside it
            gc.collect()
        self.built.pop(k, None)
        t0 = time.perf_counter()
        em = netsim.load(*self.spec.sources(version), mode=mode, seed=self.spec.seed, limits=self.spec.limits)
        em.prepare(mode, nodes=())        # the mode's walker, no node's rules yet (verdict() would render all)
        proxy = getattr(em._walker(mode), "proxy", None)
        if getattr(proxy, "keep_text", None) is not None:
            proxy.keep_text = False       # a worker's cluster never changes and it prints no node's rules
        self.build_seconds[k] = self.build_seconds.get(k, 0.0) + time.perf_counter() - t0
        self.base_rss[k] = _rss_bytes()
        self.models[k] = em
        self.built[k] = OrderedDict()
        self.released.pop(k, None)
        while len(self.models) > self.size:
            old, _ = self.models.popitem(last=False)
            self.built.pop(old, None)
            gc.collect()
        return em

    @staticmethod
    def _names(em: "Emulator") -> list[str]:
        # read-only, from the store the emulator holds: ``em.cluster`` after a verdict (which works
        # on copies) would clone the whole store and rebuild the walkers' topology
        return [n.name for n in em._cluster.nodes()]


def run_task(cache: ModelCache, t: Task) -> dict:
    """One verdict as a flat record (an error becomes the ERROR disposition with its message)."""
    import json
    rec = {"key": t.key, "version": t.version, "mode": t.mode, "probe_src": t.src, "probe_dst": t.dst,
           "proto": t.proto}
    try:
        em = cache.get(t.version, t.mode, t.nodes or None)
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
