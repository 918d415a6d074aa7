"""A rule's iptables-save text in a trace is rendered when the trace is read (netsim.skb.hook_result
DeferredRuleHit), not when a packet first hits the rule: what is read is what the eager rendering
gave — for every rule hit on a node, before and after the cluster changes under a kept trace."""
from __future__ import annotations

import pickle

from netsim.benchmarks.bench_dataplane import build_cluster
from netsim.control.model import Service, ServicePort
from netsim.dataplane.walker import Walker
from netsim.skb.hook_result import DeferredRuleHit, RuleHit


def test_every_deferred_hit_reads_as_its_rule_rendered():
    c = build_cluster(40)
    w = Walker(c, "iptables")
    client = w.host_for("pod/client")
    sport = 40000
    for s in c.services():
        if s.name.startswith("svc-"):
            for _ in range(3):            # (a rule's hit is kept from its second hit on)
                sport += 1
                assert w.connect(client, s.cluster_ip, 80, sport=sport).outcome.ok
    seen = 0
    for node in ("node-1", "node-2", "node-3"):
        nf = w.netfilter(node)
        for hit in nf._saved.values():
            if not isinstance(hit, DeferredRuleHit):
                continue
            seen += 1
            text = nf.ruleset.tables[hit.table].chains[hit.chain].rules[hit.number - 1].render()
            eager = RuleHit(hit.table, hit.chain, hit.number, text, hit.target)
            assert hit.text == text and hit == eager and eager == hit
            assert (hit.step.action, hit.step.detail, hit.step.extra) == ("RULE", eager.step.detail, eager.step.extra)
            assert hit.step.to_dict() == eager.step.to_dict()
            assert hit.step is hit                      # (one object: the hit is its own RULE step)
            back = pickle.loads(pickle.dumps(hit))
            assert type(back) is DeferredRuleHit and back == eager and back._text == text
            assert (back.step.action, back.step.detail, back.step.extra) == ("RULE", eager.step.detail,
                                                                           eager.step.extra)
    assert seen > 40


def test_a_trace_kept_across_a_resync_reads_as_it_would_have_then():
    """Two walkers in the same state: one trace read at once, the other read after its cluster got a
    new Service (every node's rules rendered, parsed and compiled again)."""
    texts = []
    for read_later in (False, True):
        c = build_cluster(20)
        w = Walker(c, "iptables")
        client = w.host_for("pod/client")
        ip = next(s.cluster_ip for s in c.services() if s.name == "svc-3")
        t = w.connect(client, ip, 80)
        unread = [s for s in t.steps("RULE") if isinstance(s, DeferredRuleHit) and s._text is None]
        assert unread                                   # (not rendered yet: the test is not vacuous)
        if read_later:
            c.add(Service("svc-new", selector={"app": "web"}, ports=[ServicePort(80, "TCP", "http", "http")]))
            assert w.connect(w.host_for("pod/client"), ip, 80).outcome.ok      # the walker resynced
        texts.append((t.render(verbose=True), t.to_json()))
    assert texts[1] == texts[0]
    assert "KUBE-SVC-" in texts[0][0]


def test_a_trace_not_read_yet_pickles_as_it_reads():
    """Texts made when read (rule texts, a TCP delivery's detail) pickle as the text they make."""
    c = build_cluster(5)
    w = Walker(c, "iptables")
    t = w.connect(w.host_for("pod/client"), next(s.cluster_ip for s in c.services() if s.name == "svc-1"), 80,
                  full=True)
    back = pickle.loads(pickle.dumps(t))
    assert back.render(verbose=True) == t.render(verbose=True) and back.to_json() == t.to_json()
    assert "accepted from" in t.render(verbose=True)
