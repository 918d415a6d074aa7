"""Oracle 2: `netsim verify` driven by the generator — generated clusters brought up in real namespaces,
real flows compared one by one with the emulator's traces (netsim/kernel/verify.py). Any disagreement
fails and prints the cluster as manifests with the one `netsim verify` command that reproduces it.

CI: a bounded, derandomized budget (conftest.FuzzBudget: a few clusters × tens of flows).
`--netsim-fuzz-long N` / NETSIM_FUZZ_LONG=N: N fresh random clusters. No shrinking (every step would
bring a cluster up again): the failing cluster is printed and saved as it was drawn.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from kernel_helpers import unique_name
from netsim.kernel import netns
from netsim.control.manifests import ManifestError
from strategies import GeneratedCluster, clusters, describe

pytestmark = pytest.mark.kernel


def check_verify(gc: GeneratedCluster, flows: int, seed: int = 0) -> None:
    from netsim.kernel.verify import run_verify
    try:
        cluster = gc.load()
    except ManifestError as e:
        pytest.fail(f"the loader refused a cluster the API server accepts: {e}\n{describe(gc)}")
    name = unique_name("f")
    try:
        report = run_verify(cluster, name, flows=flows, seed=seed, sources=["fuzz.yaml"])
    finally:
        assert not [n for n in netns.listnetns() if n.startswith(name + "-")], "verify left namespaces behind"
    assert report.disagreements == [], "\n".join(report.lines()[-60:]) + "\n\n" + describe(gc)


def test_generated_clusters_agree_with_the_kernel(kernel_run_dir, fuzz_budget):
    phases = [Phase.explicit, Phase.generate]      # no shrinking: each step would bring a cluster up again

    @settings(max_examples=fuzz_budget.verify_clusters, derandomize=not fuzz_budget.long, deadline=None,
              database=None, phases=phases,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(clusters(max_services=3))
    def kernel_and_emulator_agree(gc: GeneratedCluster) -> None:
        check_verify(gc, fuzz_budget.verify_flows)

    kernel_and_emulator_agree()
