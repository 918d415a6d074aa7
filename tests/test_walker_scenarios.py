"""Scenario tests: real packets through kube-proxy's rules, conntrack, the bridge and the overlay.

Where expectations come from:
* kube-proxy proxier_test.go TestOverallIPTablesRules (rules per Service shape: SEP hairpin
  masquerade, EXT masquerade for NodePorts, eTP=Local "has no local endpoints" DROP, no-endpoint
  REJECT), pkg/proxy/conntrack/cleanup.go (UDP conntrack cleanup);
* the kernel: netfilter_ipv4.h nf_ip_hook_priorities (hook order), nf_nat_masquerade.c
  nf_nat_masquerade_ipv4 (MASQUERADE = egress device primary address; node → ClusterIP),
  nf_nat_core.c (reply un-NAT by conntrack), br_netfilter_hooks.c (hairpin: the pod sees the
  bridge-side address); flannel pkg/backend/vxlan (flannel.1, UDP 8472).
* Kubernetes docs: externalTrafficPolicy Local preserves the client source address.
"""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import pytest

from netsim.skb.packet import IPPROTO_UDP, Packet
from netsim.dataplane.walker import Walker

from walker_cluster import scenario_cluster


@pytest.fixture
def cluster():
    return scenario_cluster()


def svc_ip(cluster, name):
    return cluster.service("default", name).cluster_ip


def pod_ip(cluster, name):
    return cluster.pod("default", name).ip


# The rule each scenario expects to see matched, as text fragments of the RULE step (iptables-save
# spelling; tests/test_nft_scenarios.py swaps in the nftables ones)
RULES = {
    "cluster IP": ('"default/web:http cluster IP"', "KUBE-SVC-"),
    "hairpin": ("-s 10.244.0.2", "KUBE-MARK-MASQ"),
    "nodeport masquerade": ("masquerade traffic for default/web-np external destinations",),
    "external IP": ('"default/web-ext external IP"',),
    "no local endpoints": ("has no local endpoints",),
    "no endpoints": ('"default/empty has no endpoints"',),
}


def has_rule(trace, what: str) -> bool:
    """Whether a RULE step of the request holds every fragment of RULES[what]."""
    return any(all(f in s.extra["rule"] for f in RULES[what]) for s in trace.request.steps("RULE"))


def connect_many(w, client, ip, port, n, proto="tcp"):
    return [w.connect(client, ip, port, proto) for _ in range(n)]


