"""kube-proxy's per-Service lines written once per cluster (rules/iptables/proxier_sync.BlockCache):
every node's text with the cache equals the text the node writes alone (syncProxyRules is per
Service port: only locality — Local policies, the local copy of a duplicate endpoint — and the node
IP in a LoadBalancer firewall chain bring the node in; pkg/proxy/iptables/proxier.go)."""
from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

import netsim
from netsim.benchmarks.reach_synth import SynthKnobs, generate
import pytest

from netsim.rules.iptables import IptablesError, parse
from netsim.rules.iptables.proxier import render, restore_data
from netsim.rules.iptables.ruleset import LineChain
from netsim.rules.iptables.proxier_cluster import node_sensitive_services, proxier_config_for_node
from netsim.rules.iptables.proxier_sync import BlockCache, config_key


def _cache(cluster, cfg) -> BlockCache:
    firewalled = {f"{s.namespace}/{s.name}" for s in cluster.services()
                  if s.type == "LoadBalancer" and s.load_balancer_source_ranges}
    return BlockCache(config_key(cfg), node_sensitive_services(cluster)[0] | frozenset(firewalled))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), nodes=st.integers(2, 6), services=st.integers(1, 25),
       local=st.sampled_from([0.0, 0.3, 1.0]), internal_local=st.sampled_from([0.0, 0.3]),
       ranges=st.sampled_from([0.0, 1.0]), lb=st.sampled_from([0.0, 0.3]),
       order=st.randoms(use_true_random=False))
def test_every_node_writes_the_same_text_with_the_shared_blocks(seed, nodes, services, local, internal_local,
                                                                 ranges, lb, order):
    knobs = SynthKnobs(nodes=nodes, services=services, pods=2 * services, nodeport_share=0.4, lb_share=lb,
                       local_share=local, internal_local_share=internal_local, source_range_share=ranges,
                       seed=seed)
    cluster = netsim.load(generate(knobs)).cluster
    names = [n.name for n in cluster.nodes()]
    order.shuffle(names)
    caches: dict[tuple, BlockCache] = {}
    for name in names:
        cfg = proxier_config_for_node(cluster, name)
        cache = caches.setdefault(config_key(cfg), _cache(cluster, cfg))
        assert render(cluster, name, cfg, cache=cache) == render(cluster, name)
        shared = restore_data(cluster, name, cfg, cache)
        alone = restore_data(cluster, name)
        assert shared.active_nat_chains == alone.active_nat_chains
        assert shared.large_cluster_mode == alone.large_cluster_mode


