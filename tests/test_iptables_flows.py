"""`netsim iptables replay` answers what kube-proxy's own packet-flow tests ask.

Upstream: kubernetes/kubernetes pkg/proxy/iptables/proxier_test.go, tracePacket / runPacketFlowTests
(source, protocol, destination, port -> every endpoint the packet may be DNATed to, or the ACCEPT /
DROP / REJECT a rule gives, or "" when no rule decides; and whether it is masqueraded). The flow
tables below are upstream's, case for case. The rules are upstream's text too: TestTracePacket's
own rules (built-in chains with the '-' policy), and TestOverallIPTablesRules' `expected` restore
input (tests/golden/iptables/overall.txt), which has no jumps from the built-in chains: replay adds
the ones kube-proxy ensures (EnsureRule), as a node would have them.

Our replay follows the packet's real path (--full-path): PREROUTING, or OUTPUT when the source is
a node address, then INPUT or FORWARD and POSTROUTING, where upstream's tracer runs nat PREROUTING
and four filter chains for every packet. The verdicts are the same for every upstream case.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.packet import Packet, ip2int
from netsim.rules.iptables import Engine, parse
from netsim.rules.iptables.replay import flow_summary, replay_all, with_kube_proxy_jumps

GOLDEN = Path(__file__).parent / "golden"
TRACE_RULES = GOLDEN / "iptables_flows" / "trace_packet_rules.txt"
OVERALL = GOLDEN / "iptables" / "overall.txt"

# proxier_test.go conventions: testNodeIP, testNodeIPAlt, testExternalIP are the node's (IPv4) addresses
TEST_NODE_IP = "192.168.0.2"
TEST_NODE_IPS = (TEST_NODE_IP, "192.168.1.2", "192.168.99.11")
TEST_EXTERNAL_CLIENT = "203.0.113.2"
TEST_EXTERNAL_CLIENT_BLOCKED = "203.0.113.130"

# TestTracePacket's runPacketFlowTests: (name, source, protocol, destination, port, output, masq)
TRACE_PACKET_FLOWS = [
    ("no match", "10.0.0.2", "tcp", "10.0.0.3", 80, "", False),
    ("single endpoint", "10.0.0.2", "tcp", "172.30.0.41", 80, "10.180.0.1:80", False),
    ("multiple endpoints", "10.0.0.2", "tcp", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80", False),
    ("LOCAL, KUBE-MARK-MASQ", TEST_NODE_IP, "tcp", "192.168.99.22", 80, "10.180.0.2:80", True),
    ("DROP", TEST_EXTERNAL_CLIENT, "tcp", "192.168.99.22", 80, "DROP", False),
    ("ACCEPT (NodePortHealthCheck)", TEST_NODE_IP, "tcp", TEST_NODE_IP, 30000, "ACCEPT", False),
    ("REJECT", "10.0.0.2", "tcp", "172.30.0.46", 80, "REJECT", False),
]

_BUILD = {"tcp": lambda s, d, p: Packet.tcp(s, d, 40000, p, flags="S"),
          "udp": lambda s, d, p: Packet.udp(s, d, 40000, p),
          "sctp": lambda s, d, p: Packet.sctp(s, d, 40000, p)}


def trace_packet(engine: Engine, source: str, proto: str, dest: str, port: int,
                 node_ips=TEST_NODE_IPS) -> tuple[str, bool]:
    """The upstream tracePacket question, answered by walking the packet's whole path."""
    local = {ip2int(a) for a in node_ips}
    hook = "OUTPUT" if ip2int(source) in local else "PREROUTING"
    paths = replay_all(engine, lambda: _BUILD[proto](source, dest, port), hook, local, full_path=True)
    return flow_summary(paths)


def engine_for(text: str) -> Engine:
    text, _ = with_kube_proxy_jumps(text)
    return Engine(parse(text, source="rules"))


@pytest.mark.parametrize("name,src,proto,dst,port,output,masq", TRACE_PACKET_FLOWS,
                         ids=[f[0] for f in TRACE_PACKET_FLOWS])
@pytest.mark.parametrize("rules", [TRACE_RULES, OVERALL], ids=["TestTracePacket-rules", "overall-restore-input"])
def test_trace_packet_flows(rules, name, src, proto, dst, port, output, masq):
    assert trace_packet(engine_for(rules.read_text()), src, proto, dst, port) == (output, masq)


def test_builtin_chains_with_dash_policy_load_as_accept():
    rs = parse(TRACE_RULES.read_text(), source="trace")
    assert rs.tables["filter"].chains["INPUT"].policy == "ACCEPT"
    assert rs.tables["nat"].chains["POSTROUTING"].policy == "ACCEPT"


def test_restore_input_gets_the_jumps_kube_proxy_ensures():
    text, notes = with_kube_proxy_jumps(OVERALL.read_text())
    assert len(notes) == 2
    rs = parse(text, source="overall")
    forward = [r.render() for r in rs.tables["filter"].chains["FORWARD"].rules]
    assert [r.rsplit(" -j ", 1)[1] for r in forward] == \
        ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    assert [r.rsplit(" -j ", 1)[1] for r in (x.render() for x in rs.tables["nat"].chains["PREROUTING"].rules)] \
        == ["KUBE-SERVICES"]
    # a dump that already has them (TestTracePacket's, or any iptables-save) is left alone
    assert with_kube_proxy_jumps(TRACE_RULES.read_text()) == (TRACE_RULES.read_text(), [])
    # the dump's own line numbers are unchanged: the jumps go just before each COMMIT
    assert text.splitlines()[:20] == OVERALL.read_text().splitlines()[:20]


def test_cli_reports_every_endpoint_and_masquerade(tmp_path):
    r = CliRunner().invoke(cli, ["iptables", "replay", "--dump", str(OVERALL), "--src", TEST_NODE_IP,
                                 "--dst", "192.168.99.33:80", "--hook", "OUTPUT", "--full-path", "--all",
                                 *[a for ip in TEST_NODE_IPS for a in ("--local-addr", ip)]])
    assert r.exit_code == 0, r.output
    assert "added the 11 jump rules" in r.output and "added the 3 jump rules" in r.output
    assert "reaches: 10.180.0.4:80, 10.180.0.5:80" in r.output
    assert "masquerade: yes" in r.output
    assert "2 ways through the rules" in r.output


def test_cli_full_path_walks_forward_filter_after_routing():
    r = CliRunner().invoke(cli, ["iptables", "replay", "--dump", str(OVERALL), "--src", TEST_EXTERNAL_CLIENT,
                                 "--dst", "192.168.99.22:80", "--full-path", "--local-addr", TEST_NODE_IP])
    assert r.exit_code == 1, r.output                           # dropped: not delivered
    assert "[FORWARD]  route: forward" in r.output
    assert '"ns2/svc2:p80 has no local endpoints"' in r.output and "verdict: DROP" in r.output


def test_cli_sctp():
    r = CliRunner().invoke(cli, ["iptables", "replay", "--dump", str(TRACE_RULES), "--src", "10.0.0.2",
                                 "--dst", "172.30.0.41:80", "--proto", "sctp", "--all"])
    assert r.exit_code == 0, r.output
    assert "replay sctp 10.0.0.2:40000 -> 172.30.0.41:80" in r.output
    assert "reaches: (no rule decided" in r.output               # svc1's rules are TCP only
