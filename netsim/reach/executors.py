"""Where the probes run, behind one small interface: broadcast the model spec once, submit batches,
stream results back as batches complete.

* ``serial``: in this process.
* ``local`` (default): a process pool (concurrent.futures.ProcessPoolExecutor); the spec is handed
  to each worker once by the pool's initializer.
* ``dask``: Dask ``distributed`` — a ``LocalCluster`` or an existing scheduler (``tcp://HOST:8786``,
  and so dask-kubernetes' KubeCluster); the spec is scattered once with ``broadcast=True``, and a
  batch whose worker is lost is resubmitted (``retries``).
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Iterator, Optional, Protocol

from netsim.reach.evaluate import ModelCache, ModelSpec, Task, run_batch

ENGINES = ("serial", "local", "dask")


class ReachEngineError(RuntimeError):
    """The chosen engine cannot run (an optional dependency missing, a scheduler unreachable)."""


class Executor(Protocol):
    """Broadcast once (``start``), then ``map`` batches: results arrive as batches complete."""

    name: str
    workers: int

    def start(self, spec: ModelSpec) -> None: ...

    def map(self, batches: list[list[Task]]) -> Iterator[list[dict]]: ...

    def close(self) -> None: ...


class SerialExecutor:
    name = "serial"
    workers = 1

    def __init__(self) -> None:
        self._cache: Optional[ModelCache] = None

    def start(self, spec: ModelSpec) -> None:
        self._cache = ModelCache(spec)

    def map(self, batches: list[list[Task]]) -> Iterator[list[dict]]:
        assert self._cache is not None, "start() first"
        for b in batches:
            yield run_batch(self._cache, b)

    def close(self) -> None:
        self._cache = None


# one per worker process of a pool: the models that worker has built (set by the initializer)
_WORKER_CACHE: dict[str, ModelCache] = {}


def _pool_init(spec: ModelSpec) -> None:
    _WORKER_CACHE["cache"] = ModelCache(spec)


def _pool_batch(batch: list[Task]) -> list[dict]:
    return run_batch(_WORKER_CACHE["cache"], batch)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: Optional[ProcessPoolExecutor] = None
        self._frozen = False

    def start(self, spec: ModelSpec) -> None:
        import gc
        import multiprocessing
        ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
        if ctx.get_start_method() == "fork" and gc.get_freeze_count() == 0:
            # forked workers share this process's heap copy-on-write; a collection in a worker writes
            # into every object it walks and so copies the pages. Frozen, the parent's objects are left
            # out of the workers' collections (the gc module's documentation, gc.freeze: "before
            # fork()"); unfrozen again at close()
            gc.freeze()
            self._frozen = True
        self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_pool_init, initargs=(spec,))

    def map(self, batches: list[list[Task]]) -> Iterator[list[dict]]:
        assert self._pool is not None, "start() first"
        futures = [self._pool.submit(_pool_batch, b) for b in batches]
        for f in as_completed(futures):
            yield f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._frozen:
            import gc
            gc.unfreeze()
            self._frozen = False


def _dask_batch(spec: ModelSpec, batch: list[Task]) -> list[dict]:
    """On a Dask worker: that worker's own model cache for this spec, made at its first batch."""
    from distributed import get_worker
    w = get_worker()
    caches = w.__dict__.setdefault("_netsim_reach", {})
    cache = caches.get(spec)
    if cache is None:
        cache = caches[spec] = ModelCache(spec)
    return run_batch(cache, batch)


class DaskExecutor:
    name = "dask"

    def __init__(self, workers: Optional[int] = None, scheduler: Optional[str] = None, retries: int = 3) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise ReachEngineError("--engine dask needs Dask distributed: pip install 'kube-netsim[reach]'") from None
        self.workers = workers or os.cpu_count() or 1
        self.scheduler = scheduler
        self.retries = retries
        self.client: Any = None
        self.cluster: Any = None
        self._spec: Any = None

    def start(self, spec: ModelSpec) -> None:
        from distributed import Client, LocalCluster
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="10s")
            except OSError as e:
                raise ReachEngineError(f"--scheduler {self.scheduler}: {e}") from None
            self.workers = len(self.client.scheduler_info().get("workers", {})) or self.workers
        else:
            self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        self._spec = self.client.scatter(spec, broadcast=True)

    def map(self, batches: list[list[Task]]) -> Iterator[list[dict]]:
        from distributed import as_completed as dask_completed
        futures = [self.client.submit(_dask_batch, self._spec, b, pure=False, retries=self.retries)
                   for b in batches]
        for f in dask_completed(futures):
            yield f.result()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def make_executor(engine: str, workers: Optional[int] = None, scheduler: Optional[str] = None) -> Executor:
    if engine == "serial":
        return SerialExecutor()
    if engine == "local":
        return LocalExecutor(workers)
    if engine == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
