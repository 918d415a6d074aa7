"""`netsim reach`: the whole cluster's Service reachability matrix — every source class × every
Service destination × every mode — and the diff between two versions or two modes."""
from __future__ import annotations

import sys

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, input_limits, limit_options
from netsim.reach.evaluate import MIN_NODES, WORKER_MEMORY_MB


def _modes(_ctx, _param, value: str):
    if not value:
        return []
    from netsim.reach.run import available_modes
    modes = [m.strip() for m in value.split(",") if m.strip()]
    known = available_modes()
    for m in modes:
        if m not in known:
            raise click.BadParameter(f"{m!r}: expected a comma-separated list of {', '.join(known)}")
    return modes


def _with(options):
    """Apply a list of click options (the shared --max-input-bytes / --max-yaml-values)."""
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


@click.command("reach")
@click.option("-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
              help="Manifests (file, - or example:NAME), repeatable: the version (OLD when -f2 is given).")
@click.option("-f2", "--filename2", "files2", multiple=True, metavar="FILE",
              help="Manifests of a second version (NEW): the diff OLD → NEW.")
@click.option("--modes", callback=_modes, default="", metavar="M1,M2",
              help="kube-proxy modes (comma-separated; default: the Cluster document's). Two modes and one "
                   "version: the diff between the modes.")
@click.option("--engine", type=click.Choice(["serial", "local", "dask"]), default="local", show_default=True,
              help="Where probes run: this process, a process pool, or Dask distributed.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Workers (default: CPU count).")
@click.option("--scheduler", metavar="tcp://HOST:8786", default=None,
              help="An existing Dask scheduler (with --engine dask; default: a LocalCluster).")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True, help="Probes per batch.")
@click.option("--worker-memory", type=click.IntRange(0), default=WORKER_MEMORY_MB, show_default=True,
              metavar="MB", help=f"Nodes' compiled rules a worker keeps, in MB (measured per node; at least {MIN_NODES} "
                                 "nodes); past it the "
                   "worker starts its model afresh. 0: keep every node's.")
@click.option("--out", "out_dir", metavar="DIR", default=None,
              help="Write matrix.parquet, expansion.parquet, report.html (and diff.json, diff.md) here.")
@click.option("--csv", "csv_too", is_flag=True, help="Also write matrix.csv and expansion.csv.")
@click.option("--png", is_flag=True, help="Also write heatmap.png: the report's heatmap, one panel per model "
                                          "(matplotlib).")
@click.option("--resume", is_flag=True, help="Reuse the rows already in DIR/matrix.* (same inputs).")
@click.option("--exhaustive", is_flag=True, help="Also trace every raw probe and require it to equal its class row.")
@click.option("--validate-sample", type=click.IntRange(0), default=0, metavar="N",
              help="Trace N random raw probes the slow way; each must equal its class row.")
