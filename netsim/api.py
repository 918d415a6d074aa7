"""The public Python API: manifests in, an :class:`Emulator` out — traces, DNS answers, rule text,
kubectl-shaped faults, and cheap independent copies. The CLI, the pytest plugin and
``netsim.testing`` are built on it.

    import netsim
    em = netsim.load("example:httpd-app")
    t = em.trace("pod/client", "http://httpd-app/")
    assert t.outcome.disposition == "DELIVERED", t

Copies share what they can and own what changes: ``copy()`` shares the (then read-only) control
plane and each node's parsed and compiled rules with the original, and copies the connection
state (conntrack, IPVS connections, xt_recent lists, LB flows) and the RNG. The first change made
through a copy (or the original) — a fault, or reading ``.cluster`` — gives it a control plane of
its own (a pickle round trip of the store); rules are then re-rendered only for what the change
touched, as kube-proxy resyncs.
"""
from __future__ import annotations

import io
import os
import pickle
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

from netsim.control.docfields import ManifestError
from netsim.dataplane.trace import Disposition, Trace

if TYPE_CHECKING:
    from netsim.control.cluster import Cluster
    from netsim.control.events import Event
    from netsim.verdict import Verdict
    from netsim.dataplane.walker import Walker

__all__ = ["load", "Emulator", "Resolution", "ManifestError", "Trace", "DnsQueryError"]

Source = Union[str, "os.PathLike[str]"]


def load(*sources: Source, mode: Optional[str] = None, seed: Optional[int] = None,
         validate: str = "strict", limits: Any = None, kubeadm: Optional[bool] = None) -> "Emulator":
    """Load manifests into an emulator. A source is a path, ``"example:NAME"`` or YAML text (a str
    containing a newline); several sources are merged as ``netsim -f a -f b`` merges them.

    ``mode`` overrides the Cluster document's proxyMode (iptables, ipvs; ``none``: no kube-proxy
    rules); ``seed`` reseeds the cluster's RNG after loading, as ``netsim trace --seed`` does
    (addresses allocated while loading follow the Cluster document's seed); ``validate`` is
    kubectl's --validate (strict: unknown fields refused; warn: a notice; ignore); ``limits`` a
    ``netsim.control.inputread.InputLimits`` (source size, YAML values, aliases); ``kubeadm=False`` leaves out
    kubeadm's own objects (default/kubernetes, the static control-plane Pods, the kube-proxy
    DaemonSet), as the Cluster document's ``spec.kubeadm.enabled: false`` does. Bad input raises
    :class:`ManifestError` with a one-line message naming file, document and field."""
    from netsim.control.manifests import load as load_manifests
    flat: list[str] = []
    for s in sources:
        if isinstance(s, (list, tuple)):
            flat += [os.fspath(x) for x in s]
        else:
            flat.append(os.fspath(s))
    if not flat:
        raise ManifestError("netsim.load: no manifests given (expected a path, example:NAME or YAML text)")
    from netsim.rules import registry
    if mode is not None and mode not in registry.known_modes():
        registry.get(mode)                    # raises ProxyModeError (a ValueError) naming the modes
    cluster = load_manifests(flat, validate=validate, limits=limits, kubeadm=kubeadm)
    if mode is not None and mode in registry.known_modes(kube_proxy_only=True):
        cluster.config.proxy_mode = mode
    if seed is not None:
        cluster.rng.seed(seed)
    return Emulator(cluster, mode)


