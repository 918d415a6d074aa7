"""The data-plane scenario list of tests/test_walker_scenarios.py, run with kube-proxy in IPVS mode.

Parity tests (``@both_modes``) run one body in iptables and IPVS mode and assert what a user sees
either way: where the request lands, the source the pod sees, the reply's source. IPVS-only tests
assert what differs and what the trace shows instead of KUBE-SVC/KUBE-SEP rule traversal: the
virtual server hit, the scheduler's choice, and a constant, small set of ipset-matching rules.

Where expectations come from:
* kube-proxy pkg/proxy/ipvs/proxier.go (read via the stored kubernetes/kubernetes copies):
  - syncEndpoint: with a Local policy and no local endpoints the virtual server falls back to the
    cluster endpoints ("https://github.com/kubernetes/kubernetes/pull/97081 Allow access from
    local PODs even if no local endpoints exist. Traffic from an external source will be routed
    but the reply will have the POD address and will be discarded.");
  - writeIptablesRules: constant rules matching ipsets (KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
    for hairpin, KUBE-CLUSTER-IP / KUBE-NODE-PORT-TCP / KUBE-EXTERNAL-IP -> KUBE-MARK-MASQ), no
    per-Service chains and no REJECT rule for Services without endpoints;
  - the KUBE-CLUSTER-IP "src,dst" rule's comment: "The kube dummy interface has all service VIPs
    assigned which results in the service VIP being picked as the source IP to reach a VIP";
  - syncProxyRules ends with conntrack.CleanStaleEntries (UDP) as the iptables proxier does.
* kube-proxy pkg/proxy/ipvs/proxier.go syncService / syncEndpoint (virtual servers per Service, rr
  default, real servers weight 1 Masq), the kernel's ip_vs_ctl.c __ip_vs_update_dest (destinations
  added at the list head so rr starts at the newest), ip_vs_core.c ip_vs_leave (no endpoints: ICMP
  port unreachable and drop), pkg/proxy/ipvs/graceful_termination.go (graceful termination).
* Linux net/netfilter/ipvs/ip_vs_core.c (>= 5.9, "ipvs: queue delayed work to expire no
  destination connections if expire_nodest_conn=1" and "ipvs: allow connection reuse for
  unconfirmed conntrack"): connections to a deleted real server are flushed, so a UDP flow that
  reuses its source port is scheduled afresh.

Cluster: tests/walker_cluster.py (web-1 10.244.0.2 on node-1, web-2 10.244.1.3 on node-2 after a CoreDNS replica). The
emulated proxier adds real servers in IP:port order (kube-proxy: Go set order, proxier.go syncEndpoint) and
the kernel inserts each at the head of the list, so a two-endpoint virtual server lists
[web-2, web-1] and rr on every node starts with web-2, then alternates exactly. Each node has its
own IPVS state (its own rr position). ipvsadm -Ln sorts destinations for display.
"""
from __future__ import annotations

from collections import Counter

import pytest

from netsim.skb.packet import Packet, ip2int
from netsim.dataplane.walker import Walker

from walker_cluster import SCENARIO_YAML, scenario_cluster

both_modes = pytest.mark.parametrize("mode", ["iptables", "ipvs"])

WEB1, WEB2 = "default/web-1", "default/web-2"


def svc_ip(cluster, name):
    return cluster.service("default", name).cluster_ip


def pod_ip(cluster, name):
    return cluster.pod("default", name).ip


def walker(mode: str = "ipvs"):
    c = scenario_cluster(proxy_mode=mode)
    w = Walker(c)
    assert w.mode == mode
    return c, w


def ipvs_steps(t):
    return [s.detail for s in t.request.steps("IPVS")]


def rule_lines(t):
    return [s.extra["rule"] for s in t.request.steps("RULE")]


def ipvsadm(w, node: str) -> str:
    return w.ipvs(node).state.ipvsadm_list()


def real_servers(w, node: str, vip: str, port: int, proto: str = "TCP") -> list[tuple[str, int]]:
    """(address, weight) of one virtual server, in kernel list order (ipvsadm -Ln order)."""
    vs = w.ipvs(node).state.table.get(proto, vip, port)
    assert vs is not None, f"no virtual server {vip}:{port}/{proto} on {node}"
    return [(d.addr, d.weight) for d in vs.dests]


