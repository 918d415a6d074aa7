"""Progress of long steps (loading, a node's kube-proxy sync, ``--count``, ``verify``), reported to
whoever listens: the CLI shows it on a terminal (netsim.cli.progress); the API, the pytest plugin
and scripts see nothing.

The listener is a context variable (contextvars: per thread and per asyncio task, not a module
global another caller could overwrite), set for the length of a command by :func:`reporting`.

    with task("kube-proxy sync on node-3") as advance:      # advance(n): n more units done
        ...
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional, Protocol


class Reporter(Protocol):
    def start(self, description: str, total: Optional[int]) -> int: ...
    def advance(self, task_id: int, n: int) -> None: ...
    def stop(self, task_id: int) -> None: ...


_LISTENER: ContextVar[Optional[Reporter]] = ContextVar("netsim_progress", default=None)


def _nothing(n: int = 1) -> None:
    return None


@contextmanager
def task(description: str, total: Optional[int] = None) -> Iterator[Callable[..., None]]:
    """A step being done: yields ``advance(n=1)``; ``total`` units if known (else a spinner)."""
    r = _LISTENER.get()
    if r is None:
        yield _nothing
        return
    tid = r.start(description, total)

    def advance(n: int = 1) -> None:
        r.advance(tid, n)
    try:
        yield advance
    finally:
        r.stop(tid)


@contextmanager
def reporting(reporter: Optional[Reporter]) -> Iterator[None]:
    """Send the steps done inside the block to ``reporter``."""
    token = _LISTENER.set(reporter)
    try:
        yield
    finally:
        _LISTENER.reset(token)
