"""One step of a trace: what happened to a packet on a host (an ACTION word, a detail line, extras).

It sits in the leaf package because the rule engines' hook functions (netsim.rules) write steps
too, and DESIGN.md's arrows run data plane -> rules: the trace that collects the steps lives in
netsim.dataplane.trace, the step itself here.
"""
from __future__ import annotations

from typing import Any, Optional


class Step:
    """One thing that happened to a packet on a host.

    The detail text is formatted only when read (``detail % args``): walking stays cheap and the
    args are snapshots (:class:`PacketSnapshot`, :class:`Addr`, conntrack snapshots), so the text
    says what was true at that step.
    """

    __slots__ = ("action", "_detail", "_args", "extra")

    def __init__(self, action: str, detail: str, extra: Optional[dict] = None, args: Optional[tuple] = None) -> None:
        self.action = action
        self._detail = detail
        self._args = args
        self.extra = extra

    @property
    def detail(self) -> str:
        if self._args is not None:
            self._detail = self._detail % tuple(str(a) for a in self._args)
            self._args = None
        return self._detail

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"action": self.action, "detail": self.detail}
        if self.extra:
            d.update({k: str(v) if not isinstance(v, (int, str)) else v for k, v in self.extra.items()})
        return d

    def __repr__(self) -> str:
        return f"{self.action}({self.detail})"
