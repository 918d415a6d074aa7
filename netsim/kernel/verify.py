"""`netsim verify`: the same flows through the real kernel and through the emulator, compared one by one.

Flows go from pods, nodes and the external client to ClusterIPs (by IP and by Service name, resolved
with a real DNS query through the kube-dns ClusterIP), NodePorts on every node, LoadBalancer IPs and
pod IPs. For each kind of flow the emulator (netsim.dataplane.walker) is walked until its set of possible
outcomes stops growing; each kernel flow must then be one of them:

* the same disposition (delivered; refused = REJECT or no listener; dropped; unreachable),
* delivered to a pod in the emulator's endpoint set,
* seen by the pod from the same source address (SNAT or not).
"""
from __future__ import annotations

import random
import socket
import struct
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from netsim.control.kubeadm import kubernetes_service_ip
from netsim.kernel import netns
from netsim.kernel.probe import Probe, ProbeResult, run_probes

PREDICT_MIN_WALKS = 12          # walk a flow kind at least this often ...
PREDICT_STABLE_WALKS = 24       # ... and until this many walks in a row added no new outcome
PREDICT_MAX_WALKS = 400

_DISPOSITION = {"DELIVERED": "delivered", "REJECTED": "refused", "NO_LISTENER": "refused",
                "DROPPED": "dropped", "LOST": "dropped", "NO_ROUTE": "unreachable",
                "NEIGHBOR_UNREACHABLE": "unreachable", "TTL_EXCEEDED": "unreachable",
                "UNRESOLVED": "unresolved"}
_KERNEL = {"answered": "delivered", "refused": "refused", "timeout": "dropped",
           "unreachable": "unreachable", "denied": "denied", "error": "error"}


class VerifyError(RuntimeError):
    """verify could not run (bad flow count, no clients, ...)."""


@dataclass(frozen=True)
class FlowSpec:
    """One kind of flow: who connects where, and how the destination was named."""
    client: str                   # walker label: pod/NAME (with namespace), node/NAME, external
    client_ns: str                # Kubernetes namespace of a pod client ("" otherwise)
    netns: str                    # the kernel namespace to connect from
    dst: str
    dport: int
    proto: str                    # TCP | UDP
    target: str                   # human label: "ClusterIP default/web:80", "NodePort node-2:30081", ...
    by_name: str = ""             # Service DNS name when the client resolves it first
    affinity: bool = False        # the Service has sessionAffinity ClientIP

    def label(self) -> str:
        who = f"pod/{self.client_ns}/{self.client[4:]}" if self.client.startswith("pod/") else self.client
        how = f"{self.by_name} -> " if self.by_name else ""
        return f"{who} -> {how}{self.dst}:{self.dport}/{self.proto} ({self.target})"


Outcome = tuple[str, Optional[str], Optional[str]]      # (disposition, pod, source the pod saw)


@dataclass
class Prediction:
    outcomes: set[Outcome] = field(default_factory=set)
    example: dict[Outcome, Any] = field(default_factory=dict)   # one emulator Trace per outcome
    walks: int = 0


@dataclass
class FlowResult:
    spec: FlowSpec
    kernel: ProbeResult
    outcome: Outcome
    agrees: bool
    reason: str = ""
    resolved: Optional[str] = None


