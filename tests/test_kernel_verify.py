"""`netsim verify`: real flows through the kernel compared one by one with the emulator's traces.

Root only (CI: under `unshare --net`); clusters get unique prefixes and are always taken down. The
comparison rules (what a client observes for a REJECT, a drop, an asymmetric reply, a remote
"no route") are documented in netsim/kernel/verify.py with their kernel sources.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from netsim.kernel import netns
from netsim.kernel.build import KernelCluster
from netsim.control.manifests import load
from kernel_helpers import NETSIM, unique_name

pytestmark = pytest.mark.kernel

FIXTURE = str(Path(__file__).parent / "fixtures" / "kernel_services.yaml")


@pytest.fixture(scope="module")
def services(kernel_run_dir):
    kc = KernelCluster.up(load([FIXTURE]), unique_name("v"), sources=[FIXTURE])
    try:
        yield kc
    finally:
        kc.down()


def test_verify_agrees_with_the_emulator_on_the_services_fixture(services):
    from netsim.kernel.verify import verify_running
    report = verify_running(services, flows=200, seed=1)
    assert len(report.results) == 200
    assert report.disagreements == [], "\n".join(report.lines())
    kinds = {r.spec.target.split()[0] for r in report.results}
    assert {"ClusterIP", "NodePort", "LoadBalancer", "PodIP"} <= kinds
    outcomes = {r.outcome[0] for r in report.results}
    assert {"delivered", "refused", "dropped"} <= outcomes        # REJECT and eTP-Local drops exercised
    assert any(r.spec.by_name for r in report.results)


def test_verify_catches_a_broken_kernel_ruleset(services):
    """A differential check that cannot fail proves nothing: remove the Services from node-1's nat
    table and the pod on node-1 must be reported as disagreeing."""
    from netsim.kernel.verify import verify_running
    node1 = services.plan.nodes["node-1"].netns
    netns.run(node1, ["iptables", "-t", "nat", "-F", "KUBE-SERVICES"])
    try:
        report = verify_running(services, flows=200, seed=2)
        bad = report.disagreements
        on_node1 = {node1} | {p.netns for p in services.plan.pods.values() if p.node == "node-1"}
        via_node1 = {services.plan.nodes["node-1"].ip} | {
            vip for vip, ip in services.plan.edge.vip_routes.items() if ip == services.plan.nodes["node-1"].ip}
        assert bad
        assert all(r.spec.netns in on_node1 or r.spec.dst in via_node1 for r in bad)
        assert any("DIFF" in line for line in report.lines())
        assert any("emulator trace" in line for line in report.lines())
    finally:
        services.sync_rules()


@pytest.mark.parametrize("example", ["httpd-app", "shop"])
def test_verify_builtin_examples_via_cli(kernel_run_dir, example):
    name = unique_name("v")
    out = subprocess.run([*NETSIM, "verify", "-f", f"example:{example}", "--flows", "200", "--name", name],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "200 flows" in out.stdout and " 0 disagreements" in out.stdout
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


@pytest.mark.parametrize("example", ["httpd-app", "kubectl-httpd", "shop"])
def test_verify_builtin_examples_in_nftables_mode(kernel_run_dir, example):
    """kube-proxy's nftables mode: each node's `ip kube-proxy` table loaded with `nft -f`, real
    connections compared flow by flow with the emulator's nftables engine."""
    from netsim.rules import registry
    if registry.get("nftables").kernel_support() is not None:
        pytest.skip(registry.get("nftables").kernel_support())
    name = unique_name("v")
    out = subprocess.run([*NETSIM, "verify", "-f", f"example:{example}", "--mode", "nftables", "--flows", "300",
                          "--name", name], capture_output=True, text=True, env=dict(os.environ), timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "300 flows" in out.stdout and " 0 disagreements" in out.stdout
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


def test_verify_host_gw_with_masquerade_all(kernel_run_dir, tmp_path):
    """The other pod network (host-gw routes instead of VXLAN) and kube-proxy's masqueradeAll
    (every Service packet SNATed): the kernel and the emulator still agree flow by flow."""
    from netsim.control.manifests import example_path
    text = Path(example_path("shop")).read_text()
    assert "podNetwork: vxlan" in text and "proxyMode: iptables" in text
    f = tmp_path / "shop-hostgw.yaml"
    f.write_text(text.replace("podNetwork: vxlan", "podNetwork: host-gw")
                     .replace("proxyMode: iptables", "proxyMode: iptables\n  masqueradeAll: true"))
    name = unique_name("v")
    out = subprocess.run([*NETSIM, "verify", "-f", str(f), "--flows", "200", "--name", name],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "200 flows" in out.stdout and " 0 disagreements" in out.stdout
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]
