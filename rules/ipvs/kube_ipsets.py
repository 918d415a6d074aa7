"""The ipsets kube-proxy's IPVS proxier maintains: names, types, comments (pkg/proxy/ipvs/ipset.go,
``ipsetInfo`` in proxier.go) and their creation options (pkg/proxy/ipvs/ipset/ipset.go).

The comment strings are what kube-proxy puts in the ``-m comment`` of the iptables rule that
matches each set; the sets themselves are created without the comment extension.
"""
from __future__ import annotations

from dataclasses import dataclass

from netsim.rules.ipset import IpSet, IpsetStore

KUBE_LOOP_BACK = "KUBE-LOOP-BACK"
KUBE_CLUSTER_IP = "KUBE-CLUSTER-IP"
KUBE_EXTERNAL_IP = "KUBE-EXTERNAL-IP"
KUBE_EXTERNAL_IP_LOCAL = "KUBE-EXTERNAL-IP-LOCAL"
KUBE_LOAD_BALANCER = "KUBE-LOAD-BALANCER"
KUBE_LOAD_BALANCER_FW = "KUBE-LOAD-BALANCER-FW"
KUBE_LOAD_BALANCER_LOCAL = "KUBE-LOAD-BALANCER-LOCAL"
KUBE_LOAD_BALANCER_SOURCE_IP = "KUBE-LOAD-BALANCER-SOURCE-IP"
KUBE_LOAD_BALANCER_SOURCE_CIDR = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
KUBE_NODE_PORT_TCP = "KUBE-NODE-PORT-TCP"
KUBE_NODE_PORT_LOCAL_TCP = "KUBE-NODE-PORT-LOCAL-TCP"
KUBE_NODE_PORT_UDP = "KUBE-NODE-PORT-UDP"
KUBE_NODE_PORT_LOCAL_UDP = "KUBE-NODE-PORT-LOCAL-UDP"
KUBE_NODE_PORT_SCTP = "KUBE-NODE-PORT-SCTP-HASH"
KUBE_NODE_PORT_LOCAL_SCTP = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
KUBE_HEALTH_CHECK_NODE_PORT = "KUBE-HEALTH-CHECK-NODE-PORT"
KUBE_IPVS_IPS = "KUBE-IPVS-IPS"


@dataclass(frozen=True)
class KubeIpsetInfo:
    name: str
    type: str
    comment: str


# ipsetInfo, in proxier.go order (also the order `ipset save` lists them here).
IPSET_INFO: tuple[KubeIpsetInfo, ...] = (
    KubeIpsetInfo(KUBE_LOOP_BACK, "hash:ip,port,ip",
                  "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose"),
    KubeIpsetInfo(KUBE_CLUSTER_IP, "hash:ip,port", "Kubernetes service cluster ip + port for masquerade purpose"),
    KubeIpsetInfo(KUBE_EXTERNAL_IP, "hash:ip,port",
                  "Kubernetes service external ip + port for masquerade and filter purpose"),
    KubeIpsetInfo(KUBE_EXTERNAL_IP_LOCAL, "hash:ip,port",
                  "Kubernetes service external ip + port with externalTrafficPolicy=local"),
    KubeIpsetInfo(KUBE_LOAD_BALANCER, "hash:ip,port", "Kubernetes service lb portal"),
    KubeIpsetInfo(KUBE_LOAD_BALANCER_FW, "hash:ip,port",
                  "Kubernetes service load balancer ip + port for load balancer with sourceRange"),
    KubeIpsetInfo(KUBE_LOAD_BALANCER_LOCAL, "hash:ip,port",
                  "Kubernetes service load balancer ip + port with externalTrafficPolicy=local"),
    KubeIpsetInfo(KUBE_LOAD_BALANCER_SOURCE_IP, "hash:ip,port,ip",
                  "Kubernetes service load balancer ip + port + source IP for packet filter purpose"),
    KubeIpsetInfo(KUBE_LOAD_BALANCER_SOURCE_CIDR, "hash:ip,port,net",
                  "Kubernetes service load balancer ip + port + source cidr for packet filter purpose"),
    KubeIpsetInfo(KUBE_NODE_PORT_TCP, "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"),
    KubeIpsetInfo(KUBE_NODE_PORT_LOCAL_TCP, "bitmap:port",
                  "Kubernetes nodeport TCP port with externalTrafficPolicy=local"),
    KubeIpsetInfo(KUBE_NODE_PORT_UDP, "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"),
    KubeIpsetInfo(KUBE_NODE_PORT_LOCAL_UDP, "bitmap:port",
                  "Kubernetes nodeport UDP port with externalTrafficPolicy=local"),
    KubeIpsetInfo(KUBE_NODE_PORT_SCTP, "hash:ip,port",
                  "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'"),
    KubeIpsetInfo(KUBE_NODE_PORT_LOCAL_SCTP, "hash:ip,port",
                  "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'"),
    KubeIpsetInfo(KUBE_HEALTH_CHECK_NODE_PORT, "bitmap:port", "Kubernetes health check node port"),
    KubeIpsetInfo(KUBE_IPVS_IPS, "hash:ip", "Addresses on the ipvs interface"),
)
IPSET_BY_NAME = {i.name: i for i in IPSET_INFO}


def comment(name: str) -> str:
    return IPSET_BY_NAME[name].comment


def new_kube_ipsets() -> IpsetStore:
    """All kube-proxy sets, empty, created as ``ipset create <name> <type> ... -exist`` does:
    hash types ``family inet hashsize 1024 maxelem 65536``, bitmap:port ``range 0-65535``."""
    store = IpsetStore()
    for info in IPSET_INFO:
        store.create(info.name, info.type, family="inet", hashsize=1024, maxelem=65536,
                     port_range=(0, 65535))
    return store


def fill(store: IpsetStore, entries: dict[str, set[str]]) -> None:
    """Set each set's members to ``entries[name]`` (sorted, for a stable `ipset save`)."""
    for info in IPSET_INFO:
        s: IpSet = store.get(info.name)
        s.flush()
        for e in sorted(entries.get(info.name, ()), key=_entry_sort_key):
            s.add(e)


def _entry_sort_key(entry: str) -> tuple:
    out = []
    for part in entry.replace(":", ",").split(","):
        if part.count(".") == 3:
            out.append((0, tuple(int(x) for x in part.split("/")[0].split("."))))
        elif part.isdigit():
            out.append((1, int(part)))
        else:
            out.append((2, part))
    return tuple(out)
