"""The kernel backend's naming and topology plan: pure computation, no root needed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from netsim.kernel import naming
from netsim.rules.iptables import kernel as rules
from netsim.kernel.build import KernelBackendError, check_kernel_support
from netsim.kernel.plan import build_plan
from netsim.control.manifests import load
from netsim.dataplane.topology import Topology

FIXTURE = str(Path(__file__).parent / "fixtures" / "kernel_services.yaml")


def test_interface_names_fit_ifnamsiz():
    # include/uapi/linux/if.h: IFNAMSIZ 16 including the NUL -> at most 15 characters.
    long = "a-very-long-namespace-name-that-goes-on"
    assert len(naming.pod_veth(long, long * 3)) <= 15
    assert naming.pod_veth("default", "x").startswith("veth")      # the bridge CNI's veth<8 hex>
    assert len(naming.underlay_port("node-with-a-rather-long-name")) <= 15
    assert naming.underlay_port("node-1") == "u-node-1"


def test_netns_names_carry_prefix_and_stay_bounded():
    n = naming.pod_netns("kt", "kube-system", "coredns-5dbb487579-" + "x" * 60)
    assert n.startswith("kt-kube-system-coredns") and len(n) <= naming.MAX_NETNS
    other = naming.pod_netns("kt", "kube-system", "coredns-5dbb487579-" + "x" * 59 + "y")
    assert n != other                                               # hashed, not just cut
    assert naming.node_netns("kt", "node-1") == "kt-node-1"


@pytest.mark.parametrize("bad", ["", "Upper", "-x", "x-", "a" * 17, "a_b", "a/b"])
def test_bad_cluster_names_are_refused(bad):
    with pytest.raises(naming.ClusterNameError, match="cluster name"):
        naming.check_cluster_name(bad)


def test_plan_matches_flannel_and_emulator_topology():
    c = load([FIXTURE])
    plan = build_plan(c, "kt")
    topo = Topology(c)
    n1 = plan.nodes["node-1"]
    # flannel (pkg/backend/vxlan/vxlan_network.go, device.go): flannel.1 holds the podCIDR network address /32; cni0 the .1
    assert n1.pod_cidr == c.node("node-1").pod_cidr
    assert n1.vtep_ip == n1.pod_cidr.split("/")[0]
    assert n1.cni_ip.endswith(".1")
    assert int(n1.vtep_mac.split(":")[0], 16) & 0b11 == 0b10       # locally administered unicast
    # the edge hosts have the addresses the emulator's topology gives them
    assert plan.edge.router_ip == topo.hosts["router"].interfaces["eth0"].ip
    assert plan.edge.external_ip == topo.hosts["external"].interfaces["eth0"].ip
    assert plan.edge.lb_ip == topo.hosts["loadbalancer"].interfaces["eth0"].ip
    client = plan.pods["default/client"]
    assert client.gateway == n1.cni_ip and client.node == "node-1"
    # kubelet ClusterFirst resolv.conf: search <ns>.svc.<domain> svc.<domain> <domain>, ndots:5
    assert client.resolv_conf == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                  "nameserver 10.96.0.10\noptions ndots:5\n")
    dns = [p for p in plan.pods.values() if p.dns_server]
    assert len(dns) == 2 and all(p.namespace == "kube-system" for p in dns)


def test_lb_vip_goes_to_a_node_with_a_local_endpoint_for_etp_local():
    c = load([FIXTURE])
    plan = build_plan(c, "kt")
    svc = c.service("default", "web-local")
    local_nodes = {e.node_name for s in c.endpoint_slices("default", "web-local") for e in s.endpoints}
    vip = svc.load_balancer_ips[0]
    node_ip = plan.edge.vip_routes[vip]
    assert node_ip in {c.node(n).ip for n in local_nodes}


def test_ipvs_mode_is_refused_with_the_missing_module_named():
    if os.path.exists("/proc/net/ip_vs"):
        check_kernel_support("ipvs")                 # programmed for real (netsim.rules.ipvs.kernel)
    else:
        with pytest.raises(KernelBackendError, match="ip_vs kernel module") as e:
            check_kernel_support("ipvs")
        assert "\n" not in str(e.value) and "--vm" in str(e.value)
    if shutil.which("nft") is not None:
        check_kernel_support("nftables")             # loaded with nft -f (tests/test_nft_kernel_up.py)
    else:
        with pytest.raises(KernelBackendError, match="`nft`"):
            check_kernel_support("nftables")


def test_jump_rules_follow_reverse_insertion_order():
    # kube-proxy proxier.go iptablesJumpChains + EnsureRule(Prepend), checked with iptables-save: INPUT = KUBE-FIREWALL, KUBE-PROXY-FIREWALL,
    # KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES; FORWARD = KUBE-PROXY-FIREWALL, KUBE-FORWARD,
    # KUBE-SERVICES, KUBE-EXTERNAL-SERVICES; OUTPUT = KUBE-FIREWALL, KUBE-PROXY-FIREWALL, KUBE-SERVICES.
    text = rules.with_jump_rules("*filter\n:KUBE-FORWARD - [0:0]\nCOMMIT\n*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n")
    filter_text, nat_text = text.split("*nat")
    def targets(chain, table_text=filter_text):
        return [l.split("-j ")[-1] for l in table_text.splitlines() if l.startswith(f"-A {chain} ")]
    assert targets("INPUT") == ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]
    assert targets("FORWARD") == ["KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES"]
    assert targets("OUTPUT") == ["KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-SERVICES"]
    assert targets("PREROUTING", nat_text) == targets("OUTPUT", nat_text) == ["KUBE-SERVICES"]
    assert targets("POSTROUTING", nat_text) == ["KUBE-POSTROUTING"]
    # and text that already carries the jumps is left alone
    again = rules.with_jump_rules(text)
    assert again.count("-A INPUT -j KUBE-FIREWALL") == 1


def test_nfacct_names_found_in_rule_text():
    text = "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP"
    assert rules.nfacct_names(text) == ["ct_state_invalid_dropped_pkts"]


@pytest.mark.skipif(os.geteuid() != 0, reason="`netsim up` needs root")
def test_up_with_mode_override_refuses_before_building_anything():
    """`netsim up --mode ipvs` on a kernel without ip_vs: one line naming the module, exit 1,
    and no namespace left behind (the check runs before anything is created)."""
    from click.testing import CliRunner
    from netsim.cli.main import cli
    if os.path.exists("/proc/net/ip_vs"):
        pytest.skip("this kernel has ip_vs")
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    res = CliRunner().invoke(cli, ["up", "-f", "example:httpd-app", "--mode", "ipvs", "--name", "kmode"])
    assert res.exit_code == 2
    assert "ip_vs kernel module" in res.output and "Traceback" not in res.output
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    assert not [n for n in after - before if n.startswith("kmode")]
