"""Names of everything the kernel backend creates: namespaces and interfaces, all carrying the cluster prefix.

Linux limits: an interface name is at most IFNAMSIZ-1 = 15 bytes; a named network namespace is a file
under /run/netns, so no '/' and not '.'/'..' (iproute2 `ip netns add` checks this). We keep namespace
names at most 48 characters so they stay readable in `ip netns list`.
"""
from __future__ import annotations

import hashlib
import re

IFNAMSIZ = 15                 # include/uapi/linux/if.h IFNAMSIZ (16) minus the NUL
MAX_NETNS = 48
_CLUSTER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$")


class ClusterNameError(ValueError):
    """A cluster name that cannot be used as a namespace prefix."""


def check_cluster_name(name: str) -> str:
    """Return `name` if it is a DNS-label-like prefix of at most 16 characters; raise otherwise."""
    if not _CLUSTER_RE.match(name):
        raise ClusterNameError(
            f"cluster name {name!r}: expected 1-16 characters of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit")
    return name


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _fit(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    h = short_hash(name)
    return f"{name[:limit - len(h) - 1]}-{h}"


def node_netns(cluster: str, node: str) -> str:
    """`<cluster>-<node>`: the node's root network namespace."""
    return _fit(f"{cluster}-{node}", MAX_NETNS)


def pod_netns(cluster: str, namespace: str, pod: str) -> str:
    """`<cluster>-<namespace>-<pod>`, hashed at the end when too long."""
    return _fit(f"{cluster}-{namespace}-{pod}", MAX_NETNS)


def underlay_netns(cluster: str) -> str:
    """The node network (an L2 bridge joining every node's eth0) lives in its own namespace."""
    return f"{cluster}-underlay"


def external_netns(cluster: str) -> str:
    """The external client: a host on the node network outside the cluster."""
    return f"{cluster}-external"


def edge_netns(cluster: str, role: str) -> str:
    """Hosts of the node network outside the cluster: `<cluster>-router`, `<cluster>-lb`."""
    return f"{cluster}-{role}"


def pod_veth(namespace: str, pod: str) -> str:
    """Node end of a pod's veth pair, like the bridge CNI plugin's `veth<8 hex>`."""
    return f"veth{short_hash(namespace + '/' + pod)}"


def underlay_port(node: str) -> str:
    """Underlay-bridge end of a node's eth0 veth pair."""
    name = f"u-{node}"
    return name if len(name) <= IFNAMSIZ else f"u-{short_hash(node, 12)}"


UNDERLAY_BRIDGE = "nodenet"
EXTERNAL_PORT = "u-external"
CNI_BRIDGE = "cni0"
VXLAN_DEV = "flannel.1"       # flannel: "flannel.<VNI>", VNI 1
VXLAN_VNI = 1
VXLAN_PORT = 8472             # flannel default: the kernel's vxlan default port (flannel pkg/backend/vxlan/vxlan.go: Port 0)
