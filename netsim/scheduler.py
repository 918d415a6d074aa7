"""kube-scheduler stand-in: honour nodeName and nodeSelector, otherwise spread pods over Ready nodes."""
from __future__ import annotations

import random
from typing import Optional

from netsim.model import Node, Pod


class SchedulingError(ValueError):
    """No node fits the pod (names the pod and why)."""


def schedule(pod: Pod, nodes: list[Node], pods_per_node: dict[str, int], rng: random.Random) -> Optional[str]:
    """Return the node for `pod`: nodeName if set; else the Ready, selector-matching node with the
    fewest pods (the NodeResourcesBalancedAllocation/spread outcome for equal pods), ties broken by
    the cluster's seeded RNG. None when no node fits (the pod stays Pending)."""
    if pod.node_name:
        return pod.node_name
    feasible = [n for n in nodes
                if n.ready and all(n.labels.get(k) == v for k, v in pod.node_selector.items())]
    if not feasible:
        return None
    least = min(pods_per_node.get(n.name, 0) for n in feasible)
    best = [n for n in feasible if pods_per_node.get(n.name, 0) == least]
    return best[0].name if len(best) == 1 else rng.choice(best).name
