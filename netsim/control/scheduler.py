"""kube-scheduler stand-in: honour nodeName, nodeSelector and taints, otherwise spread pods over Ready nodes."""
from __future__ import annotations

import random
from typing import Optional

from netsim.control.model import Node, Pod

FILTERING_EFFECTS = ("NoSchedule", "NoExecute")
NO_FREE_PORTS = "node(s) didn't have free ports for the requested pod ports"

HostPort = tuple[str, str, int]          # (hostIP, protocol, hostPort); hostIP "0.0.0.0" when unset


def wanted_host_ports(pod: Pod) -> list[HostPort]:
    return [(cp.host_ip or "0.0.0.0", cp.protocol, cp.host_port) for cp in pod.ports if cp.host_port]


def host_ports_conflict(wanted: list[HostPort], used: set[HostPort]) -> bool:
    """The NodePorts filter (pkg/scheduler/framework HostPortInfo.CheckConflict): the same protocol
    and port on the same address, or on 0.0.0.0 on either side."""
    for ip, proto, port in wanted:
        if ip == "0.0.0.0":
            if any(p == proto and n == port for _, p, n in used):
                return True
        elif (ip, proto, port) in used or ("0.0.0.0", proto, port) in used:
            return True
    return False


def untolerated_taint(pod: Pod, node: Node):
    """The TaintToleration filter plugin: the first NoSchedule/NoExecute taint of `node` that none of
    the pod's tolerations tolerates (None: the pod may land there). PreferNoSchedule only scores."""
    for taint in node.taints:
        if taint.effect in FILTERING_EFFECTS and not any(t.tolerates(taint) for t in pod.tolerations):
            return taint
    return None


def feasible_nodes(pod: Pod, nodes: list[Node]) -> list[str]:
    """The Filter phase: the Ready nodes whose labels match the pod's nodeSelector and whose taints the
    pod tolerates, in `nodes` order."""
    sel = pod.node_selector.items()
    only = pod.required_node              # a DaemonSet pod's node affinity (metadata.name In [NODE])
    return [n.name for n in nodes if n.ready and all(n.labels.get(k) == v for k, v in sel)
            and (only is None or n.name == only) and (not n.taints or untolerated_taint(pod, n) is None)]


def filter_key(pod: Pod) -> tuple:
    """What the Filter phase reads of a pod: pods with equal keys have equal feasible node sets (as long
    as the nodes do not change), so a scheduling pass computes it once per key."""
    return tuple(sorted(pod.node_selector.items())), tuple(pod.tolerations), pod.required_node


def schedule(pod: Pod, nodes: list[Node], pods_per_node: dict[str, int], rng: random.Random,
             siblings_per_node: Optional[dict[str, int]] = None,
             index: Optional[ScoringIndex] = None,
             used_host_ports: Optional[dict[str, set[HostPort]]] = None) -> Optional[str]:
    """Return the node for `pod`: nodeName if set (the kubelet admits it whatever the taints); else
    among the Ready, selector-matching nodes whose taints the pod tolerates, the one with the fewest
    pods of the same owner (the default PodTopologySpread constraint on kubernetes.io/hostname,
    pkg/scheduler/framework/plugins/podtopologyspread), then the fewest pods (the
    NodeResourcesBalancedAllocation outcome for equal pods), ties broken by the cluster's seeded RNG.
    None when no node fits (the pod stays Pending). `index`: a ScoringIndex over the Filter phase's
    answer for this pod's filter_key, when the caller keeps one for the pass."""
    if pod.node_name:
        return pod.node_name
    wanted = wanted_host_ports(pod)
    feasible = index.feasible if index is not None else feasible_nodes(pod, nodes)
    if index is not None and not wanted:
        if not feasible:
            return None
        best = index.best(siblings_per_node or {})
        if best is not None:
            return best[0] if len(best) == 1 else rng.choice(best)
    if wanted:          # the NodePorts filter depends on the other pods: not part of filter_key
        used = used_host_ports or {}
        feasible = [n for n in feasible if not host_ports_conflict(wanted, used.get(n, set()))]
    if not feasible:
        return None
    sib_get = (siblings_per_node or {}).get
    cnt_get = pods_per_node.get
    least: Optional[tuple[int, int]] = None
    best: list[str] = []
    for name in feasible:
        c = (sib_get(name, 0), cnt_get(name, 0))
        if least is None or c < least:
            least, best = c, [name]
        elif c == least:
            best.append(name)
    return best[0] if len(best) == 1 else rng.choice(best)


class ScoringIndex:
    """One scheduling pass's view of the feasible nodes of one filter_key, bucketed by their pod count,
    so that a pod whose owner has pods on few nodes finds its node without scoring every node. It
    answers exactly as schedule()'s scan does (same candidates, in feasible order, so the seeded RNG
    draws the same node)."""

    def __init__(self, feasible: list[str], pods_per_node: dict[str, int]) -> None:
        self.feasible = feasible
        self._order = {name: i for i, name in enumerate(feasible)}
        self._count = {name: pods_per_node.get(name, 0) for name in feasible}
        self._by_count: dict[int, set[str]] = {}
        for name, c in self._count.items():
            self._by_count.setdefault(c, set()).add(name)

    def placed(self, node: str) -> None:
        """A pod was bound to `node`: its count goes up by one."""
        c = self._count.get(node)
        if c is None:
            return
        level = self._by_count[c]
        level.discard(node)
        if not level:
            del self._by_count[c]
        self._count[node] = c + 1
        self._by_count.setdefault(c + 1, set()).add(node)

    def best(self, siblings_per_node: dict[str, int]) -> Optional[list[str]]:
        """The nodes minimising (siblings, pods), in feasible order; None when every feasible node
        already holds a sibling (the caller then scores them all)."""
        taken = [n for n, c in siblings_per_node.items() if c > 0 and n in self._order]
        if len(taken) >= len(self.feasible):
            return None
        taken_set = set(taken)
        for c in sorted(self._by_count):
            level = self._by_count[c] - taken_set if taken_set else self._by_count[c]
            if level:
                return sorted(level, key=self._order.__getitem__)
        return None


def unschedulable_message(pod: Pod, nodes: list[Node],
                          used_host_ports: Optional[dict[str, set[HostPort]]] = None) -> str:
    """kube-scheduler's FailedScheduling message: `0/3 nodes are available: 1 node(s) had untolerated
    taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector.`"""
    # each node counts under the first filter that rejects it, in the default profile's order
    # (TaintToleration before NodeAffinity); FitError.Error sorts the "COUNT reason" strings
    reasons: dict[str, int] = {}
    wanted = wanted_host_ports(pod)
    for n in nodes:
        taint = untolerated_taint(pod, n)
        if not n.ready:
            why = "node(s) were not ready"
        elif taint is not None:
            why = f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
        elif pod.required_node not in (None, n.name) or \
                any(n.labels.get(k) != v for k, v in pod.node_selector.items()):
            why = "node(s) didn't match Pod's node affinity/selector"
        elif wanted and host_ports_conflict(wanted, (used_host_ports or {}).get(n.name, set())):
            why = NO_FREE_PORTS
        else:
            continue
        reasons[why] = reasons.get(why, 0) + 1
    parts = ", ".join(sorted(f"{c} {why}" for why, c in reasons.items()))
    return f"0/{len(nodes)} nodes are available: {parts}."
