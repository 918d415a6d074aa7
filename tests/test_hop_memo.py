"""The walker's whole-hop memo (netsim/dataplane/hopmemo.py) changes nothing: with it, every trace
is step for step the trace without it — the same steps with the same text and JSON, rules counted,
outcomes, the packets' bytes —, the conntrack tables end the same and every random draw happens as
without it (the RNG ends in the same state), on random flows, established packets of the
connections made, and random cluster changes (issue 16: a cache across connections only where a
hypothesis test proves it equal to the uncached walk)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memo_ops import CHANGES, SOURCES, apply_change, scenario
from memo_ops import targets as _targets
from netsim.control.model import Service, ServicePort
from netsim.dataplane.walker import Walker
from netsim.skb.packet import Packet

OPS = st.lists(st.one_of(
    st.tuples(st.just("trace"), st.integers(0, len(SOURCES) - 1), st.integers(0, 10_000)),
    st.tuples(st.just("again"), st.integers(0, len(SOURCES) - 1), st.integers(0, 10_000)),
    st.tuples(st.just("again"), st.integers(0, len(SOURCES) - 1), st.integers(0, 10_000)),
    st.tuples(st.just("packet"), st.sampled_from(["A", "PA", "FA", "R", "A", "S"]), st.integers(0, 10_000)),
    st.tuples(st.just("packet"), st.sampled_from(["A", "A", "PA"]), st.integers(0, 10_000)),
    *CHANGES,
), min_size=4, max_size=30)


def _packet_text(end, pt) -> str:
    return repr((end.disposition, end.detail, pt.rules, pt.to_dict(),
                 bytes(end.pkt.buf) if end.pkt is not None else None))


def _run(mode: str, ops: list, memo: bool, monkeypatch, pod_network: str = "vxlan") -> list[str]:
    """Apply ``ops`` to a fresh scenario cluster; what every trace and packet walk gave, the
    conntrack tables and the cluster RNG's state at the end."""
    monkeypatch.setattr(Walker, "hop_memo", memo)
    emu = scenario(mode, pod_network)
    out: list[str] = []
    last: dict[int, tuple[str, str]] = {}
    conns: list[tuple[str, str, int, str, int, str]] = []       # (source, src ip, sport, dst ip, dport, proto)
    added = [0]
    for op, a, b in ops:
        if op in ("trace", "again"):
            targets = _targets(emu, pods=True)
            dst, proto = last.get(a) if op == "again" and a in last else targets[b % len(targets)]
            last[a] = (dst, proto)
            try:        # "again": the same flow a few times (netsim trace --count): hops get remembered
                ts = emu.traces(SOURCES[a], dst, 1 + b % 6 if op == "again" else 1, proto=proto)
            except ValueError as e:             # a source gone with its node or pod
                out.append(f"error: {e}")
                continue
            for t in ts:
                out += [t.render(verbose=True), t.to_json()]
                f = t.flow
                conns.append((SOURCES[a], f.src, f.sport, f.dst, f.dport, f.proto))
        elif op == "packet" and conns:
            # a further packet of a connection made earlier (established, closing, reset, or a SYN again)
            source, src, sport, dst, dport, proto = conns[b % len(conns)]
            w = emu._walker(None)
            try:
                host = w.host_for(source)
            except Exception as e:              # noqa: BLE001 - the source is gone: say so in both runs
                out.append(f"error: {e}")
                continue
            for i in range(1 + b % 4):
                pkt = (Packet.tcp(src, dst, sport, dport, flags=a, seq=7 + b + i, ack=11 + b, ident=(b + i) & 0xFFFF,
                                  payload=b"x" * (b % 3) if "P" in a else b"")
                       if proto == "tcp" else Packet.udp(src, dst, sport, dport, payload=b"again"))
                end, pt = w.send(host, pkt)
                out.append(_packet_text(end, pt))
        else:
            apply_change(emu, op, a, b, added)
    out.append(emu.conntrack())
    out.append(repr(emu.cluster.rng.getstate()))
    return out


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_walks_with_the_hop_memo_equal_walks_without(mode, ops, monkeypatch):
    without = _run(mode, ops, False, monkeypatch)
    with_memo = _run(mode, ops, True, monkeypatch)
    assert len(with_memo) == len(without)
    for a, b in zip(without, with_memo):
        assert b == a


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_host_gw_walks_with_the_hop_memo_equal_walks_without(ops, monkeypatch):
    """The same on host-gw routes (no VXLAN: nodes forward the pod addresses themselves)."""
    without = _run("iptables", ops, False, monkeypatch, "host-gw")
    with_memo = _run("iptables", ops, True, monkeypatch, "host-gw")
    assert with_memo == without


