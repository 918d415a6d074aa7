"""nftables base chains as netfilter hook functions, one per chain at its declared priority.

kube-proxy's chains (pkg/proxy/nftables/proxier.go ``nftablesBaseChains``) must register where
upstream's own test text declares them; every other table a node's ruleset holds registers at its
chains' priorities too, among conntrack (-200), nf_nat (-100/100) and iptables' tables, in the
kernel's order (net/netfilter/core.c nf_hook_entries_grow: ascending priority, and at equal
priority the later registration first). ``type nat`` chains are asked only for a connection's first
packet, inside nf_nat's hook (net/netfilter/nf_nat_core.c nf_nat_inet_fn).
"""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

import netsim
import netsim.rules.nftables.proxier as nft_proxier
from netsim.dataplane.walker import Walker
from netsim.rules.nftables.dataplane import NftNetfilter
from netsim.rules.iptables.provider import IptablesNetfilter
from netsim.dataplane.hooks import HookTable
from netsim.skb.packet import Packet, ip2int
from walker_cluster import scenario_cluster

GOLDEN = Path(__file__).parent / "golden" / "nftables"
CHAIN_LINE = re.compile(r"^add chain (ip6?) kube-proxy (\S+) \{ type (\w+) hook (\w+) priority (-?\d+) ; \}$", re.M)


def upstream_base_chains(golden: str) -> list[tuple[str, int, str, str]]:
    """(HOOK, priority, chain, type) of every base chain in an upstream test's expected text."""
    text = (GOLDEN / golden).read_text()
    return sorted((hook.upper(), int(prio), name, ctype) for _fam, name, ctype, hook, prio in CHAIN_LINE.findall(text))


def kube_proxy_registrations(regs) -> list[tuple[str, int, str, str]]:
    return sorted((r.hook, r.priority, r.name.removeprefix("ip kube-proxy "), r.type)
                  for r in regs if r.name.startswith("ip kube-proxy "))


@pytest.fixture
def cluster():
    return scenario_cluster("vxlan", "nftables")


def test_kube_proxys_base_chains_register_as_upstreams_test_declares_them(cluster):
    """TestOverallNFTablesRules' expected text (kube-proxy 1.34, our default release): each base chain is
    one registration at its hook and priority, for every node."""
    want = upstream_base_chains("overall.nft")
    assert len(want) == 8 and ("PREROUTING", -110, "filter-prerouting-pre-dnat", "filter") in want
    w = Walker(cluster)
    for node in ("node-1", "node-2", "node-3"):
        regs = w.hooks(node).registrations
        assert kube_proxy_registrations(regs) == want, node
        assert len(regs) == len(want)           # nothing else on these nodes (no hostPort pods)


def test_ga_release_chains_register_where_its_upstream_dump_puts_them(cluster):
    """kube-proxy 1.31-1.33 (filter chains at dstnat-10, filter-output-post-dnat at dstnat+10): the
    knftables fake_test dump of that ruleset (IPv6 family, same chains and priorities)."""
    want = upstream_base_chains("knftables_ipv6_dump.nft")
    assert ("OUTPUT", -90, "filter-output-post-dnat", "filter") in want
    text = nft_proxier.render(cluster, "node-1", nft_proxier.config_for_node(cluster, "node-1", release="1.33"))
    nf = NftNetfilter(text, set(), random.Random(0))
    assert kube_proxy_registrations(nf.registrations()) == want


def test_hooks_run_conntrack_kube_proxys_chains_and_nf_nat_by_priority(cluster):
    table = Walker(cluster).hooks("node-3")
    kp = "ip kube-proxy "
    assert table.listing["PREROUTING"] == (
        (-200, "nf_conntrack_in", ()), (-110, kp + "filter-prerouting-pre-dnat", ()),
        (-100, "nf_nat_inet_fn", ((-100, kp + "nat-prerouting"),)))
    assert table.listing["OUTPUT"] == (
        (-200, "nf_conntrack_in", ()), (-110, kp + "filter-output-pre-dnat", ()),
        (-100, "nf_nat_inet_fn", ((-100, kp + "nat-output"),)), (0, kp + "filter-output", ()))
    assert table.listing["INPUT"] == ((0, kp + "filter-input", ()), (100, "nf_nat_inet_fn", ()),
                                      (2 ** 31 - 1, "nf_conntrack_confirm", ()))
    assert table.listing["FORWARD"] == ((0, kp + "filter-forward", ()),)
    assert table.listing["POSTROUTING"] == ((100, "nf_nat_inet_fn", ((100, kp + "nat-postrouting"),)),
                                            (2 ** 31 - 1, "nf_conntrack_confirm", ()))


