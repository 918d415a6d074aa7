"""hostPort: the CNI portmap plugin's nat rules on the pod's node (containernetworking/plugins
plugins/meta/portmap), the scheduler's NodePorts filter, the API server's checks; the seed's
`docker run -p 16379:6379 redis` as a Pod, traced from outside and curled in real namespaces."""
from __future__ import annotations

import pytest

import netsim
from netsim.rules import portmap
from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text

REDIS = """apiVersion: v1
kind: Pod
metadata: {name: redis, labels: {app: redis}}
spec:
  containers:
  - name: redis
    image: redis
    ports: [{containerPort: 6379, hostPort: 16379}]
---
"""
CLIENT = """apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: NODE, containers: [{name: c, image: busybox}]}
---
"""

# plugins/meta/portmap/portmap_iptables_test.go "generates a correct standard container chain"
UPSTREAM_ID = ("icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9c"
               "eu0daez5hashee8ooYai5wa3y")
UPSTREAM_MAPPINGS = [portmap.PortMapping(8080, 80, "tcp"), portmap.PortMapping(8081, 80, "tcp"),
                     portmap.PortMapping(8080, 81, "udp"), portmap.PortMapping(8082, 82, "udp"),
                     portmap.PortMapping(8083, 83, "tcp", "192.168.0.2"), portmap.PortMapping(8084, 84, "tcp", "0.0.0.0"),
                     portmap.PortMapping(8085, 85, "tcp", "2001:db8:a::1"), portmap.PortMapping(8086, 86, "tcp", "::")]


def test_chain_names_are_upstreams():
    assert portmap.chain_name("testNetName", UPSTREAM_ID) == "CNI-DN-bfd599665540dd91d5d28"
    assert portmap.chain_name("test", UPSTREAM_ID) == "CNI-DN-67e92b96e692a494b6b85"
    # pkg/utils/utils_test.go MustFormatChainNameWithPrefix
    assert portmap.chain_name("test", "1234", "PREFIX-") == "CNI-PREFIX-2bbe0c48b91a7d1b8"
    assert portmap.chain_name("testalongnamethatdoesnotmakesense", "1234", "PREFIX-") == "CNI-PREFIX-374f33fe84ab0ed84"


def test_dnat_rules_are_upstreams():
    comment = f'"dnat name: \\"test\\" id: \\"{UPSTREAM_ID}\\""'
    s = portmap.sandbox_rules("test", UPSTREAM_ID, "10.0.0.2/24", UPSTREAM_MAPPINGS, conditions=["-a", "b"])
    chain = "CNI-DN-67e92b96e692a494b6b85"
    assert s.entry_rules == [
        f"-m comment --comment {comment} -m multiport -p tcp --destination-ports 8080,8081,8083,8084,8085,8086 -a b -j {chain}",
        f"-m comment --comment {comment} -m multiport -p udp --destination-ports 8080,8082 -a b -j {chain}"]
    mark, local = "-s 10.0.0.2/24 -j CNI-HOSTPORT-SETMARK", "-s 127.0.0.1 -j CNI-HOSTPORT-SETMARK"
    expected = []
    for base, to in [("-p tcp --dport 8080", "10.0.0.2:80"), ("-p tcp --dport 8081", "10.0.0.2:80"),
                     ("-p udp --dport 8080", "10.0.0.2:81"), ("-p udp --dport 8082", "10.0.0.2:82"),
                     ("-p tcp --dport 8083 -d 192.168.0.2", "10.0.0.2:83"), ("-p tcp --dport 8084", "10.0.0.2:84")]:
        expected += [f"{base} {mark}", f"{base} {local}", f"{base} -j DNAT --to-destination {to}"]
    assert s.rules == expected
    no_snat = portmap.sandbox_rules("test", UPSTREAM_ID, "10.0.0.2/24", UPSTREAM_MAPPINGS, snat=False)
    assert no_snat.rules == [r for r in expected if "SETMARK" not in r]
    # 16 ports of one protocol: multiport takes 15 a rule (utils.go splitPortList)
    many = portmap.sandbox_rules("n", "id", "10.0.0.2/24", [portmap.PortMapping(9000 + i, 80, "tcp") for i in range(16)])
    assert [r.split("--destination-ports ")[1].split()[0].count(",") + 1 for r in many.entry_rules] == [15, 1]


def test_node_text_gets_the_chains_kube_proxy_first():
    c = load_text(REDIS)
    pod = c.pod("default", "redis")
    from netsim.rules.iptables.proxier import render
    text = portmap.with_host_ports(render(c, pod.node_name), c, pod.node_name)
    nat = text.split("*nat\n", 1)[1].split("COMMIT", 1)[0].splitlines()
    pre = [ln for ln in nat if ln.startswith("-A PREROUTING ")]
    assert pre == ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                   "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"]
    post = [ln for ln in nat if ln.startswith("-A POSTROUTING ")]
    assert post[0] == '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ'
    chain = portmap.chain_name("cbr0", portmap.sandbox_id(pod))
    assert f"-A {chain} -p tcp --dport 16379 -j DNAT --to-destination {pod.ip}:6379" in nat
    assert "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE" in nat
    other = next(n.name for n in c.nodes() if n.name != pod.node_name)
    assert "CNI-HOSTPORT" not in portmap.with_host_ports(render(c, other), c, other)


