"""The iptables engine's VerdictMemo (rules/iptables/engine.py) changes nothing: with it, every walk
is step for step the walk without it — the same hits in the same order, rules counted, verdict, NAT
request, packet mark — and every `-m statistic` draw and `-m recent` update happens exactly as
without it (the RNG ends in the same state), on random flows and random cluster changes (issue 16:
a cache of verdicts only where a hypothesis test proves it equal to the uncached walk)."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memo_ops import CHANGES, SOURCES, apply_change
from memo_ops import scenario as _scenario
from memo_ops import targets as _targets
from netsim.dataplane.routing import LocalAddresses
from netsim.rules.iptables import Engine, EvalContext, parse
from netsim.rules.iptables.engine import _SEEN, VerdictMemo
from netsim.skb.packet import Packet

OPS = st.lists(st.one_of(
    st.tuples(st.just("trace"), st.integers(0, len(SOURCES) - 1), st.integers(0, 10_000)),
    st.tuples(st.just("again"), st.integers(0, len(SOURCES) - 1), st.integers(0, 10_000)),
    *CHANGES,
), min_size=4, max_size=24)


def _run(mode: str, ops: list, memo: bool, monkeypatch, second_hit: bool = True) -> list[str]:
    """Apply ``ops`` to a fresh scenario cluster; what every trace printed, the conntrack tables and
    the cluster RNG's state at the end. ``second_hit``: the memo records a walk at its key's second
    hit (the default) or at its first."""
    monkeypatch.setattr(Engine, "verdict_cache", memo)
    monkeypatch.setattr(VerdictMemo, "second_hit", second_hit)
    emu = _scenario(mode)
    out: list[str] = []
    last: dict[int, tuple[str, str]] = {}
    added = [0]
    for op, a, b in ops:
        if op in ("trace", "again"):
            targets = _targets(emu)
            dst, proto = last.get(a) if op == "again" and a in last else targets[b % len(targets)]
            last[a] = (dst, proto)
            try:
                t = emu.trace(SOURCES[a], dst, proto=proto)
            except ValueError as e:             # a source gone with its node or pod
                out.append(f"error: {e}")
                continue
            out += [t.render(verbose=True), t.to_json()]
        else:
            apply_change(emu, op, a, b, added)
    out.append(emu.conntrack())
    out.append(repr(emu.cluster.rng.getstate()))
    return out


@pytest.mark.parametrize("mode,second_hit", [("iptables", True), ("ipvs", True), ("iptables", False)])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_traces_with_the_memo_equal_traces_without(mode, second_hit, ops, monkeypatch):
    without = _run(mode, ops, False, monkeypatch)
    with_memo = _run(mode, ops, True, monkeypatch, second_hit)
    assert len(with_memo) == len(without)
    for a, b in zip(without, with_memo):
        assert b == a


# --- engine level: random packets through one node's kube-proxy rules -------------------------------
_RULES: dict[str, str] = {}


def _node_rules() -> str:
    if "text" not in _RULES:
        emu = _scenario("iptables")
        _RULES["text"] = emu.rules("node-1")
    return _RULES["text"]


ADDRS = st.sampled_from([0x0A600001, 0x0A600002, 0x0AF40002, 0x0AF40102, 0xC0A83102, 0xC0A83103, 0xCB007132,
                         0x7F000001, 0x08080808]) | st.integers(0, 0xFFFFFFFF)
PACKETS = st.lists(st.tuples(
    ADDRS, ADDRS, st.sampled_from([6, 17]), st.integers(1024, 65535), st.sampled_from([80, 53, 30080, 30081, 8080, 9]),
    st.sampled_from([0, 0x4000, 0x8000, 0x4001]), st.sampled_from([None, "NEW", "ESTABLISHED", "RELATED", "INVALID"]),
    st.sampled_from([("PREROUTING", "nat"), ("OUTPUT", "nat"), ("POSTROUTING", "nat"), ("FORWARD", "filter"),
                     ("INPUT", "filter"), ("OUTPUT", "filter")]),
    st.sampled_from([None, "eth0", "cni0", "flannel.1"]), st.booleans()), min_size=1, max_size=60)


def _hit_key(h) -> tuple:
    return (h.table, h.chain, h.number, h.line, h.text, h.rules_evaluated, h.policy, h.note)


@settings(max_examples=40, deadline=None)
@given(pkts=PACKETS, seed=st.integers(0, 2**32 - 1), second_hit=st.booleans())
def test_engine_walks_with_the_memo_equal_walks_without(pkts, seed, second_hit):
    saved = VerdictMemo.second_hit
    VerdictMemo.second_hit = second_hit
    try:
        _engine_walks_equal(pkts, seed)
    finally:
        VerdictMemo.second_hit = saved


def _engine_walks_equal(pkts, seed):
    text = _node_rules()
    local = LocalAddresses({0xC0A83102, 0x0AF40001})
    results = []
    for memo in (False, True):
        eng = Engine(parse(text, source="node-1"))
        eng._memo = eng._memo if memo else None
        if memo:
            assert eng._memo is not None
        # two nodes sharing the engine (the same rule text), each with its own addresses and RNG
        ctxs = (EvalContext(local_addrs=local, rng=random.Random(seed)),
                EvalContext(local_addrs=LocalAddresses({0xC0A83103, 0x0AF40101}), rng=random.Random(seed + 1)))
        out = []
        todo = []
        for i, item in enumerate(pkts):
            if item[-1] and i % 3 == 1:
                # an address an earlier packet went to becomes local (a VIP on kube-ipvs0, say):
                # that packet again, with the same key fields, must see it
                todo += [pkts[i - 1][1], pkts[i - 1]]
            todo.append(item)
        for n, item in enumerate(todo):
            ctx = ctxs[(n // 3) % 2]
            if isinstance(item, int):
                local.add(item)
                continue
            src, dst, proto, sport, dport, mark, ctstate, (chain, table), iif, _add = item
            p = Packet.tcp(src, dst, sport, dport) if proto == 6 else Packet.udp(src, dst, sport, dport)
            p.mark, p.ctstate, p.iif = mark, ctstate, iif
            v = eng.run(table, chain, p, ctx)
            out.append((v.verdict, v.reject_with, v.nat, v.rules_evaluated, v.chain,
                        [_hit_key(h) for h in v.steps], p.mark, p.ctstate))
        out += [c.rng.getstate() for c in ctxs]
        results.append(out)
        local.clear()
        local.update({0xC0A83102, 0x0AF40001})
    assert results[1] == results[0]


def test_the_memo_remembers_pure_walks_and_replays_them():
    """Not vacuous: the memo is used — a new connection's nat PREROUTING walk is replayed up to the
    KUBE-SVC chain's statistic rule, draws there as the live walk does, and is replayed on from the
    rule the draw led to (one remembered walk per endpoint drawn, not marked pure: the hop memo
    does not keep it), an established packet's FORWARD walk is replayed whole (the same Verdict
    object, whatever its source port), and a new local address empties the memo."""
    eng = Engine(parse(_node_rules(), source="node-1"))
    local = LocalAddresses({0xC0A83102})
    ctx = EvalContext(local_addrs=local, rng=random.Random(1))
    emu = _scenario("iptables")
    web = emu.cluster.service("default", "web").cluster_ip
    new = Packet.tcp("10.244.2.2", web, 40000, 80)
    new.ctstate = "NEW"
    for _ in range(30):        # the first walks learn which fields the rules read (a chain at a time)
        eng.run("nat", "PREROUTING", new, ctx)     # and are recorded at their second hit
    by_endpoint: dict[int, set[int]] = {}
    for _ in range(30):
        state = ctx.rng.getstate()
        v = eng.run("nat", "PREROUTING", new, ctx)
        assert ctx.rng.getstate() != state                     # drew, as the live walk draws
        assert v.remembered and v.fields is None               # replayed through its draw; not pure
        assert any(h.chain.startswith("KUBE-SVC-") for h in v.steps) and v.nat.kind == "DNAT"
        by_endpoint.setdefault(v.nat.ip, set()).add(id(v))
    assert len(by_endpoint) >= 2 and all(len(ids) == 1 for ids in by_endpoint.values())
    fields = {f for env in eng._memo.envs.values() for buckets in env[2].values() for b in buckets.values()
              for f in b.fields}
    assert "local" in fields and "sport" not in fields          # -m addrtype LOCAL; no rule reads --sport
    est = Packet.tcp("10.244.2.2", "10.244.0.2", 40000, 8080, flags="A")
    est.ctstate, est.iif = "ESTABLISHED", "flannel.1"
    for _ in range(6):
        eng.run("filter", "FORWARD", est, ctx)
    v1 = eng.run("filter", "FORWARD", est, ctx)
    est.sport = 40001                              # no rule of these chains reads the source port
    v2 = eng.run("filter", "FORWARD", est, ctx)
    assert v2 is v1 and v1.remembered and v1.verdict == "ACCEPT"
    local.add(0x0A000001)
    assert eng.run("filter", "FORWARD", est, ctx) is not v1


def test_walks_are_recorded_at_their_second_hit():
    """A key's first walk is walked plainly and leaves only a mark; its second is recorded up to
    the KUBE-SVC chain's statistic draw; past the draw, the walk on to the rule drawn is recorded
    the second time the draws lead there and replayed from then on (the same Verdict object). Every
    walk equals the walk without the memo: hits, rules counted, NAT, mark and the RNG's state."""
    text = _node_rules()
    emu = _scenario("iptables")
    web = emu.cluster.service("default", "web").cluster_ip
    eng, ref = Engine(parse(text, source="node-1")), Engine(parse(text, source="node-1"))
    ref._memo = None
    ctx = EvalContext(local_addrs=LocalAddresses({0xC0A83102}), rng=random.Random(7))
    rctx = EvalContext(local_addrs=LocalAddresses({0xC0A83102}), rng=random.Random(7))

    def walk(src: str):
        out = []
        for e, c in ((eng, ctx), (ref, rctx)):
            p = Packet.tcp(src, web, 40000, 80)
            p.ctstate, p.iif = "NEW", "cni0"
            v = e.run("nat", "PREROUTING", p, c)
            out.append((v, (v.verdict, v.nat, v.rules_evaluated, [_hit_key(h) for h in v.steps], p.mark)))
        assert out[0][1] == out[1][1] and ctx.rng.getstate() == rctx.rng.getstate()
        assert any(h.chain.startswith("KUBE-SVC-") for h in out[0][0].steps)
        return out[0][0]

    for _ in range(40):                  # another source learns what the chains read and records it
        walk("10.244.2.2")
    start = eng.tables["nat"]["PREROUTING"]
    bucket = next(env[2][start]["NEW"] for env in eng._memo.envs.values())
    fields = bucket.fields
    probe = Packet.tcp("10.244.2.3", web, 40000, 80)
    probe.ctstate, probe.iif = "NEW", "cni0"
    key = bucket.key(probe)
    assert key not in bucket.walks

    v = walk("10.244.2.3")               # first hit: walked plainly, a mark and nothing else
    assert bucket.walks[key] is _SEEN and not v.remembered
    v = walk("10.244.2.3")               # second hit: recorded up to the draw; past it walked plainly
    assert not v.remembered
    _steps, _total, _stack, cur, _pos, _lists, node = bucket.walks[key][0]
    assert cur.name.startswith("KUBE-SVC-") and node is not None
    branches = node[2]
    assert list(branches.values()) == [_SEEN]
    seen: dict = {}
    for _ in range(40):
        before = dict(branches)
        v = walk("10.244.2.3")
        (i, now), = [(i, got) for i, got in branches.items() if before.get(i) is not got] or [(None, None)]
        if i is not None and before.get(i) is None:
            assert now is _SEEN and not v.remembered          # the first draw of rule i: a mark only
        elif i is not None:
            assert before[i] is _SEEN and now[0] is v          # the second: recorded
            assert v.remembered and v.fields is None           # (drew: not pure)
            seen[v.nat.ip] = v
        else:
            assert v.remembered and seen[v.nat.ip] is v        # then replayed: the same Verdict
    assert len(seen) >= 2 and bucket.fields is fields
