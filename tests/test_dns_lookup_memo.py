"""A by-name trace gives the same trace whether the DNS memos on its path are warm or cold.

The pure parts of a pod's lookup are kept between traces (netsim.dns.wire: a query's bytes after
its ID, a reply's parts and answers as text; netsim.dns.stub: a query's record; netsim.dns.resolvconf:
a pod's resolv.conf; netsim.dataplane.target: a parsed --to). Here the same random sequence of
by-name traces (random names, search lists, ndots, sources) and random cluster changes (Services
added, pods deleted or not ready, the clock moved past CoreDNS's `cache 30` TTLs, a node stopped)
runs twice: once with the memos kept, once with every memo emptied before each trace. Every trace
(verbose text and JSON, DNS notes included), the conntrack tables and the final state of both RNGs
(the cluster's — ports, kube-dns's statistic DNAT, IP IDs — and the `random` module's, which draws
the query IDs as dnslib does) must be equal: the memos change no draw and no byte.
"""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import netsim
from netsim.benchmarks.bench_api import cluster_yaml
from netsim.control.model import Service, ServicePort
from netsim.dataplane import target as target_mod
from netsim.dataplane.hopmemo import BRIDGED
from netsim.dataplane.walker import Walker
from netsim.dns import resolvconf, stub, wire

