"""DIR/REPORT.md from a `netsim bench` run: the environment, a headline table, the plots, and per metric a
paragraph saying what it shows and what an operator should conclude, with the measured ratios next to
the published ones. Everything in it is computed from the records; nothing is typed in by hand.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from netsim.benchmarks.anchors import K8S_BLOG_2025, published_points, published_ratio
from netsim.benchmarks.kernel_measure import BACKENDS
from netsim.benchmarks.records import Record, select
from netsim.rules.registry import DEFAULT_MODE


def _emulated_modes() -> tuple[str, ...]:
    """kube-proxy's modes whose packets the emulator walks (netsim.rules.registry), in its order."""
    from netsim.rules.registry import available_modes
    return available_modes(kube_proxy_only=True, walks_packets=True)


def _one(records: Sequence[Record], **want) -> Optional[Record]:
    got = select(records, **want)
    return got[0] if got else None


def _v(r: Optional[Record], fmt: str = "{:g}", scale: float = 1.0) -> str:
    if r is None:
        return "–"
    if fmt == "{:g}" and float(r.value).is_integer() and abs(r.value) >= 1000:
        fmt = "{:,.0f}"
    text = fmt.format(r.value * scale)
    if r.spread and r.repeats > 1 and r.unit in ("s", "µs", "traces/s", "packets/s") and "statistic" not in r.labels:
        text += f" ({fmt.format(r.spread['min'] * scale)}–{fmt.format(r.spread['max'] * scale)})"
    return text


def _sizes(records: Sequence[Record]) -> list[int]:
    """The sweep's Service counts (the core stages'; a further scenario may count other things)."""
    from netsim.benchmarks.harness import CORE_STAGES
    return sorted({r.services for r in records if r.services > 0 and r.labels.get("stage", "sync") in CORE_STAGES})


def _e(records: Sequence[Record]) -> int:
    es = [r.endpoints_per_service for r in records if r.services > 0 and r.endpoints_per_service > 0]
    return min(es) if es else 1


def headline_table(records: Sequence[Record]) -> str:
    """One row per Service count (the smallest endpoint count): the figures an operator compares.
    Kernel columns are this machine's kernel only (the VM's figures have their own table)."""
    from netsim.benchmarks.plots import host_kernel
    e = _e(records)
    host = host_kernel(records)
    lines = ["| Services | iptables rules | IPVS virtual servers | nftables rules + map/set elements | rules / first "
             "packet, last Service: iptables / IPVS / nftables (model) | kernel first connection p50, last Service, "
             "µs: iptables-nft / iptables-legacy / nftables | kernel full load s: iptables-restore (nft / legacy) / "
             "nft -f | proxier render s: iptables / IPVS / nftables (emulator) |",
             "|---:|---:|---:|---:|---|---|---|---|"]
    for n in _sizes(records):
        def g(**w):
            return _one(records, services=n, **w)

        def k(**w):
            return _one(host, services=n, **w)
        ipt_rules = g(mode="iptables", metric="ruleset_rules", table="all", endpoints_per_service=e)
        vs = g(mode="ipvs", metric="virtual_servers", endpoints_per_service=e)
        nft_rules = g(mode="nftables", metric="ruleset_rules", table="all", endpoints_per_service=e)
        nft_el = g(mode="nftables", metric="ruleset_elements", endpoints_per_service=e)
        fp = [g(mode=m, metric="rules_first_packet", position="last", endpoints_per_service=e)
              for m in _emulated_modes()]
        lat = [k(mode="iptables", metric="kernel_first_connection_latency_p50", backend="iptables-nft", position="last"),
               k(mode="iptables", metric="kernel_first_connection_latency_p50", backend="iptables-legacy",
                 position="last"),
               k(mode="nftables", metric="kernel_first_connection_latency_p50", position="last")]
        loads = [k(mode="iptables", metric="kernel_load_seconds", backend="iptables-nft", tool="iptables-restore",
                   endpoints_per_service=e),
                 k(mode="iptables", metric="kernel_load_seconds", backend="iptables-legacy", tool="iptables-restore",
                   endpoints_per_service=e),
                 k(mode="nftables", metric="kernel_load_seconds", tool="nft -f", endpoints_per_service=e)]
        render = [g(mode=m, metric="render_seconds", sync="full", endpoints_per_service=e)
                  for m in _emulated_modes()]
        nft_size = "–" if nft_rules is None else f"{_v(nft_rules)} + {_v(nft_el)}"
        lines.append(f"| {n:,} | {_v(ipt_rules)} | {_v(vs)} | {nft_size} | {' / '.join(_v(r) for r in fp)} | "
                     f"{' / '.join(_v(r, '{:.0f}') for r in lat)} | "
                     f"{' / '.join(_v(r, '{:.3f}') for r in loads)} | {' / '.join(_v(r, '{:.3f}') for r in render)} |")
    return "\n".join(lines)


