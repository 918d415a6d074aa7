"""``report.html``: one self-contained page (plotly.js inlined) with a heatmap of the matrix
aggregated by source (kind and node view) × Service namespace — cell = share of class members whose
probes are delivered, hover listing the classes — and the top changed rows of a diff with their
witness traces."""
from __future__ import annotations

import html
from collections import defaultdict
from typing import Optional

from netsim.reach.diff import Diff


def _source_group(source: str) -> str:
    first = source.split(" -> ")[0].split(" | ")[0]
    kind = first.split("@", 1)[0]
    view = first.split(" on ", 1)[1].split(" (", 1)[0] if " on " in first else "-"
    return f"{kind} on {view}"


def heatmap_data(rows: list[dict], version: str, mode: str) -> tuple[list[str], list[str], list[list], list[list]]:
    """(y labels, x labels, z shares, hover text) for one model."""
    tot: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    hover: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        if r["version"] != version or r["mode"] != mode:
            continue
        y, x = _source_group(r["source"]), r["service"].split("/", 1)[0]
        share = _delivered_share(r)
        tot[(y, x)][0] += share * r["count"]
        tot[(y, x)][1] += r["count"]
        if len(hover[(y, x)]) < 12:
            hover[(y, x)].append(f"{r['service']} {r['dest_kind']} :{r['port']} ← {r['source'][:60]}: "
                                 f"{r['disposition']}")
    ys = sorted({k[0] for k in tot})
    xs = sorted({k[1] for k in tot})
    z = [[(tot[(y, x)][0] / tot[(y, x)][1]) if (y, x) in tot and tot[(y, x)][1] else None for x in xs] for y in ys]
    text = [["<br>".join(hover.get((y, x), [])) for x in xs] for y in ys]
    return ys, xs, z, text


def _delivered_share(r: dict) -> float:
    import json
    branches = json.loads(r["branches"]) if r.get("branches") else []
    return sum(b["share"] for b in branches if b["disposition"] == "DELIVERED")


def write_report(path: str, rows: list[dict], models: list[tuple[str, str]], diff: Optional[Diff] = None,
                 top: int = 20) -> None:
    """The page; needs plotly (``pip install 'kube-netsim[reach]'``)."""
    import plotly.graph_objects as go
    from plotly.io import to_html
    parts = ["<h1>netsim reach</h1>"]
    first = True
    for version, mode in models:
        ys, xs, z, text = heatmap_data(rows, version, mode)
        if not ys:
            continue
        fig = go.Figure(go.Heatmap(z=z, x=xs, y=ys, text=text, hovertemplate="%{y} → %{x}: %{z:.0%}<br>%{text}"
                                   "<extra></extra>", colorscale="RdYlGn", zmin=0, zmax=1,
                                   colorbar={"title": "delivered"}))
        fig.update_layout(title=f"share of new connections delivered — {version} / {mode}",
                          xaxis_title="Service namespace", yaxis_title="source (kind on node view)",
                          height=max(300, 40 * len(ys) + 150))
        parts.append(to_html(fig, include_plotlyjs="inline" if first else False, full_html=False))
        first = False
    if diff is not None:
        parts.append(f"<h2>diff {html.escape(diff.before.label())} → {html.escape(diff.after.label())}</h2>"
                     f"<p>{html.escape(diff.summary())}</p>")
        for r in diff.rows[:top]:
            dst = r["destination"]
            parts.append(f"<h3>{r['diff_type']}: {html.escape(dst['service'])} {dst['kind']} {dst['address']}:"
                         f"{dst['port']}/{dst['proto']} ← {html.escape(r['source']['class'])}</h3>"
                         f"<p>before: {html.escape(str(r['before']))}<br>after: {html.escape(str(r['after']))}</p>")
            for side in ("before", "after"):
                w = r["witness"][side]
                if w:
                    parts.append(f"<details><summary>witness ({side})</summary><pre>{html.escape(w.get('text', ''))}"
                                 "</pre></details>")
    with open(path, "w") as f:
        f.write("<!DOCTYPE html><html><head><meta charset='utf-8'><title>netsim reach</title></head><body>"
                + "\n".join(parts) + "</body></html>")


def write_png(path: str, rows: list[dict], models: list[tuple[str, str]]) -> None:
    """The report's heatmap (the same aggregation, heatmap_data) as a static PNG, one panel per model
    side by side — with matplotlib, for a README or a CI artifact viewed without a browser."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(v, m, heatmap_data(rows, v, m)) for v, m in models]
    panels = [p for p in panels if p[2][0]]
    if not panels:
        return
    ys_all = sorted({y for _v, _m, d in panels for y in d[0]})
    xs_all = sorted({x for _v, _m, d in panels for x in d[1]})
    fig, axes = plt.subplots(1, len(panels), figsize=(0.9 * len(xs_all) * len(panels) + 5, 0.42 * len(ys_all) + 2),
                             squeeze=False, sharey=True)
    im = None
    for ax, (version, mode, (ys, xs, z, _text)) in zip(axes[0], panels):
        at = {(y, x): z[i][j] for i, y in enumerate(ys) for j, x in enumerate(xs)}
        grid = [[float("nan") if at.get((y, x)) is None else at[(y, x)] for x in xs_all] for y in ys_all]
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(xs_all)), xs_all, rotation=30, ha="right")
        ax.set_yticks(range(len(ys_all)), ys_all)
        ax.set_title(f"{version} / {mode}")
        ax.set_xlabel("Service namespace")
        for i, row in enumerate(grid):
            for j, c in enumerate(row):
                if c == c:                    # not NaN
                    ax.text(j, i, f"{c:.0%}", ha="center", va="center", fontsize=8)
    axes[0][0].set_ylabel("source (kind on node view)")
    fig.suptitle("netsim reach: share of new connections delivered")
    fig.colorbar(im, ax=axes[0].tolist(), label="delivered", shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
