"""kube-proxy's IPVS proxier per Service shape: virtual servers, real servers, ipsets, iptables.

Expectations come from kubernetes/kubernetes pkg/proxy/ipvs/proxier.go (syncProxyRules,
syncEndpoint, writeIptablesRules) and its proxier_test.go cases, cited per test.
Two nodes: node-1 192.168.49.2 (pods 10.244.0.0/24; cni0 10.244.0.1, flannel.1 10.244.0.0),
node-2 192.168.49.3; web-1 = 10.244.0.2 on node-1, web-2 = 10.244.1.2 on node-2, port 8080.
"""
from __future__ import annotations

import pytest

from ipvs_helpers import cluster_with
from netsim.rules.iptables.proxier_inputs import EndpointInfo, LocalTrafficDetector, ProxierConfig, ServicePortInfo
from netsim.rules.ipvs import kube_ipsets as S
from netsim.rules.ipvs.proxier import KubeProxyIpvs, build, desired_state, node_addresses_for, render

NODE1_ADDRS = ["192.168.49.2", "10.244.0.1", "10.244.0.0"]
EP1, EP2 = "10.244.0.2:8080", "10.244.1.2:8080"


def vss(state) -> dict[str, tuple]:
    """{'TCP 10.96.100.10:80': ('rr', flags, timeout, ['10.244.0.2:8080 w1', ...])}"""
    out = {}
    for vs in state.table:
        out[f"{vs.protocol} {vs.addr}"] = (vs.scheduler, vs.flags, vs.timeout,
                                           sorted(f"{d.addr} w{d.weight}" for d in vs.dests))
    return out


def entries(state, name: str) -> set[str]:
    return set(state.ipsets.get(name).entries())


def svc(spec: str, name: str = "web") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{spec}"


CLUSTER_IP = svc("""\
  clusterIP: 10.96.100.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
""")


def test_node_addresses_are_eth0_cni0_and_flannel():
    c = cluster_with(CLUSTER_IP)
    assert node_addresses_for(c, "node-1") == NODE1_ADDRS


def test_clusterip_service():
    st = build(cluster_with(CLUSTER_IP), "node-1")
    assert vss(st) == {"TCP 10.96.100.10:80": ("rr", 0, 0, [f"{EP1} w1", f"{EP2} w1"])}
    assert st.bound_addresses == ["10.96.100.10"]
    assert entries(st, S.KUBE_CLUSTER_IP) == {"10.96.100.10,tcp:80"}
    assert entries(st, S.KUBE_IPVS_IPS) == {"10.96.100.10"}
    # only the local endpoint is a hairpin candidate (proxier.go: `if !ep.IsLocal() { continue }`)
    assert entries(st, S.KUBE_LOOP_BACK) == {"10.244.0.2,tcp:8080,10.244.0.2"}
    assert not entries(st, S.KUBE_NODE_PORT_TCP)
    # ClusterCIDR local detector: masquerade off-cluster sources only
    assert ('-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" '
            '-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ') in st.iptables
    # node-2 sees the other endpoint as local
    st2 = build(cluster_with(CLUSTER_IP), "node-2")
    assert entries(st2, S.KUBE_LOOP_BACK) == {"10.244.1.2,tcp:8080,10.244.1.2"}


def test_real_servers_are_masquerading_weight_1_and_newest_first():
    st = build(cluster_with(CLUSTER_IP), "node-1")
    vs = st.table.get("TCP", "10.96.100.10", 80)
    assert [(d.addr, d.forward, d.weight) for d in vs.dests] == [(EP2, "Masq", 1), (EP1, "Masq", 1)]


NODEPORT = svc("""\
  type: NodePort
  clusterIP: 10.96.100.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
""")


def test_nodeport_on_every_node_address():
    st = build(cluster_with(NODEPORT), "node-1")
    got = vss(st)
    both = [f"{EP1} w1", f"{EP2} w1"]
    assert got == {"TCP 10.96.100.10:80": ("rr", 0, 0, both),
                   **{f"TCP {ip}:30080": ("rr", 0, 0, both) for ip in NODE1_ADDRS}}
    assert entries(st, S.KUBE_NODE_PORT_TCP) == {"30080"}
    assert st.bound_addresses == ["10.96.100.10"]          # node IPs are never bound to kube-ipvs0
    assert ('-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" '
            '-m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ') in st.iptables
    # explicit node addresses (e.g. a second NIC) each get a virtual server
    st = build(cluster_with(NODEPORT), "node-1", node_addresses=["192.168.49.2", "172.17.0.1"])
    assert {k for k in vss(st) if k.endswith(":30080")} == {"TCP 192.168.49.2:30080", "TCP 172.17.0.1:30080"}


