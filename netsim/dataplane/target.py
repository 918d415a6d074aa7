"""What ``--to`` names, and how a client turns it into an address: IP, or a name resolved by DNS.

Accepted forms::

    http://NAME[.NS[.svc[.cluster.local]]][:PORT][/path]     TCP, port 80 unless given, sends GET
    https://NAME...[:PORT][/path]                             TCP, port 443 unless given (the TCP
                                                              connection: TLS itself is not emulated)
    NAME[.NS[.svc...]]:PORT | NAME:PORTNAME                    port by number or Service port name
    IP:PORT

From a pod, a name is resolved the way the pod's libc does it: resolv.conf search list and
ndots:5 (``netsim.dns.stub``), each query a real UDP datagram to the kube-dns ClusterIP carried by
the walker through kube-proxy's DNAT to a CoreDNS pod, which answers with ``netsim.dns``'s
ClusterDNS. From a node or the external host, cluster names are looked up directly in the
cluster model (they could not resolve them; the trace says so).
"""
from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlsplit

from netsim.dns.names import name_problem
from netsim.skb.packet import IPPROTO_TCP, IPPROTO_UDP, Packet, PacketError, int2ip, ip2int
from netsim.dataplane.servers import socket_ip_id
from netsim.dataplane.trace import Flow, Outcome, Trace


class TargetError(ValueError):
    """A --to value that cannot be parsed or resolved."""


class Unresolved(TargetError):
    """The target's name does not resolve: not an input error but a trace outcome (UNRESOLVED), with
    the DNS queries the pod's resolver sent on the way (``notes``)."""

    def __init__(self, message: str, notes: Optional[list[str]] = None, dns_walks: Optional[list] = None) -> None:
        super().__init__(message)
        self.notes = list(notes or [])
        self.dns_walks = list(dns_walks or [])


_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


@dataclass
class Target:
    text: str
    host: str
    port: Optional[int] = None
    port_name: Optional[str] = None
    http: bool = False
    path: str = "/"

    @property
    def is_ip(self) -> bool:
        return bool(_IP_RE.match(self.host))


@dataclass
class Resolved:
    ip: str
    port: int
    proto: str
    how: str                                   # e.g. "DNS via 10.96.0.10 (coredns-x)", "literal IP"
    notes: list[str] = field(default_factory=list)
    service: Optional[Any] = None
    dns_walks: list = field(default_factory=list)   # the DNS packets' walks (captured when asked)


def parse_target(text: str) -> Target:
    fields, why = _parsed_target(text)
    if why:
        raise TargetError(f"--to {text}: {fields[1]!r} is not a legal name ({why})")
    return Target(*fields)


@functools.lru_cache(maxsize=1024)
def _parsed_target(text: str) -> tuple[tuple, str]:
    """The fields of ``_parse_target(text)`` and ``name_problem`` of its host: a pure function of the
    text, kept because ``--count N`` and the benchmarks parse the same target again and again (a
    fresh Target is still built from them each time). A TargetError is raised, never kept."""
    t = _parse_target(text)
    return (t.text, t.host, t.port, t.port_name, t.http, t.path), name_problem(t.host)


def _parse_target(text: str) -> Target:
    t = text.strip()
    if not t:
        raise TargetError("--to: empty target (expected http://name[.ns][:port]/, name[.ns]:port or IP:port)")
    if "://" in t:
        u = urlsplit(t)
        if u.scheme not in ("http", "https"):
            raise TargetError(f"--to {text}: only http:// and https:// URLs are supported, got {u.scheme}://")
        if not u.hostname:
            raise TargetError(f"--to {text}: no host in URL")
        try:
            port = u.port
        except ValueError:
            raise TargetError(f"--to {text}: bad port") from None
        if port == 0:
            raise TargetError(f"--to {text}: port 0 out of range 1-65535")
        default = 80 if u.scheme == "http" else 443
        # https: the connection is walked (handshake, no payload): a TLS ClientHello is not an HTTP request
        return Target(text, u.hostname, default if port is None else port, http=u.scheme == "http",
                      path=u.path or "/")
    host, sep, port = t.rpartition(":")
    if not sep:
        host, port = t, ""
    if not host:
        raise TargetError(f"--to {text}: no host before ':'")
    if port.isdigit():
        p = int(port)
        if not 0 < p < 65536:
            raise TargetError(f"--to {text}: port {p} out of range 1-65535")
        return Target(text, host, p)
    if port and not re.match(r"^[a-z0-9-]{1,15}$", port):
        raise TargetError(f"--to {text}: port {port!r} is neither a number nor a port name")
    return Target(text, host, None, port_name=port or None)


