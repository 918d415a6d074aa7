"""Real client connections from inside our namespaces, many at once, from one process.

Each socket is created after setns() into the client's namespace (it stays there), then all are
driven together with a selector. A TCP probe sends one line and reads the pod server's answer; a UDP
probe sends one datagram and reads the echo. Outcomes: answered, refused (RST or ICMP port
unreachable: what kube-proxy's REJECT gives), unreachable (ICMP host/net unreachable), denied
(EPERM: a rule on the client's own host dropped its datagram in OUTPUT/POSTROUTING), timeout
(dropped somewhere).
"""
from __future__ import annotations

import errno
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Optional

from netsim.kernel import netns
from netsim.kernel.podserver import parse_answer

PROBE_LINE = b"netsim-verify\n"


@dataclass
class Probe:
    netns: str
    dst: str
    dport: int
    proto: str = "TCP"
    tag: object = None                      # caller's reference (e.g. the flow)


@dataclass
class ProbeResult:
    probe: Probe
    outcome: str                            # answered | refused | unreachable | denied | timeout | error
    src: Optional[str] = None
    sport: Optional[int] = None
    answer: dict[str, str] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    @property
    def pod(self) -> Optional[str]:
        return self.answer.get("pod")

    @property
    def peer_ip(self) -> Optional[str]:
        p = self.answer.get("peer")
        return p.rsplit(":", 1)[0] if p else None


_REFUSED = (errno.ECONNREFUSED, errno.ECONNRESET)
_UNREACH = (errno.EHOSTUNREACH, errno.ENETUNREACH)


def _classify(err: int) -> str:
    if err in _REFUSED:
        return "refused"
    if err in _UNREACH:
        return "unreachable"
    if err == errno.ETIMEDOUT:
        return "timeout"
    if err == errno.EPERM:
        return "denied"
    return "error"


class _Pending:
    __slots__ = ("probe", "sock", "result", "buf", "start", "stage")

    def __init__(self, probe: Probe, sock: socket.socket, result: ProbeResult, stage: str) -> None:
        self.probe, self.sock, self.result, self.buf = probe, sock, result, b""
        self.start, self.stage = time.monotonic(), stage


def run_probes(probes: list[Probe], timeout: float = 2.0, concurrency: int = 64) -> list[ProbeResult]:
    """Run every probe; at most `concurrency` at once; each gets `timeout` seconds."""
    results: list[Optional[ProbeResult]] = [None] * len(probes)
    sel = selectors.DefaultSelector()
    active: dict[int, tuple[int, _Pending]] = {}
    queue = list(enumerate(probes))
    queue.reverse()

    def finish(i: int, p: _Pending, outcome: str, err: str = "") -> None:
        p.result.outcome, p.result.error = outcome, err
        p.result.seconds = time.monotonic() - p.start
        if p.buf:
            p.result.answer = parse_answer(p.buf.decode(errors="replace"))
        try:
            sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()
        active.pop(id(p), None)
        results[i] = p.result

    def launch(i: int, pr: Probe) -> None:
        res = ProbeResult(probe=pr, outcome="error")
        try:
            with netns.entered(pr.netns):
                s = socket.socket(socket.AF_INET,
                                  socket.SOCK_STREAM if pr.proto == "TCP" else socket.SOCK_DGRAM)
        except (netns.NetnsError, OSError) as e:
            res.error = str(e)
            results[i] = res
            return
        s.setblocking(False)
        p = _Pending(pr, s, res, "connect")
        if pr.proto == "TCP":
            rc = s.connect_ex((pr.dst, pr.dport))
            if rc not in (0, errno.EINPROGRESS):
                active[id(p)] = (i, p)
                finish(i, p, _classify(rc), errno.errorcode.get(rc, str(rc)))
                return
            sel.register(s, selectors.EVENT_WRITE, (i, p))
        else:
            try:
                s.connect((pr.dst, pr.dport))
                res.src, res.sport = s.getsockname()
                s.send(PROBE_LINE)
            except OSError as e:
                active[id(p)] = (i, p)
                finish(i, p, _classify(e.errno or 0), str(e))
                return
            p.stage = "read"
            sel.register(s, selectors.EVENT_READ, (i, p))
        active[id(p)] = (i, p)

    while queue or active:
        while queue and len(active) < concurrency:
            launch(*queue.pop())
        if not active:
            continue
        for key, _ in sel.select(timeout=0.05):
            i, p = key.data
            if p.stage == "connect":
                err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(i, p, _classify(err), errno.errorcode.get(err, str(err)))
                    continue
                p.result.src, p.result.sport = p.sock.getsockname()
                try:
                    p.sock.send(PROBE_LINE)
                except OSError as e:
                    finish(i, p, _classify(e.errno or 0), str(e))
                    continue
                p.stage = "read"
                sel.modify(p.sock, selectors.EVENT_READ, (i, p))
            else:
                try:
                    chunk = p.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    finish(i, p, _classify(e.errno or 0), str(e))
                    continue
                p.buf += chunk
                if p.probe.proto == "UDP" or not chunk or b"\n" in p.buf:
                    finish(i, p, "answered" if p.buf else "refused" if not chunk else "error")
        now = time.monotonic()
        for i, p in [v for v in active.values() if now - v[1].start > timeout]:
            finish(i, p, "timeout")
    return [r for r in results if r is not None]


def probe(netns_name: str, dst: str, dport: int, proto: str = "TCP", timeout: float = 2.0) -> ProbeResult:
    """One probe (see run_probes)."""
    return run_probes([Probe(netns_name, dst, dport, proto)], timeout=timeout)[0]
