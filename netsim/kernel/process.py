"""Detached helper processes (pod servers, DNS servers): start many, then wait until all are ready.

A process signals readiness by creating its ready file once every socket is bound.

With ``$NETSIM_FORK_SERVERS`` set (the VM guest of `netsim verify --vm` sets it), a ``python -m MODULE
ARGS`` helper is forked from the caller and runs ``MODULE.main(ARGS)`` instead of starting a new
interpreter: under software emulation each interpreter start-up costs seconds of CPU, and a
cluster starts one per node and per CoreDNS pod. The forked child keeps the caller's command line;
`netsim down` recognises it when that command line names the cluster (``--cluster NAME``, as the
verify guest's does) or when the caller itself brings the cluster down (cleanup.stop_process).
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

READY_TIMEOUT = 30.0          # seconds; $NETSIM_READY_TIMEOUT overrides (a software-emulated VM is slow)
FORK_ENV = "NETSIM_FORK_SERVERS"


class Forked:
    """The handle of a forked helper (the subset of subprocess.Popen that Launch needs)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def fork_module(module: str, args: list[str], log: Path) -> Forked:
    """Fork; the child, in a session of its own with stdout/stderr to `log`, runs module.main(args)."""
    mod = importlib.import_module(module)          # loaded before the fork: the child inherits it
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = 1
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)      # whatever the caller had put there
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        code = mod.main(args) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:                          # noqa: BLE001 - reported in the log, then exit
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclass
class Launch:
    proc: "subprocess.Popen | Forked"
    argv: list[str]
    ready: Path
    log: Path
    label: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def spawn(argv: list[str], ready: Path, log: Path, label: str) -> Launch:
    ready.unlink(missing_ok=True)
    if os.environ.get(FORK_ENV, "") not in ("", "0") and len(argv) > 2 and argv[1] == "-m":
        return Launch(fork_module(argv[2], list(argv[3:]), log), argv, ready, log, label)
    with open(log, "ab") as f:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    return Launch(proc, argv, ready, log, label)


def wait_ready(launches: list[Launch], timeout: Optional[float] = None,
               log: Optional[Callable[[str], None]] = None) -> None:
    """Wait for every ready file; raise naming the first process that died or hung. `log` hears
    when each one became ready (a slow machine's start-up shows where its time goes)."""
    if timeout is None:
        timeout = float(os.environ.get("NETSIM_READY_TIMEOUT") or READY_TIMEOUT)
    t0 = time.monotonic()
    deadline = t0 + timeout
    pending = list(launches)
    while pending:
        for ln in list(pending):
            if ln.ready.exists():
                pending.remove(ln)
                if log:
                    log(f"{ln.label} ready after {time.monotonic() - t0:.1f}s")
            elif ln.proc.poll() is not None:
                tail = ln.log.read_text(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError(f"{ln.label} exited with {ln.proc.returncode}: "
                                   f"{tail[0] if tail else 'no output'} (log {ln.log})")
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{pending[0].label} not ready after {timeout:.0f}s (log {pending[0].log})")
        if pending:
            time.sleep(0.01)