def with_user_table(monkeypatch, text: str) -> None:
    """Every node's ruleset = kube-proxy's table, then a user's table (as a node's `nft list ruleset`)."""
    real = nft_proxier.render
    monkeypatch.setattr(nft_proxier, "render", lambda c, node, config=None: real(c, node, config) + "\n" + text)


def rule_lines(t, node: str = "node-3") -> list[str]:
    return [s.detail for h in t.request.hops if h.host == node for s in h.steps if s.action == "RULE"]


def first(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


@pytest.mark.parametrize("priority, before_dnat, before_kube_proxy_filter", [
    (-150, True, True),            # mangle: before kube-proxy's filter-prerouting-pre-dnat (-110)
    (-105, True, False),           # between it and nf_nat (dstnat, -100)
    (50, False, False),            # security: after DNAT
])
def test_a_user_chain_runs_where_its_priority_puts_it(monkeypatch, cluster, priority, before_dnat,
                                                      before_kube_proxy_filter):
    cip = cluster.service("default", "web").cluster_ip
    with_user_table(monkeypatch, f"""table ip user {{
    chain pre {{
        type filter hook prerouting priority {priority}; policy accept;
        ip daddr {cip} counter
        tcp dport 8080 counter
    }}
}}
""")
    w = Walker(cluster)
    regs = [(r.hook, r.priority, r.name) for r in w.hooks("node-3").registrations]
    assert ("PREROUTING", priority, "ip user pre") in regs
    t = w.connect(w.host_for("pod/client-3"), cip, 80, "tcp")
    assert t.outcome.disposition == "DELIVERED"
    lines = rule_lines(t)
    user = f"ip user pre rule ip daddr {cip} counter (verdict continue)"
    post = "ip user pre rule tcp dport 8080 counter (verdict continue)"
    assert (user in lines, post in lines) == (before_dnat, not before_dnat), lines
    mine = lines.index(user if before_dnat else post)
    kp_filter = first(lines, "ip kube-proxy filter-prerouting-pre-dnat rule ct state new jump firewall-check")
    kp_nat = first(lines, "ip kube-proxy nat-prerouting rule jump services")
    assert (mine < kp_filter) == before_kube_proxy_filter
    assert (mine < kp_nat) == before_dnat


@pytest.mark.parametrize("priority, dropped", [(-150, True), (50, False)])
def test_a_user_drop_before_dnat_sees_the_cluster_ip_and_after_it_does_not(monkeypatch, cluster, priority, dropped):
    cip = cluster.service("default", "web").cluster_ip
    with_user_table(monkeypatch, f"""table ip user {{
    chain pre {{
        type filter hook prerouting priority {priority}; policy accept;
        ip daddr {cip} drop
    }}
}}
""")
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-3"), cip, 80, "tcp")
    if dropped:
        assert t.outcome.disposition == "DROPPED" and "ip user pre:PREROUTING" in t.outcome.detail
        assert not [line for line in rule_lines(t) if line.startswith("ip kube-proxy")]    # it ran first
    else:
        assert t.outcome.disposition == "DELIVERED"


@pytest.mark.parametrize("priority, user_wins", [(-150, True), (-50, False)])
def test_nat_chains_are_asked_in_priority_order_until_one_binds(monkeypatch, cluster, priority, user_wins):
    """nf_nat_inet_fn asks the hook's NAT functions in their order; the first binding ends the lookups."""
    cip = cluster.service("default", "web").cluster_ip
    web2 = cluster.pod("default", "web-2").ip
    with_user_table(monkeypatch, f"""table ip user {{
    chain dnat {{
        type nat hook prerouting priority {priority}; policy accept;
        ip daddr {cip} tcp dport 80 dnat to {web2}:8080
    }}
}}
""")
    w = Walker(cluster)
    nat = dict((p, lookups) for p, name, lookups in w.hooks("node-3").listing["PREROUTING"] if name == "nf_nat_inet_fn")
    user, kp = (priority, "ip user dnat"), (-100, "ip kube-proxy nat-prerouting")
    assert nat == {-100: (user, kp) if user_wins else (kp, user)}
    pods = set()
    for sport in range(40000, 40012):
        t = w.connect(w.host_for("pod/client-3"), cip, 80, "tcp", sport=sport)
        assert t.outcome.disposition == "DELIVERED"
        pods.add(t.outcome.pod)
        lines = rule_lines(t)
        assert any(line.startswith("ip user dnat rule") for line in lines) == user_wins
        assert any(line.startswith("ip kube-proxy nat-prerouting") for line in lines) == (not user_wins)
    if user_wins:
        assert pods == {"default/web-2"}
    else:
        assert pods == {"default/web-1", "default/web-2"}      # kube-proxy's numgen choice, both seen


def test_a_nat_chain_that_drops_ends_the_packet(monkeypatch, cluster):
    """nf_nat_inet_fn returns a NAT function's verdict when it is not NF_ACCEPT."""
    cip = cluster.service("default", "web").cluster_ip
    with_user_table(monkeypatch, f"""table ip user {{
    chain dnat {{
        type nat hook prerouting priority -150; policy accept;
        ip daddr {cip} tcp dport 80 drop
    }}
}}
""")
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-3"), cip, 80, "tcp")
    assert t.outcome.disposition == "DROPPED" and "ip user dnat:PREROUTING" in t.outcome.detail, t.outcome.detail
    assert not any(line.startswith("ip kube-proxy nat-prerouting") for line in rule_lines(t))


def test_a_nat_chain_runs_inside_nf_nat_whatever_priority_it_declares(monkeypatch, cluster):
    """A nat chain at priority 50 is asked at nf_nat's place (dstnat, -100), so a filter chain at 0
    already sees the destination it chose (nft_chain_nat.c registers it through nf_nat_ipv4_register_fn)."""
    node3 = cluster.node("node-3").ip
    web2 = cluster.pod("default", "web-2").ip
    with_user_table(monkeypatch, f"""table ip user {{
    chain dnat {{
        type nat hook prerouting priority 50; policy accept;
        ip daddr {node3} tcp dport 9999 dnat to {web2}:8080
    }}
    chain seen {{
        type filter hook prerouting priority 0; policy accept;
        ip daddr {web2} tcp dport 8080 counter
    }}
}}
""")
    w = Walker(cluster)
    t = w.connect(w.host_for("pod/client-3"), node3, 9999, "tcp")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/web-2"
    lines = rule_lines(t)
    assert lines.index(f"ip user dnat rule ip daddr {node3} tcp dport 9999 dnat to {web2}:8080 (verdict accept)") < \
        lines.index(f"ip user seen rule ip daddr {web2} tcp dport 8080 counter (verdict continue)"), lines


def test_established_packets_skip_nat_chains_and_get_the_recorded_mapping(monkeypatch, cluster):
    cip = cluster.service("default", "web").cluster_ip
    with_user_table(monkeypatch, """table ip user {
    chain post {
        type nat hook postrouting priority 50; policy accept;
        meta l4proto tcp counter
    }
}
""")
    w = Walker(cluster)
    client = w.host_for("pod/client-3")
    first_t = w.connect(client, cip, 80, "tcp", sport=45000)
    assert first_t.outcome.disposition == "DELIVERED"
    nat_chains = ("ip kube-proxy nat-", "ip kube-proxy services", "ip kube-proxy service-", "ip kube-proxy endpoint-",
                  "ip user post")
    assert any(line.startswith("ip user post") for line in rule_lines(first_t))
    assert any(line.startswith("ip kube-proxy nat-prerouting") for line in rule_lines(first_t))
    pkt = Packet.tcp(first_t.flow.src, cip, 45000, 80, flags="A", seq=1, ack=1)
    end, pt = w.send(client, pkt)
    assert end.disposition == "DELIVERED" and end.owner == first_t.outcome.pod
    steps = [s for h in pt.hops for s in h.steps]
    assert not [s.detail for s in steps if s.action == "RULE" and s.detail.startswith(nat_chains)]
    assert [s for s in steps if s.action == "TRANSLATED" and s.detail.startswith("DNAT")]   # the recorded binding
    assert 0 < pt.rules < first_t.rules_evaluated               # the filter chains still see it


REDIS = """apiVersion: v1
kind: Pod
metadata: {name: redis, labels: {app: redis}}
spec:
  nodeName: node-2
  containers: [{name: redis, image: redis, ports: [{containerPort: 6379, hostPort: 16379}]}]
"""


def test_portmaps_iptables_nat_registers_after_kube_proxys_table_so_runs_first_at_equal_priority():
    """CNI portmap's chains (iptables, added when the pod's sandbox is created) come after kube-proxy's
    table (the node's first sync): at dstnat/srcnat nf_nat asks them first (nf_hook_entries_grow)."""
    em = netsim.load(REDIS, mode="nftables")
    w = em._walker("nftables")
    table = w.hooks("node-2")
    nat = {h: next(lk for p, name, lk in table.listing[h] if name == "nf_nat_inet_fn") for h in ("PREROUTING", "POSTROUTING")}
    assert nat["PREROUTING"] == ((-100, "nat"), (-100, "ip kube-proxy nat-prerouting"))
    assert nat["POSTROUTING"] == ((100, "nat"), (100, "ip kube-proxy nat-postrouting"))
    t = em.trace("external", f"{em.cluster.node('node-2').ip}:16379")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod == "default/redis"
    lines = [s.detail for s in t.request.steps("RULE")]
    assert any("CNI-HOSTPORT-DNAT" in line for line in lines)
    assert not any(line.startswith("ip kube-proxy nat-prerouting") for line in lines)    # portmap bound first


def test_iptables_and_nftables_filter_chains_interleave_by_priority():
    """A node with iptables' filter table (priority 0) and nftables chains at -10, 0 and 10 on INPUT:
    -10, then iptables' filter (registered after the nft table), then the nft chain at 0, then 10."""
    nft = """table ip a {
    chain early { type filter hook input priority -10; policy accept; }
    chain same { type filter hook input priority filter; policy accept; }
    chain late { type filter hook input priority 10; policy accept; }
}
"""
    ipt = IptablesNetfilter("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 81 -j DROP\nCOMMIT\n", set(),
                            random.Random(0))
    nf = NftNetfilter(nft, set(), random.Random(0), iptables=ipt)
    listing = HookTable(nf.registrations()).listing["INPUT"]
    assert [(p, n) for p, n, _ in listing][:4] == [(-10, "ip a early"), (0, "filter"), (0, "ip a same"), (10, "ip a late")]


def test_a_forked_ruleset_registers_its_own_hook_functions(cluster):
    w = Walker(cluster)
    nf = w.netfilter("node-1")
    regs = nf.registrations()
    assert regs is nf.registrations()                            # cached
    f = nf.fork(random.Random(1), {})
    fregs = f.registrations()
    assert [(r.hook, r.priority, r.name) for r in fregs] == [(r.hook, r.priority, r.name) for r in regs]
    assert all(r.fn.func.__self__ is f for r in fregs)           # the fork's state, not the original's
    assert all(r.fn.func.__self__ is nf for r in regs)


# ------------------------------------------------------------------ the real kernel's order
USER_TABLES = """add table ip a
add chain ip a out-mangle { type filter hook output priority mangle ; }
add chain ip a out-same { type filter hook output priority -110 ; }
add chain ip a nat-early { type nat hook output priority -150 ; }
add chain ip a nat-late { type nat hook output priority 50 ; }
add chain ip a out-security { type filter hook output priority security ; }
add chain ip a post-filter { type filter hook postrouting priority 0 ; }
add table inet b
add chain inet b out-inet { type filter hook output priority -120 ; }
add table ip nstrace
add chain ip nstrace out { type filter hook output priority -400 ; }
add rule ip nstrace out meta nftrace set 1
"""
ENTERED = re.compile(r"^trace id (\w+) (ip|inet) (\S+) (\S+) packet: .*tcp sport (\d+)")


def model_sequence(nf: NftNetfilter, dst: str, port: int, sport: int, binding: dict) -> list[str]:
    """The base chains a host-originated TCP SYN enters, from the hook lists (OUTPUT, then
    POSTROUTING): filter chains every time; for the connection's first packet (``binding`` empty) the
    NAT functions in nf_nat's order until one binds (running each registration's own hook function),
    recorded in ``binding``; a later packet gets the recorded mapping and enters no NAT function."""
    regs = {r.name: r for r in nf.registrations()}
    table = HookTable(nf.registrations())
    pkt = Packet.tcp("192.168.0.2", dst, sport, port)
    pkt.oif = "v0"
    first_packet = not binding
    seq = []
    for hook in ("OUTPUT", "POSTROUTING"):
        for _prio, name, lookups in table.listing[hook]:
            if name in ("nf_conntrack_in", "nf_conntrack_confirm"):
                continue
            if name != "nf_nat_inet_fn":
                seq.append(name)
                assert regs[name].fn(pkt, 0.0, None).verdict == "ACCEPT"
                continue
            for _p, nat_name in lookups if first_packet else ():
                seq.append(nat_name)
                nat = regs[nat_name].fn(pkt, 0.0, None).nat
                if nat is not None:
                    binding[hook] = (nat.kind, nat.ip, nat.port)
                    break
            binding.setdefault(hook, None)
            if binding[hook] is not None and binding[hook][0] == "DNAT":
                pkt.dst, pkt.dport = binding[hook][1], binding[hook][2] or pkt.dport
    return [s for s in seq if not s.startswith("ip nstrace")]


@pytest.mark.kernel
def test_the_kernel_enters_base_chains_in_the_order_the_hook_lists_give(tmp_path: Path) -> None:
    """kube-proxy's table (TestOverallNFTablesRules' ruleset), then a user's tables with chains at mangle,
    at kube-proxy's own -110 (registered later: runs first), an inet chain, nat chains declared before and
    after dstnat and a filter chain at security; `nft monitor trace` in a scratch namespace shows which
    base chains a SYN and its retransmission entered, in order. The model reads the kernel's `nft list ruleset`."""
    from test_nft_kernel import HOST_NETNS, NODE_ADDRS, SENDER, _setup, era_b, monitor_while
    from kernel_helpers import in_netns, scratch_netns
    f = tmp_path / "ruleset.nft"
    f.write_text(era_b() + USER_TABLES)
    cases = [("172.30.0.41", 80, 43000), ("9.9.9.9", 80, 43001)]     # a Service's ClusterIP; no Service
    with scratch_netns("nfthook", "nft") as ns:
        # a resolved gateway: the SYN leaves at once, so TCP retransmits it (tcp_retransmit_skb skips a
        # packet still queued on the host)
        _setup([(ns, HOST_NETNS + [["ip", "neigh", "add", "192.168.0.1", "lladdr", "02:00:00:00:00:01", "dev", "v0",
                                    "nud", "permanent"]])])
        loaded = in_netns(ns, ["nft", "-f", str(f)])
        assert loaded.returncode == 0, loaded.stderr
        listing = in_netns(ns, ["nft", "list", "ruleset"]).stdout
        # each SYN sent again after 1 s (TCP_TIMEOUT_INIT): conntrack entry and NAT set up by then
        twice = SENDER.replace("time.sleep(0.05)", "time.sleep(1.4)")
        out = monitor_while(ns, ns, [sys.executable, "-c", twice, *[f"tcp:{d}:{p}:{s}" for d, p, s in cases]])
    # each packet starts at the tracing chain (-400); a retransmission may reuse its trace id
    current: dict[str, list[str]] = {}
    packets: dict[int, list[list[str]]] = {}
    for line in out.splitlines():
        m = ENTERED.match(line.strip())
        if m:
            tid, chain = m.group(1), f"{m.group(2)} {m.group(3)} {m.group(4)}"
            if chain == "ip nstrace out":
                current[tid] = []
                packets.setdefault(int(m.group(5)), []).append(current[tid])
            else:
                current[tid].append(chain)
    nf = NftNetfilter(listing, {ip2int(a) for a in NODE_ADDRS}, random.Random(0), source="nft list ruleset")
    for dst, port, sport in cases:
        got = packets.get(sport, [])
        assert len(got) == 2, f"the kernel traced {len(got)} SYNs from :{sport}"
        binding: dict = {}
        for kernel, first_packet in zip(got, (True, False)):
            assert kernel == model_sequence(nf, dst, port, sport, binding), (dst, first_packet, kernel)
        assert (binding["OUTPUT"] is not None) == (dst == "172.30.0.41")
