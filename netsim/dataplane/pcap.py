"""pcapng export of a trace: every packet at every hop, one interface per host/device, a comment each.

Written block by block (pcapng spec, draft-ietf-opsawg-pcapng): a Section Header Block, one
Interface Description Block per ``host/interface`` (LINKTYPE_RAW = 101: the bytes are the IPv4
datagram; ``if_name`` carries ``node-1/cni0``), and one Enhanced Packet Block per capture point with
an ``opt_comment`` naming the step. Wireshark/tshark show the comment as ``frame.comment``.
Timestamps are wall-clock: the run's real start plus the cluster clock, plus one microsecond per
capture so packets keep their order. ``at`` keeps one capture point, as ``tcpdump -i IFACE`` (or
``-i any``) on that host would record it.
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterable, Optional

LINKTYPE_RAW = 101


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * pad


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def section_header() -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    body += _opt(4, b"kube-netsim") + _opt(0, b"")          # shb_userappl
    return _block(0x0A0D0D0A, body)


def interface_block(name: str) -> bytes:
    body = struct.pack("<HHI", LINKTYPE_RAW, 0, 0xFFFF)
    body += _opt(2, name.encode()) + _opt(9, b"\x06") + _opt(0, b"")   # if_name, if_tsresol = µs
    return _block(1, body)


def packet_block(iface_id: int, ts_us: int, data: bytes, comment: str) -> bytes:
    pad = (-len(data)) % 4
    body = struct.pack("<IIIII", iface_id, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data), len(data))
    body += data + b"\x00" * pad
    body += _opt(1, comment.encode()) + _opt(0, b"")
    return _block(6, body)


def write_pcapng(out: BinaryIO, captures: Iterable[tuple[str, str, bytes, str]], start_s: float = 0.0) -> int:
    """Write (host, interface, ip bytes, comment) records; returns the number of packets written."""
    out.write(section_header())
    ids: dict[str, int] = {}
    n = 0
    ts = int(start_s * 1_000_000)
    for host, iface, data, comment in captures:
        key = f"{host}/{iface}"
        if key not in ids:
            ids[key] = len(ids)
            out.write(interface_block(key))
        out.write(packet_block(ids[key], ts + n, data, comment))
        n += 1
    return n


def trace_captures(traces) -> list[tuple[str, str, bytes, str]]:
    """All capture records of one or more traces (walked with capture=True), in walk order: a
    by-name trace's DNS queries first, the handshake's final ACK after the SYN-ACK."""
    out = []
    for t in traces:
        for pt in t.walks_in_order():
            if pt.pcap:
                out.extend(pt.pcap)
    return out


def capture_point(captures, host: str, iface: Optional[str] = None) -> list[tuple[str, str, bytes, str]]:
    """The records `tcpdump -i IFACE` (or `-i any` when ``iface`` is None) on ``host`` would see."""
    return [c for c in captures if c[0] == host and (iface is None or c[1] == iface)]


def save_traces(path: str, traces, start_s: float = 0.0, at: Optional[tuple[str, Optional[str]]] = None) -> int:
    """Write the traces' capture records to ``path`` (only those of capture point ``at``, if given)."""
    captures = trace_captures(traces)
    if at is not None:
        captures = capture_point(captures, *at)
    with open(path, "wb") as f:
        return write_pcapng(f, captures, start_s)
