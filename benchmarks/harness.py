"""`netsim bench`: the iptables-vs-IPVS comparison as one instrument.

Stages, each a scenario module of this package, each writing records of one format (records.py):

1. ``sync``           – sync.py: render time, rule-set size, incremental change (emulator / model);
2. ``kernel-load``    – kernel_measure.measure_load via the kernel runner: iptables-restore (nft and
                        legacy backends), ipset restore, the incremental --noflush restore (kernel);
3. ``first-packet``   – first_packet.py: rules evaluated by Service position, mean / p99, established
                        packet (model);
4. ``kernel-connect`` – kernel_measure.measure_connect via the kernel runner: first-connection latency
                        p50 / p99, CPU per connection, first and last Service, the empty-rule-set floor;
5. ``emulator``       – emulator_speed.py (bench_dataplane's loops): traces/s, established packets/s,
                        peak RSS (emulator).

Further scenarios (the older bench_* scripts, each still runnable alone), in the ``full`` profile or
by name with ``--stages``:

6. ``iptables-engine`` – bench_iptables_engine.engine_records: parse, build, compile, per-packet
                        evaluation of a synthetic kube-proxy nat table (emulator) and the kernel's
                        mean rules per packet (model);
7. ``modes``          – bench_modes.modes_records: node build, what a node holds, rules over all hops
                        and IPVS hash lookups per connection (model), a traced connection (emulator);
8. ``load``           – bench_load.load_records: control-plane load from YAML and from objects, peak
                        RSS, Python heap (emulator; mode ``any``);
9. ``dns``            – dns_stage.dns_records (wraps bench_dns): ndots:5 queries per lookup (model),
                        resolver queries/s in process and over UDP with dnsperf (emulator; mode ``any``).

Kernel stages go through a :class:`netsim.benchmarks.kernel_runner.KernelRunner` (the hook point for a
VM: pass ``kernel_runner=`` to :func:`run_bench`; the default is the local-namespace runner) and
only run as root inside a network namespace of their own (``unshare --net --mount``).
Profiles: ``quick`` (CI, under 2 minutes on 2 cores) and ``full`` (the sweep).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from netsim.benchmarks.records import Record, environment, load_average, select, write_results

CORE_STAGES = ("sync", "kernel-load", "first-packet", "kernel-connect", "emulator")
EXTRA_STAGES = ("iptables-engine", "modes", "load", "dns")
STAGES = CORE_STAGES + EXTRA_STAGES


@dataclass(frozen=True)
class Profile:
    """Sizes and repeat counts of one sweep (each stage may cap the Service counts it runs)."""
    name: str
    modes: tuple[str, ...]
    services: tuple[int, ...]
    endpoints: tuple[int, ...]
    repeats: int = 5                     # timings: median of this many, min/max kept
    connections: int = 1000              # kernel first connections per target
    backends: tuple[str, ...] = ("iptables-nft", "iptables-legacy")
    model_sample: int = 1000             # Services sampled for mean / p99 rules evaluated
    traces: int = 1000                   # emulator: traces per round
    packets: int = 5000                  # emulator: established packets per round
    emulator_max_services: int = 10_000
    connect_max_services: int = 30_000
    connect_endpoints: tuple[int, ...] = (1,)
    emulator_endpoints_note: str = "2 (bench_dataplane's cluster)"
    extra_stages: tuple[str, ...] = ()     # run by default besides CORE_STAGES
    engine_packets: int = 2000           # iptables-engine: packets per evaluation pass
    engine_max_services: int = 10_000
    modes_traces: int = 300              # modes: traced connections per round
    modes_max_services: int = 10_000
    load_endpoints: int = 5              # load: endpoints per Service (one Deployment each)
    load_max_services: int = 10_000
    dns_seconds: float = 1.0             # dns: seconds per in-process round
    dnsperf_seconds: float = 3.0         # dns: seconds per dnsperf round
    # kernel stages: the largest Service count per mode (others: all); see KERNEL_CAP_REASONS
    kernel_max_services: tuple[tuple[str, int], ...] = ()

    def kernel_cap(self, mode: str) -> Optional[int]:
        return dict(self.kernel_max_services).get(mode)

    def default_stages(self) -> tuple[str, ...]:
        return CORE_STAGES + self.extra_stages


def _modes() -> tuple[str, ...]:
    """Every kube-proxy mode whose packets are emulated (netsim.rules.registry), in its order."""
    from netsim.rules.registry import available_modes
    return available_modes(kube_proxy_only=True, walks_packets=True)


# Why a mode's kernel stages stop below the profile's largest size.
KERNEL_CAP_REASONS = {
    "nftables": "`nft -f` of kube-proxy's nftables table (a chain per Service and per endpoint, one transaction) "
                "grows superlinearly: 4.4 s at 5,000 and 18 s at 10,000 Services here, several minutes at "
                "30,000 (the kubernetes#135639 / #139513 symptom), per repeat and again for the connection "
                "cluster",
}

PROFILES = {
    "quick": Profile("quick", _modes(), (100, 1000), (1,), repeats=5, connections=200,
                     model_sample=300, traces=200, packets=1000, emulator_max_services=1000),
    "full": Profile("full", _modes(), (100, 1000, 5000, 10_000, 30_000), (1, 4), repeats=5,
                    connections=1000, model_sample=1000, traces=1000, packets=5000, emulator_max_services=10_000,
                    extra_stages=EXTRA_STAGES, engine_packets=20_000, modes_traces=1000, dnsperf_seconds=10.0,
                    kernel_max_services=(("nftables", 10_000),)),
}


class BenchError(RuntimeError):
    """The bench cannot run as asked (one line: what and why)."""


def in_own_netns() -> bool:
    """True when this process runs in a network namespace of its own (e.g. ``unshare --net``): not the one
    PID 1 lives in, or – where PID 1's is not readable – one whose only interface is loopback."""
    try:
        return os.stat("/proc/self/ns/net").st_ino != os.stat("/proc/1/ns/net").st_ino
    except OSError:
        pass
    try:
        with open("/proc/self/net/dev") as f:
            names = [line.split(":", 1)[0].strip() for line in f.readlines()[2:]]
    except OSError:
        return False
    return names == ["lo"]