@click.option("--seed", type=int, default=None, help="Reseed the cluster's RNG (as netsim trace --seed).")
@click.option("--witness", "witness", multiple=True, metavar="PATTERN",
              help="A full trace (with steps) for each row whose probe key or Service (ns/name) matches this "
                   "shell pattern, e.g. 'default/web' or 'default/web nodeport *' (repeatable; at most 100 rows).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_with(limit_options)
def reach(files, files2, modes, engine, workers, scheduler, batch_size, worker_memory, out_dir, csv_too, png, resume, exhaustive,
          validate_sample, seed, witness, output) -> None:
    """Who can reach which Service, through which endpoints, with or without SNAT — for every source
    class, every Service destination and every mode; with -f2 or two --modes, what changes.

    Exit status: 0 computed (and no difference in a diff, no mismatch in a validation),
    1 the diff found differences or a validation found a mismatch, 2 bad input."""
    import json

    from netsim.control.docfields import ManifestError
    from netsim.reach.executors import ReachEngineError
    from netsim.reach.run import reach as run_reach
    from netsim.reach.run import witness_rows, write_outputs
    if resume and not out_dir:
        raise click.UsageError("--resume needs --out DIR")
    versions = [("old" if files2 else "cluster", list(files))]
    if files2:
        versions.append(("new", list(files2)))
    done = _resumed(out_dir) if resume else None
    if not modes:
        import netsim
        try:
            modes = [netsim.load(*files, seed=seed, limits=input_limits()).mode]
        except ManifestError as e:
            raise click.ClickException(str(e)) from None
    progress = _Progress(output == "text")
    try:
        run = run_reach(versions, modes, engine=engine, workers=workers, scheduler=scheduler,
                        batch_size=batch_size, seed=seed, exhaustive=exhaustive, validate_sample=validate_sample,
                        done=done, on_batch=progress.batch, limits=input_limits(), worker_memory_mb=worker_memory)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    except (ReachEngineError, OSError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        progress.close()
    if witness:
        witness_rows(run, witness)
    if out_dir:
        write_outputs(run, out_dir, csv_too=csv_too, png=png)
    mx = run.matrix
    if output == "json":
        click.echo(json.dumps({"schema": "netsim.reach/v1", "versions": run.versions, "modes": run.modes,
                               "classes": len(mx.classes), "tasks": mx.tasks, "naive_probes": mx.naive_probes,
                               "rows": mx.rows, "diff": run.diffs[0].to_dict() if run.diffs else None,
                               "validated": run.validated, "mismatches": len(run.mismatches),
                               "witnesses": run.witnesses,
                               "written": run.written}, indent=1, sort_keys=True))
    else:
        _print_text(run)
    if run.mismatches or any(d.rows for d in run.diffs):
        sys.exit(EXIT_NOT_DELIVERED)


def _resumed(out_dir: str) -> dict:
    from netsim.reach.output import read_matrix
    out = {}
    for r in read_matrix(out_dir):
        if not r.get("shared_from"):
            out[(r["key"], r["version"], r["mode"])] = r
    return out


class _Progress:
    """A progress bar over batches on a terminal (click's), silent otherwise."""

    def __init__(self, on: bool) -> None:
        self.on = on and sys.stderr.isatty()
        self.done = 0

    def batch(self, recs: list[dict]) -> None:
        self.done += len(recs)
        if self.on:
            click.echo(f"\r  {self.done} probes done", nl=False, err=True)

    def close(self) -> None:
        if self.on and self.done:
            click.echo("", err=True)


def _print_text(run) -> None:
    from netsim.reach.output import grid
    mx = run.matrix
    click.echo(f"{len(mx.classes)} probe classes, {mx.tasks} probes traced "
               f"({mx.naive_probes} raw (source, destination) probes), modes {', '.join(run.modes)}")
    if run.diffs:
        d = run.diffs[0]
        symbols = {r["key"]: {"changed": "C", "added": "+", "removed": "-"}[r["diff_type"]] for r in d.rows}
        g = grid(mx.rows, d.after.version, d.after.mode, symbols) or grid(mx.rows, d.before.version, d.before.mode,
                                                                          symbols)
        click.echo(f"diff {d.before.label()} -> {d.after.label()}: {d.summary()}")
        if g:
            click.echo(g)
        for r in d.rows[:20]:
            dst = r["destination"]
            click.echo(f"  {r['diff_type']:<8} {dst['service']} {dst['kind']} {dst['address']}:{dst['port']}/"
                       f"{dst['proto']} <- {r['source']['class']}: {_short(r['before'])} -> {_short(r['after'])}")
    else:
        for v in run.versions:
            for m in run.modes:
                g = grid(mx.rows, v, m)
                if g:
                    click.echo(f"{v} / {m}  (. delivered, X not, ~ some branches)")
                    click.echo(g)
                else:
                    n = [r for r in mx.rows if r["version"] == v and r["mode"] == m]
                    ok = sum(1 for r in n if r["disposition"] == "DELIVERED")
                    click.echo(f"{v} / {m}: {ok} of {len(n)} classes delivered")
    for w in run.witnesses:
        d = w["destination"]
        click.echo(f"witness [{w['version']}/{w['mode']}] {d['service']} {d['kind']} {d['address']}:{d['port']}/"
                   f"{d['proto']} <- {w['source']}: {w['verdict']['disposition']}")
        click.echo((w["witness"] or {}).get("text") or (w["witness"] or {}).get("error", ""))
    if run.validated:
        click.echo(f"validated {run.validated} raw probes: {len(run.mismatches)} mismatches")
        for b in run.mismatches[:10]:
            click.echo(f"  MISMATCH {b.raw} [{b.version}/{b.mode}]: class {b.class_outcome[0]}, raw {b.raw_outcome[0]}")
    for p in run.written:
        click.echo(f"wrote {p}")


def _short(o) -> str:
    if o is None:
        return "(none)"
    return o["disposition"] + (" SNAT" if o["snat"] else "") + (f" {len(o['endpoints'])} endpoints"
                                                                if o["endpoints"] else "")
