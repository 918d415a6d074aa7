"""The DNS stand-in (netsim.dns.server) serving on 53/UDP+TCP inside each CoreDNS pod's namespace.

Started as `python -m netsim.kernel.dnsserver --cluster NAME --netns NETNS --ip IP --pod NS/NAME`; the
process reads the cluster model snapshot the builder wrote (run dir cluster.pickle), enters the pod's
namespace and serves there.
"""
from __future__ import annotations

import argparse
import pickle
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from netsim.kernel.process import Launch

from netsim.kernel.state import ClusterState



def available() -> bool:
    try:
        from netsim.dns import server  # noqa: F401
    except ImportError:
        return False
    return hasattr(server, "serve")


def write_snapshot(cluster: Any, state: ClusterState) -> Path:
    path = state.directory / "cluster.pickle"
    path.write_bytes(pickle.dumps(cluster))     # Cluster pickles without its watchers
    return path


def launch(cluster_name: str, pod: Any, state: ClusterState) -> Optional["Launch"]:
    """Start the DNS server for `pod` (see process.wait_ready); None when netsim.dns.server is absent."""
    if not available():
        return None
    from netsim.kernel.process import spawn
    ddir = state.directory / "dns"
    ddir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "netsim.kernel.dnsserver", "--cluster", cluster_name,
            "--netns", pod.netns, "--ip", pod.ip, "--pod", pod.key]
    return spawn(argv, ddir / f"{pod.netns}.ready", ddir / f"{pod.netns}.log", f"DNS server in {pod.key}")


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
