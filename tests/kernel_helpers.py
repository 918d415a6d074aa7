"""Shared pieces of the kernel-backed tests (@pytest.mark.kernel): unique names, the root/tools/netns
skip, a scratch network namespace and the `netsim` command as a subprocess.

Every namespace made here carries a random suffix and is deleted in ``finally``; a test skips with the
reason when it is not root, a tool is missing, or the kernel refuses a namespace.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from typing import Iterator, Optional

import pytest

# the CLI in a child process, as a user would run it (`netsim ...`)
NETSIM = [sys.executable, "-c", "import sys; from netsim.cli.main import cli; sys.exit(cli())"]


def unique_name(prefix: str) -> str:
    """`prefix` and 7 random hex digits: short enough for a kernel cluster name (<= 16 characters)."""
    return prefix + uuid.uuid4().hex[:7]


def run(args: list[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60)


def in_netns(ns: str, args: list[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return run(["ip", "netns", "exec", ns, *args], stdin)


def require_root_and_tools(*tools: str) -> None:
    """Skip the test unless it runs as root and every tool is on PATH."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (run under `unshare --net` as root)")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed")


@contextmanager
def scratch_netns(prefix: str, *tools: str) -> Iterator[str]:
    """A fresh network namespace `<prefix>-<random>` (`ip netns add`), deleted on the way out."""
    require_root_and_tools(*tools)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    made = run(["ip", "netns", "add", name])
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        yield name
    finally:
        run(["ip", "netns", "delete", name])


def add_kube_proxy_nfacct(ns: str) -> None:
    """Create the nfacct objects kube-proxy creates before its first restore (proxier.go
    syncProxyRules) inside `ns`; skip the test when the kernel has no nfnetlink_acct."""
    from netsim.benchmarks.bench_iptables_render import NFACCT_ADD_SCRIPT
    created = in_netns(ns, [sys.executable, "-c", NFACCT_ADD_SCRIPT,
                            "ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"])
    if created.returncode != 0:
        pytest.skip(f"kernel has no nfnetlink_acct: {created.stderr.strip()}")


def iptables_restore_in_scratch_netns(text: str, prefix: str, ipsets: Optional[str] = None) -> str:
    """Load a node's rule set as kube-proxy does (its nfacct objects first, ``ipset restore`` for the
    IPVS proxier's sets) with the real ``iptables-restore`` in a scratch namespace; fails the test with
    the tool's message if it is refused, else returns ``iptables-save``'s text."""
    tools = ("iptables-restore", "iptables-save") + (("ipset",) if ipsets is not None else ())
    with scratch_netns(prefix, *tools) as ns:
        add_kube_proxy_nfacct(ns)
        if ipsets is not None:
            restored = in_netns(ns, ["ipset", "restore"], ipsets)
            assert restored.returncode == 0, f"ipset restore refused: {restored.stderr}"
        loaded = in_netns(ns, ["iptables-restore"], text)
        assert loaded.returncode == 0, f"iptables-restore refused the rule set: {loaded.stderr}"
        saved = in_netns(ns, ["iptables-save"])
        assert saved.returncode == 0, saved.stderr
        assert_iptables_save_form(text, saved.stdout)
        return saved.stdout


def assert_iptables_save_form(text: str, saved: str) -> None:
    """`saved` (what the kernel's iptables-save printed after `text` was restored into an empty
    namespace) equals our rendering of `text` byte for byte, its comment lines and counters aside:
    the form `netsim rules` prints and traces quote."""
    from netsim.rules.iptables.render import iptables_save
    from kernel_oracle import saved_form
    assert iptables_save(text) == saved_form(saved), "netsim's iptables-save rendering differs from the kernel's"
