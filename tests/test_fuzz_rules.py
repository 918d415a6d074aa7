"""Oracle 1: every rule set a generated cluster gets is accepted by the real kernel.

For each cluster drawn by tests/strategies.py (valid for the API server), every node's rules in every
mode this kernel can hold — iptables mode (the iptables-save view `netsim up` loads) and IPVS mode
(kube-proxy's `ipset restore` text and its iptables rules; the kernel here has no ip_vs, so the virtual
servers themselves are not loaded) — go through the real `iptables-restore` (nf_tables and legacy) and
`ipset restore` in one scratch namespace. A rejected load fails with the manifests that produce it.

The loader must accept every generated cluster: the generator only draws what the API server accepts,
so a refusal is itself a parity defect (issue 11: API-server refuse/default parity).

CI runs a bounded, derandomized budget; `--netsim-fuzz-long N` or NETSIM_FUZZ_LONG=N runs N clusters
with fresh random seeds (README: "Fuzzing against the kernel").
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from kernel_helpers import scratch_netns
from kernel_oracle import load_all, node_rule_sets
from netsim.control.manifests import ManifestError
from strategies import GeneratedCluster, clusters, describe

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def oracle_netns():
    with scratch_netns("netsim-fzr", "iptables-restore", "ipset") as ns:
        yield ns


def check_rules_load(ns: str, gc: GeneratedCluster) -> None:
    try:
        cluster = gc.load()
    except ManifestError as e:
        pytest.fail(f"the loader refused a cluster the API server accepts: {e}\n{describe(gc)}")
    rejected = load_all(ns, node_rule_sets(cluster, "fuzz.yaml", gc.node_names))
    assert not rejected, "\n".join(map(str, rejected)) + "\n" + describe(gc)


def test_generated_rule_sets_load_into_the_kernel(oracle_netns, fuzz_budget):
    @settings(max_examples=fuzz_budget.rules_examples, derandomize=not fuzz_budget.long, deadline=None,
              database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(clusters())
    def every_rule_set_loads(gc: GeneratedCluster) -> None:
        check_rules_load(oracle_netns, gc)

    every_rule_set_loads()


def test_the_oracle_rejects_a_broken_rule_set(oracle_netns):
    """An oracle that cannot fail proves nothing: a jump to an undeclared chain and an ipset entry of
    the wrong shape are both reported, each blamed on its own rule set, and the good ones still load."""
    from kernel_oracle import RuleSet
    good = RuleSet("good", "iptables", "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-A - [0:0]\n-A INPUT -j KUBE-A\nCOMMIT\n")
    bad = RuleSet("bad", "iptables", "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j KUBE-SVC-NOPE\nCOMMIT\n")
    good2 = RuleSet("good2", "iptables", "*nat\n:OUTPUT ACCEPT [0:0]\n:KUBE-B - [0:0]\n-A OUTPUT -j KUBE-B\nCOMMIT\n")
    bad_set = RuleSet("bad ipset", "ipset", "create FZ-X hash:ip,port family inet hashsize 1024 maxelem 65536\n"
                                            "add FZ-X 10.0.0.1\n")
    rejected = load_all(oracle_netns, [good, bad, good2, bad_set])
    assert sorted({r.ruleset.label for r in rejected}) == ["bad", "bad ipset"]
    # blamed on a line of the bad set itself (legacy names the rule, nf_tables its COMMIT)
    assert all("KUBE-SVC-NOPE" in r.message and r.message.split(":")[0] in ("line 3", "line 4")
               for r in rejected if r.ruleset.label == "bad")
    assert any(r.ruleset.label == "bad ipset" and r.tool == "ipset restore" for r in rejected)