def test_nodeport_etp_local_uses_local_endpoints_and_return_rule():
    c = cluster_with(NODEPORT.replace("  type: NodePort\n", "  type: NodePort\n  externalTrafficPolicy: Local\n"))
    st = build(c, "node-1")
    got = vss(st)
    assert got["TCP 10.96.100.10:80"][3] == [f"{EP1} w1", f"{EP2} w1"]      # ClusterIP: internal policy
    assert got["TCP 192.168.49.2:30080"][3] == [f"{EP1} w1"]                # NodePort: local only
    assert entries(st, S.KUBE_NODE_PORT_LOCAL_TCP) == {"30080"}
    lines = st.iptables.splitlines()
    ret = lines.index('-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port with '
                      'externalTrafficPolicy=local" -m set --match-set KUBE-NODE-PORT-LOCAL-TCP dst -j RETURN')
    masq = next(i for i, l in enumerate(lines) if "--match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ" in l)
    assert ret < masq                                                         # LOCAL before the mark
    # no local endpoint on this node: falls back to cluster endpoints (PR #97081)
    c = cluster_with(NODEPORT.replace("  type: NodePort\n", "  type: NodePort\n  externalTrafficPolicy: Local\n"),
                     pods={"web-2": "node-2"})
    st = build(c, "node-1")
    assert vss(st)["TCP 192.168.49.2:30080"][3] == ["10.244.1.2:8080 w1"]


def test_itp_local_clusterip_has_only_local_or_no_real_servers():
    itp = CLUSTER_IP.replace("  clusterIP:", "  internalTrafficPolicy: Local\n  clusterIP:")
    st = build(cluster_with(itp), "node-1")
    assert vss(st)["TCP 10.96.100.10:80"][3] == [f"{EP1} w1"]
    # TestTestInternalTrafficPolicyE2E: no local endpoints -> the VS has zero real servers
    st = build(cluster_with(itp, pods={"web-2": "node-2"}), "node-1")
    assert vss(st)["TCP 10.96.100.10:80"][3] == []


LB = svc("""\
  type: LoadBalancer
  clusterIP: 10.96.100.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.40}]
""")


def test_loadbalancer_service():
    st = build(cluster_with(LB), "node-1")
    got = vss(st)
    assert "TCP 203.0.113.40:80" in got and got["TCP 203.0.113.40:80"][3] == [f"{EP1} w1", f"{EP2} w1"]
    assert len([k for k in got if k.endswith(":30080")]) == 3
    assert entries(st, S.KUBE_LOAD_BALANCER) == {"203.0.113.40,tcp:80"}
    assert not entries(st, S.KUBE_LOAD_BALANCER_LOCAL)
    assert st.bound_addresses == ["10.96.100.10", "203.0.113.40"]
    # TestLoadBalancer: KUBE-SERVICES order RETURN(127/8), ->KUBE-LOAD-BALANCER, ->MARK-MASQ(CLUSTER-IP),
    # ->KUBE-NODE-PORT, ACCEPT(CLUSTER-IP), ACCEPT(LOAD-BALANCER)
    svc_rules = [l for l in st.restore.nat_rules if l.startswith("-A KUBE-SERVICES")]
    assert [r.split(" -j ")[1] + "|" + (r.split("--match-set ")[1].split()[0] if "--match-set" in r else "")
            for r in svc_rules] == [
        "RETURN|", "KUBE-LOAD-BALANCER|KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ|KUBE-CLUSTER-IP",
        "KUBE-NODE-PORT|", "ACCEPT|KUBE-CLUSTER-IP", "ACCEPT|KUBE-LOAD-BALANCER"]
    assert [l for l in st.restore.nat_rules if l.startswith("-A KUBE-LOAD-BALANCER")] == [
        "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ"]


def test_loadbalancer_etp_local_health_check_port():
    c = cluster_with(LB.replace("  type: LoadBalancer\n", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"
                                "  healthCheckNodePort: 32000\n"), pods={"web-2": "node-2"})
    st = build(c, "node-1")
    assert entries(st, S.KUBE_LOAD_BALANCER_LOCAL) == {"203.0.113.40,tcp:80"}
    assert entries(st, S.KUBE_HEALTH_CHECK_NODE_PORT) == {"32000"}
    assert entries(st, S.KUBE_NODE_PORT_LOCAL_TCP) == {"30080"}
    # TestOnlyLocalNodePorts / TestLoadBalancer: RETURN(KUBE-LOAD-BALANCER-LOCAL) before the mark
    assert [l for l in st.restore.nat_rules if l.startswith("-A KUBE-LOAD-BALANCER ")] == [
        '-A KUBE-LOAD-BALANCER -m comment --comment "Kubernetes service load balancer ip + port with '
        'externalTrafficPolicy=local" -m set --match-set KUBE-LOAD-BALANCER-LOCAL dst,dst -j RETURN',
        "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ"]
    # no local endpoint: LB VS falls back to the remote one (replies will bypass this node)
    assert vss(st)["TCP 203.0.113.40:80"][3] == ["10.244.1.2:8080 w1"]


