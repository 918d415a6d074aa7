"""The trace corpus: what ``netsim trace`` prints on a fixed set of connections, to prove that a
change to the data plane (a refactoring, a speed-up) changed nothing a user sees.

    python scripts/trace_corpus.py                 # regenerate tests/data/trace_corpus/ (review the diff!)
    python scripts/trace_corpus.py OUT_DIR         # write it elsewhere, then: diff -r tests/data/trace_corpus OUT_DIR

tests/test_trace_corpus.py walks the same connections and compares byte for byte. The corpus is a
regression record of the emulator's own output (not a fidelity golden: goldens come from upstream
tests or the real kernel): regenerate it only for a change meant to alter what traces print.

For every proxy mode (iptables, ipvs, nftables) and cluster (the built-in examples and the data-plane
scenario cluster of tests/test_walker_scenarios.py, VXLAN and host-gw), it walks a connection from
one pod on each node, one node and the external host to every address a client can aim at
(ClusterIP, NodePort on every node, LoadBalancer and external IPs, per port and protocol, every pod
IP, the Services by name); then again three seconds later (conntrack, IPVS connections, affinity
carry over), then after deleting a pod and stopping a node. Each record is the trace as ``netsim
trace -v`` prints it, the CRC-32 of its JSON form (``-o json``) and of every captured packet.
Each (mode, cluster, target) is one gzip file (fixed header time, so regenerating changes no
bytes); each (mode, cluster) also keeps every node's ``conntrack -L`` at the end.
"""
from __future__ import annotations

import gzip
import io
import random
import re
import sys
import zlib
from pathlib import Path

import netsim

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "trace_corpus"
MODES = ("iptables", "ipvs", "nftables")
EXAMPLES = ("httpd-app", "kubectl-httpd", "shop")
SCENARIO_NETWORKS = ("vxlan", "host-gw")
CLUSTERS = EXAMPLES + tuple(f"scenario-{net}" for net in SCENARIO_NETWORKS)
CONNTRACK = "_conntrack"


def source_text(cluster: str) -> str:
    """What netsim.load() takes for ``cluster`` (an example name or scenario-NETWORK)."""
    if cluster.startswith("scenario-"):
        sys.path.insert(0, str(ROOT / "tests"))
        from walker_cluster import SCENARIO_YAML
        return SCENARIO_YAML % {"pod_network": cluster.removeprefix("scenario-")}
    return f"example:{cluster}"


def _destinations(emu: netsim.Emulator) -> list[tuple[str, str]]:
    """(--to, --proto) for every address a client can aim at."""
    c = emu.cluster
    nodes = [n.ip for n in c.nodes()]
    out: list[tuple[str, str]] = []
    for s in c.services():
        for p in s.ports:
            proto = p.protocol.lower()
            if s.cluster_ip and s.cluster_ip != "None":
                out.append((f"{s.cluster_ip}:{p.port}", proto))
            if p.node_port:
                out += [(f"{ip}:{p.node_port}", proto) for ip in nodes]
            out += [(f"{ip}:{p.port}", proto) for ip in list(s.load_balancer_ips) + list(s.external_ips)]
        if s.ports and s.ports[0].protocol == "TCP":
            out.append((f"http://{s.name}.{s.namespace}", "tcp"))
    for pod in c.pods():
        if pod.ip and not pod.host_network:
            port = pod.ports[0] if pod.ports else None
            out.append((f"{pod.ip}:{port.container_port if port else 80}", (port.protocol if port else "TCP").lower()))
    return out


def _sources(emu: netsim.Emulator) -> list[tuple[str, str]]:
    """(--from, -n): the first pod (by namespace/name) on each node, the first node, the external host."""
    c = emu.cluster
    per_node: dict[str, tuple[str, str]] = {}
    for p in sorted((p for p in c.pods() if p.ip and not p.host_network), key=lambda p: (p.namespace, p.name)):
        per_node.setdefault(p.node_name, (f"pod/{p.name}", p.namespace))
    nodes = c.nodes()
    return [per_node[n.name] for n in nodes if n.name in per_node] + \
        [(f"node/{nodes[0].name}", "default"), ("external", "default")]


def _walk_all(emu: netsim.Emulator, mode: str, out: dict[str, list[str]], phase: str) -> None:
    dests = _destinations(emu)
    for src, ns in _sources(emu):
        for dst, proto in dests:
            lines = out.setdefault(f"{dst} {proto}", [])
            lines.append(f"### {phase} {src} -n {ns} -> {dst} ({proto})")
            try:
                t = emu.trace(src, dst, proto=proto, namespace=ns, mode=mode, capture=True)
            except ValueError as e:
                lines.append(f"error: {e}")
                continue
            walks = list(t.packets) + [w for _i, w in t.capture_only]
            lines.append(t.render(verbose=True))
            lines.append(f"json crc32 {zlib.crc32(t.to_json().encode()):08x}")
            lines += [f"pcap {h}/{i} {zlib.crc32(b):08x} {n}" for pkt in walks for (h, i, b, n) in (pkt.pcap or [])]


def record(mode: str, cluster: str) -> dict[str, str]:
    """The corpus of one (mode, cluster): target ("DST PROTO", or _conntrack) -> text."""
    state = random.getstate()
    # dnslib's DNSRecord.question draws the id of the query CoreDNS forwards upstream from the
    # global RNG (netsim.dataplane.target): seed it so the corpus is reproducible
    random.seed(0)
    try:
        emu = netsim.load(source_text(cluster), mode=mode, seed=7)
        out: dict[str, list[str]] = {}
        _walk_all(emu, mode, out, "first")
        emu.advance(3)
        _walk_all(emu, mode, out, "again")
        pods = [p for p in emu.cluster.pods() if p.ip and not p.host_network and p.namespace == "default"]
        if pods:
            emu.delete_pod(pods[0].name, pods[0].namespace, grace_period=0)
        nodes = emu.cluster.nodes()
        if len(nodes) > 1:
            emu.stop_node(nodes[-1].name)
        emu.advance(60)
        _walk_all(emu, mode, out, "faults")
        out[CONNTRACK] = [emu.conntrack(mode)]
    finally:
        random.setstate(state)
    return {target: "\n".join(lines) + "\n" for target, lines in out.items()}


def file_name(target: str) -> str:
    """A file name for a target: 'http://web.default tcp' -> 'http_web.default_tcp.txt.gz'."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", target).strip("_") + ".txt.gz"


def case_dir(base: Path, mode: str, cluster: str) -> Path:
    return base / mode / cluster


def gzip_bytes(text: str) -> bytes:
    """gzip with a fixed header (no name, mtime 0): the same text always gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(text.encode())
    return buf.getvalue()


def write(base: Path, mode: str, cluster: str, corpus: dict[str, str]) -> int:
    d = case_dir(base, mode, cluster)
    d.mkdir(parents=True, exist_ok=True)
    for stale in d.glob("*.txt.gz"):
        stale.unlink()
    for target, text in corpus.items():
        (d / file_name(target)).write_bytes(gzip_bytes(text))
    return len(corpus)


def main() -> None:
    if len(sys.argv) > 2:
        sys.exit("usage: python scripts/trace_corpus.py [OUT_DIR]  (default tests/data/trace_corpus)")
    base = Path(sys.argv[1]) if len(sys.argv) == 2 else CORPUS
    files = 0
    for mode in MODES:
        for cluster in CLUSTERS:
            files += write(base, mode, cluster, record(mode, cluster))
    print(f"{base}: {files} files")


if __name__ == "__main__":
    main()
