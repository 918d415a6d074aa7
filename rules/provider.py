"""The small interface every proxy mode implements, as kube-proxy has one proxier package per mode
(pkg/proxy/iptables, pkg/proxy/ipvs, pkg/proxy/nftables) behind ``proxy.Provider``
(kubernetes pkg/proxy/types.go: the Service/EndpointSlice/Node handlers plus ``Sync()``).

A provider (``netsim.rules.<mode>.provider.PROVIDER``) answers, for one mode:

* ``proxier(cluster, node)`` — kube-proxy's ``syncProxyRules`` on one node, full and partial
  (:class:`Proxier`; each sync returns a :class:`SyncResult`);
* ``render(cluster, node, ...)`` — what the mode's own tools print on that node
  (``iptables-save``; ``ipvsadm -Sn`` + ``ipset save`` + ``iptables-save``; ``nft list ruleset``);
* ``dataplane(cluster)`` — the mode's per-node state in one emulated cluster
  (:class:`ModeDataplane`): what each node's kernel holds (rule engines, IPVS tables and
  connections), kept between syncs and copied with ``fork``; the data plane runs it through
  its hooks and never looks inside;
* ``kernel_support()`` / ``program_kernel(...)`` — whether this machine's kernel can run the mode,
  and loading one sync's result into a node's network namespace;
* ``trace_actions`` — the step actions its hooks add to a trace (its vocabulary),
  ``metric_families`` — the families ``RegisterMetrics(mode)`` adds for it
  (pkg/proxy/metrics/metrics.go);
* ``measure_sync(...)`` — its proxier timed on synthetic inputs and what the kernel stage loads
  (``netsim bench``); ``iptables_only`` — its whole kernel state is one iptables-restore text, so
  every iptables backend (iptables-nft, iptables-legacy) can load it and is measured.

The registry (:mod:`netsim.rules.registry`) maps mode names to providers; nothing outside a
provider's package compares mode names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, runtime_checkable


@dataclass
class SyncResult:
    """One ``syncProxyRules`` pass on one node."""
    text: str                         # what the mode hands its restore tool (iptables-restore input ...)
    full: bool                        # a full sync (else a partial one: only the changed Services)
    state: Any = None                 # the mode's node state after the sync (IPVS: IpvsNodeState)
    # kube-proxy gauges this sync sets: (family name without subsystem, value, label value or None)
    gauges: list[tuple[str, float, Optional[str]]] = field(default_factory=list)
    seconds: float = 0.0              # how long computing the rules took (what syncProxyRules times,
    #                                   before the restore tool runs; bookkeeping excluded)


# argv[0] of a KernelLoad command that the measured backend's iptables-restore replaces
IPTABLES_RESTORE = "{iptables-restore}"


@dataclass
class KernelLoad:
    """One load of (part of) a sync into a kernel namespace, as ``netsim bench`` times it."""
    tool: str                                         # what the record calls it ("iptables-restore", ...)
    commands: list[tuple[list[str], str]]             # (argv, stdin) run in order; their times add up
    change: str = ""                                  # "": the full sync; else the change it applies
    needs_ip_vs: bool = False                         # runs only where the kernel has ip_vs and ipvsadm


@dataclass
class SyncMeasurement:
    """What a mode's proxier writes for one synthetic cluster (``netsim bench``'s sync stage): the
    full and partial sync times, the model's counts, and the loads the kernel stage times."""
    full_seconds: list[float]
    partial_seconds: list[float]
    counts: list[tuple[str, float, str, dict[str, str]]]      # (metric, value, unit, labels)
    loads: list[KernelLoad]


class Proxier(Protocol):
    """kube-proxy's proxier on one node: syncs the cluster's Services and endpoints into rules."""

    def sync(self, changed_services: set[str]) -> SyncResult:
        """One ``syncProxyRules``: full the first time (or always, when partial syncs are off),
        then partial for ``changed_services`` ("ns/name") where the mode supports it."""
        ...