def split_service_name(host: str, default_ns: str, domain: str) -> tuple[str, str]:
    """name | name.ns | name.ns.svc | name.ns.svc.<domain> → (name, namespace)."""
    h = host.rstrip(".")
    suffix = f".svc.{domain}"
    if h.endswith(suffix):
        h = h[: -len(suffix)]
    elif h.endswith(".svc"):
        h = h[:-4]
    parts = h.split(".")
    if len(parts) == 1:
        return parts[0], default_ns
    if len(parts) == 2:
        return parts[0], parts[1]
    raise TargetError(f"--to {host}: not a Service name (expected name[.namespace[.svc[.{domain}]]])")


def _service_port(svc, t: Target, proto: Optional[str]):
    ports = svc.ports
    if t.port_name:
        for p in ports:
            if p.name == t.port_name:
                return p
        raise TargetError(f"--to {t.text}: Service {svc.key} has no port named {t.port_name!r} "
                          f"(ports: {', '.join(p.name or str(p.port) for p in ports)})")
    if t.port is not None:
        for p in ports:
            if p.port == t.port and (proto is None or p.protocol.lower() == proto):
                return p
        return None
    if len(ports) == 1:
        return ports[0]
    raise TargetError(f"--to {t.text}: Service {svc.key} has several ports "
                      f"({', '.join(f'{p.port}/{p.protocol}' for p in ports)}); say which")


def resolve(walker, client_host, target: Target, proto: Optional[str] = None,
            namespace: str = "default", capture: bool = False) -> Resolved:
    """The address ``client_host`` would connect to for ``target`` (``capture``: keep the DNS
    packets' capture records in ``dns_walks``)."""
    cluster = walker.cluster
    if target.is_ip:
        try:
            ip2int(target.host)
        except PacketError:
            raise TargetError(f"--to {target.text}: {target.host} is not an IPv4 address") from None
        if target.port is None:
            raise TargetError(f"--to {target.text}: a port is needed with an IP address")
        return Resolved(target.host, target.port, proto or "tcp", "literal IP")
    domain = cluster.config.cluster_domain
    name, ns = split_service_name(target.host, namespace, domain)
    svc = cluster.service(ns, name)
    notes: list[str] = []
    if client_host.kind == "pod":
        walks: list = []
        ip, how, dns_notes = _resolve_by_dns(walker, client_host, target.host, walks if capture else None)
        notes += dns_notes
        if ip is None:
            raise Unresolved(how, notes, walks)
    else:
        if svc is None:
            raise Unresolved(f"no Service {name!r} in namespace {ns!r} (direct lookup in the cluster model: "
                             f"{client_host.name} does not use cluster DNS)")
        ip = _direct_address(walker, svc)
        how = (f"direct lookup in the cluster model ({client_host.name} does not use cluster DNS; "
               f"DNS not emulated for it)")
    port = target.port
    sp = _service_port(svc, target, proto) if svc is not None else None
    if sp is not None:
        port = sp.port
        proto = proto or sp.protocol.lower()
    if port is None:
        raise TargetError(f"--to {target.text}: no port given and none could be inferred")
    return Resolved(ip, port, proto or "tcp", how, notes, svc, walks if client_host.kind == "pod" else [])


def _direct_address(walker, svc) -> str:
    if svc.type == "ExternalName":
        raise TargetError(f"Service {svc.key} is ExternalName (CNAME {svc.external_name}); nothing to trace "
                          "inside the cluster")
    if svc.headless:
        ips = sorted({a for sl in walker.cluster.endpoint_slices(svc.namespace, svc.name)
                      for ep in sl.endpoints if ep.ready for a in ep.addresses})
        if not ips:
            raise Unresolved(f"headless Service {svc.key} has no ready endpoints (no A records)")
        return walker.rng.choice(ips)
    if not svc.cluster_ip:
        raise TargetError(f"Service {svc.key} has no ClusterIP yet")
    return svc.cluster_ip


