"""The DNS server on real sockets: dig over UDP and TCP, truncation, several queries per TCP
connection, malformed input, and a fuzz run.

Expectations: miekg/dns server.go + msg_truncate.go (what CoreDNS's listener does: FORMERR/NOTIMP,
drop, Truncate keeps the question and sets TC), CoreDNS request.SizeAndDo (OPT echoed), RFC 7766
§6.2.1 (several queries per TCP connection), and dnslib 0.9.26's server.py DNSHandler (pitfalls this
server must avoid: header-only truncation, one message per TCP connection, AD echoed).
"""
from __future__ import annotations

import random
import re
import shutil
import socket
import struct
import subprocess

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import given, settings, strategies as st

from netsim.dns import server as server_mod
from netsim.dns.message import handle
from netsim.dns.resolver import ClusterDNS
from netsim.dns.server import DNSServer
from netsim.control.manifests import load_text
from dns_fixtures import HEADLESS_60_YAML, ensure_loopback

SIXTY = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: big}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}, {name: node-2, ip: 192.168.49.3}]
---""" + HEADLESS_60_YAML + """---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: big}
  ports: [{name: http, port: 80}]
"""

BIG = "big.default.svc.cluster.local."


@pytest.fixture(scope="module")
def cluster():
    return load_text(SIXTY)


@pytest.fixture(scope="module")
def dns(cluster):
    return ClusterDNS(cluster)


@pytest.fixture(scope="module")
def srv(dns):
    ensure_loopback()
    with DNSServer(dns, "127.0.0.1", 0) as s:
        yield s


def dig(srv, *args):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(srv.port), "+time=2", "+tries=1", *args],
                         capture_output=True, text=True, timeout=20)
    return " ".join(out.stdout.split())          # dig aligns with tabs and spaces; compare words


needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is not installed")


@needs_dig
@pytest.mark.parametrize("transport", [[], ["+tcp"]], ids=["udp", "tcp"])
def test_dig_service_a(srv, cluster, transport):
    out = dig(srv, *transport, "+noall", "+answer", "+comments", "web.default.svc.cluster.local")
    ip = cluster.service("default", "web").cluster_ip
    assert f"web.default.svc.cluster.local. 30 IN A {ip}" in out
    # CoreDNS's flags: qr aa rd — no ra (dig warns), no ad although dig sets AD in the query
    assert "flags: qr aa rd;" in out
    assert "udp: 1232" in out                                     # the client's OPT echoed (SizeAndDo)


@needs_dig
def test_dig_nxdomain_has_soa(srv):
    out = dig(srv, "+noall", "+authority", "+comments", "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in out
    assert "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local." in out


@needs_dig
def test_dig_headless_60_truncates_on_udp_and_completes_on_tcp(srv):
    # 60 A records do not fit in 512 bytes: TC=1, question kept, as many records as fit
    trunc = dig(srv, "+noedns", "+ignore", "+noall", "+comments", "+question", "+answer", BIG)
    assert "flags: qr aa tc rd;" in trunc
    assert ";big.default.svc.cluster.local. IN A" in trunc
    n_udp = trunc.count(" IN A ") - 1                          # minus the question line
    assert 20 <= n_udp < 60
    full = dig(srv, "+tcp", "+noall", "+answer", BIG)
    assert full.count(" IN A ") == 60
    # dig's own TC → TCP retry gives the full set
    assert dig(srv, "+noedns", "+noall", "+answer", BIG).count(" IN A ") == 60


needs_kdig = pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig (knot-dnsutils) is not installed")


def kdig(srv, *args):
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(srv.port), "+time=2", "+retry=0", *args],
                         capture_output=True, text=True, timeout=20)
    return " ".join(out.stdout.split())


@needs_kdig
def test_kdig_srv_and_truncation_fallback(srv, cluster):
    """A second, independent client implementation (Knot's) reads the same wire format."""
    srv_out = kdig(srv, "+tcp", "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert "status: NOERROR" in srv_out and "Flags: qr aa rd;" in srv_out
    assert "_http._tcp.web.default.svc.cluster.local. 30 IN SRV 0 100 80 web.default.svc.cluster.local." in srv_out
    # kdig without EDNS over UDP gets TC=1 and (unlike dig) does not retry by itself
    trunc = kdig(srv, "+noedns", "+ignore", BIG)
    assert "Flags: qr aa tc rd;" in trunc
    assert 20 <= int(re.search(r"ANSWER: (\d+);", trunc).group(1)) < 60
    full = kdig(srv, "+tcp", BIG)
    assert "ANSWER: 60;" in full and full.count(" IN A ") == 61     # 60 answers + the question line
    nx = kdig(srv, "nope.default.svc.cluster.local", "A")
    assert "status: NXDOMAIN" in nx and "IN SOA ns.dns.cluster.local." in nx


def test_truncation_respects_edns_size(dns):
    q = DNSRecord.question(BIG, "A")
    q.add_ar(EDNS0(udp_len=4096))
    reply = DNSRecord.parse(handle(dns, q.pack(), "udp"))
    assert reply.header.tc == 0 and len(reply.rr) == 60          # fits in 4096
    q512 = DNSRecord.question(BIG, "A")
    raw = handle(dns, q512.pack(), "udp")
    r512 = DNSRecord.parse(raw)
    assert len(raw) <= 512 and r512.header.tc == 1 and r512.questions and len(r512.rr) < 60
    # an EDNS size under 512 is treated as 512 (RFC 6891 via miekg Truncate)
    qs = DNSRecord.question(BIG, "A")
    qs.add_ar(EDNS0(udp_len=100))
    rs = handle(dns, qs.pack(), "udp")
    assert 100 < len(rs) <= 512
    assert DNSRecord.parse(rs).ar[-1].rtype == QTYPE.OPT            # OPT kept after truncation


def tcp_exchange(port, queries, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for q in queries:
            s.sendall(struct.pack("!H", len(q)) + q)
        replies = []
        for _ in queries:
            head = s.recv(2, socket.MSG_WAITALL)
            (n,) = struct.unpack("!H", head)
            replies.append(DNSRecord.parse(s.recv(n, socket.MSG_WAITALL)))
        return replies


def test_several_queries_on_one_tcp_connection(srv):
    # glibc sends A and AAAA on one connection after TC=1 (glibc resolv/res_send.c send_vc)
    qa = DNSRecord.question(BIG, "A")
    qaaaa = DNSRecord.question(BIG, "AAAA")
    ra, raaaa = tcp_exchange(srv.port, [qa.pack(), qaaaa.pack()])
    assert (ra.header.id, len(ra.rr)) == (qa.header.id, 60)
    assert raaaa.header.id == qaaaa.header.id and not raaaa.rr and len(raaaa.auth) == 1


def test_slow_tcp_client_does_not_block_others(srv, monkeypatch):
    monkeypatch.setattr(server_mod, "TCP_READ_TIMEOUT", 0.3)
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    idle.sendall(b"\x00")                                         # half a length prefix, then nothing
    try:
        (r,) = tcp_exchange(srv.port, [DNSRecord.question("web.default.svc.cluster.local", "A").pack()])
        assert r.rr
        assert idle.recv(10) == b""                               # the server timed out and closed it
    finally:
        idle.close()


def udp_exchange(port, data, timeout=2.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def test_malformed_queries(dns):
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    raw = q.pack()
    assert handle(dns, raw[:11]) is None                          # shorter than a header: dropped
    reply = q.reply()
    assert handle(dns, reply.pack()) is None                      # a response (QR=1): ignored
    two = bytearray(raw)
    two[4:6] = b"\x00\x02"                                        # QDCOUNT=2: FORMERR, header only
    r = DNSRecord.parse(handle(dns, bytes(two)))
    assert r.header.rcode == RCODE.FORMERR and r.header.id == q.header.id and not r.questions
    upd = bytearray(raw)
    upd[2] = (upd[2] & 0x87) | (5 << 3)                           # opcode UPDATE: NOTIMP
    assert DNSRecord.parse(handle(dns, bytes(upd))).header.rcode == RCODE.NOTIMP
    cut = raw[:-3]                                                # question cut short: FORMERR
    assert DNSRecord.parse(handle(dns, cut)).header.rcode == RCODE.FORMERR


class Exploding:
    def answer(self, query):
        raise RuntimeError("lookup failed")


def test_exception_in_lookup_is_servfail_over_the_wire():
    ensure_loopback()
    with DNSServer(Exploding(), "127.0.0.1", 0) as s:
        q = DNSRecord.question("x.default.svc.cluster.local", "A")
        r = DNSRecord.parse(udp_exchange(s.port, q.pack()))
        assert r.header.rcode == RCODE.SERVFAIL and r.header.id == q.header.id
        assert str(r.q.qname) == "x.default.svc.cluster.local."


# ---------------------------------------------------------------- fuzz
SEEDS = [("web.default.svc.cluster.local", "A"), (BIG, "A"), ("_http._tcp.web.default.svc.cluster.local", "SRV"),
         ("10.0.96.10.in-addr.arpa", "PTR"), ("cluster.local", "NS"), ("example.com", "AAAA"),
         ("dns-version.cluster.local", "TXT"), ("10-244-0-5.default.pod.cluster.local", "A")]


def mutated_packets(rng: random.Random, n: int):
    seeds = []
    for name, qtype in SEEDS:
        q = DNSRecord.question(name, qtype)
        seeds.append(q.pack())
        q.add_ar(EDNS0(udp_len=rng.choice([512, 1232, 4096])))
        seeds.append(q.pack())
    for i in range(n):
        kind = i % 4
        if kind == 0:                                             # random bytes
            yield bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
            continue
        p = bytearray(rng.choice(seeds))
        if kind == 1:                                             # flip bytes
            for _ in range(rng.randrange(1, 6)):
                p[rng.randrange(len(p))] = rng.getrandbits(8)
        elif kind == 2:                                           # cut or extend
            p = p[: rng.randrange(len(p))] if rng.random() < 0.5 else p + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40)))
        else:                                                     # header games: counts, flags, opcode
            off = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
            p[off] = rng.getrandbits(8)
        yield bytes(p)


def test_fuzz_10000_packets_against_the_running_server(dns, srv):
    rng = random.Random(20240611)
    expected = 0
    answered = 0
    before = srv.stats.udp_queries
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        for pkt in mutated_packets(rng, 10000):
            offline = handle(dns, pkt, "udp")                     # never raises: reply bytes or None
            if offline is not None:
                assert len(offline) <= 65535
                DNSRecord.parse(offline)                          # every reply is a well-formed message
            s.sendto(pkt, ("127.0.0.1", srv.port))
            if offline is not None:
                expected += 1
                reply = s.recv(65535)
                assert reply[:2] == pkt[:2]                       # the reply carries the query's id
                answered += 1
    assert answered == expected and expected > 1000
    assert srv.stats.udp_queries - before == 10000 and srv.stats.errors == 0
    # the server is alive and still right afterwards
    r = DNSRecord.parse(udp_exchange(srv.port, DNSRecord.question("web.default.svc.cluster.local", "A").pack()))
    assert r.header.rcode == RCODE.NOERROR and len(r.rr) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_handle_never_raises(data):
    out = handle(_DNS_FOR_HYPOTHESIS, data, "udp")
    assert out is None or (len(out) >= 12 and out[:2] == data[:2])


_DNS_FOR_HYPOTHESIS = ClusterDNS(load_text(SIXTY))


# ---------------------------------------------------------------------- garbage, workers, logging
def _udp_ask(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        while True:
            reply = s.recv(65535)
            if reply[:2] == data[:2]:
                return reply
    finally:
        s.close()


def test_good_query_after_a_garbage_burst_is_answered(dns, cluster):
    ensure_loopback()
    rng = random.Random(4)
    with DNSServer(dns, "127.0.0.1", 0) as s:
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(3000):
                junk.sendto(rng.randbytes(rng.randint(1, 512)), ("127.0.0.1", s.port))
        finally:
            junk.close()
        reply = DNSRecord.parse(_udp_ask(s.port, DNSRecord.question("web.default.svc.cluster.local").pack()))
    assert [str(r.rdata) for r in reply.rr] == [cluster.service("default", "web").cluster_ip]
    # the garbage was read: dropped (responses, short) or answered with a header (FORMERR/NOTIMP)
    assert s.stats.udp_queries >= 3001


def test_a_garbage_reply_is_a_header_echoing_id_opcode_rd_cd(dns):
    ensure_loopback()
    with DNSServer(dns, "127.0.0.1", 0) as s:
        # opcode 2 (STATUS), RD and CD set: NOTIMP with id, opcode, RD, CD echoed and no question
        reply = _udp_ask(s.port, bytes.fromhex("beef1110") + b"\x00" * 8)
    assert reply == bytes.fromhex("beef9114") + b"\x00" * 8


def test_reuseport_workers_answer_on_one_port(dns, cluster):
    ensure_loopback()
    with DNSServer(dns, "127.0.0.1", 0, workers=2) as s:
        assert len(s._children) == 1
        ip = cluster.service("default", "web").cluster_ip
        for i in range(20):                      # different source ports: the kernel spreads them
            q = DNSRecord.question("web.default.svc.cluster.local")
            q.header.id = i
            assert [str(r.rdata) for r in DNSRecord.parse(_udp_ask(s.port, q.pack())).rr] == [ip]
    assert s._children == []


def test_queries_are_logged_only_when_asked(dns):
    ensure_loopback()
    lines: list[str] = []
    q = DNSRecord.question("web.default.svc.cluster.local").pack()
    with DNSServer(dns, "127.0.0.1", 0) as quiet:
        for _ in range(3):
            _udp_ask(quiet.port, q)
    with DNSServer(dns, "127.0.0.1", 0, log=lines.append) as loud:
        for _ in range(3):                       # the third comes from the encoded replies: logged too
            _udp_ask(loud.port, q)
    assert len(lines) == 3 and all("web.default.svc.cluster.local. A -> NOERROR answers=1" in ln for ln in lines)


def test_workers_do_not_outlive_their_server(tmp_path):
    """prctl(PR_SET_PDEATHSIG): a worker goes when the server process is killed outright."""
    import os
    import signal
    import sys
    import time
    ensure_loopback()
    script = ("import sys, time\n"
              "from netsim.control.manifests import load_text\n"
              "from netsim.dns.resolver import ClusterDNS\n"
              "from netsim.dns.server import DNSServer\n"
              f"s = DNSServer(ClusterDNS(load_text({SIXTY!r})), '127.0.0.1', 0, workers=2).start()\n"
              "print(s._children[0], flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert os.path.exists(f"/proc/{child}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    for _ in range(100):
        try:
            os.waitpid(child, os.WNOHANG)           # not ours to reap; ignore
        except ChildProcessError:
            pass
        stat = open(f"/proc/{child}/stat").read().split() if os.path.exists(f"/proc/{child}") else None
        if stat is None or stat[2] == "Z":
            break
        time.sleep(0.05)
    assert stat is None or stat[2] == "Z"