def test_the_emulator_renders_each_service_once_and_traces_as_before():
    """A 12-node cluster whose nodes all differ (Local Services, source ranges): the provider keeps one
    block per Service port, every node's text equals its own render, every node but the first holds
    the first one's Service chains (an overlay) with a rule set equal chain for chain to its whole
    text parsed alone, and traces are the same as with every node rendered and parsed alone."""
    text = generate(SynthKnobs(nodes=12, services=40, pods=60, nodeport_share=0.5, lb_share=0.2,
                               local_share=0.5, internal_local_share=0.2, source_range_share=1.0, seed=4))
    em = netsim.load(text)
    w = em._walker(None)
    for n in em.cluster.nodes():
        assert w.netfilter(n.name).text.startswith("*filter")
    dp = w.proxy
    assert len(dp._blocks) == 1
    (cache,) = dp._blocks.values()
    sensitive = cache.node_specific
    assert sensitive and cache.blocks
    assert all(f"{p.namespace}/{p.name}" not in sensitive for p in cache.ports
               if (p.name_string, p.protocol) in cache.blocks)
    overlays = 0
    for n in em.cluster.nodes():
        nf = w.netfilter(n.name)
        whole = render(em.cluster, n.name)
        assert nf.text.split("\n") == whole.split("\n")
        overlays += nf._text is None
        # the overlay's rule set, every chain parsed, is the whole text's
        alone = parse(whole, source="x")
        assert set(nf.ruleset.tables) == set(alone.tables)
        for t, table in alone.tables.items():
            mine = nf.ruleset.tables[t].chains
            assert set(mine) == set(table.chains), t
            for name, chain in table.chains.items():
                assert [r.text for r in mine[name].rules] == [r.text for r in chain.rules], (t, name)
                assert mine[name].policy == chain.policy
        assert nf.ruleset.render() == alone.render()
    assert overlays == len(em.cluster.nodes()) - 1          # all but the first node share its chains
    # a node's own KUBE-SERVICES (internalTrafficPolicy Local lines of its own) is made from the
    # sync's lines (ruleset.LineChain), not from its text: equal chain for chain all the same (above)
    own_tops = [nf for nf in map(w.netfilter, (n.name for n in em.cluster.nodes()))
                if isinstance(nf.ruleset.tables["nat"].chains["KUBE-SERVICES"], LineChain)]
    assert own_tops
    for nf in own_tops:
        parsed_nat = nf.ruleset.tables["nat"].chains["KUBE-SERVICES"]._loader.func.__self__.text.split("*nat")[1]
        assert "-A KUBE-SERVICES " not in parsed_nat and "-A PREROUTING " in parsed_nat
    # ... and, of their node-sensitive Services, the chains whose lines equal the first node's (the
    # cluster chain, the endpoints' chains): held once too
    (base,) = dp._bases.values()
    cached_blocks = set(cache.shared_chains())
    base_nat = base.ruleset.tables["nat"].chains
    also = {name for n in em.cluster.nodes() if w.netfilter(n.name) is not base
            for name, c in w.netfilter(n.name).ruleset.tables["nat"].chains.items()
            if name not in cached_blocks and base_nat.get(name) is c}
    service_chains = {n for n in also if n.startswith(("KUBE-SEP-", "KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-"))}
    assert service_chains
    # the others: long top-level chains some nodes hold line for line as the first (split_own)
    assert all(base_nat[n].n_rules >= 16 and base_nat[n].shared is not None for n in also - service_chains), also
    alone = netsim.load(text)
    dp_alone = alone._walker(None).proxy
    dp_alone._sync = lambda node: (restore_data(alone.cluster, node), None)   # every node alone, parsed whole
    cached = netsim.load(text)
    rng = random.Random(4)
    svcs = [s for s in em.cluster.services() if s.name.startswith("svc-")]
    pods = [p for p in em.cluster.pods() if p.namespace == "default" and p.ip]
    nodes = [n for n in em.cluster.nodes()]
    for _ in range(60):
        svc = rng.choice(svcs)
        src = rng.choice([f"pod/{rng.choice(pods).name}", f"node/{rng.choice(nodes).name}", "external"])
        if svc.type in ("NodePort", "LoadBalancer") and rng.random() < 0.6:
            dst = f"{rng.choice(nodes).ip}:{svc.ports[0].node_port}"          # a NodePort on any node
        elif svc.load_balancer_ips and rng.random() < 0.5:
            dst = f"{svc.load_balancer_ips[0]}:{svc.ports[0].port}"
        else:
            dst = f"{svc.cluster_ip}:{svc.ports[0].port}"
        a, b = cached.trace(src, dst), alone.trace(src, dst)
        assert a.to_dict() == b.to_dict(), (src, dst)
    assert not dp_alone._blocks and not dp_alone._bases and len(cached._walker(None).proxy._blocks) == 1


