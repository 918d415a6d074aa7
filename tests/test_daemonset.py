"""DaemonSet: one pod per node that should run it (pkg/controller/daemon: nodeSelector, taints
against the template's tolerations plus the controller's default ones), bound through node
affinity by the scheduler; hostNetwork supported."""
from __future__ import annotations

import pytest

from netsim.control.cluster import ClusterError
from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text

CLUSTER = """apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: ds}
spec:
  nodes: [{name: cp}, {name: w1, labels: {disk: ssd}}, {name: w2}, {name: gpu, taints: [{key: gpu, value: "yes", effect: NoSchedule}]}]
  kubeadm: {enabled: false}
  coredns: {enabled: false}
---
"""


def daemonset(name: str, spec_extra: str = "", host_network: bool = False) -> str:
    hn = "      hostNetwork: true\n" if host_network else ""
    return f"""apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{hn}{spec_extra}      containers: [{{name: c, image: nginx}}]
---
"""


def nodes_of(c, name: str) -> dict[str, str]:
    return {p.node_name: p.ip for p in c.pods("default") if p.owner == ("DaemonSet", name) and not p.terminating}


def test_one_pod_per_untainted_node_and_tolerations_open_the_tainted_ones():
    tol = "      tolerations: [{operator: Exists}]\n"
    c = load_text(CLUSTER + daemonset("plain") + daemonset("everywhere", tol))
    assert set(nodes_of(c, "plain")) == {"w1", "w2"}           # cp (control-plane taint) and gpu refuse it
    assert set(nodes_of(c, "everywhere")) == {"cp", "w1", "w2", "gpu"}
    pods = [p for p in c.pods("default") if p.owner == ("DaemonSet", "plain")]
    assert all(p.phase == "Running" and p.name.startswith("plain-") and len(p.name) == len("plain-") + 5
               for p in pods)
    # the controller's default tolerations (daemonset_util.go AddOrUpdateDaemonPodTolerations)
    keys = {(t.key, t.effect) for t in pods[0].tolerations}
    assert {("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unschedulable", "NoSchedule")} <= keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys    # hostNetwork only
    scheduled = [e for e in c.event_log if e.reason == "Scheduled" and e.object in {f"pod/{p.name}" for p in pods}]
    assert {e.message.rsplit(" ", 1)[1] for e in scheduled} == {"w1", "w2"}      # the scheduler binds them


def test_node_selector_and_host_network():
    c = load_text(CLUSTER + daemonset("ssd", "      nodeSelector: {disk: ssd}\n", host_network=True))
    ips = nodes_of(c, "ssd")
    assert list(ips) == ["w1"] and ips["w1"] == c.node("w1").ip
    (pod,) = [p for p in c.pods("default") if p.owner == ("DaemonSet", "ssd")]
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in {(t.key, t.effect) for t in pod.tolerations}


def test_deleted_pod_is_replaced_on_the_same_node_and_scale_is_refused():
    c = load_text(CLUSTER + daemonset("agent"))
    victim = next(p for p in c.pods("default") if p.node_name == "w2")
    c.delete_pod("default", victim.name, force=True)
    assert set(nodes_of(c, "agent")) == {"w1", "w2"} and c.pod("default", victim.name) is None
    with pytest.raises(ClusterError, match="cannot be scaled"):
        c.scale("default", "agent", 5)


def test_daemonset_pods_survive_taint_based_eviction():
    c = load_text(CLUSTER + daemonset("agent"))
    c.config.node_monitor_grace_period = 40.0
    c.stop_node("w1")
    c.advance(400)
    (pod,) = [p for p in c.pods("default") if p.node_name == "w1"]
    assert not pod.terminating and not pod.ready           # not ready on a NotReady node, never evicted


def test_strict_fields_and_no_replicas():
    with pytest.raises(ManifestError, match=r'unknown field "spec.replicas"'):
        load_text(CLUSTER + daemonset("x").replace("spec:\n  selector", "spec:\n  replicas: 2\n  selector"))
    with pytest.raises(ManifestError, match=r"spec.template.metadata.labels: Invalid value"):
        load_text(CLUSTER + daemonset("x").replace("labels: {app: x}", "labels: {app: y}"))


def test_kubectl_get_daemonsets():
    from click.testing import CliRunner
    from netsim.cli.main import cli
    r = CliRunner().invoke(cli, ["get", "ds", "-A", "-f", "example:kubectl-httpd"])
    assert r.output.splitlines() == [
        "NAMESPACE     NAME         DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR            AGE",
        "kube-system   kube-proxy   3         3         3       3            3           kubernetes.io/os=linux   0s"]
    r = CliRunner().invoke(cli, ["get", "all", "-n", "kube-system", "-f", "example:kubectl-httpd"])
    assert "daemonset.apps/kube-proxy   3" in r.output


def test_apply_and_delete_a_daemonset_on_a_saved_cluster(tmp_path):
    from click.testing import CliRunner
    from netsim.cli.main import cli
    from netsim.control.manifests import load
    st = str(tmp_path / "state")
    f = tmp_path / "ds.yaml"
    f.write_text(daemonset("agent"))
    r = CliRunner().invoke(cli, ["apply", "-f", str(f), "--state", st])
    assert r.exit_code == 0 and r.output.startswith("daemonset.apps/agent created"), r.output
    assert "daemonset-controller" in r.output
    c = load([f"state:{st}"])
    assert {p.node_name for p in c.pods("default")} == {"node-2", "node-3"}       # not the tainted control plane
    r = CliRunner().invoke(cli, ["scale", "ds", "agent", "--replicas", "3", "--state", st])
    assert r.exit_code != 0
    r = CliRunner().invoke(cli, ["delete", "ds", "agent", "--state", st])
    assert r.exit_code == 0 and 'daemonset.apps "agent" deleted' in r.output
    assert load([f"state:{st}"]).pods("default") == []


def test_get_daemonset_json_has_daemonset_status_not_replicas():
    import json
    from click.testing import CliRunner
    from netsim.cli.main import cli
    r = CliRunner().invoke(cli, ["get", "ds", "kube-proxy", "-n", "kube-system", "-o", "json", "-f", "example:kubectl-httpd"])
    doc = json.loads(r.output)
    assert doc["kind"] == "DaemonSet" and "replicas" not in doc["spec"]
    assert (doc["status"]["desiredNumberScheduled"], doc["status"]["numberReady"]) == (3, 3)
