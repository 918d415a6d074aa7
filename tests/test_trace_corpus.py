"""`netsim trace` prints byte for byte what it printed when the corpus was recorded (issue 16: "the
output is byte-identical before and after on a corpus of traces — all modes, both examples, the
scenario list"), so that a speed-up of the data plane provably changes nothing a user sees.

The corpus (tests/data/trace_corpus/MODE/CLUSTER/TARGET.txt.gz, written by scripts/trace_corpus.py)
holds, for iptables, IPVS and nftables on the built-in examples and the scenario cluster (VXLAN and
host-gw), the `netsim trace -v` text, the JSON's CRC-32 and every captured packet's CRC-32 of
connections from a pod on each node, a node and the external host to every Service address, pod IP
and Service name — fresh, again with conntrack/IPVS/affinity state in place, and after a pod is
deleted and a node stopped — plus each node's conntrack table at the end. It is a regression
record of our own output, not a fidelity golden.
"""
from __future__ import annotations

import difflib
import gzip
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("trace_corpus", ROOT / "scripts" / "trace_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)


def _first_difference(name: str, want: str, got: str) -> str:
    diff = difflib.unified_diff(want.splitlines(), got.splitlines(), f"corpus/{name}", f"now/{name}",
                                lineterm="", n=2)
    return "\n".join(list(diff)[:80])


@pytest.mark.parametrize("cluster", corpus.CLUSTERS)
@pytest.mark.parametrize("mode", corpus.MODES)
def test_trace_output_is_byte_identical_to_the_corpus(mode, cluster):
    d = corpus.case_dir(corpus.CORPUS, mode, cluster)
    recorded = {p.name: p for p in sorted(d.glob("*.txt.gz"))}
    assert recorded, f"{d}: no corpus files (run python scripts/trace_corpus.py)"
    now = {corpus.file_name(target): text for target, text in corpus.record(mode, cluster).items()}
    assert sorted(now) == sorted(recorded), (
        f"{mode}/{cluster}: targets differ: new {sorted(set(now) - set(recorded))}, "
        f"gone {sorted(set(recorded) - set(now))}")
    assert corpus.file_name(corpus.CONNTRACK) in now
    for name, path in recorded.items():
        want = gzip.decompress(path.read_bytes()).decode()
        assert want.count("### ") >= 1 or name == corpus.file_name(corpus.CONNTRACK)
        if now[name] != want:
            pytest.fail(f"{mode}/{cluster}/{name}: trace output changed\n{_first_difference(name, want, now[name])}")


def test_the_corpus_covers_every_mode_cluster_and_kind_of_target():
    """All three modes on every cluster, each with ClusterIP, NodePort, pod-IP and by-name targets and
    the three phases (fresh, with state, after faults); every record is a trace or a stated error."""
    for mode in corpus.MODES:
        for cluster in corpus.CLUSTERS:
            names = [p.name for p in corpus.case_dir(corpus.CORPUS, mode, cluster).glob("*.txt.gz")]
            assert any(n.startswith("http_") for n in names), (mode, cluster)
            assert any(n.startswith("10.96.") for n in names), (mode, cluster)        # ClusterIPs
            assert any(n.startswith("10.244.") for n in names), (mode, cluster)       # pod IPs
    text = gzip.decompress((corpus.case_dir(corpus.CORPUS, "nftables", "scenario-vxlan")
                            / corpus.file_name("http://web.default tcp")).read_bytes()).decode()
    for phase in ("first", "again", "faults"):
        assert f"### {phase} external" in text
    assert "ip kube-proxy" in text and "DELIVERED" in text
