"""Where `netsim bench` runs its kernel measurements: the hook point for other kernels (e.g. a VM).

The harness never calls the kernel itself. It collects :class:`KernelJob` s (plain, JSON-able:
``kind`` "load" | "connect", mode, services, endpoints_per_service, backend, repeats, connections)
and hands them, in one batch, to a :class:`KernelRunner`:

    class KernelRunner(Protocol):
        name: str                                   # shown in results.json "environment.kernel_runner"
        def unavailable(self) -> Optional[str]      # None, or why this runner cannot run at all
        def supports(self, job) -> Optional[str]    # None, or why this job is skipped (recorded)
        def run(self, jobs) -> list[Record]         # one batch: e.g. one VM boot per command

:class:`LocalNetnsRunner` is the implementation for this machine's kernel (the caller is already
inside ``unshare --net --mount``): it executes each job with :func:`execute`, which dispatches the
job's ``kind`` through a ``measures`` table (:data:`DEFAULT_MEASURES`): ``load`` times the loads the
mode's provider lists (iptables-restore; IPVS: ipsets + iptables, and ``ipvsadm -R`` where
/proc/net/ip_vs exists); ``connect`` loads a mode whose rules are one iptables text with the job's
iptables backend, and brings any other mode up through the kernel backend (its provider programs it).

Plugging in a VM (``netsim bench --vm``): a runner whose ``run`` boots the guest once and, inside it,
executes ``python -m netsim.benchmarks.kernel_runner`` with the jobs as JSON on stdin; that entry
point prints ``{"records": [...]}`` (records as in results.json) on stdout, which the runner reads
back with :func:`records_from_json`. A runner may pass its own table to :func:`execute`
(``python -m netsim.benchmarks.kernel_runner --measures module:NAME`` selects such a table inside the
guest). Records keep ``source: kernel`` and should carry a label naming the kernel they ran on
(``kernel_runner``), so VM figures never share a series with this machine's.
"""
from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Protocol, Sequence

from netsim.benchmarks import kernel_measure as km
from netsim.benchmarks.records import Record


@dataclass(frozen=True)
class KernelJob:
    """One kernel measurement at one size (JSON-able, so it can cross into a VM)."""
    kind: str                      # "load" | "connect"
    mode: str                      # iptables | ipvs | nftables
    services: int
    endpoints_per_service: int
    backend: str = "iptables-nft"  # iptables-nft | iptables-legacy
    repeats: int = 5               # load: fresh namespaces; connect: chunks for CPU per connection
    connections: int = 1000        # connect: per target (first, last, floor)

    def describe(self) -> str:
        return (f"{self.kind} {self.mode} {self.services}x{self.endpoints_per_service} {self.backend}")


Measure = Callable[[KernelJob], list[Record]]


def _load(job: KernelJob) -> list[Record]:
    return km.measure_load(job.mode, job.services, job.endpoints_per_service, job.backend, job.repeats)


def _connect(job: KernelJob) -> list[Record]:
    from netsim.rules.registry import get
    if get(job.mode).iptables_only:
        return km.measure_connect(job.mode, job.services, job.endpoints_per_service, job.backend, job.connections,
                                  chunks=job.repeats)
    return km.measure_connect_programmed(job.mode, job.services, job.endpoints_per_service, job.connections,
                                         chunks=job.repeats)


DEFAULT_MEASURES: Mapping[str, Measure] = MappingProxyType({"load": _load, "connect": _connect})


def unsupported(job: KernelJob, measures: Mapping[str, Measure], kernel: bool = True) -> Optional[str]:
    """None when ``job`` can run, else why not: no measure for its kind, a mode no provider emulates
    (or only renders), a connection through the kernel backend without a Service, or (``kernel``: on
    this machine's kernel) what the mode needs that this kernel lacks."""
    from netsim.rules.registry import ProxyModeError, get
    if job.kind not in measures:
        return f"no kernel measurement for {job.kind}"
    try:
        provider = get(job.mode)
    except ProxyModeError as e:
        return str(e)
    if not provider.walks_packets:
        return provider.notice
    if job.kind == "connect" and not provider.iptables_only:
        if not job.services:
            return f"{job.mode} first connection needs at least one Service"
        why = provider.kernel_support() if kernel else None
        if why:
            return f"{why}; `netsim bench --vm` measures it in a VM"
    return None


