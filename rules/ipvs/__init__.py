"""kube-proxy's IPVS mode: the virtual-server table and kernel schedulers (table, schedulers,
hashing), the connection table and data path (conn, datapath), ipvsadm text (ipvsadm), and the
proxier that programs a node (proxier, kube_ipsets, iptables_rules, graceful)."""
from netsim.rules.ipvs.datapath import IpvsDecision, IpvsNode
from netsim.rules.ipvs.table import IpvsError, IpvsTable, RealServer, VirtualServer

__all__ = ["IpvsDecision", "IpvsError", "IpvsNode", "IpvsTable", "RealServer", "VirtualServer"]
