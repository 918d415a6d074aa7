"""A DNS server on UDP and TCP that answers from a ClusterDNS (the CoreDNS pod's listener).

One thread reads UDP datagrams and answers each in turn (the lookup is CPU-bound Python, so more
threads would only contend for the GIL); TCP connections get a thread each and may carry several
length-prefixed queries (RFC 7766 §6.2.1; glibc sends A and AAAA on one connection after a TC=1
reply). Reads on TCP time out (miekg/dns defaults: 2 s for the first query, 8 s idle between
queries), malformed input is answered by netsim.dns.message.handle or dropped, and no exception
escapes a request: the server never dies and never hangs.

The UDP loop drains its socket without blocking (one recvfrom per datagram, no poll in between
while datagrams wait), answers plain queries before garbage (see serve_udp), answers repeated
questions from pre-encoded replies (netsim.dns.wire), and asks for a 4 MiB receive buffer so that a burst of garbage is read and dropped rather than pushing
good queries out of a full queue (socket(7) SO_RCVBUF / SO_RCVBUFFORCE). `workers` > 1 runs that
loop in as many processes, each on its own SO_REUSEPORT socket on the same port (socket(7); what
CoreDNS's `reuseport` plugin does): the kernel spreads clients across them by their 4-tuple hash.
Per-query log lines are written only when a `log` function is given (`netsim dns serve -v`).
"""
from __future__ import annotations

import os
import select
import signal
import socket
import socketserver
import struct
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from netsim.dns.message import handle
from netsim.dns.wire import question_end

TCP_READ_TIMEOUT = 2.0      # miekg/dns Server.ReadTimeout default
TCP_IDLE_TIMEOUT = 8.0      # miekg/dns Server.IdleTimeout default
UDP_POLL = 0.25             # how often the UDP loop checks for stop()
MAX_UDP = 65535
UDP_BATCH = 4096            # datagrams read before answering any of them
JUNK_SLICE = 64             # backlog datagrams (garbage, unusual queries) handled between two reads
BACKLOG = 65536             # backlog datagrams kept at most
UDP_RCVBUF = 4 << 20        # bytes asked for the UDP receive queue (the kernel doubles it, socket(7))


@dataclass
class ServerStats:
    udp_queries: int = 0
    tcp_queries: int = 0
    dropped: int = 0
    errors: int = 0


