"""Realise a cluster in real network namespaces (`netsim up`) and keep it in step with the model.

Order of `up`: ledger, underlay bridge, external client, nodes (eth0, cni0, flannel.1, sysctls),
overlay peers, pods (veth into cni0, eth0, default route, resolv.conf), kube-proxy rules
(iptables-restore per node), pod servers and the DNS stand-in. Every namespace is written to the
ledger before it is created; any failure rolls the whole cluster back.

Safety: every link is created from a netlink socket opened inside one of *our* namespaces, with its
veth peer born directly in another of ours; the caller's namespace is never written to.
"""
from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from pyroute2.netlink.rtnl.ndmsg import NUD_PERMANENT

from netsim.kernel import cleanup, naming, netns
from netsim.kernel.plan import KernelPlan, NodePlan, PodPlan, build_plan
from netsim.kernel.state import ClusterState, PodRecord, ProcessRecord
from netsim.rules.registry import get as get_provider

RTNH_F_ONLINK = 4
VXLAN_OVERHEAD = 50                 # flannel: outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8
UNDERLAY_MTU = 1500
NODE_SYSCTLS = (
    ("net.ipv4.ip_forward", "1"),                     # a node routes pod traffic
    ("net.ipv4.conf.all.route_localnet", "1"),        # kube-proxy: localhost NodePorts (proxier.go NewProxier)
    ("net.bridge.bridge-nf-call-iptables", "1"),      # br_netfilter: bridged pod traffic sees iptables
    # Not a kubeadm default: without it the per-peer ICMP limiter (icmp_ratelimit 1000 ms, burst 6;
    # ratemask 6168 covers destination-unreachable) swallows REJECT's port-unreachable after a
    # burst, so a batch of flows to a Service without endpoints would see timeouts instead of
    # ECONNREFUSED (Documentation/networking/ip-sysctl.rst: icmp_ratelimit, icmp_ratemask). The emulator does not model rate limits.
    ("net.ipv4.icmp_ratemask", "0"),
)


class KernelBackendError(RuntimeError):
    """The kernel cluster could not be built or changed (message says what and where)."""


def check_kernel_support(proxy_mode: str) -> None:
    """Refuse proxy modes no provider emulates, or that this kernel cannot run, naming what is missing."""
    from netsim.rules.registry import ProxyModeError, get
    try:
        reason = get(proxy_mode).kernel_support()
    except ProxyModeError as e:
        raise KernelBackendError(str(e)) from None
    if reason:
        raise KernelBackendError(reason)