# ---------------------------------------------------------------------- ClusterIP
@both_modes
def test_pod_to_clusterip_same_and_cross_node_parity(mode):
    c, w = walker(mode)
    client = w.host_for("pod/client-1")
    traces = [w.connect(client, svc_ip(c, "web"), 80) for _ in range(20)]
    assert {t.outcome.pod for t in traces} == {WEB1, WEB2}
    for t in traces:
        o = t.outcome
        assert o.disposition == "DELIVERED" and o.port == 8080
        assert o.seen_source == f"{pod_ip(c, 'client-1')}:{t.flow.sport}"     # no SNAT pod -> ClusterIP
        assert o.reply.received and o.reply.matches_request
        assert o.reply.src == f"{svc_ip(c, 'web')}:80"
        assert bool(t.request.steps("ENCAPSULATED")) == (o.pod == WEB2)      # node-1 -> node-2: VXLAN


def test_clusterip_rr_alternates_exactly_and_each_node_schedules_alone():
    c, w = walker()
    vip = svc_ip(c, "web")
    # kernel list [web-2, web-1] (newest first): rr starts at the head, then alternates
    assert real_servers(w, "node-1", vip, 80) == [("10.244.1.3:8080", 1), ("10.244.0.2:8080", 1)]
    seq = [w.connect(w.host_for("pod/client-1"), vip, 80).outcome.pod for _ in range(6)]
    assert seq == [WEB2, WEB1] * 3
    # node-3's IPVS has its own rr position: its first connection also goes to the list head
    assert w.connect(w.host_for("pod/client-3"), vip, 80).outcome.pod == WEB2
    # ipvsadm -Ln on node-1 (ipvsadm sorts destinations for display): SYN_RECV counts as active
    # (tcp_state_active_table), 3 each
    listing = ipvsadm(w, "node-1")
    block = listing.split(f"TCP  {vip}:80 rr\n", 1)[1].splitlines()[:2]
    assert [line.split() for line in block] == [["->", "10.244.0.2:8080", "Masq", "1", "3", "0"],
                                                ["->", "10.244.1.3:8080", "Masq", "1", "3", "0"]]


def test_trace_shows_virtual_server_and_scheduler_instead_of_rule_traversal():
    c, w = walker()
    vip = svc_ip(c, "web")
    t = w.connect(w.host_for("pod/client-1"), vip, 80)
    rules = rule_lines(t)
    # no per-Service chains at all: no KUBE-SVC-/KUBE-SEP- jump, no nat-table DNAT
    assert not any("KUBE-SVC-" in r or "KUBE-SEP-" in r or "-j DNAT" in r for r in rules)
    assert not [s for s in t.request.steps("TRANSLATED") if s.detail.startswith("DNAT")]
    # the packet is accepted by the ipset rule, routed to INPUT (the VIP is on kube-ipvs0) ...
    assert "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT" in rules
    assert any(s.detail == f"{vip} is local -> INPUT" for s in t.request.steps("ROUTED"))
    # ... and IPVS at LOCAL_IN names the virtual server, the scheduler and the real server
    [step] = ipvs_steps(t)
    assert step == (f"LOCAL_IN: dnat {vip}:80 -> 10.244.1.3:8080 "
                    f"({vip}:80/TCP: rr scheduled 10.244.1.3:8080)")
    assert t.request.steps("IPVS")[0].extra == {"before": f"{vip}:80", "after": "10.244.1.3:8080"}


def test_rules_evaluated_per_first_packet_do_not_grow_with_services():
    # iptables: KUBE-SERVICES grows by one rule per Service port and is walked linearly; IPVS mode
    # has a constant rule set (ipset matches) and a hash lookup of the virtual server.
    extra = "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: filler-{i}}}\n"
        f"spec:\n  selector: {{app: web}}\n  ports: [{{port: {1000 + i}, targetPort: 8080}}]\n"
        for i in range(40))
    from netsim.control.manifests import load_text

    def first_packet_rules(mode: str, more: bool) -> int:
        text = SCENARIO_YAML % {"pod_network": "vxlan"} + (extra if more else "")
        c = load_text(text.replace("proxyMode: iptables", f"proxyMode: {mode}"), "bench.yaml")
        w = Walker(c)
        t = w.connect(w.host_for("pod/client-1"), svc_ip(c, "web"), 80)
        assert t.outcome.disposition == "DELIVERED"
        return t.request.rules

    ipt_small, ipt_big = first_packet_rules("iptables", False), first_packet_rules("iptables", True)
    ipvs_small, ipvs_big = first_packet_rules("ipvs", False), first_packet_rules("ipvs", True)
    assert ipvs_small == ipvs_big                         # O(1) in the number of Services
    assert ipt_big > ipt_small                            # the linear KUBE-SERVICES walk
    assert ipvs_big < ipt_big


