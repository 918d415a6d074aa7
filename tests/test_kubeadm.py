"""kubeadm's cluster: the control-plane node (labels, NoSchedule taint), taints and tolerations in the
scheduler, CoreDNS's tolerations, replicas spread over nodes."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.control.docfields import ManifestError
from netsim.control.manifests import load, load_text
from netsim.control.model import Taint, Toleration
from netsim.control.scheduler import untolerated_taint

CP = "node-role.kubernetes.io/control-plane"


def cluster_doc(nodes: str = "[{name: node-1}, {name: node-2}, {name: node-3}]") -> str:
    return f"apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {{name: k}}\nspec:\n  nodes: {nodes}\n---\n"


def deployment(name: str, replicas: int, tolerations: str = "") -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: nginx}}]
{tolerations}---
"""


def test_first_node_is_the_tainted_control_plane():
    c = load(["example:kubectl-httpd"])
    cp = c.node("node-1")
    assert cp.control_plane and cp.labels[CP] == "" and \
        cp.labels["node.kubernetes.io/exclude-from-external-load-balancers"] == ""
    assert [str(t) for t in cp.taints] == [f"{CP}:NoSchedule"]
    assert not c.node("node-2").taints and not c.node("node-2").control_plane
    assert {p.node_name for p in c.pods("default")} == {"node-2", "node-3"}     # one replica per worker
    r = CliRunner().invoke(cli, ["get", "nodes", "-f", "example:kubectl-httpd"])
    assert [ln.split()[:3] for ln in r.output.splitlines()[1:]] == [
        ["node-1", "Ready", "control-plane"], ["node-2", "Ready", "<none>"], ["node-3", "Ready", "<none>"]]


def test_coredns_tolerates_the_control_plane_as_kubeadm_deploys_it():
    c = load(["example:kubectl-httpd"])
    dns = [p for p in c.pods("kube-system") if p.labels.get("k8s-app") == "kube-dns"]
    assert dns[0].tolerations == [Toleration("CriticalAddonsOnly", "Exists"), Toleration(CP, "Equal", "", "NoSchedule")]
    assert all(untolerated_taint(p, c.node("node-1")) is None for p in dns)
    assert len({p.node_name for p in dns}) == 2                 # the two replicas on two nodes


def test_toleration_lets_a_pod_onto_the_control_plane_and_node_name_bypasses_taints():
    tol = "      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n"
    c = load_text(cluster_doc() + deployment("everywhere", 3, tol) + deployment("workers", 4) + """
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec: {nodeName: node-1, containers: [{name: c, image: busybox}]}
""")
    assert {p.node_name for p in c.pods() if p.labels.get("app") == "everywhere"} == {"node-1", "node-2", "node-3"}
    assert {p.node_name for p in c.pods() if p.labels.get("app") == "workers"} == {"node-2", "node-3"}
    assert c.pod("default", "pinned").node_name == "node-1" and c.pod("default", "pinned").phase == "Running"


def test_all_nodes_tainted_leaves_pods_pending_with_the_schedulers_message():
    nodes = ("[{name: a}, {name: b, taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}, "
             "{name: c, labels: {disk: hdd}}]")
    text = cluster_doc(nodes) + """apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {nodeSelector: {disk: ssd}, containers: [{name: c, image: nginx}]}
"""
    c = load_text(text)
    assert c.pod("default", "p").phase == "Pending" and c.pod("default", "p").node_name is None
    ev = [e for e in c.event_log if e.reason == "FailedScheduling"]
    assert ev[0].message == ("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
                             "1 node(s) had untolerated taint {dedicated: gpu}, "
                             "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.")
    c = load_text(cluster_doc(nodes) + "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
                  "spec: {containers: [{name: c, image: nginx}]}\n")
    assert c.pod("default", "p").node_name == "c"
    c = load_text(cluster_doc("[{name: a}, {name: b, taints: [{key: dedicated, value: gpu, effect: NoSchedule}]}]")
                  + "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n")
    ev = [e for e in c.event_log if e.reason == "FailedScheduling"]
    assert ev[0].message == ("0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, "
                             "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.")


def test_single_node_and_explicit_roles_and_taints():
    c = load_text(cluster_doc("[{name: solo}]") + deployment("w", 2))
    assert c.node("solo").control_plane and c.node("solo").taints == []
    assert {p.node_name for p in c.pods("default")} == {"solo"}
    c = load_text(cluster_doc("[{name: a}, {name: b, role: control-plane}, {name: c, role: worker}]"))
    assert [n.name for n in c.nodes() if n.control_plane] == ["b"] and c.node("b").taints == [Taint(CP)]
    c = load_text(cluster_doc("[{name: a, taints: []}, {name: b}]") + deployment("w", 4))
    assert c.node("a").control_plane and c.node("a").taints == []
    assert {p.node_name for p in c.pods("default")} == {"a", "b"}


@pytest.mark.parametrize("tol, message", [
    ("[{operator: Equal, value: x}]", "operator must be Exists when `key` is empty"),
    ("[{key: a, operator: Exists, value: x}]", "value must be empty when `operator` is 'Exists'"),
    ("[{key: a, operator: Matches}]", "Unsupported value: 'Matches'"),
    ("[{key: a, effect: NoRun}]", "Unsupported value: 'NoRun'"),
])
def test_bad_tolerations_are_refused_in_one_line(tol, message):
    with pytest.raises(ManifestError) as e:
        load_text(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {{tolerations: {tol}, "
                  "containers: [{name: c}]}\n", "p.yaml")
    assert str(e.value).startswith("p.yaml: document 1 (Pod 'p'): spec.tolerations[0].") and message in str(e.value)


def test_bad_node_role_and_taint():
    with pytest.raises(ManifestError, match=r"spec.nodes\[0\].role: Unsupported value: 'master'"):
        load_text(cluster_doc("[{name: a, role: master}]"))
    with pytest.raises(ManifestError, match=r"spec.nodes\[0\].taints\[0\].effect: Unsupported value: 'Never'"):
        load_text(cluster_doc("[{name: a, taints: [{key: k, effect: Never}]}]"))
