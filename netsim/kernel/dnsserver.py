"""The DNS stand-in (netsim.dns.server) serving on 53/UDP+TCP inside each CoreDNS pod's namespace.

Started as `python -m netsim.kernel.dnsserver --cluster NAME --netns NETNS --ip IP --pod NS/NAME`; the
process reads the cluster model snapshot the builder wrote (run dir cluster.pickle), enters the pod's
namespace and serves there.
"""
from __future__ import annotations

import argparse
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from netsim.kernel.state import ClusterState, ProcessRecord

READY_TIMEOUT = 20.0


def available() -> bool:
    try:
        from netsim.dns import server  # noqa: F401
    except ImportError:
        return False
    return hasattr(server, "serve")


def write_snapshot(cluster: Any, state: ClusterState) -> Path:
    path = state.directory / "cluster.pickle"
    watchers = getattr(cluster, "_watchers", None)
    try:
        if watchers is not None:
            cluster._watchers = []               # callbacks may not pickle; the server needs none
        path.write_bytes(pickle.dumps(cluster))
    finally:
        if watchers is not None:
            cluster._watchers = watchers
    return path


def start(cluster_name: str, pod: Any, state: ClusterState) -> Optional[ProcessRecord]:
    """Start the DNS server in `pod`'s namespace; None when netsim.dns.server is not installed."""
    if not available():
        return None
    ddir = state.directory / "dns"
    ddir.mkdir(parents=True, exist_ok=True)
    ready = ddir / f"{pod.netns}.ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "netsim.kernel.dnsserver", "--cluster", cluster_name,
            "--netns", pod.netns, "--ip", pod.ip, "--pod", pod.key]
    log = open(ddir / f"{pod.netns}.log", "ab")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None:
            tail = (ddir / f"{pod.netns}.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"DNS server in {pod.key} exited with {proc.returncode}: "
                               f"{tail[0] if tail else 'no output'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"DNS server in {pod.key} not ready after {READY_TIMEOUT:.0f}s")
        time.sleep(0.01)
    return ProcessRecord(pid=proc.pid, role="dns", netns=pod.netns, argv=argv)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="netsim.kernel.dnsserver")
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--ip", required=True)
    ap.add_argument("--pod", required=True)
    args = ap.parse_args(argv)
    from netsim.dns import server
    from netsim.kernel import netns
    state = ClusterState.load(args.cluster)
    cluster = pickle.loads((state.directory / "cluster.pickle").read_bytes())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready = state.directory / "dns" / f"{args.netns}.ready"
    with netns.entered(args.netns):
        srv = server.serve(cluster, host="0.0.0.0", port=53, block=False, local_ip=args.ip)
    ready.write_text("ok")
    srv.wait() if hasattr(srv, "wait") else signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