def test_loadbalancer_source_ranges():
    # TestLoadBalancerSourceRanges: KUBE-PROXY-FIREWALL -> KUBE-SOURCE-RANGES-FIREWALL (FW set);
    # KUBE-SOURCE-RANGES-FIREWALL: RETURN(SOURCE-CIDR), DROP.
    c = cluster_with(LB.replace("  selector:", "  loadBalancerSourceRanges: [198.51.100.0/24]\n  selector:"))
    st = build(c, "node-1")
    assert entries(st, S.KUBE_LOAD_BALANCER_FW) == {"203.0.113.40,tcp:80"}
    assert entries(st, S.KUBE_LOAD_BALANCER_SOURCE_CIDR) == {"203.0.113.40,tcp:80,198.51.100.0/24"}
    assert not entries(st, S.KUBE_LOAD_BALANCER_SOURCE_IP)
    fw = [l for l in st.restore.filter_rules if "FIREWALL" in l.split(" -j ")[0]]
    assert fw == [
        '-A KUBE-PROXY-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port for load '
        'balancer with sourceRange" -m set --match-set KUBE-LOAD-BALANCER-FW dst,dst -j KUBE-SOURCE-RANGES-FIREWALL',
        '-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + source '
        'cidr for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN',
        "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP"]
    # the node IP is outside the ranges: node -> LB VIP is blocked (issue #119656)
    assert ("-A KUBE-IPVS-OUT-FILTER -s 203.0.113.40 -m ipvs --vaddr 203.0.113.40 --vproto tcp --vport 80 -j DROP"
            in st.restore.filter_rules)
    # a range containing the node IP allows node -> VIP via KUBE-LOAD-BALANCER-SOURCE-IP instead
    c = cluster_with(LB.replace("  selector:", "  loadBalancerSourceRanges: [192.168.49.0/24]\n  selector:"))
    st = build(c, "node-1")
    assert entries(st, S.KUBE_LOAD_BALANCER_SOURCE_IP) == {"203.0.113.40,tcp:80,203.0.113.40"}
    assert not [l for l in st.restore.filter_rules if l.startswith("-A KUBE-IPVS-OUT-FILTER")]


EXTERNAL = svc("""\
  clusterIP: 10.96.100.10
  externalIPs: [203.0.113.7, 192.168.49.2]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
""")


def test_external_ips():
    st = build(cluster_with(EXTERNAL), "node-1")
    got = vss(st)
    assert got["TCP 203.0.113.7:80"][3] == [f"{EP1} w1", f"{EP2} w1"]
    assert got["TCP 192.168.49.2:80"][3] == [f"{EP1} w1", f"{EP2} w1"]
    assert entries(st, S.KUBE_EXTERNAL_IP) == {"203.0.113.7,tcp:80", "192.168.49.2,tcp:80"}
    # an externalIP that is already a node address is not bound to kube-ipvs0 (shouldBind)
    assert st.bound_addresses == ["10.96.100.10", "203.0.113.7"]
    # TestAcceptIPVSTraffic: MARK-MASQ(EXTERNAL-IP), ACCEPT(physdev/src-type), ACCEPT(dst-type LOCAL)
    ext = [l for l in st.restore.nat_rules if "KUBE-EXTERNAL-IP dst,dst" in l]
    assert [l.split("dst,dst ", 1)[1] for l in ext] == [
        "-j KUBE-MARK-MASQ",
        "-m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
        "-m addrtype --dst-type LOCAL -j ACCEPT"]


def test_external_ips_etp_local():
    c = cluster_with(EXTERNAL.replace("  clusterIP:", "  externalTrafficPolicy: Local\n  clusterIP:"))
    st = build(c, "node-1")
    assert entries(st, S.KUBE_EXTERNAL_IP_LOCAL) == {"203.0.113.7,tcp:80", "192.168.49.2,tcp:80"}
    assert not entries(st, S.KUBE_EXTERNAL_IP)
    assert vss(st)["TCP 203.0.113.7:80"][3] == [f"{EP1} w1"]
    # the -LOCAL set gets the two ACCEPT rules but no masquerade mark
    ext = [l for l in st.restore.nat_rules if "KUBE-EXTERNAL-IP-LOCAL dst,dst" in l]
    assert len(ext) == 2 and all(l.endswith("-j ACCEPT") for l in ext)