def _ratio(a: Optional[Record], b: Optional[Record]) -> Optional[float]:
    if a is None or b is None or not b.value:
        return None
    return a.value / b.value


def _fmt_ratio(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.1f}×"


def paragraph_rules(records: Sequence[Record]) -> str:
    e = _e(records)
    sizes = _sizes(select(records, metric="rules_first_packet"))
    if len(sizes) < 1:
        return "No modelled first-packet counts in this run."
    lo, hi = sizes[0], sizes[-1]
    last_lo = _one(records, mode="iptables", metric="rules_first_packet", position="last", services=lo,
                   endpoints_per_service=e)
    last_hi = _one(records, mode="iptables", metric="rules_first_packet", position="last", services=hi,
                   endpoints_per_service=e)
    first_hi = _one(records, mode="iptables", metric="rules_first_packet", position="first", services=hi,
                    endpoints_per_service=e)
    mean_hi = _one(records, mode="iptables", metric="rules_first_packet_mean", services=hi, endpoints_per_service=e)
    ipvs_hi = _one(records, mode="ipvs", metric="rules_first_packet", position="last", services=hi,
                   endpoints_per_service=e)
    ipvs_lo = _one(records, mode="ipvs", metric="rules_first_packet", position="last", services=lo,
                   endpoints_per_service=e)
    est = _one(records, mode="iptables", metric="rules_established_packet", services=hi, endpoints_per_service=e)
    miss = _one(records, mode="iptables", metric="rules_first_packet", position="pod-ip", services=hi,
                endpoints_per_service=e)
    cross = None
    for n in sizes:
        m = _one(records, mode="iptables", metric="rules_first_packet_mean", services=n, endpoints_per_service=e)
        v = _one(records, mode="ipvs", metric="rules_first_packet_mean", services=n, endpoints_per_service=e)
        if m and v and m.value > v.value:
            cross = n
            break
    nft_lo = _one(records, mode="nftables", metric="rules_first_packet", position="last", services=lo,
                  endpoints_per_service=e)
    nft_hi = _one(records, mode="nftables", metric="rules_first_packet", position="last", services=hi,
                  endpoints_per_service=e)
    nft_first = _one(records, mode="nftables", metric="rules_first_packet", position="first", services=hi,
                     endpoints_per_service=e)
    text = [f"**Rules evaluated (model).** In iptables mode a new connection's first packet walks KUBE-SERVICES "
            f"until its Service's rule: at {hi:,} Services that is {_v(first_hi)} rules for the first Service, "
            f"{_v(mean_hi)} on average and {_v(last_hi)} for the last – {_fmt_ratio(_ratio(last_hi, last_lo))} the "
            f"count at {lo:,} Services. A packet to a pod IP (no Service) walks the whole chain too "
            f"({_v(miss)} rules). In IPVS mode the count stays {_v(ipvs_lo)} → {_v(ipvs_hi)}: the Service is "
            f"found by a hash lookup, not a rule. An established packet costs {_v(est)} rules in iptables mode "
            f"at any size: conntrack answers it."]
    if nft_hi is not None:
        text.append(f"In nftables mode it stays {_v(nft_lo)} → {_v(nft_hi)} (first Service {_v(nft_first)}, last "
                    f"{_v(nft_hi)}): one `ip daddr . meta l4proto . th dport vmap @service-ips` rule dispatches every "
                    "Service with a hash lookup, the rest are the per-Service and per-endpoint chains' few rules.")
    if cross is not None:
        where = "the smallest size measured" if cross == sizes[0] else f"{sizes[sizes.index(cross) - 1]:,} still not"
        text.append(f"On the modelled count iptables evaluates more rules than IPVS from {cross:,} Services on "
                    f"({where}); what that costs in time is the kernel section's question.")
    text.append("*Operator:* the iptables first-packet cost grows with every Service in the cluster, on every "
                "node, and is paid by non-Service traffic as well; IPVS's and nftables' do not grow.")
    return " ".join(text)


def _per_rule_ns(records: Sequence[Record], backend: str, n: int, e: int) -> Optional[float]:
    """(p50 last − p50 first) / (rules last − rules first): the kernel's cost per rule, from one run."""
    last = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="last", services=n)
    first = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="first", services=n)
    rl = _one(records, mode="iptables", metric="rules_first_packet", position="last", services=n, endpoints_per_service=e)
    rf = _one(records, mode="iptables", metric="rules_first_packet", position="first", services=n, endpoints_per_service=e)
    if not (last and first and rl and rf) or rl.value == rf.value:
        return None
    return (last.value - first.value) * 1000 / (rl.value - rf.value)