# bench_api's cluster (web-1, web-2, client on three nodes) with a second namespace, two more clients
# (their own search list and ndots) and three Services
CLUSTER = cluster_yaml(0) + """---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: client-2, namespace: other, labels: {app: client}}
spec:
  nodeName: node-1
  dnsConfig:
    searches: [corp.example]
    options: [{name: ndots, value: "2"}]
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-3, labels: {app: client}}
spec:
  nodeName: node-2
  dnsConfig:
    options: [{name: ndots, value: "1"}, {name: edns0}]
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""

SOURCES = [("pod/client", "default"), ("pod/client-2", "other"), ("pod/client-3", "default")]
# few names, so that one is often asked again after the cluster changed under it (extra-1 added,
# headless's endpoints gone, TTLs run down): what a stale memo would get wrong
NAMES = ["web", "web.other", "headless", "extra-1", "extra-2.default", "nosuch",
         "web.default.svc.cluster.local.", "kube-dns.kube-system"]
FORMS = ["http://{}", "{}:8080", "{}:http"]

_TRACE = st.tuples(st.just("trace"), st.integers(0, len(SOURCES) - 1), st.integers(0, len(NAMES) * len(FORMS) - 1))
OPS = st.lists(st.one_of(
    _TRACE, _TRACE,
    st.tuples(st.just("again"), st.just(0), st.just(0)),           # the last trace once more
    st.tuples(st.just("advance"), st.sampled_from([1, 4, 29, 31, 200]), st.just(0)),
    st.tuples(st.just("service"), st.integers(0, 1), st.integers(0, 50)),
    st.tuples(st.just("delete_pod"), st.sampled_from(["web-1", "web-2"]), st.just(0)),
    st.tuples(st.just("not_ready"), st.sampled_from(["web-1", "web-2"]), st.just(0)),
    st.tuples(st.just("stop_node"), st.sampled_from(["node-1", "node-2"]), st.just(0)),
), min_size=3, max_size=18)

MEMOS = (wire._question_tail, wire._reply_parts, stub._stub_query, resolvconf._plain_pod_resolv_conf,
         target_mod._parsed_target)


def _run(ops: list, cold: bool, mode: str = "iptables") -> list[str]:
    random.seed(1234)                       # the query IDs (dnslib's draw) come from the random module
    emu = netsim.load(CLUSTER, mode=mode, seed=7)
    out: list[str] = []
    added = 0
    last = (0, 0)
    for op, a, b in ops:
        if op == "again":
            op, (a, b) = "trace", last
        if op == "trace":
            last = (a, b)
            src, ns = SOURCES[a]
            dst = FORMS[b % len(FORMS)].format(NAMES[b // len(FORMS)])
            if cold:
                for memo in MEMOS:
                    memo.cache_clear()
            try:
                t = emu.trace(src, dst, namespace=ns)
            except ValueError as e:          # a source gone with its node, a name with no such port
                out.append(f"error: {e}")
                continue
            out += [t.render(verbose=True), t.to_json(), "\n".join(t.notes)]
        elif op == "advance":
            emu.advance(a)
        elif op == "service":
            added += 1
            emu.cluster.add(Service(f"extra-{added}", selector={"app": "web"},
                                    ports=[ServicePort(80 + b % 2, "TCP", "http", "http")]))
        elif op == "delete_pod":
            if emu.cluster.pod("default", a) is not None:
                emu.delete_pod(a, grace_period=0)
        elif op == "not_ready":
            if emu.cluster.pod("default", a) is not None:
                emu.set_pod_ready(a, False)
        elif op == "stop_node":
            emu.stop_node(a)
    out.append(emu.conntrack())
    out.append(repr(emu.cluster.rng.getstate()))
    out.append(repr(random.getstate()))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
@example(ops=[("trace", 0, 9), ("service", 0, 0), ("again", 0, 0), ("trace", 2, 6), ("delete_pod", "web-1", 0),
              ("again", 0, 0), ("advance", 31, 0), ("again", 0, 0), ("stop_node", "node-2", 0), ("trace", 1, 3)])
def test_by_name_traces_with_warm_memos_equal_traces_with_cold_ones(ops):
    state = random.getstate()
    try:
        cold = _run(ops, True)
        warm = _run(ops, False)
    finally:
        random.setstate(state)
    assert len(warm) == len(cold)
    for a, b in zip(cold, warm):
        assert b == a


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_by_name_traces_with_the_hop_memo_equal_traces_without(mode, ops, monkeypatch):
    """The walker's whole-hop memo (netsim.dataplane.hopmemo) on a pod's lookups: its queries and
    replies through kube-dns's DNAT, and — for a client on a CoreDNS pod's node — the replies
    bridged pod to pod on cni0 (br_netfilter), then the connection; equal with the memo and
    without."""
    state = random.getstate()
    try:
        monkeypatch.setattr(Walker, "hop_memo", False)
        without = _run(ops, False, mode)
        monkeypatch.setattr(Walker, "hop_memo", True)
        with_memo = _run(ops, False, mode)
    finally:
        random.setstate(state)
    assert with_memo == without


def test_bridged_dns_replies_are_replayed():
    """Not vacuous: a client on a CoreDNS pod's node gets that pod's replies bridged on cni0, and
    once seen such a hop is replayed from the memo, with the BRIDGED step as the live walk has it."""
    emu = netsim.load(CLUSTER, mode="iptables", seed=7)
    w = emu._walker(None)
    replays: list[tuple] = []
    orig = Walker._node_replay

    def counting(self, plan, host, *args):
        replays.append((host.name, plan[0]))
        return orig(self, plan, host, *args)
    traces = [emu.trace("pod/client", "http://web") for _ in range(12)]
    Walker._node_replay = counting
    try:
        for _ in range(12):
            t = emu.trace("pod/client", "http://web", capture=False)
            traces.append(t)
    finally:
        Walker._node_replay = orig
    assert all(t.outcome.ok for t in traces)
    assert ("node-3", BRIDGED) in replays, replays
    local = [n for t in traces for n in t.notes if "DNAT to kube-system/" in n and
             emu.cluster.pod("kube-system", n.split("DNAT to kube-system/")[1].split(")")[0]).node_name == "node-3"]
    assert local                              # some lookups were served by the CoreDNS pod on node-3
    assert w._hop_memo.size > 0


def test_the_sequence_resolves_names_for_real():
    """The cluster above answers by name from every source kind (so the comparison is not of errors)."""
    emu = netsim.load(CLUSTER, mode="iptables", seed=7)
    t = emu.trace("pod/client", "http://web")
    assert t.outcome.ok and any(n.startswith("DNS web.default.svc.cluster.local. A") for n in t.notes)
    t2 = emu.trace("pod/client-2", "http://web.other:8080/x", namespace="other")      # ndots:2, search list
    assert t2.flow.dst == emu.cluster.service("other", "web").cluster_ip      # (no endpoints there: REJECTED)
    assert [n.split()[1] for n in t2.notes] == ["web.other.other.svc.cluster.local."] * 2 + [
        "web.other.svc.cluster.local."] * 2
    u = emu.trace("pod/client", "http://nosuch")
    assert u.outcome.disposition == "UNRESOLVED"
    with pytest.raises(ValueError):
        emu.trace("pod/client", "web:nosuchport")