def test_a_firewall_chain_allowing_some_nodes_is_written_per_node():
    """loadBalancerSourceRanges holding node-1's IP (192.168.49.2/32) and not the others': the KUBE-FW
    chain's "allow from node" rules differ per node (proxier.go syncProxyRules: allowFromNode), so the
    cache keeps that Service's lines by whether the node is allowed, never as every node's."""
    from walker_cluster import SCENARIO_YAML
    text = SCENARIO_YAML % {"pod_network": "vxlan"} + """---
apiVersion: v1
kind: Service
metadata: {name: web-fw}
spec:
  type: LoadBalancer
  selector: {app: web}
  loadBalancerSourceRanges: [192.168.49.2/32, 203.0.113.0/24]
  ports: [{port: 80, targetPort: 8080}]
"""
    em = netsim.load(text)
    w = em._walker(None)
    fw = {}
    for n in em.cluster.nodes():
        nf = w.netfilter(n.name)
        assert nf.text == render(em.cluster, n.name)
        fw[n.name] = [line for line in nf.text.splitlines() if line.startswith("-A KUBE-FW-")]
    assert len(fw["node-1"]) == len(fw["node-2"]) + 1 == len(fw["node-3"]) + 1     # node-1 allows from itself
    (cache,) = w.proxy._blocks.values()
    assert "default/web-fw" in cache.node_specific
    # kept only in the forms that do not name the node: by whether its IP is in a source range
    assert all(len(k) == 3 and isinstance(k[2], bool) for k in cache.blocks if k[0].startswith("default/web-fw"))


def _rule_facts(rs):
    out = []
    for t, table in sorted(rs.tables.items()):
        for name, chain in sorted(table.chains.items()):
            for r in chain.rules:
                out.append((t, name, r.line, r.text, r.header, [m.text for m in r.matches],
                            r.target_spec.name if r.target_spec else None,
                            r.target_spec.goto if r.target_spec else None,
                            type(r.target_spec.action).__name__ if r.target_spec else None))
    return out


def test_a_line_cache_shared_by_two_dumps_parses_the_second_as_alone():
    """parse(lazy=True, lines=...) takes a line another dump had from the cache: each rule still has
    its own dump's line number, its target resolved against its own dump's chains; a rule with
    per-rule state (statistic) is parsed afresh."""
    a = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A - [0:0]\n"
         "-A PREROUTING -j KUBE-SERVICES\n"
         "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j KUBE-SVC-A\n"
         "-A KUBE-SVC-A -m statistic --mode nth --every 2 --packet 0 -j KUBE-SEP-A\n"
         "-A KUBE-SEP-A -p tcp -j DNAT --to-destination 10.244.1.2:53\nCOMMIT\n")
    b = a.replace(":KUBE-SEP-A - [0:0]\n", ":KUBE-SEP-A - [0:0]\n:KUBE-SEP-B - [0:0]\n").replace(
        "-A PREROUTING -j KUBE-SERVICES\n",
        "-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SEP-B -p tcp -j DNAT --to-destination 10.244.2.2:53\n")
    lines: dict = {}
    first = parse(a, source="a", lazy=True, lines=lines)
    assert _rule_facts(first) == _rule_facts(parse(a, source="a"))
    assert lines["nat"] and not any("statistic" in k for k in lines["nat"])
    second = parse(b, source="b", lazy=True, lines=lines)
    assert _rule_facts(second) == _rule_facts(parse(b, source="b"))
    assert second.tables["nat"].chains["KUBE-SERVICES"].rules[0].line != \
        first.tables["nat"].chains["KUBE-SERVICES"].rules[0].line
    # a line whose jump target is not a chain of this dump fails here as it would alone
    c = a.replace(":KUBE-SVC-A - [0:0]\n", "").replace("-A KUBE-SVC-A -m statistic --mode nth --every 2 --packet 0 "
                                                         "-j KUBE-SEP-A\n", "")
    with pytest.raises(IptablesError):
        parse(c, source="c")
    with pytest.raises(IptablesError):
        parse(c, source="c", lazy=True, lines=lines).tables["nat"].chains["KUBE-SERVICES"].rules


