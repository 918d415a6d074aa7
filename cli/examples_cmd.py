"""`netsim examples`: the built-in example clusters (load one with -f example:NAME)."""
from __future__ import annotations

import click

from netsim.control.manifests import example_path, list_examples


@click.command("examples")
@click.argument("name", required=False)
def examples(name) -> None:
    """List the built-in examples, or print one's YAML."""
    if name:
        from pathlib import Path
        try:
            click.echo(Path(example_path(name)).read_text().rstrip())
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        return
    for n, desc in list_examples().items():
        click.echo(f"{n:12} {desc}   (-f example:{n})")
