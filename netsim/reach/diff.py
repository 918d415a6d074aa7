"""Differential reachability between two sides of the matrix — two versions of the manifests in one
mode, or one version in two modes — in the vocabulary of Batfish's ``differentialReachability``
(rows whose outcome differs, with both sides and a witness each) and netpol-analyzer's
``diff`` (``diff-type`` added / removed / changed).

``diff.json`` schema ``netsim.reach.diff/v1``::

  {"schema": "netsim.reach.diff/v1", "before": {"version", "mode"}, "after": {"version", "mode"},
   "summary": {"changed": n, "added": n, "removed": n, "same": n},
   "rows": [{"key": str, "diff_type": "added"|"removed"|"changed",
             "source": {"class": str, "sample_members": [str], "count": int},
             "destination": {"service": "ns/name", "address": str, "port": int, "proto": str, "kind": str},
             "mode": str,                                  # "iptables", or "iptables->ipvs"
             "before": {"disposition", "endpoints", "snat"} | null,
             "after": {"disposition", "endpoints", "snat"} | null,
             "witness": {"before": trace|null, "after": trace|null}}]}   # netsim.trace/v1 each
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

SCHEMA = "netsim.reach.diff/v1"


@dataclass(frozen=True)
class Side:
    version: str
    mode: str

    def label(self) -> str:
        return f"{self.version}/{self.mode}"


@dataclass
class Diff:
    before: Side
    after: Side
    rows: list[dict] = field(default_factory=list)
    same: int = 0

    def counts(self) -> dict[str, int]:
        out = {"changed": 0, "added": 0, "removed": 0, "same": self.same}
        for r in self.rows:
            out[r["diff_type"]] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return f"{c['changed']} changed, {c['added']} added, {c['removed']} removed, {c['same']} same"

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "before": {"version": self.before.version, "mode": self.before.mode},
                "after": {"version": self.after.version, "mode": self.after.mode},
                "summary": self.counts(), "rows": self.rows}


def _outcome(row: Optional[dict]) -> Optional[dict]:
    if row is None:
        return None
    return {"disposition": row["disposition"], "endpoints": json.loads(row["endpoints"]), "snat": row["snat"]}


def _same(a: dict, b: dict) -> bool:
    """Rows agree when every branch agrees (disposition, endpoint, SNAT, errno, share). Endpoints
    are compared as written: a pod recreated under another name is a change a user should see."""
    return a["disposition"] == b["disposition"] and a["branches"] == b["branches"]


def diff_rows(rows: list[dict], before: Side, after: Side,
              witness: Optional[Callable[[Side, dict], Optional[dict]]] = None) -> Diff:
    """Align the two sides' rows by probe key; ``witness(side, row)`` gives a trace (as a dict) of
    the row's representative probe, for rows that differ."""
    a = {r["key"]: r for r in rows if r["version"] == before.version and r["mode"] == before.mode}
    b = {r["key"]: r for r in rows if r["version"] == after.version and r["mode"] == after.mode}
    d = Diff(before, after)
    mode = before.mode if before.mode == after.mode else f"{before.mode}->{after.mode}"
    for key in sorted(set(a) | set(b)):
        ra, rb = a.get(key), b.get(key)
        if ra is not None and rb is not None and _same(ra, rb):
            d.same += 1
            continue
        kind = "added" if ra is None else "removed" if rb is None else "changed"
        any_row = rb or ra
        d.rows.append({
            "key": key, "diff_type": kind,
            "source": {"class": any_row["source"], "sample_members": [s for s in any_row["samples"].split(",") if s],
                       "count": any_row["count"]},
            "destination": {"service": any_row["service"], "address": any_row["address"],
                            "port": any_row["port"], "proto": any_row["proto"], "kind": any_row["dest_kind"]},
            "mode": mode,
            "before": _outcome(ra), "after": _outcome(rb),
            "witness": {"before": witness(before, ra) if (witness and ra) else None,
                        "after": witness(after, rb) if (witness and rb) else None},
        })
    return d


def render_md(d: Diff) -> str:
    """diff.md: the summary and a table of the rows that differ."""
    lines = [f"# netsim reach diff: {d.before.label()} → {d.after.label()}", "", d.summary(), ""]
    if d.rows:
        lines += ["| diff | destination | source class | members | before | after |",
                  "| --- | --- | --- | ---: | --- | --- |"]
        for r in d.rows:
            dst = r["destination"]
            lines.append(f"| {r['diff_type']} | {dst['service']} {dst['kind']} {dst['address']}:{dst['port']}/"
                         f"{dst['proto']} | {r['source']['class']} | {r['source']['count']} | "
                         f"{_cell(r['before'])} | {_cell(r['after'])} |")
    return "\n".join(lines) + "\n"


def _cell(o: Optional[dict]) -> str:
    if o is None:
        return "—"
    eps = ", ".join(f"{k.split(' ')[-1]} {v:.0%}" for k, v in o["endpoints"].items())
    snat = " SNAT" if o["snat"] else ""
    return f"{o['disposition']}{snat}{' → ' + eps if eps else ''}".replace("|", "/")