# ---------------------------------------------------------------------- DNS through the data plane
def _resolve_by_dns(walker, client_host, name: str, walks: Optional[list] = None
                    ) -> tuple[Optional[str], str, list[str]]:
    """Resolve as the pod's libc does, each query walked through the data plane; with ``walks`` a
    list, every DNS packet's walk is captured into it (for a pcap)."""
    dns = _dns_modules()
    if dns is None:  # pragma: no cover - dns package missing
        return None, "DNS resolver not available", []
    pod = walker.cluster.pod(*client_host.name.split("/", 1)) if client_host.kind == "pod" else None
    if pod is None:
        return None, f"{client_host.name} is not a pod with a resolv.conf", []
    rc = dns.pod_resolv_conf(pod, walker.cluster.config)
    if not rc.nameservers:
        return None, f"{client_host.name}: resolv.conf has no nameserver", []
    server = rc.nameservers[0]
    notes: list[str] = []
    capture = walks is not None
    src = client_host.interfaces["eth0"].ip

    rcodes = _rcode_names()
    src_addr = ip2int(src) if isinstance(src, str) else src         # the addresses as the packet holds them
    try:
        server_addr = ip2int(server)
    except (PacketError, ValueError, OSError):
        server_addr = server                    # Packet.udp says what is wrong with it, as before
    waiting = walker._clients.setdefault(client_host.name, set())   # client_socket() inlined, as walk.connect does
    send = walker.send
    walk = walker._walk
    current = walker._current
    rng_randint = walker.rng.randint
    randint = random.randint
    build_query, read_reply, udp = dns.build_query, dns.read_reply, Packet.udp
    to_server = f" -> {server}:53"

    step: list = [None, 0, 0]                  # the socket of the current search step: (name, port, IP ID)

    def query(qname: str, qtype: str):
        qid = randint(0, 65535)                # the query ID, drawn as dnslib's DNSRecord.question draws it
        payload = build_query(qname, qtype, qid)
        port = rng_randint(32768, 60999)        # drawn for every query, so the seeded sequence of the
        if step[0] == qname:                    # trace's later choices is the same whatever the steps
            # glibc sends a step's A and AAAA queries from one connected UDP socket (res_send.c
            # send_dg; checked with getaddrinfo on glibc 2.36, tests/test_dns_kernel.py): the same
            # source port, so the second rides the first one's conntrack entry and DNAT, and the
            # socket's next IP ID (include/net/ip.h ip_select_ident_segs)
            sport = step[1]
            ident = step[2] = (step[2] + 1) & 0xFFFF
        else:                                   # a new step: res_send closed the last socket
            sport = port
            # connect() draws the socket's first IP ID at random (socket_ip_id)
            ident = socket_ip_id(sport << 16 | qid)
            step[:] = (qname, sport, ident)
        pkt = udp(src_addr, server_addr, sport, 53, payload=payload, ident=ident)
        key = (IPPROTO_UDP, sport)
        waiting.add(key)
        try:
            end, qpt = send(client_host, pkt, capture=capture)
            if capture:
                walks.append(qpt)
            for origin, rp in end.generated:
                # The replies a query provoked are walked without another sync, as walk.connect walks
                # a connection's replies: nothing can change the cluster between a query and its answer.
                rend, rpt = walk(current(origin), rp, "reply", capture)
                if capture:
                    walks.append(rpt)
                if rend.disposition == "CLIENT" and rend.pkt is not None and not rend.pkt.is_icmp_error:
                    reply = read_reply(rend.pkt.payload)     # rcode, TC and the answers only
                    served = end.owner or (end.host.name if end.host else "?")
                    header = reply.header
                    notes.append(f"DNS {qname} {qtype}{to_server} (DNAT to {served}): {rcodes[header.rcode]}"
                                 f"{' TC=1 (truncated)' if header.tc else ''} {_answer_text(reply)}")
                    return reply
            notes.append(f"DNS {qname} {qtype}{to_server}: no reply ({end.disposition} {end.detail})")
            return None
        finally:
            waiting.discard(key)

    def query_tcp(qname: str, qtype: str):
        """TC=1: glibc asks again over TCP. The connection to the nameserver is walked (handshake
        through kube-dns's DNAT to a CoreDNS pod); the answer is what that pod's server gives over
        TCP (the emulated TCP socket carries the handshake, not the DNS stream)."""
        t = walker.connect(client_host, server, 53, "tcp", capture=capture)
        if capture:
            walks.extend(t.walks_in_order())
        o = t.outcome
        if not o.ok:
            notes.append(f"DNS {qname} {qtype} -> {server}:53/tcp: {o.disposition} {o.detail}")
            return None
        # the answer comes from the DNS server of the pod whose TCP socket accepted the connection
        socks = walker.sockets.get(o.pod or "")
        lst = socks.listeners.get((IPPROTO_TCP, 53)) if socks is not None else None
        handler = lst.handler if lst is not None else None
        wire = handler(build_query(qname, qtype), "tcp") if handler else None
        if wire is None:
            what = "no answer" if handler else "no DNS server behind that socket"
            notes.append(f"DNS {qname} {qtype} -> {server}:53/tcp (to {o.pod}): {what}")
            return None
        reply = read_reply(wire)
        ans = ", ".join(str(r.rdata) for r in reply.rr) or "-"
        notes.append(f"DNS {qname} {qtype} -> {server}:53/tcp (DNAT to {o.pod}, TC=1 retry): "
                     f"{_rcode(reply)} {len(reply.rr)} records {ans if len(reply.rr) <= 4 else ans[:60] + '...'}")
        return reply

    # getaddrinfo as curl calls it: A + AAAA
    res = dns.search(rc, name, query, family="AF_UNSPEC", tcp_query_fn=query_tcp)
    if not res.ok or not res.answer_ips:
        return None, f"cannot resolve {name!r}: {res.error} ({len(res.steps)} queries)", notes
    return res.answer_ips[0], f"DNS: {res.answered_name or name} A {res.answer_ips[0]} " \
                              f"({len(res.steps)} queries to {server})", notes


