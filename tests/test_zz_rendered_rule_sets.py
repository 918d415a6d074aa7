"""The session's last tests (conftest moves them there): every rule set any earlier test rendered —
kube-proxy restore inputs, node iptables-save views, IPVS ipsets and iptables rules, collected by
tests/rule_collector.py and deduplicated — is loaded into the real kernel, batched in one scratch
namespace (tests/kernel_oracle.py). A rule set the kernel rejects fails here, naming the test that
first rendered it.

Then every node view (the text `netsim rules` renders) is restored into a scratch namespace with the
real `iptables-restore` (nf_tables backend) and read back with `iptables-save`; the output must equal
netsim's `iptables_save()` of the same text byte for byte, counters and the two comment lines aside
(issue 14 §3). A difference fails naming the test that first rendered the set, with a unified diff."""
from __future__ import annotations

import time

import pytest

from kernel_helpers import scratch_netns
from kernel_oracle import RuleSet, compare_save_forms, load_all
from rule_collector import NODE_VIEW

pytestmark = pytest.mark.kernel


def test_every_rule_set_the_suite_rendered_loads_into_the_kernel(rendered_rule_sets):
    sets = list(rendered_rule_sets.sets.values())
    if not sets:
        pytest.skip("no earlier test in this session rendered a rule set")
    print(f"rule sets: {len(sets)} distinct of {rendered_rule_sets.rendered} rendered, "
          f"{rendered_rule_sets.skipped_large} too large to load, "
          f"{rendered_rule_sets.skipped_partial} partial syncs (not loadable on their own)")
    with scratch_netns("netsim-all", "iptables-restore", "ipset") as ns:
        rejected = load_all(ns, sets)
    assert not rejected, (f"{len(rejected)} of {len(sets)} distinct rule sets rejected:\n"
                          + "\n".join(str(r)[:600] for r in rejected))


def test_every_node_view_the_suite_rendered_is_what_iptables_save_prints(rendered_rule_sets):
    views = [s for s in rendered_rule_sets.sets.values() if s.label.startswith(NODE_VIEW)]
    if not views:
        pytest.skip("no earlier test in this session rendered a node's iptables-save view")
    started = time.monotonic()
    with scratch_netns("netsim-svf", "iptables-restore", "iptables-save", "nft") as ns:
        differ = compare_save_forms(ns, views)
    print(f"iptables-save parity: {len(views)} node views compared in {time.monotonic() - started:.1f}s")
    assert not differ, (f"{len(differ)} of {len(views)} node views differ from iptables-save:\n"
                        + "\n\n".join(str(d)[:3000] for d in differ[:5]))


def test_the_parity_check_reports_a_form_iptables_save_does_not_print():
    """`-s 10.0.0.1` where iptables-save prints `-s 10.0.0.1/32`: a renderer that kept the input's
    spelling is caught, and the report names the set's origin and shows the differing line."""
    text = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-X - [0:0]\n"
            "-A KUBE-X -s 10.0.0.1 -j ACCEPT\nCOMMIT\n")
    wrong = RuleSet("hand-written set first rendered by this test", "iptables", text)
    with scratch_netns("netsim-svf", "iptables-restore", "iptables-save", "nft") as ns:
        differ = compare_save_forms(ns, [wrong], render=lambda t: t)
        assert compare_save_forms(ns, [wrong]) == []      # netsim's own rendering does print /32
    assert len(differ) == 1
    report = str(differ[0])
    assert report.startswith("hand-written set first rendered by this test")
    assert "-A KUBE-X -s 10.0.0.1 -j ACCEPT" in report and "+-A KUBE-X -s 10.0.0.1/32 -j ACCEPT" in report
