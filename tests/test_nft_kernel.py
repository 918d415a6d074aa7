"""The nftables engine against the real kernel (nft 1.0.x, nf_tables), in scratch namespaces.

1. What `nft -f` refuses, the parser refuses at the same line; what it loads, `nft list ruleset`
   reads back, and that listing parses and evaluates exactly like the input text.
2. Host-originated packets (the output and postrouting hooks) sent through the kernel with
   `nft monitor trace`: every rule line the kernel prints — rule text, verdict, chain, and the base
   chains' policy lines — is what the engine reports for the same packet.
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netsim.rules.nftables.engine import NftContext, NftEngine
from netsim.rules.nftables.lexer import NftError
from netsim.rules.nftables.parse import load
from netsim.skb.packet import Packet, ip2int
from kernel_helpers import in_netns, scratch_netns
from test_nft_parse import DATA, dump_order, era_b_text

pytestmark = pytest.mark.kernel

NODE_ADDRS = ("192.168.0.2", "192.168.1.2", "192.168.99.11")


def era_b() -> str:
    return dump_order(era_b_text())


def era_c() -> str:
    return (DATA / "era_c_derived.nft").read_text()


def test_kernel_and_parser_refuse_the_same_first_line(tmp_path: Path) -> None:
    text = era_b_text()
    f = tmp_path / "overall.nft"
    f.write_text(text)
    with scratch_netns("nftref", "nft") as ns:
        res = in_netns(ns, ["nft", "-f", str(f)])
        assert res.returncode != 0
        kernel_lines = [int(m) for m in re.findall(rf"{re.escape(str(f))}:(\d+):", res.stderr)]
        listed = in_netns(ns, ["nft", "list", "ruleset"]).stdout
    assert kernel_lines and listed.strip() == ""          # atomic: nothing was loaded
    with pytest.raises(NftError) as err:
        load(text, source=str(f))
    assert f"{f}:{kernel_lines[0]}:" in str(err.value)


def _packets() -> list[Packet]:
    out = []
    for src in ("10.0.0.2", "10.180.0.1", "203.0.113.2", "203.0.113.130", "192.168.0.2"):
        for dst, port in (("172.30.0.41", 80), ("172.30.0.41", 81), ("172.30.0.44", 80), ("172.30.0.46", 80),
                          ("172.30.0.50", 80), ("5.6.7.8", 80), ("1.2.3.4", 80), ("192.168.99.22", 80),
                          ("192.168.0.2", 3001), ("192.168.0.2", 3002), ("192.168.0.2", 3003)):
            for proto in ("tcp", "udp"):
                p = Packet.tcp(src, dst, 40000, port) if proto == "tcp" else Packet.udp(src, dst, 40000, port)
                p.iif = "eth0"
                out.append(p)
    return out


def _walk(eng: NftEngine, pkt: Packet, ctx: NftContext) -> list:
    """Prerouting, then forward and input (as kube-proxy's test tracer runs them), then postrouting,
    applying a DNAT between hooks; returns comparable facts of every base chain that ran."""
    facts = []
    for hook in ("prerouting", "forward", "input", "postrouting"):
        for r in eng.run_hook(hook, pkt, ctx, mangle=True):
            facts.append((hook, r.chain.name, r.verdict, r.reject_with, r.nat, pkt.mark,
                          [(e.kind, e.chain, e.rule.text if e.rule else None, e.verdict)
                           for e in r.events if e.kind != "packet"]))
            if r.verdict == "drop":
                return facts
    return facts


@pytest.mark.parametrize("name, text", [("era_b", era_b), ("era_c", era_c)])
def test_kernel_listing_evaluates_like_the_input(name: str, text, tmp_path: Path) -> None:
    src = text()
    f = tmp_path / f"{name}.nft"
    f.write_text(src)
    with scratch_netns("nftlst", "nft") as ns:
        res = in_netns(ns, ["nft", "-f", str(f)])
        assert res.returncode == 0, res.stderr
        listing = in_netns(ns, ["nft", "list", "ruleset"]).stdout
    a = NftEngine(load(src, source=name))
    b = NftEngine(load(listing, source=f"{name}-listing"))
    local = {ip2int(x) for x in NODE_ADDRS}
    for pkt in _packets():
        p1, p2 = pkt.copy(), pkt.copy()
        p1.iif = p2.iif = pkt.iif
        fa = _walk(a, p1, NftContext(local_addrs=local, rng=random.Random(3)))
        fb = _walk(b, p2, NftContext(local_addrs=local, rng=random.Random(3)))
        # the same verdicts, NAT, reject, marks and the same number of trace lines per chain
        assert [x[:6] for x in fa] == [x[:6] for x in fb], pkt
        assert [[(k, c, v) for k, c, _t, v in x[6]] for x in fa] == [[(k, c, v) for k, c, _t, v in x[6]] for x in fb]
        assert (p1.dst, p1.dport, p1.mark) == (p2.dst, p2.dport, p2.mark)


# ------------------------------------------------------------------ kernel trace vs engine trace
TRACE_TABLE = ("add table ip nstrace\nadd chain ip nstrace out { type filter hook output priority -400 ; }\n"
               "add rule ip nstrace out meta nftrace set 1\n")
SENDER = r"""
import socket, sys, time
for spec in sys.argv[1:]:
    proto, dst, port, sport = spec.split(":")
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("192.168.0.2", int(sport)))
        try:
            s.sendto(b"x", (dst, int(port)))
        except OSError:
            pass
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("192.168.0.2", int(sport)))
        s.setblocking(False)
        try:
            s.connect((dst, int(port)))
        except OSError:
            pass
    time.sleep(0.05)
    s.close()