def paragraph_kernel(records: Sequence[Record]) -> str:
    from netsim.benchmarks.plots import host_kernel
    model = [r for r in records if r.source != "kernel"]
    records = model + host_kernel(records)          # this machine's kernel only (the VM has its own paragraph)
    k = select(records, metric="kernel_first_connection_latency_p50", source="kernel")
    if not k:
        return ("**Kernel first-connection latency.** Not measured in this run (kernel measurements need root "
                "inside `unshare --net --mount`).")
    e = _e(records)
    sizes = sorted({r.services for r in k if r.services > 0})
    floor = _one(records, metric="kernel_first_connection_latency_p50", position="pod-ip")
    hi = sizes[-1]
    parts = [f"**Kernel first-connection latency.** A pod's `connect()` to a ClusterIP, SYN to SYN-ACK through the "
             f"node's nat PREROUTING, {k[0].repeats} connections per point."]
    if floor:
        parts.append(f"With no rules at all (straight to the pod) p50 is {floor.value:.0f} µs: the floor of this "
                     "machine and Python.")
    for backend in ("iptables-nft", "iptables-legacy"):
        last = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="last", services=hi)
        first = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="first",
                     services=hi)
        p99 = _one(records, metric="kernel_first_connection_latency_p99", backend=backend, position="last", services=hi)
        if not last:
            continue
        ns = _per_rule_ns(records, backend, hi, e)
        parts.append(f"{backend} at {hi:,} Services: p50 {first.value:.0f} µs to the first Service, {last.value:.0f} µs "
                     f"to the last (p99 {p99.value:.0f} µs)" + (f", i.e. {ns:.1f} ns per rule walked" if ns else "") +
                     ".")
    pub = published_ratio("iptables", "kernel_first_connection_latency_p50", 5000, 30000)
    ours_lo = _one(records, metric="kernel_first_connection_latency_p50", backend="iptables-nft", position="last",
                   services=5000)
    ours_hi = _one(records, metric="kernel_first_connection_latency_p50", backend="iptables-nft", position="last",
                   services=30000)
    mine = _ratio(ours_hi, ours_lo)
    parts.append(f"Published (Kubernetes blog 2025, {K8S_BLOG_2025}, values read off its charts, other hardware): "
                 f"iptables p50 grows {_fmt_ratio(pub)} from 5,000 to 30,000 Services and a p99 slope of about "
                 f"22.5 ns per rule; measured here, last Service, iptables-nft: {_fmt_ratio(mine)}"
                 + ("" if mine else " (this run did not measure both 5,000 and 30,000)") + ".")
    ipvs_pub = published_points("ipvs", "kernel_first_connection_latency_p50")
    if not select(records, mode="ipvs", metric="kernel_first_connection_latency_p50"):
        parts.append(f"IPVS is not measured on this kernel (no ip_vs module; the VM section below measures it): "
                     f"the published IPVS p50 is {ipvs_pub[0].value:g}–{ipvs_pub[-1].value:g} µs from 5,000 to "
                     "30,000 Services, nearly flat.")
    cpu_hi = _one(records, metric="kernel_cpu_per_connection", backend="iptables-nft", position="last", services=hi)
    cpu_floor = _one(records, metric="kernel_cpu_per_connection", position="pod-ip")
    if cpu_hi and cpu_floor:
        parts.append(f"CPU per connection (the client process, getrusage, SYN processing included): "
                     f"{cpu_hi.value:.0f} µs at {hi:,} Services (last Service) vs {cpu_floor.value:.0f} µs with no rules.")
    walk = {}
    for backend in ("iptables-nft", "iptables-legacy"):
        last = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="last", services=hi)
        first = _one(records, metric="kernel_first_connection_latency_p50", backend=backend, position="first",
                     services=hi)
        if last and first:
            walk[backend] = (last.value - first.value, last.value)
    if walk:
        b, (gap, total) = max(walk.items(), key=lambda kv: kv[1][0])
        share = f" ({gap / total * 100:.0f} % of that connection's setup)" if total > 0 else ""
        parts.append(f"*Operator:* the gap between the first and the last Service is the time the kernel spends "
                     f"walking KUBE-SERVICES, paid by every new connection to a late Service: {gap:.0f} µs at "
                     f"{hi:,} Services with {b}{share}.")
        if len(walk) == 2:
            fast = min(walk, key=lambda k: walk[k][0])
            slow = max(walk, key=lambda k: walk[k][0])
            parts.append(f"On this kernel {fast} walks the chain faster than {slow} "
                         f"({walk[fast][0]:.0f} vs {walk[slow][0]:.0f} µs gap).")
    return " ".join(parts)


