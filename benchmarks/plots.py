"""The `netsim bench` plots (matplotlib, PNG + SVG), one question each:

* ``rules_evaluated`` – how many rules does the kernel evaluate for a new connection's first packet,
  per mode, as Services grow (model; log x);
* ``kernel_latency``  – how long does a real first connection take on this machine's kernel (p50/p99,
  first and last Service, both iptables backends, nftables mode, the no-rules floor), with the
  published points overlaid;
* ``vm_ratios``       – in one boot of the IPVS VM (software-emulated), each mode's first-connection
  latency as a ratio to iptables' of the same boot (the only VM figures worth quoting);
* ``sync_time``       – how long does a sync take: the proxier's render (emulator) and the kernel's
  load of the same text (iptables-restore, ipset restore, nft -f, the incremental change);
* ``ruleset_size``    – how big is what a node holds: iptables rules, IPVS virtual/real servers, ipset
  entries, nftables rules/chains/elements, and what the incremental change writes.

Series never mix sources: a line is kernel, model or emulator, and its label says which.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from netsim.benchmarks.anchors import FIRST_PACKET
from netsim.benchmarks.records import Record, select

# one colour and marker per proxy mode, in the registry's order of kube-proxy's modes
# (netsim.rules.registry.known_modes: iptables red, IPVS blue, nftables green, then any other)
PALETTE = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink")
MARKERS = ("s", "^", "D", "o", "v", "P")


def plotted_modes() -> tuple[str, ...]:
    from netsim.rules.registry import known_modes
    return known_modes(kube_proxy_only=True)


def mode_colour(mode: str) -> str:
    modes = plotted_modes()
    return PALETTE[modes.index(mode) % len(PALETTE)] if mode in modes else "tab:gray"


def mode_marker(mode: str) -> str:
    modes = plotted_modes()
    return MARKERS[modes.index(mode) % len(MARKERS)] if mode in modes else "x"

BACKEND_COLOURS = {"iptables-nft": "tab:red", "iptables-legacy": "tab:orange", "none": "tab:gray"}


def smallest_endpoints(records: Sequence[Record]) -> int:
    es = [r.endpoints_per_service for r in records if r.services > 0 and r.endpoints_per_service > 0]
    return min(es) if es else 1


def _series(ax, rows: Sequence[Record], label: str, scale: float = 1.0, **style) -> bool:
    rows = [r for r in rows if r.services > 0]
    if not rows:
        return False
    xs = [r.services for r in rows]
    ys = [r.value * scale for r in rows]
    if any(r.spread for r in rows) and not any("statistic" in r.labels for r in rows):
        # timings: the median with the repeats' min..max (a percentile of a sample set has no error bar)
        lo = [max(0.0, (r.value - r.spread["min"]) * scale) if r.spread else 0.0 for r in rows]
        hi = [max(0.0, (r.spread["max"] - r.value) * scale) if r.spread else 0.0 for r in rows]
        ax.errorbar(xs, ys, yerr=[lo, hi], label=label, capsize=3, marker="o", **style)
    else:
        ax.plot(xs, ys, label=label, marker="o", **style)
    return True


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        paths.append(p)
    return paths


def _finish(plt, fig, ax, drawn: bool, out_dir: Path, name: str, note: str = "", note_colour: str = "black",
            legend_size: int = 7) -> list[Path]:
    """Close an empty plot (nothing written); else add the note and the legend, save PNG + SVG."""
    if not drawn:
        plt.close(fig)
        return []
    if note:
        ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, color=note_colour)
    ax.legend(fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    paths = _save(fig, out_dir, name)
    plt.close(fig)
    return paths


def _new(title: str, ylabel: str, logy: bool = True):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("Services (ClusterIP, one port each)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    return plt, fig, ax


def plot_rules_evaluated(records: Sequence[Record], out_dir: Path) -> list[Path]:
    e = smallest_endpoints(records)
    plt, fig, ax = _new(f"Rules the kernel evaluates per packet (model, {e} endpoint/Service)", "rules evaluated")
    drawn = False
    for mode in plotted_modes():
        colour = mode_colour(mode)
        drawn |= _series(ax, select(records, mode=mode, metric="rules_first_packet", position="last",
                                    endpoints_per_service=e), f"{mode}: first packet, last Service", color=colour)
        drawn |= _series(ax, select(records, mode=mode, metric="rules_first_packet_mean", endpoints_per_service=e),
                         f"{mode}: first packet, mean over Services", color=colour, linestyle="--")
        drawn |= _series(ax, select(records, mode=mode, metric="rules_established_packet", endpoints_per_service=e),
                         f"{mode}: established packet", color=colour, linestyle=":")
    return _finish(plt, fig, ax, drawn, out_dir, "rules_evaluated", legend_size=8, note_colour="tab:blue",
                   note="IPVS: the constant ipset rules; its hash lookups are not rules. nftables: the rules "
                        "entered; its verdict-map lookups are hash lookups, not rules")


def host_kernel(records: Sequence[Record]) -> list[Record]:
    """Kernel records of this machine's kernel (not a VM's: those carry a ``vm`` label)."""
    return [r for r in records if r.source == "kernel" and "vm" not in r.labels]


def vm_kernel(records: Sequence[Record]) -> list[Record]:
    """Kernel records measured inside the IPVS VM (software-emulated; netsim.benchmarks.vm_runner)."""
    return [r for r in records if r.source == "kernel" and "vm" in r.labels]


def _iptables_only(mode: str) -> bool:
    from netsim.rules.registry import ProxyModeError, get
    try:
        return get(mode).iptables_only
    except ProxyModeError:
        return False


def plot_kernel_latency(records: Sequence[Record], out_dir: Path) -> list[Path]:
    plt, fig, ax = _new("First-connection latency, pod → ClusterIP (kernel, this machine)", "µs (connect())")
    host = host_kernel(records)
    drawn = False
    for backend in ("iptables-nft", "iptables-legacy"):
        colour = BACKEND_COLOURS[backend]
        for position, style in (("last", "-"), ("first", "--")):
            drawn |= _series(ax, select(host, mode="iptables", metric="kernel_first_connection_latency_p50",
                                        backend=backend, position=position),
                             f"iptables ({backend}) p50, {position} Service", color=colour, linestyle=style)
        _series(ax, select(host, mode="iptables", metric="kernel_first_connection_latency_p99", backend=backend,
                           position="last"),
                f"iptables ({backend}) p99, last Service", color=colour, linestyle=":", alpha=0.6)
    measured_modes = set()
    for mode in plotted_modes():
        if _iptables_only(mode):
            continue
        colour = mode_colour(mode)
        for position, style in (("last", "-"), ("first", "--")):
            got = _series(ax, select(host, mode=mode, metric="kernel_first_connection_latency_p50",
                                     position=position), f"{mode} p50, {position} Service", color=colour,
                          linestyle=style)
            drawn |= got
            if got:
                measured_modes.add(mode)
        _series(ax, select(host, mode=mode, metric="kernel_first_connection_latency_p99", position="last"),
                f"{mode} p99, last Service", color=colour, linestyle=":", alpha=0.6)
    floor = select(host, metric="kernel_first_connection_latency_p50", position="pod-ip")
    if floor:
        ax.axhline(floor[0].value, color="tab:gray", linestyle="-.",
                   label=f"floor: no rules, straight to the pod (p50 {floor[0].value:.0f} µs)")
    if not drawn and not floor:
        plt.close(fig)
        return []
    for mode in plotted_modes():
        for metric, fill in (("kernel_first_connection_latency_p50", "full"),
                             ("kernel_first_connection_latency_p99", "none")):
            pts = [a for a in FIRST_PACKET if a.mode == mode and a.metric == metric]
            if pts:
                stat = metric.rsplit("_", 1)[1]
                ax.plot([a.services for a in pts], [a.value for a in pts], linestyle="none",
                        marker=mode_marker(mode), fillstyle=fill, color=mode_colour(mode), markersize=8,
                        label=f"published: {mode} {stat}, {pts[0].label}")
    missing = [m for m in plotted_modes() if not _iptables_only(m) and m not in measured_modes]
    note = "Published points: kubernetes.io/blog/2025/02/28/nftables-kube-proxy (other hardware)"
    if missing:
        note += f"; no kernel series here for {', '.join(missing)} (this kernel lacks it: see the VM plot)"
    return _finish(plt, fig, ax, True, out_dir, "kernel_latency", note=note)


# p50 only: a p99 under software emulation is the guest's scheduling noise (REPORT.md's table has it)
VM_RATIO_METRICS = (("kernel_first_connection_latency_p50_ratio_to_iptables", "p50", "-"),)


def plot_vm_ratios(records: Sequence[Record], out_dir: Path) -> list[Path]:
    """Per mode, its first-connection p50 ÷ iptables' (iptables-nft) of the same VM boot."""
    vm = vm_kernel(records)
    if not vm:
        return []
    runner = vm[0].labels.get("kernel_runner", "vm")
    plt, fig, ax = _new(f"First connection in the IPVS VM ({runner}, qemu without KVM: software-emulated)\n"
                        "each mode's connect() latency ÷ iptables' (iptables-nft), same boot, same size",
                        "ratio to iptables (log)")
    drawn = False
    boots = sorted({r.labels.get("vm_boot") or "" for r in vm})
    for b, boot in enumerate(boots):
        in_boot = [r for r in vm if (r.labels.get("vm_boot") or "") == boot]
        for mode in plotted_modes():
            colour = mode_colour(mode)
            for metric, stat, style in VM_RATIO_METRICS:
                for position, marker in (("last", "o"), ("first", "s")):
                    rows = [r for r in select(in_boot, mode=mode, metric=metric, position=position) if r.services > 0]
                    if not rows:
                        continue
                    rows.sort(key=lambda r: r.services)
                    which = f", boot {boot}" if len(boots) > 1 else ""
                    ax.plot([r.services for r in rows], [r.value for r in rows], marker=marker, color=colour,
                            linestyle=("-", "--", ":")[b % 3], alpha=1.0 if position == "last" else 0.6,
                            label=f"{mode} / iptables, {stat}, {position} Service{which}")
                    drawn = True
    if drawn:
        ax.axhline(1.0, color="tab:red", linestyle="-", linewidth=0.8, label="iptables (= 1)")
    return _finish(plt, fig, ax, drawn, out_dir, "vm_ratios",
                   note="Absolute VM times are not comparable with a real node; only these same-boot ratios are")