def mode_unavailable(mode: str) -> Optional[str]:
    """None when a provider emulates ``mode`` (netsim.rules.registry), else why it is skipped."""
    from netsim.rules.registry import ProxyModeError, get
    try:
        provider = get(mode)
    except ProxyModeError as e:
        return str(e)
    return None if provider.walks_packets else provider.notice


@dataclass
class Progress:
    """What the harness reports while it runs (the CLI draws rich progress bars from it)."""
    start_stage: Callable[[str, int], None] = lambda stage, total: None
    advance: Callable[[str, str], None] = lambda stage, what: None
    finish_stage: Callable[[str, str], None] = lambda stage, headline: None
    note: Callable[[str], None] = lambda text: None


@dataclass
class BenchResult:
    environment: dict
    records: list[Record]
    skipped: list[str] = field(default_factory=list)
    out: Optional[Path] = None


def _fmt_s(v: float) -> str:
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def headline(stage: str, records: Sequence[Record]) -> str:
    """One line with the stage's main figure at the largest size it ran."""
    if not records:
        return "no records"
    n = max(r.services for r in records)
    parts = []
    if stage == "sync":
        for r in select(records, services=n, metric="ruleset_rules", table="all", endpoints_per_service=1):
            parts.append(f"{r.mode} {int(r.value)} iptables rules")
        for r in select(records, services=n, metric="virtual_servers", endpoints_per_service=1):
            parts.append(f"{int(r.value)} IPVS virtual servers")
        for r in select(records, services=n, metric="render_seconds", sync="full", endpoints_per_service=1):
            parts.append(f"{r.mode} render {_fmt_s(r.value)}")
    elif stage == "kernel-load":
        for r in select(records, services=n, metric="kernel_load_seconds", tool="iptables-restore",
                       endpoints_per_service=1):
            parts.append(f"{r.mode} {r.labels.get('backend')} restore {_fmt_s(r.value)}")
        for r in select(records, metric="kernel_load_seconds", tool="nft -f", endpoints_per_service=1):
            if r.services == max(x.services for x in select(records, mode=r.mode, metric="kernel_load_seconds")):
                parts.append(f"{r.mode} nft -f {_fmt_s(r.value)} at N={r.services}")
    elif stage == "first-packet":
        for r in select(records, services=n, metric="rules_first_packet", position="last", endpoints_per_service=1):
            parts.append(f"{r.mode} {int(r.value)} rules (last Service)")
    elif stage == "kernel-connect":
        floor = select(records, metric="kernel_first_connection_latency_p50", position="pod-ip")
        if floor:
            parts.append(f"floor p50 {floor[0].value:.0f} µs")
        for r in select(records, metric="kernel_first_connection_latency_p50", position="last"):
            if r.services == max(x.services for x in select(records, mode=r.mode, metric=r.metric)):
                at = "" if r.services == n else f" (N={r.services})"
                parts.append(f"{r.labels.get('backend')} last p50 {r.value:.0f} µs{at}")
        for r in select(records, services=n, metric="kernel_first_connection_latency_p50_ratio_to_iptables",
                        position="last"):
            parts.append(f"VM: {r.mode}/iptables p50 ×{r.value:.2f}")
    elif stage == "emulator":
        n = max(r.services for r in records)
        for r in select(records, services=n, metric="traces_per_second"):
            parts.append(f"{r.mode} {r.value:.0f} traces/s")
    elif stage == "iptables-engine":
        for r in select(records, services=n, metric="engine_eval_per_packet", engine="lazy"):
            parts.append(f"{r.value:.1f} µs/packet")
        for r in select(records, services=n, metric="rules_evaluated_nat_prerouting_mean"):
            parts.append(f"kernel would evaluate {r.value:.0f} rules")
    elif stage == "modes":
        for r in select(records, services=n, metric="traced_connection_seconds"):
            parts.append(f"{r.mode} {r.value:.0f} µs/traced connection")
    elif stage == "load":
        for r in select(records, services=n, metric="load_yaml_seconds"):
            parts.append(f"YAML load {_fmt_s(r.value)}")
        for r in select(records, services=n, metric="heap_retained_mib"):
            parts.append(f"heap {r.value:.0f} MiB")
    elif stage == "dns":
        for r in select(records, metric="dns_in_process_queries_per_second"):
            parts.append(f"{r.value:.0f} queries/s in process")
        for r in select(records, metric="dns_udp_queries_per_second"):
            parts.append(f"{r.value:.0f} queries/s over UDP (dnsperf)")
    return f"N={n}: " + ", ".join(parts) if parts else "no records"


