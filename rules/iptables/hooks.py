"""Where iptables' tables hook into netfilter: each table's built-in chains as hook registrations.

Each table module registers its built-in chains at the hooks its ``valid_hooks`` names, at the
table's priority (net/ipv4/netfilter/iptable_raw.c NF_IP_PRI_RAW, iptable_mangle.c
NF_IP_PRI_MANGLE, iptable_filter.c NF_IP_PRI_FILTER; iptable_nat.c registers its chains as NAT
functions through nf_nat_ipv4_register_fn at NF_IP_PRI_NAT_DST for PREROUTING/OUTPUT and
NF_IP_PRI_NAT_SRC for INPUT/POSTROUTING). A built-in chain without rules is not registered: its
ACCEPT policy changes nothing and shows nothing in a trace.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from netsim.skb.netfilter import (FILTER, FORWARD, INPUT, NAT, NF_IP_PRI_FILTER, NF_IP_PRI_MANGLE,
                                  NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC, NF_IP_PRI_RAW, OUTPUT, POSTROUTING,
                                  PREROUTING, HookRegistration)

# table -> (type, ((built-in chain = hook, priority), ...))
TABLE_HOOKS: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...] = (
    ("raw", FILTER, ((PREROUTING, NF_IP_PRI_RAW), (OUTPUT, NF_IP_PRI_RAW))),
    ("mangle", FILTER, tuple((h, NF_IP_PRI_MANGLE) for h in (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING))),
    ("nat", NAT, ((PREROUTING, NF_IP_PRI_NAT_DST), (INPUT, NF_IP_PRI_NAT_SRC), (OUTPUT, NF_IP_PRI_NAT_DST),
                  (POSTROUTING, NF_IP_PRI_NAT_SRC))),
    ("filter", FILTER, ((INPUT, NF_IP_PRI_FILTER), (FORWARD, NF_IP_PRI_FILTER), (OUTPUT, NF_IP_PRI_FILTER))),
)


def table_hooks(nf: Any) -> tuple[HookRegistration, ...]:
    """The hook registrations of a table-based rule set (``has_rules(table, chain)`` and
    ``run(table, chain, pkt, now, steps) -> HookResult``): one per built-in chain that has rules."""
    return tuple(HookRegistration(chain, priority, table, partial(nf.run, table, chain), kind)
                 for table, kind, chains in TABLE_HOOKS
                 for chain, priority in chains if nf.has_rules(table, chain))