# ---------------------------------------------------------------------- ClusterIP
def test_pod_to_clusterip_same_and_cross_node(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-1")
    traces = connect_many(w, client, svc_ip(cluster, "web"), 80, 40)
    pods = Counter(t.outcome.pod for t in traces)
    assert set(pods) == {"default/web-1", "default/web-2"}          # both endpoints reached
    for t in traces:
        o = t.outcome
        assert o.disposition == "DELIVERED" and o.port == 8080       # targetPort "http" -> 8080
        assert o.seen_source == f"{pod_ip(cluster, 'client-1')}:{t.flow.sport}"   # pod source kept
        assert o.reply.received and o.reply.matches_request          # conntrack undid the DNAT
        assert o.reply.src == f"{svc_ip(cluster, 'web')}:80"
        encap = t.request.steps("ENCAPSULATED")
        if o.pod == "default/web-2":                                 # node-1 -> node-2: VXLAN
            assert len(encap) == 1 and "8472" in encap[0].detail
            assert any(s.detail.startswith("vxlan vni 1") for s in t.request.steps("DECAPSULATED"))
        else:
            assert encap == []                                       # same node: over cni0 only
        dnat = [s for s in t.request.steps("TRANSLATED") if s.detail.startswith("DNAT")]
        assert dnat[0].extra["after"] == f"{pod_ip(cluster, o.pod.split('/')[1])}:8080"
        assert has_rule(t, "cluster IP")


def test_same_seed_same_endpoints():
    seq = []
    for _ in range(2):
        c = scenario_cluster()
        w = Walker(c)
        client = w.host_for("pod/client-1")
        seq.append([t.outcome.pod for t in connect_many(w, client, svc_ip(c, "web"), 80, 12)])
    assert seq[0] == seq[1]


def test_random_choice_is_roughly_uniform(cluster):
    # statistic --probability 0.5 then fall-through: each endpoint 1/2 (xt_statistic.c statistic_mt)
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    n = 400
    pods = Counter(t.outcome.pod for t in connect_many(w, client, svc_ip(cluster, "web"), 80, n))
    assert 150 <= pods["default/web-1"] <= 250, pods      # > 5 sigma from 200 is a bug


def test_hairpin_pod_to_own_service_is_masqueraded(cluster):
    w = Walker(cluster)
    me = w.host_for("pod/web-1")
    for _ in range(40):
        t = w.connect(me, svc_ip(cluster, "web"), 80)
        if t.outcome.pod == "default/web-1":
            break
    else:
        pytest.fail("web-1 never picked itself in 40 tries")
    # KUBE-SEP "-s <ep> -j KUBE-MARK-MASQ" → MASQUERADE to cni0's address (.1 of the podCIDR)
    assert t.outcome.seen_source.split(":")[0] == "10.244.0.1"
    assert has_rule(t, "hairpin")
    assert t.outcome.reply.matches_request


def test_node_to_clusterip_masquerades_to_egress_device(cluster):
    w = Walker(cluster)
    node3 = w.host_for("node/node-3")
    t = w.connect(node3, svc_ip(cluster, "web"), 80)
    assert t.flow.src == "192.168.49.4"                    # source chosen by the default route (eth0)
    assert t.outcome.disposition == "DELIVERED"
    # ! -s 10.244.0.0/16 masquerade rule → MASQUERADE picks flannel.1's 10.244.2.0 (nf_nat_masquerade.c nf_nat_masquerade_ipv4)
    assert t.outcome.seen_source.split(":")[0] == "10.244.2.0"
    assert t.outcome.reply.matches_request
    assert t.request.hops[0].steps[1].action == "CONNTRACK"     # OUTPUT path: conntrack, then nat OUTPUT


# ---------------------------------------------------------------------- NodePort / LB / externalIP
def test_external_to_nodeport_cluster_policy_snat_any_node(cluster):
    w = Walker(cluster)
    ext = w.host_for("external")
    t = w.connect(ext, "192.168.49.4", 30080)              # node-3 has no web pod
    assert t.outcome.disposition == "DELIVERED"
    assert t.outcome.seen_source.split(":")[0] == "10.244.2.0"    # masqueraded by node-3
    assert t.outcome.reply.src == "192.168.49.4:30080" and t.outcome.reply.matches_request
    assert has_rule(t, "nodeport masquerade")


def test_external_to_nodeport_local_policy(cluster):
    w = Walker(cluster)
    ext = w.host_for("external")
    t = w.connect(ext, "192.168.49.2", 30081)              # node-1 has web-1
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/web-1"
    assert t.outcome.seen_source == f"{t.flow.src}:{t.flow.sport}"     # client source preserved
    assert t.outcome.reply.matches_request
    dropped = w.connect(ext, "192.168.49.4", 30081)        # node-3: no local endpoint
    assert dropped.outcome.disposition == "DROPPED"
    assert RULES["no local endpoints"][0] in dropped.outcome.detail
    assert not dropped.outcome.reply.received


def test_external_to_loadbalancer_ip(cluster):
    w = Walker(cluster)
    ext = w.host_for("external")
    lb_ip = cluster.service("default", "web-lb").load_balancer_ips[0]
    nodes = Counter()
    for _ in range(30):
        t = w.connect(ext, lb_ip, 80)
        assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request
        assert t.outcome.reply.src == f"{lb_ip}:80"
        bal = t.request.steps("BALANCED")
        nodes[bal[0].detail.split("-> node ")[1].split()[0]] += 1
    assert set(nodes) == {"node-1", "node-2", "node-3"}     # Cluster policy: every Ready node
    # eTP Local: the LB health check passes only on nodes with an endpoint, source preserved
    lb_local = cluster.service("default", "web-lb-local").load_balancer_ips[0]
    for _ in range(10):
        t = w.connect(ext, lb_local, 80)
        assert t.outcome.disposition == "DELIVERED"
        assert t.outcome.seen_source.split(":")[0] == t.flow.src
        assert "node-3" not in t.request.steps("BALANCED")[0].detail.split("->")[1].split("(")[0]


def test_external_ip(cluster):
    w = Walker(cluster)
    t = w.connect(w.host_for("external"), "203.0.113.50", 80)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.port == 8080
    assert has_rule(t, "external IP")
    assert t.outcome.reply.src == "203.0.113.50:80" and t.outcome.reply.matches_request


# ---------------------------------------------------------------------- service behaviours
def test_session_affinity_sticks(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    pods = {t.outcome.pod for t in connect_many(w, client, svc_ip(cluster, "web-aff"), 80, 20)}
    assert len(pods) == 1
    # a different client may land elsewhere, but also sticks
    other = {t.outcome.pod for t in connect_many(w, w.host_for("pod/client-1"), svc_ip(cluster, "web-aff"), 80, 10)}
    assert len(other) == 1


def test_no_endpoints_is_rejected(cluster):
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-1"), svc_ip(cluster, "empty"), 80)
    assert t.outcome.disposition == "REJECTED"
    assert RULES["no endpoints"][0] in t.outcome.detail
    # REJECT sends ICMP port unreachable: the client sees ECONNREFUSED for its own flow
    r = t.outcome.reply
    assert r.received and "unreachable (port)" in r.summary and r.matches_request


def test_named_target_port_resolves_per_pod(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    seen = {(t.outcome.pod, t.outcome.port) for t in connect_many(w, client, svc_ip(cluster, "multi"), 80, 30)}
    assert seen == {("default/multi-a", 8080), ("default/multi-b", 9090)}


def test_udp_echo_and_reply_unnat(cluster):
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-1"), svc_ip(cluster, "udp-echo"), 53, "udp", payload=b"ping")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.port == 5353
    assert t.outcome.reply.src == f"{svc_ip(cluster, 'udp-echo')}:53" and t.outcome.reply.matches_request
    assert f"pod {t.outcome.pod} got: ping" in t.packets[-1].summary or t.outcome.reply.received


def test_conntrack_listing_shows_the_nat(cluster):
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-1"), svc_ip(cluster, "web"), 80)
    ep = t.outcome.ip
    listing = w.conntrack_listing("node-1")
    line = next(l for l in listing.splitlines() if f"dst={svc_ip(cluster, 'web')}" in l)
    # ORIGINAL to the ClusterIP, REPLY from the endpoint (conntrack -L layout, conntrack(8))
    assert line.startswith("tcp      6 60 SYN_RECV src=10.244.0.5")
    assert f"src={ep} dst=10.244.0.5 sport=8080" in line


def test_udp_stale_entry_flushed_when_endpoint_leaves(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    first = w.connect(client, svc_ip(cluster, "udp-echo"), 53, "udp", sport=40000)
    gone = first.outcome.pod.split("/")[1]
    cluster.delete_pod("default", gone, grace_period=0)
    cluster.advance(1)
    again = w.connect(client, svc_ip(cluster, "udp-echo"), 53, "udp", sport=40000)
    # kube-proxy deleted the entry (reply source no longer serving), so the rules pick a live pod
    assert again.outcome.disposition == "DELIVERED" and again.outcome.pod != first.outcome.pod


def test_udp_stale_entry_without_flush_blackholes():
    c = scenario_cluster()
    w = Walker(c, flush_stale_udp=False)
    client = w.host_for("pod/client-3")
    first = w.connect(client, svc_ip(c, "udp-echo"), 53, "udp", sport=40000)
    c.delete_pod("default", first.outcome.pod.split("/")[1], grace_period=0)
    c.advance(1)
    again = w.connect(client, svc_ip(c, "udp-echo"), 53, "udp", sport=40000)
    # the old binding still DNATs to the deleted pod's IP: nobody answers ARP for it
    assert again.outcome.disposition == "NEIGHBOR_UNREACHABLE"
    assert any("ESTABLISHED" in s.detail or "NEW" in s.detail for s in again.request.steps("CONNTRACK"))


def test_node_failure_after_grace_period(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    cluster.stop_node("node-2")
    before = Counter(t.outcome.disposition for t in connect_many(w, client, svc_ip(cluster, "web"), 80, 30))
    assert before["LOST"] > 0                  # still in the rules: packets go to a dead machine
    cluster.advance(cluster.config.node_monitor_grace_period + 10)
    after = connect_many(w, client, svc_ip(cluster, "web"), 80, 30)
    assert all(t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/web-1" for t in after)


def test_closed_ports_answer_like_the_kernel(cluster):
    w = Walker(cluster)
    client = w.host_for("pod/client-1")
    t = w.connect(client, pod_ip(cluster, "web-2"), 9999)
    assert t.outcome.disposition == "NO_LISTENER" and "R" in t.outcome.reply.summary
    u = w.connect(client, pod_ip(cluster, "web-2"), 9999, "udp")
    assert u.outcome.disposition == "NO_LISTENER" and "unreachable (port)" in u.outcome.reply.summary


def test_icmp_echo_to_pod(cluster):
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-1"), pod_ip(cluster, "web-2"), 0, "icmp")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.received
    assert "echo reply" in t.outcome.reply.summary


def test_host_gw_routes_without_encapsulation():
    c = scenario_cluster(pod_network="host-gw")
    w = Walker(c)
    t = w.connect(w.host_for("pod/client-1"), pod_ip(c, "web-2"), 8080)
    assert t.outcome.disposition == "DELIVERED"
    assert t.request.steps("ENCAPSULATED") == []
    assert any("10.244.1.0/24 via 192.168.49.3 dev eth0" in s.detail for s in t.request.steps("ROUTED"))


def test_ipvs_mode_clusterip_and_nodeport():
    c = scenario_cluster(proxy_mode="ipvs")
    w = Walker(c)
    assert w.mode == "ipvs"
    client = w.host_for("pod/client-1")
    pods = Counter()
    for _ in range(6):
        t = w.connect(client, svc_ip(c, "web"), 80)
        assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request
        assert t.request.steps("IPVS")[0].detail.startswith("LOCAL_IN: dnat")
        pods[t.outcome.pod] += 1
    assert set(pods) == {"default/web-1", "default/web-2"} and max(pods.values()) == 3   # rr
    n = w.connect(w.host_for("external"), "192.168.49.4", 30080)
    assert n.outcome.disposition == "DELIVERED" and n.outcome.reply.matches_request


def test_vxlan_packet_on_the_wire_is_flannel_shaped(cluster):
    w = Walker(cluster)
    end, pt = w.send(w.host_for("pod/client-1"), Packet.udp(pod_ip(cluster, "client-1"),
                                                            pod_ip(cluster, "echo-2"), 40001, 5353, b"x"),
                     capture=True)
    outer = next(Packet(b) for h, i, b, c in pt.pcap if i == "eth0" and h == "node-1")
    assert outer.proto == IPPROTO_UDP and outer.dport == 8472          # flannel default, not 4789
    assert outer.src_ip == "192.168.49.2" and outer.dst_ip == "192.168.49.3"
    assert outer.ttl == 64 and not (outer.buf[6] & 0x40)                # DF not set (drivers/net/vxlan vxlan_xmit_one)
    assert outer.payload[0] == 0x08 and outer.payload[4:7] == b"\x00\x00\x01"   # I flag, VNI 1
    assert outer.checksums_ok()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_pcapng_opens_in_tshark(cluster, tmp_path):
    from netsim.dataplane.pcap import save_traces
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-1"), svc_ip(cluster, "web"), 80, capture=True)
    path = tmp_path / "t.pcapng"
    n = save_traces(str(path), [t])
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name",
                          "-e", "ip.src", "-e", "ip.dst", "-e", "frame.comment"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert len(out) == n == sum(len(p.pcap) for p in t.walks_in_order())    # the final ACK included
    first = out[0].split("\t")
    assert first[0] == "default/client-1/eth0" and first[1] == "10.244.0.5" and first[2] == svc_ip(cluster, "web")
    synack_at_client = out[sum(len(p.pcap) for p in t.packets) - 1].split("\t")
    assert synack_at_client[1] == svc_ip(cluster, "web") and synack_at_client[2] == "10.244.0.5"   # un-NATed
    assert all(len(row.split("\t")) == 4 and row.split("\t")[3] for row in out)   # a comment on each


EXTRA_YAML = """
apiVersion: v1
kind: Service
metadata: {name: web-fw}
spec:
  type: LoadBalancer
  selector: {app: web}
  loadBalancerSourceRanges: [10.10.0.0/16]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-itp}
spec:
  selector: {app: web}
  internalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080}]
"""


def extra_cluster():
    from netsim.control.manifests import load_text
    from walker_cluster import SCENARIO_YAML
    return load_text(SCENARIO_YAML % {"pod_network": "vxlan"} + "---" + EXTRA_YAML, "extra.yaml")


def test_load_balancer_source_ranges_drop_outsiders():
    # proxier_test.go TestOverallIPTablesRules (svc5): KUBE-FW admits the ranges; the rest is dropped in filter KUBE-PROXY-FIREWALL
    c = extra_cluster()
    w = Walker(c)
    lb_ip = c.service("default", "web-fw").load_balancer_ips[0]
    t = w.connect(w.host_for("external"), lb_ip, 80)          # 192.168.49.100 is not in 10.10.0.0/16
    assert t.outcome.disposition == "DROPPED"
    assert "KUBE-PROXY-FIREWALL" in t.outcome.detail
    assert any("KUBE-FW-" in s.extra["chain"] for s in t.request.steps("RULE"))


def test_internal_traffic_policy_local_drops_without_local_endpoint():
    # proxier_test.go TestInternalTrafficPolicy: iTP=Local, no local endpoints but endpoints elsewhere → filter DROP
    c = extra_cluster()
    w = Walker(c)
    ip = c.service("default", "web-itp").cluster_ip
    far = w.connect(w.host_for("pod/client-3"), ip, 80)       # node-3 has no web pod
    assert far.outcome.disposition == "DROPPED" and "has no local endpoints" in far.outcome.detail
    near = [w.connect(w.host_for("pod/client-1"), ip, 80) for _ in range(5)]
    assert all(t.outcome.pod == "default/web-1" for t in near)  # only node-1's own endpoint


def test_same_client_port_to_two_services_on_one_endpoint_clashes(cluster):
    # Two ClusterIPs DNATed to the same pod:port from the same client port give the same reply
    # tuple; the second conntrack insert fails and its SYN is dropped (the client retransmits).
    w = Walker(cluster)
    client = w.host_for("pod/client-1")
    first = w.connect(client, svc_ip(cluster, "web"), 80, sport=50000)
    outcomes = []
    for name in ("web-np", "web-local", "web-lb", "web-lb-local", "web-ext", "web-aff"):
        t = w.connect(client, svc_ip(cluster, name), 80, sport=50000)
        outcomes.append(t.outcome)
    clashed = [o for o in outcomes if o.disposition == "DROPPED"]
    assert clashed and all("insert_failed" in o.detail for o in clashed)
    assert all(o.pod != first.outcome.pod for o in outcomes if o.disposition == "DELIVERED")
