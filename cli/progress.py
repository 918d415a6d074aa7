"""Progress on stderr for the long steps of a command (netsim.control.progress), drawn with rich.

Shown only when stderr is a terminal, and only once the command has been busy for a second: a
quick command prints nothing more than before, and output piped or captured (scripts, CI, the
benchmarks) stays exactly the same. The display is transient: when the command ends it is
erased, leaving the command's own output. rich (Textualize/rich) draws bars, spinners and elapsed
times that redraw in place and cooperate with other writes to the terminal; without rich installed
there is simply no progress.
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from netsim.control.progress import reporting

DELAY_S = 1.0                 # nothing is drawn before the command has been busy this long


class RichReporter:
    """netsim.control.progress.Reporter drawing on a rich Progress, started after DELAY_S."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self._lock = threading.Lock()
        self._started = False
        self._timer = threading.Timer(DELAY_S, self._show)
        self._timer.daemon = True
        self._timer.start()

    def _show(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self.progress.start()

    def start(self, description: str, total: Optional[int]) -> int:
        return int(self.progress.add_task(description, total=total))

    def advance(self, task_id: int, n: int) -> None:
        self.progress.advance(task_id, n)           # type: ignore[arg-type]

    def stop(self, task_id: int) -> None:
        self.progress.remove_task(task_id)          # type: ignore[arg-type]

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            if self._started:
                self.progress.stop()
            self._started = True                    # a late timer draws nothing


@contextmanager
def command_progress() -> Iterator[None]:
    """Progress for the command run inside the block, on stderr if it is a terminal."""
    reporter = None
    if sys.stderr.isatty():
        try:
            from rich.console import Console
            reporter = RichReporter(Console(stderr=True))
        except ImportError:
            reporter = None
    if reporter is None:
        yield
        return
    try:
        with reporting(reporter):
            yield
    finally:
        reporter.close()
