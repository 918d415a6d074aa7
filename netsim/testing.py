"""Network assertions for people's own test suites: each failure says what was expected, then shows
the trace — every hop, the rule that matched as iptables-save prints it (or the IPVS virtual
server), each address rewrite, and where and why the packet stopped.

    from netsim.testing import assert_reachable, assert_unreachable
    assert_reachable(em, "pod/client", "http://httpd-app/", pod="httpd-app-*")
    assert_unreachable(em, "external", "10.96.0.1:443", outcome="DROPPED")
"""
from __future__ import annotations

from collections import Counter
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Iterable, Optional, Union

from netsim.chisquare import uniform_test
from netsim.dataplane.trace import Trace

if TYPE_CHECKING:
    from netsim.api import Emulator, Resolution

__all__ = ["assert_reachable", "assert_unreachable", "assert_resolves", "assert_balanced", "assert_sticky",
           "attempt", "UNRESOLVED", "DISPOSITIONS"]

UNRESOLVED = "UNRESOLVED"          # the destination name did not resolve: no packet was sent
DISPOSITIONS = ("DELIVERED", "NO_LISTENER", "REJECTED", "DROPPED", "NO_ROUTE", "NEIGHBOR_UNREACHABLE", "LOST",
                "TTL_EXCEEDED", UNRESOLVED)


class Attempt:
    """One connection attempt: the trace, or (destination name unresolved) why there was none."""

    def __init__(self, src: str, dst: str, trace: Optional[Trace], error: str = "") -> None:
        self.src, self.dst, self.trace, self.error = src, dst, trace, error

    @property
    def disposition(self) -> str:
        return self.trace.outcome.disposition if self.trace is not None else UNRESOLVED

    def render(self) -> str:
        return self.trace.render() if self.trace is not None else f"no packet sent: {self.error}"


def attempt(em: "Emulator", src: str, dst: str, *, proto: Optional[str] = None, namespace: str = "default",
            mode: Optional[str] = None) -> Attempt:
    """``em.trace`` that turns a destination name that does not resolve into an UNRESOLVED attempt
    (a malformed source or destination still raises ValueError)."""
    from netsim.dataplane.target import Unresolved
    try:
        return Attempt(src, dst, em.trace(src, dst, proto=proto, namespace=namespace, mode=mode))
    except Unresolved as e:
        return Attempt(src, dst, None, str(e))


def _fail(expected: str, shown: Union[Attempt, Trace, "Resolution", str]) -> None:
    text = shown if isinstance(shown, str) else shown.render()
    raise AssertionError(f"{expected}\n\n{text}")


def pod_matches(pod_key: Optional[str], pattern: str) -> bool:
    """``pattern`` (a name or fnmatch glob) against the pod's name and its ``ns/name``."""
    if not pod_key:
        return False
    name = pod_key.split("/", 1)[-1]
    return fnmatchcase(name, pattern) or fnmatchcase(pod_key, pattern)


def _check_disposition(outcome: str) -> str:
    d = outcome.upper()
    if d not in DISPOSITIONS:
        raise ValueError(f"outcome: expected one of {', '.join(x.lower() for x in DISPOSITIONS)}, got {outcome!r}")
    return d


def assert_reachable(em: "Emulator", src: str, dst: str, *, pod: Optional[str] = None, port: Optional[int] = None,
                     snat: Union[bool, str, None] = None, proto: Optional[str] = None, namespace: str = "default",
                     mode: Optional[str] = None) -> Trace:
    """A new connection from ``src`` to ``dst`` is delivered (and answered) — to a pod matching
    ``pod``, on ``port`` (the port the server socket saw), with ``snat``: True = the server saw
    another source than the client's own address (masquerade/SNAT), False = the client's address
    preserved, a str = exactly that source IP. Returns the trace."""
    a = attempt(em, src, dst, proto=proto, namespace=namespace, mode=mode)
    want = f"expected {src} to reach {dst}" + (f" at pod {pod}" if pod else "") + (f" port {port}" if port else "")
    if a.trace is None or a.disposition != "DELIVERED":
        _fail(f"{want}, but the connection was {a.disposition}", a)
    t = a.trace
    o = t.outcome
    if pod is not None and not pod_matches(o.pod, pod):
        _fail(f"{want}, but it was delivered to {o.pod or o.host}", t)
    if port is not None and o.port != port:
        _fail(f"{want}, but the server socket was on port {o.port}", t)
    if snat is not None:
        seen = (o.seen_source or "").rsplit(":", 1)[0]
        if isinstance(snat, str):
            if seen != snat:
                _fail(f"{want} with source {snat} (SNAT), but the server saw {seen}", t)
        elif snat and seen == t.flow.src:
            _fail(f"{want} with its source NATed, but the server saw the client's own address {seen}", t)
        elif not snat and seen != t.flow.src:
            _fail(f"{want} with its source {t.flow.src} preserved, but the server saw {seen} (SNAT)", t)
    return t


def assert_unreachable(em: "Emulator", src: str, dst: str, *, outcome: Optional[str] = None,
                       proto: Optional[str] = None, namespace: str = "default", mode: Optional[str] = None) -> Attempt:
    """A new connection from ``src`` to ``dst`` is not delivered — ending as ``outcome`` when given
    (rejected, dropped, no_listener, no_route, lost, unresolved, ...)."""
    want_d = _check_disposition(outcome) if outcome else None
    a = attempt(em, src, dst, proto=proto, namespace=namespace, mode=mode)
    want = f"expected {src} not to reach {dst}" + (f" (outcome {want_d})" if want_d else "")
    if a.disposition == "DELIVERED":
        o = a.trace.outcome
        _fail(f"{want}, but it was DELIVERED to {o.pod or o.host} at {o.ip}:{o.port}", a)
    if want_d and a.disposition != want_d:
        _fail(f"{want}, but the outcome was {a.disposition}", a)
    return a


