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