def plot_sync_time(records: Sequence[Record], out_dir: Path) -> list[Path]:
    e = smallest_endpoints(records)
    plt, fig, ax = _new(f"Sync time: render (emulator) and kernel load ({e} endpoint/Service)", "seconds")
    host = host_kernel(records)
    drawn = False
    for mode in plotted_modes():
        colour = mode_colour(mode)
        drawn |= _series(ax, select(records, mode=mode, metric="render_seconds", sync="full", endpoints_per_service=e),
                         f"{mode}: proxier render, full sync (emulator)", color=colour, linestyle=":")
    for backend in ("iptables-nft", "iptables-legacy"):
        colour = BACKEND_COLOURS[backend]
        drawn |= _series(ax, select(host, mode="iptables", metric="kernel_load_seconds", backend=backend,
                                    tool="iptables-restore", endpoints_per_service=e),
                         f"iptables: iptables-restore, full ({backend}, kernel)", color=colour)
        drawn |= _series(ax, select(host, mode="iptables", metric="kernel_incremental_seconds", backend=backend,
                                    endpoints_per_service=e),
                         f"iptables: partial restore, +1 endpoint ({backend}, kernel)", color=colour, linestyle="--")
    drawn |= _series(ax, select(host, mode="ipvs", metric="kernel_load_seconds", tool="ipset restore",
                                endpoints_per_service=e), "ipvs: ipset restore (kernel)", color="tab:blue")
    drawn |= _series(ax, select(host, mode="ipvs", metric="kernel_load_seconds", tool="iptables-restore",
                                endpoints_per_service=e), "ipvs: its iptables rules (kernel)", color="tab:cyan")
    colour = mode_colour("nftables")
    drawn |= _series(ax, select(host, mode="nftables", metric="kernel_load_seconds", tool="nft -f",
                                endpoints_per_service=e), "nftables: nft -f, full (kernel)", color=colour)
    drawn |= _series(ax, select(host, mode="nftables", metric="kernel_incremental_seconds", tool="nft -f",
                                endpoints_per_service=e), "nftables: nft -f, +1 endpoint (kernel)", color=colour,
                     linestyle="--")
    return _finish(plt, fig, ax, drawn, out_dir, "sync_time")