def paragraph_nftables(records: Sequence[Record]) -> str:
    """nftables against iptables on this machine's kernel, with the blog's figures beside."""
    from netsim.benchmarks.plots import host_kernel
    host = host_kernel(records)
    nft = select(host, mode="nftables", metric="kernel_first_connection_latency_p50", position="last")
    if not nft:
        return ("**nftables vs iptables (kernel).** Not measured in this run (nftables mode's first connection needs "
                "root inside `unshare --net --mount` and `nft`).")
    sizes = sorted(r.services for r in nft)
    lo, hi = sizes[0], sizes[-1]

    def p50(mode: str, n: int, position: str = "last", **w) -> Optional[Record]:
        return _one(host, mode=mode, metric="kernel_first_connection_latency_p50", position=position, services=n, **w)
    parts = [f"**nftables vs iptables (kernel).** nftables mode brought up by the kernel backend (kube-proxy's "
             f"`table ip kube-proxy` loaded with `nft -f`), the same connections as iptables'."]
    n_lo, n_hi, n_first = p50("nftables", lo), p50("nftables", hi), p50("nftables", hi, "first")
    parts.append(f"p50 to the last Service: {n_lo.value:.0f} µs at {lo:,} Services, {n_hi.value:.0f} µs at {hi:,} "
                 f"({_fmt_ratio(_ratio(n_hi, n_lo))}); to the first Service at {hi:,}: "
                 f"{_v(n_first, '{:.0f}')} µs – position does not matter to a verdict map.")
    for backend in ("iptables-nft", "iptables-legacy"):
        i_hi = p50("iptables", hi, backend=backend)
        if i_hi:
            parts.append(f"iptables ({backend}) at {hi:,}: {i_hi.value:.0f} µs, "
                         f"{_fmt_ratio(_ratio(i_hi, n_hi))} nftables' (same run).")
    ratios = []
    for n in (5000, 10000, 30000):
        ipt, nf = p50("iptables", n, backend="iptables-nft"), p50("nftables", n)
        pub_i = [a.value for a in published_points("iptables", "kernel_first_connection_latency_p50") if a.services == n]
        pub_n = [a.value for a in published_points("nftables", "kernel_first_connection_latency_p50") if a.services == n]
        if pub_i and pub_n:
            mine = f"{_fmt_ratio(_ratio(ipt, nf))} here" if ipt and nf else "not measured here"
            ratios.append(f"{n:,}: {pub_i[0] / pub_n[0]:.1f}× published, {mine}")
    if ratios:
        parts.append("iptables p50 ÷ nftables p50 (the blog's figures are any Service, read off its charts; ours "
                     f"the last Service, iptables-nft): {'; '.join(ratios)}.")
    pub_n = published_points("nftables", "kernel_first_connection_latency_p50")
    if pub_n:
        parts.append(f"Published nftables p50 is flat ({pub_n[0].value:g}–{pub_n[-1].value:g} µs from "
                     f"{pub_n[0].services:,} to {pub_n[-1].services:,} Services; {K8S_BLOG_2025}).")
    lf = _one(host, mode="nftables", metric="kernel_load_seconds", tool="nft -f", services=hi)
    li = _one(host, mode="iptables", metric="kernel_load_seconds", tool="iptables-restore", backend="iptables-nft",
              services=hi)
    pf = _one(host, mode="nftables", metric="kernel_incremental_seconds", tool="nft -f", services=hi)
    pi = _one(host, mode="iptables", metric="kernel_incremental_seconds", backend="iptables-nft", services=hi)
    if lf and li:
        parts.append(f"The price is paid at load time: the full nftables table takes {_v(lf, '{:.2f}')} s through "
                     f"`nft -f` at {hi:,} Services against {_v(li, '{:.2f}')} s for iptables-restore (iptables-nft), "
                     "because kube-proxy's nftables table has a chain per Service and per endpoint; a one-endpoint "
                     f"change then costs {_v(pf, '{:.3f}')} s (nftables, only the changed chains and map elements) "
                     f"against {_v(pi, '{:.3f}')} s (iptables' partial restore, KUBE-SERVICES whole).")
    parts.append("*Operator:* nftables removes the per-Service first-packet cost that iptables has (its p50 does not "
                 "move with the cluster's size or the Service's position) and makes small changes cheap; a full "
                 "load (kube-proxy start, a full resync) of a large table is where it is slower.")
    return " ".join(parts)