@dataclass
class VerifyReport:
    cluster: str
    results: list[FlowResult]
    predictions: dict[FlowSpec, Prediction]
    seconds_kernel: float = 0.0
    seconds_emulator: float = 0.0
    seconds_up: float = 0.0

    @property
    def disagreements(self) -> list[FlowResult]:
        return [r for r in self.results if not r.agrees]

    def lines(self, verbose: bool = False) -> list[str]:
        out = []
        for r in self.results:
            if verbose or not r.agrees:
                out.append(f"{'ok  ' if r.agrees else 'DIFF'} {r.spec.label()}: kernel {_fmt(r.outcome)}"
                           + ("" if r.agrees else f" — {r.reason}"))
        shown: set[tuple[FlowSpec, Outcome]] = set()
        for r in self.disagreements:
            if (r.spec, r.outcome) in shown:
                continue
            shown.add((r.spec, r.outcome))
            pred = self.predictions.get(r.spec)
            out.append("")
            out.append(f"=== disagreement: {r.spec.label()}")
            out.append(f"kernel: {_fmt(r.outcome)}; client {r.kernel.src}:{r.kernel.sport}; "
                       f"server said: {' '.join(f'{k}={v}' for k, v in r.kernel.answer.items()) or '-'}"
                       f"{'; ' + r.kernel.error if r.kernel.error else ''}")
            if pred:
                out.append(f"emulator ({pred.walks} walks) predicts: "
                           + "; ".join(_fmt(o) for o in sorted(pred.outcomes, key=str)))
                for o, tr in sorted(pred.example.items(), key=lambda kv: str(kv[0]))[:2]:
                    out.append(f"--- emulator trace for {_fmt(o)}:")
                    out.append(tr.render())
        kinds = Counter(r.spec.target.split()[0] for r in self.results)
        out.append("")
        out.append(f"verify {self.cluster}: {len(self.results)} flows "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}), "
                   f"{len(self.predictions)} kinds; {len(self.disagreements)} disagreements; "
                   f"kernel {self.seconds_kernel:.2f}s, emulator {self.seconds_emulator:.2f}s")
        return out


def _fmt(o: Outcome) -> str:
    d, pod, src = o
    return d + (f" to {pod}" if pod else "") + (f" seen from {src}" if src else "")


# ---------------------------------------------------------------------------- flows
def flow_kinds(cluster: Any, plan: Any) -> list[FlowSpec]:
    """Every kind of flow worth checking in this cluster."""
    clients: list[tuple[str, str, str]] = []          # (walker label, k8s namespace, netns)
    for key, p in sorted(plan.pods.items()):
        if not p.host_network:
            clients.append((f"pod/{p.name}", p.namespace, p.netns))
    for name, n in sorted(plan.nodes.items()):
        if n.running:
            clients.append((f"node/{name}", "", n.netns))
    external = ("external", "", plan.edge.external_netns)
    domain = cluster.config.cluster_domain
    # by-name flows need the cluster DNS: the kube-dns Service at dnsServiceIP (coredns enabled)
    dns = any(s.cluster_ip == cluster.config.dns_service_ip for s in cluster.services())
    specs: list[FlowSpec] = []
    running_nodes = [n for n in plan.nodes.values() if n.running]
    for svc in sorted(cluster.services(), key=lambda s: s.key):
        if svc.type == "ExternalName" or svc.cluster_ip in (None, "", "None"):
            continue
        for sp in svc.ports:
            if sp.protocol not in ("TCP", "UDP"):
                continue
            if sp.port == 53 and svc.namespace == "kube-system":
                continue                 # the DNS stand-in speaks DNS, not the probe line (checked by name)
            if svc.key == "default/kubernetes" and svc.cluster_ip == kubernetes_service_ip(cluster.config):
                continue                 # kube-apiserver speaks HTTPS, not the probe line (curled by tests)
            tgt = f"{svc.key}:{sp.port}"
            aff = svc.session_affinity == "ClientIP"
            for label, kns, ns in clients:
                specs.append(FlowSpec(label, kns, ns, svc.cluster_ip, sp.port, sp.protocol, f"ClusterIP {tgt}",
                                      affinity=aff))
                if label.startswith("pod/") and dns:
                    specs.append(FlowSpec(label, kns, ns, svc.cluster_ip, sp.port, sp.protocol,
                                          f"ClusterIP {tgt}", by_name=f"{svc.name}.{svc.namespace}.svc.{domain}",
                                          affinity=aff))
            if sp.node_port:
                for node in running_nodes:
                    for label, kns, ns in [external] + clients[:2]:
                        specs.append(FlowSpec(label, kns, ns, node.ip, sp.node_port, sp.protocol,
                                              f"NodePort {node.name}:{sp.node_port} {tgt}", affinity=aff))
            for ip in list(svc.load_balancer_ips) + list(svc.external_ips):
                kind = "LoadBalancer" if ip in svc.load_balancer_ips else "externalIP"
                for label, kns, ns in [external] + clients[:1]:
                    specs.append(FlowSpec(label, kns, ns, ip, sp.port, sp.protocol, f"{kind} {ip} {tgt}",
                                          affinity=aff))
    for key, p in sorted(plan.pods.items()):
        if p.served_by:
            continue                     # kube-apiserver's HTTPS and kube-proxy's HTTP ports: no probe line
        for port, proto in p.ports:
            if proto in ("TCP", "UDP") and not (p.dns_server and port == 53):
                for label, kns, ns in clients[:1] + [external]:
                    specs.append(FlowSpec(label, kns, ns, p.ip, port, proto, f"PodIP {key}:{port}"))
    return specs


