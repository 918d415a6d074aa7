"""NodePorts are allocated per service port *number*, as kube-apiserver allocates them.

kubernetes/kubernetes pkg/registry/core/service/storage/alloc.go ``initNodePorts``: a map from
service port number to nodePort; the first port of a number takes the nodePort any port of that
number requests (``findRequestedNodePort``) or the next free one, a later port of the same number
(another protocol) that omits it reuses it. pkg/apis/core/validation ``ValidateService``: a
duplicate nodePort is a (protocol, nodePort) pair. portallocator errors: "provided port is already
allocated", "provided port is not in the valid range. The range of valid ports is 30000-32767".

Regression: a TCP and a UDP port 53 got two different nodePorts, and a TCP and UDP port that both
named nodePort 30053 were refused as "already allocated".
"""
from __future__ import annotations

import pytest

from netsim.control.cluster import ClusterError
from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text
from netsim.rules.iptables.proxier import render
from netsim.rules.ipvs.proxier import build
from kernel_helpers import iptables_restore_in_scratch_netns

HEAD = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: np}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}]
  proxyMode: %s
  coredns: {enabled: false}
---
apiVersion: v1
kind: Pod
metadata: {name: dns-1, labels: {app: dns}}
spec:
  containers: [{name: c, image: coredns, ports: [{containerPort: 53, protocol: UDP}, {containerPort: 53}]}]