def test_hairpin_pod_to_own_service_is_masqueraded_by_the_loopback_ipset():
    c, w = walker()
    me = w.host_for("pod/web-1")
    first, second = (w.connect(me, svc_ip(c, "web"), 80) for _ in range(2))
    assert first.outcome.pod == WEB2 and second.outcome.pod == WEB1       # rr: the 2nd is itself
    t = second
    # KUBE-LOOP-BACK holds "10.244.0.2,tcp:8080,10.244.0.2": MASQUERADE to cni0's 10.244.0.1, as the
    # iptables mode's KUBE-SEP "-s <ep> -j KUBE-MARK-MASQ" does
    assert t.outcome.seen_source.split(":")[0] == "10.244.0.1"
    assert ('-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for '
            'solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE') in rule_lines(t)
    assert t.outcome.reply.matches_request and t.outcome.reply.src == f"{svc_ip(c, 'web')}:80"
    # the first one (to web-2 on node-2) is not hairpin: the source is kept
    assert first.outcome.seen_source.split(":")[0] == pod_ip(c, "web-1")


@both_modes
def test_node_to_clusterip_is_masqueraded_to_the_egress_device(mode):
    c, w = walker(mode)
    t = w.connect(w.host_for("node/node-3"), svc_ip(c, "web"), 80)
    assert t.outcome.disposition == "DELIVERED"
    assert t.outcome.seen_source.split(":")[0] == "10.244.2.0"     # flannel.1 of node-3
    assert t.outcome.reply.matches_request and t.outcome.reply.src == f"{svc_ip(c, 'web')}:80"
    if mode == "ipvs":
        # locally generated: IPVS schedules at LOCAL_OUT; the mark comes from the ipset rule
        assert ipvs_steps(t)[0].startswith(f"LOCAL_OUT: dnat {svc_ip(c, 'web')}:80 -> ")
        assert any("KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ" in r and "! -s 10.244.0.0/16" in r
                   for r in rule_lines(t))


def test_node_to_clusterip_source_address_is_the_vip_in_ipvs_mode():
    # kube-proxy proxier.go writeIptablesRules: "The kube dummy interface has all service VIPs
    # assigned which results in the service VIP being picked as the source IP to reach a VIP."
    c, w = walker()
    t = w.connect(w.host_for("node/node-3"), svc_ip(c, "web"), 80)
    assert t.flow.src == svc_ip(c, "web")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request


# ---------------------------------------------------------------------- NodePort / LB / externalIP
@both_modes
def test_external_to_nodeport_cluster_policy_snat_on_any_node(mode):
    c, w = walker(mode)
    ext = w.host_for("external")
    for node_ip, egress in (("192.168.49.4", "10.244.2.0"), ("192.168.49.2", None)):
        t = w.connect(ext, node_ip, 30080)
        assert t.outcome.disposition == "DELIVERED"
        src = t.outcome.seen_source.split(":")[0]
        assert src != t.flow.src                                     # masqueraded, never the client
        if egress:
            assert src == egress
        assert t.outcome.reply.src == f"{node_ip}:30080" and t.outcome.reply.matches_request
        if mode == "ipvs":
            assert "-j KUBE-MARK-MASQ" in " ".join(r for r in rule_lines(t) if "KUBE-NODE-PORT-TCP dst" in r)
            assert f"({node_ip}:30080/TCP: rr scheduled" in ipvs_steps(t)[0]


@both_modes
def test_external_to_nodeport_local_policy_on_a_node_with_an_endpoint(mode):
    c, w = walker(mode)
    t = w.connect(w.host_for("external"), "192.168.49.2", 30081)    # node-1 has web-1
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == WEB1
    assert t.outcome.seen_source == f"{t.flow.src}:{t.flow.sport}"   # client source preserved
    assert t.outcome.reply.matches_request
    if mode == "ipvs":
        # only the local endpoint is a real server on node-1
        assert real_servers(w, "node-1", "192.168.49.2", 30081) == [("10.244.0.2:8080", 1)]
        assert any("KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN" in r for r in rule_lines(t))