@dataclass
class KernelCluster:
    """A cluster model realised in namespaces named `<name>-*`."""
    cluster: Any                                  # netsim.control.cluster.Cluster
    name: str
    state: ClusterState
    plan: Optional[KernelPlan] = None
    log: Callable[[str], None] = field(default=lambda msg: None)
    kube_proxies: dict = field(default_factory=dict)     # node -> netsim.dataplane.proxy_status.KubeProxyNode

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def up(cls, cluster: Any, name: str, sources: Sequence[str] = (),
           log: Callable[[str], None] = lambda msg: None, load_rules: bool = True,
           start_servers: bool = True) -> "KernelCluster":
        """Build everything; on any failure remove what was made and raise KernelBackendError."""
        naming.check_cluster_name(name)
        check_kernel_support(cluster.config.proxy_mode)
        existing = cleanup.leftovers(name)
        if existing:
            raise KernelBackendError(
                f"cluster {name!r} is already up or left over ({', '.join(existing[:3])}"
                f"{', ...' if len(existing) > 3 else ''}); run `netsim down --name {name}` first")
        state = ClusterState(name=name, sources=list(sources), proxy_mode=cluster.config.proxy_mode,
                             created_at=time.time())
        state.save()
        kc = cls(cluster=cluster, name=name, state=state, log=log)
        try:
            kc.plan = build_plan(cluster, name)
            kc._build(load_rules=load_rules, start_servers=start_servers)
            kc.state.phase = "up"
            kc.state.save()
        except BaseException as e:
            kc.state.phase = "failed"
            kc.state.save()
            cleanup.down(name)
            if isinstance(e, (KernelBackendError, KeyboardInterrupt)):
                raise
            raise KernelBackendError(f"netsim up {name}: {type(e).__name__}: {e} (rolled back)") from e
        return kc

    def down(self) -> list[str]:
        return cleanup.down(self.name)

    # ------------------------------------------------------------------ build steps
    def _build(self, load_rules: bool, start_servers: bool) -> None:
        plan = self.plan
        assert plan is not None
        t0 = time.monotonic()
        self._make_underlay()
        self._make_edge()
        for node in plan.nodes.values():
            self._make_node(node)
        for node in plan.nodes.values():
            self._make_overlay(node)
        self._record_topology()
        self.log(f"nodes ready ({len(plan.nodes)}) in {time.monotonic() - t0:.2f}s")
        for pod in plan.pods.values():
            self._make_pod(pod)
        self.state.save()
        self.log(f"pods ready ({len(plan.pods)}) in {time.monotonic() - t0:.2f}s")
        if load_rules:
            self.sync_rules()
            self.log(f"rules loaded in {time.monotonic() - t0:.2f}s")
        for node in plan.nodes.values():
            if not node.running:
                self._set_node_link(node, up=False)
        if start_servers:
            from netsim.kernel import dnsserver
            dnsserver.write_snapshot(self.cluster, self.state)
            self._start_servers(plan.nodes)
            self.log(f"servers ready in {time.monotonic() - t0:.2f}s")

    def _new_netns(self, name: str) -> None:
        self.state.own_netns(name)                # ledger first, then the namespace
        netns.create(name)
        with netns.iproute(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def _make_underlay(self) -> None:
        plan = self.plan
        self._new_netns(plan.underlay_netns)
        with netns.iproute(plan.underlay_netns) as ipr:
            ipr.link("add", ifname=naming.UNDERLAY_BRIDGE, kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname=naming.UNDERLAY_BRIDGE)[0], state="up")

    def _attach_to_underlay(self, port: str, target_ns: str, ip: str) -> None:
        """veth pair: `port` on the underlay bridge, eth0 (with `ip`) born directly in `target_ns`."""
        plan = self.plan
        with netns.iproute(plan.underlay_netns) as ipr:
            ipr.link("add", ifname=port, kind="veth", mtu=UNDERLAY_MTU,
                     peer={"ifname": "eth0", "net_ns_fd": netns.path(target_ns), "mtu": UNDERLAY_MTU})
            br = ipr.link_lookup(ifname=naming.UNDERLAY_BRIDGE)[0]
            idx = ipr.link_lookup(ifname=port)[0]
            ipr.link("set", index=idx, master=br, state="up")
        with netns.iproute(target_ns) as ipr:
            idx = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=idx, address=ip, prefixlen=plan.node_prefixlen)
            ipr.link("set", index=idx, state="up")

    def _make_edge(self) -> None:
        """Router, external client and load balancer on the node network (see plan.EdgePlan)."""
        edge = self.plan.edge
        self.state.external_netns, self.state.external_ip = edge.external_netns, edge.external_ip
        for ns, ip, port, forwarding in ((edge.router_netns, edge.router_ip, "u-router", True),
                                         (edge.external_netns, edge.external_ip, naming.EXTERNAL_PORT, False),
                                         (edge.lb_netns, edge.lb_ip, "u-lb", True)):
            self._new_netns(ns)
            self._attach_to_underlay(port, ns, ip)
            if forwarding:
                netns.write_sysctl(ns, "net.ipv4.ip_forward", "1")
                netns.write_sysctl(ns, "net.ipv4.icmp_ratemask", "0")   # see NODE_SYSCTLS
            if ns != edge.router_netns:
                with netns.iproute(ns) as ipr:
                    ipr.route("add", dst="default", gateway=edge.router_ip,
                              oif=ipr.link_lookup(ifname="eth0")[0])
        self._set_vip_routes()

    def _set_vip_routes(self) -> None:
        """LoadBalancer and external IPs: router and client send them to the load balancer, which
        passes them on, unchanged, to the node chosen for the Service."""
        edge = self.plan.edge
        for ns in (edge.router_netns, edge.external_netns, edge.lb_netns):
            with netns.iproute(ns) as ipr:
                idx = ipr.link_lookup(ifname="eth0")[0]
                for r in ipr.route("dump", table=254):
                    if r.get("dst_len") == 32 and r.get_attr("RTA_GATEWAY"):
                        ipr.route("del", dst=f"{r.get_attr('RTA_DST')}/32", table=254)
                for vip, node_ip in sorted(edge.vip_routes.items()):
                    ipr.route("add", dst=f"{vip}/32", oif=idx,
                              gateway=node_ip if ns == edge.lb_netns else edge.lb_ip)

    def _make_node(self, node: NodePlan) -> None:
        plan = self.plan
        self._new_netns(node.netns)
        self._attach_to_underlay(node.underlay_port, node.netns, node.ip)
        for key, value in NODE_SYSCTLS:
            try:
                netns.write_sysctl(node.netns, key, value)
            except FileNotFoundError:
                if key.startswith("net.bridge."):
                    continue              # no br_netfilter in this kernel: bridged traffic skips iptables
                raise
        cidr = ipaddress.ip_network(node.pod_cidr)
        pod_mtu = UNDERLAY_MTU - VXLAN_OVERHEAD if plan.pod_network == "vxlan" else UNDERLAY_MTU
        with netns.iproute(node.netns) as ipr:
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.link("add", ifname=naming.CNI_BRIDGE, kind="bridge", mtu=pod_mtu)
            cni = ipr.link_lookup(ifname=naming.CNI_BRIDGE)[0]
            ipr.addr("add", index=cni, address=node.cni_ip, prefixlen=cidr.prefixlen)
            ipr.link("set", index=cni, state="up")
            if plan.pod_network == "vxlan":
                ipr.link("add", ifname=naming.VXLAN_DEV, kind="vxlan", vxlan_id=naming.VXLAN_VNI,
                         vxlan_local=node.ip, vxlan_link=eth0, vxlan_port=naming.VXLAN_PORT,
                         vxlan_learning=0, address=node.vtep_mac, mtu=pod_mtu)
                vx = ipr.link_lookup(ifname=naming.VXLAN_DEV)[0]
                ipr.addr("add", index=vx, address=node.vtep_ip, prefixlen=32)
                ipr.link("set", index=vx, state="up")
            # The node's default gateway: the node network's router.
            ipr.route("add", dst="default", gateway=plan.edge.router_ip, oif=eth0)

    def _make_overlay(self, node: NodePlan) -> None:
        """flannel's per-peer state: onlink route + permanent ARP + FDB (vxlan), or a route via the peer (host-gw)."""
        plan = self.plan
        with netns.iproute(node.netns) as ipr:
            if plan.pod_network == "vxlan":
                vx = ipr.link_lookup(ifname=naming.VXLAN_DEV)[0]
                for peer in plan.nodes.values():
                    if peer.name == node.name:
                        continue
                    ipr.neigh("add", dst=peer.vtep_ip, lladdr=peer.vtep_mac, ifindex=vx, state=NUD_PERMANENT)
                    ipr.fdb("append", ifindex=vx, lladdr=peer.vtep_mac, dst=peer.ip)
                    ipr.route("add", dst=peer.pod_cidr, gateway=peer.vtep_ip, oif=vx, flags=RTNH_F_ONLINK)
            else:
                eth0 = ipr.link_lookup(ifname="eth0")[0]
                for peer in plan.nodes.values():
                    if peer.name != node.name:
                        ipr.route("add", dst=peer.pod_cidr, gateway=peer.ip, oif=eth0)

    def _make_pod(self, pod: PodPlan) -> None:
        node = self.plan.nodes[pod.node]
        self.state.pods[pod.key] = PodRecord(namespace=pod.namespace, name=pod.name, netns=pod.netns,
                                             node=pod.node, ip=pod.ip)
        if pod.host_network:
            return
        self._new_netns(pod.netns)
        # a pod answers a datagram to a port nothing listens on with ICMP port unreachable; without this
        # the per-peer ICMP limiter swallows those after a burst (see NODE_SYSCTLS), which the emulator
        # does not model
        netns.write_sysctl(pod.netns, "net.ipv4.icmp_ratemask", "0")
        mtu = UNDERLAY_MTU - VXLAN_OVERHEAD if self.plan.pod_network == "vxlan" else UNDERLAY_MTU
        with netns.iproute(node.netns) as ipr:
            ipr.link("add", ifname=pod.veth, kind="veth", mtu=mtu,
                     peer={"ifname": "eth0", "net_ns_fd": netns.path(pod.netns), "mtu": mtu})
            idx = _ifindex(ipr, pod.veth)
            ipr.link("set", index=idx, master=_ifindex(ipr, naming.CNI_BRIDGE))
            ipr.brport("set", index=idx, mode=1)          # hairpin on, as the bridge CNI's hairpinMode
            ipr.link("set", index=idx, state="up")
        with netns.iproute(pod.netns) as ipr:
            idx = _ifindex(ipr, "eth0")
            ipr.addr("add", index=idx, address=pod.ip, prefixlen=pod.prefixlen)
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst="default", gateway=pod.gateway, oif=idx)
        if pod.resolv_conf:                       # /etc/netns/<netns> carries the ledger's name
            d = Path("/etc/netns") / pod.netns
            self.state.etc_netns.append(str(d))
            d.mkdir(parents=True, exist_ok=True)
            (d / "resolv.conf").write_text(pod.resolv_conf)

    def _remove_pod(self, key: str) -> None:
        rec = self.state.pods.pop(key)
        node = self.plan.nodes.get(rec.node) if self.plan else None
        if node is None or rec.netns != node.netns:
            netns.remove(rec.netns)
            if rec.netns in self.state.netns:
                self.state.netns.remove(rec.netns)
                self.state._owned.discard(rec.netns)
            d = Path("/etc/netns") / rec.netns
            if str(d) in self.state.etc_netns:
                cleanup.remove_etc_netns(d)
                self.state.etc_netns.remove(str(d))
        self.state.save()

    def _record_topology(self) -> None:
        for node in self.plan.nodes.values():
            self.state.nodes[node.name] = node.netns
            self.state.node_ips[node.name] = node.ip
        self.state.save()

    def _set_node_link(self, node: NodePlan, up: bool) -> None:
        """A stopped node: its eth0 on the node network goes down (no heartbeats, no traffic)."""
        with netns.iproute(node.netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="eth0")[0], state="up" if up else "down")
            if up and not any(r.get("dst_len") == 0 for r in ipr.route("dump", table=254)):
                ipr.route("add", dst="default", gateway=self.plan.edge.router_ip,
                          oif=ipr.link_lookup(ifname="eth0")[0])

    # ------------------------------------------------------------------ rules
    def sync_rules(self, nodes: Optional[Iterable[str]] = None) -> None:
        """Render kube-proxy's rules for each running node and load them: iptables-restore, or in
        IPVS mode ipsets + iptables + kube-ipvs0 + virtual servers (netsim.rules.ipvs.kernel)."""
        for name in (nodes if nodes is not None else self.plan.nodes):
            node = self.plan.nodes[name]
            model_node = self.cluster.node(name)
            if model_node is not None and not model_node.running:
                continue                           # a stopped kube-proxy does not resync
            self._kube_proxy(name).sync()
            self._write_proxy_status(name)

    def _kube_proxy(self, name: str):
        """The node's kube-proxy (metrics, health) whose syncs load the rules with iptables-restore.

        The backend restores the node's whole rule set on every sync (no partial restores), so the
        metrics count full syncs only. A status left by an earlier command is continued."""
        kp = self.kube_proxies.get(name)
        if kp is None:
            from netsim.kernel import proxyport
            from netsim.dataplane.proxy_status import KubeProxyNode
            path = proxyport.status_path(self.state.directory, name)
            previous = proxyport.read_status(path) if path.exists() else None
            netns_name = self.plan.nodes[name].netns
            mode = self.cluster.config.proxy_mode
            provider = get_provider(mode)

            def restore(result) -> None:
                provider.program_kernel(netns_name, self.cluster, name, result)
            kp = self.kube_proxies[name] = KubeProxyNode(
                self.cluster, name, mode, partial_syncs=False, status=previous,
                initial_list=previous is None, restore=restore)
        return kp

    def _write_proxy_status(self, name: str) -> None:
        from netsim.kernel import proxyport
        proxyport.write_status(proxyport.status_path(self.state.directory, name), self._kube_proxy(name).status)

    # ------------------------------------------------------------------ servers
    def _start_servers(self, node_names: Iterable[str]) -> None:
        """(Re)start the pod server of each node and the DNS server of its CoreDNS pods, all at
        once; each pid goes to the ledger as soon as it exists, then wait until all are ready."""
        from netsim.kernel import dnsserver, podserver, process
        launches = []
        for node_name in node_names:
            node = self.plan.nodes[node_name]
            pods = [p for p in self.plan.pods.values() if p.node == node_name]
            self._stop_servers(node_name)
            proxy_ports = get_provider(self.cluster.config.proxy_mode).kube_proxy     # a kube-proxy runs on the node
            if proxy_ports:
                from netsim.kernel import proxyport
                if not proxyport.status_path(self.state.directory, node_name).exists():
                    self._write_proxy_status(node_name)          # started, not synced yet
                pl = proxyport.launch(self.name, node.netns, node_name, self.state.directory)
                self.state.own_process(ProcessRecord(pid=pl.pid, role="kube-proxy", netns=node.netns, argv=pl.argv))
                launches.append(pl)
            for p in pods:
                if p.served_by == "kube-apiserver":
                    from netsim.kernel import apiserver
                    from netsim.control.kubeadm import kubernetes_service_ip
                    al = apiserver.launch(self.name, node.netns, node_name, node.ip,
                                          kubernetes_service_ip(self.cluster.config), self.state.directory)
                    self.state.own_process(ProcessRecord(pid=al.pid, role="kube-apiserver", netns=node.netns,
                                                         argv=al.argv))
                    launches.append(al)
            # the ports of kube-apiserver and kube-proxy have processes of their own (above)
            served = [p for p in pods if not (p.served_by == "kube-apiserver"
                                              or (p.served_by == "kube-proxy" and proxy_ports))]
            if not served:
                continue
            spec = podserver.ServerSpec(cluster=self.name, node=node_name, pods=[
                podserver.PodSocketSpec(pod=p.key, netns=p.netns, ip=p.ip,
                                        ports=[(port, proto) for port, proto in p.ports
                                               if not (p.dns_server and port == 53)], bound=list(p.bound))
                for p in served])
            ln = podserver.launch(spec, self.state.directory)
            self.state.own_process(ProcessRecord(pid=ln.pid, role="podserver", netns=node.netns, argv=ln.argv))
            launches.append(ln)
            for p in pods:
                if p.dns_server:
                    dl = dnsserver.launch(self.name, p, self.state)
                    if dl is not None:
                        self.state.own_process(ProcessRecord(pid=dl.pid, role="dns", netns=p.netns, argv=dl.argv))
                        launches.append(dl)
        process.wait_ready(launches, log=self.log)

    def _stop_servers(self, node_name: str) -> None:
        """Stop the node's pod server and the DNS servers of pods on that node."""
        node = self.plan.nodes[node_name]
        mine = {node.netns} | {rec.netns for rec in self.state.pods.values() if rec.node == node_name}
        keep = []
        for rec in self.state.processes:
            if rec.netns in mine:
                cleanup.stop_process(rec, self.name)
            else:
                keep.append(rec)
        self.state.processes = keep
        self.state.save()

    # ------------------------------------------------------------------ follow the model
    def reconcile(self) -> dict[str, list[str]]:
        """Bring namespaces, links, routes, rules and servers in line with the cluster model after a
        change (pods added/evicted, nodes stopped/started, endpoints changed). Returns what changed."""
        old = self.plan
        new = build_plan(self.cluster, self.name)
        if set(new.nodes) != set(old.nodes):
            raise KernelBackendError("adding or removing nodes of a running kernel cluster is not supported")
        self.plan = new
        changed: dict[str, list[str]] = {"pods_added": [], "pods_removed": [], "nodes": []}
        touched_nodes: set[str] = set()
        # A pod evicted from a stopped node stays (Terminating) until its kubelet confirms, so it keeps
        # its namespace. A pod recreated under the same name (a StatefulSet's db-0 after the old
        # object is gone) is a new sandbox: its old namespace goes before the new one is made.
        recreated = {k for k in set(old.pods) & set(new.pods) if old.pods[k] != new.pods[k]}
        for key in sorted((set(old.pods) - set(new.pods)) | recreated):
            touched_nodes.add(old.pods[key].node)
            self._stop_servers(old.pods[key].node)
            self._remove_pod(key)
            changed["pods_removed"].append(key)
        for key in sorted((set(new.pods) - set(old.pods)) | recreated):
            self._make_pod(new.pods[key])
            self.state.save()
            touched_nodes.add(new.pods[key].node)
            changed["pods_added"].append(key)
        for name, node in new.nodes.items():
            if node.running != old.nodes[name].running:
                self._set_node_link(node, up=node.running)
                changed["nodes"].append(f"{name}: {'up' if node.running else 'down'}")
                touched_nodes.add(name)
        self._set_vip_routes()
        self.sync_rules()
        from netsim.kernel import dnsserver
        dnsserver.write_snapshot(self.cluster, self.state)
        self._start_servers(sorted(n for n in touched_nodes if new.nodes[n].running))
        return changed


def _ifindex(ipr: Any, ifname: str) -> int:
    """One RTM_GETLINK by name (link_lookup dumps every link: quadratic on a 100-pod bridge)."""
    return ipr.link("get", ifname=ifname)[0]["index"]


def attach(cluster: Any, name: str) -> KernelCluster:
    """A KernelCluster for an already-built cluster `name` and the model it was built from."""
    state = ClusterState.load(name)
    kc = KernelCluster(cluster=cluster, name=name, state=state)
    kc.plan = build_plan(cluster, name)
    return kc
