"""kube-scheduler stand-in: honour nodeName and nodeSelector, otherwise spread pods over Ready nodes."""
from __future__ import annotations

import random
from typing import Optional

from netsim.model import Node, Pod


def schedule(pod: Pod, nodes: list[Node], pods_per_node: dict[str, int], rng: random.Random) -> Optional[str]:
    """Return the node for `pod`: nodeName if set; else the Ready, selector-matching node with the
    fewest pods (the NodeResourcesBalancedAllocation/spread outcome for equal pods), ties broken by
    the cluster's seeded RNG. None when no node fits (the pod stays Pending)."""
    if pod.node_name:
        return pod.node_name
    sel = pod.node_selector
    if sel:
        feasible = [n.name for n in nodes if n.ready and all(n.labels.get(k) == v for k, v in sel.items())]
    else:
        feasible = [n.name for n in nodes if n.ready]
    if not feasible:
        return None
    counts = [pods_per_node.get(name, 0) for name in feasible]
    least = min(counts)
    best = [name for name, c in zip(feasible, counts) if c == least]
    return best[0] if len(best) == 1 else rng.choice(best)