def vm_table(records: Sequence[Record]) -> str:
    """Per size and position: each mode's p50/p99 ratio to iptables in the VM boot, beside the VM's own µs."""
    from netsim.benchmarks.plots import vm_kernel
    vm = vm_kernel(records)
    if not vm:
        return ""
    lines = ["| boot | Services | Service | mode | p50 ÷ iptables | p99 ÷ iptables | CPU/conn ÷ iptables | "
             "p50 / p99 µs in the VM (not comparable with a node) | connections |",
             "|---|---:|---|---|---:|---:|---:|---|---:|"]
    from netsim.rules.registry import known_modes
    order = known_modes()
    for boot, n, position in sorted({(r.labels.get("vm_boot") or "", r.services, r.labels.get("position"))
                                     for r in vm if r.services > 0 and r.labels.get("position")}):
        for mode in sorted({r.mode for r in vm}, key=lambda m: order.index(m) if m in order else 99):
            w = dict(services=n, position=position, mode=mode)
            if boot:
                w["vm_boot"] = boot
            if mode == DEFAULT_MODE:
                w["backend"] = next(iter(BACKENDS))
            a = _one(vm, metric="kernel_first_connection_latency_p50", **w)
            b = _one(vm, metric="kernel_first_connection_latency_p99", **w)
            if a is None:
                continue
            r50 = _one(vm, metric="kernel_first_connection_latency_p50_ratio_to_iptables", **w)
            r99 = _one(vm, metric="kernel_first_connection_latency_p99_ratio_to_iptables", **w)
            rc = _one(vm, metric="kernel_cpu_per_connection_ratio_to_iptables", **w)
            rat = ["1 (baseline)" if mode == DEFAULT_MODE else ("–" if x is None else f"{x.value:.2f}")
                   for x in (r50, r99, rc)]
            lines.append(f"| {boot or '–'} | {n:,} | {position} | {mode} | {rat[0]} | {rat[1]} | {rat[2]} | "
                         f"{a.value:.0f} / {b.value:.0f} | {a.repeats} |")
    return "\n".join(lines)


def paragraph_vm(records: Sequence[Record], env: dict) -> str:
    from netsim.benchmarks.plots import vm_kernel
    vm = vm_kernel(records)
    if not vm:
        return ("**IPVS on a real kernel (VM).** Not in this run: `netsim bench --vm` measures IPVS beside iptables "
                "and nftables in one boot of Debian's kernel (which has ip_vs).")
    runner = vm[0].labels.get("kernel_runner", "vm")
    sizes = sorted({r.services for r in vm if r.services > 0})
    parts = [f"**IPVS on a real kernel (VM, software-emulated).** This machine's kernel has no ip_vs, so the first "
             f"connection was also measured in Debian's kernel under qemu without KVM ({runner}): "
             "iptables, IPVS (programmed for real: kube-ipvs0, ipsets, its iptables rules, virtual and real servers) "
             f"and nftables in the same guest kernel, at {', '.join(f'{n:,}' for n in sizes)} Services. "
             "Software emulation makes every absolute time there many times a real node's, so only the ratios "
             "between modes of one boot are quoted."]
    boots = sorted({r.labels.get("vm_boot") or "" for r in vm})
    if len(boots) > 1:
        parts.append(f"{len(boots)} boots ({', '.join(boots)}); each ratio is within one boot.")
    for boot in boots:
        in_boot = [r for r in vm if (r.labels.get("vm_boot") or "") == boot]
        for n in sizes:
            bits = []
            for mode in [m for m in _emulated_modes() if m != DEFAULT_MODE]:
                last = _one(in_boot, mode=mode, services=n, position="last",
                            metric="kernel_first_connection_latency_p50_ratio_to_iptables")
                first = _one(in_boot, mode=mode, services=n, position="first",
                             metric="kernel_first_connection_latency_p50_ratio_to_iptables")
                if last:
                    bits.append(f"{mode} {last.value:.2f}× iptables' p50 to the last Service"
                                + (f" ({first.value:.2f}× to the first)" if first else ""))
            if bits:
                where = f" (boot {boot})" if len(boots) > 1 else ""
                parts.append(f"At {n:,} Services{where}: " + "; ".join(bits) + ".")
            # the noise check: iptables' first Service can never cost more than its last (a shorter walk of
            # the same chain), and a hash-dispatched mode's two Services cost the same; where the measured
            # p50s say otherwise, the guest's scheduling noise is larger than the effect
            base = {pos: _one(in_boot, mode=DEFAULT_MODE, services=n, position=pos, backend=next(iter(BACKENDS)),
                              metric="kernel_first_connection_latency_p50") for pos in ("first", "last")}
            if base["first"] and base["last"] and base["first"].value > base["last"].value:
                parts.append(f"Noise check{where} at {n:,}: the p50 of {DEFAULT_MODE} to the *first* Service is "
                             f"{base['first'].value / base['last'].value:.1f}× its p50 to the last, which a rule walk "
                             "cannot produce: in this boot the guest's scheduling noise exceeds the rule walk, so "
                             "these ratios are not a measurement of the modes.")
    pub = {m: {a.services: a.value for a in published_points(m, "kernel_first_connection_latency_p50")}
           for m in _emulated_modes()}
    if 5000 in pub.get("iptables", {}) and 30000 in pub.get("ipvs", {}) and 30000 in pub.get("nftables", {}):
        parts.append(f"Published (any Service, other hardware): IPVS p50 ÷ iptables p50 is "
                     f"{pub['ipvs'][5000] / pub['iptables'][5000]:.2f} at 5,000 Services and "
                     f"{pub['ipvs'][30000] / pub['iptables'][30000]:.2f} at 30,000; nftables ÷ IPVS "
                     f"{pub['nftables'][5000] / pub['ipvs'][5000]:.2f}–{pub['nftables'][30000] / pub['ipvs'][30000]:.2f}.")
    parts.append("*Reading:* under emulation the per-connection overhead (syscalls, the guest's scheduler, the Python "
                 "client) is inflated along with the rule walk, so these ratios say which mode is cheaper in that "
                 "kernel and whether it grows with the Services, not by how much on real hardware.")
    return " ".join(parts)


