"""The `netsim` command group: each subcommand lives in its own module and is registered here."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kube-netsim")
def cli() -> None:
    """kube-netsim: where a request to a Kubernetes Service goes, and why."""


# --- subcommand registration (one line per module) ---