class DNSServer:
    """Serve `resolver.answer` on host:port over UDP and TCP. Port 0 picks a free port (see .port)."""

    def __init__(self, resolver: Any, host: str = "127.0.0.1", port: int = 0,
                 log: Optional[Callable[[str], None]] = None, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers: expected at least 1, got {workers}")
        self.resolver = resolver
        self.host = host
        self.log = log
        self.workers = workers
        self.stats = ServerStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._children: list[int] = []
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._udp, self._tcp = _bind_pair(self._family, host, port, self, reuseport=workers > 1)
        self.port = self._udp.getsockname()[1]
        _grow_receive_buffer(self._udp)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "DNSServer":
        for _ in range(self.workers - 1):
            self._fork_worker()
        t_udp = threading.Thread(target=self._udp_loop, name=f"dns-udp-{self.port}", daemon=True)
        t_tcp = threading.Thread(target=self._tcp.serve_forever, kwargs={"poll_interval": UDP_POLL},
                                 name=f"dns-tcp-{self.port}", daemon=True)
        self._threads = [t_udp, t_tcp]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for pid in self._children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self._children = []
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
        serve_udp(self._udp, self, self._stop)

    def _fork_worker(self) -> None:
        """One more process answering UDP on its own SO_REUSEPORT socket (forked before any thread
        starts; it shares the record index as it was, as every CoreDNS process keeps its own)."""
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        _grow_receive_buffer(sock)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:                                    # the worker: serve until SIGTERM or its parent dies
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _die_with_parent(parent)
                serve_udp(sock, self, threading.Event())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        sock.close()
        self._children.append(pid)


def serve_udp(sock: socket.socket, dns: "DNSServer", stop: threading.Event) -> None:
    """Answer the datagrams of `sock` until `stop` is set.

    Reads what is queued (up to UDP_BATCH datagrams, one recvfrom each, no poll in between) and
    answers the plain queries among them at once — from the pre-encoded replies or the resolver —
    while the rest (garbage, which is dropped or gets a FORMERR/NOTIMP header, and unusual queries)
    waits in a backlog handled JUNK_SLICE at a time between reads. A burst of garbage thus costs the
    good queries behind it little more than a recvfrom per datagram. CoreDNS answers each datagram
    in a goroutine of its own, so neither does it promise replies in arrival order (miekg/dns
    server.go serveUDP). The backlog keeps at most BACKLOG datagrams (older ones are dropped)."""
    sock.setblocking(False)
    recv, send = sock.recvfrom, sock.sendto
    wire = _wire(dns.resolver)
    lookup = wire.lookup if wire is not None else None
    stats = dns.stats
    log = dns.log
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    wait_ms = int(UDP_POLL * 1000)
    backlog: deque = deque()

    def reply_to(data: bytes, client: Any, reply: Optional[bytes]) -> None:
        if reply is not None:
            try:
                send(reply, client)
            except OSError:                             # full send queue (EAGAIN) or gone
                stats.errors += 1

    while not stop.is_set():
        batch = []
        try:
            while len(batch) < UDP_BATCH:
                batch.append(recv(MAX_UDP))
        except BlockingIOError:
            if not batch and not backlog:
                poller.poll(wait_ms)
                continue
        except OSError:
            if stop.is_set():
                return
        stats.udp_queries += len(batch)
        exact = wire.exact_table("udp") if wire is not None and log is None else None
        for data, client in batch:
            if exact is not None:                       # a query seen before, not shuffled: patch the ID
                entry = exact.get(data[2:])
                if entry is not None and entry.sections is None:
                    try:
                        send(data[:2] + entry.tail, client)
                    except OSError:
                        stats.errors += 1
                    continue
            reply = lookup(data, "udp") if lookup is not None else None
            if reply is None:
                if question_end(data) < 0:
                    backlog.append((data, client))
                    continue
                reply = dns.answer(data, "udp", client)
            elif log is not None:
                log(_describe(data, reply, "udp", client))
            reply_to(data, client, reply)
        while len(backlog) > BACKLOG:
            backlog.popleft()
            stats.dropped += 1
        for _ in range(min(JUNK_SLICE, len(backlog))):
            data, client = backlog.popleft()
            reply_to(data, client, dns.answer(data, "udp", client))


def _die_with_parent(parent: int) -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM) (prctl(2)): a worker must not outlive the server that forked
    it (its socket would keep answering, and keep a scratch namespace alive)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)          # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:                          # the parent died before prctl took effect
        os._exit(0)


def _wire(resolver: Any) -> Any:
    from netsim.dns.message import _wire as wire_of
    return wire_of(resolver)


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Ask for UDP_RCVBUF bytes of receive queue: SO_RCVBUFFORCE (CAP_NET_ADMIN, above rmem_max)
    first, else SO_RCVBUF (capped at net.core.rmem_max) — socket(7)."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, UDP_RCVBUF)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        except OSError:
            pass


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


def _bind_pair(family: int, host: str, port: int, dns: DNSServer,
               reuseport: bool = False) -> tuple[socket.socket, _TCPServer]:
    """A UDP socket and a TCP server on the same port (retrying when port 0's pick is taken on TCP)."""
    last: Optional[OSError] = None
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        if reuseport:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
          log: Optional[Callable[[str], None]] = None, workers: int = 1) -> DNSServer:
    """Answer for `cluster` on host:port (UDP+TCP). Sockets are bound before this returns."""
    from netsim.dns.resolver import ClusterDNS
    resolver = ClusterDNS(cluster, corefile=corefile, local_ip=local_ip)
    resolver.index()
    server = DNSServer(resolver, host=host, port=port, log=log, workers=workers).start()
    if block:
        try:
            server.wait()
        finally:
            server.stop()
    return server
