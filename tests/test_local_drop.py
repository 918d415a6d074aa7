"""What the client process sees when its own host drops its packet (OUTPUT / POSTROUTING).

Kernel: nf_hook_slow turns a hook's NF_DROP into -EPERM, which ip_local_out hands back to the
sender: UDP's and ICMP's send() fails at once with EPERM (DROP or REJECT alike); TCP's tcp_connect
ignores its SYN's error and retransmits (tcp_syn_retries) until connect() fails with ETIMEDOUT, and a
REJECT's ICMP error reaches the socket in SYN_SENT (tcp_v4_err): ECONNREFUSED. The kernel test
below checks each case in a scratch namespace against the emulator's prediction, and
`netsim verify` compares the same view (netsim.kernel.verify.emulator_outcome, probe "denied").
"""
from __future__ import annotations

import errno
import socket

import pytest

from netsim.kernel.probe import Probe, ProbeResult, _classify
from netsim.kernel.verify import emulator_outcome, kernel_outcome

from kernel_helpers import in_netns, scratch_netns
from netfilter_extra import walker_with
from walker_cluster import scenario_cluster


def _walker(rule_target: str, table: str = "filter", chain: str = "OUTPUT"):
    c = scenario_cluster()
    web1 = c.pod("default", "web-1").ip
    w = walker_with(c, {"node-1": {table: [f"-A {chain} -d {web1}/32 -j {rule_target}"]}})
    return w, web1


@pytest.mark.parametrize("proto,port,error", [("udp", 5353, "EPERM"), ("icmp", 0, "EPERM"),
                                              ("tcp", 8080, "ETIMEDOUT")])
def test_a_local_drop_in_output_is_seen_by_the_sender_per_protocol(proto, port, error):
    w, web1 = _walker("DROP")
    t = w.connect(w.host_for("node/node-1"), web1, port, proto)
    o = t.outcome
    assert o.disposition == "DROPPED" and o.host == "node-1" and o.detail.startswith("filter:OUTPUT")
    assert o.client_error == error and error in o.detail
    assert len(t.request.hops) == 1                       # the packet never left the node


def test_a_local_drop_in_postrouting_is_seen_the_same_way():
    w, web1 = _walker("DROP", "mangle", "POSTROUTING")
    t = w.connect(w.host_for("node/node-1"), web1, 5353, "udp")
    assert t.outcome.disposition == "DROPPED" and t.outcome.detail.startswith("mangle:POSTROUTING")
    assert t.outcome.client_error == "EPERM"


def test_a_local_reject_refuses_tcp_at_once_but_udp_send_still_fails_with_eperm():
    w, web1 = _walker("REJECT")
    tcp = w.connect(w.host_for("node/node-1"), web1, 8080, "tcp")
    assert tcp.outcome.disposition == "REJECTED" and tcp.outcome.client_error == "ECONNREFUSED"
    assert tcp.outcome.reply.received                    # the ICMP error reached the socket
    udp = w.connect(w.host_for("node/node-1"), web1, 5353, "udp")
    assert udp.outcome.disposition == "REJECTED" and udp.outcome.client_error == "EPERM"


def test_a_drop_on_another_host_is_no_local_error():
    # client-1 is a pod: its packet leaves its own namespace and node-1 drops it in FORWARD
    c = scenario_cluster()
    web2 = c.pod("default", "web-2").ip
    w = walker_with(c, {"node-1": {"filter": [f"-I FORWARD 1 -d {web2}/32 -j DROP"]}})
    t = w.connect(w.host_for("pod/client-1"), web2, 5353, "udp")
    assert t.outcome.disposition == "DROPPED" and t.outcome.client_error is None


def test_verify_compares_the_senders_view():
    w, web1 = _walker("DROP")
    udp = w.connect(w.host_for("node/node-1"), web1, 5353, "udp")
    tcp = w.connect(w.host_for("node/node-1"), web1, 8080, "tcp")
    assert emulator_outcome(udp, "node-1") == ("denied", None, None)
    assert emulator_outcome(tcp, "node-1") == ("dropped", None, None)
    probe = Probe("ns", web1, 5353, "UDP")
    assert _classify(errno.EPERM) == "denied"
    assert kernel_outcome(ProbeResult(probe, "denied")) == ("denied", None, None)
    assert kernel_outcome(ProbeResult(probe, "timeout")) == ("dropped", None, None)


# ---------------------------------------------------------------------------- the kernel
_CLIENT = r"""
import errno, socket, sys
proto, dst = sys.argv[1], sys.argv[2]
try:
    if proto == "tcp":
        s = socket.socket(); s.settimeout(1.5); s.connect((dst, 8080)); print("connected")
    elif proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((dst, 5353)); s.send(b"x"); print("sent")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", (dst, 0)); print("sent")
except socket.timeout:
    print("ETIMEDOUT")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


@pytest.mark.kernel
@pytest.mark.parametrize("target", ["DROP", "REJECT"])
def test_kernel_agrees_with_the_emulated_sender_view(target):
    with scratch_netns("nsdrop", "iptables") as ns:
        for c in ("ip link set lo up", "ip link add v0 type veth peer name v1",
                  "ip addr add 10.9.0.1/24 dev v0", "ip link set v0 up", "ip link set v1 up",
                  f"iptables -A OUTPUT -d 10.9.0.2/32 -j {target}"):
            r = in_netns(ns, ["sh", "-c", c])
            assert r.returncode == 0, r.stderr
        w, web1 = _walker(target)
        for proto, port in (("udp", 5353), ("icmp", 0), ("tcp", 8080)):
            kernel = in_netns(ns, ["python3", "-c", _CLIENT, proto, "10.9.0.2"]).stdout.strip()
            emulated = w.connect(w.host_for("node/node-1"), web1, port, proto).outcome.client_error
            # a TCP connect under DROP retries for ~127 s; the client here gives up after 1.5 s
            assert kernel == emulated, (target, proto, kernel, emulated)
