"""kube-apiserver's port in a kernel control-plane node: HTTPS on 0.0.0.0:6443 answering what an
anonymous client may read.

kubeadm's clusters allow anonymous requests to the discovery and health endpoints (the
system:public-info-viewer ClusterRole: /healthz, /livez, /readyz, /version); anything else is
refused with the Status an anonymous client gets (403 Forbidden, `User "system:anonymous" cannot
get path "/"`). `/version` has the shape of k8s.io/apimachinery/pkg/version.Info; netsim is not a
kube-apiserver build, so gitCommit and buildDate are empty.

TLS uses a self-signed certificate made with `openssl req -x509` for the names and addresses the
apiserver's serving certificate has in a kubeadm cluster (kubernetes, kubernetes.default, ...,
the Service IP and the node address): `curl -k https://10.96.0.1/version` works from a pod. Without
an `openssl` binary the port serves plain HTTP and says so in its log.

Run: python -m netsim.kernel.apiserver --cluster NAME --netns NS --node N --dir DIR --node-ip IP --service-ip IP
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from netsim.control.kubeadm import APISERVER_PORT, KUBERNETES_VERSION

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


def version_info() -> dict[str, str]:
    """GET /version: k8s.io/apimachinery/pkg/version.Info's fields, as kube-apiserver v1.33 prints them."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "emulationMajor": major, "emulationMinor": minor,
            "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1),
            "gitVersion": KUBERNETES_VERSION, "gitCommit": "", "gitTreeState": "clean", "buildDate": "",
            "goVersion": "go1.24.2", "compiler": "gc", "platform": "linux/amd64"}


def answer(path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a GET of `path` by an anonymous client."""
    path = path.split("?", 1)[0]
    if path in HEALTH_PATHS:
        return 200, "text/plain; charset=utf-8", b"ok"
    if path == "/version":
        return 200, "application/json", (json.dumps(version_info(), indent=2) + "\n").encode()
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": f'forbidden: User "system:anonymous" cannot get path "{path}"',
              "reason": "Forbidden", "details": {}, "code": 403}
    return 403, "application/json", (json.dumps(status, indent=2) + "\n").encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send_response(self, code: int, message: Optional[str] = None) -> None:    # Go: no Server header
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def do_GET(self) -> None:                 # noqa: N802 (http.server's name)
        code, ctype, body = answer(self.path)
        self.send_response(code)
        self.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", ctype)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def make_certificate(directory: Path, node_ip: str, service_ip: str, domain: str = "cluster.local") -> Optional[tuple[Path, Path]]:
    """A self-signed serving certificate with kubeadm's apiserver SANs; None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    sans = ",".join(["DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                     f"DNS:kubernetes.default.svc.{domain}", f"IP:{service_ip}", f"IP:{node_ip}"])
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "365", "-subj", "/CN=kube-apiserver",
                    "-addext", f"subjectAltName={sans}"], check=True, capture_output=True)
    return cert, key


def serve(netns_name: str, directory: Path, node_ip: str, service_ip: str, ready: Optional[Path] = None) -> None:
    from netsim.kernel import netns
    with netns.entered(netns_name):
        srv = ThreadingHTTPServer(("0.0.0.0", APISERVER_PORT), _Handler, bind_and_activate=False)
        srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.server_bind()
        srv.server_activate()
    pair = make_certificate(directory, node_ip, service_ip)
    if pair is None:
        print("no openssl binary: serving plain HTTP on port 6443 (kube-apiserver serves HTTPS)", file=sys.stderr)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pair[0]), str(pair[1]))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if ready is not None:
        ready.touch()
    srv.serve_forever()


def launch(cluster: str, netns_name: str, node: str, node_ip: str, service_ip: str, run_dir: Path):
    """Start the control-plane node's apiserver port detached (process.wait_ready tells when it listens);
    ``--cluster`` in its command line is how `netsim down` recognises it as ours."""
    from netsim.kernel.process import spawn
    d = run_dir / "kube-apiserver"
    d.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "netsim.kernel.apiserver", "--cluster", cluster, "--netns", netns_name,
            "--node", node, "--dir", str(d), "--node-ip", node_ip, "--service-ip", service_ip]
    return spawn(argv, d / f"{node}.ready", d / f"{node}.log", f"kube-apiserver port on node {node}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="netsim.kernel.apiserver")
    for opt in ("--cluster", "--netns", "--node", "--node-ip", "--service-ip"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.netns, args.dir, args.node_ip, args.service_ip, args.dir / f"{args.node}.ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
