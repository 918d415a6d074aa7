"""Detached helper processes (pod servers, DNS servers): start many, then wait until all are ready.

A process signals readiness by creating its ready file once every socket is bound.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

READY_TIMEOUT = 30.0          # seconds; $NETSIM_READY_TIMEOUT overrides (a software-emulated VM is slow)


@dataclass
class Launch:
    proc: subprocess.Popen
    argv: list[str]
    ready: Path
    log: Path
    label: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def spawn(argv: list[str], ready: Path, log: Path, label: str) -> Launch:
    ready.unlink(missing_ok=True)
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    return Launch(proc, argv, ready, log, label)


def wait_ready(launches: list[Launch], timeout: Optional[float] = None) -> None:
    """Wait for every ready file; raise naming the first process that died or hung."""
    if timeout is None:
        timeout = float(os.environ.get("NETSIM_READY_TIMEOUT") or READY_TIMEOUT)
    deadline = time.monotonic() + timeout
    pending = list(launches)
    while pending:
        for ln in list(pending):
            if ln.ready.exists():
                pending.remove(ln)
            elif ln.proc.poll() is not None:
                tail = ln.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"{ln.label} exited with {ln.proc.returncode}: "
                                   f"{tail[0] if tail else 'no output'} (log {ln.log})")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{pending[0].label} not ready after {timeout:.0f}s (log {pending[0].log})")
        if pending:
            time.sleep(0.01)
