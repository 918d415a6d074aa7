"""The `netsim` command group: each subcommand lives in its own module and is registered here."""
from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kube-netsim")
def cli() -> None:
    """kube-netsim: where a request to a Kubernetes Service goes, and why."""


# --- subcommand registration (one line per module) ---
from netsim.cli.dns_cmd import dns  # noqa: E402
cli.add_command(dns)
from netsim.cli.rules_cmd import rules  # noqa: E402
cli.add_command(rules)
from netsim.cli.examples_cmd import examples  # noqa: E402
from netsim.cli.get_cmd import get  # noqa: E402
from netsim.cli.events_cmd import events  # noqa: E402

cli.add_command(examples)
cli.add_command(get)
cli.add_command(events)
from netsim.cli.kernel_cmd import KERNEL_COMMANDS  # noqa: E402
for _kernel_cmd in KERNEL_COMMANDS: cli.add_command(_kernel_cmd)  # noqa: E701
from netsim.cli.trace_cmd import trace  # noqa: E402
cli.add_command(trace)
from netsim.cli.demo_cmd import demo  # noqa: E402
cli.add_command(demo)
from netsim.cli.iptables_cmd import iptables  # noqa: E402
cli.add_command(iptables)
from netsim.cli.ipvs_cmd import ipvs  # noqa: E402
cli.add_command(ipvs)
