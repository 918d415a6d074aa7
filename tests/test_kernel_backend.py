"""The cluster built from real network namespaces: real rules, real servers, real clients.

Run as root (CI: under `unshare --net`). Every cluster gets a unique prefix and is removed in
`finally`; the ledger lives in a temporary run directory. Expectations come from the kernel's and
kube-proxy's documented behaviour (kube-proxy proxier_test.go TestOverallIPTablesRules,
kernel nf_nat_masquerade.c, ipt_REJECT.c): ClusterIP DNAT without SNAT for pod clients, NodePort
with eTP Cluster masqueraded to the egress device's address (nf_nat_masquerade_ipv4), eTP Local
keeping the client address and dropping on nodes without a local endpoint (TestExternalTrafficPolicyLocal),
REJECT for a Service without endpoints giving ECONNREFUSED (TestNoEndpointsReject, ipt_REJECT.c).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from netsim.kernel import cleanup, netns
from netsim.kernel.cleanup import alive
from netsim.kernel.build import KernelCluster
from netsim.kernel.probe import Probe, probe, run_probes
from netsim.kernel.state import ClusterState
from netsim.control.manifests import load
from kernel_helpers import NETSIM, unique_name

pytestmark = pytest.mark.kernel

FIXTURE = str(Path(__file__).parent / "fixtures" / "kernel_services.yaml")


@pytest.fixture(scope="module")
def services(kernel_run_dir):
    """The services fixture cluster, up for the whole module (read-only tests)."""
    cluster = load([FIXTURE])
    name = unique_name("t")
    kc = KernelCluster.up(cluster, name, sources=[FIXTURE])
    try:
        yield kc
    finally:
        kc.down()
        assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


def _svc(kc, name, ns="default"):
    return kc.cluster.service(ns, name)


def _pods_of(kc, app):
    return {p.key for p in kc.cluster.pods("default") if p.labels.get("app") == app}


# ---------------------------------------------------------------------------- up / down
def test_up_creates_every_namespace_and_down_removes_them(kernel_run_dir):
    cluster = load(["example:httpd-app"])
    name = unique_name("t")
    kc = KernelCluster.up(cluster, name)
    try:
        made = set(kc.state.netns)
        assert made <= set(netns.listnetns())
        assert {f"{name}-node-1", f"{name}-node-2", f"{name}-node-3", f"{name}-underlay",
                f"{name}-external", f"{name}-router", f"{name}-lb"} <= made
        assert len(made) == 7 + sum(1 for p in kc.plan.pods.values() if not p.host_network)   # hostNetwork: the node's
        st = ClusterState.load(name)
        assert st.phase == "up" and all(alive(p.pid) for p in st.processes)
        pids = [p.pid for p in st.processes]
    finally:
        removed = kc.down()
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]
    assert not any(alive(pid) for pid in pids)
    assert not (kernel_run_dir / name).exists()
    assert any(r.startswith("netns ") for r in removed)


def test_shop_example_comes_up_and_down(kernel_run_dir):
    cluster = load(["example:shop"])
    name = unique_name("t")
    kc = KernelCluster.up(cluster, name)
    try:
        assert set(kc.plan.nodes) == {n.name for n in cluster.nodes()}
        running = [p for p in cluster.pods() if p.phase == "Running" and not p.host_network]
        assert all(netns.exists(kc.plan.pods[p.key].netns) for p in running)
    finally:
        kc.down()
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


def test_second_up_with_same_name_is_refused(services):
    from netsim.kernel.build import KernelBackendError
    with pytest.raises(KernelBackendError, match="already up"):
        KernelCluster.up(load([FIXTURE]), services.name)


# ---------------------------------------------------------------------------- traffic
def test_pod_to_clusterip_reaches_both_endpoints_without_snat(services):
    kc = services
    client = kc.plan.pods["default/client"]
    rs = run_probes([Probe(client.netns, _svc(kc, "web").cluster_ip, 80) for _ in range(40)])
    assert {r.outcome for r in rs} == {"answered"}
    assert {r.pod for r in rs} == _pods_of(kc, "web")          # 40 draws at p=1/2: both seen
    assert {r.peer_ip for r in rs} == {client.ip}              # pod source: no masquerade


def test_udp_clusterip_echo(services):
    kc = services
    client = kc.plan.pods["default/client"]
    r = probe(client.netns, _svc(kc, "web").cluster_ip, 5353, "UDP")
    assert r.outcome == "answered" and r.pod in _pods_of(kc, "web")
    assert r.answer["proto"] == "UDP" and r.peer_ip == client.ip


def test_curl_and_dig_by_service_name(services):
    kc = services
    client = kc.plan.pods["default/client"].netns
    curl = netns.run(client, ["curl", "-s", "-m", "5", "http://web/"], check=False)
    assert curl.returncode == 0, curl.stderr
    assert curl.stdout.startswith("pod=default/web-")
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed")
    dig = netns.run(client, ["dig", "+short", "+search", "web"], check=False)
    assert dig.stdout.split() == [_svc(kc, "web").cluster_ip]
    fq = netns.run(client, ["dig", "+short", "web-np.default.svc.cluster.local"], check=False)
    assert fq.stdout.split() == [_svc(kc, "web-np").cluster_ip]


def test_service_without_endpoints_is_rejected(services):
    kc = services
    client = kc.plan.pods["default/client"]
    r = probe(client.netns, _svc(kc, "empty").cluster_ip, 80, timeout=3.0)
    assert r.outcome == "refused"                               # filter KUBE-SERVICES REJECT
    assert r.seconds < 1.0                                      # at once, not a timeout


def test_nodeport_cluster_policy_from_external_is_masqueraded(services):
    kc = services
    ext = kc.plan.edge.external_netns
    web_nodes = {kc.cluster.pod("default", k.split("/")[1]).node_name for k in _pods_of(kc, "web")}
    empty_node = next(n for n in sorted(kc.plan.nodes) if n not in web_nodes)
    node = kc.plan.nodes[empty_node]
    r = probe(ext, node.ip, 30081)
    assert r.outcome == "answered" and r.pod in _pods_of(kc, "web")
    # forwarded to another node: MASQUERADE picks flannel.1's address (the podCIDR network address)
    assert r.peer_ip == node.vtep_ip


def test_external_traffic_policy_local_preserves_source(services):
    kc = services
    ext, ext_ip = kc.plan.edge.external_netns, kc.plan.edge.external_ip
    lb_ip = _svc(kc, "web-local").load_balancer_ips[0]
    rs = run_probes([Probe(ext, lb_ip, 80) for _ in range(10)])
    assert {r.outcome for r in rs} == {"answered"}
    assert {r.peer_ip for r in rs} == {ext_ip}                 # eTP Local: no SNAT
    web_nodes = {kc.cluster.pod("default", k.split("/")[1]).node_name for k in _pods_of(kc, "web")}
    for name, node in kc.plan.nodes.items():
        r = probe(ext, node.ip, 30082, timeout=1.0)
        if name in web_nodes:
            assert r.outcome == "answered" and r.peer_ip == ext_ip
            assert kc.cluster.pod("default", r.pod.split("/")[1]).node_name == name   # local only
        else:
            assert r.outcome == "timeout"                      # KUBE-EXT -> KUBE-SVL empty: dropped


def test_live_iptables_save_shows_the_loaded_rules(services):
    from netsim.kernel import live_iptables_save
    text = live_iptables_save(services.name, "node-1")
    assert "-A KUBE-SERVICES" in text and "KUBE-SVC-" in text
    assert text.count("*nat") == 1 and "[" in text.splitlines()[3]          # -c counters


def test_rules_live_prints_kernel_counters_that_move_with_traffic(services):
    """`netsim rules --live`: the kernel's own iptables-save -c; a connection bumps the DNAT rule."""
    kc = services
    svc = _svc(kc, "web")

    def sep_packets() -> int:
        out = subprocess.run([*NETSIM, "rules", "--live", "--node", "node-1", "--name", kc.name],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return sum(int(line[1:].split(":")[0]) for line in out.stdout.splitlines()
                   if line.startswith("[") and "-j DNAT" in line and "default/web" in line)

    before = sep_packets()
    res = run_probes([Probe(kc.plan.pods["default/client"].netns, svc.cluster_ip, 80)])
    assert res[0].outcome == "answered", res[0]
    assert sep_packets() == before + 1
    missing = subprocess.run([*NETSIM, "rules", "--live", "--node", "nope", "--name", kc.name],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "has no node 'nope'" in missing.stderr


def test_exec_runs_in_the_pod_and_refuses_missing_namespaces(services):
    kc = services
    env = dict(os.environ)
    client = kc.plan.pods["default/client"]
    ok = subprocess.run([*NETSIM, "exec", "pod/client", "--name", kc.name,
                         "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                        capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert client.ip in ok.stdout
    bad = subprocess.run([*NETSIM, "exec", "pod/nope", "--name", kc.name,
                          "--", "true"], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 2 and 'pod "nope" not found' in bad.stderr


# ---------------------------------------------------------------------------- faults
def test_stopped_node_loses_its_endpoints_and_traffic_moves(kernel_run_dir):
    cluster = load([FIXTURE])
    name = unique_name("t")
    kc = KernelCluster.up(cluster, name)
    try:
        client = kc.plan.pods["default/client"]
        vip = cluster.service("default", "web").cluster_ip
        web = {p.name: p.node_name for p in cluster.pods("default") if p.labels.get("app") == "web"}
        victim, survivor = sorted(web.values())   # node-1 is the tainted control plane: web runs on the workers
        cluster.stop_node(victim)
        changed = kc.reconcile()
        assert changed["nodes"] == [f"{victim}: down"]
        # eth0 down: the endpoint on the stopped node is unreachable, rules still point there
        rs = run_probes([Probe(client.netns, vip, 80) for _ in range(24)], timeout=0.7)
        assert Counter(r.outcome for r in rs)["timeout"] > 0
        # node lifecycle controller: NotReady after the grace period -> endpoints not ready -> withdrawn
        cluster.advance(60)
        kc.reconcile()
        rs = run_probes([Probe(client.netns, vip, 80) for _ in range(24)], timeout=2.0)
        assert {r.outcome for r in rs} == {"answered"}
        assert {cluster.pod("default", r.pod.split("/")[1]).node_name for r in rs} == {survivor}
        # eviction 300 s after NotReady: the pod turns Terminating but keeps its namespace (its kubelet
        # cannot confirm); the Deployment's replacement gets a new namespace on a running node
        evicted = next(f"default/{p}" for p, n in web.items() if n == victim)
        evicted_netns = kc.state.pods[evicted].netns
        # web and coredns; kubeadm's kube-proxy DaemonSet pod tolerates the unreachable taint and stays
        on_victim = sorted(p.key for p in cluster.pods() if p.node_name == victim
                           and p.owner != ("DaemonSet", "kube-proxy"))
        cluster.advance(320)
        assert cluster.pod("default", evicted.split("/")[1]).terminating
        changed = kc.reconcile()
        assert changed["pods_added"] and changed["pods_removed"] == []
        assert evicted_netns in netns.listnetns()
        rs = run_probes([Probe(client.netns, vip, 80) for _ in range(40)], timeout=2.0)
        assert {r.outcome for r in rs} == {"answered"}
        landed = {r.pod for r in rs}
        assert len(landed) == 2 and evicted not in landed and victim not in {
            cluster.pod("default", p.split("/")[1]).node_name for p in landed}
        # the node returns: its kubelet kills the evicted pod (30 s grace), then deletes it
        cluster.start_node(victim)
        assert kc.reconcile()["nodes"] == [f"{victim}: up"]
        rs = run_probes([Probe(client.netns, vip, 80) for _ in range(16)], timeout=2.0)
        assert {r.outcome for r in rs} == {"answered"} and evicted not in {r.pod for r in rs}
        cluster.advance(30)
        assert kc.reconcile()["pods_removed"] == on_victim
        assert evicted_netns not in netns.listnetns()
    finally:
        kc.down()
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


_UP_AND_HANG = """
import sys, time
from netsim.control.manifests import load
from netsim.kernel.build import KernelCluster
KernelCluster.up(load([sys.argv[1]]), sys.argv[2])
print("UP", flush=True)
time.sleep(120)
"""


def test_down_cleans_up_after_kill_9(kernel_run_dir):
    name = unique_name("t")
    proc = subprocess.Popen([sys.executable, "-c", _UP_AND_HANG, FIXTURE, name], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "UP"
        st = ClusterState.load(name)
        pids = [p.pid for p in st.processes]
        assert pids and all(alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [n for n in netns.listnetns() if n.startswith(name + "-")]      # still there after kill -9
    cleanup.down(name)
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]
    assert not any(alive(p) for p in pids)
    assert not [d for d in os.listdir("/etc/netns") if d.startswith(name + "-")] \
        if os.path.isdir("/etc/netns") else True
    assert not (kernel_run_dir / name).exists()


def test_down_cleans_up_after_kill_9_half_way_through_up(kernel_run_dir):
    name = unique_name("t")
    proc = subprocess.Popen([sys.executable, "-c", _UP_AND_HANG, FIXTURE, name], stdout=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if len(ClusterState.load(name).netns) >= 6:
                    break
            except Exception:                                   # noqa: BLE001 - ledger being written
                pass
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cleanup.down(name)
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]
    assert not (kernel_run_dir / name).exists()
    time.sleep(0.3)                             # nothing the killed process started shows up later
    assert not [n for n in netns.listnetns() if n.startswith(name + "-")]


# ---------------------------------------------------------------------------- host safety
def _host_snapshot() -> dict[str, str]:
    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    snap = {
        "link": out("ip", "-d", "link", "show"),
        "addr": out("ip", "addr", "show"),
        "route": out("ip", "route", "show", "table", "all"),
        "rule": out("ip", "rule", "show"),
        "neigh": out("ip", "neigh", "show", "permanent"),
        "iptables": "\n".join(l for l in out("iptables-save").splitlines() if not l.startswith("#")),
    }
    for key in ("net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
                "net/bridge/bridge-nf-call-iptables"):
        p = Path("/proc/sys") / key
        snap[key] = p.read_text() if p.exists() else "-"
    return snap


def test_host_namespace_is_unchanged_by_up_and_down(kernel_run_dir):
    before = _host_snapshot()
    name = unique_name("t")
    kc = KernelCluster.up(load([FIXTURE]), name)
    try:
        during = _host_snapshot()
        client = kc.plan.pods["default/client"]
        assert probe(client.netns, kc.cluster.service("default", "web").cluster_ip, 80).outcome == "answered"
    finally:
        kc.down()
    after = _host_snapshot()
    assert during == before
    assert after == before