def assert_resolves(em: "Emulator", name: str, ips: Union[str, Iterable[str]], *, from_pod: Optional[str] = None,
                    namespace: str = "default") -> "Resolution":
    """``name`` resolves to exactly ``ips`` (any order): one A question to CoreDNS, or with
    ``from_pod`` the pod's getaddrinfo() search walk."""
    want = sorted([ips] if isinstance(ips, str) else ips)
    r = em.resolve(name, "A", from_pod=from_pod, namespace=namespace)
    got = sorted(r.ips)
    if got != want:
        how = f" from pod {from_pod}" if from_pod else ""
        why = r.error or r.rcode or "no reply"
        _fail(f"expected {name}{how} to resolve to {', '.join(want) or 'nothing'}, got "
              f"{', '.join(got) or 'no address'} ({why})", r)
    return r


def assert_balanced(em: "Emulator", src: str, dst: str, *, pods: Optional[Iterable[str]] = None, n: int = 1000,
                    alpha: float = 0.001, proto: Optional[str] = None, namespace: str = "default",
                    mode: Optional[str] = None) -> dict[str, int]:
    """``n`` new connections spread evenly over the endpoints: Pearson's chi-square test of the
    counts against a uniform split must not reject at level ``alpha``. The endpoints are ``pods``
    (names or globs, each must match at least one pod that got traffic or that backs the Service),
    else the ready endpoints of the Service ``dst`` names. Returns connections per pod."""
    traces = em.traces(src, dst, n, proto=proto, namespace=namespace, mode=mode)
    bad = next((t for t in traces if t.outcome.disposition != "DELIVERED"), None)
    if bad is not None:
        lost = sum(1 for t in traces if t.outcome.disposition != "DELIVERED")
        _fail(f"expected {n} connections from {src} to {dst} to be balanced, but {lost} were not delivered "
              f"(first: {bad.outcome.disposition})", bad)
    counts = Counter(t.outcome.pod or t.outcome.host or "?" for t in traces)
    expected = _expected_pods(em, traces[0], pods, counts)
    stray = sorted(p for p in counts if p not in expected)
    table = "\n".join(f"  {p:<50} {counts.get(p, 0):>6}" for p in sorted(set(expected) | set(counts)))
    if stray:
        _fail(f"expected {src} -> {dst} to be balanced over {', '.join(sorted(expected))}, but connections "
              f"reached {', '.join(stray)}:\n{table}",
              next(t for t in traces if (t.outcome.pod or t.outcome.host) in stray))
    test = uniform_test([counts.get(p, 0) for p in sorted(expected)])
    if test.p_value < alpha:
        _fail(f"expected {n} connections from {src} to {dst} to be spread evenly over {len(expected)} endpoints; "
              f"chi-square {test.statistic:.2f} with {test.df} degrees of freedom, p = {test.p_value:.3g} < "
              f"alpha {alpha}:\n{table}", traces[0])
    return {p: counts.get(p, 0) for p in sorted(expected)}


def _expected_pods(em: "Emulator", first: Trace, pods: Optional[Iterable[str]], counts: Counter) -> list[str]:
    """The pod keys connections should spread over."""
    cluster = em._cluster                       # read only: no copy of a shared control plane
    if pods is not None:
        patterns = list(pods)
        keys = sorted({p.key for p in cluster.pods() if any(pod_matches(p.key, pat) for pat in patterns)}
                      | {k for k in counts if any(pod_matches(k, pat) for pat in patterns)})
        missing = [pat for pat in patterns if not any(pod_matches(k, pat) for k in keys)]
        if missing:
            raise ValueError(f"pods: no pod matches {', '.join(missing)}")
        return keys
    svc = _service_for(cluster, first.flow.dst, first.flow.dport)
    if svc is None:
        return sorted(counts)
    keys = set()
    for s in cluster.endpoint_slices(svc.namespace, svc.name):
        for e in s.endpoints:
            if e.ready and e.target_ref and e.target_ref[0] == "Pod":
                keys.add(f"{e.target_ref[1]}/{e.target_ref[2]}")
    return sorted(keys) or sorted(counts)


def _service_for(cluster, ip: str, port: int):
    """The Service behind a ClusterIP, external/LB IP or NodePort address the client connected to."""
    for s in cluster.services():
        for sp in s.ports:
            if sp.port == port and ip in (s.cluster_ip, *s.external_ips, *s.load_balancer_ips):
                return s
            if sp.node_port == port and any(n.ip == ip for n in cluster.nodes()):
                return s
    return None


def assert_sticky(em: "Emulator", src: str, dst: str, *, n: int = 10, proto: Optional[str] = None,
                  namespace: str = "default", mode: Optional[str] = None) -> str:
    """``n`` new connections from ``src`` all reach the same pod (ClientIP session affinity).
    Returns that pod."""
    traces = em.traces(src, dst, n, proto=proto, namespace=namespace, mode=mode)
    bad = next((t for t in traces if t.outcome.disposition != "DELIVERED"), None)
    if bad is not None:
        _fail(f"expected {n} connections from {src} to {dst} to stick to one pod, but one was "
              f"{bad.outcome.disposition}", bad)
    got = Counter(t.outcome.pod or t.outcome.host for t in traces)
    if len(got) > 1:
        first = traces[0].outcome.pod
        moved = next(t for t in traces if t.outcome.pod != first)
        _fail(f"expected {n} connections from {src} to {dst} to stick to one pod (ClientIP affinity), but they "
              f"reached {len(got)}: " + ", ".join(f"{p} x{c}" for p, c in sorted(got.items())) +
              f"\nfirst connection to another pod than {first}:", moved)
    return next(iter(got))