"""
LINE = re.compile(r"^trace id (\w+) ip (\S+) (\S+) (packet: .*|rule .* \(verdict [^)]*\)|policy \w+)")
CASES = [("tcp", "172.30.0.41", 80), ("tcp", "172.30.0.41", 81), ("udp", "172.30.0.44", 80),
         ("tcp", "172.30.0.46", 80), ("tcp", "172.30.0.50", 80), ("tcp", "5.6.7.8", 80), ("tcp", "1.2.3.4", 80),
         ("tcp", "192.168.99.22", 80), ("tcp", "192.168.99.33", 80), ("tcp", "192.168.0.2", 3001),
         ("tcp", "192.168.0.2", 3003), ("tcp", "172.30.0.45", 80), ("udp", "172.30.0.43", 80)]


def monitor_while(ns: str, sender_ns: str, sender: list[str], quiet: float = 1.5, limit: float = 30.0) -> str:
    """`nft monitor trace` in `ns` while `sender` runs in `sender_ns`; returns the trace text once the
    monitor has printed nothing for `quiet` seconds (it lags behind on a busy machine)."""
    mon = subprocess.Popen(["ip", "netns", "exec", ns, "stdbuf", "-oL", "nft", "monitor", "trace"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(mon.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        time.sleep(0.5)
        sent = in_netns(sender_ns, sender)
        assert sent.returncode == 0, sent.stderr
        start, seen, last = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - start < limit and time.monotonic() - last < quiet:
            time.sleep(0.1)
            if len(lines) != seen:
                seen, last = len(lines), time.monotonic()
    finally:
        mon.terminate()
        mon.wait(timeout=10)
        reader.join(timeout=5)
    return "".join(lines)


def _engine_trace(eng: NftEngine, src: str, proto: str, dst: str, port: int, sport: int, choice: int) -> list[str]:
    """The engine's trace lines for one packet: host-originated (src is the node: output, postrouting)
    or arriving on n0 (prerouting, then input or forward by the routing decision, postrouting)."""
    pkt = (Packet.tcp if proto == "tcp" else Packet.udp)(src, dst, sport, port)
    local = {ip2int(x) for x in NODE_ADDRS}
    ctx = NftContext(local_addrs=local, rng=_Fixed(choice))
    outbound = pkt.src in local
    if outbound:
        pkt.oif = "v0"
    else:
        pkt.iif = "n0"
    lines: list[str] = []
    for hook in ("output" if outbound else "prerouting", "route", "postrouting"):
        if hook == "route":                       # the routing decision after DNAT
            if outbound:
                continue
            hook = "input" if pkt.dst in local else "forward"
            pkt.oif = "n0" if hook == "forward" else None
        for r in eng.run_hook(hook, pkt, ctx, mangle=True):
            lines += [f"{e.chain} rule {e.rule.text} (verdict {e.verdict})" if e.kind == "rule"
                      else f"{e.chain} policy {e.verdict}" for e in r.events if e.kind != "packet"]
            if r.verdict == "drop":
                return lines
        if hook == "input":
            return lines
    return lines


class _Fixed(random.Random):
    """numgen's draw pinned to slot `choice` of 2 (to replay the kernel's random endpoint choice)."""

    def __init__(self, choice: int) -> None:
        super().__init__(0)
        self.choice = choice

    def getrandbits(self, k: int) -> int:
        return 0 if self.choice == 0 else 0xFFFFFFFF


# a node whose own packets leave by v0 (a veth with its peer in the same namespace) via 192.168.0.1
HOST_NETNS = [["ip", "link", "set", "lo", "up"], ["ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
              ["ip", "link", "set", "v0", "up"], ["ip", "link", "set", "v1", "up"],
              *[["ip", "addr", "add", f"{a}/24", "dev", "v0"] for a in NODE_ADDRS],
              ["ip", "route", "add", "default", "via", "192.168.0.1", "dev", "v0"]]


def _setup(steps: list[tuple[str, list[list[str]]]]) -> None:
    for ns, cmds in steps:
        for cmd in cmds:
            r = in_netns(ns, cmd)
            if r.returncode != 0:
                pytest.skip(f"cannot set up the scratch namespace ({' '.join(cmd)}): {r.stderr.strip()}")


def _load_and_list(ns: str, f: Path) -> str:
    loaded = in_netns(ns, ["nft", "-f", str(f)])
    assert loaded.returncode == 0, loaded.stderr
    return in_netns(ns, ["nft", "list", "table", "ip", "kube-proxy"]).stdout


def _compare(name: str, listing: str, cases: list[tuple[str, str, str, int]], base: int,
             traces: dict[tuple[str, int], list[str]]) -> None:
    """Every case's kernel trace lines equal the engine's for one of numgen's two draws."""
    eng = NftEngine(load(listing, source=f"{name}-listing"))
    missing = [c for i, c in enumerate(cases) if (c[0], base + i) not in traces]
    assert not missing, f"the kernel traced no packet for {missing}"
    for i, (src, proto, dst, port) in enumerate(cases):
        kernel = traces[(src, base + i)]
        ours = [_engine_trace(eng, src, proto, dst, port, base + i, c) for c in (0, 1)]
        assert kernel in ours, f"{proto} {src} -> {dst}:{port}\nkernel:\n" + "\n".join(kernel) + \
            "\nengine:\n" + "\n".join(ours[0])