def sample_flows(kinds: list[FlowSpec], n: int, rng: random.Random) -> list[FlowSpec]:
    """n flows: every kind once if n allows, the rest drawn at random (seeded)."""
    if n <= 0:
        raise VerifyError(f"--flows: expected a positive number, got {n}")
    if not kinds:
        raise VerifyError("the cluster has no Services or pods to send flows to")
    if n <= len(kinds):
        return rng.sample(kinds, n)
    return list(kinds) + [rng.choice(kinds) for _ in range(n - len(kinds))]


# ---------------------------------------------------------------------------- emulator side
def emulator_outcome(trace: Any, client_host: str = "") -> Outcome:
    """The emulator's outcome as the client observes it.

    * Delivered, but the reply does not come back from the address the client sent to (NAT not
      undone, e.g. an asymmetric path) or not at all: the client's TCP handshake never completes
      and a connected UDP socket ignores the stray datagram, so the client times out: dropped.
    * Refused, but the RST or ICMP error is lost on the way back (e.g. conntrack INVALID where the
      request's NAT happened on another node) or comes back without the NAT undone (the same
      asymmetric path): no socket matches it, so the client times out as well: dropped.
    * No ARP answer on the client's own host: "unreachable-neighbour" (EHOSTUNREACH after about
      3 s, or a timeout first; see _ALSO_ACCEPTED).
    * No route at a later hop (the router): the ICMP net unreachable aborts a TCP connect in
      SYN_SENT (tcp_v4_err) but is ignored by UDP without IP_RECVERR (__udp4_lib_err, non-fatal
      code): TCP "unreachable-remote", UDP dropped.
    * Dropped or rejected by the client's own host (OUTPUT/POSTROUTING): the walker says what the
      process sees (Outcome.client_error); UDP's send fails with EPERM: "denied".
    """
    o = trace.outcome
    proto = trace.flow.proto
    d = _DISPOSITION.get(o.disposition, o.disposition.lower())
    if o.client_error == "EPERM":
        return ("denied", None, None)
    if d == "unreachable" and o.host and o.host != client_host:
        d = "unreachable-remote" if proto == "tcp" else "dropped"
    elif o.disposition == "NEIGHBOR_UNREACHABLE":
        d = "unreachable-neighbour"
    if d == "delivered" and not (o.reply.received and o.reply.matches_request):
        d = "dropped"
    if d == "refused" and o.client_error != "ECONNREFUSED" and not (o.reply.received and o.reply.matches_request):
        # the RST / ICMP port unreachable is lost, or comes back on an asymmetric path with the NAT not
        # undone: its addresses (or the datagram quoted in the ICMP error) name the endpoint, not what
        # the client connected to, so no socket takes it (tcp_v4_rcv / __udp4_lib_err find none)
        d = "dropped"
    if d != "delivered":
        return (d, None, None)
    seen = o.seen_source.rsplit(":", 1)[0] if o.seen_source else None
    return (d, o.pod, seen)


def predict(walker: Any, spec: FlowSpec, dst: str) -> Prediction:
    host = walker.host_for(spec.client, spec.client_ns or "default")
    pred = Prediction()
    since_new = 0
    while pred.walks < PREDICT_MAX_WALKS:
        tr = walker.connect(host, dst, spec.dport, spec.proto.lower(), target=spec.target)
        pred.walks += 1
        o = emulator_outcome(tr, host.name)
        if o not in pred.outcomes:
            pred.outcomes.add(o)
            pred.example[o] = tr
            since_new = 0
        else:
            since_new += 1
        if pred.walks >= PREDICT_MIN_WALKS and since_new >= PREDICT_STABLE_WALKS:
            break
    return pred


