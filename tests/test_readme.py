"""The README stays true: its Cluster document loads as written, and every `netsim` subcommand it
shows exists."""
from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.control.manifests import load_text

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_cluster_document_loads_as_written():
    block = README.split("```yaml\n", 1)[1].split("```", 1)[0]
    cluster = load_text(block, source="README.md")
    cfg = cluster.config
    assert [n.name for n in cluster.nodes()] == ["node-1"]
    assert cluster.node("node-1").labels["disk"] == "ssd" and cluster.node("node-1").zone == "zone-a"
    assert (cfg.service_cidr, cfg.dns_service_ip, cfg.pod_network) == ("10.96.0.0/12", "10.96.0.10", "vxlan")
    assert cfg.upstream_dns == {"example.com": ["93.184.216.34"]}


def test_every_command_the_readme_shows_exists():
    shown = set(re.findall(r"^netsim ([a-z][a-z-]*)", README, flags=re.M))
    assert {"trace", "rules", "dns", "up", "verify", "get", "events", "iptables", "ipvs", "exec"} <= shown
    runner = CliRunner()
    for cmd in sorted(shown | {"demo"}):
        res = runner.invoke(cli, [cmd, "--help"])
        assert res.exit_code == 0, (cmd, res.output)


def test_readme_python_api_example_runs():
    block = README.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