@pytest.mark.parametrize("mode", ["iptables", "ipvs", "nftables"])
def test_external_client_reaches_the_pod_through_its_nodes_host_port(mode):
    em = netsim.load(REDIS, mode=mode)
    pod = em.cluster.pod("default", "redis")
    node_ip = em.cluster.node(pod.node_name).ip
    t = em.trace("external", f"{node_ip}:16379")
    assert t.outcome.disposition == "DELIVERED" and (t.outcome.pod, t.outcome.ip, t.outcome.port) == (
        "default/redis", pod.ip, 6379)
    assert t.outcome.seen_source.startswith(em.cluster.config.external_client_ip or "192.168.49.")
    text = t.render()
    assert "nat:CNI-HOSTPORT-DNAT" in text and "-j DNAT --to-destination" in text, text
    other = next(n for n in em.cluster.nodes() if n.name != pod.node_name)
    assert em.trace("external", f"{other.ip}:16379").outcome.disposition == "NO_LISTENER"


def test_hairpin_from_a_pod_on_the_same_node_is_masqueraded():
    node = "node-2"
    em = netsim.load(REDIS.replace("spec:\n", "spec:\n  nodeName: node-2\n", 1) + CLIENT.replace("NODE", node))
    assert em.cluster.pod("default", "redis").node_name == node
    node_ip = em.cluster.node(node).ip
    t = em.trace("pod/client", f"{node_ip}:16379")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/redis"
    client_ip = em.cluster.pod("default", "client").ip
    # CNI-DN: -s <pod subnet> → SETMARK 0x2000 → CNI-HOSTPORT-MASQ: the server sees the node, not the client
    assert not t.outcome.seen_source.startswith(client_ip + ":")


def test_scheduler_keeps_host_ports_apart():
    pods = "".join(REDIS.replace("name: redis, labels", f"name: redis-{i}, labels") for i in range(3))
    c = load_text(pods)
    placed = {p.name: p.node_name for p in c.pods("default")}
    assert {placed["redis-0"], placed["redis-1"]} == {"node-2", "node-3"}
    assert placed["redis-2"] is None and c.pod("default", "redis-2").phase == "Pending"
    (ev,) = [e for e in c.event_log if e.reason == "FailedScheduling"]
    assert ev.message == ("0/3 nodes are available: 1 node(s) had untolerated taint "
                          "{node-role.kubernetes.io/control-plane: }, 2 node(s) didn't have free ports for the "
                          "requested pod ports.")


@pytest.mark.parametrize("ports, extra, message", [
    ("[{containerPort: 80, hostPort: 8080}]", "  hostNetwork: true\n",
     "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"),
    ("[{containerPort: 80, hostPort: 8080}, {containerPort: 81, hostPort: 8080}]", "",
     'spec.containers[0].ports[1].hostPort: Duplicate value: "/TCP/8080"'),
    ("[{containerPort: 80, hostPort: 70000}]", "", "spec.containers[0].ports[0].hostPort: Invalid value: 70000"),
    ("[{containerPort: 80, hostPort: 8080, hostIP: 300.1.1.1}]", "", "spec.containers[0].ports[0].hostIP"),
])
def test_bad_host_ports_are_refused(ports, extra, message):
    with pytest.raises(ManifestError) as e:
        load_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{extra}"
                  f"  containers: [{{name: c, image: nginx, ports: {ports}}}]\n", "p.yaml")
    assert message in str(e.value)


def test_host_network_pod_ports_default_to_host_ports():
    c = load_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n"
                  "  containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]\n")
    assert c.pod("default", "p").ports[0].host_port == 80           # SetDefaults_Pod


@pytest.mark.kernel
def test_host_port_curled_in_real_namespaces(kernel_run_dir):
    from kernel_helpers import require_root_and_tools, unique_name
    from netsim.kernel import netns
    from netsim.kernel.build import KernelCluster
    from netsim.rules.iptables.kernel import save
    require_root_and_tools("iptables-restore", "curl")
    c = netsim.load(REDIS).cluster
    pod = c.pod("default", "redis")
    node_ip = c.node(pod.node_name).ip
    kc = KernelCluster.up(c, unique_name("t"))
    try:
        r = netns.run(kc.plan.edge.external_netns, ["curl", "-s", "-m", "5", f"http://{node_ip}:16379/"], check=False)
        assert r.returncode == 0 and r.stdout.startswith("pod=default/redis ") and f"addr={pod.ip}:6379 " in r.stdout
        saved = save(kc.plan.nodes[pod.node_name].netns, counters=False)
        assert "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in saved
        other = next(n for n in c.nodes() if n.name != pod.node_name)
        r = netns.run(kc.plan.edge.external_netns, ["curl", "-s", "-m", "5", f"http://{other.ip}:16379/"], check=False)
        assert r.returncode == 7                        # refused: nothing maps 16379 there
    finally:
        kc.down()