# ---------------------------------------------------------------------------- kernel side
def kernel_outcome(r: ProbeResult) -> Outcome:
    d = _KERNEL.get(r.outcome, r.outcome)
    if d != "delivered":
        return (d, None, None)
    return (d, r.pod, r.peer_ip)


def resolve_a(netns_name: str, name: str, server: str, timeout: float = 2.0) -> Optional[str]:
    """One real DNS A query from inside `netns_name` to `server`:53; the first address, or None."""
    qid = random.getrandbits(16)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack("!HH", 1, 1)
    with netns.entered(netns_name):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(4096)
    except OSError:
        return None
    finally:
        s.close()
    from dnslib import DNSRecord, QTYPE
    try:
        rec = DNSRecord.parse(data)
    except Exception:                                    # noqa: BLE001 - a malformed answer is "no answer"
        return None
    for rr in rec.rr:
        if rr.rtype == QTYPE.A:
            return str(rr.rdata)
    return None


# ---------------------------------------------------------------------------- compare
# An ICMP error sent by a forwarding host for a missing route goes through ip_error()'s own limiter
# (net.ipv4.route.error_cost 1 s, error_burst 5 s: a host-global sysctl we must not change), so after
# a burst the TCP client of such a flow times out instead of failing at once.
_ALSO_ACCEPTED = {"unreachable-remote": {"unreachable", "dropped"},
                  # The client's own host gets no ARP answer: the kernel reports EHOSTUNREACH only once
                  # neighbour resolution fails, after mcast_solicit (3) probes retrans_time_ms (1 s)
                  # apart (ip-sysctl.rst, neigh/default); a probe with a shorter timeout sees a timeout.
                  "unreachable-neighbour": {"unreachable", "dropped"}}


def compare(spec: FlowSpec, kernel: ProbeResult, pred: Prediction) -> tuple[bool, str]:
    ko = kernel_outcome(kernel)
    if ko in pred.outcomes:
        return True, ""
    if any(ko[0] in _ALSO_ACCEPTED.get(o[0], ()) for o in pred.outcomes):
        return True, ""
    dispositions = {o[0] for o in pred.outcomes}
    if ko[0] not in dispositions:
        return False, f"kernel {ko[0]}, emulator {'/'.join(sorted(dispositions))}"
    pods = {o[1] for o in pred.outcomes if o[0] == ko[0]}
    if ko[1] not in pods:
        return False, f"endpoint {ko[1]} not in the emulator's set {sorted(p for p in pods if p)}"
    srcs = {o[2] for o in pred.outcomes if o[:2] == ko[:2]}
    return False, f"source seen {ko[2]}, emulator predicts {sorted(s for s in srcs if s)} (SNAT differs)"


def _without_affinity(cluster: Any) -> Any:
    """A copy of the cluster whose Services have no session affinity. With ClientIP affinity the
    first connection of a client may go to any endpoint (the SVC chain's --rcheck rules miss, the
    statistic rules decide), and the kernel's and the emulator's first draws differ; so the endpoint
    set comes from this twin and stickiness is checked on the kernel's flows (_check_affinity)."""
    twin = cluster.snapshot()
    for svc in twin.services():
        svc.session_affinity = "None"
    return twin


def _check_affinity(results: list[FlowResult]) -> None:
    """ClientIP affinity (xt_recent list per SEP, per node): every delivered flow of one client to
    one Service address must reach the same pod; flows to a different pod than the majority disagree."""
    groups: dict[tuple, list[FlowResult]] = defaultdict(list)
    for r in results:
        if r.spec.affinity and r.agrees and r.outcome[0] == "delivered":
            groups[(r.spec.netns, r.kernel.probe.dst, r.spec.dport, r.spec.proto)].append(r)
    for rs in groups.values():
        pods = Counter(r.outcome[1] for r in rs)
        if len(pods) > 1:
            main = pods.most_common(1)[0][0]
            for r in rs:
                if r.outcome[1] != main:
                    r.agrees = False
                    r.reason = f"sessionAffinity ClientIP: earlier flows of this client went to {main}"