def paragraph_sync(records: Sequence[Record]) -> str:
    e = _e(records)
    sizes = _sizes(select(records, metric="render_seconds"))
    if not sizes:
        return "No sync figures in this run."
    hi = sizes[-1]
    ri = _one(records, mode="iptables", metric="render_seconds", sync="full", services=hi, endpoints_per_service=e)
    rv = _one(records, mode="ipvs", metric="render_seconds", sync="full", services=hi, endpoints_per_service=e)
    rules = _one(records, mode="iptables", metric="ruleset_rules", table="all", services=hi, endpoints_per_service=e)
    nat = _one(records, mode="iptables", metric="ruleset_rules", table="nat", services=hi, endpoints_per_service=e)
    inc = _one(records, mode="iptables", metric="incremental_restore_rules", services=hi, endpoints_per_service=e)
    inc_v = _one(records, mode="ipvs", metric="incremental_ipvs_operations", services=hi, endpoints_per_service=e)
    inc_vr = _one(records, mode="ipvs", metric="incremental_restore_rules", services=hi, endpoints_per_service=e)
    parts = [f"**Sync and rule-set size.** At {hi:,} Services × {e} endpoint(s) the iptables proxier writes "
             f"{_v(rules)} rules ({_v(nat)} in nat = 5 + N·(2 + 3E), kube-proxy's TestNumberIptablesRules formula) "
             f"in {_v(ri, '{:.3f}')} s (emulator); the IPVS proxier programs {_v(_one(records, mode='ipvs', metric='virtual_servers', services=hi, endpoints_per_service=e))} "
             f"virtual servers in {_v(rv, '{:.3f}')} s."]
    parts.append(f"One endpoint added: kube-proxy's partial restore (KEP-3453) still writes {_v(inc)} rules – "
                 f"KUBE-SERVICES whole plus the changed Service's chains, so it stays O(N); IPVS mode does "
                 f"{_v(inc_v)} ipvsadm operation(s) and rewrites its {_v(inc_vr)} constant iptables rules.")
    from netsim.benchmarks.plots import host_kernel
    records = [r for r in records if r.source != "kernel"] + host_kernel(records)
    for backend in ("iptables-nft", "iptables-legacy"):
        load = _one(records, mode="iptables", metric="kernel_load_seconds", backend=backend, tool="iptables-restore",
                    services=hi, endpoints_per_service=e)
        part = _one(records, mode="iptables", metric="kernel_incremental_seconds", backend=backend, services=hi,
                    endpoints_per_service=e)
        if load:
            parts.append(f"The kernel loads the full set with {backend} in {_v(load, '{:.3f}')} s and applies the "
                         f"partial restore in {_v(part, '{:.3f}')} s.")
    rn = _one(records, mode="nftables", metric="render_seconds", sync="full", services=hi, endpoints_per_service=e)
    if rn:
        def nf(metric: str) -> Optional[Record]:
            return _one(records, mode="nftables", metric=metric, services=hi, endpoints_per_service=e)
        parts.append(f"The nftables proxier writes {_v(nf('ruleset_rules'))} rules in {_v(nf('ruleset_chains'))} chains "
                     f"plus {_v(nf('ruleset_elements'))} map/set elements in {_v(rn, '{:.3f}')} s (emulator); after "
                     f"one endpoint is added its partial sync writes {_v(nf('incremental_restore_rules'))} rules "
                     f"({_v(nf('incremental_restore_bytes'))} bytes) – only the changed Service's chains and map "
                     "elements, whatever N is.")
    ipset = _one(records, mode="ipvs", metric="kernel_load_seconds", tool="ipset restore", services=hi,
                 endpoints_per_service=e)
    if ipset:
        parts.append(f"IPVS mode's ipsets load in {_v(ipset, '{:.3f}')} s (`ipset restore`); its virtual servers need "
                     "ip_vs, which this kernel lacks.")
    nload = _one(records, mode="nftables", metric="kernel_load_seconds", tool="nft -f", services=hi,
                 endpoints_per_service=e)
    ninc = _one(records, mode="nftables", metric="kernel_incremental_seconds", tool="nft -f", services=hi,
                endpoints_per_service=e)
    if nload:
        parts.append(f"`nft -f` loads the nftables table in {_v(nload, '{:.3f}')} s and the one-endpoint change in "
                     f"{_v(ninc, '{:.3f}')} s.")
    parts.append("*Operator:* with iptables every sync's cost, even a one-endpoint change, grows with the "
                 "cluster (the partial restore carries KUBE-SERVICES whole); in IPVS and nftables modes a change "
                 "costs per changed object.")
    return " ".join(parts)


