"""Load kube-proxy's iptables rules into a node namespace, and read them back.

The text comes from the proxier (`netsim.rules.iptables.proxier.render(cluster, node)`), i.e. the
iptables-restore input kube-proxy writes. Two things kube-proxy does outside that text are done here:
- the jump rules from the built-in chains (EnsureRule -I on every full sync: kube-proxy
  pkg/proxy/iptables/proxier.go syncProxyRules / iptablesJumpChains, pkg/util/iptables/iptables.go EnsureRule), added when the text does not carry them, in the order the
  insert-at-top sequence leaves on a fresh node;
- the nfacct counter objects (created over netlink before the restore: proxier.go
  syncProxyRules, pkg/proxy/util/nfacct): a rule naming a missing
  counter makes the whole restore fail.
"""
from __future__ import annotations

import os
import re
import socket
import struct
from typing import Any

from netsim.kernel import netns

# (table, built-in chain, rule args) in final iptables-save order (reverse of insertion:
# EnsureRule(Prepend) inserts at position 1 and never moves an existing rule).
JUMP_RULES: tuple[tuple[str, str, str], ...] = (
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
)
BUILTIN_CHAINS = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
                  "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}
_NFACCT_RE = re.compile(r"--nfacct-name\s+(\S+)")


class RulesError(RuntimeError):
    """The rules could not be rendered or loaded (carries iptables-restore's own message)."""


def render(cluster: Any, node_name: str) -> str:
    """The proxier's iptables-restore input for node `node_name` (one full kube-proxy sync)."""
    try:
        from netsim.rules.iptables import proxier
    except ImportError:
        proxier = None
    if proxier is not None and hasattr(proxier, "render"):
        return proxier.render(cluster, node_name)
    try:
        from netsim.rules.iptables.proxier_cluster import (endpoints_for_node, proxier_config_for_node,
                                                           service_port_infos)
        from netsim.rules.iptables.proxier_sync import sync_proxy_rules
    except ImportError as e:
        raise RulesError(f"the iptables proxier (netsim.rules.iptables) is not available: {e}") from None
    ports = service_port_infos(cluster)
    return sync_proxy_rules(ports, endpoints_for_node(cluster, ports, node_name),
                            proxier_config_for_node(cluster, node_name)).text()


def with_jump_rules(text: str) -> str:
    """Add the built-in chain jumps (and declare the built-in chains) in each table that lacks them."""
    tables: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("*"):
            tables.append((line[1:].strip(), []))
        elif tables:
            tables[-1][1].append(line)
    out: list[str] = []
    for table, lines in tables:
        body = [l for l in lines if l.strip() != "COMMIT"]
        has_jumps = any(re.match(rf"-A ({'|'.join(BUILTIN_CHAINS.get(table, ('-',)))}) ", l) for l in body)
        out.append(f"*{table}")
        if table in BUILTIN_CHAINS and not has_jumps:
            declared = {l.split()[0][1:] for l in body if l.startswith(":")}
            for chain in BUILTIN_CHAINS[table]:
                if chain not in declared:
                    out.append(f":{chain} ACCEPT [0:0]")
        out.extend(l for l in body if l.startswith(":"))
        if table in BUILTIN_CHAINS and not has_jumps:
            out.extend(f"-A {chain} {args}" for t, chain, args in JUMP_RULES if t == table)
        out.extend(l for l in body if l and not l.startswith(":"))
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def restore_input(cluster: Any, node_name: str) -> str:
    """What is loaded into a node: the proxier's text plus the built-in chain jumps, and the CNI
    portmap plugin's hostPort chains (netsim.rules.portmap) where a pod on the node maps a host port."""
    from netsim.rules.portmap import with_host_ports
    return with_host_ports(with_jump_rules(render(cluster, node_name)), cluster, node_name)


def nfacct_names(text: str) -> list[str]:
    return sorted(set(_NFACCT_RE.findall(text)))


def _nfacct_add(name: str) -> None:
    """NFNL_SUBSYS_ACCT / NFNL_MSG_ACCT_NEW with NFACCT_NAME, as `nfacct add` sends (per netns)."""
    NETLINK_NETFILTER, NFNL_SUBSYS_ACCT, NFNL_MSG_ACCT_NEW, NFACCT_NAME = 12, 7, 0, 1
    NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 1, 4, 0x400
    raw = name.encode()[:31] + b"\0"
    attr = struct.pack("HH", 4 + len(raw), NFACCT_NAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    payload = struct.pack("BBH", socket.AF_UNSPEC, 0, 0) + attr
    msg = struct.pack("IHHII", 16 + len(payload), (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW,
                      NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, 1, 0) + payload
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as s:
        s.send(msg)
        reply = s.recv(4096)
    _, mtype, _, _, _ = struct.unpack_from("IHHII", reply)
    if mtype == 2:                                       # NLMSG_ERROR
        (err,) = struct.unpack_from("i", reply, 16)
        if err not in (0, -17, -16):                     # ack; EEXIST/EBUSY: already there (in use)
            raise RulesError(f"nfacct add {name}: {os.strerror(-err)}")


def ensure_nfacct(netns_name: str, text: str) -> list[str]:
    names = nfacct_names(text)
    if names:
        with netns.entered(netns_name):
            for name in names:
                _nfacct_add(name)
    return names


def restore(netns_name: str, text: str) -> None:
    """iptables-restore `text` inside the namespace (a full restore of each table it names)."""
    ensure_nfacct(netns_name, text)
    proc = netns.run(netns_name, ["iptables-restore", "-w", "5"], input=text, check=False)
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split())
        raise RulesError(f"iptables-restore in {netns_name}: exit {proc.returncode}: {msg}")


def save(netns_name: str, counters: bool = True) -> str:
    """`iptables-save [-c]` inside the namespace."""
    return netns.run(netns_name, ["iptables-save"] + (["-c"] if counters else [])).stdout


def live_iptables_save(cluster_name: str, node: str) -> str:
    """`iptables-save -c` in node `node` of the running kernel cluster `cluster_name`."""
    from netsim.kernel.state import ClusterState
    state = ClusterState.load(cluster_name)
    ns = state.nodes.get(node)
    if ns is None:
        raise LookupError(f"kernel cluster {cluster_name!r} has no node {node!r} "
                          f"(nodes: {', '.join(sorted(state.nodes)) or 'none'})")
    return save(ns, counters=True)
