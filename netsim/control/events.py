"""Watch events (what a proxier resyncs on) and the kubectl-style event log (what `netsim events` prints)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class WatchEvent:
    """An API store change, as a watch stream delivers it."""
    type: str          # ADDED | MODIFIED | DELETED
    kind: str          # Node | Pod | Service | EndpointSlice | Namespace | Deployment
    obj: Any


@dataclass(frozen=True)
class Event:
    """A core/v1 Event: who did what to which object, at which cluster time."""
    time: float
    type: str          # Normal | Warning
    reason: str
    object: str        # kubectl's kind/name, e.g. pod/httpd-app-7d9c-abcde
    namespace: str
    source: str        # component: kube-apiserver, scheduler, kubelet/node-1, ...
    message: str


Watcher = Callable[[WatchEvent], None]


def format_events(events: list[Event], all_namespaces: bool = True) -> str:
    """Render events as `kubectl get events` does: LAST SEEN, TYPE, REASON, OBJECT, SOURCE, MESSAGE."""
    header = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SOURCE", "MESSAGE"]
    if all_namespaces:
        header.insert(0, "NAMESPACE")
    rows = []
    for e in events:
        row = [_age(e.time), e.type, e.reason, e.object, e.source, e.message]
        if all_namespaces:
            row.insert(0, e.namespace or "")
        rows.append(row)
    return format_table(header, rows)


def _age(t: float) -> str:
    """Cluster time as an offset from the start (kubectl prints ages; the emulator's clock starts at 0)."""
    if t < 120:
        return f"t+{t:g}s"
    return f"t+{int(t // 60)}m{int(t % 60)}s"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """kubectl's column layout: left-aligned, three spaces between columns."""
    widths = [len(h) for h in header]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(str(cell)))
    lines = []
    for r in [header] + rows:
        cells = [str(c).ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)