def paragraph_emulator(records: Sequence[Record]) -> str:
    rows = select(records, metric="traces_per_second")
    if not rows:
        return "No emulator-speed figures in this run."
    sizes = sorted({r.services for r in rows})
    parts = ["**The emulator's own speed (Python, not the kernel).**"]
    from netsim.rules.registry import known_modes
    order = known_modes()
    for mode in sorted({r.mode for r in rows}, key=lambda m: (order.index(m) if m in order else len(order), m)):
        lo = _one(records, mode=mode, metric="traces_per_second", services=sizes[0])
        hi = _one(records, mode=mode, metric="traces_per_second", services=sizes[-1])
        est = _one(records, mode=mode, metric="established_packets_per_second", services=sizes[-1])
        rss = _one(records, mode=mode, metric="peak_rss_bytes", services=sizes[-1])
        if lo and hi:
            parts.append(f"{mode}: {_v(lo, '{:.0f}')} traces/s at {sizes[0]:,} Services, {_v(hi, '{:.0f}')} at "
                         f"{sizes[-1]:,} (slowdown {_fmt_ratio(_ratio(lo, hi))}); {_v(est, '{:.0f}')} established "
                         f"packets/s; peak RSS {rss.value / 2**20:.0f} MiB." if rss else "")
    parts.append("*Reading:* the compiled engine looks rules up by index, so its cost stays nearly flat while it "
                 "still reports the kernel's linear count above; these rates say how fast the tool is, never how "
                 "fast a node is.")
    return " ".join(p for p in parts if p)


SCENARIO_TITLES = {
    "iptables-engine": "iptables engine (bench_iptables_engine: synthetic kube-proxy nat table, 5 endpoints "
                       "per Service)",
    "modes": "Modes side by side in the emulator (bench_modes: 3 nodes, 2 endpoints per Service)",
    "load": "Control-plane load (bench_load: one 5-replica Deployment per Service; mode-independent)",
    "dns": "DNS (bench_dns: the CoreDNS stand-in and glibc's ndots:5 search walk; mode-independent)",
}


def _labels_text(r: Record) -> str:
    skip = {"stage", "note"}
    return ", ".join(f"{k}={v}" for k, v in r.labels.items() if k not in skip)


