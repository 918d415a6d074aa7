"""Watch events (what a proxier resyncs on) and the kubectl-style event log (what `netsim events` prints)."""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union, overload


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


class EventLog:
    """The cluster's events in the order they were recorded, kept column-wise and made into
    ``Event`` objects when read (iterated, indexed, sliced): a list of ``Event``s to whoever reads it.

    A 10,000-Service cluster records ~160,000 events while it loads, three per pod
    (SuccessfulCreate, Scheduled, Started), differing only in time, object and one value. An
    ``Event`` object costs ~100 bytes; here an event is an index into a table of the few distinct
    (type, reason, namespace, source, template, object kind) it has (4 bytes) and three
    references, to its time, object (or the object's name alone, e.g. the pod's own name when the
    kind says ``pod/``) and value (the message itself when it has no template), all shared with the
    clock, the pod and each other (~28 bytes)."""

    __slots__ = ("_times", "_objects", "_values", "_kinds", "_kind_table", "_kind_index")

    def __init__(self) -> None:
        self._times: list[float] = []
        self._objects: list[str] = []
        self._values: list[str] = []
        self._kinds = array("I")
        # (type, reason, namespace, source, template or None: the value is the message, object prefix)
        self._kind_table: list[tuple[str, str, str, str, Optional[str], str]] = []
        self._kind_index: dict[tuple, int] = {}

    def record(self, time: float, type: str, reason: str, object: str, namespace: str, source: str,
               message: str = "", *, template: Optional[str] = None, arg: str = "", prefix: str = "") -> None:
        """Append an event; the arguments are ``Event``'s, but for ``prefix`` (e.g. ``pod/``): the
        event's object is ``prefix + object``, kept as ``object`` alone (the pod's name)."""
        kind = (type, reason, namespace, source, template or None, prefix)
        i = self._kind_index.get(kind)
        if i is None:
            i = self._kind_index[kind] = len(self._kind_table)
            self._kind_table.append(kind)
        self._kinds.append(i)
        self._times.append(time)
        self._objects.append(object)
        self._values.append(arg if template else message)

    def append(self, event: Event) -> None:
        self.record(event.time, event.type, event.reason, event.object, event.namespace, event.source,
                    event._text, template=event._text if event._arg is not None else None,
                    arg=event._arg or "")

    def _event(self, i: int) -> Event:
        type_, reason, namespace, source, template, prefix = self._kind_table[self._kinds[i]]
        obj = prefix + self._objects[i] if prefix else self._objects[i]
        if template is None:
            return Event(self._times[i], type_, reason, obj, namespace, source, self._values[i])
        return Event(self._times[i], type_, reason, obj, namespace, source, template=template, arg=self._values[i])

    def __len__(self) -> int:
        return len(self._kinds)

    @overload
    def __getitem__(self, i: int) -> Event: ...

    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[Event, list[Event]]:
        if isinstance(i, slice):
            return [self._event(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("event index out of range")
        return self._event(i % n)

    def __iter__(self) -> Iterator[Event]:
        return (self._event(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (EventLog, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"EventLog({list(self)!r})"


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