def plan_stage_steps(profile: Profile, stage: str, kernel: bool) -> list[tuple]:
    modes = [m for m in profile.modes if not mode_unavailable(m)]
    if stage == "sync":
        return [(m, n, e) for m in modes for n in profile.services for e in profile.endpoints]
    if stage == "first-packet":
        return [(m, n, e) for m in modes for n in profile.services for e in profile.endpoints]
    if stage == "emulator":
        return [(m, n) for m in modes for n in profile.services if n <= profile.emulator_max_services]
    if stage == "iptables-engine":
        return [(n,) for n in profile.services if n <= profile.engine_max_services]
    if stage == "modes":
        return [(n,) for n in profile.services if n <= profile.modes_max_services]
    if stage == "load":
        return [(n,) for n in profile.services if n <= profile.load_max_services]
    if stage == "dns":
        return [()]
    from netsim.benchmarks.kernel_runner import KernelJob
    if not kernel:
        return []
    from netsim.rules.registry import get

    def backends(m: str) -> tuple[str, ...]:
        # every iptables backend for a mode whose rules are one iptables text; the first for the others
        return profile.backends if get(m).iptables_only else profile.backends[:1]
    def within_cap(m: str, n: int) -> bool:
        cap = profile.kernel_cap(m)
        return cap is None or n <= cap
    if stage == "kernel-load":
        return [KernelJob("load", m, n, e, backend=b, repeats=profile.repeats)
                for m in modes for n in profile.services if within_cap(m, n)
                for e in profile.endpoints for b in backends(m)]
    if stage == "kernel-connect":
        # the floor (no rules, straight to a pod) once, under the first mode measured with an iptables backend
        floor = [m for m in modes if get(m).iptables_only][:1]
        jobs = [KernelJob("connect", m, 0, 1, backend=profile.backends[0], repeats=profile.repeats,
                          connections=profile.connections) for m in floor]
        # size-major: the modes compared at one size are measured one after the other (on a shared machine or
        # in a VM the background changes over a long run; ratios between modes should not see that)
        jobs += [KernelJob("connect", m, n, e, backend=b, repeats=profile.repeats, connections=profile.connections)
                 for n in profile.services if n <= profile.connect_max_services for m in modes if within_cap(m, n)
                 for e in profile.connect_endpoints for b in backends(m)]
        return jobs
    raise BenchError(f"unknown stage {stage!r}")


