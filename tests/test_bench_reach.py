"""The reach benchmarks' quick forms run and report sane figures (no timing is asserted)."""
from __future__ import annotations

from netsim.benchmarks import bench_reach
from netsim.benchmarks.reach_synth import SynthKnobs, generate

TINY = SynthKnobs(nodes=3, services=5, pods=6, seed=2)


def test_synthetic_generator_is_seeded_and_loads():
    import netsim
    assert generate(TINY) == generate(TINY) != generate(SynthKnobs(nodes=3, services=5, pods=6, seed=3))
    em = netsim.load(generate(TINY))
    assert len(em.cluster.nodes()) == 3 and len([s for s in em.cluster.services() if s.name.startswith("svc-")]) == 5


def test_b1_quick_sanity():
    out = bench_reach.b1(TINY, None, 1, ["serial", "local"], [1, 2], [4, 16], 40)
    f = out["figures"]
    assert 0 < f["probes_reduced"] < f["probes_naive"] and f["classes"] >= f["probes_reduced"]
    assert set(out["engines"]) == {"serial/1", "local/1", "local/2"}
    for v in out["engines"].values():
        r = v["rounds"][0]
        assert r["wall_s"] > 0 and r["workers_seen"] >= 1 and r["compute_s"] > 0 and v["speedup_vs_1"] > 0
    assert out["engines"]["local/2"]["rounds"][0]["workers_seen"] <= 2
    assert set(out["batch_size_sweep"]) == {"4", "16"}


def test_b2_quick_sanity():
    out = bench_reach.b2(TINY, None, 30, 12, 2, model_nodes=2)
    assert out["matrix"]["probes"] == 30 and out["validation"] == {**out["validation"], "sample": 12, "mismatches": 0}
    assert all(size > 0 for size in out["outputs"].values())
    assert out["stage"] == "done" and out["stages_done"][:3] == ["generate", "load", "topology + inventory"]
    assert set(out["stages_done"]) == set(out["stages"])
    for st in out["stages"].values():
        assert st["wall_s"] >= 0 and st["peak_rss_mb"] >= st["rss_mb"] * 0.9 > 0 and len(st["loadavg"]) == 3
    assert out["stages"]["topology + inventory"]["shared_pod_routes"] == 3
    nodes = out["model_per_node"]
    assert [n["node"] for n in nodes] == ["node-1", "node-2"]
    for n in nodes:          # a worker's model: each node's rules rendered and compiled, then a verdict
        assert n["rules_text_bytes"] > 0 and n["rules_lines"] > 10 and n["render_parse_s"] >= 0
        assert n["verdict"]["disposition"] == "DELIVERED" and n["verdict"]["first_s"] > 0


def test_synthetic_generator_keeps_within_the_nodeport_range():
    """The apiserver refuses a NodePort past its range ("failed to allocate a nodePort: range is full"),
    so past 2,768 ports the generator makes ClusterIP Services."""
    import re

    from netsim.benchmarks.reach_synth import NODE_PORTS
    text = generate(SynthKnobs(nodes=3, services=2500, pods=10, nodeport_share=1.0, lb_share=0.0, seed=2))
    docs = [d for d in text.split("---\n") if "kind: Service\n" in d]
    node_ports = sum(len(re.findall(r"port: \d+, targetPort", d)) for d in docs if "type: NodePort" in d)
    assert NODE_PORTS - 2 < node_ports <= NODE_PORTS == 2768
    assert any("type:" not in d for d in docs)


def test_a_stopped_benchmark_says_where(tmp_path, monkeypatch):
    """B2 at 5,000 nodes can stop (MemoryError under a ulimit): the results name the stage and the error."""
    import json

    from netsim.reach.plan import Planner

    def refuse(self):
        raise MemoryError()
    monkeypatch.setattr(Planner, "plan", refuse)
    out = tmp_path / "r.json"
    assert bench_reach.main(["--b2", "--nodes", "3", "--services", "5", "--pods", "6", "--out", str(out)]) == 1
    b2 = json.loads(out.read_text())["b2"]
    assert b2["stage"] == b2["stopped"]["stage"] == "reduce"
    assert b2["stopped"]["error"].startswith("MemoryError")
    assert b2["stages_done"] == ["generate", "load", "topology + inventory", "model: 2 nodes' rules (forked child)"]


def test_b2_model_only_measures_the_nodes_and_stops():
    out = bench_reach.b2_model(TINY, None, 2)
    assert out["stage"] == "done"
    assert out["stages_done"] == ["generate", "load", "topology + inventory", "model: 2 nodes' rules (forked child)"]
    assert [n["node"] for n in out["model_per_node"]] == ["node-1", "node-2"]
    assert all(n["rules_lines"] > 10 and n["verdict"]["disposition"] == "DELIVERED" for n in out["model_per_node"])
