"""The session's last test (conftest moves it there): every rule set any earlier test rendered —
kube-proxy restore inputs, node iptables-save views, IPVS ipsets and iptables rules, collected by
tests/rule_collector.py and deduplicated — is loaded into the real kernel, batched in one scratch
namespace (tests/kernel_oracle.py). A rule set the kernel rejects fails here, naming the test that
first rendered it."""
from __future__ import annotations

import pytest

from kernel_helpers import scratch_netns
from kernel_oracle import load_all

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