def probe_kernel(kc: Any, specs: list[FlowSpec], timeout: float = 1.5,
                 concurrency: int = 128) -> tuple[list[ProbeResult], dict[tuple[str, str], Optional[str]], float]:
    """The kernel half of verify: resolve the by-name flows with real DNS queries, then send every flow
    through the running kernel cluster `kc`. Returns (results, DNS answers, seconds)."""
    from concurrent.futures import ThreadPoolExecutor
    cluster = kc.cluster
    pairs = sorted({(s.netns, s.by_name) for s in specs if s.by_name})
    with ThreadPoolExecutor(max_workers=32) as pool:      # setns() is per thread: each query in its own
        answers = pool.map(lambda p: resolve_a(p[0], p[1], cluster.config.dns_service_ip, timeout=timeout),
                           pairs)
        resolved: dict[tuple[str, str], Optional[str]] = dict(zip(pairs, answers))
    t0 = time.monotonic()
    probes = []
    for s in specs:
        dst = resolved[(s.netns, s.by_name)] if s.by_name else s.dst
        if dst is None:
            continue
        probes.append(Probe(s.netns, dst, s.dport, s.proto, tag=s))
    from netsim.control.progress import task
    with task(f"{len(probes)} real connections through the kernel"):
        kernel = run_probes(probes, timeout=timeout, concurrency=concurrency)
    return kernel, resolved, time.monotonic() - t0


def judge(cluster: Any, name: str, specs: list[FlowSpec], kernel: list[ProbeResult],
          resolved: dict[tuple[str, str], Optional[str]], seconds_kernel: float = 0.0) -> VerifyReport:
    """The emulator half of verify: predict each kind of flow and compare the kernel's results."""
    from netsim.dataplane.walker import Walker
    walker = Walker(cluster)
    fresh = None                       # affinity-free twin: the endpoint set before any --set
    if any(s.affinity for s in specs):
        fresh = Walker(_without_affinity(cluster))
    preds: dict[FlowSpec, Prediction] = {}
    t0 = time.monotonic()
    results: list[FlowResult] = []
    from netsim.control.progress import task
    with task("the emulator's predictions", total=len(kernel)) as advance:
        for r in kernel:
            s: FlowSpec = r.probe.tag
            if s not in preds:
                preds[s] = predict(fresh if s.affinity else walker, s, s.dst)
            ok, why = compare(s, r, preds[s])
            results.append(FlowResult(s, r, kernel_outcome(r), ok, why,
                                      resolved=r.probe.dst if s.by_name else None))
            advance()
    for s in specs:
        if s.by_name and resolved[(s.netns, s.by_name)] != s.dst:
            got = resolved[(s.netns, s.by_name)]
            results.append(FlowResult(s, ProbeResult(Probe(s.netns, s.dst, s.dport, s.proto), "error",
                                                     error=f"DNS answered {got}"),
                                      ("unresolved", None, None), False,
                                      f"DNS: {s.by_name} resolved to {got}, expected the ClusterIP {s.dst}"))
    _check_affinity(results)
    t_emu = time.monotonic() - t0
    return VerifyReport(name, results, preds, seconds_kernel=seconds_kernel, seconds_emulator=t_emu)


def verify_running(kc: Any, flows: int = 200, seed: int = 0, timeout: float = 1.5) -> VerifyReport:
    """Send `flows` real connections through the running kernel cluster `kc` and compare each."""
    specs = sample_flows(flow_kinds(kc.cluster, kc.plan), flows, random.Random(seed))
    kernel, resolved, t_kernel = probe_kernel(kc, specs, timeout=timeout)
    return judge(kc.cluster, kc.name, specs, kernel, resolved, t_kernel)


def run_verify(cluster: Any, name: str, flows: int = 200, seed: int = 0, sources: Optional[list[str]] = None,
               timeout: float = 1.5) -> VerifyReport:
    """Bring `cluster` up as `name`, verify, and always take it down again."""
    from netsim.kernel.build import KernelCluster
    t0 = time.monotonic()
    kc = KernelCluster.up(cluster, name, sources=sources or [])
    t_up = time.monotonic() - t0
    try:
        report = verify_running(kc, flows=flows, seed=seed, timeout=timeout)
        report.seconds_up = t_up
        return report
    finally:
        kc.down()