def execute(job: KernelJob, measures: Mapping[str, Measure] = DEFAULT_MEASURES) -> list[Record]:
    fn = measures.get(job.kind)
    if fn is None:
        raise km.KernelMeasureError(f"no kernel measurement for {job.kind} in mode {job.mode}")
    return fn(job)


class KernelRunner(Protocol):
    name: str

    def unavailable(self) -> Optional[str]: ...

    def supports(self, job: KernelJob) -> Optional[str]: ...

    def run(self, jobs: Sequence[KernelJob], progress: Callable[[KernelJob, list[Record]], None]) -> list[Record]: ...


@dataclass
class LocalNetnsRunner:
    """This machine's kernel, in namespaces of the calling process (already under unshare)."""
    name: str = "local-netns"
    measures: Mapping[str, Measure] = field(default_factory=lambda: DEFAULT_MEASURES)
    failures: list[str] = field(default_factory=list)     # "job: failed: why" (the sweep goes on)

    def unavailable(self) -> Optional[str]:
        return km.root_reason()

    def supports(self, job: KernelJob) -> Optional[str]:
        return unsupported(job, self.measures)

    def run(self, jobs: Sequence[KernelJob], progress: Callable[[KernelJob, list[Record]], None]) -> list[Record]:
        out: list[Record] = []
        for job in jobs:
            try:
                recs = execute(job, self.measures)
            except (km.KernelMeasureError, RuntimeError, OSError, subprocess.SubprocessError) as e:
                # one size that cannot be measured (a tool's timeout, a refused load) must not lose a
                # long sweep's other records: it is recorded among the run's skipped jobs
                self.failures.append(f"{job.describe()}: failed: {' '.join(f'{type(e).__name__}: {e}'.split())[:400]}")
                progress(job, [])
                continue
            for r in recs:
                r.labels.setdefault("kernel_runner", self.name)
            progress(job, recs)
            out += recs
        return out


def records_from_json(text: str) -> list[Record]:
    """The records printed by ``python -m netsim.benchmarks.kernel_runner`` (e.g. inside a VM)."""
    return [Record.from_dict(d) for d in json.loads(text)["records"]]


def failures_from_json(text: str) -> list[str]:
    """The jobs that failed in a ``python -m netsim.benchmarks.kernel_runner`` run ("job: why")."""
    return list(json.loads(text).get("failures", []))


def main(argv: Optional[list[str]] = None) -> int:
    """Run jobs given as JSON on stdin ([{"kind": .., "mode": .., ...}, ...]); print records as JSON."""
    ap = argparse.ArgumentParser(prog="python -m netsim.benchmarks.kernel_runner", description=main.__doc__)
    ap.add_argument("--measures", help="module:NAME of a measures table to use instead of the default")
    args = ap.parse_args(argv)
    measures = DEFAULT_MEASURES
    if args.measures:
        mod, _, attr = args.measures.partition(":")
        measures = getattr(importlib.import_module(mod), attr)
    jobs = [KernelJob(**j) for j in json.loads(sys.stdin.read())]
    records: list[dict] = []
    failures: list[str] = []
    t0 = time.monotonic()
    for i, job in enumerate(jobs, 1):                 # a line per job on stderr: a VM's host shows them
        print(f"{time.monotonic() - t0:6.0f}s job {i}/{len(jobs)}: {job.describe()}", file=sys.stderr, flush=True)
        try:
            records += [r.to_dict() for r in execute(job, measures)]
        except Exception as e:                        # one job's failure must not lose the others' records
            why = " ".join(f"{type(e).__name__}: {e}".split())[:400]
            failures.append(f"{job.describe()}: failed: {why}")
            print(f"{time.monotonic() - t0:6.0f}s job {i}/{len(jobs)} failed: {why}", file=sys.stderr, flush=True)
    json.dump({"records": records, "failures": failures, "jobs": [asdict(j) for j in jobs]}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
