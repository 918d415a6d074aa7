"""The IPVS proxier's ipsets and iptables text load into a real kernel (ipset restore,
iptables-restore) and come back with the same members and the same rules per chain.

Runs as root in a scratch network namespace ``netsim-ipvs-<random>``, deleted in ``finally``.
This machine's kernel may lack ip_vs: then the ``-m ipvs`` rules of KUBE-IPVS-OUT-FILTER cannot
load (xt_ipvs needs ip_vs) and are left out, and the ipvsadm round trip is skipped with that reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from netsim.manifests import load
from netsim.rules.ipset import parse_save as parse_ipset
from netsim.rules.ipvs.proxier import build

pytestmark = pytest.mark.kernel
CLUSTER = str(Path(__file__).parent / "golden" / "ipvs" / "cluster.yaml")


def _run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    for tool in ("ip", "ipset", "iptables-restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed")
    name = f"netsim-ipvs-{uuid.uuid4().hex[:8]}"
    made = _run(["ip", "netns", "add", name])
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        yield name
    finally:
        _run(["ip", "netns", "delete", name])


def _ns(ns: str, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return _run(["ip", "netns", "exec", ns, *args], stdin)


def _targets_by_chain(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("-A "):
            out[line.split()[1]].append(line.split(" -j ", 1)[1].split()[0])
    return dict(out)


def test_ipsets_and_iptables_load_into_the_kernel(netns):
    st = build(load([CLUSTER]), "node-1")
    r = _ns(netns, ["ipset", "restore"], st.ipset_save())
    assert r.returncode == 0, r.stderr
    saved = parse_ipset(_ns(netns, ["ipset", "save"]).stdout)
    for name, s in st.ipsets.sets.items():
        assert sorted(saved.get(name).entries()) == sorted(s.entries()), name
        assert saved.get(name).type == s.type

    text = st.iptables
    r = _ns(netns, ["iptables-restore"], text)
    if r.returncode != 0 and "Extension ipvs" in r.stderr:
        # no ip_vs in this kernel: xt_ipvs is unavailable; load everything else
        text = "\n".join(l for l in text.splitlines() if " -m ipvs " not in l) + "\n"
        r = _ns(netns, ["iptables-restore"], text)
    assert r.returncode == 0, r.stderr
    back = _ns(netns, ["iptables-save"]).stdout
    assert _targets_by_chain(back) == _targets_by_chain(text)
    # the kernel's canonical spelling of kube-proxy's mark rules
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in back
    assert "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0" in back
    # kube-proxy's own restore payload (--noflush) is accepted on top, as on every sync
    payload = st.restore.text()
    if text is not st.iptables:
        payload = "\n".join(l for l in payload.splitlines() if " -m ipvs " not in l) + "\n"
    r = _ns(netns, ["iptables-restore", "--noflush"], payload)
    assert r.returncode == 0, r.stderr


def test_ipvsadm_restore_round_trip(netns):
    if shutil.which("ipvsadm") is None:
        pytest.skip("ipvsadm is not installed")
    probe = _ns(netns, ["ipvsadm", "-Ln"])
    if probe.returncode != 0:
        pytest.skip(f"this kernel has no IP Virtual Server: {probe.stderr.strip().splitlines()[0]}")
    st = build(load([CLUSTER]), "node-1")
    r = _ns(netns, ["ipvsadm", "-R"], st.ipvsadm_save())
    assert r.returncode == 0, r.stderr
    assert _ns(netns, ["ipvsadm", "-Sn"]).stdout == st.ipvsadm_save()
