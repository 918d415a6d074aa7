"""The `netsim` command group: each subcommand lives in its own module and is registered here."""
from __future__ import annotations

import click

from netsim.cli.demo_cmd import demo
from netsim.cli.dns_cmd import dns
from netsim.cli.events_cmd import events
from netsim.cli.examples_cmd import examples
from netsim.cli.get_cmd import get
from netsim.cli.iptables_cmd import iptables
from netsim.cli.ipvs_cmd import ipvs
from netsim.cli.kernel_cmd import KERNEL_COMMANDS
from netsim.cli.rules_cmd import rules
from netsim.cli.trace_cmd import trace


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kube-netsim")
def cli() -> None:
    """kube-netsim: where a request to a Kubernetes Service goes, and why."""


for _command in (demo, trace, rules, get, events, examples, dns, iptables, ipvs, *KERNEL_COMMANDS):
    cli.add_command(_command)
