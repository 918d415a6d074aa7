"""kube-proxy's IPVS mode as a provider (:mod:`netsim.rules.provider`): the proxier's syncs
(pkg/proxy/ipvs/proxier.go syncProxyRules; always full), ``ipvsadm -Sn`` + ``ipset save`` +
iptables text, each node's IPVS table and connections (kept between syncs, so connections and
graceful termination survive endpoint changes) beside the mode's iptables rules, and programming a
kernel namespace (netsim.rules.ipvs.kernel).
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Optional

from netsim.rules.provider import IPTABLES_RESTORE, KernelLoad, SyncMeasurement, SyncResult


class IpvsHooks:
    """The node's IPVS data path plus the addresses kube-ipvs0 holds (they route as LOCAL)."""

    def __init__(self, kp: Any, state: Any) -> None:
        self.kp = kp
        self.node = kp.node
        self.state = state

    def virtual_addresses(self) -> list[int]:
        from netsim.skb.packet import ip2int
        return [ip2int(a) for a in self.state.bound_addresses]

    def local_in(self, pkt, now):
        return self.node.local_in(pkt, now)

    def local_out(self, pkt, now):
        return self.node.local_out(pkt, now)

    def reply(self, pkt, now, hook="OUT"):
        return self.node.reply(pkt, now, hook)


class IpvsDataplane:
    """Every node's IPVS proxier in one emulated cluster: its table, connections and ipsets are
    kept across syncs; its iptables rules and hooks are made again after each sync."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.proxiers: dict[str, Any] = {}     # KubeProxyIpvs per node (kept across syncs)
        self.states: dict[str, Any] = {}       # the last IpvsNodeState per node
        self._synced: dict[str, Any] = {}     # nodes synced since the hosts were last rebuilt
        self._nf: dict[str, Any] = {}
        self._hooks: dict[str, IpvsHooks] = {}
        self._advanced: dict[str, float] = {}

    def _proxier(self, node: str) -> Any:
        kp = self.proxiers.get(node)
        if kp is None:
            from netsim.rules.ipvs.proxier import KubeProxyIpvs
            kp = self.proxiers[node] = KubeProxyIpvs(self.cluster, node)
        return kp

    def _state(self, node: str) -> Any:
        state = self._synced.get(node)
        if state is None:
            state = self._synced[node] = self.states[node] = self._proxier(node).sync()
        return state

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        nf = self._nf.get(node)
        if nf is None:
            from netsim.rules.iptables.provider import IptablesNetfilter
            from netsim.rules.portmap import with_host_ports
            state = self._state(node)
            text = with_host_ports(state.iptables, self.cluster, node)       # + CNI portmap's hostPort chains
            nf = self._nf[node] = IptablesNetfilter(text, local_addrs, rng, ipsets=state.ipsets,
                                                    source=f"node {node} (ipvs mode)",
                                                    ipvs_conns=self._proxier(node).node.conns)   # -m ipvs
        return nf

    def ipvs(self, node: str) -> IpvsHooks:
        """The node's IPVS hooks (its proxier synced first if the hosts changed since)."""
        h = self._hooks.get(node)
        if h is None:
            state = self._state(node)
            h = self._hooks[node] = IpvsHooks(self._proxier(node), state)
        return h

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """The mode's iptables tables (netsim.rules.iptables.hooks) and IPVS where ip_vs_core.c
        registers it (netsim.rules.ipvs.hooks); kube-ipvs0's addresses route as LOCAL."""
        from netsim.rules.iptables.hooks import table_hooks
        from netsim.rules.ipvs.hooks import ipvs_hooks
        from netsim.skb.netfilter import NodeHooks
        regs = table_hooks(self.netfilter(node, local_addrs, rng))
        h = self.ipvs(node)
        return NodeHooks(regs + ipvs_hooks(h), tuple(h.virtual_addresses()))

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        """Hosts were rebuilt: every node's proxier syncs again at its next packet."""
        self._synced = {}
        self._nf = {}
        self._hooks = {}

    def advance(self, now: float) -> None:
        """IPVS connection timers and graceful termination, once per instant per node."""
        for node, kp in self.proxiers.items():
            if now > self._advanced.get(node, 0.0):
                kp.advance(now)
                self._advanced[node] = now

    def fork(self, rng: Any, memo: dict) -> "IpvsDataplane":
        from netsim.rules.iptables.provider import fork_netfilter
        f = copy.copy(self)
        f.proxiers = {n: copy.deepcopy(kp, memo) for n, kp in self.proxiers.items()}
        f.states = {n: f.proxiers[n].state if n in f.proxiers else copy.deepcopy(st, memo)
                    for n, st in self.states.items()}
        f._synced = {n: f.states[n] for n in self._synced}
        f._nf = {n: fork_netfilter(nf, rng, memo) for n, nf in self._nf.items()}
        f._hooks = {}                          # hooks over the copied proxiers, made again lazily
        f._advanced = dict(self._advanced)
        return f

    def rebind(self, cluster: Any) -> None:
        self.cluster = cluster
        for kp in self.proxiers.values():
            kp.cluster = cluster