def test_a_node_a_copy_renders_is_rendered_once_for_the_emulator(monkeypatch):
    """A verdict walks copies of the emulator; a node none of them had is rendered by the first copy
    that meets it and taken (with its own context) by the emulator and later copies, not rendered
    again per copy; the verdict is the same as with the node prepared first."""
    text = generate(SynthKnobs(nodes=6, services=12, pods=18, local_share=0.5, seed=2))
    em = netsim.load(text)
    em.prepare(nodes=())
    svc = next(s for s in em.cluster.services() if s.name.startswith("svc-") and s.cluster_ip)
    pod = next(p for p in em.cluster.pods() if p.namespace == "default" and p.ip)
    from netsim.rules.iptables.provider import IptablesDataplane
    calls = []
    load = IptablesDataplane._load
    monkeypatch.setattr(IptablesDataplane, "_load", lambda self, node, *a: calls.append(node) or load(self, node, *a))
    dst = f"{svc.cluster_ip}:{svc.ports[0].port}"
    first = em.verdict(f"pod/{pod.name}", dst)
    met = list(calls)
    assert met and len(met) == len(set(met))
    again = em.verdict(f"pod/{pod.name}", dst)
    assert calls == met                                  # no node rendered a second time
    fresh = netsim.load(text)
    fresh.prepare()
    assert first.to_dict() == again.to_dict() == fresh.verdict(f"pod/{pod.name}", dst).to_dict()


def test_nodes_with_equal_top_chains_share_them_compiled_and_jump_to_their_own_service_chains():
    """Nodes whose KUBE-SERVICES / KUBE-NODEPORTS are line for line the same (no internalTrafficPolicy
    Local Service) hold one parsed and one compiled chain each (provider.split_own), although
    those chains jump to each node's own KUBE-EXT-* chains of its externalTrafficPolicy Local Services
    (pkg/proxy/iptables/proxier.go syncProxyRules: the external chain of a Local Service sends
    outside traffic to the node's local endpoints only). Every node's NodePort traces, taken one node
    after another (a jump remembered from the first node would take the second into the first's
    KUBE-EXT-*), equal those of every node's rules parsed alone."""
    text = generate(SynthKnobs(nodes=6, services=12, pods=14, nodeport_share=1.0, lb_share=0.0,
                               local_share=1.0, internal_local_share=0.0, seed=7))
    em = netsim.load(text)
    w = em._walker(None)
    nodes = [n for n in em.cluster.nodes()]
    nfs = [w.netfilter(n.name) for n in nodes]
    overlays = [nf for nf in nfs if nf._text is None]
    assert len(overlays) >= 2
    svcs = [s for s in em.cluster.services() if s.name.startswith("svc-") and s.type == "NodePort"]
    assert svcs and all(s.external_traffic_policy == "Local" for s in svcs)
    alone = netsim.load(text)
    alone._walker(None).proxy._sync = lambda node: (restore_data(alone.cluster, node), None)
    delivered = set()
    for svc in svcs:
        for n in nodes:
            dst = f"{n.ip}:{svc.ports[0].node_port}"
            a, b = em.trace("external", dst), alone.trace("external", dst)
            assert a.to_dict() == b.to_dict(), dst
            delivered.add((svc.name, a.outcome.disposition == "DELIVERED"))
    # some node has a local endpoint of a Service and some other node has none: both outcomes met
    assert any((s, True) in delivered and (s, False) in delivered for s, _ in delivered)
    for name in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        chains = {id(nf.ruleset.tables["nat"].chains[name]) for nf in overlays}
        compiled = {id(nf.engine.tables["nat"][name]) for nf in overlays}
        assert len(chains) == 1 and len(compiled) == 1, name
        assert nfs[0].ruleset.tables["nat"].chains[name].shared is not None
    # the Service ports' chains every node holds line for line (proxier_sync.BlockCache) are one
    # table under every overlay's own chains, not a copy per node
    layers = [nf.ruleset.tables["nat"].chains for nf in overlays]
    assert len({id(t.maps[1]) for t in layers}) == 1
    shared = layers[0].maps[1]
    assert any(n.startswith("KUBE-SEP-") for n in shared)
    for t in layers:
        assert not shared.keys() & t.own.keys()
        assert all(t[n] is shared[n] for n in shared)


