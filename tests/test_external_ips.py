"""externalIPs, inside and outside the node network: one model in the emulator and the kernel backend
(issue 11 defect 4, found again by the generator-driven verify fuzz).

The model (README "External traffic"): an externalIP is no host's address — Kubernetes leaves routing
it to the cluster administrator (docs: Service, "External IPs"), and kube-proxy DNATs it on whatever
node it reaches. The admin's static route: the router and the external client send every externalIP
via the edge host, also when it lies inside the node network (nobody answers ARP for it there), and
the edge passes it, unchanged, to one fixed node (the first Ready node by name), with no health check.
So with externalTrafficPolicy Local and no local endpoint on that node, kube-proxy drops it there.
"""
from __future__ import annotations

import pytest

from netsim.control.manifests import load_text
from netsim.dataplane.walker import Walker

CLUSTER = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: eip}
spec:
  nodes:
  - {name: node-1, ip: 192.168.49.2}
  - {name: node-2, ip: 192.168.49.3}
  coredns: {enabled: false}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web}
spec:
  nodeName: node-2
  containers:
  - name: srv
    image: httpd
    ports:
    - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: inside}
spec:
  selector: {app: web}
  externalIPs: [192.168.49.50]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: outside}
spec:
  selector: {app: web}
  externalIPs: [203.0.113.10]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  selector: {app: web}
  externalIPs: [192.168.49.51]
  externalTrafficPolicy: Local
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture
def cluster():
    return load_text(CLUSTER, source="external-ips.yaml")


@pytest.mark.parametrize("vip", ["192.168.49.50", "203.0.113.10"])
def test_external_ip_goes_via_the_edge_to_the_first_node(cluster, vip):
    w = Walker(cluster)
    t = w.connect(w.host_for("external"), vip, 80)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/web-0"
    assert t.outcome.reply.matches_request and t.outcome.reply.src == f"{vip}:80"
    hosts = [h.host for h in t.request.hops]
    assert "loadbalancer" in hosts and hosts.index("loadbalancer") < hosts.index("node-1")
    assert not t.request.steps("BALANCED") or all("node-1" in s.detail for s in t.request.steps("BALANCED"))


def test_external_ip_with_local_policy_is_dropped_on_the_routed_node_without_an_endpoint(cluster):
    w = Walker(cluster)
    for _ in range(5):          # always the same node: a static route, no seeded choice
        t = w.connect(w.host_for("external"), "192.168.49.51", 80)
        assert t.outcome.disposition == "DROPPED" and t.outcome.host == "node-1"


def test_kernel_plan_routes_external_ips_to_the_same_node(cluster):
    from netsim.kernel.plan import build_plan
    plan = build_plan(cluster, "eip")
    assert {vip: ip for vip, ip in plan.edge.vip_routes.items()} == {
        "192.168.49.50": "192.168.49.2", "203.0.113.10": "192.168.49.2", "192.168.49.51": "192.168.49.2"}


@pytest.mark.kernel
def test_kernel_agrees_flow_by_flow(kernel_run_dir):
    """Real connections from the external client (and a pod) to every externalIP agree with the emulator."""
    from kernel_helpers import unique_name
    from netsim.kernel.verify import run_verify
    c = load_text(CLUSTER + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n"
                  "  nodeName: node-1\n  containers: [{name: c, image: curlimages/curl}]\n", source="eip.yaml")
    report = run_verify(c, unique_name("e"), flows=60, seed=4)
    assert report.disagreements == [], "\n".join(report.lines())
    external = [r for r in report.results if r.spec.client == "external" and r.spec.target.startswith("externalIP")]
    got = {(r.spec.dst, r.outcome[0]) for r in external}
    assert ("192.168.49.50", "delivered") in got and ("203.0.113.10", "delivered") in got
    assert ("192.168.49.51", "dropped") in got
