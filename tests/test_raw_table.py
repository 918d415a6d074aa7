"""The raw table runs first, before conntrack, and a NOTRACK rule takes the packet out of conntrack
and NAT.

Kernel facts: include/uapi/linux/netfilter_ipv4.h nf_ip_hook_priorities (NF_IP_PRI_RAW -300,
NF_IP_PRI_CONNTRACK -200, NF_IP_PRI_MANGLE -150, NF_IP_PRI_NAT_DST -100); net/netfilter/xt_CT.c
(``-j CT --notrack`` attaches the untracked template; nf_conntrack_in leaves such a packet alone);
xt_conntrack.c conntrack_mt (no entry yet → ctstate INVALID; the untracked template → UNTRACKED);
nf_nat_inet_fn (no conntrack entry → no NAT). The kernel test at the end checks the same facts in a
scratch network namespace.
"""
from __future__ import annotations

import subprocess

import pytest

from netsim.rules.iptables import parse

from kernel_helpers import in_netns, scratch_netns
from netfilter_extra import walker_with
from walker_cluster import scenario_cluster


@pytest.fixture
def cluster():
    return scenario_cluster()


def _ips(c):
    return (c.pod("default", "client-1").ip, c.service("default", "web").cluster_ip,
            c.pod("default", "web-1").ip)


def test_notrack_in_raw_prerouting_leaves_the_clusterip_unnatted(cluster):
    client, cip, _ = _ips(cluster)
    w = walker_with(cluster, {"node-1": {"raw": [
        f"-A PREROUTING -s {client}/32 -d {cip}/32 -p tcp -m tcp --dport 80 -j CT --notrack"]}})
    t = w.connect(w.host_for("pod/client-1"), cip, 80)
    node_hop = next(h for h in t.request.hops if h.host == "node-1")
    actions = [s.action for s in node_hop.steps]
    # raw's rule, then conntrack says UNTRACKED; no nat PREROUTING rule and no DNAT
    raw_rule = next(i for i, s in enumerate(node_hop.steps) if s.action == "RULE" and s.extra["table"] == "raw")
    untracked = next(i for i, s in enumerate(node_hop.steps) if s.action == "CONNTRACK")
    assert raw_rule < untracked and "UNTRACKED" in node_hop.steps[untracked].detail
    assert "TRANSLATED" not in actions
    assert not [s for s in node_hop.steps if s.action == "RULE" and s.extra["table"] == "nat"]
    assert t.outcome.disposition != "DELIVERED"
    assert not w.conntrack_for("node-1").entries(w.now)
    # other clients still get kube-proxy's DNAT and a conntrack entry
    t2 = w.connect(w.host_for("pod/client-3"), cip, 80)
    assert t2.outcome.disposition == "DELIVERED"
    assert w.conntrack_for("node-3").entries(w.now)


def test_raw_sees_no_conntrack_state_yet(cluster):
    # In raw the packet has no entry: --ctstate NEW does not match, INVALID does.
    client, cip, _ = _ips(cluster)
    w = walker_with(cluster, {"node-1": {"raw": ["-A PREROUTING -m conntrack --ctstate NEW -j DROP"]}})
    assert w.connect(w.host_for("pod/client-1"), cip, 80).outcome.disposition == "DELIVERED"
    w = walker_with(cluster, {"node-1": {"raw": ["-A PREROUTING -m conntrack --ctstate INVALID -j DROP"]}})
    t = w.connect(w.host_for("pod/client-1"), cip, 80)
    assert t.outcome.disposition == "DROPPED" and t.outcome.detail.startswith("raw:PREROUTING")
    assert not w.conntrack_for("node-1").entries(w.now)        # dropped before conntrack saw it


def test_untracked_packets_match_ctstate_untracked_in_later_tables(cluster):
    client, cip, web1 = _ips(cluster)
    w = walker_with(cluster, {"node-1": {
        "raw": [f"-A PREROUTING -s {client}/32 -d {web1}/32 -j CT --notrack"],
        "filter": ["-A FORWARD -m conntrack --ctstate UNTRACKED -j DROP"]}})
    t = w.connect(w.host_for("pod/client-1"), web1, 8080)
    assert t.outcome.disposition == "DROPPED" and "filter:FORWARD" in t.outcome.detail