def test_session_affinity_sets_persistence():
    aff = CLUSTER_IP.replace("  clusterIP:", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: "
                             "{clientIP: {timeoutSeconds: 600}}\n  clusterIP:")
    st = build(cluster_with(aff), "node-1")
    vs = st.table.get("TCP", "10.96.100.10", 80)
    assert vs.flags == 0x1 and vs.timeout == 600
    assert "-A -t 10.96.100.10:80 -s rr -p 600" in st.ipvsadm_save()


def test_no_endpoints_virtual_server_without_real_servers():
    st = build(cluster_with(CLUSTER_IP, pods={}), "node-1")
    assert vss(st) == {"TCP 10.96.100.10:80": ("rr", 0, 0, [])}
    assert not entries(st, S.KUBE_LOOP_BACK)


def test_terminating_endpoints_only_as_fallback():
    # Test_EndpointSliceReadyAndTerminatingCluster: ready endpoints win; serving+terminating ones
    # are used only when nothing is ready.
    c = cluster_with(CLUSTER_IP)
    c.delete_pod("default", "web-2")
    st = build(c, "node-1")
    assert vss(st)["TCP 10.96.100.10:80"][3] == [f"{EP1} w1"]
    c.delete_pod("default", "web-1")
    st = build(c, "node-1")
    assert vss(st)["TCP 10.96.100.10:80"][3] == [f"{EP1} w1", f"{EP2} w1"]


def test_mh_scheduler_sets_mh_port_flag():
    st = build(cluster_with(CLUSTER_IP, scheduler="mh"), "node-1")
    assert "-A -t 10.96.100.10:80 -s mh -b mh-port" in st.ipvsadm_save()


def test_headless_and_externalname_services_are_skipped():
    headless = svc("  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80}]\n", name="h")
    ext = svc("  type: ExternalName\n  externalName: example.com\n", name="x")
    st = build(cluster_with(CLUSTER_IP, extra=headless + "---\n" + ext), "node-1")
    assert list(vss(st)) == ["TCP 10.96.100.10:80"]


def test_render_has_three_sections():
    text = render(cluster_with(CLUSTER_IP), "node-1")
    heads = [l for l in text.splitlines() if l.startswith("# ")]
    assert heads == ["# ipvsadm -Sn (node node-1)", "# ipset save (node node-1)", "# iptables-save (node node-1)"]


def test_unknown_node_is_a_clear_error():
    with pytest.raises(ValueError, match="node 'node-9' not found"):
        build(cluster_with(CLUSTER_IP), "node-9")


# --- kube-proxy's own unit-test cases (pkg/proxy/ipvs/proxier_test.go TestNodePortIPv4) -------
def _fake_config() -> ProxierConfig:
    return ProxierConfig(node_name="testHostname", node_ip="100.101.102.103",
                         local_detector=LocalTrafficDetector.by_cidr("10.0.0.0/8"))


def _port(proto: str = "TCP", **kw) -> ServicePortInfo:
    return ServicePortInfo(namespace="ns1", name="svc1", cluster_ip="10.20.30.41", port=80, protocol=proto,
                           port_name="p80", node_port=3001, **kw)


def _vs_map(desired) -> dict[str, list[str]]:
    return {f"{v.protocol} {v.ip}:{v.port}": [f"{ip}:{p}" for ip, p in v.endpoints] for v in desired.virtual_servers}


def test_upstream_nodeport_tcp_two_endpoint_slices():
    # "1 service with node port, has 2 endpoints": the IPv6 slice is ignored by the IPv4 proxier
    d = desired_state([_port()], {"ns1/svc1:p80/TCP": [EndpointInfo("10.180.0.1", 80)]}, _fake_config(),
                      ["100.101.102.103"])
    assert _vs_map(d) == {"TCP 10.20.30.41:80": ["10.180.0.1:80"], "TCP 100.101.102.103:3001": ["10.180.0.1:80"]}


def test_upstream_nodeport_udp_sets_and_chains():
    d = desired_state([_port("UDP")], {"ns1/svc1:p80/UDP": [EndpointInfo("10.180.0.1", 80)]}, _fake_config(),
                      ["100.101.102.103"])
    assert d.ipset_entries[S.KUBE_NODE_PORT_UDP] == {"3001"}
    assert _vs_map(d) == {"UDP 10.20.30.41:80": ["10.180.0.1:80"], "UDP 100.101.102.103:3001": ["10.180.0.1:80"]}


