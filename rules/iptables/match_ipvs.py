"""`-m ipvs`: the xt_ipvs match (net/netfilter/xt_ipvs.c, ipvs_mt; userspace extensions/libxt_ipvs.c).

kube-proxy's IPVS mode writes it in the filter table's KUBE-IPVS-OUT-FILTER chain
(pkg/proxy/ipvs/proxier.go, syncProxyRules: a LoadBalancer IP whose loadBalancerSourceRanges do
not admit the node) as ``-s VIP -m ipvs --vaddr VIP --vproto tcp --vport 80 -j DROP``.

What the kernel does, in ipvs_mt's order:
* only ``--ipvs`` (possibly negated): the packet's ``skb->ipvs_property`` (IPVS handled it);
* any other option implies ``--ipvs`` (libxt_ipvs ipvs_mt_check): a packet IPVS has not handled
  never matches, even with the option negated;
* ``--vproto`` compares the packet's own protocol;
* then the IPVS connection is looked up with the packet's addresses read inverted
  (``ip_vs_fill_iph_skb(family, skb, true, &iph)`` + ``conn_out_get``): the original-direction
  packet after IPVS's DNAT (client -> real server) finds its connection; no connection, no match;
* ``--vport``, ``--vportctl`` (the controlling connection's virtual port: a persistence template),
  ``--vdir`` (conntrack's direction; an untracked packet does not match), ``--vmethod`` (the
  connection's forwarding method: kube-proxy's virtual servers are all MASQ, the emulated ones too),
  ``--vaddr ADDR[/MASK]`` ((cp->vaddr ^ addr) & mask == 0).

iptables-save text (libxt_ipvs ipvs_mt_dump with prefix "--"): options in the order ipvs, vproto
(as a number), vaddr (address as given, mask omitted when /32, prefix length when contiguous),
vport (number), vdir, vmethod, vportctl; ``--ipvs`` is printed only when it is the only option.
Pinned against iptables' own test vectors (extensions/libipt_ipvs.t) in tests/test_match_ipvs.py.
"""
from __future__ import annotations

import socket
from typing import Any, Optional

from netsim.rules.iptables.ruleset import IptablesError, Match, Opt
from netsim.rules.iptables.values import int2ip, ip2int, parse_cidr, parse_proto

OPTIONS = {"--ipvs": 0, "--vproto": 1, "--vaddr": 1, "--vport": 1, "--vdir": 1, "--vmethod": 1,
           "--vportctl": 1}
METHODS = ("GATE", "IPIP", "MASQ")      # IP_VS_CONN_F_DROUTE, _TUNNEL, _MASQ
KUBE_PROXY_METHOD = "MASQ"              # every connection of an emulated (kube-proxy) virtual server


def _last(opts: list[Opt], name: str) -> Optional[Opt]:
    for o in reversed(opts):
        if o.name == name:
            return o
    return None


def _port(text: str, where: str, name: str) -> int:
    """XTTYPE_PORT: a number or a service name (xtables_getportbyname: getservbyname(3))."""
    try:
        v = int(text, 10)
    except ValueError:
        try:
            return socket.getservbyname(text)
        except OSError:
            raise IptablesError(f"{where}: {name} expects a port number or a service name, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise IptablesError(f"{where}: {name} port must be 0-65535, got {text!r}")
    return v


def _mask_text(mask: int) -> str:
    """xtables_ipmask_to_numeric: '' for /32, '/N' for a contiguous mask, '/a.b.c.d' otherwise."""
    if mask == 0xFFFFFFFF:
        return ""
    inv = ~mask & 0xFFFFFFFF
    if inv & (inv + 1) == 0:
        return f"/{32 - inv.bit_length()}"
    return f"/{int2ip(mask)}"


def build(opts: list[Opt], header: Any, where: str, key: object) -> Match:
    """Compile ``-m ipvs ...`` (see the module docstring for the kernel's semantics)."""
    if not opts:
        raise IptablesError(f"{where}: -m ipvs needs at least one option (IPVS: At least one option is required)")
    prop = _last(opts, "--ipvs")
    others = [o for o in opts if o.name != "--ipvs"]
    if others and prop is not None and prop.neg:
        raise IptablesError(f"{where}: ! --ipvs cannot be together with other options")
    parts = ["-m ipvs"]
    if not others:
        parts.append(f"{'! ' if prop.neg else ''}--ipvs")
        neg = prop.neg
        return Match("ipvs", opts, " ".join(parts), lambda p, c: bool(p.ipvs_property) != neg, pure=True)

    proto = vaddr = vport = vdir = method = portctl = None
    o = _last(opts, "--vproto")
    if o is not None:
        proto = (parse_proto(o.args[0], where), o.neg)
        parts.append(f"{'! ' if o.neg else ''}--vproto {proto[0]}")
    o = _last(opts, "--vaddr")
    if o is not None:
        addr_s, _, _ = o.args[0].partition("/")
        _net, mask = parse_cidr(o.args[0], where)
        addr = ip2int(addr_s, where)
        vaddr = (addr, mask, o.neg)
        parts.append(f"{'! ' if o.neg else ''}--vaddr {int2ip(addr)}{_mask_text(mask)}")
    o = _last(opts, "--vport")
    if o is not None:
        vport = (_port(o.args[0], where, "--vport"), o.neg)
        parts.append(f"{'! ' if o.neg else ''}--vport {vport[0]}")
    o = _last(opts, "--vdir")
    if o is not None:
        if o.neg:
            raise IptablesError(f"{where}: --vdir cannot be negated (write --vdir REPLY)")
        d = o.args[0].upper()
        if d not in ("ORIGINAL", "REPLY"):
            raise IptablesError(f"{where}: --vdir must be ORIGINAL or REPLY, got {o.args[0]!r}")
        vdir = d == "REPLY"
        parts.append(f"--vdir {d}")
    o = _last(opts, "--vmethod")
    if o is not None:
        m = o.args[0].upper()
        if m not in METHODS:
            raise IptablesError(f"{where}: --vmethod must be one of GATE, IPIP, MASQ, got {o.args[0]!r}")
        method = (m, o.neg)
        parts.append(f"{'! ' if o.neg else ''}--vmethod {m}")
    o = _last(opts, "--vportctl")
    if o is not None:
        portctl = (_port(o.args[0], where, "--vportctl"), o.neg)
        parts.append(f"{'! ' if o.neg else ''}--vportctl {portctl[0]}")

    def test(p: Any, c: Any) -> bool:
        if not p.ipvs_property:
            return False
        if proto is not None and (p.proto == proto[0]) == proto[1]:
            return False
        conns = c.ipvs_conns
        if conns is None:
            return False                    # no IPVS on this host: no connection to find
        cp = conns.out_get(p.proto, p.dst, p.dport, p.src, p.sport, c.now)
        if cp is None:
            return False
        if vport is not None and (cp.vport == vport[0]) == vport[1]:
            return False
        if portctl is not None:
            ctl = cp.control
            if (ctl is not None and ctl.vport == portctl[0]) == portctl[1]:
                return False
        if vdir is not None:
            if p.ct is None or bool(p.ct_reply) != vdir:
                return False
        if method is not None and (KUBE_PROXY_METHOD == method[0]) == method[1]:
            return False
        if vaddr is not None and (((cp.vaddr ^ vaddr[0]) & vaddr[1]) == 0) == vaddr[2]:
            return False
        return True

    return Match("ipvs", opts, " ".join(parts), test, pure=True)