@pytest.mark.parametrize("name, text", [("era_b", era_b), ("era_c", era_c)])
def test_kernel_trace_matches_engine_trace(name: str, text, tmp_path: Path) -> None:
    f = tmp_path / f"{name}.nft"
    f.write_text(text() + TRACE_TABLE)
    with scratch_netns("nfttrc", "nft") as ns:
        _setup([(ns, HOST_NETNS)])
        listing = _load_and_list(ns, f)
        specs = [f"{proto}:{dst}:{port}:{41000 + i}" for i, (proto, dst, port) in enumerate(CASES)]
        out = monitor_while(ns, ns, [sys.executable, "-c", SENDER, *specs])
    _compare(name, listing, [("192.168.0.2", *c) for c in CASES], 41000, _parse_traces(out))


# ------------------------------------------------------------------ packets from outside the node
PRE_TABLE = ("add table ip nstrace\nadd chain ip nstrace pre { type filter hook prerouting priority -400 ; }\n"
             "add rule ip nstrace pre meta nftrace set 1\n")
CLIENTS = ("10.0.0.2", "10.180.0.1", "203.0.113.2", "203.0.113.130")
INBOUND = [(src, proto, dst, port)
           for src in CLIENTS
           for proto, dst, port in (("tcp", "172.30.0.41", 80), ("tcp", "172.30.0.41", 81), ("udp", "172.30.0.44", 80),
                                    ("tcp", "172.30.0.46", 80), ("tcp", "172.30.0.50", 80), ("tcp", "5.6.7.8", 80),
                                    ("tcp", "1.2.3.4", 80), ("tcp", "192.168.99.22", 80), ("tcp", "192.168.0.2", 3001),
                                    ("tcp", "192.168.0.2", 3002), ("tcp", "192.168.0.2", 3003),
                                    ("tcp", "192.168.1.2", 3003))]
