"""`netsim rules` prints what iptables-save prints, byte for byte (counters and its two comment lines
aside), once the kernel holds kube-proxy's rules.

Each case is set up in a scratch network namespace as kube-proxy sets up a fresh node (proxier.go
syncProxyRules): the KUBE-PROXY-CANARY chains (iptables.Monitor), each jump chain created and its
jump rule prepended (`iptables -N`, `iptables -C` / `-I CHAIN 1`, iptablesJumpChains then
iptablesKubeletJumpChains), the nfacct objects, then `iptables-restore --noflush` of the restore
input. `iptables-save`'s output must equal `netsim rules` (nf_tables backend, the machine's
default), and per table for the legacy backend (which orders tables by kernel registration).
Hand-written dumps with every spelling the parser accepts go through `iptables-restore` as they are.
"""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.control.manifests import load
from netsim.rules.iptables.proxier import JUMP_RULES, restore_text
from netsim.rules.iptables.proxier_sync import KUBE_PROXY_CANARY
from netsim.rules.iptables.render import iptables_save
from kernel_helpers import add_kube_proxy_nfacct, in_netns, scratch_netns
from kernel_oracle import saved_form

pytestmark = pytest.mark.kernel

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
BACKENDS = {"nft": ("iptables", "iptables-restore", "iptables-save"),
            "legacy": ("iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save")}
CLUSTERS = [
    ("example:httpd-app", "node-1"), ("example:httpd-app", "node-3"),
    ("example:shop", "node-1"), ("example:shop", "node-2"),
    (str(FIXTURES / "iptables_shapes.yaml"), "node-1"), (str(FIXTURES / "iptables_shapes.yaml"), "node-2"),
    (str(FIXTURES / "kernel_services.yaml"), "node-2"),
    (str(FIXTURES / "iptables_variety.yaml"), "node-1"), (str(FIXTURES / "iptables_variety.yaml"), "node-4"),
]
DUMPS = [FIXTURES / "iptables_save_forms.rules", HERE / "golden" / "iptables" / "overall.txt",
         HERE / "golden" / "iptables" / "repeated_9_full_recovery.txt"]


def kernel_save(ns: str, backend: str) -> str:
    """iptables-save's output without its comment lines, chain counters zeroed."""
    saved = in_netns(ns, [BACKENDS[backend][2]])
    assert saved.returncode == 0, saved.stderr
    return saved_form(saved.stdout)


def per_table(text: str) -> dict[str, str]:
    return {block.split("\n", 1)[0]: block for block in re.split(r"(?m)^(?=\*)", text) if block}


def assert_same(ours: str, kernels: str, backend: str) -> None:
    if backend == "nft":
        assert ours == kernels
    else:
        assert per_table(ours) == per_table(kernels)


def prepare(ns: str, backend: str) -> None:
    binary = BACKENDS[backend][0]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    add_kube_proxy_nfacct(ns)


def as_kube_proxy(ns: str, backend: str, restore_input: str) -> None:
    """Program the namespace as kube-proxy programs a fresh node."""
    ipt, restore, _ = BACKENDS[backend]
    for table in ("mangle", "nat", "filter"):
        assert in_netns(ns, [ipt, "-t", table, "-N", KUBE_PROXY_CANARY]).returncode == 0
    for jump in JUMP_RULES:
        in_netns(ns, [ipt, "-t", jump.table, "-N", jump.dst_chain])          # EnsureChain: exists is fine
        args = shlex.split(jump.rule())[2:]                                   # drop "-A CHAIN"
        if in_netns(ns, [ipt, "-t", jump.table, "-C", jump.src_chain, *args]).returncode != 0:
            added = in_netns(ns, [ipt, "-t", jump.table, "-I", jump.src_chain, "1", *args])
            assert added.returncode == 0, added.stderr
    loaded = in_netns(ns, [restore, "--noflush"], restore_input)
    assert loaded.returncode == 0, loaded.stderr


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("source, node", CLUSTERS, ids=[f"{Path(s).stem}-{n}" for s, n in CLUSTERS])
def test_netsim_rules_is_what_iptables_save_prints(backend: str, source: str, node: str) -> None:
    cluster = load([source])
    shown = CliRunner().invoke(cli, ["rules", "-f", source, "--node", node], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    with scratch_netns("netsim-save", "ip") as ns:
        prepare(ns, backend)
        as_kube_proxy(ns, backend, restore_text(cluster, node))
        assert_same(shown.stdout, kernel_save(ns, backend), backend)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize("dump", DUMPS, ids=[d.name for d in DUMPS])
def test_any_dump_renders_as_iptables_save(backend: str, dump: Path) -> None:
    """Every spelling the parser accepts (aliases, masks, units, defaults, option order) comes out
    as the kernel's iptables-save spells it; the trace shows rules in this same form."""
    text = dump.read_text()
    with scratch_netns("netsim-save", "ip") as ns:
        prepare(ns, backend)
        loaded = in_netns(ns, [BACKENDS[backend][1]], text)
        assert loaded.returncode == 0, loaded.stderr
        assert_same(iptables_save(text, source=str(dump)), kernel_save(ns, backend), backend)
