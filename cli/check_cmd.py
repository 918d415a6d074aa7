"""`netsim check`: a file of reachability expectations (netsim's own or netassert v2 tests) checked
against the manifests in every mode asked for; exit 0 all met, 1 some not, 2 bad input."""
from __future__ import annotations

import json
import sys

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, ModeChoice, file_option, load_emulator


@click.command("check")
@file_option
@click.option("--expect", "expect_file", required=True, metavar="FILE",
              help="YAML list of expectations (from/to/expect/...), or a netassert v2 test file.")
@click.option("--format", "fmt", type=click.Choice(["auto", "netsim", "netassert"]), default="auto",
              show_default=True, help="Expectation file format (auto: netassert when every entry has type and src).")
@click.option("--mode", "modes", multiple=True, type=ModeChoice(kube_proxy_only=True, walks_packets=True),
              help="kube-proxy mode to check in (repeatable; default: the Cluster document's proxyMode).")
@click.option("-o", "--output", type=click.Choice(["table", "tap", "json"]), default="table", show_default=True)
def check(files, expect_file: str, fmt: str, modes, output: str) -> None:
    """Check every expectation in EXPECT against the emulated cluster; failures print their trace."""
    from netsim.check import read_expectations, render_table, render_tap, run
    from netsim.control.docfields import ManifestError
    em = load_emulator(files)
    try:
        expectations = read_expectations(expect_file, em, fmt)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    report = run(em, expectations, list(modes) or [em.mode])
    if output == "tap":
        click.echo(render_tap(report))
    elif output == "json":
        click.echo(json.dumps({"schema": "netsim.check/v1", "results": [
            {"name": r.expectation.name, "mode": r.mode, "ok": r.ok, "expected": r.expectation.expect.lower(),
             "got": r.got.lower(), "message": r.message} for r in report.results]}, indent=2))
    else:
        click.echo(render_table(report))
        for r in report.failed:
            click.echo(f"\n=== FAIL [{r.mode}] {r.expectation.name}\n{r.message}")
    if report.failed:
        sys.exit(EXIT_NOT_DELIVERED)