def plot_ruleset_size(records: Sequence[Record], out_dir: Path) -> list[Path]:
    e = smallest_endpoints(records)
    plt, fig, ax = _new(f"What a node holds ({e} endpoint/Service, model)", "count")
    drawn = _series(ax, select(records, mode="iptables", metric="ruleset_rules", table="all", endpoints_per_service=e),
                    "iptables mode: iptables rules", color="tab:red")
    drawn |= _series(ax, select(records, mode="iptables", metric="incremental_restore_rules", endpoints_per_service=e),
                     "iptables mode: rules in the partial restore (+1 endpoint)", color="tab:red", linestyle="--")
    drawn |= _series(ax, select(records, mode="ipvs", metric="virtual_servers", endpoints_per_service=e),
                     "ipvs mode: virtual servers", color="tab:blue")
    drawn |= _series(ax, select(records, mode="ipvs", metric="real_servers", endpoints_per_service=e),
                     "ipvs mode: real servers", color="tab:blue", linestyle="--")
    drawn |= _series(ax, select(records, mode="ipvs", metric="ipset_entries", endpoints_per_service=e),
                     "ipvs mode: ipset entries", color="tab:purple")
    drawn |= _series(ax, select(records, mode="ipvs", metric="ruleset_rules", table="all", endpoints_per_service=e),
                     "ipvs mode: iptables rules", color="tab:cyan")
    green = mode_colour("nftables")
    drawn |= _series(ax, select(records, mode="nftables", metric="ruleset_rules", table="all", endpoints_per_service=e),
                     "nftables mode: nft rules", color=green)
    drawn |= _series(ax, select(records, mode="nftables", metric="ruleset_elements", endpoints_per_service=e),
                     "nftables mode: set/map elements", color="tab:olive")
    drawn |= _series(ax, select(records, mode="nftables", metric="ruleset_chains", endpoints_per_service=e),
                     "nftables mode: chains", color=green, linestyle="-.")
    drawn |= _series(ax, select(records, mode="nftables", metric="incremental_restore_rules", endpoints_per_service=e),
                     "nftables mode: rules in the partial sync (+1 endpoint)", color=green, linestyle="--")
    return _finish(plt, fig, ax, drawn, out_dir, "ruleset_size")


def write_plots(records: Sequence[Record], out_dir: Path) -> list[Path]:
    """Every plot that has data; raises ModuleNotFoundError when matplotlib is missing."""
    import matplotlib  # noqa: F401 - fail early, before any file is written
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for fn in (plot_rules_evaluated, plot_kernel_latency, plot_vm_ratios, plot_sync_time, plot_ruleset_size):
        paths += fn(records, out_dir)
    return paths


def plot_names(paths: Sequence[Path]) -> dict[str, Optional[Path]]:
    return {p.stem: p for p in paths if p.suffix == ".png"}