def _answer_text(reply) -> str:
    """The answer section's rdata as the note prints it ("-" when empty)."""
    text = getattr(reply, "text", None)          # netsim.dns.wire.Reply has it worked out once per body
    if text is None:
        text = ", ".join([str(r.rdata) for r in reply.rr]) or "-"
    return text


@functools.lru_cache(maxsize=1)
def _dns_modules() -> Any:
    """The DNS client's functions, imported once (None without the dns package): every by-name
    lookup needs them, and an import statement costs a lookup each time it runs."""
    from types import SimpleNamespace
    try:
        from netsim.dns.resolvconf import pod_resolv_conf
        from netsim.dns.stub import search
        from netsim.dns.wire import build_query, read_reply
    except ImportError:  # pragma: no cover - dns package missing
        return None
    return SimpleNamespace(pod_resolv_conf=pod_resolv_conf, search=search, build_query=build_query,
                           read_reply=read_reply)


def _rcode(reply) -> str:
    return _rcode_names()[reply.header.rcode]


@functools.lru_cache(maxsize=1)
def _rcode_names() -> dict[int, str]:
    """dnslib's RCODE.get for every 4-bit rcode (a header's rcode field), as a plain dict."""
    from dnslib import RCODE
    return {i: RCODE.get(i) for i in range(16)}


def coredns_handler(cluster) -> Any:
    """A UDP handler answering DNS like CoreDNS does (netsim.dns.resolver.ClusterDNS)."""
    factory = coredns_handlers(cluster)
    return factory(None) if factory is not None else None


def coredns_handlers(cluster) -> Any:
    """``for_pod(ip) -> handler``: the DNS server of the CoreDNS pod at ``ip`` (its own address is
    ns.go's local IP); the pods share one record index, as they watch the same API server."""
    try:
        from netsim.dns.resolver import ClusterDNS
    except ImportError:  # pragma: no cover
        return None
    from netsim.dns.message import handle as handle_wire
    dns = ClusterDNS(cluster)

    def for_pod(ip: Optional[str]):
        server = dns if ip is None else dns.pod(ip)      # the pod's own cache and pre-encoded replies

        def handle(payload: bytes, protocol: str = "udp") -> Optional[bytes]:
            # CoreDNS's listener rules: garbage is dropped or FORMERR, a UDP answer is truncated
            # (TC=1) to the client's size; None means no answer at all.
            return handle_wire(server, payload, protocol)
        return handle
    return for_pod


def unresolved_trace(walker, client_host, target: Target, proto: Optional[str], err: Unresolved) -> Trace:
    """The trace of a connection that never started because its name did not resolve: no packet
    after the DNS queries (kept as notes), outcome UNRESOLVED, flow dst null."""
    src = next((int2ip(i.addr) for i in client_host.interfaces.values() if i.addr is not None and i.name != "lo"),
               "0.0.0.0")
    label = (f"pod/{client_host.name}" if client_host.kind == "pod" else
             f"node/{client_host.name}" if client_host.kind == "node" else client_host.name)
    flow = Flow(label, proto or "tcp", src, 0, None, target.port, target.text, None)
    trace = Trace(flow, walker.mode, notes=list(err.notes), capture_only=[(0, w) for w in err.dns_walks])
    trace.outcome = Outcome("UNRESOLVED", f"{target.host}: {err}", host=client_host.name,
                            client_error="EAI_AGAIN" if "EAI_AGAIN" in str(err) else "EAI_NONAME")
    return trace