class IpvsProxier:
    """kube-proxy's IPVS proxier on one node (every sync is full; the table persists)."""

    def __init__(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> None:
        self.cluster = cluster
        self.node = node
        self.kp: Any = None                    # KubeProxyIpvs, made at the first sync

    def sync(self, changed_services: set[str]) -> SyncResult:
        if self.kp is None:
            from netsim.rules.ipvs.proxier import KubeProxyIpvs
            self.kp = KubeProxyIpvs(self.cluster, self.node)
        t0 = time.perf_counter()
        state = self.kp.sync()
        text = state.restore.text()
        return SyncResult(text, True, state, [], time.perf_counter() - t0)


class IpvsProvider:
    """The IPVS mode (see the module docstring)."""

    name = "ipvs"
    kube_proxy = True
    walks_packets = True
    notice = ""
    tool = "ipvsadm -Sn, ipset save, iptables-save"
    trace_actions = ("RULE", "IPVS")

    @property
    def metric_families(self) -> tuple[Any, ...]:
        from netsim.rules.metrics import IPVS
        return IPVS

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> IpvsProxier:
        return IpvsProxier(cluster, node, partial_syncs=partial_syncs)

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        """``ipvsadm -Sn``, ``ipset save`` and the iptables text (iptables-save's view, or with
        ``restore_input`` kube-proxy's own spelling), each under a ``#`` header."""
        from netsim.rules.iptables.render import iptables_save
        from netsim.rules.ipvs.proxier import build, render_sections
        state = build(cluster, node)
        if not restore_input:
            state = dataclasses.replace(state, iptables=iptables_save(state.iptables))
        return render_sections(state)

    def dataplane(self, cluster: Any) -> IpvsDataplane:
        return IpvsDataplane(cluster)

    def kernel_support(self) -> Optional[str]:
        from netsim.rules.ipvs.kernel import kernel_has_ipvs
        if kernel_has_ipvs():
            return None
        return ("proxy mode ipvs needs the ip_vs kernel module, which this kernel does not have "
                "(no /proc/net/ip_vs, no /sys/module/ip_vs); run it in a VM with `netsim verify --vm`, "
                "or use proxyMode: iptables")

    iptables_only = False             # ipsets, kube-ipvs0 and virtual servers beside its iptables text

    # a NodePort virtual server under Local holds the node's own endpoints (pkg/proxy/ipvs/proxier.go

    # syncEndpoint)

    pod_external_shortcut = False

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> SyncMeasurement:
        return measure_sync(ports, endpoints, config, changed_endpoints, changed_service, repeats)

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        """ipsets, iptables, kube-ipvs0 and the virtual servers of one sync (netsim.rules.ipvs.kernel)."""
        from netsim.rules.ipvs import kernel as ipvs
        from netsim.kernel.build import KernelBackendError
        try:
            from netsim.rules.portmap import with_host_ports
            ipvs.program_node(netns, result.state, with_host_ports(result.state.iptables, cluster, node))
        except ipvs.IpvsKernelError as e:
            raise KernelBackendError(str(e)) from None


def measure_sync(ports: list, endpoints: dict, config: Any, changed_endpoints: dict, changed_service: str,
                 repeats: int) -> SyncMeasurement:
    """The desired state applied to a fresh node (virtual servers, real servers, ipsets, its
    iptables text), timed; then the same node after one endpoint joined a Service: the real servers
    added, and the whole iptables text it restores on every sync (pkg/proxy/ipvs/proxier.go)."""
    from netsim.rules.iptables.provider import count_rules
    from netsim.rules.ipvs.proxier import KubeProxyIpvs, desired_state
    node_ip = config.node_ip

    def fresh() -> Any:
        return KubeProxyIpvs(None, config.node_name, config=config, node_addresses=[node_ip])

    times, kp, state = [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        kp = fresh()
        state = kp.apply(desired_state(ports, endpoints, config, [node_ip]))
        times.append(time.perf_counter() - t0)
    assert kp is not None and state is not None
    full_save, ipset_text, ipt = state.ipvsadm_save(), state.ipset_save(), state.iptables
    vs = len(state.table)
    rs = sum(len(v.dests) for v in state.table)
    before = set(full_save.splitlines())
    ptimes, after = [], None
    for i in range(repeats):
        if i:                                          # re-apply the change on a node in the old state
            kp = fresh()
            kp.apply(desired_state(ports, endpoints, config, [node_ip]))
        t0 = time.perf_counter()
        after = kp.apply(desired_state(ports, changed_endpoints, config, [node_ip]))
        ptimes.append(time.perf_counter() - t0)
    assert after is not None
    ops = [line for line in after.ipvsadm_save().splitlines() if line not in before]
    restore = after.restore.text()
    change = {"change": "add-one-endpoint"}
    counts = [
        ("virtual_servers", vs, "virtual servers", {}),
        ("real_servers", rs, "real servers", {}),
        ("ipset_entries", sum(1 for line in ipset_text.splitlines() if line.startswith("add ")), "entries", {}),
        ("ruleset_rules", count_rules(ipt), "rules", {"table": "all"}),
        ("ruleset_lines", full_save.count("\n") + ipset_text.count("\n") + ipt.count("\n"), "lines", {}),
        ("ruleset_bytes", len((full_save + ipset_text + ipt).encode()), "bytes", {}),
        ("incremental_ipvs_operations", len(ops), "operations", change),
        ("incremental_restore_rules", count_rules(restore), "rules", change),
        ("incremental_restore_bytes", len(restore.encode()), "bytes", change),
    ]
    # the order one sync loads them: ipsets before the iptables rules that match them
    loads = [KernelLoad("ipset restore", [(["ipset", "restore"], ipset_text)]),
             KernelLoad("ipvsadm -R", [(["ipvsadm", "-R"], full_save)], needs_ip_vs=True),
             KernelLoad("iptables-restore", [([IPTABLES_RESTORE, "-w", "5"], ipt)]),
             KernelLoad("iptables-restore --noflush", [([IPTABLES_RESTORE, "-w", "5", "--noflush"], restore)],
                        change="add-one-endpoint"),
             KernelLoad("ipvsadm -a", [(["ipvsadm", *line.split()], "") for line in ops], change="add-one-endpoint",
                        needs_ip_vs=True)]
    return SyncMeasurement(times, ptimes, counts, loads)


PROVIDER = IpvsProvider()