def test_nodeport_local_policy_without_local_endpoint_differs_between_modes():
    # iptables mode: KUBE-EXT-... "has no local endpoints" DROP.
    c, w = walker("iptables")
    dropped = w.connect(w.host_for("external"), "192.168.49.4", 30081)
    assert dropped.outcome.disposition == "DROPPED" and "has no local endpoints" in dropped.outcome.detail
    # IPVS mode (PR #97081): node-3's virtual server falls back to the cluster endpoints, the request
    # reaches a pod un-SNATed, and the pod's node answers the client directly from the pod address
    # -- the reply does not match the client's connection and is discarded.
    c, w = walker("ipvs")
    t = w.connect(w.host_for("external"), "192.168.49.4", 30081)
    assert real_servers(w, "node-3", "192.168.49.4", 30081) == [("10.244.1.3:8080", 1), ("10.244.0.2:8080", 1)]
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == WEB2
    assert t.outcome.seen_source == f"{t.flow.src}:{t.flow.sport}"   # no masquerade (Local policy)
    r = t.outcome.reply
    assert r.src == f"{pod_ip(c, 'web-2')}:8080" and not r.matches_request
    reply_hosts = [h.host for h in t.packets[1].hops]
    assert "node-3" not in reply_hosts and reply_hosts[-1] == "external"  # never un-DNATed by node-3


@both_modes
def test_external_to_loadbalancer_ip(mode):
    c, w = walker(mode)
    ext = w.host_for("external")
    lb_ip = c.service("default", "web-lb").load_balancer_ips[0]
    nodes = Counter()
    for _ in range(30):
        t = w.connect(ext, lb_ip, 80)
        assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request
        assert t.outcome.reply.src == f"{lb_ip}:80"
        nodes[t.request.steps("BALANCED")[0].detail.split("-> node ")[1].split()[0]] += 1
        if mode == "ipvs":
            assert f"({lb_ip}:80/TCP: rr scheduled" in ipvs_steps(t)[0]
    assert set(nodes) == {"node-1", "node-2", "node-3"}
    lb_local = c.service("default", "web-lb-local").load_balancer_ips[0]
    for _ in range(10):
        t = w.connect(ext, lb_local, 80)
        assert t.outcome.disposition == "DELIVERED"
        assert t.outcome.seen_source.split(":")[0] == t.flow.src                 # source preserved
        assert t.outcome.reply.matches_request


@both_modes
def test_external_ip(mode):
    c, w = walker(mode)
    t = w.connect(w.host_for("external"), "203.0.113.50", 80)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.port == 8080
    assert t.outcome.reply.src == "203.0.113.50:80" and t.outcome.reply.matches_request
    if mode == "ipvs":
        assert "(203.0.113.50:80/TCP: rr scheduled" in ipvs_steps(t)[0]
        assert any("--match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ" in r for r in rule_lines(t))
        # bound to kube-ipvs0 (not a node address), so it routes to INPUT like a ClusterIP
        assert "203.0.113.50" in w.ipvs("node-1").state.bound_addresses


# ---------------------------------------------------------------------- service behaviours
@both_modes
def test_session_affinity_sticks(mode):
    c, w = walker(mode)
    ip = svc_ip(c, "web-aff")
    for client in ("pod/client-3", "pod/client-1"):
        traces = [w.connect(w.host_for(client), ip, 80) for _ in range(12)]
        assert len({t.outcome.pod for t in traces}) == 1
        assert all(t.outcome.disposition == "DELIVERED" for t in traces)
        if mode == "ipvs":
            # ip_vs_sched_persist: the first connection creates the template, later ones reuse it
            assert "new persistence template, timeout 10800s" in ipvs_steps(traces[0])[0]
            assert all("persistence template (ClientIP affinity, timeout 10800s)" in ipvs_steps(t)[0]
                       for t in traces[1:])
    if mode == "ipvs":
        assert f"TCP  {ip}:80 rr persistent 10800" in ipvsadm(w, "node-3")


