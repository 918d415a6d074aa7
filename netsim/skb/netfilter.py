"""The netfilter hook vocabulary: hook points, the kernel's priorities, and a registration.

Every layer that registers a function at a hook (the data plane's conntrack and NAT, each proxy
mode's provider in ``netsim.rules``) speaks this vocabulary, so it lives in this leaf package.

The kernel keeps, per hook, a list of ``struct nf_hook_ops`` ordered by ascending priority
(include/linux/netfilter.h: "Hooks are ordered in ascending priority") and runs them in that
order (nf_hook_slow). The priorities below are defined once, here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

# The five IPv4 hooks (include/uapi/linux/netfilter.h enum nf_inet_hooks: NF_INET_PRE_ROUTING,
# NF_INET_LOCAL_IN, NF_INET_FORWARD, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING), named as iptables
# names its built-in chains.
PREROUTING = "PREROUTING"
INPUT = "INPUT"
FORWARD = "FORWARD"
OUTPUT = "OUTPUT"
POSTROUTING = "POSTROUTING"
HOOKS = (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING)

# include/uapi/linux/netfilter_ipv4.h enum nf_ip_hook_priorities
INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1
NF_IP_PRI_FIRST = INT_MIN
NF_IP_PRI_RAW_BEFORE_DEFRAG = -450
NF_IP_PRI_CONNTRACK_DEFRAG = -400
NF_IP_PRI_RAW = -300
NF_IP_PRI_SELINUX_FIRST = -225
NF_IP_PRI_CONNTRACK = -200
NF_IP_PRI_MANGLE = -150
NF_IP_PRI_NAT_DST = -100
NF_IP_PRI_FILTER = 0
NF_IP_PRI_SECURITY = 50
NF_IP_PRI_NAT_SRC = 100
NF_IP_PRI_SELINUX_LAST = 225
NF_IP_PRI_CONNTRACK_HELPER = 300
NF_IP_PRI_CONNTRACK_CONFIRM = INT_MAX
NF_IP_PRI_LAST = INT_MAX

# net/netfilter/ipvs/ip_vs_core.c ip_vs_ops4: IPVS's own registrations, (kernel function, hook,
# priority). ip_vs_out_hook handles replies of VS/NAT connections (the source becomes the virtual
# address again), ip_vs_in_hook schedules requests and forwards them (ip_vs_nat_xmit), and
# ip_vs_forward_icmp catches ICMP errors for incoming IPVS connections on the FORWARD path.
IP_VS_OPS4: tuple[tuple[str, str, int], ...] = (
    ("ip_vs_out_hook", INPUT, NF_IP_PRI_NAT_SRC - 2),        # "After packet filtering, change source only for VS/NAT"
    ("ip_vs_in_hook", INPUT, NF_IP_PRI_NAT_SRC - 1),         # "forward packet through VS/DR, VS/TUN, or VS/NAT"
    ("ip_vs_out_hook", OUTPUT, NF_IP_PRI_NAT_DST + 1),       # "Before ip_vs_in, change source only for VS/NAT"
    ("ip_vs_in_hook", OUTPUT, NF_IP_PRI_NAT_DST + 2),        # "After mangle, schedule and forward local requests"
    ("ip_vs_forward_icmp", FORWARD, 99),                     # "catch icmp destined for 0.0.0.0/0"
    ("ip_vs_out_hook", FORWARD, 100),                        # "After packet filtering, change source only for VS/NAT"
)

# What a registered function is, as nftables names a base chain's type (nft(8) CHAINS: "type
# filter", "type nat"): FILTER decides a verdict for every packet; NAT is asked only for a
# connection's first packet, from inside nf_nat's own hook (nf_nat_ipv4_ops: NF_IP_PRI_NAT_DST at
# PREROUTING and OUTPUT, NF_IP_PRI_NAT_SRC at INPUT and POSTROUTING; net/netfilter/nf_nat_core.c
# nf_nat_register_fn orders the NAT functions of one hook by their priority), and the binding its
# result asks for is then applied by conntrack to every packet of the connection.
FILTER = "filter"
NAT = "nat"

# hook function: fn(packet, now, steps) -> HookResult (netsim.skb.hook_result), where ``steps``
# (a trace hop's step list, or None) gets the trace steps the function wants shown
HookFn = Callable[[Any, float, Optional[list]], Any]


@dataclass(frozen=True)
class HookRegistration:
    """One function registered at one hook (``struct nf_hook_ops``): a proxy mode's provider
    returns these for each node; the data plane adds its own (conntrack, NAT, confirm)."""
    hook: str                  # PREROUTING | INPUT | FORWARD | OUTPUT | POSTROUTING
    priority: int              # NF_IP_PRI_*, an IP_VS_OPS4 priority, or an nft base chain's declared one
    name: str                  # how a DROP names it: an iptables table ("filter"), an nft chain, "ipvs"
    fn: HookFn
    type: str = FILTER         # FILTER | NAT (see above)


@dataclass(frozen=True)
class NodeHooks:
    """What a provider programs on one node for the data plane: its hook registrations, and the
    addresses it puts on dummy devices (IPVS mode's kube-ipvs0), which route as LOCAL."""
    registrations: tuple[HookRegistration, ...] = ()
    local_addresses: tuple[int, ...] = ()