def test_raw_output_drop_on_a_node_ends_before_conntrack(cluster):
    _, cip, web1 = _ips(cluster)
    w = walker_with(cluster, {"node-1": {"raw": [f"-A OUTPUT -d {web1}/32 -p udp -j DROP"]}})
    t = w.connect(w.host_for("node/node-1"), web1, 5353, "udp")
    assert t.outcome.disposition == "DROPPED" and t.outcome.detail.startswith("raw:OUTPUT")
    assert t.outcome.client_error == "EPERM"
    assert not w.conntrack_for("node-1").entries(w.now)


def test_notrack_in_raw_output_skips_nat_output(cluster):
    # node -> ClusterIP is DNATed in nat OUTPUT; untracked, it leaves with the ClusterIP unchanged
    _, cip, _ = _ips(cluster)
    w = walker_with(cluster, {"node-1": {"raw": [f"-A OUTPUT -d {cip}/32 -j CT --notrack"]}})
    t = w.connect(w.host_for("node/node-1"), cip, 80)
    first = t.request.hops[0]
    assert "TRANSLATED" not in [s.action for s in first.steps]
    assert any("UNTRACKED" in s.detail for s in first.steps if s.action == "CONNTRACK")
    assert t.outcome.disposition != "DELIVERED"


# ---------------------------------------------------------------------------- the kernel
def _sh(ns: str, *cmds: str) -> None:
    for c in cmds:
        r = in_netns(ns, ["sh", "-c", c])
        assert r.returncode == 0, f"{c}: {r.stderr}"


_CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(e.strerror)
"""


@pytest.mark.kernel
def test_kernel_notrack_in_raw_output_bypasses_dnat_and_conntrack():
    with scratch_netns("nsraw", "iptables", "conntrack") as ns:
        _sh(ns, "ip link set lo up",
            "ip link add v0 type veth peer name v1", "ip addr add 10.9.0.1/24 dev v0",
            "ip link set v0 up", "ip link set v1 up", "ip route add 10.96.0.0/12 dev v0",
            "iptables -t nat -A OUTPUT -d 10.96.0.1/32 -p tcp --dport 80 -j DNAT --to-destination 10.9.0.1:8080")
        server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c",
                                   "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                                   "socket.SO_REUSEADDR, 1); s.bind(('10.9.0.1', 8080)); s.listen(64); "
                                   "print('up', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "up"

            def connect() -> str:
                return in_netns(ns, ["python3", "-c", _CONNECT, "10.96.0.1", "80", "1.0"]).stdout.strip()

            def entries() -> str:
                return in_netns(ns, ["conntrack", "-L", "-d", "10.96.0.1"]).stdout

            assert connect() == "connected" and "dport=80" in entries()      # DNAT + an entry
            _sh(ns, "conntrack -F")
            _sh(ns, "iptables -t raw -A OUTPUT -d 10.96.0.1/32 -j CT --notrack")
            assert connect() == "timeout"                                     # no DNAT: nobody answers
            assert "dport=80" not in entries()                                # and no entry
            # iptables-save prints the rule as the engine renders it
            saved = in_netns(ns, ["iptables-save", "-t", "raw"]).stdout
            rule = parse(saved, source="iptables-save").tables["raw"].chains["OUTPUT"].rules[0]
            assert rule.render() == "-A OUTPUT -d 10.96.0.1/32 -j CT --notrack" and rule.render() in saved
            # in raw there is no conntrack state yet: NEW does not match, INVALID does
            _sh(ns, "iptables -t raw -F", "iptables -t raw -A OUTPUT -m conntrack --ctstate NEW -j DROP")
            assert connect() == "connected"
            _sh(ns, "iptables -t raw -F", "iptables -t raw -A OUTPUT -d 10.96.0.1/32 -m conntrack --ctstate INVALID -j DROP")
            assert connect() == "timeout"
        finally:
            server.kill()
            server.wait()

