"""Kernel measurements of `netsim bench` (``source: kernel``): rule loading and first-connection latency.

Everything here creates its own network namespaces and deletes them in ``finally``; run it only
inside ``unshare --net --mount --propagation private`` (the harness refuses otherwise).

* :func:`measure_load` – a fresh namespace per repeat; the sync scenario's full text loaded with
  ``iptables-restore`` (iptables-nft or iptables-legacy), IPVS mode's ``ipset restore`` and iptables
  text (and ``ipvsadm -R`` where the kernel has ip_vs), then the incremental change applied as
  kube-proxy applies it (``iptables-restore --noflush``; for IPVS the ``ipvsadm -a`` of the new real
  server where ip_vs exists). The tool runs in a child forked from a thread already inside the
  namespace (no ``ip netns exec`` in the timing).
* :func:`measure_connect` – a one-node kernel cluster (``KernelCluster.up``): a client pod and E
  server pods, N ClusterIP Services selecting them, the node's kube-proxy rules loaded with the
  chosen backend; new TCP connections from the client pod's namespace to the ClusterIP of the
  Service whose KUBE-SERVICES rule comes first and of the one that comes last (SYN → SYN-ACK through
  the node's nat PREROUTING, un-NAT of the reply by conntrack), timed around ``connect()``; the client
  process's CPU time (getrusage) per connection; and the floor: the same connections straight to a
  server pod's IP with no kube-proxy rules loaded at all.
"""
from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import time
import uuid
from typing import Any, Optional

from netsim.benchmarks.records import Record, distribution, timed

BACKENDS = {"iptables-nft": "iptables-nft-restore", "iptables-legacy": "iptables-legacy-restore"}


class KernelMeasureError(RuntimeError):
    """A kernel measurement could not run (the message says what is missing)."""


def in_namespace(ns: str, argv: list[str], text: str) -> float:
    """Run ``argv`` with ``text`` on stdin inside namespace ``ns``; seconds from spawn to exit."""
    from netsim.kernel import netns
    with netns.entered(ns):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=1800)
        dt = time.perf_counter() - t0
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split())[:300]
        raise KernelMeasureError(f"{' '.join(argv)} in {ns}: exit {proc.returncode}: {msg}")
    return dt


def _scratch_ns() -> str:
    from netsim.kernel import netns
    name = f"nsb-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    return name


