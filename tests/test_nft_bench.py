"""benchmarks/bench_nft_engine.py on small sizes: the table it builds is kube-proxy's (through our
proxier), every packet is DNATed, and what the kernel evaluates per packet does not grow with the
number of Services (no timing asserted here: speed lives in benchmarks/)."""
from __future__ import annotations

from netsim.benchmarks.bench_nft_engine import build, eval_pass, row


def test_kernel_evaluations_per_packet_are_flat() -> None:
    rows = []
    for n in (10, 300):
        b = build(n, 300)
        eval_pass(b)
        rows.append(row(b))
    small, large = rows
    assert large["rules"] > 50 * small["rules"] // 10          # the table grows with the Services...
    assert small["kernel_rules_per_packet"] == large["kernel_rules_per_packet"] == 8
    assert small["kernel_lookups_per_packet"] == large["kernel_lookups_per_packet"] == 3   # ...the walk does not