---
"""


def service(ports: str, typ: str = "NodePort", extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: dns}}\nspec:\n  type: {typ}\n{extra}"
            f"  selector: {{app: dns}}\n  ports:\n{ports}")


def node_ports(ports: str, typ: str = "NodePort", extra: str = "", mode: str = "iptables"):
    c = load_text(HEAD % mode + service(ports, typ, extra), source="app.yaml")
    return c, [(p.name, p.protocol, p.port, p.node_port) for p in c.service("default", "dns").ports]


def test_tcp_and_udp_of_one_number_share_an_allocated_node_port() -> None:
    _, got = node_ports("  - {name: dns-udp, port: 53, protocol: UDP}\n  - {name: dns-tcp, port: 53, protocol: TCP}\n")
    (_, _, _, udp), (_, _, _, tcp) = got
    assert udp == tcp and 30000 <= udp <= 32767


def test_second_port_that_omits_it_reuses_the_requested_node_port() -> None:
    _, got = node_ports("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n  - {name: b, port: 53, protocol: UDP}\n")
    assert [g[3] for g in got] == [30053, 30053]


def test_first_port_that_omits_it_takes_a_later_ports_request() -> None:
    # findRequestedNodePort scans every port of the same number
    _, got = node_ports("  - {name: a, port: 53, protocol: UDP}\n  - {name: b, port: 53, protocol: TCP, nodePort: 30053}\n")
    assert [g[3] for g in got] == [30053, 30053]


def test_same_node_port_named_by_both_protocols_is_allowed() -> None:
    _, got = node_ports("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n"
                        "  - {name: b, port: 53, protocol: UDP, nodePort: 30053}\n")
    assert [g[3] for g in got] == [30053, 30053]


def test_different_node_ports_for_one_number_are_both_allocated() -> None:
    c, got = node_ports("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n"
                        "  - {name: b, port: 53, protocol: UDP, nodePort: 30054}\n")
    assert [g[3] for g in got] == [30053, 30054]
    with pytest.raises(ManifestError, match=r"spec.ports\[0\].nodePort: Invalid value: 30054: provided port is "
                                            r"already allocated"):
        load_text(HEAD % "iptables" + service("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n"
                                              "  - {name: b, port: 53, protocol: UDP, nodePort: 30054}\n")
                  + "---\n" + service("  - {port: 80, nodePort: 30054}\n").replace("name: dns", "name: web"),
                  source="app.yaml")


def test_same_node_port_on_other_port_numbers_is_refused_by_the_allocator() -> None:
    # validation passes (different protocols), but port 81 asks the allocator for 30080 again
    with pytest.raises(ManifestError) as err:
        node_ports("  - {name: a, port: 80, protocol: TCP, nodePort: 30080}\n"
                   "  - {name: b, port: 81, protocol: UDP, nodePort: 30080}\n")
    assert str(err.value).endswith("Service default/dns: spec.ports[1].nodePort: Invalid value: 30080: "
                                   "provided port is already allocated")


def test_duplicate_node_port_is_reported_by_the_allocator() -> None:
    # storage beginCreate allocates node ports before ValidateService runs: port 81 asks for 30080 again
    with pytest.raises(ManifestError) as err:
        node_ports("  - {name: a, port: 80, nodePort: 30080}\n  - {name: b, port: 81, nodePort: 30080}\n")
    assert str(err.value).endswith("spec.ports[1].nodePort: Invalid value: 30080: provided port is already allocated")


def test_duplicate_node_port_on_one_port_number_is_a_validation_error() -> None:
    # the allocator shares it (same number), ValidateService then sees the (protocol, nodePort) pair twice
    with pytest.raises(ManifestError) as err:
        node_ports("  - {name: a, port: 80, nodePort: 30080}\n  - {name: b, port: 80, nodePort: 30080}\n")
    assert str(err.value) == "app.yaml: document 3 (Service 'dns'): spec.ports[1].nodePort: Duplicate value: 30080"


def test_node_port_outside_the_range_is_reported_by_the_allocator() -> None:
    with pytest.raises(ManifestError, match=r"spec.ports\[0\].nodePort: Invalid value: 70000: provided port is not "
                                            r"in the valid range. The range of valid ports is 30000-32767$"):
        node_ports("  - {port: 80, nodePort: 70000}\n")


def test_load_balancer_without_node_port_allocation_keeps_only_requested_ones() -> None:
    # shouldAllocateNodePorts false: a port without nodePort is skipped, even if its number has one
    _, got = node_ports("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n  - {name: b, port: 53, protocol: UDP}\n",
                        typ="LoadBalancer", extra="  allocateLoadBalancerNodePorts: false\n")
    assert [g[3] for g in got] == [30053, None]


def test_shared_node_port_is_released_once_with_its_service() -> None:
    c, _ = node_ports("  - {name: a, port: 53, protocol: TCP, nodePort: 30053}\n  - {name: b, port: 53, protocol: UDP}\n")
    c.delete_service("default", "dns")
    from netsim.control.model import Service, ServicePort
    c.add(Service("again", type="NodePort", ports=[ServicePort(53, node_port=30053)]))
    assert c.service("default", "again").ports[0].node_port == 30053
    with pytest.raises(ClusterError, match="provided port is already allocated"):
        c.add(Service("twice", type="NodePort", ports=[ServicePort(53, protocol="UDP", node_port=30053)]))


SHARED = "  - {name: a, port: 53, protocol: UDP}\n  - {name: b, port: 53, protocol: TCP, nodePort: 30053}\n"


def test_proxiers_serve_the_shared_node_port_for_both_protocols() -> None:
    c, _ = node_ports(SHARED)
    text = render(c, "node-1")
    for proto in ("udp", "tcp"):
        assert any(line.startswith("-A KUBE-NODEPORTS") and f"-m {proto} -p {proto} --dport 30053 -j KUBE-EXT-"
                   in line for line in text.splitlines()), proto
    c, _ = node_ports(SHARED, mode="ipvs")
    state = build(c, "node-1")
    assert {str(vs) for vs in state.table if vs.port == 30053} >= {"192.168.49.2:30053/UDP", "192.168.49.2:30053/TCP"}
    assert "30053" in state.ipset_save().split("KUBE-NODE-PORT-UDP", 1)[1]


@pytest.mark.kernel
def test_shared_node_port_rule_set_loads_with_iptables_restore() -> None:
    c, _ = node_ports(SHARED)
    saved = iptables_restore_in_scratch_netns(render(c, "node-1"), "netsim-np")
    shared = [line for line in saved.splitlines() if line.startswith("-A KUBE-NODEPORTS") and "--dport 30053" in line]
    assert {"udp", "tcp"} == {p for line in shared for p in ("udp", "tcp") if f"-p {p} " in line}
