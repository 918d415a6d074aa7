"""What `netsim reach` writes: ``matrix.parquet`` (class level, partitioned by version and mode) and
``expansion.parquet`` (pod → class, node → view, Service → signature) with pyarrow, CSV on request
(or when pyarrow is not installed), and the terminal grid (cyclonus' truth-table style)."""
from __future__ import annotations

import csv
import os
from typing import Optional, Sequence

MATRIX_COLUMNS = ("key", "version", "mode", "service", "dest_kind", "address", "port", "proto", "source", "count",
                  "samples", "probe_src", "probe_namespace", "disposition", "endpoints", "snat", "rules_evaluated",
                  "branches", "error", "shared_from")
EXPANSION_COLUMNS = ("version", "what", "name", "class")
GRID_MAX = 40           # classes and destinations shown as a grid up to this many each


def have_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_table(path_stem: str, rows: list[dict], columns: Sequence[str], *, csv_too: bool = False,
                partition: Optional[list[str]] = None) -> list[str]:
    """Parquet (partitioned by ``partition`` columns: a directory per value, Hive style) when pyarrow
    is there, CSV when asked or when it is not; returns the paths written."""
    written = []
    if have_pyarrow():
        import pyarrow as pa
        import pyarrow.parquet as pq
        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows],
                                     schema=_schema(pa, columns, rows))
        path = path_stem + ".parquet"
        if partition:
            pq.write_to_dataset(table, path, partition_cols=partition, existing_data_behavior="delete_matching")
        else:
            pq.write_table(table, path)
        written.append(path)
    if csv_too or not have_pyarrow():
        path = path_stem + ".csv"
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        written.append(path)
    return written


def _schema(pa, columns: Sequence[str], rows: list[dict]):
    ints = {"port", "count", "rules_evaluated"}
    fields = []
    for c in columns:
        if c in ints:
            fields.append(pa.field(c, pa.int64()))
        elif c == "snat":
            fields.append(pa.field(c, pa.bool_()))
        else:
            fields.append(pa.field(c, pa.string()))
    return pa.schema(fields)


def read_matrix(out_dir: str) -> list[dict]:
    """Rows written by an earlier run (``--resume``): parquet if there, else CSV; [] if neither."""
    pq_path = os.path.join(out_dir, "matrix.parquet")
    if os.path.exists(pq_path) and have_pyarrow():
        import pyarrow.parquet as pq
        rows = pq.read_table(pq_path).to_pylist()
        for r in rows:
            r["version"], r["mode"] = str(r["version"]), str(r["mode"])
        return rows
    csv_path = os.path.join(out_dir, "matrix.csv")
    if os.path.exists(csv_path):
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            r["port"], r["count"] = int(r["port"]), int(r["count"])
            r["rules_evaluated"] = int(r["rules_evaluated"] or 0)
            r["snat"] = {"True": True, "False": False}.get(r["snat"])
        return rows
    return []


def grid(rows: list[dict], version: str, mode: str, diff_symbols: Optional[dict[str, str]] = None) -> Optional[str]:
    """A cyclonus-style truth table (sources down, destinations across) when small enough, else None.
    Cells: ``.`` delivered, ``X`` not, ``~`` some branches delivered; with ``diff_symbols`` (key →
    symbol) the diff's symbols instead (``.`` same, ``C`` changed, ``+`` added, ``-`` removed)."""
    mine = [r for r in rows if r["version"] == version and r["mode"] == mode]
    srcs = sorted({r["source"].split(" -> ")[0] for r in mine})
    dsts = sorted({_dest(r) for r in mine})
    if not mine or len(srcs) > GRID_MAX or len(dsts) > GRID_MAX:
        return None
    cell: dict[tuple[str, str], str] = {}
    for r in mine:
        s, d = r["source"].split(" -> ")[0], _dest(r)
        sym = diff_symbols.get(r["key"], ".") if diff_symbols is not None else _symbol(r["disposition"])
        prev = cell.get((s, d))
        cell[(s, d)] = sym if prev is None or prev == sym else "~"
    if diff_symbols is not None:
        for key, sym in diff_symbols.items():
            if sym == "+":
                for r in rows:
                    if r["key"] == key:
                        cell[(r["source"].split(" -> ")[0], _dest(r))] = "+"
    lines = ["columns:"] + [f"  {i:>2}  {d}" for i, d in enumerate(dsts)]
    lines.append("")
    width = max(len(s) for s in srcs)
    lines.append(" " * width + "  " + " ".join(f"{i:>2}" for i in range(len(dsts))))
    for s in srcs:
        lines.append(f"{s:<{width}}  " + " ".join(f"{cell.get((s, d), ' '):>2}" for d in dsts))
    return "\n".join(lines)


def _dest(r: dict) -> str:
    return f"{r['service']} {r['dest_kind']} :{r['port']}/{r['proto']}"


def _symbol(disposition: str) -> str:
    if disposition == "DELIVERED":
        return "."
    return "~" if "DELIVERED" in disposition.split("|") else "X"
