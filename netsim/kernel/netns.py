"""Named network namespaces: create, enter (setns), open netlink sockets inside, write sysctls, run commands.

Entering is done with setns(2) on the calling thread and always undone, so a netlink socket or a
TCP/UDP socket can be opened *inside* one of our namespaces without forking (a socket stays in the
namespace it was created in). Nothing here ever touches the caller's own namespace.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from typing import Iterator, Optional, Sequence

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"             # iproute2's NETNS_RUN_DIR
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace is missing or an operation inside it failed."""


def path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def listnetns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


MS_BIND = 4096


def create(name: str) -> None:
    """Create the named namespace (like `ip netns add`); refuses if it already exists.

    As iproute2 does, without forking: unshare(CLONE_NEWNET) on this thread, bind-mount the thread's
    new namespace onto /run/netns/<name>, setns() back. The first call prepares /run/netns (a
    shared mount point, as `ip netns add` makes it)."""
    if exists(name):
        raise NetnsError(f"network namespace {name!r} already exists (run `netsim down` first)")
    if not os.path.isdir(NETNS_RUN_DIR) or not _run_dir_is_mountpoint():
        _prepare_run_dir()
    target = path(name)
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise NetnsError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
        try:
            if _libc.mount(b"/proc/thread-self/ns/net", target.encode(), None, MS_BIND, None) != 0:
                raise NetnsError(f"bind mount of {name}: {os.strerror(ctypes.get_errno())}")
        finally:
            _setns(home)
    except BaseException:
        try:
            os.unlink(target)
        except OSError:
            pass
        raise
    finally:
        os.close(home)


MS_REC, MS_SHARED = 16384, 1 << 20
MNT_DETACH = 2


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point of its own, as iproute2's netns_add does (ip/ipnetns.c):
    try MS_SHARED|MS_REC; if it is not a mount point yet, bind it onto itself and try again. Done
    in this process (pyroute2's netns.create forks a helper that must answer within 2 s, which a
    software-emulated VM misses: "no response from the child")."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    d = NETNS_RUN_DIR.encode()
    if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) == 0 and _run_dir_is_mountpoint():
        return
    if _libc.mount(d, d, b"none", MS_BIND | MS_REC, None) != 0:
        raise NetnsError(f"bind mount of {NETNS_RUN_DIR}: {os.strerror(ctypes.get_errno())}")
    if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) != 0:
        raise NetnsError(f"making {NETNS_RUN_DIR} shared: {os.strerror(ctypes.get_errno())}")


def _run_dir_is_mountpoint() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == NETNS_RUN_DIR for line in f)


def remove(name: str) -> None:
    """Delete the named namespace if present (its links go with it once no process holds it)."""
    if exists(name):                              # as `ip netns delete`: lazy unmount, then unlink
        target = path(name)
        _libc.umount2(target.encode(), MNT_DETACH)
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `name`, then return to where it was."""
    try:
        target = os.open(path(name), os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {name!r} does not exist") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def iproute(name: str) -> IPRoute:
    """An IPRoute (rtnetlink) socket bound to namespace `name`; close it when done."""
    with entered(name):
        return IPRoute()


def write_sysctl(name: str, key: str, value: str) -> None:
    """Write a sysctl inside namespace `name` (/proc/sys/net is per network namespace)."""
    with entered(name):
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


def inode(name: str) -> int:
    return os.stat(path(name)).st_ino


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside `name` with `ip netns exec` (which also bind-mounts /etc/netns/<name>/*)."""
    return ["ip", "netns", "exec", name, *argv]


CMD_TIMEOUT = 60.0          # seconds per command; $NETSIM_CMD_TIMEOUT overrides (a software-emulated VM is slow)


def run(name: str, argv: Sequence[str], input: Optional[str] = None,
        timeout: Optional[float] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside namespace `name`; refuses when the namespace is missing."""
    if not exists(name):
        raise NetnsError(f"network namespace {name!r} does not exist")
    if timeout is None:
        timeout = float(os.environ.get("NETSIM_CMD_TIMEOUT") or CMD_TIMEOUT)
    proc = subprocess.run(exec_argv(name, argv), input=input, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise NetnsError(f"{' '.join(argv[:2])} in {name}: exit {proc.returncode}: "
                         f"{msg[0] if msg else ''}" + (f" ({msg[-1]})" if len(msg) > 1 else ""))
    return proc
