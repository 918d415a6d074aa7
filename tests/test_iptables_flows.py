"""`netsim iptables replay` answers what kube-proxy's own packet-flow tests ask.

Upstream: kubernetes/kubernetes pkg/proxy/iptables/proxier_test.go, tracePacket / runPacketFlowTests
(source, protocol, destination, port -> every endpoint the packet may be DNATed to, or the ACCEPT /
DROP / REJECT a rule gives, or "" when no rule decides; and whether it is masqueraded). The flow
tables below are upstream's, case for case (TestTracePacket, TestNoEndpointsReject,
TestClusterIPGeneral, TestLoadBalancer, TestNodePorts' IPv4 rows, TestHealthCheckNodePort,
TestExternalTrafficPolicyLocal/Cluster; TestInternalTrafficPolicy and
TestTerminatingEndpointsTrafficPolicyLocal as read in pkg/proxy/nftables/proxier_test.go, which
asks the same packetFlowTest questions). Where upstream gives the rules as text, that text is
used: TestTracePacket's own rules (built-in chains with the '-' policy), and
TestOverallIPTablesRules' `expected` restore input (tests/golden/iptables/overall.txt), which has
no jumps from the built-in chains: replay adds the ones kube-proxy ensures (EnsureRule), as a node
would have them. The other tests build their Services in Go; here the same objects are loaded as
manifests and our proxier renders the node's rules.

Our replay follows the packet's real path (--full-path): PREROUTING, or OUTPUT when the source is
a node address, then INPUT or FORWARD and POSTROUTING, where upstream's tracer runs nat PREROUTING
and four filter chains for every packet. The verdicts are the same for every upstream case.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.control.manifests import load_text
from netsim.skb.packet import Packet, ip2int
from netsim.rules.iptables import Engine, parse
from netsim.rules.iptables.proxier import render
from netsim.rules.iptables.proxier_cluster import proxier_config_for_node
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
    hook = "OUTPUT" if ip2int(source) in local or source.startswith("127.") else "PREROUTING"
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


# ---------------------------------------------------------------------------- proxier + replay
# The other upstream flow tables build their Services in Go (NewFakeProxier: pod CIDR 10.0.0.0/8 as
# the local-traffic detector, node "test-node" at 192.168.0.2); here the same objects are loaded as
# manifests, our proxier renders the node's rules, and replay answers each upstream flow.
CLUSTER = {"apiVersion": "netsim.io/v1", "kind": "Cluster", "metadata": {"name": "upstream"},
           "spec": {"nodes": [{"name": "test-node", "ip": TEST_NODE_IP}], "podCIDR": "10.0.0.0/8",
                    "serviceCIDR": "172.30.0.0/16", "nodeNetwork": "192.168.0.0/24",
                    "nodePortRange": "3000-32767", "loadBalancerPool": "192.168.0.240/28",
                    "coredns": {"enabled": False}}}


def service(name, type_="ClusterIP", ports=(("p80", 80, "TCP", None, None),), ns="ns1", **spec):
    """ports: (name, port, protocol, nodePort, targetPort)"""
    s = {"type": type_, "ports": [{k: v for k, v in (("name", n), ("port", p), ("protocol", proto),
                                                       ("nodePort", np), ("targetPort", tp)) if v is not None}
                                  for n, p, proto, np, tp in ports]}
    lb = spec.pop("lb_ips", None)
    s.update(spec)
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}
    if lb:
        doc["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb]}}
    return doc


def endpoint_slice(svc, endpoints, ports=(("p80", 80, "TCP"),), ns="ns1"):
    """endpoints: (address, nodeName or None[, (ready, serving, terminating)])"""
    def ep(a, n, cond=None):
        e = {"addresses": [a]}
        if n:
            e["nodeName"] = n
        if cond is not None:
            e["conditions"] = dict(zip(("ready", "serving", "terminating"), cond))
        return e
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-1", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": [ep(*e) for e in endpoints],
            "ports": [{"name": n, "port": p, "protocol": proto} if n else {"port": p, "protocol": proto}
                      for n, p, proto in ports]}


def node_engine(*docs, **proxier) -> Engine:
    """The test node's rules; ``proxier`` overrides kube-proxy settings (fp.localhostNodePorts, ...)."""
    namespaces = sorted({d["metadata"]["namespace"] for d in docs})
    objs = [CLUSTER] + [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
    cluster = load_text(yaml.safe_dump_all(objs + list(docs)), "upstream.yaml")
    # NewFakeProxier's interfaces: lo 127.0.0.1, eth0 testNodeIP, eth1 testNodeIPAlt
    config = proxier_config_for_node(cluster, "test-node", node_ips=["127.0.0.1", *TEST_NODE_IPS[:2]], **proxier)
    return Engine(parse(render(cluster, "test-node", config=config), source="test-node"))


def _run(engine, flows):
    got = {name: trace_packet(engine, src, proto, dst, port) for name, src, proto, dst, port, _, _ in flows}
    want = {name: (out, masq) for name, _, _, _, _, out, masq in flows}
    assert got == want


def test_no_endpoints_reject():
    e = node_engine(service("svc1", "LoadBalancer", (("p80", 80, "TCP", 3001, None),), clusterIP="172.30.0.41",
                            externalIPs=["192.168.99.11"], lb_ips=["1.2.3.4"]))
    _run(e, [("pod to cluster IP with no endpoints", "10.0.0.2", "tcp", "172.30.0.41", 80, "REJECT", False),
             ("external to external IP with no endpoints", TEST_EXTERNAL_CLIENT, "tcp", "192.168.99.11", 80,
              "REJECT", False),
             ("pod to NodePort with no endpoints", "10.0.0.2", "tcp", TEST_NODE_IP, 3001, "REJECT", False),
             ("external to NodePort with no endpoints", TEST_EXTERNAL_CLIENT, "tcp", TEST_NODE_IP, 3001,
              "REJECT", False),
             ("pod to LoadBalancer IP with no endpoints", "10.0.0.2", "tcp", "1.2.3.4", 80, "REJECT", False),
             ("external to LoadBalancer IP with no endpoints", TEST_EXTERNAL_CLIENT, "tcp", "1.2.3.4", 80,
              "REJECT", False)])


def test_cluster_ip_general():
    e = node_engine(
        service("svc1", clusterIP="172.30.0.41", ports=(("http", 80, "TCP", None, None),)),
        service("svc2", clusterIP="172.30.0.42", ports=(("http", 80, "TCP", None, None),
                                                        ("https", 443, "TCP", None, 8443),
                                                        ("dns-udp", 53, "UDP", None, None),
                                                        ("dns-tcp", 53, "TCP", None, 5353),
                                                        ("dns-sctp", 53, "SCTP", None, None))),
        endpoint_slice("svc1", [("10.180.0.1", "test-node")], (("http", 80, "TCP"),)),
        endpoint_slice("svc2", [("10.180.0.1", "test-node"), ("10.180.2.1", "node2")],
                       (("http", 80, "TCP"), ("https", 8443, "TCP"), ("dns-udp", 53, "UDP"),
                        ("dns-tcp", 5353, "TCP"), ("dns-sctp", 53, "SCTP"))))
    both = lambda p: f"10.180.0.1:{p}, 10.180.2.1:{p}"          # noqa: E731
    _run(e, [("simple clusterIP", "10.180.0.2", "tcp", "172.30.0.41", 80, "10.180.0.1:80", False),
             ("hairpin to cluster IP", "10.180.0.1", "tcp", "172.30.0.41", 80, "10.180.0.1:80", True),
             ("clusterIP with multiple endpoints", "10.180.0.2", "tcp", "172.30.0.42", 80, both(80), False),
             ("clusterIP with TargetPort", "10.180.0.2", "tcp", "172.30.0.42", 443, both(8443), False),
             ("same port (TCP)", "10.180.0.2", "tcp", "172.30.0.42", 53, both(5353), False),
             ("same port (UDP)", "10.180.0.2", "udp", "172.30.0.42", 53, both(53), False),
             ("same port (SCTP)", "10.180.0.2", "sctp", "172.30.0.42", 53, both(53), False),
             ("TCP-only port does not match UDP traffic", "10.180.0.2", "udp", "172.30.0.42", 80, "", False),
             ("svc1 does not accept svc2's ports", "10.180.0.2", "tcp", "172.30.0.41", 443, "", False)])


def test_load_balancer():
    e = node_engine(service("svc1", "LoadBalancer", (("p80", 80, "TCP", 3001, None),), clusterIP="172.30.0.41",
                            loadBalancerSourceRanges=["192.168.0.0/24", " 203.0.113.0/25"],
                            lb_ips=["1.2.3.4", "5.6.7.8"]),
                    endpoint_slice("svc1", [("10.180.0.1", None)]))
    ep = "10.180.0.1:80"
    _run(e, [("pod to cluster IP", "10.0.0.2", "tcp", "172.30.0.41", 80, ep, False),
             ("external to nodePort", TEST_EXTERNAL_CLIENT, "tcp", TEST_NODE_IP, 3001, ep, True),
             ("nodePort bypasses LoadBalancerSourceRanges", TEST_EXTERNAL_CLIENT_BLOCKED, "tcp", TEST_NODE_IP,
              3001, ep, True),
             ("accepted external to LB1", TEST_EXTERNAL_CLIENT, "tcp", "1.2.3.4", 80, ep, True),
             ("accepted external to LB2", TEST_EXTERNAL_CLIENT, "tcp", "5.6.7.8", 80, ep, True),
             ("blocked external to LB1", TEST_EXTERNAL_CLIENT_BLOCKED, "tcp", "1.2.3.4", 80, "DROP", False),
             ("blocked external to LB2", TEST_EXTERNAL_CLIENT_BLOCKED, "tcp", "5.6.7.8", 80, "DROP", False),
             ("pod to LB1 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "tcp", "1.2.3.4", 80, "DROP", False),
             ("pod to LB2 (blocked by LoadBalancerSourceRanges)", "10.0.0.2", "tcp", "5.6.7.8", 80, "DROP", False),
             ("node to LB1 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "tcp", "1.2.3.4", 80, ep, True),
             ("node to LB2 (allowed by LoadBalancerSourceRanges)", TEST_NODE_IP, "tcp", "5.6.7.8", 80, ep, True),
             ("same node to LB1, SNATted to LB1 (implicitly allowed)", "1.2.3.4", "tcp", "1.2.3.4", 80, ep, True),
             ("same node to LB2, SNATted to LB2 (implicitly allowed)", "5.6.7.8", "tcp", "5.6.7.8", 80, ep, True)])


NODE_PORT_CASES = [
    # (name, localhostNodePorts, nodePortAddresses, allowAltNodeIP) -- TestNodePorts, IPv4 rows
    ("ipv4, localhost-nodeports enabled", True, None, True),
    ("ipv4, localhost-nodeports disabled", False, None, True),
    ("ipv4, localhost-nodeports disabled, localhost in nodeport-addresses", False,
     ["192.168.0.0/24", "127.0.0.1/32"], False),
    ("ipv4, localhost-nodeports enabled, multiple nodeport-addresses", False,
     ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], True),
]


@pytest.mark.parametrize("name,localhost,addresses,alt", NODE_PORT_CASES, ids=[c[0] for c in NODE_PORT_CASES])
def test_node_ports(name, localhost, addresses, alt):
    e = node_engine(service("svc1", "NodePort", (("p80", 80, "TCP", 3001, None),), clusterIP="172.30.0.41"),
                    endpoint_slice("svc1", [("10.180.0.1", None), ("10.180.2.1", "test-node")]),
                    localhost_nodeports=localhost, node_port_addresses=addresses)
    out = "10.180.0.1:80, 10.180.2.1:80"
    _run(e, [("pod to cluster IP", "10.0.0.2", "tcp", "172.30.0.41", 80, out, False),
             ("external to nodePort", TEST_EXTERNAL_CLIENT, "tcp", TEST_NODE_IP, 3001, out, True),
             ("node to nodePort", TEST_NODE_IP, "tcp", TEST_NODE_IP, 3001, out, True),
             ("localhost to nodePort", "127.0.0.1", "tcp", "127.0.0.1", 3001,
              out if localhost else "", localhost),
             ("external to nodePort on secondary IP", TEST_EXTERNAL_CLIENT, "tcp", "192.168.1.2", 3001,
              out if alt else "", alt)])


def test_health_check_node_port():
    svc = service("svc1", "LoadBalancer", (("p80", 80, "TCP", 3001, None),), clusterIP="172.30.0.42",
                  externalTrafficPolicy="Local", healthCheckNodePort=30000)
    flow = ("firewall accepts HealthCheckNodePort", "1.2.3.4", "tcp", TEST_NODE_IP, 30000)
    _run(node_engine(svc, node_port_addresses=["127.0.0.0/8"]), [flow + ("ACCEPT", False)])
    # fp.OnServiceDelete(svc): the Service is gone, and with it the rule
    empty = Engine(parse(render(load_text(yaml.safe_dump(CLUSTER), "upstream.yaml"), "test-node"), source="none"))
    _run(empty, [flow + ("", False)])


def _etp_service(policy):
    return service("svc1", "LoadBalancer", (("p80", 80, "TCP", 3001, 80),), clusterIP="172.30.0.41",
                   externalIPs=["192.168.99.11"], externalTrafficPolicy=policy, lb_ips=["1.2.3.4"],
                   **({"healthCheckNodePort": 30000} if policy == "Local" else {}))


def test_external_traffic_policy_local():
    e = node_engine(_etp_service("Local"), endpoint_slice("svc1", [("10.180.0.1", None), ("10.180.2.1", "test-node")]))
    both, local = "10.180.0.1:80, 10.180.2.1:80", "10.180.2.1:80"
    _run(e, [("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "tcp", "172.30.0.41", 80, both, False),
             ("pod to external IP hits both endpoints, unmasqueraded", "10.0.0.2", "tcp", "192.168.99.11", 80, both,
              False),
             ("external to external IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "tcp",
              "192.168.99.11", 80, local, False),
             ("pod to LB IP hits only both endpoints, unmasqueraded", "10.0.0.2", "tcp", "1.2.3.4", 80, both, False),
             ("external to LB IP hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "tcp", "1.2.3.4", 80,
              local, False),
             ("pod to NodePort hits both endpoints, unmasqueraded", "10.0.0.2", "tcp", TEST_NODE_IP, 3001, both, False),
             ("external to NodePort hits only local endpoint, unmasqueraded", TEST_EXTERNAL_CLIENT, "tcp", TEST_NODE_IP,
              3001, local, False)])


def test_external_traffic_policy_cluster():
    e = node_engine(_etp_service("Cluster"), endpoint_slice("svc1", [("10.180.0.1", None), ("10.180.2.1", "test-node")]))
    both = "10.180.0.1:80, 10.180.2.1:80"
    _run(e, [("pod to cluster IP hits both endpoints, unmasqueraded", "10.0.0.2", "tcp", "172.30.0.41", 80, both, False),
             ("pod to external IP hits both endpoints, masqueraded", "10.0.0.2", "tcp", "192.168.99.11", 80, both, True),
             ("external to external IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "tcp", "192.168.99.11",
              80, both, True),
             ("pod to LB IP hits both endpoints, masqueraded", "10.0.0.2", "tcp", "1.2.3.4", 80, both, True),
             ("external to LB IP hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "tcp", "1.2.3.4", 80, both,
              True),
             ("pod to NodePort hits both endpoints, masqueraded", "10.0.0.2", "tcp", TEST_NODE_IP, 3001, both, True),
             ("external to NodePort hits both endpoints, masqueraded", TEST_EXTERNAL_CLIENT, "tcp", TEST_NODE_IP, 3001,
              both, True)])


# pkg/proxy/nftables/proxier_test.go, where these two tables were read (same packetFlowTest shape)
ITP_CASES = [
    ("internalTrafficPolicy is cluster", "Cluster",
     [("10.0.1.1", "test-node"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "10.0.1.1:80, 10.0.1.2:80, 10.0.1.3:80"),
    ("internalTrafficPolicy is local and there is one local endpoint", "Local",
     [("10.0.1.1", "test-node"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "10.0.1.1:80"),
    ("internalTrafficPolicy is local and there are multiple local endpoints", "Local",
     [("10.0.1.1", "test-node"), ("10.0.1.2", "test-node"), ("10.0.1.3", "node2")], "10.0.1.1:80, 10.0.1.2:80"),
    ("internalTrafficPolicy is local and there are no local endpoints", "Local",
     [("10.0.1.1", "node0"), ("10.0.1.2", "node1"), ("10.0.1.3", "node2")], "DROP"),
]


@pytest.mark.parametrize("name,policy,endpoints,output", ITP_CASES, ids=[c[0] for c in ITP_CASES])
def test_internal_traffic_policy(name, policy, endpoints, output):
    svc = service("svc1", clusterIP="172.30.1.1", ports=((None, 80, "TCP", None, None),), internalTrafficPolicy=policy)
    ready = [(a, n, (True, None, None)) for a, n in endpoints]
    slice_ = endpoint_slice("svc1", ready, ((None, 80, "TCP"),))
    flow = ("pod to ClusterIP", "10.0.0.2", "tcp", "172.30.1.1", 80)
    _run(node_engine(svc, slice_), [flow + (output, False)])
    _run(node_engine(svc), [flow + ("REJECT", False)])                 # endpoints deleted


T, F = True, False
TERMINATING_LOCAL_CASES = [
    ("ready endpoints exist",
     [("10.0.1.1", "test-node", (T, T, F)), ("10.0.1.2", "test-node", (T, T, F)),
      ("10.0.1.3", "test-node", (F, T, T)), ("10.0.1.4", "test-node", (F, F, T)), ("10.0.1.5", "node-1", (T, T, F))],
     "10.0.1.1:80, 10.0.1.2:80, 10.0.1.5:80", "10.0.1.1:80, 10.0.1.2:80"),
    ("only terminating endpoints exist",
     [("10.0.1.2", "test-node", (F, T, T)), ("10.0.1.3", "test-node", (F, T, T)),
      ("10.0.1.4", "test-node", (F, F, T)), ("10.0.1.5", "node-1", (T, T, F))],
     "10.0.1.5:80", "10.0.1.2:80, 10.0.1.3:80"),
    ("terminating endpoints on remote node", [("10.0.1.5", "node-1", (F, T, T))], "10.0.1.5:80", "DROP"),
    ("no usable endpoints on any node",
     [("10.0.1.5", "test-node", (F, F, T)), ("10.0.1.5", "node-1", (F, F, T))], "REJECT", "REJECT"),
]


@pytest.mark.parametrize("name,endpoints,to_cluster_ip,to_lb", TERMINATING_LOCAL_CASES,
                         ids=[c[0] for c in TERMINATING_LOCAL_CASES])
def test_terminating_endpoints_traffic_policy_local(name, endpoints, to_cluster_ip, to_lb):
    svc = service("svc1", "LoadBalancer", ((None, 80, "TCP", None, 80),), clusterIP="172.30.1.1",
                  externalTrafficPolicy="Local", healthCheckNodePort=30000, lb_ips=["1.2.3.4"])
    flows = [("pod to clusterIP", "10.0.0.2", "tcp", "172.30.1.1", 80),
             ("external to LB", TEST_EXTERNAL_CLIENT, "tcp", "1.2.3.4", 80)]
    _run(node_engine(svc, endpoint_slice("svc1", endpoints, ((None, 80, "TCP"),))),
         [flows[0] + (to_cluster_ip, False), flows[1] + (to_lb, False)])
    _run(node_engine(svc), [f + ("REJECT", False) for f in flows])    # endpoints deleted
