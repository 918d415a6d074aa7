"""Nodes share one rendered, parsed and compiled iptables rule set where kube-proxy writes them
the same text (rules/iptables/provider.py IptablesDataplane, proxier_cluster.node_rules_key), and a
node's rules are parsed lazily, chain by chain (parse(lazy=True)).

The property that makes sharing safe: every node's shared text is byte for byte what rendering
that node alone gives (render + CNI portmap's hostPort chains), on clusters whose nodes differ
(externalTrafficPolicy/internalTrafficPolicy Local, hostPorts, an IP:port two slices list,
loadBalancerSourceRanges holding a node's IP)."""
from __future__ import annotations

import os
import random

import pytest

import netsim
from netsim.rules.iptables import Engine, parse
from netsim.rules.iptables.proxier import render
from netsim.rules.iptables.ruleset import IptablesError, LazyChain
from netsim.rules.portmap import with_host_ports

EXAMPLES = os.path.join(os.path.dirname(netsim.__file__), "examples")

MIXED = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: mixed}
spec:
  nodes: [{name: node-1}, {name: node-2}, {name: node-3}, {name: node-4}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: web, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web-cluster}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-internal-local}
spec:
  internalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 82, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: hp, labels: {app: hp}}
spec:
  nodeName: node-2
  containers: [{name: c, image: hp, ports: [{containerPort: 9090, hostPort: 30999}]}]
"""


def _check_every_node(em, mode: str = "iptables") -> dict[str, object]:
    w = em._walker(mode)
    w.sync()                                   # as a trace does first: a changed cluster re-renders
    cluster = em.cluster
    nfs = {}
    for node in cluster.nodes():
        nf = w.netfilter(node.name)
        assert nf.text == with_host_ports(render(cluster, node.name), cluster, node.name), node.name
        nfs[node.name] = nf
    return nfs


@pytest.mark.parametrize("example", ["shop.yaml", "httpd-app.yaml", "kubectl-httpd.yaml"])
def test_every_nodes_shared_text_is_its_own_rendering(example):
    em = netsim.load(os.path.join(EXAMPLES, example), mode="iptables")
    _check_every_node(em)


def test_nodes_that_differ_get_their_own_rules_and_the_rest_share(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    em = netsim.load(str(path), mode="iptables")
    nfs = _check_every_node(em)
    texts = {n: nf.text for n, nf in nfs.items()}
    # nodes with the same text share one parsed rule set; a different text, a rule set of its own
    for a in nfs:
        for b in nfs:
            assert (nfs[a].ruleset is nfs[b].ruleset) == (texts[a] == texts[b]), (a, b)
            if a != b:
                assert nfs[a].ctx is not nfs[b].ctx               # each node evaluates with its own state
    assert len({id(nf.ruleset) for nf in nfs.values()}) == len(set(texts.values()))
    # the hostPort node differs from every other (its CNI-DN chain)
    assert sum(1 for n in texts if texts[n] == texts["node-2"]) == 1


def test_a_node_without_local_endpoints_shares_with_another_such_node(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED.split("---\napiVersion: v1\nkind: Pod")[0])    # no hostPort pod
    em = netsim.load(str(path), mode="iptables")
    nfs = _check_every_node(em)
    cluster = em.cluster
    with_web = {p.node_name for p in cluster.pods() if p.labels.get("app") == "web"}
    empty = [n.name for n in cluster.nodes() if n.name not in with_web]
    if len(empty) >= 2:
        assert nfs[empty[0]].ruleset is nfs[empty[1]].ruleset
        assert nfs[empty[0]].text == nfs[empty[1]].text


def test_traces_after_a_change_still_match_each_nodes_rendering(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    em = netsim.load(str(path), mode="iptables")
    _check_every_node(em)
    em.scale("web", 1)
    _check_every_node(em)


def _dump(n: int) -> str:
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]"]
    lines += [f":KUBE-SEP-{i:04d} - [0:0]" for i in range(n)]
    lines.append('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES')
    for i in range(n):
        lines.append(f'-A KUBE-SERVICES -m comment --comment "ns/s{i} cluster IP" -m tcp -p tcp '
                     f"-d 10.96.0.{i + 1}/32 --dport 80 -j KUBE-SEP-{i:04d}")
        lines.append(f"-A KUBE-SEP-{i:04d} -m tcp -p tcp -j DNAT --to-destination 10.244.0.{i + 1}:8080")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def test_lazy_parse_reads_the_same_rules_as_the_eager_one():
    text = _dump(40)
    eager, lazy = parse(text), parse(text, lazy=True)
    chain = lazy.tables["nat"].chains["KUBE-SEP-0007"]
    assert isinstance(chain, LazyChain) and chain.raw and chain.n_rules == 1
    assert lazy.render() == eager.render()                      # reading every chain parses it
    assert not chain.raw
    for t in eager.tables:
        for name, c in eager.tables[t].chains.items():
            assert [r.render() for r in c.rules] == [r.render() for r in lazy.tables[t].chains[name].rules]


def test_lazy_parse_finds_undeclared_chains_at_once_and_loops_and_bad_options_when_read():
    from netsim.rules.iptables import EvalContext
    from netsim.skb.packet import Packet
    loop = _dump(3).replace("-j DNAT --to-destination 10.244.0.2:8080", "-j KUBE-SERVICES")
    with pytest.raises(IptablesError, match="makes a loop"):
        Engine(parse(loop))                                     # eager: refused as iptables-restore does
    lazy = Engine(parse(loop, lazy=True))                       # lazy (text we rendered): when a packet enters it
    with pytest.raises(IptablesError, match="nest deeper"):
        lazy.run("nat", "PREROUTING", Packet.tcp("10.0.0.9", "10.96.0.2", 1234, 80, "S"), EvalContext())
    undeclared = _dump(3).replace("-A KUBE-SEP-0001 ", "-A KUBE-SEP-9999 ")
    with pytest.raises(IptablesError, match="not declared"):
        parse(undeclared, lazy=True)
    bad = _dump(3).replace("--to-destination 10.244.0.2:8080", "--to-nowhere x")
    rs = parse(bad, lazy=True)                                  # not read yet
    with pytest.raises(IptablesError, match=r":\d+: "):
        rs.tables["nat"].chains["KUBE-SEP-0001"].rules


def test_random_traces_agree_with_and_without_sharing(tmp_path):
    """The same seeded traces through shared rule sets and through per-node rule sets (each node
    parsed from its own rendering, eagerly) print the same."""
    from netsim.rules.iptables.provider import IptablesNetfilter
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    outs = []
    for shared in (True, False):
        em = netsim.load(str(path), mode="iptables", seed=7)
        w = em._walker("iptables")
        if not shared:
            for node in em.cluster.nodes():
                text = with_host_ports(render(em.cluster, node.name), em.cluster, node.name)
                w.proxy._nf[node.name] = IptablesNetfilter(text, w.topology.hosts[node.name].routes.local, w.rng)
        rng = random.Random(3)
        pods = sorted(p.name for p in em.cluster.pods() if p.ip and not p.host_network and p.namespace == "default")
        out = []
        for _ in range(30):
            client = rng.choice(pods)
            target = rng.choice(["web-cluster:80", "web-local:81", "web-internal-local:82"])
            out.append(em.traces(f"pod/{client}", target, 2)[0].render(verbose=True))
        outs.append(out)
    assert outs[0] == outs[1]