def scenario_tables(records: Sequence[Record]) -> str:
    """One table per further scenario that ran (see harness.EXTRA_STAGES), every record as a row."""
    out = []
    for stage, title in SCENARIO_TITLES.items():
        rows = [r for r in records if r.labels.get("stage") == stage]
        if not rows:
            continue
        out += [f"### {title}", "", "| metric | mode | Services | value | unit | min–max | repeats | source | detail |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(rows, key=lambda r: (r.metric, r.mode, r.services, _labels_text(r))):
            spread = f"{r.spread['min']:g}–{r.spread['max']:g}" if r.spread else "exact"
            out.append(f"| {r.metric} | {r.mode} | {r.services:,} | {r.value:g} | {r.unit} | {spread} | "
                       f"{r.repeats} | {r.source} | {_labels_text(r)} |")
        out.append("")
    return "\n".join(out)


def environment_table(env: dict) -> str:
    rows = [("kernel", env.get("kernel")), ("CPU", f"{env.get('cpu')} × {env.get('cpus')}"),
            ("Python", env.get("python")), ("iptables", env.get("iptables")),
            ("iptables-legacy", env.get("iptables_legacy")), ("ipset", env.get("ipset")),
            ("ip_vs", env.get("ip_vs")), ("commit", env.get("commit")), ("seed", env.get("seed")),
            ("profile", env.get("profile")), ("modes", ", ".join(env.get("modes", []))),
            ("Services", ", ".join(f"{n:,}" for n in env.get("services", []))),
            ("endpoints per Service", ", ".join(str(e) for e in env.get("endpoints", []))),
            ("repeats per timing", env.get("repeats")), ("kernel connections per target", env.get("connections")),
            ("kernel runner", env.get("kernel_runner") or "none"),
            ("load average (1/5/15 min) at the start", ", ".join(str(x) for x in env.get("load_average_start") or [])
             or "not recorded"),
            ("load average (1/5/15 min) at the end", ", ".join(str(x) for x in env.get("load_average") or [])
             or "not recorded")]
    out = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    pk = env.get("packages") or {}
    out.append("| packages | " + ", ".join(f"{k} {v}" for k, v in pk.items()) + " |")
    return "\n".join(out)


def parts_table(parts: Sequence[dict]) -> str:
    def la(v) -> str:
        return " / ".join(f"{x:g}" for x in v) if v else "–"
    out = ["| stages | records | kernel runner | seconds | load at start | load at end |", "|---|---:|---|---:|---|---|"]
    for p in parts:
        secs = sum((p.get("stage_seconds") or {}).values())
        out.append(f"| {', '.join(p.get('stages') or [])} | {p.get('records')} | {p.get('kernel_runner') or '–'} | "
                   f"{secs:.0f} | {la(p.get('load_average_start'))} | {la(p.get('load_average'))} |")
    return "\n".join(out)


def render_report(env: dict, records: Sequence[Record], plots: dict[str, Path], base: Path) -> str:
    def img(name: str, alt: str) -> str:
        p = plots.get(name)
        return f"![{alt}]({p.relative_to(base).as_posix()})\n" if p else f"*({alt}: no data in this run)*\n"

    skipped = env.get("skipped") or []
    lines = ["# kube-proxy modes compared: `netsim bench` report", "",
             "Generated by `netsim bench` from `results.json` beside this file. Sources never share a series: "
             "**kernel** = measured on this machine's kernel inside throw-away network namespaces, **model** = "
             "counted by the emulator from the rules kube-proxy writes, **emulator** = the Python emulator's own "
             "speed. Timings are medians of the repeats with min–max in brackets; every ratio between modes "
             "comes from this one run.", "", "## Environment", "", environment_table(env), ""]
    if env.get("parts"):
        lines += [f"The sweep ran as {len(env['parts'])} processes (groups of stages, merged with `netsim bench "
                  "--report-only --merge`); each one's stages, kernel runner and the machine's load averages "
                  "(1/5/15 min) when it started and ended:", "", parts_table(env["parts"]), ""]
    elif env.get("merged_from"):
        lines += [f"The sweep ran as {len(env['merged_from'])} processes side by side (groups of stages, merged "
                  "with `netsim bench --report-only --merge`); kernel stages ran in one of them.", ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    lines += ["## Headline", "", headline_table(records), "",
              img("rules_evaluated", "rules evaluated vs Services"), paragraph_rules(records), "",
              img("kernel_latency", "kernel first-connection latency vs Services"), paragraph_kernel(records), "",
              paragraph_nftables(records), "",
              "## IPVS, iptables and nftables in one VM kernel", "", img("vm_ratios", "VM: ratio to iptables"),
              paragraph_vm(records, env), "", vm_table(records), "",
              img("sync_time", "sync and kernel load time vs Services"),
              img("ruleset_size", "rule-set size vs Services"), paragraph_sync(records), "",
              paragraph_emulator(records), ""]
    scenarios = scenario_tables(records)
    if scenarios:
        lines += ["## Further scenarios", "",
                  "The older benchmark scripts as stages of this run (each also runs alone as "
                  "`python -m netsim.benchmarks.<script>`).", "", scenarios]
    lines += ["## Method", "",
              "* sync: the proxiers run on synthetic inputs of kube-proxy's shape (one TCP port per Service, E "
              "endpoints, the first local); the incremental change adds one endpoint to the middle Service.",
              "* kernel load: a fresh network namespace per repeat; nfacct objects created first; the tool is "
              "timed from spawn to exit.",
              "* model: one node with a client pod and E server pods; the walker's count of rules the kernel "
              "evaluates for the SYN; `pod-ip` is a SYN straight to a server pod (a KUBE-SERVICES miss).",
              "* kernel first connection: a one-node kernel cluster (`KernelCluster.up`), the node's rules "
              "loaded with the backend's iptables-restore, connections from the client pod's namespace, "
              "SO_LINGER 0 (no TIME_WAIT build-up), in chunks that alternate between the first and the last "
              "Service (background load weighs on both alike); the floor connects to a server pod with no rules "
              "loaded.",
              "* kernel first connection, IPVS and nftables modes: the same cluster brought up in that mode by the "
              "kernel backend (the mode's provider programs the node: `nft -f` of kube-proxy's table; IPVS: "
              "kube-ipvs0, ipset restore, iptables-restore, ipvsadm), then the same connections.",
              "* VM (`--vm`): the kernel jobs run in one boot of Debian's kernel (virtme-ng, qemu `--disable-kvm`, "
              "no network device); each mode's figures are divided by iptables' (iptables-nft) of the same boot, "
              "size and position.",
              "* emulator: bench_dataplane's 3-node cluster in a fresh interpreter per (mode, size).", ""]
    return "\n".join(lines)


def write_report(out: Path, env: dict, records: Sequence[Record]) -> list[Path]:
    """Plots (OUT/plots/*.png|svg) and OUT/REPORT.md; ModuleNotFoundError when matplotlib is missing."""
    from netsim.benchmarks.plots import plot_names, write_plots
    out = Path(out)
    paths = write_plots(records, out / "plots")
    report = out / "REPORT.md"
    report.write_text(render_report(env, records, plot_names(paths), out))
    return [report, *[p for p in paths if p.suffix == ".png"]]
