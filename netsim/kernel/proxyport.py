"""kube-proxy's ports inside a kernel node's namespace: 127.0.0.1:10249 and 0.0.0.0:10256.

One detached process per node (``python -m netsim.kernel.proxyport --cluster NAME --netns NS --status FILE``) binds
both sockets inside the node namespace (kube-proxy's default metricsBindAddress 127.0.0.1:10249 and
healthzBindAddress 0.0.0.0:10256) and answers each request from the status file the kernel backend
writes after every sync of that node (netsim.dataplane.proxy_status.ProxyStatus as JSON), so
``curl -s 127.0.0.1:10249/proxyMode`` run in the node answers the mode and ``/metrics`` the counters
of the syncs that really loaded its rules.
"""
from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from netsim.dataplane.proxy_status import HEALTHZ_PORT, METRICS_PORT, ProxyStatus


def status_path(run_dir: Path, node: str) -> Path:
    return run_dir / "kube-proxy" / f"{node}.json"


def write_status(path: Path, status: ProxyStatus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status.to_dict()))
    tmp.replace(path)


def read_status(path: Path) -> ProxyStatus:
    return ProxyStatus.from_dict(json.loads(path.read_text()))


def _handler(status_file: Path, port: int, lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"           # Go's net/http answers HTTP/1.1, without a Server header

        def send_response(self, code: int, message: Optional[str] = None) -> None:
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def do_GET(self) -> None:             # noqa: N802 (http.server's name)
            probes_file = status_file.with_suffix(".probes.json")
            with lock:
                status = read_status(status_file)
                # the probe counters are this server's own (the status file is rewritten by every sync)
                probes = json.loads(probes_file.read_text()) if probes_file.exists() else {}
                for name, by_code in probes.items():
                    for code_label, n in by_code.items():
                        status.metrics.set(name, n, code_label)
                code, ctype, body = status.answer(port, self.path)
                if port == HEALTHZ_PORT:
                    probes = {name: {k[0]: v for k, v in status.metrics.values.get(name, {}).items()}
                              for name in ("proxy_healthz_total", "proxy_livez_total")}
                    probes_file.write_text(json.dumps(probes))
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass
    return Handler


def serve(netns_name: str, status_file: Path, ready: Optional[Path] = None) -> None:
    from netsim.kernel import netns
    lock = threading.Lock()
    servers = []
    with netns.entered(netns_name):
        for addr, port in (("127.0.0.1", METRICS_PORT), ("0.0.0.0", HEALTHZ_PORT)):
            srv = ThreadingHTTPServer((addr, port), _handler(status_file, port, lock), bind_and_activate=False)
            srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.server_bind()
            srv.server_activate()
            servers.append(srv)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    if ready is not None:
        ready.touch()
    for t in threads:
        t.join()


def launch(cluster: str, netns_name: str, node: str, run_dir: Path):
    """Start the node's kube-proxy port server detached (process.wait_ready tells when it listens);
    ``--cluster`` in its command line is how `netsim down` recognises it as ours."""
    from netsim.kernel.process import spawn
    path = status_path(run_dir, node)
    argv = [sys.executable, "-m", "netsim.kernel.proxyport", "--cluster", cluster, "--netns", netns_name,
            "--status", str(path)]
    return spawn(argv, path.with_suffix(".ready"), path.with_suffix(".log"), f"kube-proxy ports for node {node}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="netsim.kernel.proxyport")
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--status", required=True, type=Path)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.netns, args.status, args.status.with_suffix(".ready"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