def scenario_records(profile: Profile, stage: str, step: tuple, seed: int = 1,
                     progress: Progress = Progress()) -> list[Record]:
    """One step of an EXTRA_STAGES scenario (see plan_stage_steps for the steps)."""
    if stage == "iptables-engine":
        from netsim.benchmarks.bench_iptables_engine import engine_records
        return engine_records(step[0], packets=profile.engine_packets, rounds=profile.repeats, seed=seed)
    if stage == "modes":
        from netsim.benchmarks.bench_modes import modes_records
        return modes_records(step[0], n_traces=profile.modes_traces, rounds=profile.repeats)
    if stage == "load":
        from netsim.benchmarks.bench_load import load_records
        n = step[0]
        return load_records(n, profile.load_endpoints, nodes=max(20, n // 100), rounds=profile.repeats)
    if stage == "dns":
        from netsim.benchmarks.dns_stage import dns_records
        return dns_records(profile.dns_seconds, profile.repeats, profile.dnsperf_seconds, note=progress.note)
    raise BenchError(f"unknown stage {stage!r}")


def run_bench(profile: Profile, out: Optional[Path] = None, kernel: Optional[bool] = None, seed: int = 1,
              progress: Progress = Progress(), kernel_runner=None,
              stages: Optional[Sequence[str]] = None) -> BenchResult:
    """Run the sweep (``stages``: default the profile's); write DIR/results.json + results.csv when
    ``out`` is given."""
    if stages is None:
        stages = profile.default_stages()
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise BenchError(f"--stages: expected some of {', '.join(STAGES)}, got {', '.join(unknown)}")
    from netsim.benchmarks.emulator_speed import speed_records
    from netsim.benchmarks.first_packet import model_records
    from netsim.benchmarks.kernel_runner import LocalNetnsRunner
    from netsim.benchmarks.sync import sync_records

    from netsim.rules.registry import known_modes
    for m in profile.modes:
        if m not in known_modes(kube_proxy_only=True):
            raise BenchError(f"--modes: expected some of {', '.join(known_modes(kube_proxy_only=True))}, got {m!r}")
    skipped: list[str] = []
    for m in profile.modes:
        why = mode_unavailable(m)
        if why:
            skipped.append(f"{m}: {why}")
            progress.note(f"skipping {m}: {why}")
    profile = replace(profile, modes=tuple(m for m in profile.modes if not mode_unavailable(m)))
    runner = kernel_runner or LocalNetnsRunner()
    reason = runner.unavailable()
    if reason is None and kernel_runner is None and not in_own_netns():
        reason = ("not inside a network namespace of its own: run under "
                  "`unshare --net --mount --propagation private -- netsim bench ...`")
    if kernel and reason:
        raise BenchError(f"--kernel: {reason}")
    use_kernel = (kernel is not False) and reason is None
    if not use_kernel:
        why = "disabled with --no-kernel" if kernel is False else reason
        skipped.append(f"kernel measurements: {why}")
        progress.note(f"skipping kernel measurements: {why}")

    if use_kernel:
        for m in profile.modes:
            cap = profile.kernel_cap(m)
            over = [n for n in profile.services if cap is not None and n > cap]
            if over and any(s in ("kernel-load", "kernel-connect") for s in stages):
                why = KERNEL_CAP_REASONS.get(m, "capped by the profile")
                skipped.append(f"kernel {m} at {', '.join(f'{n:,}' for n in over)} Services: {why}")
    records: list[Record] = []
    stage_seconds: dict[str, float] = {}
    load_start = load_average()
    for stage in stages:
        steps = plan_stage_steps(profile, stage, use_kernel)
        if not steps:
            continue
        progress.start_stage(stage, len(steps))
        t_stage = time.monotonic()
        got: list[Record] = []
        if stage in ("kernel-load", "kernel-connect"):
            runnable = []
            for job in steps:
                why = runner.supports(job)
                if why:
                    skipped.append(f"{job.describe()}: {why}")
                    progress.advance(stage, f"skipped {job.describe()}")
                else:
                    runnable.append(job)
            got = runner.run(runnable, lambda job, recs: progress.advance(stage, job.describe()))
            for failed in getattr(runner, "failures", None) or []:    # jobs a runner ran but could not finish
                if failed not in skipped:
                    skipped.append(failed)
                    progress.note(failed)
        else:
            for step in steps:
                if stage == "sync":
                    recs, _ = sync_records(*step, repeats=profile.repeats)
                elif stage == "first-packet":
                    recs = model_records(*step, sample=profile.model_sample, seed=seed)
                elif stage == "emulator":
                    recs = speed_records(*step, traces=profile.traces, packets=profile.packets,
                                         rounds=profile.repeats)
                else:
                    recs = scenario_records(profile, stage, step, seed, progress)
                for r in recs:
                    r.labels.setdefault("stage", stage)
                got += recs
                progress.advance(stage, " ".join(str(s) for s in step))
        for r in got:
            r.labels.setdefault("stage", stage)
        records += got
        stage_seconds[stage] = round(time.monotonic() - t_stage, 1)
        progress.finish_stage(stage, f"{headline(stage, got)} [{stage_seconds[stage]:.0f} s]")

    env = environment(seed, profile.name, load_average_start=load_start,
                      kernel_runner=runner.name if use_kernel else None,
                      modes=list(profile.modes), services=list(profile.services),
                      endpoints=list(profile.endpoints), repeats=profile.repeats,
                      connections=profile.connections, skipped=skipped, stage_seconds=stage_seconds)
    result = BenchResult(env, records, skipped, out)
    if out is not None:
        write_results(Path(out), env, records)
    return result
