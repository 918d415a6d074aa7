"""Program kube-proxy's IPVS mode into a node namespace of a kernel that has ip_vs.

What one IPVS sync leaves on a node (kubernetes pkg/proxy/ipvs/proxier.go NewProxier and
syncProxyRules), in kube-proxy's order:

1. the IPVS sysctls NewProxier sets: ``net.ipv4.vs.conntrack=1``, ``expire_nodest_conn=1``,
   ``expire_quiescent_template=1`` (conn_reuse_mode is left alone on kernels >= 5.9);
2. the dummy link ``kube-ipvs0`` (EnsureDummyDevice; kube-proxy never sets it up);
3. the KUBE-* ipsets and their members (``ipset restore``; syncIPSetEntries), before
   the iptables rules that match them;
4. the IPVS mode's iptables rules (``iptables-restore``; writeIptablesRules + the built-in
   chain jumps), the same text the emulator evaluates;
5. the service addresses bound to kube-ipvs0 as /32 (EnsureAddressBind), stale ones removed;
6. the virtual and real servers, as netlink changes against what the kernel holds
   (``ipvsadm -R`` lines: -A/-E/-D for services, -a/-e/-d for real servers), so connection
   counters survive a resync as they do under kube-proxy.

The desired state comes from the emulator's proxier (netsim.rules.ipvs.proxier.KubeProxyIpvs),
so a kernel node and an emulated node hold the same table.
"""
from __future__ import annotations

import os
from typing import Optional

from netsim.kernel import netns
from netsim.rules.ipvs.ipvsadm import parse_save, render_save
from netsim.rules.ipvs.proxier import DUMMY_DEVICE, IpvsNodeState
from netsim.rules.ipvs.table import IpvsTable, RealServer, VirtualServer

IPVS_SYSCTLS = (
    ("net.ipv4.vs.conntrack", "1"),
    ("net.ipv4.vs.expire_nodest_conn", "1"),
    ("net.ipv4.vs.expire_quiescent_template", "1"),
)
IP_VS_MODULE = "ip_vs"


class IpvsKernelError(RuntimeError):
    """A step of the IPVS programming failed (carries the tool's own message)."""


def kernel_has_ipvs() -> bool:
    """ip_vs is loaded (or built in): /proc/net/ip_vs exists in every namespace then."""
    return os.path.exists("/proc/net/ip_vs") or os.path.isdir(f"/sys/module/{IP_VS_MODULE}")


def _run(ns: str, argv: list[str], text: str = "") -> None:
    proc = netns.run(ns, argv, input=text, check=False)
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split())
        raise IpvsKernelError(f"{' '.join(argv)} in {ns}: exit {proc.returncode}: {msg}")


def ipset_restore_input(state: IpvsNodeState) -> str:
    """``ipset -exist restore`` input: every set created (kept if present) and flushed, then filled."""
    out = []
    for line in state.ipset_save().splitlines():
        out.append(line)
        if line.startswith("create "):
            out.append(f"flush {line.split()[1]}")
    return "\n".join(out) + "\n"


def _svc_switch(vs: VirtualServer) -> str:
    return {"TCP": "-t", "UDP": "-u", "SCTP": "--sctp-service"}[vs.protocol] + f" {vs.addr}"


def ipvsadm_changes(current: IpvsTable, desired: IpvsTable) -> list[str]:
    """``ipvsadm -R`` lines that turn `current` into `desired` (kube-proxy's per-object netlink
    calls: AddVirtualServer/UpdateVirtualServer/DeleteVirtualServer, Add/Update/DeleteRealServer)."""
    want_svc = {line.split(" -s ")[0][3:]: line[3:] for line in render_save(desired).splitlines()
                if line.startswith("-A ")}
    have_svc = {line.split(" -s ")[0][3:]: line[3:] for line in render_save(current).splitlines()
                if line.startswith("-A ")}
    out: list[str] = []
    for key in have_svc:
        if key not in want_svc:
            out.append(f"-D {key}")
    for key, spec in want_svc.items():
        if key not in have_svc:
            out.append(f"-A {spec}")
        elif have_svc[key] != spec:
            out.append(f"-E {spec}")
    cur = {vs.key: vs for vs in current}
    for vs in desired:
        have: dict[tuple[int, int], RealServer] = {}
        if vs.key in cur:
            have = {(d.ip, d.port): d for d in cur[vs.key].dests}
        want = {(d.ip, d.port): d for d in vs.dests}
        svc = _svc_switch(vs)
        for k, d in have.items():
            if k not in want:
                out.append(f"-d {svc} -r {d.addr}")
        # oldest first, so the kernel's list (newest at the head) ends in the emulator's order
        for d in reversed(vs.dests):
            old = have.get((d.ip, d.port))
            if old is None:
                out.append(f"-a {svc} -r {d.addr} -m -w {d.weight}")
            elif old.weight != d.weight:
                out.append(f"-e {svc} -r {d.addr} -m -w {d.weight}")
    return out


def kernel_table(ns: str) -> IpvsTable:
    """The virtual-server table the kernel holds in namespace `ns` (``ipvsadm -Sn``)."""
    return parse_save(netns.run(ns, ["ipvsadm", "-Sn"]).stdout, source=f"ipvsadm -Sn in {ns}")


def _sync_dummy(ns: str, addresses: list[str]) -> None:
    with netns.iproute(ns) as ipr:
        found = ipr.link_lookup(ifname=DUMMY_DEVICE)
        if not found:
            ipr.link("add", ifname=DUMMY_DEVICE, kind="dummy")
            found = ipr.link_lookup(ifname=DUMMY_DEVICE)
        idx = found[0]
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
        for ip in addresses:
            if ip not in have:
                ipr.addr("add", index=idx, address=ip, prefixlen=32)
        for ip in have - set(addresses):
            ipr.addr("del", index=idx, address=ip, prefixlen=32)


def program_node(ns: str, state: IpvsNodeState, iptables: Optional[str] = None) -> list[str]:
    """Make the kernel namespace `ns` hold `state`; returns the ipvsadm changes applied. `iptables`
    replaces the proxier's iptables text (e.g. with the CNI portmap chains merged in)."""
    if not kernel_has_ipvs():
        raise IpvsKernelError(f"proxy mode ipvs needs the {IP_VS_MODULE} kernel module, which this kernel "
                              "does not have; run it in the VM (`netsim verify --vm`)")
    for key, value in IPVS_SYSCTLS:
        netns.write_sysctl(ns, key, value)
    _sync_dummy(ns, [])                                   # the link first, addresses after the rules
    _run(ns, ["ipset", "-exist", "restore"], ipset_restore_input(state))
    _run(ns, ["iptables-restore", "-w", "5"], state.iptables if iptables is None else iptables)
    _sync_dummy(ns, list(state.bound_addresses))
    changes = ipvsadm_changes(kernel_table(ns), state.table)
    if changes:
        _run(ns, ["ipvsadm", "-R"], "\n".join(changes) + "\n")
    return changes
