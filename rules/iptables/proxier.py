"""kube-proxy's iptables proxier for one node: the rule text a node holds after a full sync.

``render(cluster, node)`` = kube-proxy's ``iptables-restore`` input (see proxier_sync) plus what it
creates outside the restore on a fresh node:

* the jump rules from the built-in chains (``iptablesJumpChains`` then
  ``iptablesKubeletJumpChains``, each ``EnsureChain`` + ``EnsureRule(Prepend, …)``, i.e. inserted
  with ``-I`` at position 1, so every built-in chain lists them in reverse insertion order);
* the empty ``KUBE-PROXY-CANARY`` chain in mangle, nat and filter (``iptables.Monitor``).

Tables are written filter, nat, mangle; built-in chains with policy ACCEPT; user chains sorted
by name; rules in the order they are evaluated. Rule arguments are spelled as kube-proxy writes
them (``--or-mark 0x00004000``, ``-m tcp -p tcp``), which ``iptables-restore`` accepts as is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from netsim.control.heap import deferred_gc
from netsim.rules.iptables.proxier_cluster import (
    endpoints_for_node,
    proxier_config_for_node,
    service_port_infos,
)
from netsim.rules.iptables.proxier_inputs import (
    EndpointInfo,
    LocalTrafficDetector,
    ProxierConfig,
    ProxierInputError,
    ServicePortInfo,
)
from netsim.rules.iptables.proxier_sync import (
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_CANARY,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    BlockCache,
    RestoreData,
    compute_probability,
    endpoints_key,
    local_services,
    sync_proxy_rules,
)

__all__ = [
    "EndpointInfo", "LocalTrafficDetector", "ProxierConfig", "ProxierInputError", "ServicePortInfo",
    "JumpRule", "JUMP_RULES", "BUILTIN_CHAINS", "compute_probability", "endpoints_key",
    "sync_proxy_rules", "restore_data", "restore_text", "render",
]

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
TABLE_ORDER = ("filter", "nat", "mangle")


@dataclass(frozen=True)
class JumpRule:
    """One entry of kube-proxy's iptablesJumpChains / iptablesKubeletJumpChains."""
    table: str
    dst_chain: str
    src_chain: str
    comment: str
    extra_args: str = ""

    def rule(self) -> str:
        parts = [f"-A {self.src_chain}"]
        if self.extra_args:
            parts.append(self.extra_args)
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.dst_chain}")
        return " ".join(parts)