def test_no_endpoints_ipvs_answers_port_unreachable_without_a_reject_rule():
    c, w = walker()
    ip = svc_ip(c, "empty")
    t = w.connect(w.host_for("pod/client-1"), ip, 80)
    # the virtual server exists with no real server (proxier.go syncEndpoint; ip_vs_core.c ip_vs_leave) ...
    assert real_servers(w, "node-1", ip, 80) == []
    assert f"TCP  {ip}:80 rr\n" in ipvsadm(w, "node-1")
    # ... and kube-proxy writes no per-Service REJECT ("has no endpoints") rule in IPVS mode: the
    # only REJECT is the KUBE-IPVS-FILTER guard for ports that are no Service's on a VIP
    rules = w.ipvs("node-1").state.iptables
    assert "has no endpoints" not in rules and "default/empty" not in rules
    assert [r for r in rules.splitlines() if "-j REJECT" in r] == \
        ["-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT"]
    # ip_vs_leave: no destination -> ICMP port unreachable from the VIP, packet dropped
    assert t.outcome.disposition == "REJECTED"
    assert t.outcome.detail == f"{ip}:80/TCP: rr: no destination available (ICMP port unreachable)"
    assert ipvs_steps(t) == [f"LOCAL_IN: reject ({t.outcome.detail})"]
    r = t.outcome.reply
    assert r.received and "unreachable (port)" in r.summary and r.src == ip and r.matches_request
    # same for the user as iptables mode's REJECT (ECONNREFUSED), different mechanism in the trace
    c2, w2 = walker("iptables")
    t2 = w2.connect(w2.host_for("pod/client-1"), svc_ip(c2, "empty"), 80)
    assert t2.outcome.disposition == "REJECTED" and '"default/empty has no endpoints"' in t2.outcome.detail
    assert "unreachable (port)" in t2.outcome.reply.summary and not t2.request.steps("IPVS")


def test_named_target_port_resolves_per_pod_and_alternates():
    c, w = walker()
    client = w.host_for("pod/client-3")
    seen = [(t.outcome.pod, t.outcome.port) for t in
            (w.connect(client, svc_ip(c, "multi"), 80) for _ in range(4))]
    # real servers 10.244.0.3:8080 (multi-a) and 10.244.1.4:9090 (multi-b); list head = multi-b
    assert seen == [("default/multi-b", 9090), ("default/multi-a", 8080)] * 2
    assert real_servers(w, "node-3", svc_ip(c, "multi"), 80) == [("10.244.1.4:9090", 1), ("10.244.0.3:8080", 1)]


@both_modes
def test_udp_echo_and_reply_unnat(mode):
    c, w = walker(mode)
    ip = svc_ip(c, "udp-echo")
    t = w.connect(w.host_for("pod/client-1"), ip, 53, "udp", payload=b"ping")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.port == 5353
    assert t.outcome.reply.src == f"{ip}:53" and t.outcome.reply.matches_request
    if mode == "ipvs":
        assert ipvs_steps(t)[0].startswith(f"LOCAL_IN: dnat {ip}:53 -> ")
        assert f"({ip}:53/UDP: rr scheduled" in ipvs_steps(t)[0]


@both_modes
def test_udp_flow_reusing_its_port_moves_to_a_live_pod_when_its_endpoint_leaves(mode):
    c, w = walker(mode)
    client = w.host_for("pod/client-3")
    ip = svc_ip(c, "udp-echo")
    first = w.connect(client, ip, 53, "udp", sport=40000)
    gone = first.outcome.pod
    c.delete_pod("default", gone.split("/")[1], grace_period=0)
    c.advance(1)
    again = w.connect(client, ip, 53, "udp", sport=40000)
    assert again.outcome.disposition == "DELIVERED" and again.outcome.pod not in (None, gone)
    if mode == "ipvs":
        # UDP real servers are deleted at once (graceful_termination.go, PR #77802); the kernel's
        # expire_nodest_conn flush removed the old IPVS connection, so this is a new schedule
        assert "rr scheduled" in ipvs_steps(again)[0]
        assert w.ipvs("node-3").state.graceful == []


@both_modes
def test_node_failure_after_grace_period(mode):
    c, w = walker(mode)
    client = w.host_for("pod/client-3")
    ip = svc_ip(c, "web")
    c.stop_node("node-2")
    before = Counter(w.connect(client, ip, 80).outcome.disposition for _ in range(10))
    assert before["LOST"] > 0                    # still programmed: SYNs go to a dead machine
    if mode == "ipvs":
        assert before == Counter({"LOST": 5, "DELIVERED": 5})      # rr: exactly every other one
    c.advance(c.config.node_monitor_grace_period + 10)
    after = [w.connect(client, ip, 80) for _ in range(10)]
    assert all(t.outcome.disposition == "DELIVERED" and t.outcome.pod == WEB1 for t in after)
    if mode == "ipvs":
        # web-2 is no longer schedulable: deleted, or quiesced at weight 0 while its (dead)
        # connections drain (kube-proxy graceful termination)
        assert all(w_ == 0 for a, w_ in real_servers(w, "node-3", ip, 80) if a == "10.244.1.3:8080")


