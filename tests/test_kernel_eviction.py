"""A StatefulSet pod evicted from a stopped node, realised in real namespaces.

Expectations (docs: Force Delete StatefulSet Pods; StatefulSet controller "waiting for Pod to
Terminate"): after the eviction the pod stays Terminating on the unreachable node, keeps its network
namespace and is no endpoint, so the Service has none (kube-proxy REJECTs: ECONNREFUSED, proxier_test.go
TestNoEndpointsReject); a force delete frees the identity, the controller recreates db-0 on a
running node, and the kernel backend replaces the old namespace with a new one there.
"""
from __future__ import annotations

import pytest

from netsim.kernel import netns
from netsim.kernel.build import KernelCluster
from netsim.kernel.probe import Probe, run_probes
from netsim.control.manifests import load_text
from kernel_helpers import unique_name

pytestmark = pytest.mark.kernel

CLUSTER = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: evict}
spec:
  nodes:
    - {name: node-1, ip: 192.168.49.2}
    - {name: node-2, ip: 192.168.49.3}
    - {name: node-3, ip: 192.168.49.4}
  proxyMode: iptables
  seed: 7
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-3
  containers: [{name: client, image: curlimages/curl}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - {name: db, image: postgres, ports: [{containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-rw}
spec:
  selector: {app: db}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_evicted_statefulset_pod_keeps_its_namespace_until_force_deleted(kernel_run_dir):
    cluster = load_text(CLUSTER, "evict.yaml")
    name = unique_name("e")
    kc = KernelCluster.up(cluster, name)
    try:
        client = kc.plan.pods["default/client"]
        vip = cluster.service("default", "db-rw").cluster_ip
        victim = cluster.pod("default", "db-0").node_name
        assert victim != client.node                        # the client's node stays up
        old_ip = cluster.pod("default", "db-0").ip
        assert {r.outcome for r in run_probes([Probe(client.netns, vip, 80)] * 4, timeout=2.0)} == {"answered"}
        cluster.stop_node(victim)
        cluster.advance(360)                                # NotReady at 55, evicted at 355
        assert cluster.pod("default", "db-0").terminating
        changed = kc.reconcile()
        # nothing goes; only the CoreDNS Deployment's replacement (if one was on that node) is added
        assert changed["pods_removed"] == []
        assert all(k.startswith("kube-system/coredns-") for k in changed["pods_added"])
        old_netns = kc.state.pods["default/db-0"].netns
        assert old_netns in netns.listnetns() and kc.state.pods["default/db-0"].node == victim
        # no endpoint is ready: kube-proxy rejects
        assert {r.outcome for r in run_probes([Probe(client.netns, vip, 80)] * 4, timeout=2.0)} == {"refused"}
        cluster.delete_pod("default", "db-0", force=True)
        new = cluster.pod("default", "db-0")
        assert new.node_name not in (None, victim) and new.ip != old_ip
        changed = kc.reconcile()
        assert changed["pods_removed"] == ["default/db-0"] and changed["pods_added"] == ["default/db-0"]
        assert kc.state.pods["default/db-0"].node == new.node_name
        assert kc.state.pods["default/db-0"].ip == new.ip
        rs = run_probes([Probe(client.netns, vip, 80)] * 8, timeout=2.0)
        assert {r.outcome for r in rs} == {"answered"} and {r.pod for r in rs} == {"default/db-0"}
    finally:
        kc.down()
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]
