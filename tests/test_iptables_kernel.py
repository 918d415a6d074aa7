"""The rendered text loads into a real kernel with iptables-restore, and iptables-save gives it back.

Runs as root in a scratch network namespace (``ip netns add netsim-iptpx-<random>``), deleted in
``finally``. The two nfacct objects kube-proxy creates before its restore are created over netlink
(NFNL_SUBSYS_ACCT) inside the namespace: without them the restore must fail as a whole (checked in
a scratch netns; kube-proxy proxier.go syncProxyRules creates them first). Both iptables backends are exercised where present (nf_tables: ``iptables-restore``;
legacy: ``iptables-legacy-restore``).
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from netsim.control.manifests import load
from netsim.rules.iptables.proxier import render
from kernel_helpers import add_kube_proxy_nfacct, in_netns, scratch_netns

pytestmark = pytest.mark.kernel

SHAPES = str(Path(__file__).parent / "fixtures" / "iptables_shapes.yaml")



BACKENDS = {"nft": ("iptables-restore", "iptables-save"), "legacy": ("iptables-legacy-restore", "iptables-legacy-save")}


@pytest.fixture
def netns():
    with scratch_netns("netsim-iptpx") as name:
        yield name


def _rule_shape(line: str) -> tuple[str, str | None, str | None]:
    """(chain, comment, target) of a rule line: what survives the kernel's canonical spelling."""
    words = shlex.split(line)
    comment = words[words.index("--comment") + 1] if "--comment" in words else None
    target = words[words.index("-j") + 1] if "-j" in words else None
    return words[1], comment, target


def _shapes(text: str) -> dict[str, dict[str, list]]:
    """table -> chain -> list of rule shapes; chains from the ':' lines."""
    tables: dict[str, dict[str, list]] = {}
    current: dict[str, list] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            shape = _rule_shape(line)
            current.setdefault(shape[0], []).append(shape[1:])
    return tables


def _restore_roundtrip(ns: str, backend: str, text: str) -> str:
    restore, save = BACKENDS[backend]
    if shutil.which(restore) is None:
        pytest.skip(f"{restore} is not installed")
    add_kube_proxy_nfacct(ns)
    loaded = in_netns(ns, [restore], text)
    assert loaded.returncode == 0, f"{restore} failed: {loaded.stderr}"
    saved = in_netns(ns, [save])
    assert saved.returncode == 0, saved.stderr
    return saved.stdout


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("example, node", [(SHAPES, "node-2"), ("example:shop", "node-1")])
def test_render_round_trips_through_the_kernel(netns: str, backend: str, example: str, node: str) -> None:
    text = render(load([example]), node)
    saved = _restore_roundtrip(netns, backend, text)
    ours, kernels = _shapes(text), _shapes(saved)
    assert set(kernels) == set(ours) == {"filter", "nat", "mangle"}
    for table in ours:
        # Same chains, and per chain the same rules in the same order (comment and target survive
        # the kernel's re-spelling of the matches).
        assert kernels[table] == ours[table], f"table {table} differs after iptables-restore/iptables-save"
    lines = saved.splitlines()
    # How the kernel spells kube-proxy's restore arguments (proxier.go syncProxyRules, checked with iptables-save).
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in lines
    assert "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0" in lines
    assert ('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
            "-j MASQUERADE --random-fully") in lines
    assert any("--probability 0.50000000000" in line for line in lines)


def test_restore_fails_atomically_without_nfacct_objects(netns: str) -> None:
    """A rule naming a missing nfacct object fails the whole restore (checked in a scratch netns)."""
    if shutil.which("iptables-restore") is None:
        pytest.skip("iptables-restore is not installed")
    text = render(load([SHAPES]), "node-1")
    loaded = in_netns(netns, ["iptables-restore"], text)
    assert loaded.returncode != 0
    saved = in_netns(netns, ["iptables-save"])
    assert "KUBE-SERVICES" not in saved.stdout
