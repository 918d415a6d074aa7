"""Watch events (what a proxier resyncs on) and the kubectl-style event log (what `netsim events` prints)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class WatchEvent:
    """An API store change, as a watch stream delivers it."""
    type: str          # ADDED | MODIFIED | DELETED
    kind: str          # Node | Pod | Service | EndpointSlice | Namespace | Deployment
    obj: Any


class Event:
    """A core/v1 Event: who did what to which object, at which cluster time.

    A 10,000-Service cluster records ~180,000 of them while it loads, nearly all about pods, so an
    event is slotted (no per-object dict) and a message that only restates the event's own fields
    plus one value (``Scheduled``: "Successfully assigned NS/NAME to NODE") may be kept as a shared
    ``str.format`` template and that value, and written out when read."""

    __slots__ = ("time", "type", "reason", "object", "namespace", "source", "_text", "_arg")

    def __init__(self, time: float, type: str, reason: str, object: str, namespace: str, source: str,
                 message: str = "", *, template: Optional[str] = None, arg: str = "") -> None:
        for k, v in (("time", time), ("type", type), ("reason", reason), ("object", object),
                     ("namespace", namespace), ("source", source), ("_text", template or message),
                     ("_arg", arg if template else None)):
            _set(self, k, v)

    @property
    def message(self) -> str:
        if self._arg is None:
            return self._text
        return self._text.format(namespace=self.namespace, name=self.object.partition("/")[2], arg=self._arg)

    def _fields(self) -> tuple:
        return (self.time, self.type, self.reason, self.object, self.namespace, self.source, self.message)

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if isinstance(other, Event) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return ("Event(" + ", ".join(f"{k}={v!r}" for k, v in zip(
            ("time", "type", "reason", "object", "namespace", "source", "message"), self._fields())) + ")")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")      # frozen, as it was as a dataclass

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple:
        return (_restore, (self.time, self.type, self.reason, self.object, self.namespace, self.source,
                           self._text, self._arg))


_set = object.__setattr__


def _restore(time: float, type: str, reason: str, object: str, namespace: str, source: str, text: str,
             arg: Optional[str]) -> Event:
    if arg is None:
        return Event(time, type, reason, object, namespace, source, text)
    return Event(time, type, reason, object, namespace, source, template=text, arg=arg)


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
