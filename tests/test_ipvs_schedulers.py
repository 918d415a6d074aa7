"""IPVS schedulers: the exact choices the kernel makes (net/netfilter/ipvs/ip_vs_*.c).

Each expected sequence is worked out by hand from the kernel source named in the test, not
produced by running our code. Destinations are added A, B, C...; the kernel inserts each new
destination at the head of svc->destinations (ip_vs_ctl.c __ip_vs_update_dest: list_add_rcu),
so the list order the schedulers walk is the reverse of the add order.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from netsim.skb.packet import ip2int
from netsim.rules.ipvs.hashing import hash_32, hsiphash_u32
from netsim.rules.ipvs.schedulers import MH_HASH1, MH_TAB_SIZE, make_scheduler
from netsim.rules.ipvs.table import (IP_VS_SVC_F_SCHED1, IP_VS_SVC_F_SCHED2, IpvsError, IpvsTable,
                                     VirtualServer)

A, B, C, D = "10.244.0.10", "10.244.0.11", "10.244.0.12", "10.244.0.13"
CLIENT = ip2int("10.244.9.9")


def vs_with(sched: str, weights: dict[str, int], flags: int = 0) -> VirtualServer:
    t = IpvsTable()
    vs = t.add_service("TCP", "10.96.0.50", 80, scheduler=sched, flags=flags)
    for ip, w in weights.items():
        vs.add_dest(ip2int(ip), 80, weight=w)
    return vs


def pick(vs: VirtualServer, saddr: int = CLIENT, sport: int = 40000) -> str | None:
    d = vs.sched.schedule(vs, saddr, sport, vs.ip, vs.port)
    return None if d is None else {ip2int(x): x for x in (A, B, C, D)}[d.ip]


def test_new_destinations_go_to_the_head_of_the_list():
    vs = vs_with("rr", {A: 1, B: 1, C: 1})
    assert [d.addr for d in vs.dests] == [f"{C}:80", f"{B}:80", f"{A}:80"]


# --- rr (ip_vs_rr.c) ------------------------------------------------------------------------
def test_rr_walks_the_list_from_the_head_and_wraps():
    vs = vs_with("rr", {A: 1, B: 1, C: 1})
    assert [pick(vs) for _ in range(7)] == [C, B, A, C, B, A, C]


def test_rr_skips_weight_zero_destinations():
    vs = vs_with("rr", {A: 1, B: 1, C: 1})
    vs.edit_dest(ip2int(B), 80, 0)
    assert [pick(vs) for _ in range(4)] == [C, A, C, A]


def test_rr_weights_above_zero_are_ignored():
    vs = vs_with("rr", {A: 5, B: 1})
    assert [pick(vs) for _ in range(4)] == [B, A, B, A]


def test_rr_deleting_the_last_chosen_moves_the_pointer_to_its_predecessor():
    # ip_vs_rr_del_dest: sched_data = p->next->prev, i.e. the node before the removed one
    vs = vs_with("rr", {A: 1, B: 1, C: 1})          # list C, B, A
    assert [pick(vs), pick(vs)] == [C, B]           # pointer at B
    vs.del_dest(ip2int(B), 80)                      # pointer -> C
    assert [pick(vs), pick(vs), pick(vs)] == [A, C, A]


def test_rr_no_destination_when_all_quiesced():
    vs = vs_with("rr", {A: 0, B: 0})
    assert pick(vs) is None


# --- wrr (ip_vs_wrr.c) ----------------------------------------------------------------------
def test_wrr_sequence_for_weights_4_3_2():
    # Destinations are added one at a time (as kube-proxy does), each add runs
    # ip_vs_wrr_dest_changed: after A(4) alone di = 4, mw = 1 and cw = 1; later adds keep cw = 1
    # (cw <= mw, di = 1). So the first pass is cw = 1 over C(2), B(3), A(4); then cw restarts
    # at mw = 4 and steps down 4, 3, 2, 1.
    vs = vs_with("wrr", {A: 4, B: 3, C: 2})
    seq = [pick(vs) for _ in range(12)]
    assert seq == [C, B, A, A, B, A, C, B, A, C, B, A]
    assert Counter(seq[3:12]) == {A: 4, B: 3, C: 2}


def test_wrr_steps_by_the_gcd():
    # weights 4 and 2: di = 2, mw = 4 - (2 - 1) = 3; after the adds cw = (1 / 2) * 2 + 1 = 1.
    # cw 1 -> B then A; cw 1 - 2 <= 0 -> cw = 3 -> A only; and again.
    vs = vs_with("wrr", {A: 4, B: 2})               # list B, A
    assert [pick(vs) for _ in range(6)] == [B, A, A, B, A, A]


def test_wrr_equal_weights_is_round_robin():
    vs = vs_with("wrr", {A: 1, B: 1, C: 1})
    assert [pick(vs) for _ in range(6)] == [C, B, A, C, B, A]


def test_wrr_all_weights_zero_means_no_destination():
    vs = vs_with("wrr", {A: 0, B: 0})
    assert pick(vs) is None


def test_wrr_weight_change_restarts_from_the_list_head():
    vs = vs_with("wrr", {A: 1, B: 1, C: 1})
    assert pick(vs) == C
    vs.edit_dest(ip2int(A), 80, 1)                  # upd_dest: cl = head
    assert pick(vs) == C


# --- lc / wlc / sed / nq (ip_vs_lc.c, ip_vs_wlc.c, ip_vs_sed.c, ip_vs_nq.c) -------------------
def _load(vs: VirtualServer, ip: str, active: int, inactive: int) -> None:
    d = vs.find_dest(ip2int(ip), 80)
    d.activeconns, d.inactconns = active, inactive


def test_lc_overhead_is_active_times_256_plus_inactive_and_ties_keep_list_order():
    vs = vs_with("lc", {A: 1, B: 1, C: 1})          # list C, B, A
    _load(vs, A, 0, 5)
    _load(vs, B, 1, 0)                              # 256
    _load(vs, C, 0, 5)
    assert pick(vs) == C                            # C (5) first; A (5) is not strictly less
    _load(vs, C, 0, 300)                            # 300 > 256
    assert pick(vs) == A
    _load(vs, A, 0, 257)
    assert pick(vs) == B                            # 256 < 257 < 300


def test_lc_ignores_weight_zero():
    vs = vs_with("lc", {A: 1, B: 0})
    _load(vs, A, 10, 0)
    assert pick(vs) == A


def test_wlc_minimises_overhead_over_weight():
    vs = vs_with("wlc", {A: 1, B: 3})               # list B, A
    _load(vs, A, 1, 0)                              # 256 / 1
    _load(vs, B, 2, 0)                              # 512 / 3 = 170.7
    assert pick(vs) == B
    _load(vs, B, 3, 1)                              # 769 / 3 = 256.3
    assert pick(vs) == A


def test_sed_counts_active_plus_one_and_keeps_the_earlier_on_ties():
    vs = vs_with("sed", {A: 1, B: 2})               # list B, A
    _load(vs, A, 0, 50)                             # (0+1)/1 = 1, inactive ignored
    _load(vs, B, 1, 0)                              # (1+1)/2 = 1
    assert pick(vs) == B


def test_nq_prefers_an_idle_server_over_sed_order():
    vs = vs_with("nq", {A: 1, B: 2})                # same load as the sed test
    _load(vs, A, 0, 50)
    _load(vs, B, 1, 0)
    assert pick(vs) == A                            # A has no active connections: returned at once


# --- sh (ip_vs_sh.c) ------------------------------------------------------------------------
def _hash32_by_hand(v: int) -> int:
    return ((v * 0x61C88647) % 2**32) >> 24          # include/linux/hash.h, bits = 8


def test_hash_32_known_values():
    assert hash_32(0, 8) == 0
    assert hash_32(1, 8) == 0x61
    assert hash_32(ip2int("10.244.1.5"), 8) == _hash32_by_hand(ip2int("10.244.1.5"))


def test_sh_bucket_table_follows_weights_in_list_order():
    vs = vs_with("sh", {A: 1, B: 2, C: 1})          # list C(1), B(2), A(1)
    buckets = vs.sched.buckets
    assert [pick_ip for pick_ip in (b.ip for b in buckets[:8])] == [ip2int(x) for x in (C, B, B, A, C, B, B, A)]


def test_sh_maps_a_source_address_to_its_bucket():
    vs = vs_with("sh", {A: 1, B: 1, C: 1})          # buckets cycle C, B, A
    for client in ("10.244.1.5", "192.168.49.1", "10.244.2.200"):
        bucket = _hash32_by_hand(ip2int(client))
        expected = (C, B, A)[bucket % 3]
        assert pick(vs, ip2int(client)) == expected
        assert pick(vs, ip2int(client), sport=1) == expected          # port ignored without sh-port


def test_sh_quiesced_destination_keeps_its_bucket_and_gives_no_destination():
    vs = vs_with("sh", {A: 1, B: 1, C: 1})
    vs.edit_dest(ip2int(B), 80, 0)                  # weight 0 still fills one bucket per cycle
    assert [b.ip for b in vs.sched.buckets[:3]] == [ip2int(C), ip2int(B), ip2int(A)]
    client = next(ip for ip in range(ip2int("10.0.0.1"), ip2int("10.0.1.0"))
                  if vs.sched.buckets[_hash32_by_hand(ip)].ip == ip2int(B))
    assert pick(vs, client) is None
    vs.flags |= IP_VS_SVC_F_SCHED1                  # sh-fallback probes further buckets
    assert pick(vs, client) in (A, C)


def test_sh_port_flag_hashes_the_source_port_too():
    vs = vs_with("sh", {A: 1, B: 1, C: 1}, flags=IP_VS_SVC_F_SCHED2)
    bucket = _hash32_by_hand(CLIENT + 40000)
    assert pick(vs, CLIENT, 40000) == (C, B, A)[bucket % 3]


# --- dh (ip_vs_dh.c) ------------------------------------------------------------------------
def test_dh_hashes_the_destination_so_one_vip_always_gets_one_backend():
    vs = vs_with("dh", {A: 1, B: 1, C: 1})
    expected = (C, B, A)[_hash32_by_hand(vs.ip) % 3]
    assert {pick(vs, ip2int(f"10.244.{i}.7"), 1000 + i) for i in range(20)} == {expected}


# --- mh (ip_vs_mh.c, lib/siphash.c) ---------------------------------------------------------
def test_hsiphash_is_siphash13_as_cpython_computes_it():
    # On 64-bit kernels hsiphash = SipHash-1-3 (lib/siphash.c); CPython's bytes hash is also
    # SipHash-1-3 and uses a zero key under PYTHONHASHSEED=0.
    values = [0x04030201, 0xDEADBEEF, ip2int("10.244.1.5") + 80]
    code = ("import struct,sys;print(' '.join(str(hash(struct.pack('<I', v)) & 0xFFFFFFFF) "
            f"for v in {values!r}))")
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert [int(x) for x in out.stdout.split()] == [hsiphash_u32(v, (0, 0)) for v in values]


def test_mh_table_is_4093_slots_filled_from_each_dest_offset():
    vs = vs_with("mh", {A: 1, B: 1, C: 1}, flags=IP_VS_SVC_F_SCHED2)
    table = vs.sched.lookup
    assert len(table) == MH_TAB_SIZE == 4093
    assert all(d is not None for d in table)
    # Each dest's first preferred slot is offset = hsiphash(port + addr, HASH1) % M; the first
    # dest in list order (C) always gets it.
    off_c = hsiphash_u32(80 + ip2int(C), MH_HASH1) % MH_TAB_SIZE
    assert table[off_c].ip == ip2int(C)
    counts = Counter(d.ip for d in table)
    assert max(counts.values()) - min(counts.values()) <= 2      # Maglev: near-equal shares


def test_mh_weights_scale_the_share():
    vs = vs_with("mh", {A: 2, B: 1})
    counts = Counter(d.ip for d in vs.sched.lookup)
    assert abs(counts[ip2int(A)] - 2 * counts[ip2int(B)]) <= 3


def test_mh_lookup_hashes_source_address_and_port():
    vs = vs_with("mh", {A: 1, B: 1, C: 1}, flags=IP_VS_SVC_F_SCHED2)
    for sport in (1000, 40000, 55555):
        slot = hsiphash_u32((sport + CLIENT) & 0xFFFFFFFF, MH_HASH1) % MH_TAB_SIZE
        assert vs.sched.schedule(vs, CLIENT, sport, vs.ip, 80) is vs.sched.lookup[slot]


def test_mh_quiesced_destination_keeps_its_slots_via_last_weight():
    vs = vs_with("mh", {A: 1, B: 1, C: 1}, flags=IP_VS_SVC_F_SCHED2)
    before = list(vs.sched.lookup)
    vs.edit_dest(ip2int(B), 80, 0)                  # last_weight stays 1
    assert vs.sched.lookup == before
    slot_of_b = next(i for i, d in enumerate(before) if d.ip == ip2int(B))
    sport = next(p for p in range(1, 65536)
                 if hsiphash_u32((p + CLIENT) & 0xFFFFFFFF, MH_HASH1) % MH_TAB_SIZE == slot_of_b)
    assert vs.sched.schedule(vs, CLIENT, sport, vs.ip, 80) is None   # no mh-fallback: no destination


def test_unknown_scheduler_is_a_clear_error():
    with pytest.raises(IpvsError, match="unknown IPVS scheduler 'xyz'"):
        make_scheduler("xyz")


# --- lblc (ip_vs_lblc.c) --------------------------------------------------------------------
def test_lblc_sticks_to_the_cached_destination_until_it_overloads():
    vs = vs_with("lblc", {A: 1, B: 1})              # list B, A
    assert pick(vs) == B                            # wlc: both idle, the first wins
    _load(vs, B, 1, 0)
    assert pick(vs) == B                            # cached; activeconns 1 is not > weight 1
    _load(vs, B, 2, 0)                              # 2 > 1 and A has 0*2 < 1: overloaded
    assert pick(vs) == A
    _load(vs, A, 5, 0)
    assert pick(vs) == A                            # A overloaded, but no dest has act*2 < weight


def test_lblcr_grows_the_set_when_its_best_member_overloads():
    vs = vs_with("lblcr", {A: 1, B: 1})             # list B, A
    assert pick(vs) == B                            # new set {B}
    _load(vs, B, 2, 0)                              # overloaded (A idle: 0*2 < 1)
    assert pick(vs) == A                            # wlc picks A, set becomes {A, B}
    _load(vs, A, 1, 0)
    _load(vs, B, 0, 0)
    assert pick(vs) == B                            # least loaded member of the set (0 < 256)
    assert vs.sched.sets[vs.ip] == [vs.find_dest(ip2int(A), 80), vs.find_dest(ip2int(B), 80)]


# --- properties that follow from the kernel algorithms ----------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

_weights = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=4)
_ADDRS = (A, B, C, D)


@settings(max_examples=40, deadline=None)
@given(_weights)
def test_wrr_long_run_shares_follow_the_weights(ws):
    vs = vs_with("wrr", dict(zip(_ADDRS, ws)))
    total = sum(ws)
    picks = Counter(pick(vs) for _ in range(total * 20))
    for ip, w in zip(_ADDRS, ws):
        assert abs(picks[ip] - 20 * w) <= max(ws)         # one cycle gives each dest exactly its weight


@settings(max_examples=40, deadline=None)
@given(_weights)
def test_sh_buckets_are_shared_by_weight(ws):
    vs = vs_with("sh", dict(zip(_ADDRS, ws)))
    counts = Counter(b.ip for b in vs.sched.buckets)
    cycles = 256 / sum(ws)
    for ip, w in zip(_ADDRS, ws):
        assert abs(counts[ip2int(ip)] - cycles * w) <= w  # whole cycles of `weight` buckets, one partial


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=4))
def test_mh_equal_weights_differ_by_at_most_one_slot(n):
    # ip_vs_mh_populate: with turns = 1 every dest claims one slot per round until the table is full
    vs = vs_with("mh", {ip: 1 for ip in _ADDRS[:n]})
    counts = Counter(d.ip for d in vs.sched.lookup)
    assert sum(counts.values()) == MH_TAB_SIZE and max(counts.values()) - min(counts.values()) <= 1