def backend_tool(backend: str) -> str:
    tool = BACKENDS.get(backend)
    if tool is None:
        raise KernelMeasureError(f"iptables backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if shutil.which(tool) is None:
        raise KernelMeasureError(f"{tool} is not installed (Debian package iptables)")
    return tool


def ip_vs_present() -> bool:
    return os.path.exists("/proc/net/ip_vs")


def measure_load(mode: str, services: int, endpoints: int, backend: str, repeats: int) -> list[Record]:
    """Kernel load time of one full sync and of the incremental change, ``repeats`` fresh namespaces:
    each load the mode's provider lists (netsim.rules.provider.KernelLoad), in its order, with
    ``backend``'s iptables-restore; IPVS loads only where the kernel has ip_vs and ipvsadm is installed."""
    from netsim.benchmarks.sync import sync_records
    from netsim.kernel import netns
    from netsim.rules.iptables import kernel as rules
    from netsim.rules.provider import IPTABLES_RESTORE, KernelLoad
    _, measured = sync_records(mode, services, endpoints, repeats=1)
    tool = backend_tool(backend)
    with_ipvs = ip_vs_present() and shutil.which("ipvsadm") is not None
    loads = [ld for ld in measured.loads if with_ipvs or not ld.needs_ip_vs]
    times: list[list[float]] = [[] for _ in loads]
    for _ in range(repeats):
        ns = _scratch_ns()
        try:
            for ld in loads:               # nfacct objects first: a rule naming a missing one fails the restore
                for argv, text in ld.commands:
                    if argv[0] == IPTABLES_RESTORE and not ld.change:
                        rules.ensure_nfacct(ns, text)
            for ld, spent in zip(loads, times):
                t = 0.0
                for argv, text in ld.commands:
                    t += in_namespace(ns, [tool if a == IPTABLES_RESTORE else a for a in argv], text)
                spent.append(t)
        finally:
            netns.remove(ns)
    def used_backend(ld: KernelLoad) -> str:      # the iptables backend where the load restores iptables text
        return backend if any(argv[0] == IPTABLES_RESTORE for argv, _ in ld.commands) else ld.tool.split()[0]
    return [timed(mode, services, endpoints, "kernel_incremental_seconds" if ld.change else "kernel_load_seconds",
                  spent, "s", "kernel", backend=used_backend(ld), tool=ld.tool,
                  **({"change": ld.change} if ld.change else {}))
            for ld, spent in zip(loads, times)]


# ---------------------------------------------------------------- first connection
def connect_cluster(services: int, endpoints: int) -> Any:
    """One node; a client pod and ``endpoints`` server pods (bench_kernel's topology with one node);
    ``services`` ClusterIP Services selecting the servers."""
    from netsim.benchmarks.bench_kernel import topology
    from netsim.control.model import Service, ServicePort
    cluster = topology(1, endpoints + 1)
    if services:
        cluster.apply([Service(name=f"svc-{i:05d}", namespace="default", selector={"app": "web"},
                               ports=[ServicePort(port=80, target_port=8080, name="http")])
                       for i in range(services)])
    return cluster


def service_order(text: str) -> list[str]:
    """ClusterIPs in KUBE-SERVICES order (the order a first packet tries them)."""
    out = []
    for line in text.splitlines():
        if line.startswith("-A KUBE-SERVICES ") and " -d " in line and "--dport 80 " in line \
                and "-j KUBE-SVC-" in line:
            out.append(line.split(" -d ", 1)[1].split()[0].split("/")[0])
    return out


def _connections(client_ns: str, ip: str, port: int, n: int) -> tuple[list[float], float]:
    """``n`` new TCP connections; their connect() latencies (s) and the process CPU they cost (s)."""
    from netsim.kernel import netns
    lat = []
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        with netns.entered(client_ns):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.settimeout(3.0)
            t0 = time.perf_counter()
            s.connect((ip, port))
            lat.append(time.perf_counter() - t0)
        finally:
            s.close()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return lat, cpu


def _targets_interleaved(client_ns: str, targets: dict[str, tuple[str, int]], connections: int,
                         chunks: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per target (position -> (ip, port)): ``connections`` connect() latencies and the CPU per connection
    of each chunk. Every target is warmed first (neighbour entries, caches); then the chunks alternate
    between the targets, so whatever else the machine does at the time (a loaded host, a software-emulated
    guest settling after set-up) weighs on each target alike rather than on whichever comes first."""
    for ip, port in targets.values():
        _connections(client_ns, ip, port, 20)
    per = max(1, connections // chunks)
    out: dict[str, tuple[list[float], list[float]]] = {pos: ([], []) for pos in targets}
    for _ in range(chunks):
        for position, (ip, port) in targets.items():
            got, c = _connections(client_ns, ip, port, per)
            out[position][0].extend(got)
            out[position][1].append(c / per)
    return out


def _load_with(backend: str, ns: str, text: str) -> None:
    from netsim.rules.iptables import kernel as rules
    rules.ensure_nfacct(ns, text)
    in_namespace(ns, [backend_tool(backend), "-w", "5"], text)


def measure_connect(mode: str, services: int, endpoints: int, backend: str, connections: int,
                    chunks: int = 5) -> list[Record]:
    """First-connection latency (p50/p99) and CPU per connection, first and last Service (or the floor
    when ``services`` is 0: straight to a server pod, no kube-proxy rules)."""
    from netsim.rules.registry import get
    if not get(mode).iptables_only:
        raise KernelMeasureError(f"first-connection latency for mode {mode} with an iptables backend: its rules are "
                                 "not one iptables text (measure_connect_programmed programs it)")
    from netsim.rules.iptables import kernel as rules
    from netsim.kernel.build import KernelCluster
    backend_tool(backend)
    cluster = connect_cluster(services, endpoints)
    name = "nb" + uuid.uuid4().hex[:6]
    kc = KernelCluster.up(cluster, name, load_rules=False)
    try:
        plan = kc.plan
        node = plan.nodes["node-1"]
        client = plan.pods["default/client"].netns
        if services:
            text = rules.restore_input(cluster, "node-1")
            _load_with(backend, node.netns, text)
            order = service_order(text)
            targets = {"first": order[0], "last": order[-1]}
            port = 80
        else:
            web = sorted(p.ip for k, p in plan.pods.items() if k.startswith("default/web-"))
            targets = {"pod-ip": web[0]}
            port = 8080
        out: list[Record] = []
        measured = _targets_interleaved(client, {pos: (ip, port) for pos, ip in targets.items()}, connections,
                                        chunks)
        for position, (lat, cpu) in measured.items():
            labels = dict(position=position, backend=backend if services else "none",
                          rules="kube-proxy" if services else "none")
            out += distribution(mode, services, endpoints, "kernel_first_connection_latency", lat, "µs",
                                "kernel", scale=1e6, **labels)
            out.append(timed(mode, services, endpoints, "kernel_cpu_per_connection", cpu, "µs", "kernel",
                             scale=1e6, digits=2, **labels, process="client"))
        return out
    finally:
        kc.down()


def measure_connect_programmed(mode: str, services: int, endpoints: int, connections: int,
                               chunks: int = 5) -> list[Record]:
    """First-connection latency (p50/p99) and CPU per connection to the first and the last Service
    by name, the node programmed by the kernel backend as the mode's provider programs it (IPVS:
    ipsets, iptables, kube-ipvs0 and virtual servers; a hash lookup, so position should not matter)."""
    from netsim.kernel.build import KernelCluster
    from netsim.rules.registry import get
    why = get(mode).kernel_support()
    if why:
        raise KernelMeasureError(why)
    if not services:
        raise KernelMeasureError(f"{mode} first connection needs at least one Service")
    cluster = connect_cluster(services, endpoints)
    cluster.config.proxy_mode = mode
    name = "nv" + uuid.uuid4().hex[:6]
    kc = KernelCluster.up(cluster, name, start_servers=True)
    try:
        client = kc.plan.pods["default/client"].netns
        svcs = sorted((s for s in cluster.services() if s.name.startswith("svc-")), key=lambda s: s.name)
        out: list[Record] = []
        measured = _targets_interleaved(client, {"first": (svcs[0].cluster_ip, 80), "last": (svcs[-1].cluster_ip, 80)},
                                        connections, chunks)
        for position, (lat, cpu) in measured.items():
            labels = dict(position=position, backend=mode, rules="kube-proxy")
            out += distribution(mode, services, endpoints, "kernel_first_connection_latency", lat, "µs",
                                "kernel", scale=1e6, **labels)
            out.append(timed(mode, services, endpoints, "kernel_cpu_per_connection", cpu, "µs", "kernel",
                             scale=1e6, digits=2, **labels, process="client"))
        return out
    finally:
        kc.down()


def root_reason() -> Optional[str]:
    """Why kernel measurements cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (kernel measurements need network namespaces; run under unshare --net --mount as root)"
    if shutil.which("iptables-restore") is None:
        return "iptables-restore is not installed"
    return None
