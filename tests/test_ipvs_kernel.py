"""The IPVS proxier's ipsets and iptables text load into a real kernel (ipset restore,
iptables-restore) and come back with the same members and the same rules per chain.

Runs as root in a scratch network namespace ``netsim-ipvs-<random>``, deleted in ``finally``.
This machine's kernel may lack ip_vs: then the ``-m ipvs`` rules of KUBE-IPVS-OUT-FILTER cannot
load (xt_ipvs needs ip_vs) and are left out, and the ipvsadm round trip is skipped with that reason.
"""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from netsim.control.manifests import load
from netsim.rules.ipset import parse_save as parse_ipset
from netsim.rules.ipvs.proxier import build
from kernel_helpers import in_netns, scratch_netns

pytestmark = pytest.mark.kernel
CLUSTER = str(Path(__file__).parent / "golden" / "ipvs" / "cluster.yaml")


@pytest.fixture
def netns():
    with scratch_netns("netsim-ipvs", "ipset", "iptables-restore") as name:
        yield name


def _targets_by_chain(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("-A "):
            out[line.split()[1]].append(line.split(" -j ", 1)[1].split()[0])
    return dict(out)


def test_ipsets_and_iptables_load_into_the_kernel(netns):
    st = build(load([CLUSTER]), "node-1")
    r = in_netns(netns, ["ipset", "restore"], st.ipset_save())
    assert r.returncode == 0, r.stderr
    saved = parse_ipset(in_netns(netns, ["ipset", "save"]).stdout)
    for name, s in st.ipsets.sets.items():
        assert sorted(saved.get(name).entries()) == sorted(s.entries()), name
        assert saved.get(name).type == s.type

    text = st.iptables
    r = in_netns(netns, ["iptables-restore"], text)
    if r.returncode != 0 and "Extension ipvs" in r.stderr:
        # no ip_vs in this kernel: xt_ipvs is unavailable; load everything else
        text = "\n".join(l for l in text.splitlines() if " -m ipvs " not in l) + "\n"
        r = in_netns(netns, ["iptables-restore"], text)
    assert r.returncode == 0, r.stderr
    back = in_netns(netns, ["iptables-save"]).stdout
    assert _targets_by_chain(back) == _targets_by_chain(text)
    # the kernel's canonical spelling of kube-proxy's mark rules
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in back
    assert "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0" in back
    # kube-proxy's own restore payload (--noflush) is accepted on top, as on every sync
    payload = st.restore.text()
    if text is not st.iptables:
        payload = "\n".join(l for l in payload.splitlines() if " -m ipvs " not in l) + "\n"
    r = in_netns(netns, ["iptables-restore", "--noflush"], payload)
    assert r.returncode == 0, r.stderr


def test_ipvsadm_restore_round_trip(netns):
    if shutil.which("ipvsadm") is None:
        pytest.skip("ipvsadm is not installed")
    probe = in_netns(netns, ["ipvsadm", "-Ln"])
    if probe.returncode != 0:
        pytest.skip(f"this kernel has no IP Virtual Server: {probe.stderr.strip().splitlines()[0]}")
    st = build(load([CLUSTER]), "node-1")
    r = in_netns(netns, ["ipvsadm", "-R"], st.ipvsadm_save())
    assert r.returncode == 0, r.stderr
    assert in_netns(netns, ["ipvsadm", "-Sn"]).stdout == st.ipvsadm_save()
