"""A DNS server on UDP and TCP that answers from a ClusterDNS (the CoreDNS pod's listener).

One thread reads UDP datagrams and answers each in turn (the lookup is CPU-bound Python, so more
threads would only contend for the GIL); TCP connections get a thread each and may carry several
length-prefixed queries (RFC 7766 §6.2.1; glibc sends A and AAAA on one connection after a TC=1
reply). Reads on TCP time out (miekg/dns defaults: 2 s for the first query, 8 s idle between
queries), malformed input is answered by netsim.dns.message.handle or dropped, and no exception
escapes a request: the server never dies and never hangs.
"""
from __future__ import annotations

import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from netsim.dns.message import handle

TCP_READ_TIMEOUT = 2.0      # miekg/dns Server.ReadTimeout default
TCP_IDLE_TIMEOUT = 8.0      # miekg/dns Server.IdleTimeout default
UDP_POLL = 0.25             # how often the UDP loop checks for stop()
MAX_UDP = 65535


@dataclass
class ServerStats:
    udp_queries: int = 0
    tcp_queries: int = 0
    dropped: int = 0
    errors: int = 0


class DNSServer:
    """Serve `resolver.answer` on host:port over UDP and TCP. Port 0 picks a free port (see .port)."""

    def __init__(self, resolver: Any, host: str = "127.0.0.1", port: int = 0,
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.resolver = resolver
        self.host = host
        self.log = log
        self.stats = ServerStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._udp, self._tcp = _bind_pair(family, host, port, self)
        self.port = self._udp.getsockname()[1]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DNSServer":
        t_udp = threading.Thread(target=self._udp_loop, name=f"dns-udp-{self.port}", daemon=True)
        t_tcp = threading.Thread(target=self._tcp.serve_forever, kwargs={"poll_interval": UDP_POLL},
                                 name=f"dns-tcp-{self.port}", daemon=True)
        self._threads = [t_udp, t_tcp]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._threads:
            self._tcp.shutdown()
        for t in self._threads:
            t.join(timeout=5)
        self._tcp.server_close()
        self._udp.close()

    def wait(self) -> None:
        """Block until stop() (used when serving in the foreground)."""
        while not self._stop.wait(1.0):
            pass

    def __enter__(self) -> "DNSServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ------------------------------------------------------------------ request paths
    def answer(self, data: bytes, protocol: str, client: Any) -> Optional[bytes]:
        try:
            reply = handle(self.resolver, data, protocol)
        except Exception as e:      # handle() already turns lookup errors into SERVFAIL
            self.stats.errors += 1
            if self.log:
                self.log(f"error from {client}: {e!r}")
            return None
        if reply is None:
            self.stats.dropped += 1
        if self.log:
            self.log(_describe(data, reply, protocol, client))
        return reply

    def _udp_loop(self) -> None:
        sock = self._udp
        sock.settimeout(UDP_POLL)
        while not self._stop.is_set():
            try:
                data, client = sock.recvfrom(MAX_UDP)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            self.stats.udp_queries += 1
            reply = self.answer(data, "udp", client)
            if reply is not None:
                try:
                    sock.sendto(reply, client)
                except OSError:
                    self.stats.errors += 1


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        dns: DNSServer = self.server.dns            # type: ignore[attr-defined]
        conn: socket.socket = self.request
        timeout = TCP_READ_TIMEOUT
        while not dns._stop.is_set():
            conn.settimeout(timeout)
            try:
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                data = _recv_exact(conn, struct.unpack("!H", head)[0])
                if data is None:
                    return
            except (socket.timeout, OSError):
                return
            dns.stats.tcp_queries += 1
            reply = dns.answer(data, "tcp", self.client_address)
            if reply is None:
                return                              # miekg closes the connection on a dropped query
            try:
                conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return
            timeout = TCP_IDLE_TIMEOUT


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _recv_exact(conn: socket.socket, n: int) -> Optional[bytes]:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _bind_pair(family: int, host: str, port: int, dns: DNSServer) -> tuple[socket.socket, _TCPServer]:
    """A UDP socket and a TCP server on the same port (retrying when port 0's pick is taken on TCP)."""
    last: Optional[OSError] = None
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
        except OSError:
            udp.close()
            raise
        chosen = udp.getsockname()[1]
        _TCPServer.address_family = family
        try:
            tcp = _TCPServer((host, chosen), _TCPHandler)
        except OSError as e:
            udp.close()
            last = e
            if port:
                raise
            continue
        tcp.dns = dns                                   # type: ignore[attr-defined]
        return udp, tcp
    raise last or OSError("no free port")


def _describe(data: bytes, reply: Optional[bytes], protocol: str, client: Any) -> str:
    from dnslib import DNSRecord
    try:
        q = DNSRecord.parse(data).q
        question = f"{q.qname} {q.qtype and __import__('dnslib').QTYPE.get(q.qtype)}"
    except Exception:
        question = f"<{len(data)} bytes unparseable>"
    if reply is None:
        return f"{client[0]}#{client[1]} {protocol} {question} -> dropped"
    try:
        r = DNSRecord.parse(reply)
        from dnslib import RCODE
        outcome = f"{RCODE.get(r.header.rcode)} answers={len(r.rr)}{' tc' if r.header.tc else ''}"
    except Exception:
        outcome = f"{len(reply)} bytes"
    return f"{client[0]}#{client[1]} {protocol} {question} -> {outcome}"


def serve(cluster: Any, host: str = "127.0.0.1", port: int = 53, block: bool = True,
          corefile: Any = None, local_ip: Optional[str] = None,
          log: Optional[Callable[[str], None]] = None) -> DNSServer:
    """Answer for `cluster` on host:port (UDP+TCP). Sockets are bound before this returns."""
    from netsim.dns.resolver import ClusterDNS
    resolver = ClusterDNS(cluster, corefile=corefile, local_ip=local_ip)
    resolver.index()
    server = DNSServer(resolver, host=host, port=port, log=log).start()
    if block:
        try:
            server.wait()
        finally:
            server.stop()
    return server
