"""What the generator-driven fuzz found, each as the minimal example it shrank to.

A defect fixed in this branch is a plain regression test; one still open in another lane is
xfail(strict=True) naming the defect class (the entry in tests/strategies.py OPEN_DEFECTS keeps the
generator away from it meanwhile): when the fix lands the test passes, strict xfail turns that into a
failure, and whoever lands it removes the mark and the OPEN_DEFECTS entry.
"""
from __future__ import annotations

import pytest

from kernel_helpers import scratch_netns
from kernel_oracle import load_all, node_rule_sets
from netsim.control.manifests import load_text

CLUSTER = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: fz}
spec:
  nodes:
  - {name: node-1, ip: 192.168.49.2}
  coredns: {enabled: false}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web}
spec:
  nodeName: node-1
  containers:
  - name: srv
    image: httpd
    ports:
    - {name: http, containerPort: 8080}
"""


def _service(spec: str) -> str:
    return CLUSTER + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s0}\nspec:\n" + spec


@pytest.mark.kernel
def test_zero_cidr_source_range_is_allow_any_and_loads_in_ipvs_mode():
    """loadBalancerSourceRanges [.., 0.0.0.0/0]: kube-proxy treats a zero-masked range as no ranges at all
    (pkg/proxy/serviceport.go newBaseServiceInfo: `slices.ContainsFunc(cidrs, proxyutil.IsZeroCIDR)`), so
    no firewall chain or source-CIDR ipset entry is written; `ipset restore` refuses a /0 entry in
    hash:ip,port,net (kubernetes/kubernetes#132719)."""
    c = load_text(_service("  type: LoadBalancer\n  selector: {app: web}\n"
                           "  ports: [{port: 80, targetPort: 8080}]\n"
                           "  loadBalancerSourceRanges: [192.168.49.100/32, 0.0.0.0/0]\n"))
    from netsim.rules.iptables.proxier import render
    assert "KUBE-FW-" not in render(c, "node-1")
    with scratch_netns("netsim-fzf", "iptables-restore", "ipset") as ns:
        rejected = load_all(ns, node_rule_sets(c, "zero-cidr", ["node-1"]))
    assert not rejected, "\n".join(map(str, rejected))


def test_tcp_and_udp_ports_of_one_number_share_a_node_port():
    """Found by the generator (fixed by proxier-fidelity, defect 5): the API server allocates node ports
    per port number, so an explicit nodePort given to the TCP and UDP ports of one number is accepted."""
    c = load_text(_service("  type: NodePort\n  selector: {app: web}\n  ports:\n"
                           "  - {name: a, port: 53, protocol: TCP, targetPort: 8080, nodePort: 30053}\n"
                           "  - {name: b, port: 53, protocol: UDP, targetPort: 8080, nodePort: 30053}\n"))
    assert [p.node_port for p in c.service("default", "s0").ports] == [30053, 30053]


def test_icmp_error_undoes_a_masquerade_that_kept_the_address():
    """Found by the verify fuzz: a node sends UDP to a ClusterIP whose endpoint on another node has no
    listener. kube-proxy masquerades (not from the pod network), MASQUERADE keeps the node's address and
    --random-fully changes the port; the pod's ICMP port unreachable must get the quoted datagram's
    source port restored (nf_nat_icmp_reply_translation), so the client's socket sees ECONNREFUSED."""
    from netsim.dataplane.walker import Walker
    c = load_text(CLUSTER.replace("  - {name: node-1, ip: 192.168.49.2}\n",    # host-gw: the node's own
                                  "  - {name: node-1, ip: 192.168.49.2}\n  - {name: node-2, ip: 192.168.49.3}\n"
                                  "  podNetwork: host-gw\n")                     # address is the source
                  .replace("nodeName: node-1", "nodeName: node-2")
                  + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s0}\nspec:\n  selector: {app: web}\n"
                    "  ports: [{port: 443, protocol: UDP, targetPort: 8080}]\n")
    w = Walker(c)
    t = w.connect(w.host_for("node/node-1"), c.service("default", "s0").cluster_ip, 443, "udp")
    assert t.outcome.disposition == "NO_LISTENER"
    assert t.outcome.reply.received and t.outcome.reply.matches_request


def test_a_pod_manifest_with_a_deletion_timestamp_is_terminating():
    """The generator's terminating pods: a pod as `kubectl get -o yaml` shows it while it is being deleted
    runs on its node, is Terminating, and its endpoint is terminating and serving (ready false)."""
    c = load_text(CLUSTER.replace("  name: web-0\n", "  name: web-0\n  deletionTimestamp: '2026-01-01T00:00:00Z'\n"
                                  "  deletionGracePeriodSeconds: 30\n")
                  + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s0}\nspec:\n  selector: {app: web}\n"
                    "  ports: [{port: 80, targetPort: 8080}]\n")
    pod = c.pod("default", "web-0")
    assert pod.terminating and pod.ip and pod.phase == "Running"
    (ep,) = [e for s in c.endpoint_slices("default", "s0") for e in s.endpoints]
    assert (ep.ready, ep.serving, ep.terminating) == (False, True, True)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_no_arp_answer_on_the_clients_own_host_may_time_out_first(proto):
    """Found by the verify fuzz: a hand-written endpoint at a free pod address on the client node. The
    emulator says NEIGHBOR_UNREACHABLE at once; the kernel reports EHOSTUNREACH only after neighbour
    resolution gives up (3 probes, 1 s apart), so a client with a shorter timeout times out. verify
    accepts both, and nothing else."""
    from netsim.kernel.probe import Probe, ProbeResult
    from netsim.kernel.verify import FlowSpec, Prediction, compare, emulator_outcome
    from netsim.dataplane.walker import Walker
    c = load_text(CLUSTER + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s0}\nspec:\n"
                  f"  ports: [{{port: 80, protocol: {proto.upper()}}}]\n---\n"
                  "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s0-manual\n"
                  "  labels: {kubernetes.io/service-name: s0}\naddressType: IPv4\n"
                  "endpoints: [{addresses: [10.244.0.200], nodeName: node-1}]\n"
                  f"ports: [{{port: 80, protocol: {proto.upper()}}}]\n")
    w = Walker(c)
    vip = c.service("default", "s0").cluster_ip
    t = w.connect(w.host_for("node/node-1"), vip, 80, proto)
    assert t.outcome.disposition == "NEIGHBOR_UNREACHABLE"
    pred = Prediction(outcomes={emulator_outcome(t, "node-1")})
    spec = FlowSpec("node/node-1", "", "ns", vip, 80, proto.upper(), "ClusterIP default/s0:80")
    verdict = {k: compare(spec, ProbeResult(Probe("ns", vip, 80, proto.upper()), k), pred)[0]
               for k in ("timeout", "unreachable", "refused", "answered")}
    assert verdict == {"timeout": True, "unreachable": True, "refused": False, "answered": False}