def test_upstream_nodeport_no_endpoints():
    d = desired_state([_port()], {}, _fake_config(), ["100.101.102.103"])
    assert _vs_map(d) == {"TCP 10.20.30.41:80": [], "TCP 100.101.102.103:3001": []}


def test_upstream_sctp_nodeport_on_multiple_node_ips():
    ips = ["100.101.102.103", "100.101.102.104", "100.101.102.105"]
    d = desired_state([_port("SCTP")], {"ns1/svc1:p80/SCTP": [EndpointInfo("10.180.0.1", 80)]}, _fake_config(), ips)
    assert len(d.virtual_servers) == 4
    assert d.ipset_entries[S.KUBE_NODE_PORT_SCTP] == {f"{ip},sctp:3001" for ip in ips}


def test_upstream_sctp_nodeport_etp_local():
    eps = [EndpointInfo("10.180.0.1", 80, is_local=True), EndpointInfo("10.180.1.1", 80)]
    d = desired_state([_port("SCTP", external_policy_local=True)], {"ns1/svc1:p80/SCTP": eps}, _fake_config(),
                      ["100.101.102.103"])
    assert _vs_map(d) == {"SCTP 10.20.30.41:80": ["10.180.0.1:80", "10.180.1.1:80"],
                          "SCTP 100.101.102.103:3001": ["10.180.0.1:80"]}
    assert d.ipset_entries[S.KUBE_NODE_PORT_LOCAL_SCTP] == {"100.101.102.103,sctp:3001"}
    from netsim.rules.ipvs.iptables_rules import write_iptables_rules
    rules = write_iptables_rules({k for k, v in d.ipset_entries.items() if v}, _fake_config(), [])
    np = [l.split("--match-set ")[1] for l in rules.nat_rules if l.startswith("-A KUBE-NODE-PORT")]
    assert np == ["KUBE-NODE-PORT-LOCAL-SCTP-HASH dst,dst -j RETURN", "KUBE-NODE-PORT-SCTP-HASH dst,dst -j KUBE-MARK-MASQ"]


def test_multi_port_service_binds_the_address_once():
    ports = [ServicePortInfo(namespace="ns1", name="svc1", cluster_ip="172.16.55.4", port=p, port_name=f"p{p}")
             for p in (80, 443, 8080)]
    d = desired_state(ports, {}, _fake_config(), ["100.101.102.103"])
    assert d.bind_addresses == ["172.16.55.4"] and len(d.virtual_servers) == 3


def test_sync_keeps_table_and_adds_new_endpoint_at_the_head():
    c = cluster_with(CLUSTER_IP, pods={"web-1": "node-1"})
    kp = KubeProxyIpvs(c, "node-1")
    vs = kp.sync().table.get("TCP", "10.96.100.10", 80)
    from netsim.control.model import ContainerPort, Pod
    c.add(Pod(name="web-3", labels={"app": "web"}, node_name="node-2", ports=[ContainerPort(8080, name="http")]))
    st = kp.sync()
    assert st.table.get("TCP", "10.96.100.10", 80) is vs                 # same kernel object
    assert [d.addr for d in vs.dests] == ["10.244.1.2:8080", EP1]       # new RS inserted at the head


def test_nodeport_addresses_setting_limits_the_node_ips():
    # proxier.go: without MatchAll, nodeIPs = node addresses inside --nodeport-addresses, not loopback
    cfg = ProxierConfig(node_name="n", node_ip="192.168.49.2", node_port_addresses=["192.168.49.0/24"])
    d = desired_state([_port()], {}, cfg, ["192.168.49.2", "10.244.0.1", "127.0.0.1"])
    assert sorted(_vs_map(d)) == ["TCP 10.20.30.41:80", "TCP 192.168.49.2:3001"]


def test_ipset_list_counts_references_from_iptables_rules():
    st = build(cluster_with(CLUSTER_IP), "node-1")
    text = st.ipset_list()
    block = text.split("Name: KUBE-CLUSTER-IP\n", 1)[1].split("\n\n", 1)[0]
    # masquerade rule + ACCEPT in KUBE-SERVICES + RETURN in KUBE-IPVS-FILTER (cf. the real
    # minikube listing: "References: 3")
    assert "Type: hash:ip,port\n" in block and "References: 3\n" in block
    assert block.endswith("Members:\n10.96.100.10,tcp:80")