_NEW = "-m conntrack --ctstate NEW"
# proxier.go iptablesJumpChains, then iptablesKubeletJumpChains, in source order.
JUMP_RULES: tuple[JumpRule, ...] = (
    JumpRule("filter", KUBE_EXTERNAL_SERVICES, "INPUT", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", KUBE_EXTERNAL_SERVICES, "FORWARD", "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    JumpRule("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", _NEW),
    JumpRule("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", _NEW),
    JumpRule("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    JumpRule("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    JumpRule("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
    JumpRule("filter", KUBE_FIREWALL, "INPUT", ""),
    JumpRule("filter", KUBE_FIREWALL, "OUTPUT", ""),
)


@deferred_gc()
def restore_data(cluster: Any, node_name: str, config: Optional[ProxierConfig] = None,
                 cache: Optional[BlockCache] = None) -> RestoreData:
    """kube-proxy's full-sync restore input for ``node_name`` (structured). ``cache``: per-Service
    lines shared with other nodes' syncs (:class:`BlockCache`; the same text, written once)."""
    cfg = config or proxier_config_for_node(cluster, node_name)
    if cache is None:
        ports = service_port_infos(cluster)
        return sync_proxy_rules(ports, endpoints_for_node(cluster, ports, cfg.node_name), cfg)
    if cache.ports is None:
        cache.ports = service_port_infos(cluster)
        cache.local = local_services(cluster.endpoint_slices(), cache.node_specific)
    ports = cache.ports
    wanted = [p for p in ports if cache.wants_endpoints(p, cfg.node_name, cfg.node_ip)]
    # (the first sync reads every port's endpoints: none kept; the next ones read the ports written
    # per node, whose endpoints are kept for the nodes after)
    seen = cache.endpoints if cache.large_cluster_mode is not None else None
    return sync_proxy_rules(ports, endpoints_for_node(cluster, wanted, cfg.node_name, seen), cfg, cache=cache)


def restore_text(cluster: Any, node_name: str, config: Optional[ProxierConfig] = None) -> str:
    """Exactly the text kube-proxy hands to ``iptables-restore --noflush`` on a full sync."""
    return restore_data(cluster, node_name, config).text()


def _builtin_jump_rules() -> dict[str, dict[str, list[str]]]:
    """Simulate EnsureRule(Prepend) on a fresh node: each rule goes to position 1."""
    chains: dict[str, dict[str, list[str]]] = {t: {c: [] for c in BUILTIN_CHAINS[t]} for t in BUILTIN_CHAINS}
    for jump in JUMP_RULES:
        existing = chains[jump.table][jump.src_chain]
        if jump.rule() not in existing:
            existing.insert(0, jump.rule())
    return chains


def render(cluster: Any, node_name: str, config: Optional[ProxierConfig] = None,
           tables: Optional[tuple[str, ...]] = None, canary: bool = True,
           cache: Optional[BlockCache] = None) -> str:
    """The iptables-save-style text of ``node_name`` after kube-proxy's first full sync (``cache``:
    see :func:`restore_data`)."""
    data = restore_data(cluster, node_name, config, cache)
    return node_view_text(data, tables=tables, canary=canary)


def node_view_text(data: RestoreData, tables: Optional[tuple[str, ...]] = None, canary: bool = True) -> str:
    """Combine a restore input with the built-in chains, jump rules and canaries of a fresh node."""
    return _view_text(data, tables, canary)


def own_view_text(own: RestoreData) -> str:
    """What a node sharing chains with other nodes parses itself (its restore input less the chains
    it shares, rules/iptables/provider.split_own): its node view without the shared chains'
    declarations and rules — not loadable on its own (its top-level chains jump to the shared chains)."""
    return _view_text(own, None, True)


def _view_text(data: RestoreData, tables: Optional[tuple[str, ...]], canary: bool) -> str:
    wanted = tables or TABLE_ORDER
    for t in wanted:
        if t not in BUILTIN_CHAINS:
            raise ProxierInputError(f"table {t!r} is not one of {', '.join(TABLE_ORDER)}")
    jumps = _builtin_jump_rules()
    restored = {
        "filter": (data.filter_chains, data.filter_rules),
        "nat": (data.nat_chains, data.nat_rules),
        "mangle": ([], []),
    }
    # At 10,000 Services this is ~400,000 lines: the restore input's own declaration lines are
    # reused, and the text is joined once (no copy for the last newline), as the rendered rules
    # and their text are the largest things a trace builds.
    out: list[str] = []
    for table in TABLE_ORDER:
        if table not in wanted:
            continue
        chain_lines, rules = restored[table]
        declared = {line[1:].split(" ", 1)[0]: line for line in chain_lines}
        user_chains = set(declared)
        user_chains |= {j.dst_chain for j in JUMP_RULES if j.table == table}
        if canary:
            user_chains.add(KUBE_PROXY_CANARY)
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in BUILTIN_CHAINS[table]]
        for c in sorted(user_chains):
            line = declared.get(c)
            out.append(line if line is not None and line == f":{c} - [0:0]" else f":{c} - [0:0]")
        for chain in BUILTIN_CHAINS[table]:
            out += jumps[table][chain]
        out.extend(r for r in rules if not r.startswith("-X "))
        out.append("COMMIT")
    out.append("")
    return "\n".join(out)
