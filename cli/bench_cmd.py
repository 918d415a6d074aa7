"""`netsim bench`: run the mode comparison (rich progress per stage), write results, plots and REPORT.md."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import click


def _ints(option: str, text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {text!r}", param_hint=option)
    if not vals or any(v < 1 for v in vals):
        raise click.BadParameter(f"expected numbers >= 1, got {text!r}", param_hint=option)
    return vals


class _RichProgress:
    """A progress bar per stage and, when a stage ends, one line with its headline figure."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.console = console
        self.bar = Progress(TextColumn("{task.fields[stage]:<15}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[what]}"), console=console,
                            transient=True)
        self.tasks: dict[str, int] = {}

    def start_stage(self, stage: str, total: int) -> None:
        self.bar.start()
        self.tasks[stage] = self.bar.add_task(stage, total=total, stage=stage, what="")

    def advance(self, stage: str, what: str) -> None:
        self.bar.update(self.tasks[stage], advance=1, what=what)
        if not self.console.is_terminal:          # a log file: one line per finished step instead of a bar
            task = self.bar.tasks[[t.id for t in self.bar.tasks].index(self.tasks[stage])]
            self.console.print(f"{stage}: {what} ({int(task.completed)}/{int(task.total or 0)})",
                               highlight=False)

    def finish_stage(self, stage: str, line: str) -> None:
        self.bar.remove_task(self.tasks.pop(stage))
        self.bar.stop()
        self.console.print(f"[bold]{stage}[/bold] done: {line}")

    def note(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/yellow]")


def _console():
    try:
        from rich.console import Console
    except ImportError:
        raise click.ClickException("netsim bench needs rich: pip install 'kube-netsim[bench]'") from None
    return Console(stderr=True)


@click.command()
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick", show_default=True,
              help="quick: 100 and 1,000 Services, CI-sized (< 2 min on 2 cores); full: the whole sweep.")
@click.option("--modes", metavar="LIST",
              help="Proxy modes, comma-separated (default: every mode whose packets are emulated: iptables,ipvs,nftables).")
@click.option("--services", metavar="LIST", help="Service counts, e.g. 100,1000,5000,10000,30000.")
@click.option("--endpoints", metavar="LIST", help="Endpoints per Service, e.g. 1,4,10.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-results", show_default=True,
              help="Directory for results.json, results.csv, plots and REPORT.md.")
@click.option("--compare", "compare_to", type=click.Path(dir_okay=False),
              help="An earlier results.json: print each metric's change, flagged where it exceeds the spread.")
@click.option("--kernel/--no-kernel", default=None,
              help="Real-kernel measurements (default: when root inside `unshare --net --mount`).")
@click.option("--connections", type=click.IntRange(10), help="Kernel first connections per target.")
@click.option("--backends", metavar="LIST",
              help="iptables backends for the kernel stages: iptables-nft,iptables-legacy (default: both).")
@click.option("--repeats", type=click.IntRange(5), help="Repeats per timing (at least 5).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--stages", metavar="LIST",
              help="Only these stages: sync,kernel-load,first-packet,kernel-connect,emulator, and the further "
                   "scenarios iptables-engine,modes,load,dns (default: the first five; --profile full adds the "
                   "rest).")
@click.option("--report-only", is_flag=True,
              help="Do not measure: redraw plots and REPORT.md from OUT/results.json.")
