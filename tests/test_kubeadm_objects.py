"""What kubeadm creates besides CoreDNS: default/kubernetes (10.96.0.1:443 → the control plane's
6443), the control-plane static Pods and the kube-proxy DaemonSet, all hostNetwork in kube-system;
one switch turns them off. The shapes are kube-apiserver's (kubernetesservice controller,
reconcilers/endpointsadapter.go) and kubeadm's manifests."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import netsim
from netsim.cli.main import cli
from netsim.control.docfields import ManifestError
from netsim.control.kubeadm import kubernetes_service_ip
from netsim.control.manifests import load, load_text

SEED = "example:kubectl-httpd"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_default_kubernetes_service_and_the_apiservers_slice():
    c = load([SEED])
    svc = c.service("default", "kubernetes")
    assert (svc.type, svc.cluster_ip, svc.selector, svc.session_affinity) == ("ClusterIP", "10.96.0.1", None, "None")
    assert svc.labels == {"component": "apiserver", "provider": "kubernetes"}
    assert [(p.name, p.port, p.protocol, p.target_port) for p in svc.ports] == [("https", 443, "TCP", 6443)]
    (sl,) = c.endpoint_slices("default", "kubernetes")
    assert sl.name == "kubernetes" and [e.addresses for e in sl.endpoints] == [[c.node("node-1").ip]]
    assert [(p.name, p.port, p.protocol) for p in sl.ports] == [("https", 6443, "TCP")]
    r = run("get", "svc", "kubernetes", "-f", SEED)
    assert r.output.splitlines()[1].split()[:5] == ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    r = run("get", "endpointslices", "kubernetes", "-o", "json", "-f", SEED)
    assert json.loads(r.output)["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}


def test_first_address_of_another_service_cidr():
    c = load_text("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: k}\nspec: {serviceCIDR: 10.100.0.0/16}\n")
    assert c.service("default", "kubernetes").cluster_ip == "10.100.0.1" == kubernetes_service_ip(c.config)


@pytest.mark.parametrize("mode", ["iptables", "ipvs"])
@pytest.mark.parametrize("client, to", [("pod/client", "https://kubernetes.default/version"),
                                         ("pod/client", "10.96.0.1:443"), ("node/node-3", "10.96.0.1:443"),
                                         ("node/node-2", "kubernetes.default:https")])
def test_kubernetes_service_is_delivered_to_the_apiserver_on_6443(mode, client, to):
    em = netsim.load("example:httpd-app", mode=mode)
    t = em.trace(client, to)
    assert t.outcome.disposition == "DELIVERED", t.outcome
    assert (t.outcome.pod, t.outcome.ip, t.outcome.port) == ("kube-system/kube-apiserver-node-1", "192.168.49.2", 6443)


def test_trace_cli_https_url_is_the_tcp_connection():
    r = run("trace", "--from", "pod/client", "--to", "https://kubernetes.default/healthz", "-f", "example:httpd-app")
    assert r.exit_code == 0, r.output
    assert "DELIVERED kube-system/kube-apiserver-node-1 at 192.168.49.2:6443" in r.output


def test_get_pods_all_namespaces_shows_kubeadms_pods_as_kubectl_does():
    r = run("get", "pods", "-A", "-o", "wide", "-f", SEED)
    rows = [line.split() for line in r.output.splitlines()[1:]]
    system = {row[1]: (row[6], row[7]) for row in rows if row[0] == "kube-system"}
    cp = "192.168.49.2"
    for name in ("etcd-node-1", "kube-apiserver-node-1", "kube-controller-manager-node-1", "kube-scheduler-node-1"):
        assert system[name] == (cp, "node-1")                  # hostNetwork: the node's address
    proxies = sorted((ip, node) for name, (ip, node) in system.items() if name.startswith("kube-proxy-"))
    assert proxies == [(cp, "node-1"), ("192.168.49.3", "node-2"), ("192.168.49.4", "node-3")]
    assert all(len(n) == len("kube-proxy-") + 5 for n in system if n.startswith("kube-proxy-"))
    assert len([n for n in system if n.startswith("coredns-")]) == 2
    c = load([SEED])
    api = c.pod("kube-system", "kube-apiserver-node-1")
    assert api.host_network and api.owner == ("Node", "node-1") and api.labels == {
        "component": "kube-apiserver", "tier": "control-plane"}
    ds = next(w for w in c.workloads("kube-system") if w.kind == "DaemonSet")
    assert (ds.name, ds.template.host_network) == ("kube-proxy", True)


@pytest.mark.parametrize("port, listening", [(6443, True), (2379, True), (2380, True), (10256, True),
                                             (10257, False), (10259, False), (10249, False), (2381, False)])
def test_control_plane_ports_on_the_node_address(port, listening):
    """kubeadm binds kube-controller-manager, kube-scheduler, etcd's metrics and kube-proxy's metrics to
    127.0.0.1: from another host those ports are closed."""
    em = netsim.load("example:httpd-app")
    t = em.trace("external", f"192.168.49.2:{port}")
    assert (t.outcome.disposition == "DELIVERED") is listening, t.outcome.disposition
    if not listening:
        assert t.outcome.disposition == "NO_LISTENER"


def test_switch_off_in_the_cluster_document_the_api_and_the_cli():
    doc = "apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: k}\nspec: {kubeadm: {enabled: false}}\n"
    for c in (load_text(doc), load([SEED], kubeadm=False), netsim.load(SEED, kubeadm=False).cluster):
        assert c.service("default", "kubernetes") is None and not c.endpoint_slices("default", "kubernetes")
        assert {p.name.split("-")[0] for p in c.pods("kube-system")} == {"coredns"}
        assert [w.name for w in c.workloads("kube-system")] == ["coredns"]
    r = run("get", "pods", "-A", "--no-kubeadm-objects", "-f", SEED)
    assert "kube-apiserver" not in r.output and "kube-proxy" not in r.output and "coredns-" in r.output
    with pytest.raises(ManifestError, match=r"spec.kubeadm.enable: unknown field \(did you mean \"enabled\"\?\)"):
        load_text("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: k}\nspec: {kubeadm: {enable: false}}\n")


def test_stopped_control_plane_keeps_its_static_pods_and_the_daemonset_pod():
    c = load([SEED])
    c.config.node_monitor_grace_period = 40.0
    c.stop_node("node-1")
    c.advance(400)                                # NotReady, then the 300 s eviction deadline passes
    on_cp = [p for p in c.pods() if p.node_name == "node-1"]
    assert {p.name.rsplit("-", 1)[0] for p in on_cp if not p.name.startswith("kube-proxy-")} == {
        "etcd-node", "kube-apiserver-node", "kube-controller-manager-node", "kube-scheduler-node"}
    assert len([p for p in on_cp if p.name.startswith("kube-proxy-")]) == 1 and not any(p.terminating for p in on_cp)


@pytest.mark.kernel
def test_kernel_apiserver_answers_healthz_and_version_over_tls(kernel_run_dir):
    from kernel_helpers import require_root_and_tools, unique_name
    from netsim.kernel import netns
    from netsim.kernel.build import KernelCluster
    require_root_and_tools("iptables-restore", "curl", "openssl")
    c = load(["example:httpd-app"])
    kc = KernelCluster.up(c, unique_name("t"))
    try:
        client = kc.plan.pods["default/client"].netns
        r = netns.run(client, ["curl", "-sk", "-m", "5", "https://10.96.0.1/healthz"], check=False)
        assert (r.returncode, r.stdout) == (0, "ok"), r.stderr
        r = netns.run(client, ["curl", "-sk", "-m", "5", "https://10.96.0.1:443/version"], check=False)
        info = json.loads(r.stdout)
        assert (info["major"], info["minor"], info["gitVersion"]) == ("1", "33", "v1.33.0")
        assert {"platform", "goVersion", "compiler", "gitCommit", "buildDate", "gitTreeState"} <= set(info)
        # the certificate is self-signed for kubeadm's apiserver names: a client that verifies refuses it
        r = netns.run(client, ["curl", "-s", "-m", "5", "https://10.96.0.1/healthz"], check=False)
        assert r.returncode == 60                      # curl: peer certificate cannot be authenticated
        r = netns.run(client, ["curl", "-sk", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                               "https://10.96.0.1/api"], check=False)
        assert r.stdout == "403"                       # anonymous: system:public-info-viewer only
        # on the node address from outside, as the emulator's trace says (DELIVERED to 6443)
        r = netns.run(kc.plan.edge.external_netns, ["curl", "-sk", "-m", "5", "https://192.168.49.2:6443/livez"],
                      check=False)
        assert r.stdout == "ok"
        # kube-controller-manager's 10257 is bound to 127.0.0.1: refused from outside, open on the node
        r = netns.run(kc.plan.edge.external_netns, ["curl", "-s", "-m", "5", "http://192.168.49.2:10257/"],
                      check=False)
        assert r.returncode == 7
        r = netns.run(kc.plan.nodes["node-1"].netns, ["curl", "-s", "-m", "5", "http://127.0.0.1:10257/"],
                      check=False)
        assert r.stdout.startswith("pod=kube-system/kube-controller-manager-node-1 ")
    finally:
        kc.down()


def test_readme_shows_what_get_pods_all_namespaces_prints():
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("$ netsim get pods -A -o wide -f example:kubectl-httpd", 1)[1].split("```", 1)[0]
    shown = [line.split() for line in block.strip().splitlines()[1:]]
    r = run("get", "pods", "-A", "-o", "wide", "-f", SEED)
    assert shown == [line.split()[:8] for line in r.output.strip().splitlines()]