def test_reply_is_un_natted_by_ipvs_and_conntrack_tracks_it():
    c, w = walker()
    vip = svc_ip(c, "web")
    t = w.connect(w.host_for("pod/client-1"), vip, 80)
    ep = t.outcome.ip
    # the reply's source is rewritten by ip_vs_out_hook on node-1 (FORWARD), not by conntrack NAT
    reply_node1 = [s for h in t.packets[1].hops if h.host == "node-1" for s in h.steps]
    assert [s.detail.split(" (")[0] for s in reply_node1 if s.action == "IPVS"] == \
        [f"FORWARD: un-dnat {ep}:8080 -> {vip}:80"]
    assert not [s for s in reply_node1 if s.action == "TRANSLATED"]
    assert t.outcome.reply.src == f"{vip}:80" and t.outcome.reply.matches_request
    # net.ipv4.vs.conntrack=1: ip_vs_update_conntrack set the entry's reply tuple to the endpoint
    line = next(l for l in w.conntrack_listing("node-1").splitlines() if f"dst={vip}" in l)
    assert line.startswith(f"tcp      6 60 SYN_RECV src={pod_ip(c, 'client-1')} dst={vip}")
    assert f"src={ep} dst={pod_ip(c, 'client-1')} sport=8080" in line
    # and IPVS's own connection table has the connection (ipvsadm -Lnc)
    conns = w.ipvs("node-1").kp.node.conns.all()
    assert [(cp.describe()) for cp in conns] == \
        [f"TCP {pod_ip(c, 'client-1')}:{t.flow.sport} -> {vip}:80 -> {ep}:8080 SYN_RECV"]


def test_later_packets_of_an_ipvs_connection_go_through_ipvs():
    c, w = walker()
    vip = svc_ip(c, "web")
    t = w.connect(w.host_for("pod/client-1"), vip, 80, full=True)
    assert t.outcome.disposition == "DELIVERED" and "200" in t.outcome.reply.summary
    data = t.packets[2]                                    # the HTTP request after the SYN-ACK
    assert data.direction == "request"
    node1 = [s for h in data.hops if h.host == "node-1" for s in h.steps]
    assert not [s for s in node1 if s.action == "TRANSLATED" and s.detail.startswith("DNAT")]
    assert any(s.action == "IPVS" and "existing connection" in s.detail for s in node1)
    [cp] = w.ipvs("node-1").kp.node.conns.all()
    assert cp.state_name == "ESTABLISHED"


# ---------------------------------------------------------------------- rules/ipvs fix pinned
def _node_with_two_udp_dests():
    from netsim.rules.ipvs.datapath import IpvsNode
    from netsim.rules.ipvs.table import IpvsTable
    table = IpvsTable()
    vs = table.add_service("UDP", "10.96.0.53", 53)
    vs.add_dest(ip2int("10.244.0.4"), 5353)
    vs.add_dest(ip2int("10.244.1.4"), 5353)          # list head: scheduled first by rr
    return IpvsNode(table), vs


class _Ct:
    def __init__(self, confirmed: bool) -> None:
        self.confirmed = confirmed


def test_packet_on_a_connection_to_a_deleted_real_server_is_rescheduled_unless_its_conntrack_is_old():
    # ip_vs_in_hook "Check the server status" (kernel >= 5.9): expire the connection; NF_DROP only
    # when ip_vs_conn_uses_old_conntrack() (the skb's conntrack entry is confirmed), else schedule
    node, vs = _node_with_two_udp_dests()
    p = Packet.udp("10.244.2.4", "10.96.0.53", 40000, 53, b"q")
    assert node.local_in(p, 0.0).action == "dnat" and p.dst_ip == "10.244.1.4"
    vs.del_dest(ip2int("10.244.1.4"), 5353)            # no flush run yet
    old = Packet.udp("10.244.2.4", "10.96.0.53", 40000, 53, b"q")
    old.ct = _Ct(confirmed=True)
    dec = node.local_in(old, 1.0)
    assert dec.action == "drop" and "old conntrack entry" in dec.reason
    assert node.conns.all() == []                       # expired all the same
    # the same situation with a fresh (unconfirmed) conntrack entry: scheduled afresh at once
    node, vs = _node_with_two_udp_dests()
    node.local_in(Packet.udp("10.244.2.4", "10.96.0.53", 40000, 53, b"q"), 0.0)
    vs.del_dest(ip2int("10.244.1.4"), 5353)
    new = Packet.udp("10.244.2.4", "10.96.0.53", 40000, 53, b"q")
    new.ct = _Ct(confirmed=False)
    dec = node.local_in(new, 1.0)
    assert dec.action == "dnat" and dec.new_conn and new.dst_ip == "10.244.0.4"


