"""IPVS's hook functions on a node: its data path registered where ip_vs_core.c registers it.

netsim.skb.netfilter.IP_VS_OPS4 lists the kernel's registrations; here each becomes a function over
the node's IPVS data path (netsim.rules.ipvs.datapath), turning its decision into a verdict and
an ``IPVS`` trace step:

* ip_vs_out_hook (LOCAL_IN, LOCAL_OUT, FORWARD): a reply of a VS/NAT connection gets the virtual
  address back as its source; it marks the packet handled (``skb->ipvs_property``), so
  ip_vs_in_hook after it leaves it alone;
* ip_vs_in_hook (LOCAL_IN, LOCAL_OUT): schedules a request to a real server and rewrites its
  destination; at LOCAL_IN IPVS transmits the packet itself (ip_vs_nat_xmit: NF_STOLEN), at
  LOCAL_OUT it goes on through the hooks; with net.ipv4.vs.conntrack=1 the unconfirmed conntrack
  entry follows (ip_vs_update_conntrack). A virtual service without destinations rejects
  (ip_vs_leave: ICMP port unreachable) or drops.

ip_vs_forward_icmp is not registered: ICMP errors about IPVS connections are translated by
ip_vs_out_hook's ICMP path (ip_vs_out_icmp), the only ICMP the emulated nodes see on FORWARD.
On the FORWARD path only the trace step and the conntrack update of a decision count, as before
this data path had hooks.
"""
from __future__ import annotations

from typing import Any, Optional

from netsim.skb.netfilter import FORWARD, INPUT, IP_VS_OPS4, OUTPUT, HookRegistration


def ipvs_hooks(datapath: Any) -> tuple[HookRegistration, ...]:
    """The node's IPVS registrations over ``datapath`` (``local_in`` / ``local_out`` /
    ``reply(pkt, now, hook)`` returning an IpvsDecision or None)."""
    from netsim.skb.hook_result import ACCEPTED, HookResult
    from netsim.skb.step import Step

    def result(dec: Any, pkt: Any, steps: Optional[list], stolen: bool, verdicts: bool) -> Any:
        if dec is None:
            return ACCEPTED
        pkt.ipvs_property = True
        before = f"{dec.before[0]}:{dec.before[1]}" if dec.before[0] else ""
        after = f"{dec.after[0]}:{dec.after[1]}" if dec.after[0] else ""
        if steps is not None:
            steps.append(Step("IPVS", f"{dec.hook}: {dec.action} {before + ' -> ' + after if before else ''} "
                                      f"({dec.reason})".replace("  ", " "),
                              {"before": before, "after": after} if before else None))
        action = dec.action
        if action == "dnat":
            return HookResult("STOLEN" if stolen else "ACCEPT", ct_dnat=True)
        if verdicts and action == "reject":
            return HookResult("REJECT", reason=dec.reason, reply=getattr(dec, "icmp", None))
        if verdicts and action == "drop":
            return HookResult("DROP", reason=dec.reason)
        return ACCEPTED

    def out_hook(hook: str, label: str) -> Any:
        verdicts = hook != FORWARD

        def ip_vs_out_hook(pkt: Any, now: float, steps: Optional[list]) -> Any:
            if pkt.ipvs_property:
                return ACCEPTED
            return result(datapath.reply(pkt, now, label), pkt, steps, False, verdicts)
        return ip_vs_out_hook

    def in_hook(hook: str) -> Any:
        request = datapath.local_in if hook == INPUT else datapath.local_out
        stolen = hook == INPUT

        def ip_vs_in_hook(pkt: Any, now: float, steps: Optional[list]) -> Any:
            if pkt.ipvs_property:
                return ACCEPTED
            return result(request(pkt, now), pkt, steps, stolen, True)
        return ip_vs_in_hook

    labels = {INPUT: "LOCAL_IN", OUTPUT: "LOCAL_OUT", FORWARD: "FORWARD"}
    regs = []
    for kernel_fn, hook, priority in IP_VS_OPS4:
        if kernel_fn == "ip_vs_out_hook":
            fn = out_hook(hook, labels[hook])
        elif kernel_fn == "ip_vs_in_hook":
            fn = in_hook(hook)
        else:
            continue                    # ip_vs_forward_icmp: see the module docstring
        regs.append(HookRegistration(hook, priority, "ipvs", fn))
    return tuple(regs)
