"""What the walker keeps between traces, and that keeping it changes nothing a trace shows.

kube-proxy's only inputs are Services, EndpointSlices and Nodes (pkg/proxy: the proxier's
OnService*/OnEndpointSlice*/OnNode* handlers), and it skips iptables-restore when a sync renders the
same rules. The walker does likewise: a Pod-only change keeps each node's compiled rules; a
rule-relevant change re-renders them lazily and reuses a node's ruleset whose text came out the same.
Trace steps that depend only on a rule, a route or a link are shared between traces; they must
never let one trace's content change another's.
"""
from __future__ import annotations

from netsim.control.cluster import Cluster
from netsim.control.model import ClusterConfig, ContainerPort, Node, Pod, Service, ServicePort
from netsim.dataplane.walker import Walker

from walker_cluster import scenario_cluster


def svc_ip(cluster, name):
    return cluster.service("default", name).cluster_ip


def test_pod_only_change_keeps_compiled_rules_bound_to_the_new_hosts():
    c = scenario_cluster()
    w = Walker(c)
    client = w.host_for("pod/client-1")
    assert w.connect(client, svc_ip(c, "web"), 80).outcome.ok
    nf = w.netfilter("node-1")
    c.add(Pod("idle", labels={"app": "idle"}, node_name="node-1"))     # selected by no Service
    t = w.connect(w.host_for("pod/client-1"), svc_ip(c, "web"), 80)
    assert t.outcome.ok and t.outcome.reply.matches_request
    assert w.netfilter("node-1") is nf                                 # not re-rendered
    # ...but evaluated against the rebuilt host's local table (addrtype LOCAL)
    assert nf.ctx.local_addrs is w.topology.hosts["node-1"].routes.local


def test_service_change_rerenders_and_the_new_service_is_reachable():
    c = scenario_cluster()
    w = Walker(c)
    w.connect(w.host_for("pod/client-1"), svc_ip(c, "web"), 80)
    nf = w.netfilter("node-1")
    c.add(Service("web-new", selector={"app": "web"}, ports=[ServicePort(8081, "TCP", "http", 8080)]))
    t = w.connect(w.host_for("pod/client-1"), svc_ip(c, "web-new"), 8081)
    assert t.outcome.ok and t.outcome.port == 8080
    assert any("default/web-new" in s.extra["rule"] for s in t.request.steps("RULE"))
    assert w.netfilter("node-1") is not nf
    assert "default/web-new" in w.netfilter("node-1").save()


def test_rerender_with_unchanged_text_reuses_the_ruleset():
    # node-3 runs no endpoint of anything: once it goes NotReady (a Node event, so a re-render)
    # node-1's rules come out the same text, and kube-proxy would not reload them
    c = Cluster(ClusterConfig(seed=3, coredns=False))
    c.apply([Node("node-1", "192.168.49.2"), Node("node-2", "192.168.49.3"), Node("node-3", "192.168.49.4"),
             Pod("web-1", labels={"app": "web"}, node_name="node-1", ports=[ContainerPort(8080)]),
             Pod("client", node_name="node-2"),
             Service("web", selector={"app": "web"}, ports=[ServicePort(80, "TCP", None, 8080)])])
    w = Walker(c, "iptables")
    ip = c.service("default", "web").cluster_ip
    assert w.connect(w.host_for("pod/client"), ip, 80).outcome.ok
    nf = w.netfilter("node-1")
    before = nf.save()
    c.stop_node("node-3")
    c.advance(60)
    assert not c.node("node-3").ready
    assert w._rules_dirty                              # the Node event asks for a re-render
    t = w.connect(w.host_for("pod/client"), ip, 80)
    assert t.outcome.ok and t.outcome.pod == "default/web-1"
    assert w.netfilter("node-1").save() == before
    assert w.netfilter("node-1") is nf


def test_shared_steps_do_not_leak_between_traces():
    c = scenario_cluster()
    w = Walker(c)
    client = w.host_for("pod/client-3")
    first = w.connect(client, svc_ip(c, "web"), 80, full=True)
    text, js = first.render(verbose=True), first.to_json()
    for _ in range(25):                                # same rules, routes and links, other packets
        later = w.connect(client, svc_ip(c, "web"), 80, full=True)
        w.connect(w.host_for("external"), "192.168.49.4", 30080)
    assert first.render(verbose=True) == text and first.to_json() == js
    # a node's RULE steps are the same objects in every trace that hits the rule from its second hit on
    # (built once per rule; a first hit's dies with its trace: IptablesNetfilter.run)
    again = w.connect(client, svc_ip(c, "web"), 80)
    first_rules = {(h.host, s.detail): s for h in later.request.hops for s in h.steps if s.action == "RULE"}
    shared = [(h.host, s) for h in again.request.hops for s in h.steps
              if s.action == "RULE" and (h.host, s.detail) in first_rules]
    assert len(shared) >= 4 and all(first_rules[(host, s.detail)] is s for host, s in shared)