@click.option("--merge", "merge_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="With --report-only: first combine these results.json files (parts of one sweep, e.g. stage "
                   "groups run as separate processes) into OUT/results.json.")
@click.option("--vm", is_flag=True,
              help="Kernel measurements in one VM boot of Debian's kernel (has ip_vs: IPVS measured for real "
                   "beside iptables and nftables). Software-emulated: its figures are reported as ratios to "
                   "iptables of the same boot.")
def bench(profile: str, modes: Optional[str], services: Optional[str], endpoints: Optional[str], out_dir: str,
          compare_to: Optional[str], kernel: Optional[bool], connections: Optional[int], backends: Optional[str],
          repeats: Optional[int], seed: int, stages: Optional[str], report_only: bool, merge_files: tuple[str, ...],
          vm: bool) -> None:
    """Compare kube-proxy modes with numbers: sync cost, rule-set size, kernel load time, rules per first
    packet, real first-connection latency, the emulator's own speed.

    \b
    Results: OUT/results.json ({"environment", "results"}), OUT/results.csv, OUT/plots/*.png|svg,
    OUT/REPORT.md. Kernel parts need root inside a private network namespace:
        unshare --net --mount --propagation private -- netsim bench --profile quick
    Plots need matplotlib: pip install 'kube-netsim[bench]'.
    """
    from netsim.benchmarks.harness import PROFILES, STAGES, BenchError, Progress, run_bench
    from netsim.benchmarks.records import ResultsError, merge_results, read_results, write_results
    console = _console()
    out = Path(out_dir)
    if merge_files and not report_only:
        raise click.UsageError("--merge goes with --report-only")
    chosen = tuple(x.strip() for x in stages.split(",") if x.strip()) if stages else None
    unknown = [x for x in chosen or () if x not in STAGES]
    if unknown:
        raise click.BadParameter(f"expected some of {', '.join(STAGES)}, got {', '.join(unknown)}",
                                 param_hint="--stages")
    if report_only:
        try:
            if merge_files:
                env, records = merge_results([Path(f) for f in merge_files])
                write_results(out, env, records)
            else:
                env, records = read_results(out / "results.json")
        except ResultsError as e:
            raise click.ClickException(str(e)) from None
    else:
        prof = PROFILES[profile]
        overrides: dict = {}
        if modes:
            overrides["modes"] = tuple(m.strip() for m in modes.split(",") if m.strip())
        if (s := _ints("--services", services)) is not None:
            overrides["services"] = s
        if (e := _ints("--endpoints", endpoints)) is not None:
            overrides["endpoints"] = e
        if connections:
            overrides["connections"] = connections
        if backends:
            from netsim.benchmarks.kernel_measure import BACKENDS
            chosen_backends = tuple(b.strip() for b in backends.split(",") if b.strip())
            bad = [b for b in chosen_backends if b not in BACKENDS]
            if bad or not chosen_backends:
                raise click.BadParameter(f"expected some of {', '.join(BACKENDS)}, got {backends!r}",
                                         param_hint="--backends")
            overrides["backends"] = chosen_backends
        if repeats:
            overrides["repeats"] = repeats
        prof = replace(prof, **overrides)
        rp = _RichProgress(console)
        progress = Progress(rp.start_stage, rp.advance, rp.finish_stage, rp.note)
        try:
            runner = None
            if vm:
                from netsim.benchmarks.vm_runner import VmKernelRunner
                runner = VmKernelRunner(progress=lambda line: console.print(f"  vm: {line}", highlight=False,
                                                                            markup=False))
            result = run_bench(prof, out=out, kernel=kernel, seed=seed, progress=progress, stages=chosen,
                               kernel_runner=runner)
        except BenchError as e:
            raise click.ClickException(str(e)) from None
        env, records = result.environment, result.records
        console.print(f"wrote {out / 'results.json'} and {out / 'results.csv'} ({len(records)} records)")
    _report(console, out, env, records)
    if compare_to:
        from netsim.benchmarks.compare import compare, render_compare
        try:
            _, old = read_results(Path(compare_to))
        except ResultsError as e:
            raise click.ClickException(str(e)) from None
        click.echo(render_compare(compare(old, records)))


def _report(console, out: Path, env: dict, records: list) -> None:
    try:
        from netsim.benchmarks.report import write_report
    except ImportError:
        return
    try:
        written = write_report(out, env, records)
    except ModuleNotFoundError as e:
        console.print(f"[yellow]no plots: {e.name} is not installed (pip install 'kube-netsim[bench]')[/yellow]")
        return
    console.print(f"wrote {', '.join(str(p) for p in written)}")