CLIENT_SENDER = SENDER.replace('s.bind(("192.168.0.2", int(sport)))', 's.bind((src, int(sport)))') \
    .replace('proto, dst, port, sport = spec.split(":")', 'src, proto, dst, port, sport = spec.split(":")')


@pytest.mark.parametrize("name, text", [("era_b", era_b), ("era_c", era_c)])
def test_kernel_trace_of_routed_packets_matches_engine(name: str, text, tmp_path: Path) -> None:
    f = tmp_path / f"{name}.nft"
    f.write_text(text() + PRE_TABLE)
    with scratch_netns("nftnode", "nft") as node, scratch_netns("nftcli", "nft") as cli:
        setup = [["ip", "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", cli]]
        node_cmds = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "n0", "up"],
                     *[["ip", "addr", "add", f"{a}/24", "dev", "n0"] for a in NODE_ADDRS],
                     ["ip", "route", "add", "10.0.0.0/8", "dev", "n0"], ["ip", "route", "add", "203.0.113.0/24", "dev", "n0"],
                     ["ip", "route", "add", "default", "dev", "n0"],
                     ["sysctl", "-qw", "net.ipv4.ip_forward=1"], ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
                     ["sysctl", "-qw", "net.ipv4.conf.n0.rp_filter=0"]]
        cli_cmds = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "c0", "up"],
                    *[["ip", "addr", "add", f"{a}/32", "dev", "c0"] for a in CLIENTS],
                    ["ip", "route", "add", "192.168.0.0/24", "dev", "c0"],
                    ["ip", "route", "add", "default", "via", "192.168.0.2", "dev", "c0"]]
        _setup([(node, setup + node_cmds), (cli, cli_cmds)])
        listing = _load_and_list(node, f)
        specs = [f"{s}:{p}:{d}:{port}:{42000 + i}" for i, (s, p, d, port) in enumerate(INBOUND)]
        out = monitor_while(node, cli, [sys.executable, "-c", CLIENT_SENDER, *specs])
    _compare(name, listing, INBOUND, 42000, _parse_traces(out))


def _parse_traces(out: str) -> dict[tuple[str, int], list[str]]:
    by_id: dict[str, list[str]] = {}
    first: dict[str, tuple[str, int]] = {}
    for raw in out.splitlines():
        m = LINE.match(raw.strip())
        if not m or m.group(2) != "kube-proxy":
            continue
        tid, chain, rest = m.group(1), m.group(3), m.group(4)
        if rest.startswith("packet:"):
            sp = re.search(r"ip saddr (\S+) .*(?:tcp|udp) sport (\d+)", rest)
            if sp and tid not in first:
                first[tid] = (sp.group(1), int(sp.group(2)))
            continue
        by_id.setdefault(tid, []).append(f"{chain} {rest}")
    result: dict[tuple[str, int], list[str]] = {}
    for tid, key in first.items():
        if key not in result:
            result[key] = [re.sub(r"^(\S+ policy \w+).*", r"\1", ln) for ln in by_id.get(tid, [])]
    return result
