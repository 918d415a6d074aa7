"""What the kernel backend sends to ipvsadm in IPVS mode (netsim.rules.ipvs.kernel), checked without a kernel:
a first sync adds what ``ipvsadm -Sn`` lists; a resync sends only the changes (kube-proxy's
per-object netlink calls), so the kernel keeps its connections and counters."""
from __future__ import annotations

from netsim.rules.ipvs.kernel import ipset_restore_input, ipvsadm_changes
from netsim.control.manifests import load
from netsim.rules.ipvs.ipvsadm import parse_save
from netsim.rules.ipvs.proxier import KubeProxyIpvs
from netsim.rules.ipvs.table import IpvsTable


def test_first_sync_adds_every_virtual_and_real_server():
    kp = KubeProxyIpvs(load("example:httpd-app"), "node-1")
    st = kp.sync()
    changes = ipvsadm_changes(IpvsTable(), st.table)
    assert all(c.startswith(("-A ", "-a ")) for c in changes)
    # the same lines ipvsadm -R would restore, so replaying them gives the same table
    rebuilt = parse_save("\n".join(changes) + "\n")
    assert {vs.addr for vs in rebuilt} == {vs.addr for vs in st.table}
    for vs in st.table:
        other = rebuilt.lookup(*vs.key)
        # added oldest first: the kernel's list (newest at the head) ends in the proxier's order
        assert [d.addr for d in other.dests] == [d.addr for d in vs.dests]


def test_resync_sends_only_changes():
    cluster = load("example:httpd-app")
    kp = KubeProxyIpvs(cluster, "node-1")
    before = parse_save(kp.sync().ipvsadm_save())
    assert ipvsadm_changes(before, kp.table) == []
    pod = next(p for p in cluster.pods() if p.name.startswith("httpd-app"))
    cluster.set_pod_ready(pod.namespace, pod.name, False)
    after = kp.sync()
    changes = ipvsadm_changes(before, after.table)
    assert changes and all(c.startswith(("-d ", "-e ")) for c in changes)
    assert all(pod.ip in c for c in changes)


def test_ipset_restore_flushes_each_set_before_filling_it():
    st = KubeProxyIpvs(load("example:httpd-app"), "node-1").sync()
    lines = ipset_restore_input(st).splitlines()
    creates = [i for i, l in enumerate(lines) if l.startswith("create KUBE-CLUSTER-IP ")]
    assert creates and lines[creates[0] + 1] == "flush KUBE-CLUSTER-IP"
    assert any(l.startswith("add KUBE-CLUSTER-IP ") for l in lines)


def test_vm_bench_figures_become_ipvs_to_iptables_ratios():
    """`netsim bench --vm`: VM timings are quoted only as IPVS / iptables of the same boot."""
    from netsim.benchmarks.kernel_runner import KernelJob
    from netsim.benchmarks.records import distribution
    from netsim.benchmarks.vm_runner import VmKernelRunner, mode_ratios
    recs = (distribution("iptables", 100, 1, "kernel_first_connection_latency", [100e-6] * 10, "µs", "kernel",
                         scale=1e6, position="first", backend="iptables-nft")
            + distribution("iptables", 100, 1, "kernel_first_connection_latency", [100e-6] * 10, "µs", "kernel",
                           scale=1e6, position="first", backend="iptables-legacy")
            + distribution("ipvs", 100, 1, "kernel_first_connection_latency", [80e-6] * 10, "µs", "kernel",
                           scale=1e6, position="first", backend="ipvs"))
    ratios = mode_ratios(recs, "vm-test")
    assert {(r.metric, r.labels["statistic"], r.value) for r in ratios} == {
        ("kernel_first_connection_latency_p50_ratio_to_iptables", "p50", 0.8),
        ("kernel_first_connection_latency_p99_ratio_to_iptables", "p99", 0.8)}
    assert all(r.unit == "ratio" and "software-emulated" in r.labels["vm"] for r in ratios)
    runner = VmKernelRunner()
    assert runner.supports(KernelJob("connect", "ipvs", 100, 1)) is None
    assert runner.supports(KernelJob("connect", "ipvs", 0, 1)) is not None
    # nftables packets are emulated now: its first connection goes through the kernel backend, which needs a Service
    assert runner.supports(KernelJob("connect", "nftables", 0, 1)) is not None