class ModeDataplane(Protocol):
    """A mode's per-node kernel state in one emulated cluster (owned by the provider, held by the
    data plane): rebuilt lazily per node after a rule-relevant change, kept across syncs."""

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """The node's rule tables (``run(table, chain, pkt, now, steps) -> HookResult``, ``save()``),
        evaluated with ``rng`` (the emulator's): what ``hooks`` registers, for inspection."""
        ...

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> Any:
        """What the mode programs on the node for the data plane (netsim.skb.netfilter.NodeHooks):
        its hook registrations (hook, priority, name, ``fn(pkt, now, steps) -> HookResult``, type
        filter|nat), run by the data plane in priority order beside its own conntrack and NAT, and
        the addresses it puts on dummy devices (routed as LOCAL)."""
        ...

    # ``ipvs(node)``: the node's IPVS hooks (``local_in`` / ``local_out`` / ``reply`` /
    # ``virtual_addresses``); the attribute is None when the mode does not use IPVS
    ipvs: Optional[Callable[[str], Any]]

    def resync(self, local_addrs: Callable[[str], Optional[set[int]]], rules_changed: bool) -> None:
        """The hosts were rebuilt (``local_addrs(node)``: a node's new local addresses, None if it is
        gone); with ``rules_changed`` (a Service, EndpointSlice or Node changed) every node resyncs
        at its next packet."""
        ...

    def advance(self, now: float) -> None:
        """Run the mode's timers (IPVS connection expiry, graceful termination) up to ``now``."""
        ...

    def fork(self, rng: Any, memo: dict) -> "ModeDataplane":
        """An independent copy over the same (read-only) cluster with its own RNG and connection state."""
        ...

    def rebind(self, cluster: Any) -> None:
        """Carry on over ``cluster`` (a copy of the one this state was built from)."""
        ...


@runtime_checkable
class ProxyProvider(Protocol):
    """One proxy mode. Attributes are plain data; methods import the mode's modules lazily."""

    name: str                          # the mode name (KubeProxyConfiguration.mode)
    kube_proxy: bool                   # programs kube-proxy rules (False: a node without kube-proxy)
    walks_packets: bool                # ``dataplane`` works: packets can be traced in this mode
    notice: str                        # what a Cluster document choosing the mode is told ("": nothing)
    iptables_only: bool                # its kernel state is one iptables-restore text (any backend loads it)
    # Optional (not part of the protocol, absent means False): ``pod_external_shortcut``, whether a
    # pod's packet for an externalTrafficPolicy: Local Service's external address (a NodePort on
    # another node) goes to the Service's cluster-wide endpoints whatever the node's local ones are
    # (netsim.reach.plan then groups such probes' addressed nodes by less).
    tool: str                          # what ``render`` prints, in the mode's tools' terms
    trace_actions: tuple[str, ...]     # the step actions its hooks add to a trace
    metric_families: tuple[Any, ...]   # RegisterMetrics(mode)'s families for this mode

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> Proxier: ...

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        """The node's rules as the mode's tools print them; ``restore_input``: what kube-proxy hands
        its restore tool; ``tables``: only these tables; ``release``: the kube-proxy release whose
        rules to print, where a mode's rules differ by release."""
        ...

    def dataplane(self, cluster: Any) -> ModeDataplane: ...

    def kernel_support(self) -> Optional[str]:
        """None when this machine's kernel can run the mode, else why not (one line)."""
        ...

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> SyncMeasurement:
        """Time the proxier on kube-proxy-shaped inputs (ServicePortInfo list, endpoints by
        Service, ProxierConfig), then after ``changed_endpoints`` (one Service, ``changed_service``)."""
        ...

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        """Load one sync's result into the node's network namespace (the kernel backend)."""
        ...


KernelProgrammer = Callable[[str, Any, str, SyncResult], None]