def test_translated_step_reads_like_before():
    c = scenario_cluster()
    w = Walker(c)
    t = w.connect(w.host_for("pod/client-1"), svc_ip(c, "web"), 80, sport=40123)
    dnat = t.request.steps("TRANSLATED")[0]
    pod_ip = c.pod("default", t.outcome.pod.split("/")[1]).ip
    assert dnat.detail == f"DNAT dst {svc_ip(c, 'web')}:80 -> {pod_ip}:8080"
    assert dnat.extra == {"before": f"{svc_ip(c, 'web')}:80", "after": f"{pod_ip}:8080"}
    assert dnat.to_dict()["after"] == f"{pod_ip}:8080"
    back = [s for s in t.steps("TRANSLATED") if s.detail.startswith("un-DNAT")]
    assert back and back[-1].extra["after"] == f"{svc_ip(c, 'web')}:80"
    assert t.outcome.reply.summary.startswith(f"tcp {svc_ip(c, 'web')}:80 > ")


def test_vxlan_outer_header_template_builds_what_packet_udp_builds():
    # The walker fills in a per-(node, remote VTEP) outer-header template; the bytes must be exactly the
    # datagram Packet.udp builds for flannel's encapsulation (outer UDP to 8472, DF clear, TTL 64,
    # source port = hash of the inner flow, as the kernel's udp_flow_src_port; the IP ID, which
    # __ip_select_ident draws, taken from the template), checksums valid.
    from netsim.skb.packet import Packet
    from netsim.dataplane.topology import FLANNEL_VXLAN_PORT
    c = scenario_cluster()
    w = Walker(c)
    node = w.topology.hosts["node-3"]
    remote = w.topology.hosts["node-1"].interfaces["eth0"].addr
    for payload in (b"", b"x", b"GET / HTTP/1.1\r\n\r\n"):      # even and odd inner lengths
        inner = Packet.tcp("10.244.2.2", "10.244.0.2", 45000, 8080, flags="PA", seq=7, ack=9, payload=payload)
        outer = w._encap(node, inner, remote)
        prefix = bytes(outer.buf[28:28 + 8 + 14])                   # VXLAN header + inner Ethernet header
        want = Packet.udp(node.interfaces["eth0"].addr, remote, outer.sport, FLANNEL_VXLAN_PORT,
                          payload=prefix + bytes(inner.buf), df=False, ident=outer.buf[4] << 8 | outer.buf[5])
        assert bytes(outer.buf) == bytes(want.buf)
        assert outer.checksums_ok() and outer.tuple() == want.tuple()
        assert bytes(w._decap(outer).buf) == bytes(inner.buf)


_SKB_FIELDS = ("buf", "mark", "iif", "oif", "ct", "ctstate", "ct_reply", "physdev_in", "physdev_out",
               "ipvs_property", "_l4", "_proto", "_src", "_dst", "_sport", "_dport", "_poff")


def test_decap_of_the_last_encap_takes_its_inner_packet_as_parsing_would_give_it():
    # _decap reuses the Packet the last _encap wrapped (when the outer datagram is that one): every
    # field must read as the inner bytes parsed afresh would, with none of the sender's skb state
    # (mark, devices, bridge ports, conntrack, ipvs_property) carried across the tunnel
    from netsim.skb.packet import Packet
    c = scenario_cluster()
    w = Walker(c)
    node = w.topology.hosts["node-3"]
    remote = w.topology.hosts["node-1"].interfaces["eth0"].addr
    for proto in ("tcp", "udp"):
        if proto == "tcp":
            inner = Packet.tcp("10.244.2.2", "10.244.0.2", 45000, 8080, flags="PA", seq=7, ack=9, payload=b"x")
        else:
            inner = Packet.udp("10.244.2.2", "10.244.0.2", 45000, 53, payload=b"query")
        inner.mark, inner.iif, inner.oif, inner.ctstate, inner.ct_reply = 0x4000, "cni0", "flannel.1", "NEW", True
        inner.ct, inner.physdev_in, inner.physdev_out, inner.ipvs_property = object(), "veth1", "veth2", True
        outer = w._encap(node, inner, remote)
        fresh = Packet(outer.buf[outer._l4 + 8 + 8 + 14:])
        fresh.mark = 0
        got = w._decap(outer)
        assert got is inner                                   # taken, not parsed again
        assert [getattr(got, f) for f in _SKB_FIELDS] == [getattr(fresh, f) for f in _SKB_FIELDS]
        again = w._decap(outer)                               # not the last encap any more: parsed
        assert again is not inner and [getattr(again, f) for f in _SKB_FIELDS] == [getattr(fresh, f) for f in _SKB_FIELDS]


def test_rule_steps_are_recorded_in_the_order_the_rules_matched():
    # IptablesNetfilter.run appends each hit's RULE step to the hop as the engine reports it: the
    # SYN to a ClusterIP shows nat PREROUTING -> KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* (DNAT),
    # the chain order of kube-proxy's iptables rules (proxier_test.go TestOverallIPTablesRules).
    c = scenario_cluster()
    w = Walker(c)
    t = w.connect(w.host_for("pod/client-3"), svc_ip(c, "web"), 80)
    node3 = next(h for h in t.request.hops if h.host == "node-3")
    chains = [s.extra["chain"] for s in node3.steps if s.action == "RULE" and s.extra["table"] == "nat"]
    chains = chains[:chains.index("POSTROUTING")]                  # the PREROUTING traversal
    assert chains[:2] == ["PREROUTING", "KUBE-SERVICES"]
    assert chains[2].startswith("KUBE-SVC-") and chains[-1].startswith("KUBE-SEP-")
    assert t.rules_evaluated == sum(p.rules for p in t.packets) > 0
