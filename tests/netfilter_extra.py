"""A walker whose nodes carry kube-proxy's rules plus a few rules of the test's own (raw table,
an OUTPUT DROP, ...), as an administrator or another agent on the node would add them."""
from __future__ import annotations

from netsim.rules.iptables.provider import IptablesNetfilter
from netsim.dataplane.walker import Walker


def with_rules(text: str, table: str, rules: list[str]) -> str:
    """iptables-save text with ``rules`` appended to ``table`` (the table is made when missing)."""
    lines = text.rstrip("\n").split("\n")
    try:
        start = lines.index(f"*{table}")
    except ValueError:
        chains = {"raw": ("PREROUTING", "OUTPUT"), "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
                  "filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")}[table]
        return "\n".join(lines + [f"*{table}", *(f":{c} ACCEPT [0:0]" for c in chains), *rules, "COMMIT"]) + "\n"
    end = lines.index("COMMIT", start)
    return "\n".join(lines[:end] + rules + lines[end:]) + "\n"


def walker_with(cluster, extra: dict[str, dict[str, list[str]]]) -> Walker:
    """A Walker whose node N gets kube-proxy's rules plus ``extra[N][table]`` rules."""
    from netsim.rules.iptables.proxier import render

    def factory(walker: Walker, node: str) -> IptablesNetfilter:
        text = render(walker.cluster, node)
        for table, rules in extra.get(node, {}).items():
            text = with_rules(text, table, rules)
        return IptablesNetfilter(text, walker.topology.hosts[node].routes.local, walker.rng, source=f"node {node}")

    return Walker(cluster, netfilter_factory=factory)
