"""Options and error handling shared by the netsim commands."""
from __future__ import annotations

import click

from netsim.cluster import Cluster
from netsim.docfields import ManifestError

# grep(1)'s convention, the same for every command (documented in README "Exit status").
EXIT_OK = 0             # delivered / answered / agreed
EXIT_NOT_DELIVERED = 1  # not delivered / not answered / disagreed
EXIT_INPUT_ERROR = 2    # usage or input error (click.UsageError already exits 2)

file_option = click.option(
    "-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
    help="Manifest file (multi-document YAML) or example:NAME; repeatable.")


def load_cluster(files: tuple[str, ...], quiet: bool = False) -> Cluster:
    """Load manifests; bad input becomes a one-line error and exit code 2, never a traceback."""
    from netsim.manifests import load
    try:
        cluster = load(list(files))
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    if not quiet:
        for n in cluster.notices:
            click.echo(n, err=True)
    return cluster


def read_dump(path: str, expected: str) -> str:
    """A rule dump's text; unreadable or binary files become a one-line error naming what was expected."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise click.ClickException(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{path}: not a text file (expected {expected})") from None