class DnsQueryError(ValueError):
    """A DNS question that cannot be asked; ``param`` is what was wrong: "NAME" or "TYPE"."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Resolution:
    """A DNS answer: one question to the cluster's CoreDNS, or (``from_pod``) the glibc search walk
    a pod's getaddrinfo() makes through its resolv.conf."""

    name: str
    qtype: str
    ips: list[str]                       # the addresses the answer holds (A/AAAA), in answer order
    rcode: Optional[str]                 # of the (last) reply; None: no reply
    answers: list[str] = field(default_factory=list)   # rdata of every answer record, as text
    from_pod: Optional[str] = None       # "ns/name" of the pod that walked its search list
    answered_name: Optional[str] = None  # the candidate that answered (search walk)
    error: Optional[str] = None          # search walk: EAI_NONAME, EAI_NODATA, EAI_AGAIN, EAI_FAIL
    steps: list[Any] = field(default_factory=list)       # search walk: netsim.dns.stub.StubQuery per query
    resolv_conf: Optional[str] = None
    reply: Any = None                    # direct question: the dnslib DNSRecord reply
    header: str = ""                     # direct question: dig's header lines

    @property
    def ok(self) -> bool:
        """Answered: NOERROR (possibly with no records of the type asked), or the walk found addresses."""
        if self.from_pod is not None:
            return self.error is None
        return self.rcode == "NOERROR"

    def render(self) -> str:
        """As `netsim dns query` prints it: dig's output, or the pod's resolv.conf and every query."""
        if self.from_pod is None:
            return f"{self.header}\n{self.reply}" if self.reply is not None else self.header
        lines = [f"# /etc/resolv.conf in {self.from_pod}"]
        lines += [f"  {line}" for line in (self.resolv_conf or "").splitlines()]
        lines.append(f"# getaddrinfo({self.name!r}, {self.qtype}): glibc search walk, {len(self.steps)} queries")
        width = max((len(s.qname) for s in self.steps), default=10)
        for i, s in enumerate(self.steps, 1):
            answers = ", ".join(s.answers) if s.answers else ""
            flag = " TC" if s.truncated else ""
            lines.append(f"  {i:>2}  {s.transport}  {s.qname:<{width}}  {s.qtype:<4}  "
                         f"{s.rcode or 'no reply'}{flag}  {answers}".rstrip())
        lines.append(f"=> {', '.join(self.ips)}  ({self.answered_name})" if self.ok else f"=> {self.error}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class Emulator:
    """One loaded cluster plus its data plane: a walker (conntrack, IPVS tables, sockets) per proxy
    mode, kept between calls, so later traces see earlier connections as the kernel would."""

    def __init__(self, cluster: "Cluster", mode: Optional[str] = None) -> None:
        self._cluster = cluster
        self._shared = False                  # the control plane is shared read-only with copies
        self._rng = cluster.rng               # one RNG per emulator (the cluster's while it owns one)
        self._mode = mode or cluster.config.proxy_mode
        self._walkers: dict[str, "Walker"] = {}
        self._dns: Any = None
        self._recorder: Any = None            # a list (or deque) that gets every trace (pytest plugin)
        self._capture_all = False             # capture packets of every trace (plugin's --netsim-trace-dir)
        self._wall_start = time.time()        # the real instant cluster time 0 stands for (pcap clocks)

    def __repr__(self) -> str:
        c = self._cluster
        return (f"<netsim.Emulator mode={self._mode} nodes={len(c.nodes())} pods={len(c.pods())} "
                f"services={len(c.services())}{' (shared control plane)' if self._shared else ''}>")

    # ------------------------------------------------------------------ state
    @property
    def cluster(self) -> "Cluster":
        """The control plane (``netsim.control.cluster.Cluster``). On a copy the first access makes the
        copy's own store (its changes must never reach the original); ask again after ``copy()``."""
        self._own()
        return self._cluster

    @property
    def mode(self) -> str:
        """The proxy mode traces and rules use unless told otherwise."""
        return self._mode

    @property
    def notices(self) -> list[str]:
        """Loader notices and warnings (skipped kinds, selectors that match nothing, ...)."""
        return list(self._cluster.notices)

    @property
    def now(self) -> float:
        """The cluster clock, seconds since it was created."""
        return self._cluster.clock.now

    def copy(self) -> "Emulator":
        """An independent emulator: own clock, RNG, conntrack, IPVS and xt_recent state, and (from
        its first change on) own control plane; the rules rendered so far are shared, not redone."""
        return self._copy(None)

    def _copy(self, rng: Optional[random.Random]) -> "Emulator":
        if not self._shared:
            self._cluster.share()
            self._shared = True
        other = Emulator.__new__(Emulator)
        other._cluster = self._cluster
        other._shared = True
        other._mode = self._mode
        if rng is None:
            rng = random.Random()
            rng.setstate(self._rng.getstate())
        other._rng = rng
        other._walkers = {m: w.fork(other._rng) for m, w in self._walkers.items()}
        other._dns = None
        other._recorder = None
        other._capture_all = False
        other._wall_start = self._wall_start
        return other

    def _own(self) -> None:
        """Give this emulator a control plane of its own before anything changes it."""
        if not self._shared:
            return
        self._cluster = _clone_cluster(self._cluster, self._rng)
        self._shared = False
        for w in self._walkers.values():
            w.rebind(self._cluster)
        self._dns = None

    def _walker(self, mode: Optional[str]) -> "Walker":
        m = mode or self._mode
        w = self._walkers.get(m)
        if w is None:
            from netsim.dataplane.walker import Walker
            w = Walker(self._cluster, m)
            w.rng = self._rng
            self._walkers[m] = w
        return w

    def prepare(self, mode: Optional[str] = None, nodes: Optional[Iterable[str]] = None) -> None:
        """Render and parse every node's rules now (kube-proxy's first sync), so that copies taken
        afterwards share them instead of each rendering its own; ``nodes``: only these nodes' (a
        name that is not a node is left out), for a caller that knows which nodes its traces meet."""
        w = self._walker(mode)
        w.sync()                 # hosts built now: copies taken later start from this sync, not each their own
        names = [n.name for n in self._cluster.nodes()]
        if nodes is not None:
            want = set(nodes)
            names = [n for n in names if n in want]
        for name in names:
            w.netfilter(name)
            w.ipvs(name)

    def release(self, mode: Optional[str] = None, nodes: Iterable[str] = ()) -> bool:
        """Forget these nodes' rules (the opposite of ``prepare``: rendered again when a packet next
        meets them), to bound the memory of a long-lived emulator that meets many nodes; traces do
        not change. False where the mode's provider cannot (nothing forgotten)."""
        w = self._walkers.get(mode or self._mode)
        return True if w is None else w.release(nodes)

    # ------------------------------------------------------------------ traces
    def trace(self, src: str, dst: str, *, proto: Optional[str] = None, namespace: str = "default",
              mode: Optional[str] = None, capture: bool = False) -> Trace:
        """One new connection from ``src`` (``pod/NAME``, ``node/NAME``, ``external``) to ``dst``
        (``http://name[.ns][:port]/path``, ``name[.ns]:port|:portname``, ``IP:port``), walked there
        and back. A name that does not resolve gives outcome UNRESOLVED; a bad src or dst raises
        ValueError with the CLI's message."""
        return self.traces(src, dst, 1, proto=proto, namespace=namespace, mode=mode, capture=capture)[0]

    def traces(self, src: str, dst: str, n: int, *, proto: Optional[str] = None, namespace: str = "default",
               mode: Optional[str] = None, capture: bool = False, rate: Optional[float] = None) -> list[Trace]:
        """``n`` new connections (what ``netsim trace --count n`` sends), each resolved afresh."""
        return list(self.iter_traces(src, dst, n, proto=proto, namespace=namespace, mode=mode, capture=capture,
                                     rate=rate))

    def iter_traces(self, src: str, dst: str, n: int, *, proto: Optional[str] = None, namespace: str = "default",
                    mode: Optional[str] = None, capture: bool = False,
                    rate: Optional[float] = None) -> Iterator[Trace]:
        """:meth:`traces` one at a time, each yielded as it is made (what ``--count`` sums up without
        keeping them). ``rate``: connections per second of the cluster clock — connection i starts
        i/rate seconds after the first (the clock run forward as :meth:`advance` does), so
        conntrack entries, IPVS connections and xt_recent entries time out as they would; None (the
        default) sends them all at one instant. ValueError as :meth:`trace`."""
        from netsim.control.progress import task
        from netsim.dataplane.target import parse_target
        if n < 1:
            raise ValueError(f"count: expected at least 1 connection, got {n}")
        if rate is not None and not rate > 0:
            raise ValueError(f"rate: expected connections per second above 0, got {rate}")
        walker = self._walker(mode)
        host = walker.host_for(src, namespace)
        target = parse_target(dst)
        ns = host.name.split("/", 1)[0] if host.kind == "pod" else namespace
        capture = capture or self._capture_all
        start = self._cluster.clock.now
        with task(f"{n} connections", total=n) if n > 1 else nullcontext(lambda: None) as advance:
            for i in range(n):
                if rate is not None and i:
                    due = start + i / rate
                    if due > self._cluster.clock.now:
                        self.advance(due - self._cluster.clock.now)
                        host = walker._current(host)          # hosts are rebuilt if the cluster changed
                out: list[Trace] = []
                self._one_connection(walker, host, target, proto, ns, capture, dst, out)
                advance()
                yield out[0]

    def _one_connection(self, walker: Any, host: Any, target: Any, proto: Optional[str], ns: str, capture: bool,
                        dst: str, out: list) -> None:
        """One new connection of :meth:`traces`, its trace appended to ``out``."""
        from netsim.dataplane.target import Unresolved, resolve, unresolved_trace
        try:
            r = resolve(walker, host, target, proto, ns, capture=capture)
        except Unresolved as e:          # a name that does not resolve is an outcome, not an error
            out.append(unresolved_trace(walker, host, target, proto, e))
            return
        full = target.http and r.proto == "tcp"
        payload = f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode() if full else b""
        t = walker.connect(host, r.ip, r.port, r.proto, full=full, payload=payload, capture=capture,
                           target=dst, resolved_by=r.how, notes=r.notes)
        t.outcome.disposition = Disposition(t.outcome.disposition, t)
        if self._recorder is not None:
            self._recorder.append(t)
        t.capture_only[:0] = [(0, walk) for walk in r.dns_walks]     # the DNS packets come first
        out.append(t)

    def verdict(self, src: str, dst: str, *, proto: Optional[str] = None, namespace: str = "default",
                mode: Optional[str] = None, max_paths: int = 4096) -> "Verdict":
        """Every way one new connection from ``src`` to ``dst`` (as :meth:`trace` takes them) can go,
        with the share of each: every random branch of the rules (xt_statistic, the load balancer's
        pick, a headless name's address) followed as kube-proxy's own test tracer follows them, each
        on a fresh copy, so this emulator's state is untouched. A ``netsim.verdict.Verdict``:
        disposition, endpoints with shares, SNAT, rules evaluated. ValueError as :meth:`trace`;
        ``netsim.verdict.TooManyPaths`` past ``max_paths`` walks."""
        from netsim.verdict import explore
        m = mode or self._mode
        if m not in self._walkers:
            self.prepare(m)                   # copies share the rendered rules instead of each rendering

        def run(rng: random.Random) -> tuple[Trace, Any]:
            em = self._copy(rng)

            def again() -> Trace:
                return em.trace(src, dst, proto=proto, namespace=namespace, mode=m)
            return again(), again
        from netsim.dataplane.target import parse_target
        by_name = not parse_target(dst).is_ip
        return explore(run, max_paths, settle_lookup=by_name)

    def conntrack(self, mode: Optional[str] = None) -> str:
        """``conntrack -L`` of every node that has entries, after the traces so far."""
        w = self._walkers.get(mode or self._mode)
        if w is None:
            return ""
        out = []
        for node in sorted(w.conntrack):
            if len(w.conntrack[node]):
                out.append(f"# conntrack -L (node {node})")
                out.append(w.conntrack_listing(node))
        return "\n".join(out)

    def write_pcap(self, path: Union[str, "os.PathLike[str]"], traces: list[Trace], *, at: Optional[str] = None,
                   namespace: str = "default") -> int:
        """Every captured packet of ``traces`` (traced with ``capture=True``) to a pcapng file, time-
        stamped with the real time this emulator was loaded plus the cluster clock; ``at``
        (``HOST[:IFACE]``: ``node-1``, ``node-1:cni0``, ``pod/NAME`` in ``namespace``, ``external``,
        ``router``, ``loadbalancer``) keeps one capture point, as ``tcpdump -i IFACE`` (or ``-i any``)
        there would record it. Returns the number of packets written. ValueError for an unknown
        capture point, OSError when the file cannot be written."""
        from netsim.dataplane.pcap import save_traces
        point = self._capture_point(at, namespace) if at else None
        return save_traces(os.fspath(path), traces, self._wall_start + self._cluster.clock.now, point)

    def _capture_point(self, text: str, namespace: str) -> tuple[str, Optional[str]]:
        host, _, iface = text.partition(":")
        kind, sep, name = host.partition("/")
        if sep and kind in ("pod", "po"):
            host = name if "/" in name else f"{namespace}/{name}"
        elif sep and kind in ("node", "no"):
            host = name
        hosts = self._walker(None).topology.hosts
        h = hosts.get(host)
        if h is None:
            raise ValueError(f"--pcap-at {text}: no host {host!r} (expected a node, pod/NAME, external, router or "
                             "loadbalancer)")
        if iface and iface not in h.interfaces:
            raise ValueError(f"--pcap-at {text}: {host} has no interface {iface!r} (it has "
                             f"{', '.join(sorted(h.interfaces))})")
        return host, iface or None

    # ------------------------------------------------------------------ DNS and rules
    def resolve(self, name: str, qtype: str = "A", *, from_pod: Optional[str] = None,
                namespace: str = "default", tcp: bool = False, family: str = "AF_UNSPEC") -> Resolution:
        """What the cluster's DNS answers for ``name`` (as ``netsim dns query``): one question to
        CoreDNS, or with ``from_pod`` (``pod/NAME`` or ``NAME`` in ``namespace``) getaddrinfo()'s
        walk through that pod's resolv.conf search list (``family``: AF_UNSPEC, AF_INET, AF_INET6)."""
        from dnslib import QTYPE, DNSRecord

        from netsim.dns.message import handle
        from netsim.dns.names import name_problem
        qtype = qtype.upper()
        try:
            getattr(QTYPE, qtype)
        except Exception:
            raise DnsQueryError(f"{qtype!r}: expected a record type such as A, AAAA, SRV, PTR, TXT, NS, SOA",
                                "TYPE") from None
        why = name_problem(name)
        if why:
            raise DnsQueryError(f"{name!r} is not a legal name ({why})", "NAME")
        cluster = self._cluster
        resolver = self._resolver()
        if from_pod is not None:
            return self._search_walk(resolver, name, from_pod, namespace, family)
        q = DNSRecord.question(name, qtype)
        q.header.id = random.Random(cluster.config.seed).getrandbits(16)
        reply = DNSRecord.parse(handle(resolver, q.pack(), "tcp" if tcp else "udp"))
        header = (f"; <<>> netsim dns query <<>> {name} {qtype}\n"
                  f";; SERVER: CoreDNS stand-in, zone {cluster.config.cluster_domain} "
                  f"({cluster.config.dns_service_ip}#53/{'tcp' if tcp else 'udp'})")
        answers = [str(rr.rdata) for rr in reply.rr]
        ips = [str(rr.rdata) for rr in reply.rr if QTYPE.get(rr.rtype) in ("A", "AAAA")]
        return Resolution(name, qtype, ips, _rcode(reply), answers, reply=reply, header=header)

    def _resolver(self) -> Any:
        if self._dns is None:
            from netsim.dns.resolver import ClusterDNS
            self._dns = ClusterDNS(self._cluster)
        return self._dns

    def _search_walk(self, resolver: Any, name: str, from_pod: str, namespace: str, family: str) -> Resolution:
        from netsim.dns.resolvconf import ResolvConfError, pod_resolv_conf
        from netsim.dns.stub import search, wire_query_fns
        if family not in ("AF_UNSPEC", "AF_INET", "AF_INET6"):
            raise ValueError(f"family: expected AF_UNSPEC, AF_INET or AF_INET6, got {family!r}")
        kind, sep, rest = from_pod.partition("/")
        if sep and kind not in ("pod", "pods", "po"):
            raise ValueError(f"--from {from_pod}: expected pod/NAME (the search walk needs a pod's resolv.conf)")
        pod_name = rest if sep else from_pod
        pod = self._cluster.pod(namespace, pod_name)
        if pod is None:
            raise ValueError(f'--from: pod "{pod_name}" not found in namespace "{namespace}"')
        try:
            rc = pod_resolv_conf(pod, self._cluster.config)
        except ResolvConfError as e:
            raise ValueError(str(e)) from None
        udp, tcp = wire_query_fns(resolver, rc, random.Random(self._cluster.config.seed))
        result = search(rc, name, udp, family, tcp_query_fn=tcp)
        last = result.steps[-1] if result.steps else None
        return Resolution(name, family, list(result.answer_ips), last.rcode if last else None,
                          [a for s in result.steps for a in s.answers], from_pod=f"{namespace}/{pod_name}",
                          answered_name=result.answered_name, error=result.error, steps=list(result.steps),
                          resolv_conf=rc.render())

    def rules(self, node: str, *, mode: Optional[str] = None, restore_input: bool = False,
              tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        """The rules kube-proxy programs on ``node`` (what ``netsim rules`` prints): iptables-save's
        view (``tables`` to pick filter/nat/mangle), or with ``restore_input`` exactly what
        kube-proxy hands to iptables-restore; in IPVS mode ``ipvsadm -Sn``, ``ipset save`` and
        the iptables text; in nftables mode the ``ip kube-proxy`` table as ``nft -f`` input (with
        ``restore_input`` the transaction kube-proxy sends on its first sync; ``release`` picks the
        kube-proxy ruleset, see netsim.rules.nftables.config). Each mode's provider renders
        (netsim.rules.registry). ValueError for an unknown node or a mode that programs no rules."""
        from netsim.rules.registry import get
        return get(mode or self._mode).render(self._cluster, node, restore_input=restore_input,
                                              tables=tuple(tables) if tables else None, release=release)

    def events(self, namespace: Optional[str] = None) -> list["Event"]:
        """The control plane's event log (as ``kubectl get events``); cluster-scoped events always."""
        return [e for e in self._cluster.event_log if namespace is None or e.namespace in ("", namespace)]

    # ------------------------------------------------------------------ faults (kubectl-shaped)
    def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        """``kubectl scale deployment|replicaset|statefulset NAME --replicas=N``."""
        self._own()
        self._cluster.scale(namespace, name, replicas)

    def delete_pod(self, name: str, namespace: str = "default", grace_period: float = 30,
                   force: bool = False) -> None:
        """``kubectl delete pod NAME [--grace-period=N] [--force]``: terminating until the kubelet
        confirms (grace_period seconds on a running node), then gone; ReplicaSets replace it."""
        self._own()
        self._cluster.delete_pod(namespace, name, grace_period=grace_period, force=force)

    def set_pod_ready(self, name: str, ready: bool, namespace: str = "default") -> None:
        """A readiness probe result: the pod's endpoints turn ready or not ready."""
        self._own()
        self._cluster.set_pod_ready(namespace, name, ready)

    def stop_node(self, name: str) -> None:
        """The node's kubelet stops reporting; the node lifecycle controller reacts as time passes."""
        self._own()
        self._cluster.stop_node(name)

    def start_node(self, name: str) -> None:
        """The node's kubelet is back: Ready at once, evictions cancelled, deletions completed."""
        self._own()
        self._cluster.start_node(name)

    def advance(self, seconds: float) -> None:
        """Run the cluster clock forward (heartbeats, NotReady after 50 s, eviction after 300 s,
        grace periods, conntrack and IPVS timeouts)."""
        self._own()
        self._cluster.advance(seconds)


def _rcode(reply: Any) -> str:
    from dnslib import RCODE
    return RCODE.get(reply.header.rcode)


def _clone_cluster(cluster: "Cluster", rng: random.Random) -> "Cluster":
    """A copy of ``cluster`` whose RNG is ``rng`` (every reference to the old one, the address
    allocators' included, points at it). A pickle round trip: ~4x faster than copy.deepcopy."""
    old_rng = cluster.rng
    buf = io.BytesIO()

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Optional[str]:
            return "rng" if obj is old_rng else None

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return rng

    _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(cluster)
    buf.seek(0)
    return _Unpickler(buf).load()
