"""Small clusters for the IPVS tests: two nodes, backend pods pinned to nodes, one Service."""
from __future__ import annotations

import textwrap
from typing import Optional

from netsim.control.manifests import load_text

HEADER = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: ipvst}
spec:
  nodes:
    - {name: node-1, ip: 192.168.49.2}
    - {name: node-2, ip: 192.168.49.3}
  proxyMode: ipvs
  ipvsScheduler: %(scheduler)s
  coredns: {enabled: false}
  kubeadm: {enabled: false}
"""

POD = """\
---
apiVersion: v1
kind: Pod
metadata: {name: %(name)s, labels: {app: web}}
spec:
  nodeName: %(node)s
  containers: [{name: c, image: httpd, ports: [{name: http, containerPort: 8080}]}]
"""


def cluster_with(service_yaml: str, pods: Optional[dict[str, str]] = None, scheduler: str = "rr",
                 extra: str = ""):
    """``pods`` maps pod name -> node (default web-1 on node-1, web-2 on node-2).

    Pod IPs: node-1 has podCIDR 10.244.0.0/24 (first pod .2), node-2 10.244.1.0/24.
    """
    pods = {"web-1": "node-1", "web-2": "node-2"} if pods is None else pods
    text = HEADER % {"scheduler": scheduler}
    for name, node in pods.items():
        text += POD % {"name": name, "node": node}
    text += "---\n" + textwrap.dedent(service_yaml)
    if extra:
        text += "---\n" + textwrap.dedent(extra)
    return load_text(text, source="<ipvs test>")
