"""The `netsim` command group: each subcommand lives in its own module and is registered here.

Exit codes follow grep(1)'s convention for every command: 0 the thing asked about happened (the
request was delivered, the name answered, the kernel agreed), 1 it did not, 2 usage or input error
(bad manifests, unknown options, files that cannot be read, a kernel backend that cannot start).
"""
from __future__ import annotations

import click

from netsim.cli.bench_cmd import bench
from netsim.cli.check_cmd import check
from netsim.cli.common import EXIT_INPUT_ERROR
from netsim.control.heap import one_shot_process
from netsim.cli.demo_cmd import demo
from netsim.cli.dns_cmd import dns
from netsim.cli.events_cmd import events
from netsim.cli.examples_cmd import examples
from netsim.cli.get_cmd import get
from netsim.cli.iptables_cmd import iptables
from netsim.cli.ipvs_cmd import ipvs
from netsim.cli.kernel_cmd import KERNEL_COMMANDS
from netsim.cli.proxy_status_cmd import proxy_status
from netsim.cli.reach_cmd import reach
from netsim.cli.rules_cmd import rules
from netsim.cli.state_cmd import STATE_COMMANDS
from netsim.cli.trace_cmd import trace


class NetsimGroup(click.Group):
    """A click group whose one-line errors exit 2 (grep's "error"), leaving 1 for "not delivered"."""

    def invoke(self, ctx: click.Context):
        from netsim.cli.progress import command_progress
        # the subcommand's name: click >= 8.2 keeps it in _protected_args, older ones in protected_args
        first = ctx.__dict__.get("_protected_args", ctx.__dict__.get("protected_args")) or [None]
        own = first[0] in ("bench", "reach")                        # these draw their own progress
        try:
            if own:
                return super().invoke(ctx)
            with command_progress():                # rich on a terminal's stderr, after 1 s busy
                return super().invoke(ctx)
        except click.ClickException as e:
            # click.ClickException exits 1 and click.UsageError 2: every error is an input error here.
            e.exit_code = EXIT_INPUT_ERROR
            raise


@click.group(cls=NetsimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kube-netsim")
def cli() -> None:
    """kube-netsim: where a request to a Kubernetes Service goes, and why.

    Exit status (grep's convention, every command): 0 delivered / answered / agreed,
    1 not delivered / not answered / disagreed, 2 usage or input error.
    """


for _command in (bench, check, demo, trace, rules, get, events, examples, dns, iptables, ipvs, proxy_status, reach,
                 *KERNEL_COMMANDS, *STATE_COMMANDS):
    cli.add_command(_command)


def main() -> None:
    """The `netsim` console script: one command per process (netsim.control.heap.one_shot_process)."""
    one_shot_process()
    cli()
