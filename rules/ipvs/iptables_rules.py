"""The iptables rules kube-proxy's IPVS proxier writes next to IPVS (proxier.go writeIptablesRules,
createAndLinkKubeChain, acceptIPVSTraffic) – a constant-size set of rules that match ipsets.

Spelling is kube-proxy's (as handed to ``iptables-restore``), e.g. ``--or-mark 0x00004000``; the
node view adds the built-in chains and the jump rules kube-proxy installs with
``EnsureRule(Prepend, ...)``, laid out like the iptables proxier's node view (rules/iptables/proxier.py).
Rules matching a set are written only when the set is non-empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from netsim.rules.iptables.proxier_inputs import ProxierConfig
from netsim.rules.ipvs import kube_ipsets as S

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_NODE_PORT = "KUBE-NODE-PORT"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_SOURCE_RANGES_FIREWALL = "KUBE-SOURCE-RANGES-FIREWALL"
KUBE_IPVS_FILTER = "KUBE-IPVS-FILTER"
KUBE_IPVS_OUT_FILTER = "KUBE-IPVS-OUT-FILTER"

# iptablesChains, in proxier.go order
IPTABLES_CHAINS: tuple[tuple[str, str], ...] = (
    ("nat", KUBE_SERVICES), ("nat", KUBE_POSTROUTING), ("nat", KUBE_NODE_PORT), ("nat", KUBE_LOAD_BALANCER),
    ("nat", KUBE_MARK_MASQ), ("filter", KUBE_FORWARD), ("filter", KUBE_NODE_PORT),
    ("filter", KUBE_PROXY_FIREWALL), ("filter", KUBE_SOURCE_RANGES_FIREWALL), ("filter", KUBE_IPVS_FILTER),
    ("filter", KUBE_IPVS_OUT_FILTER),
)

# iptablesJumpChain: (table, from, to, comment), each installed with EnsureRule(Prepend)
JUMP_CHAINS: tuple[tuple[str, str, str, str], ...] = (
    ("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    ("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    ("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    ("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    ("filter", "INPUT", KUBE_NODE_PORT, "kubernetes health check rules"),
    ("filter", "INPUT", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    ("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kube-proxy firewall rules"),
    ("filter", "INPUT", KUBE_IPVS_FILTER, "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", KUBE_IPVS_OUT_FILTER, "kubernetes ipvs access filter"),
)

# ipsetWithIptablesChain: (set, table, from chain, target, match type, protocol match)
IPSET_WITH_IPTABLES_CHAIN: tuple[tuple[str, str, str, str, str, str], ...] = (
    (S.KUBE_LOOP_BACK, "nat", KUBE_POSTROUTING, "MASQUERADE", "dst,dst,src", ""),
    (S.KUBE_LOAD_BALANCER, "nat", KUBE_SERVICES, KUBE_LOAD_BALANCER, "dst,dst", ""),
    (S.KUBE_LOAD_BALANCER_LOCAL, "nat", KUBE_LOAD_BALANCER, "RETURN", "dst,dst", ""),
    (S.KUBE_NODE_PORT_LOCAL_TCP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "tcp"),
    (S.KUBE_NODE_PORT_TCP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "tcp"),
    (S.KUBE_NODE_PORT_LOCAL_UDP, "nat", KUBE_NODE_PORT, "RETURN", "dst", "udp"),
    (S.KUBE_NODE_PORT_UDP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst", "udp"),
    (S.KUBE_NODE_PORT_LOCAL_SCTP, "nat", KUBE_NODE_PORT, "RETURN", "dst,dst", "sctp"),
    (S.KUBE_NODE_PORT_SCTP, "nat", KUBE_NODE_PORT, KUBE_MARK_MASQ, "dst,dst", "sctp"),
    (S.KUBE_LOAD_BALANCER_FW, "filter", KUBE_PROXY_FIREWALL, KUBE_SOURCE_RANGES_FIREWALL, "dst,dst", ""),
    (S.KUBE_LOAD_BALANCER_SOURCE_CIDR, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
    (S.KUBE_LOAD_BALANCER_SOURCE_IP, "filter", KUBE_SOURCE_RANGES_FIREWALL, "RETURN", "dst,dst,src", ""),
)

BUILTIN_CHAINS = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
                  "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
TABLE_ORDER = ("filter", "nat")


def _c(text: str) -> str:
    return f'"{text}"'


@dataclass
class IpvsRestoreData:
    """What kube-proxy hands to ``iptables-restore --noflush --counters`` in IPVS mode."""
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)

    def text(self) -> str:
        """natChains, natRules, filterChains, filterRules – the order syncProxyRules concatenates."""
        lines = (["*nat"] + self.nat_chains + self.nat_rules + ["COMMIT"]
                 + ["*filter"] + self.filter_chains + self.filter_rules + ["COMMIT"])
        return "\n".join(lines) + "\n"


def write_iptables_rules(nonempty: set[str], config: ProxierConfig,
                         lb_no_node_access: list[tuple[str, str, int]]) -> IpvsRestoreData:
    """writeIptablesRules(): ``nonempty`` names the ipsets that have entries."""
    out = IpvsRestoreData()
    for table, chain in IPTABLES_CHAINS:
        (out.nat_chains if table == "nat" else out.filter_chains).append(f":{chain} - [0:0]")
    nat, flt = out.nat_rules, out.filter_rules
    mark = config.masquerade_mark

    nat.append(f"-A {KUBE_SERVICES} -s {'::1/128' if config.ipv6 else '127.0.0.0/8'} -j RETURN")
    for name, table, src, target, match, proto in IPSET_WITH_IPTABLES_CHAIN:
        if name not in nonempty:
            continue
        rule = f"-A {src}" + (f" -p {proto}" if proto else "") + \
            f" -m comment --comment {_c(S.comment(name))} -m set --match-set {name} {match} -j {target}"
        (flt if table == "filter" else nat).append(rule)

    if S.KUBE_CLUSTER_IP in nonempty:
        head = (f"-A {KUBE_SERVICES} -m comment --comment {_c(S.comment(S.KUBE_CLUSTER_IP))} "
                f"-m set --match-set {S.KUBE_CLUSTER_IP}")
        if config.masquerade_all:
            nat.append(f"{head} dst,dst -j {KUBE_MARK_MASQ}")
        elif config.local_detector is not None:
            nat.append(f"{head} dst,dst {config.local_detector.if_not_local} -j {KUBE_MARK_MASQ}")
        else:
            # no local detector: masquerade node-originated traffic whose source is a VIP
            nat.append(f"{head} src,dst -j {KUBE_MARK_MASQ}")

    def external_ip_rules(args: str) -> None:
        nat.append(f"{args} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
        nat.append(f"{args} -m addrtype --dst-type LOCAL -j ACCEPT")

    if S.KUBE_EXTERNAL_IP in nonempty:
        args = (f"-A {KUBE_SERVICES} -m comment --comment {_c(S.comment(S.KUBE_EXTERNAL_IP))} "
                f"-m set --match-set {S.KUBE_EXTERNAL_IP} dst,dst")
        nat.append(f"{args} -j {KUBE_MARK_MASQ}")
        external_ip_rules(args)
    if S.KUBE_EXTERNAL_IP_LOCAL in nonempty:
        external_ip_rules(f"-A {KUBE_SERVICES} -m comment --comment {_c(S.comment(S.KUBE_EXTERNAL_IP_LOCAL))} "
                          f"-m set --match-set {S.KUBE_EXTERNAL_IP_LOCAL} dst,dst")

    nat.append(f"-A {KUBE_SERVICES} -m addrtype --dst-type LOCAL -j {KUBE_NODE_PORT}")
    nat.append(f"-A {KUBE_LOAD_BALANCER} -j {KUBE_MARK_MASQ}")
    flt.append(f"-A {KUBE_SOURCE_RANGES_FIREWALL} -j DROP")
    for ip, proto, port in lb_no_node_access:
        flt.append(f"-A {KUBE_IPVS_OUT_FILTER} -s {ip} -m ipvs --vaddr {ip} --vproto {proto} "
                   f"--vport {port} -j DROP")
    # acceptIPVSTraffic(): must be the last rules of KUBE-SERVICES
    for name in (S.KUBE_CLUSTER_IP, S.KUBE_LOAD_BALANCER):
        if name in nonempty:
            nat.append(f"-A {KUBE_SERVICES} -m set --match-set {name} dst,dst -j ACCEPT")

    flt.append(f"-A {KUBE_FORWARD} -m comment --comment {_c('kubernetes forwarding rules')} "
               f"-m mark --mark {mark}/{mark} -j ACCEPT")
    flt.append(f"-A {KUBE_FORWARD} -m comment --comment {_c('kubernetes forwarding conntrack rule')} "
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.append(f"-A {KUBE_NODE_PORT} -m comment --comment {_c(S.comment(S.KUBE_HEALTH_CHECK_NODE_PORT))} "
               f"-m set --match-set {S.KUBE_HEALTH_CHECK_NODE_PORT} dst -j ACCEPT")
    # KUBE-IPVS-FILTER: no host ports through VIPs (kubernetes issue #72236)
    for name, match in ((S.KUBE_LOAD_BALANCER, "dst,dst"), (S.KUBE_CLUSTER_IP, "dst,dst"),
                        (S.KUBE_EXTERNAL_IP, "dst,dst"), (S.KUBE_EXTERNAL_IP_LOCAL, "dst,dst"),
                        (S.KUBE_HEALTH_CHECK_NODE_PORT, "dst")):
        flt.append(f"-A {KUBE_IPVS_FILTER} -m set --match-set {name} {match} -j RETURN")
    flt.append(f"-A {KUBE_IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {S.KUBE_IPVS_IPS} dst "
               "-j REJECT")

    nat.append(f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN")
    nat.append(f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}")
    nat.append(f"-A {KUBE_POSTROUTING} -m comment --comment {_c('kubernetes service traffic requiring SNAT')} "
               "-j MASQUERADE" + (" --random-fully" if config.random_fully else ""))
    nat.append(f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}")
    return out


def jump_rules() -> dict[str, dict[str, list[str]]]:
    """EnsureRule(Prepend) on a fresh node: each jump goes to position 1 of its built-in chain."""
    chains: dict[str, dict[str, list[str]]] = {t: {c: [] for c in BUILTIN_CHAINS[t]} for t in BUILTIN_CHAINS}
    for table, src, dst, comment in JUMP_CHAINS:
        rule = f"-A {src} -m comment --comment {_c(comment)} -j {dst}"
        if rule not in chains[table][src]:
            chains[table][src].insert(0, rule)
    return chains


def node_view_text(data: IpvsRestoreData, tables: Optional[tuple[str, ...]] = None) -> str:
    """iptables-save-style text of the node: built-in chains (policy ACCEPT) with the jump rules,
    user chains sorted by name, then kube-proxy's rules in the order it wrote them."""
    jumps = jump_rules()
    restored = {"filter": (data.filter_chains, data.filter_rules), "nat": (data.nat_chains, data.nat_rules)}
    out: list[str] = []
    for table in TABLE_ORDER:
        if tables is not None and table not in tables:
            continue
        chain_lines, rules = restored[table]
        user = sorted(line[1:].split(" ", 1)[0] for line in chain_lines)
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table]]
        out += [f":{c} - [0:0]" for c in user]
        for chain in BUILTIN_CHAINS[table]:
            out += jumps[table][chain]
        out += rules
        out.append("COMMIT")
    return "\n".join(out) + "\n"
