"""kube-scheduler stand-in: honour nodeName, nodeSelector and taints, otherwise spread pods over Ready nodes."""
from __future__ import annotations

import random
from typing import Optional

from netsim.control.model import Node, Pod

FILTERING_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_taint(pod: Pod, node: Node):
    """The TaintToleration filter plugin: the first NoSchedule/NoExecute taint of `node` that none of
    the pod's tolerations tolerates (None: the pod may land there). PreferNoSchedule only scores."""
    for taint in node.taints:
        if taint.effect in FILTERING_EFFECTS and not any(t.tolerates(taint) for t in pod.tolerations):
            return taint
    return None


def schedule(pod: Pod, nodes: list[Node], pods_per_node: dict[str, int], rng: random.Random,
             siblings_per_node: Optional[dict[str, int]] = None) -> Optional[str]:
    """Return the node for `pod`: nodeName if set (the kubelet admits it whatever the taints); else
    among the Ready, selector-matching nodes whose taints the pod tolerates, the one with the fewest
    pods of the same owner (the default PodTopologySpread constraint on kubernetes.io/hostname,
    pkg/scheduler/framework/plugins/podtopologyspread), then the fewest pods (the
    NodeResourcesBalancedAllocation outcome for equal pods), ties broken by the cluster's seeded RNG.
    None when no node fits (the pod stays Pending)."""
    if pod.node_name:
        return pod.node_name
    sel = pod.node_selector
    feasible = [n.name for n in nodes if n.ready and all(n.labels.get(k) == v for k, v in sel.items())
                and untolerated_taint(pod, n) is None]
    if not feasible:
        return None
    sib = siblings_per_node or {}
    counts = [(sib.get(name, 0), pods_per_node.get(name, 0)) for name in feasible]
    least = min(counts)
    best = [name for name, c in zip(feasible, counts) if c == least]
    return best[0] if len(best) == 1 else rng.choice(best)


def unschedulable_message(pod: Pod, nodes: list[Node]) -> str:
    """kube-scheduler's FailedScheduling message: `0/3 nodes are available: 1 node(s) had untolerated
    taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector.`"""
    # each node counts under the first filter that rejects it, in the default profile's order
    # (TaintToleration before NodeAffinity); FitError.Error sorts the "COUNT reason" strings
    reasons: dict[str, int] = {}
    for n in nodes:
        taint = untolerated_taint(pod, n)
        if not n.ready:
            why = "node(s) were not ready"
        elif taint is not None:
            why = f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"
        elif any(n.labels.get(k) != v for k, v in pod.node_selector.items()):
            why = "node(s) didn't match Pod's node affinity/selector"
        else:
            continue
        reasons[why] = reasons.get(why, 0) + 1
    parts = ", ".join(sorted(f"{c} {why}" for why, c in reasons.items()))
    return f"0/{len(nodes)} nodes are available: {parts}."