def test_deleting_a_real_server_flushes_its_connections():
    # ip_vs_expire_nodest_conn_flush, queued by __ip_vs_del_dest when expire_nodest_conn=1
    node, vs = _node_with_two_udp_dests()
    node.local_in(Packet.udp("10.244.2.4", "10.96.0.53", 40000, 53, b"q"), 0.0)    # -> 10.244.1.4
    node.local_in(Packet.udp("10.244.2.4", "10.96.0.53", 40001, 53, b"q"), 0.0)    # -> 10.244.0.4
    vs.del_dest(ip2int("10.244.1.4"), 5353)
    assert node.expire_nodest_conns() == 1
    assert [cp.describe() for cp in node.conns.all()] == \
        ["UDP 10.244.2.4:40001 -> 10.96.0.53:53 -> 10.244.0.4:5353 UDP"]


def test_vip_answers_only_service_ports_in_ipvs_mode():
    # A VIP on kube-ipvs0 is a local address: KUBE-IPVS-FILTER RETURNs for known VIP,proto:port
    # entries and REJECTs any other NEW packet to a KUBE-IPVS-IPS address (kube-proxy proxier.go
    # writeIptablesRules, "kubernetes ipvs access filter"), so a wrong port or a ping is refused.
    c, w = walker()
    ip = svc_ip(c, "web")
    client = w.host_for("pod/client-1")
    for port, proto in ((81, "tcp"), (0, "icmp")):
        t = w.connect(client, ip, port, proto)
        assert t.outcome.disposition == "REJECTED" and not t.request.steps("IPVS")
        assert t.outcome.detail.startswith("filter:INPUT (KUBE-IPVS-FILTER #6) -A KUBE-IPVS-FILTER -m conntrack "
                                           "--ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT")
        assert "unreachable (port)" in t.outcome.reply.summary and t.outcome.reply.src == ip
    # iptables mode: a ClusterIP is no address of the node; nothing matches, it is routed away
    c2, w2 = walker("iptables")
    t2 = w2.connect(w2.host_for("pod/client-1"), svc_ip(c2, "web"), 81)
    assert t2.outcome.disposition != "DELIVERED" and not t2.outcome.reply.received


def test_new_syn_on_a_quiesced_real_servers_connection():
    # ip_vs_in_hook, is_new_conn + expire_nodest_conn + weight 0 (kube-proxy's graceful termination):
    # resched; NF_DROP when the skb's conntrack entry is confirmed, else scheduled at once
    from netsim.rules.ipvs.datapath import IpvsNode
    from netsim.rules.ipvs.table import IpvsTable
    for confirmed, action, dst in ((False, "dnat", "10.244.0.2"), (True, "drop", None)):
        table = IpvsTable()
        vs = table.add_service("TCP", "10.96.0.80", 80)
        vs.add_dest(ip2int("10.244.0.2"), 8080)
        vs.add_dest(ip2int("10.244.1.2"), 8080)
        node = IpvsNode(table)
        node.local_in(Packet.tcp("10.244.2.4", "10.96.0.80", 40000, 80, flags="S"), 0.0)   # -> 10.244.1.2
        vs.edit_dest(ip2int("10.244.1.2"), 8080, 0)                                      # quiesced
        syn = Packet.tcp("10.244.2.4", "10.96.0.80", 40000, 80, flags="S")
        syn.ct = _Ct(confirmed)
        dec = node.local_in(syn, 1.0)
        assert dec.action == action
        if dst:
            assert dec.new_conn and syn.dst_ip == dst
        else:
            assert "old conntrack entry" in dec.reason and node.conns.all() == []
