"""The servers in the pods: one process per node holding a listening socket in each pod's namespace.

Each TCP connection is answered with one line naming the pod and the peer address the pod saw
(as an HTTP/1.0 response when the request is HTTP, e.g. from curl); each UDP datagram is echoed back
after that line. The process is started in the caller's namespace and creates every socket after
setns() into the pod's namespace, so 100 pods cost one Python process, not 100.

Run: python -m netsim.kernel.podserver --cluster NAME --spec FILE
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from netsim.kernel.process import Launch

HTTP_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")
IDLE_ANSWER_AFTER = 1.0          # a client that sends nothing still gets the line after 1 s


@dataclass
class PodSocketSpec:
    pod: str                     # "namespace/name"
    netns: str
    ip: str
    ports: list[tuple[int, str]] = field(default_factory=list)
    bound: list[tuple[int, str, str]] = field(default_factory=list)    # (port, protocol, bind address)


@dataclass
class ServerSpec:
    cluster: str
    node: str
    pods: list[PodSocketSpec] = field(default_factory=list)


def answer_line(pod: str, node: str, local: tuple, peer: tuple, proto: str) -> bytes:
    """`pod=ns/name node=N addr=IP:PORT peer=IP:PORT proto=TCP` — what the verify client parses."""
    return (f"pod={pod} node={node} addr={local[0]}:{local[1]} peer={peer[0]}:{peer[1]} "
            f"proto={proto}\n").encode()


def parse_answer(line: str) -> dict[str, str]:
    """Inverse of answer_line (ignores anything after the first line)."""
    first = line.strip().splitlines()[0] if line.strip() else ""
    return dict(kv.split("=", 1) for kv in first.split() if "=" in kv)


def _http(body: bytes, head_only: bool) -> bytes:
    hdr = (f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
           "Connection: close\r\nServer: netsim-podserver\r\n\r\n").encode()
    return hdr if head_only else hdr + body


def launch(spec: ServerSpec, run_dir: Path) -> "Launch":
    """Start the node's server process detached (see process.wait_ready for readiness)."""
    from netsim.kernel.process import spawn
    sdir = run_dir / "servers"
    sdir.mkdir(parents=True, exist_ok=True)
    spec_path = sdir / f"{spec.node}.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    argv = [sys.executable, "-m", "netsim.kernel.podserver", "--cluster", spec.cluster, "--spec", str(spec_path)]
    return spawn(argv, spec_path.with_suffix(".ready"), sdir / f"{spec.node}.log",
                 f"pod server for node {spec.node}")


class _Conn:
    __slots__ = ("sock", "pod", "buf", "since")

    def __init__(self, sock: socket.socket, pod: str) -> None:
        self.sock, self.pod, self.buf, self.since = sock, pod, b"", time.monotonic()


def _open_sockets(spec: ServerSpec) -> list[tuple[socket.socket, str, str]]:
    from netsim.kernel import netns
    socks = []
    for p in spec.pods:
        with netns.entered(p.netns):
            for port, proto, addr in [(port, proto, "0.0.0.0") for port, proto in p.ports] + list(p.bound):
                if proto == "TCP":
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port))
                    s.listen(512)
                elif proto == "UDP":
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    s.bind((addr, port))
                else:
                    print(f"{p.pod}: {proto} port {port} not served (TCP and UDP only)", file=sys.stderr)
                    continue
                s.setblocking(False)
                socks.append((s, p.pod, proto))
    return socks


def serve(spec: ServerSpec, ready_file: Optional[Path] = None) -> None:
    sel = selectors.DefaultSelector()
    for s, pod, proto in _open_sockets(spec):
        sel.register(s, selectors.EVENT_READ, ("listen" if proto == "TCP" else "udp", pod))
    if ready_file:
        ready_file.write_text(str(os.getpid()))
    conns: dict[int, _Conn] = {}

    def finish(c: _Conn) -> None:
        try:
            local, peer = c.sock.getsockname(), c.sock.getpeername()
            body = answer_line(c.pod, spec.node, local, peer, "TCP")
            if c.buf.startswith(HTTP_METHODS):
                body = _http(body, c.buf.startswith(b"HEAD "))
            c.sock.setblocking(True)
            c.sock.settimeout(2.0)
            c.sock.sendall(body)
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sel.unregister(c.sock)
        conns.pop(c.sock.fileno(), None)
        c.sock.close()

    while True:
        for key, _ in sel.select(timeout=0.25):
            kind = key.data[0] if isinstance(key.data, tuple) else "conn"
            if kind == "listen":
                try:
                    cs, _ = key.fileobj.accept()
                except OSError:
                    continue
                cs.setblocking(False)
                c = _Conn(cs, key.data[1])
                conns[cs.fileno()] = c
                sel.register(cs, selectors.EVENT_READ, c)
            elif kind == "udp":
                try:
                    data, peer = key.fileobj.recvfrom(65535)
                except OSError:
                    continue
                local = key.fileobj.getsockname()
                try:
                    key.fileobj.sendto(answer_line(key.data[1], spec.node, local, peer, "UDP") + data, peer)
                except OSError:
                    pass
            else:
                c = key.data
                try:
                    chunk = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                c.buf += chunk
                if not chunk or b"\r\n\r\n" in c.buf or (b"\n" in c.buf and not c.buf.startswith(HTTP_METHODS)):
                    finish(c)
        now = time.monotonic()
        for c in [c for c in conns.values() if now - c.since > IDLE_ANSWER_AFTER]:
            finish(c)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="netsim.kernel.podserver")
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--spec", required=True, type=Path)
    args = ap.parse_args(argv)
    raw = json.loads(args.spec.read_text())
    spec = ServerSpec(cluster=raw["cluster"], node=raw["node"],
                      pods=[PodSocketSpec(pod=p["pod"], netns=p["netns"], ip=p["ip"],
                                          ports=[tuple(x) for x in p["ports"]],
                                          bound=[tuple(x) for x in p.get("bound", [])]) for p in raw["pods"]])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(spec, args.spec.with_suffix(".ready"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