def _many_services(memo: bool, seed: int, n_services: int, flows: list[tuple[int, int, str]]) -> list:
    """The data-plane benchmark's cluster (benchmarks/bench_dataplane.py) at a small size: new
    connections to random ClusterIPs and further packets of them, the clock moving between."""
    from benchmarks.bench_dataplane import build_cluster
    c = build_cluster(n_services, seed=seed)
    w = Walker(c, "iptables")
    w.hop_memo = memo
    client = w.host_for("pod/client")
    ips = [s.cluster_ip for s in c.services() if s.name.startswith("svc-")]
    out: list = []
    made: list = []
    for kind, i, flags in flows:
        if kind == 0:
            t = w.connect(client, ips[i % len(ips)], 80)
            out.append(t.render(verbose=True))
            made.append((t.flow.src, t.flow.dst, t.flow.sport))
        elif kind == 1 and made:
            src, dst, sport = made[i % len(made)]
            end, pt = w.send(client, Packet.tcp(src, dst, sport, 80, flags=flags, seq=i, ack=i + 1))
            out.append(_packet_text(end, pt))
        else:
            c.advance(i % 90)
    out.append("\n".join(w.conntrack_listing(n) for n in ("node-1", "node-2", "node-3")))
    out.append(c.rng.getstate())
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), flows=st.lists(st.tuples(st.sampled_from([0, 0, 1, 1, 1, 2]), st.integers(0, 500),
                                                           st.sampled_from(["A", "A", "PA", "FA", "R"])),
                                                 min_size=5, max_size=80))
def test_benchmark_cluster_walks_with_the_hop_memo_equal_walks_without(seed, flows):
    assert _many_services(True, seed, 12, flows) == _many_services(False, seed, 12, flows)


def test_the_hop_memo_replays_hops():
    """Not vacuous: after a few connections the memo holds hops and replays them — every node hop
    of an established packet and of a new connection; the client node's first hop only after its
    PREROUTING (whose nat walk draws at the KUBE-SVC chain's statistic rule, so it is walked live)."""
    from benchmarks.bench_dataplane import build_cluster
    c = build_cluster(3, seed=2)
    w = Walker(c, "iptables")
    client = w.host_for("pod/client")
    ip = next(s.cluster_ip for s in c.services() if s.name == "svc-0")
    for _ in range(12):          # the first walks learn which fields the rules read; both endpoints get used
        w.connect(client, ip, 80)
    replays = []
    orig = Walker._node_replay

    def counting(self, plan, host, *args):
        replays.append(host.name)
        return orig(self, plan, host, *args)
    try:
        Walker._node_replay = counting
        t = w.connect(client, ip, 80)
        assert t.outcome.ok and t.outcome.reply.matches_request
        assert replays.count("node-3") == 2 and len(replays) == 4       # the client node's request hop: its tail
        for n in range(2):      # the first established packet's FORWARD walk is learnt, the second replayed
            replays.clear()
            end, pt = w.send(client, Packet.tcp(t.flow.src, ip, t.flow.sport, 80, flags="A", seq=1 + n, ack=1))
            assert end.disposition == "DELIVERED" and len(pt.hops) == 4
        assert replays == ["node-3", w.cluster.pod("default", t.outcome.pod.split("/")[1]).node_name]
    finally:
        Walker._node_replay = orig
    assert w._hop_memo.size > 0
    c.add(Service("late", selector={"app": "web"}, ports=[ServicePort(80, "TCP", "http", "http")]))
    w.sync()
    assert w._hop_memo.size == 0 and not w._hop_memo.buckets          # a cluster change empties it