def test_nodes_without_kept_texts_render_them_again_and_trace_the_same():
    """IptablesDataplane.keep_text False (a reach worker): an overlay node keeps no restore input;
    its text, rendered again when asked, is the one a node keeping it has, and traces are the same."""
    text = generate(SynthKnobs(nodes=8, services=30, pods=40, nodeport_share=0.5, lb_share=0.2,
                               local_share=0.5, internal_local_share=0.3, source_range_share=1.0, seed=9))
    kept, lean = netsim.load(text), netsim.load(text)
    wl = lean._walker(None)
    wl.proxy.keep_text = False
    wk = kept._walker(None)
    nodes = [n.name for n in kept.cluster.nodes()]
    lean_nfs = [wl.netfilter(n) for n in nodes]
    assert sum(nf._text is None for nf in lean_nfs) == len(nodes) - 1
    for n, nf in zip(nodes, lean_nfs):
        assert nf.text == wk.netfilter(n).text == render(kept.cluster, n)
        if nf._text is None:       # an overlay: its text function holds no restore input
            cells = [c.cell_contents for c in (nf._text_of.__closure__ or ())]
            assert not any(type(c).__name__ == "RestoreData" for c in cells)
    rng = random.Random(9)
    svcs = [s for s in kept.cluster.services() if s.name.startswith("svc-")]
    pods = [p for p in kept.cluster.pods() if p.namespace == "default" and p.ip]
    for _ in range(30):
        svc = rng.choice(svcs)
        src = f"pod/{rng.choice(pods).name}"
        dst = f"{svc.cluster_ip}:{svc.ports[0].port}"
        assert kept.trace(src, dst).to_dict() == lean.trace(src, dst).to_dict(), (src, dst)


def test_a_local_service_is_written_once_for_every_node_without_its_endpoints(monkeypatch):
    """An externalTrafficPolicy Local Service's lines differ only between nodes with and without a
    local endpoint (pkg/proxy/iptables/proxier.go syncProxyRules: its KUBE-EXT-* chain jumps to
    KUBE-SVL-* or drops "has no local endpoints"): the cache writes the "no local endpoints" form
    once and each node with an endpoint its own; every node's text is its text rendered alone."""
    from netsim.rules.iptables import proxier_sync
    text = generate(SynthKnobs(nodes=9, services=8, pods=10, nodeport_share=1.0, lb_share=0.0,
                               local_share=1.0, internal_local_share=0.0, seed=3))
    cluster = netsim.load(text).cluster
    written: dict[str, int] = {}
    real = proxier_sync._write_service

    def counting(out, svc, *args, **kwargs):
        written[svc.name_string] = written.get(svc.name_string, 0) + 1
        return real(out, svc, *args, **kwargs)
    monkeypatch.setattr(proxier_sync, "_write_service", counting)
    names = [n.name for n in cluster.nodes()]
    cfg0 = proxier_config_for_node(cluster, names[0])
    cache = _cache(cluster, cfg0)
    for name in names:
        cfg = proxier_config_for_node(cluster, name)
        assert render(cluster, name, cfg, cache=cache) == (monkeypatch.undo() or render(cluster, name))
        monkeypatch.setattr(proxier_sync, "_write_service", counting)
    checked = 0
    for s in cluster.services():
        if not s.name.startswith("svc-"):
            continue
        with_eps = {e.node_name for sl in cluster.endpoint_slices(namespace=s.namespace, service=s.name)
                    for e in sl.endpoints if e.addresses}
        without = [n for n in names if n not in with_eps]
        for p in s.ports:
            spn = f"{s.namespace}/{s.name}:{p.name}" if p.name else f"{s.namespace}/{s.name}"
            # once per node with an endpoint, once for all the others (their first sync)
            assert written.get(spn, 0) == len(with_eps & set(names)) + (1 if without else 0), spn
            checked += len(without) >= 2
    assert checked
    # the endpoints read for one node serve the next with only its own made local again
    from netsim.rules.iptables.proxier_cluster import endpoints_for_node, service_port_infos
    ports = [p for p in service_port_infos(cluster) if p.name.startswith("svc-")]
    seen: dict = {}
    for name in names + names:
        assert endpoints_for_node(cluster, ports, name, seen) == endpoints_for_node(cluster, ports, name)
    assert len(seen) == len(ports)
