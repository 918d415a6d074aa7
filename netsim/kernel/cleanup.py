"""`netsim down`: remove every process, namespace and /etc/netns directory of a kernel cluster.

Works from the ledger (state.json) plus the cluster's name prefix, so it also cleans up after a crash
or kill -9. Processes are found by pid from the ledger *and* by holding one of our namespaces
(/proc/<pid>/ns/net inode), never by process name.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from netsim.kernel import netns, state as state_mod
from netsim.kernel.state import ClusterState, ProcessRecord


def _netns_of_pid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its (maybe absent) reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    except ProcessLookupError:
        pass


def _forked_by_this_process(pid: int) -> bool:
    """A helper this very process forked (netsim.kernel.process.fork_module): our child, with our
    command line (a fork keeps it), so a recycled pid cannot pass for it."""
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return ppid == os.getpid() and _cmdline(pid) == _cmdline(os.getpid())


def stop_process(rec: ProcessRecord, cluster: str) -> bool:
    """Stop a ledger process if that pid is still ours (its command line names our module and cluster,
    or it is a helper this process forked)."""
    cmd = _cmdline(rec.pid)
    if ("netsim" in cmd and f"--cluster {cluster} " in cmd + " ") or _forked_by_this_process(rec.pid):
        _kill(rec.pid)
        return True
    return False


def _our_namespaces(name: str, st: ClusterState | None) -> list[str]:
    names = set(st.netns) if st else set()
    names.update(n for n in netns.listnetns() if n.startswith(f"{name}-") and _belongs(name, n))
    return sorted(names)


def _belongs(name: str, ns: str) -> bool:
    """A prefix match must not catch another cluster whose name extends ours ("a" vs "a-b")."""
    for other in state_mod.list_clusters():
        if other != name and other.startswith(f"{name}-") and ns.startswith(f"{other}-"):
            return False
    return True


def leftovers(name: str) -> list[str]:
    """What of cluster `name` exists now (namespaces, ledger)."""
    found = [n for n in netns.listnetns() if n.startswith(f"{name}-") and _belongs(name, n)]
    if (state_mod.run_root() / name / "state.json").exists():
        found.append(str(state_mod.run_root() / name / "state.json"))
    return found


def remove_etc_netns(d: Path) -> None:
    if d.parent == Path("/etc/netns") and d.is_dir():
        shutil.rmtree(d, ignore_errors=True)


def down(name: str) -> list[str]:
    """Remove cluster `name` completely; return a list of what was removed."""
    try:
        st: ClusterState | None = ClusterState.load(name)
    except state_mod.ClusterNotFound:
        st = None
    removed: list[str] = []
    if st:
        for rec in st.processes:
            if stop_process(rec, name):
                removed.append(f"process {rec.pid} ({rec.role})")
    namespaces = _our_namespaces(name, st)
    inodes = {}
    for ns in namespaces:
        try:
            inodes[netns.inode(ns)] = ns
        except FileNotFoundError:
            pass
    if inodes:                                   # anything still holding one of our namespaces
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                ino = _netns_of_pid(int(entry))
                if ino in inodes:
                    _kill(int(entry))
                    removed.append(f"process {entry} (in {inodes[ino]})")
    for ns in namespaces:
        if netns.exists(ns):
            netns.remove(ns)
            removed.append(f"netns {ns}")
        d = Path("/etc/netns") / ns
        if d.is_dir():
            remove_etc_netns(d)
            removed.append(f"dir {d}")
    if st:
        for d in st.etc_netns:
            if Path(d).is_dir():
                remove_etc_netns(Path(d))
                removed.append(f"dir {d}")
    run_dir = state_mod.run_root() / name
    if run_dir.is_dir():
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(f"dir {run_dir}")
    return removed


def down_all() -> dict[str, list[str]]:
    return {name: down(name) for name in state_mod.list_clusters()}
