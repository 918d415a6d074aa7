"""Probes and the exact class reduction.

kube-proxy never looks at pod labels: what a new connection meets depends on the rules of the nodes
it crosses, the kind of source (pod, host process, the endpoint itself — hairpin —, external) and
which address atom its source IP falls in. So per Service, nodes group into *views* (one under
Cluster policies; under a Local policy, by the node's local endpoints and their conditions), and a
source class is (kind, view of its node, atom) — for a NodePort also the view of the node addressed
and whether it is the source's own node. Every raw (source, destination) probe maps to one class
key; a class is traced once, through one representative member. With several versions (a diff),
a key is the tuple of the per-version keys, so classes are the common refinement and rows align.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

from netsim.control.heap import deferred_gc
from netsim.reach.atoms import Atoms
from netsim.reach.evaluate import ALL_NODES
from netsim.reach.inventory import Inventory, Member, ServiceFacts

DEST_KINDS = ("clusterip", "clusterip-unused", "nodeport", "nodeport-secondary", "nodeport-localhost", "loadbalancer",
              "externalip", "dns")
# a NodePort on one node's address: its primary (the node IP) or its secondary (the first other address
# on the node, the pods' gateway on the bridge); kube-proxy's iptables mode takes a NodePort on every
# local address (`-m addrtype --dst-type LOCAL`, nodePortAddresses unset), its nftables mode on the
# primary only (nodePortAddresses' default "primary" since v1.31, pkg/proxy/nftables/proxier.go)
NODE_ADDRESSED = ("nodeport", "nodeport-secondary")
SAMPLES = 3
DNS_SERVICE = "kube-system/kube-dns"      # the cluster DNS Service a pod's resolv.conf points at


@dataclass(frozen=True)
class Slot:
    """A destination of one Service, the same across versions (its address may differ per version)."""

    service: str
    kind: str
    port: int
    proto: str                      # tcp | udp | sctp
    ident: str = ""                 # LB / external IP or DNS name (part of the identity); "" otherwise

    def sources(self) -> tuple[str, ...]:
        if self.kind == "dns":
            return ("pod",)
        if self.kind == "nodeport-localhost":
            return ("host",)
        return ("pod", "host", "external")


@dataclass(slots=True)
class ProbeClass:
    """One row of the matrix per model: a destination slot and a source class, its members' count,
    a few sample members and the representative raw probe (member, addressed node) per version."""

    key: str
    slot: Slot
    source: str                                   # the source class, readable
    count: int = 0
    samples: list[str] = field(default_factory=list)
    rep: Optional[tuple[Member, Optional[str]]] = None
    parts: list[tuple] = field(default_factory=list)  # (members, addressed nodes, own node?, excluded) to expand
    shared_from: Optional[str] = None             # signature sharing: the class whose verdict this row takes
    hairpin: bool = False                         # members are endpoints: each reaches itself as rep does


@dataclass(frozen=True)
class RawProbe:
    """One concrete probe of one version: trace ``src`` (in ``namespace``) to ``dst``."""

    version: str
    src: str
    namespace: str
    dst: str
    proto: str


def _base_view(inv: Inventory, node: Optional[str]) -> Optional[str]:
    """A node's state as the rules see it, the part of its view every Service shares (None: the node
    is not in this version)."""
    n = inv.nodes.get(node) if node is not None else None
    if n is None:
        return None
    return "ready" if (n.ready and n.running) else ("notready" if n.running else "stopped")


def _plain(base: Optional[str], node_dependent: bool) -> Optional[str]:
    """The view of a node without local endpoints: its base view (marked ``local[]`` where the
    Service's nodes can differ)."""
    if base is None or not node_dependent:
        return base
    return f"{base}:local[]"


class NodeSet:
    """Node names: a few lists of names, each less some excluded ones — the nodes a NodePort can be
    addressed on in one view — sized, iterated and tested without being copied per Service."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[tuple[Sequence[str], frozenset, frozenset]] = []     # (names, as a set, excluded)
        self.size = 0

    def add(self, names: Sequence[str], nameset: frozenset, exclude: frozenset, size: int) -> None:
        self.parts.append((names, nameset, exclude))
        self.size += size

    def __iter__(self) -> Iterator[str]:
        for names, _s, ex in self.parts:
            for n in names:
                if n not in ex:
                    yield n

    def __len__(self) -> int:
        return self.size

    def other(self, node: Optional[str]) -> str:
        """A member other than ``node`` (the first in order)."""
        for names, _s, ex in self.parts:
            for n in names:
                if n != node and n not in ex:
                    return n
        raise ValueError("no other node")

    def __contains__(self, name: object) -> bool:
        return any(name in s and name not in ex for _n, s, ex in self.parts)

    def pick(self, rng) -> str:
        """A uniformly random member (rejection over the lists' union)."""
        total = sum(len(n) for n, _s, _x in self.parts)
        while True:
            i = rng.randrange(total)
            for names, _s, ex in self.parts:
                if i < len(names):
                    if names[i] not in ex:
                        return names[i]
                    break
                i -= len(names)


@dataclass
class _Super:
    """The members of every bucket whose nodes look alike to a Service without endpoints on them:
    per version (kind, base view of the node, atom, DNS profile), and the own node's base views."""

    members: list[Member] = field(default_factory=list)
    count: int = 0


class Planner:
    """Builds the probe classes of one or more versions (rows align across them)."""

    def __init__(self, inventories: Sequence[Inventory], *, share: bool = True,
                 modes: Optional[Sequence[str]] = None) -> None:
        self.invs = list(inventories)
        # the modes the classes are traced in (None: any): where every one of them sends a pod's packet
        # for a Local NodePort to the Service's cluster-wide endpoints, the addressed node's local
        # endpoints stop mattering for pod sources (see _pod_far)
        self.pod_shortcut = bool(modes) and all(_pod_shortcut(m) for m in modes or ())
        self._labels: dict[str, str] = {}            # source label -> the one copy every class shares
        self._met: dict[tuple, tuple[str, ...]] = {}  # nodes_met's tuples, one per distinct answer
        cidrs: list[str] = []
        for inv in self.invs:
            cidrs += inv.range_cidrs()
        self.atoms = Atoms.from_cidrs(cidrs)           # over the union: rows align across versions
        self.share = share
        idents = sorted({m for inv in self.invs for m in inv.members})
        # members grouped by their per-version (kind, node, atom): the unit of every aggregation
        buckets: dict[tuple, list[Member]] = defaultdict(list)
        self.member_of: dict[str, tuple[Member, ...]] = {}
        for ident in idents:
            per = tuple(inv.members.get(ident) for inv in self.invs)
            key = tuple((m.kind, m.node, self.atoms.index(m.ip), m.dns) if m else None for m in per)
            rep = next(m for m in per if m is not None)
            buckets[key].append(rep)
            self.member_of[ident] = per
        self.buckets = dict(buckets)
        self.bucket_of = {m.ident: k for k, ms in self.buckets.items() for m in ms}
        self.member_of_rep = {m.ident: m for ms in self.buckets.values() for m in ms}
        # nodes by their base views (per version), once: under any Service, a node without local
        # endpoints has the view its base views give, so its buckets merge into a "super" bucket and
        # a Service only looks at the nodes its endpoints are on (an index endpoint -> node), never
        # at every node
        self.node_names = sorted({n for inv in self.invs for n in inv.nodes})
        # NodePorts on secondary addresses are probed where every node has one (in every version), so
        # a node view's addressed nodes all have the address
        self.secondary = all(n.secondary for inv in self.invs for n in inv.nodes.values())
        self.base = [{n: _base_view(inv, n) for n in inv.nodes} for inv in self.invs]
        self.base_of = {n: tuple(b.get(n) for b in self.base) for n in self.node_names}
        groups: dict[tuple, list[str]] = defaultdict(list)
        for n in self.node_names:
            groups[self.base_of[n]].append(n)
        self.node_groups = {k: (names, frozenset(names)) for k, names in groups.items()}
        self.buckets_on: dict[str, list[tuple]] = defaultdict(list)
        self.supers: dict[tuple, _Super] = {}
        self.super_of: dict[tuple, tuple] = {}
        for bkey, ms in self.buckets.items():
            for n in {b[1] for b in bkey if b is not None and b[1] is not None}:
                self.buckets_on[n].append(bkey)
            own = _own_node(bkey)
            skey = (tuple((b[0], self.base[v].get(b[1]) if b[1] else None, b[2], b[3]) if b is not None else None
                          for v, b in enumerate(bkey)), self.base_of.get(own) if own else None)
            sup = self.supers.get(skey)
            if sup is None:
                sup = self.supers[skey] = _Super()
            sup.members.extend(ms)
            sup.count += len(ms)
            self.super_of[bkey] = skey

    # ------------------------------------------------------------------ destinations
    def slots(self, skey: str) -> list[Slot]:
        out: dict[Slot, None] = {}
        ports_seen: set[int] = set()
        for inv in self.invs:
            sf = inv.services.get(skey)
            if sf is None:
                continue
            s = sf.service
            ports_seen.update(p.port for p in s.ports)
            for p in s.ports:
                proto = p.protocol.lower()
                if s.type == "ExternalName" or s.headless:
                    out[Slot(skey, "dns", p.port, proto, self._fqdn(sf, inv))] = None
                    continue
                if s.cluster_ip:
                    out[Slot(skey, "clusterip", p.port, proto)] = None
                if p.node_port:
                    out[Slot(skey, "nodeport", p.node_port, proto)] = None
                    if self.secondary:
                        out[Slot(skey, "nodeport-secondary", p.node_port, proto)] = None
                    out[Slot(skey, "nodeport-localhost", p.node_port, proto)] = None
                for ip in s.load_balancer_ips:
                    out[Slot(skey, "loadbalancer", p.port, proto, ip)] = None
                for ip in s.external_ips:
                    out[Slot(skey, "externalip", p.port, proto, ip)] = None
            if s.type == "ExternalName" and not s.ports:
                out[Slot(skey, "dns", 80, "tcp", self._fqdn(sf, inv))] = None
        if any(sl.kind == "clusterip" for sl in out):
            unused = max(ports_seen) + 1 if ports_seen and max(ports_seen) < 65535 else 1
            while unused in ports_seen:
                unused += 1
            out[Slot(skey, "clusterip-unused", unused, "tcp")] = None
        return list(out)

    @staticmethod
    def _fqdn(sf: ServiceFacts, inv: Inventory) -> str:
        ns, name = sf.key.split("/", 1)
        return f"{name}.{ns}.svc.{inv.domain}"

    def address(self, slot: Slot, v: int, node: Optional[str]) -> Optional[str]:
        """The destination address of a slot in version v (None: the slot does not exist there)."""
        inv = self.invs[v]
        sf = inv.services.get(slot.service)
        if sf is None:
            return None
        s = sf.service
        if slot.kind in ("clusterip", "clusterip-unused"):
            return s.cluster_ip if s.cluster_ip and not s.headless else None
        if slot.kind in NODE_ADDRESSED:
            if not any(p.node_port == slot.port for p in s.ports) or node not in inv.nodes:
                return None
            return inv.nodes[node].ip if slot.kind == "nodeport" else inv.nodes[node].secondary
        if slot.kind == "nodeport-localhost":
            return "127.0.0.1" if any(p.node_port == slot.port for p in s.ports) else None
        if slot.kind == "loadbalancer":
            return slot.ident if slot.ident in s.load_balancer_ips else None
        if slot.kind == "externalip":
            return slot.ident if slot.ident in s.external_ips else None
        return slot.ident if (s.type == "ExternalName" or s.headless) else None

    def raw_probe(self, slot: Slot, v: int, member: Member, node: Optional[str]) -> Optional[RawProbe]:
        addr = self.address(slot, v, node)
        m = self.member_of[member.ident][v]
        if addr is None or m is None:
            return None
        if slot.kind == "nodeport-localhost" and m.node is None:
            return None
        return RawProbe(self.invs[v].version, m.trace_src, m.namespace, f"{addr}:{slot.port}", slot.proto)

    def nodes_met(self, slot: Slot, v: int, member: Member, node: Optional[str]) -> tuple[str, ...]:
        """The nodes whose rules a raw probe of version v can meet, for a worker to build just those
        (a hint: a node left out is rendered on the path's own copy, at a cost in time only): the
        source's node, the addressed node, the nodes of the Service's endpoints (and of the cluster
        DNS's for a name); an external client through a load balancer or an externalIP's route
        meets any node (the load balancer picks among the ready ones, netsim.dataplane.loadbalancer)."""
        m = self.member_of[member.ident][v]
        if m is None:
            return ()
        if m.kind == "external" and slot.kind in ("loadbalancer", "externalip"):
            return ALL_NODES
        dns = slot.kind == "dns"
        key = (slot.service, v, m.node, node, dns)
        got = self._met.get(key)
        if got is not None:
            return got
        inv = self.invs[v]
        out = {m.node, node}
        sf = inv.services.get(slot.service)
        if sf is not None:
            out.update(sf.endpoint_nodes())
        if dns:
            dsf = inv.services.get(DNS_SERVICE)
            if dsf is not None:
                out.update(dsf.endpoint_nodes())
        out.discard(None)
        t = tuple(sorted(out))
        got = self._met[key] = self._met.setdefault(t, t)     # equal answers share one tuple
        return got

    # ------------------------------------------------------------------ classes
    def slot_exists(self, slot: Slot, v: int) -> bool:
        if slot.kind in NODE_ADDRESSED:
            sf = self.invs[v].services.get(slot.service)
            return sf is not None and any(p.node_port == slot.port for p in sf.service.ports)
        return self.address(slot, v, None) is not None

    def service_keys(self) -> list[str]:
        return sorted({k for inv in self.invs for k in inv.services})

    def classes(self, skey: str) -> list[ProbeClass]:
        """Every probe class of one Service (all its slots). Members are counted, not enumerated (a
        NodePort's pairs by multiplication). Only the buckets on the nodes the Service's endpoints are
        on (under a Local policy or with endpoints on node addresses) and the buckets of its endpoint
        pods (hairpin) are looked at one by one; every other member is in a super bucket whose nodes
        all have the plain view, less those special buckets."""
        sfs = [inv.services.get(skey) for inv in self.invs]
        nd = [sf is not None and sf.node_dependent for sf in sfs]
        local = [sf.local_index() if (sf is not None and nd[v]) else {} for v, sf in enumerate(sfs)]
        special = sorted({n for idx in local for n in idx})
        base = self.base

        def view(v: int, n: Optional[str]) -> Optional[str]:
            b = base[v].get(n) if n is not None else None
            if b is None or not nd[v]:
                return b
            return f"{b}:local[{local[v].get(n, '')}]"

        hairpin = self._hairpin_members(sfs)
        sp: dict[tuple, None] = {}
        for n in special:
            for bk in self.buckets_on.get(n, ()):
                sp[bk] = None
        for h in sorted(hairpin):
            sp[self.bucket_of[h]] = None
        taken: dict[tuple, list[tuple]] = defaultdict(list)
        for bk in sp:
            taken[self.super_of[bk]].append(bk)
        supers = []
        for sk, sup in self.supers.items():
            tk = taken.get(sk, ())
            excl = frozenset(m.ident for bk in tk for m in self.buckets[bk])
            left = sup.count - len(excl)
            if left > 0:
                firsts = _firsts(sup.members, excl)
                supers.append((sk, sup, excl, left, firsts))
        special_set = frozenset(special)
        classes: dict[tuple, ProbeClass] = {}
        for sl in self.slots(skey):
            exists = tuple(self.slot_exists(sl, v) for v in range(len(self.invs)))
            dns = sl.kind == "dns"

            def plain_vkey(bt: Optional[tuple]) -> Optional[tuple]:
                if bt is None:
                    return None
                vk = tuple(_plain(b, nd[v]) if exists[v] else None for v, b in enumerate(bt))
                return vk if any(x is not None for x in vk) else None

            addressed = self._addressed(special, special_set, plain_vkey, view, exists) \
                if sl.kind in NODE_ADDRESSED else {}
            pod_far = self._pod_far(sfs, local, special, exists) if sl.kind in NODE_ADDRESSED else None
            for (desc, own_bt), sup, excl, left, firsts in supers:
                kind0 = next(b[0] for b in desc if b is not None)
                if kind0 not in sl.sources():
                    continue
                src_t = tuple(None if b is None or not exists[v] else
                              (b[0], _plain(b[1], nd[v]), b[2]) + ((b[3],) if dns else ())
                              for v, b in enumerate(desc))
                far = pod_far.on(own_bt, None) if pod_far is not None and kind0 == "pod" else None
                self._emit(classes, sl, src_t, src_t, None, plain_vkey(own_bt), addressed,
                           (sup.members, excl), left, firsts, False, far)
            for bk in sp:
                kind0, node = _first(bk)
                if kind0 not in sl.sources():
                    continue
                own = tuple(view(v, node) if exists[v] else None for v in range(len(self.invs))) \
                    if node is not None else None
                own_vkey = own if own is not None and any(x is not None for x in own) else None
                for group, kinds, who, hair in self._groups(bk, self.buckets[bk], hairpin, sfs):
                    src_t = tuple(None if b is None or not exists[v] else
                                  (kinds[v] or b[0], view(v, b[1]) if b[1] else None, b[2]) + ((b[3],) if dns else ())
                                  for v, b in enumerate(bk))
                    far = src_t
                    if sl.kind in NODE_ADDRESSED:
                        far = tuple(None if b is None or not exists[v] else
                                    (kinds[v] or b[0], _plain(base[v].get(b[1]), nd[v]) if b[1] else None, b[2])
                                    for v, b in enumerate(bk))
                    pf = pod_far.on(self.base_of.get(node), node) \
                        if pod_far is not None and kind0 == "pod" and node is not None else None
                    self._emit(classes, sl, src_t, far, who, own_vkey, addressed, (group, frozenset()), len(group),
                               group[:SAMPLES], hair, pf)
        return list(classes.values())

    def _emit(self, classes: dict, sl: Slot, src_t: tuple, src_far: tuple, who: Optional[str],
              own_vkey: Optional[tuple], addressed: dict, part: tuple, count: int, firsts: list[Member],
              hair: bool, far: Optional[tuple[dict, Optional[tuple]]] = None) -> None:
        """Add a group of sources (``count`` members, listed by ``part``) to its class(es) of one slot:
        for a NodePort, one per addressed view and own node or not.

        A NodePort addressed on another node than the source's is keyed by ``src_far``: the source's
        node with the view of a node without local endpoints. kube-proxy's rules for a NodePort only
        match a destination address local to the node (iptables: the KUBE-NODEPORTS jump is guarded by
        ``-m addrtype --dst-type LOCAL``, pkg/proxy/iptables/proxier.go syncProxyRules; nftables:
        ``fib daddr type local`` or ``@nodeport-ips``, pkg/proxy/nftables/proxier.go; IPVS: virtual
        servers on the node's own addresses, pkg/proxy/ipvs/proxier.go), so the source node's
        endpoints for this Service never touch a packet to another node's address; without this a
        Local Service with endpoints on k nodes had (k+1)² NodePort classes. --exhaustive holds it
        to account (tests/test_reach.py).

        ``far`` (addressed views, the own node's view among them) replaces ``addressed`` for the other
        nodes where the addressed node's view is coarser for these sources (_pod_far)."""
        if all(p is None for p in src_t):
            return
        if sl.kind not in NODE_ADDRESSED:
            self._add(classes, sl, (src_t, who), _Label(src_t, self.atoms, who), part, None, None, hair, count,
                      firsts, None)
            return
        for same in (False, True):
            views, own = (addressed, own_vkey) if same or far is None else far
            for vkey, names in views.items():
                inn = own == vkey
                n_addr = (1 if inn else 0) if same else len(names) - inn
                if n_addr:
                    src = src_t if same else src_far
                    self._add(classes, sl, ((src, who), vkey, same), _Label(src, self.atoms, who, vkey, same),
                              part, names, same, hair, count * n_addr, firsts, firsts[0].node)

    def _pod_far(self, sfs: list, local: list[dict], special: list[str], exists: tuple) -> Optional["_PodFar"]:
        """For a pod's probe of a NodePort on another node: the addressed nodes grouped by what the
        rules there read of them, where that is coarser than their views. Under an externalTrafficPolicy
        Local Service, a pod's packet (its address in the cluster CIDR) goes to the cluster-wide
        endpoints whatever the node's local ones are (the modes' providers say so:
        pod_external_shortcut); what is left of the node
        is its base view and whether it has usable local endpoints at all — without, nftables drops
        the packet before translation (the no-endpoint-nodeports map), kube-proxy's categorisation
        (pkg/proxy/topology.go CategorizeEndpoints: ready local endpoints, else serving terminating
        ones). Only where every version allows it (a version without a cluster CIDR, with endpoints
        on node addresses, or a Cluster policy keeps the views)."""
        if not self.pod_shortcut:
            return None
        for v, sf in enumerate(sfs):
            if not exists[v]:
                continue
            if (sf is None or not self.invs[v].cluster_cidr or sf.host_endpoints
                    or getattr(sf.service, "external_traffic_policy", "Cluster") != "Local"):
                return None
        usable = [{n for n, text in idx.items() if _usable_local(text)} for idx in local]

        def vk(bt: Optional[tuple], n: Optional[str]) -> Optional[tuple]:
            if bt is None:
                return None
            out = tuple(None if (b is None or not exists[v]) else
                        f"{b}:{'local' if n in usable[v] else 'no'}-endpoints" for v, b in enumerate(bt))
            return out if any(x is not None for x in out) else None

        by = self._base_groups(lambda bt: vk(bt, None), frozenset(special))
        lists: dict[tuple, list[str]] = defaultdict(list)
        for n in special:
            k = vk(self.base_of.get(n), n)
            if k is not None:
                lists[k].append(n)
        for k, names in lists.items():
            by.setdefault(k, NodeSet()).add(names, frozenset(names), frozenset(), len(names))
        return _PodFar(by, vk)

    def _addressed(self, special: list[str], special_set: frozenset, plain_vkey, view, exists: tuple
                   ) -> dict[tuple, NodeSet]:
        """Nodes a NodePort can be addressed on, grouped by their views (over every version): the base
        groups less the special nodes, and each special node by its own view."""
        by = self._base_groups(plain_vkey, special_set)
        for n in special:
            if n not in self.base_of:
                continue
            vk = tuple(view(v, n) if exists[v] else None for v in range(len(self.invs)))
            if any(x is not None for x in vk):
                by.setdefault(vk, NodeSet()).add((n,), frozenset((n,)), frozenset(), 1)
        return by

    def _base_groups(self, key_of: Callable[[tuple], Optional[tuple]], special_set: frozenset
                     ) -> dict[tuple, NodeSet]:
        """The base node groups less the special nodes, merged by ``key_of(base key)`` (None: left out)."""
        by: dict[tuple, NodeSet] = {}
        for bt, (names, nameset) in self.node_groups.items():
            k = key_of(bt)
            if k is None:
                continue
            ex = special_set & nameset
            if len(names) > len(ex):
                by.setdefault(k, NodeSet()).add(names, nameset, ex, len(names) - len(ex))
        return by

    def _groups(self, bkey: tuple, members: list[Member], hairpin: set[str], sfs):
        """A bucket's members for one Service: the plain ones together, and each endpoint pod alone —
        what it reaches depends on which endpoint it is (hairpin masquerade on the way to itself; the
        statistic thresholds and IPVS's scheduler state are not symmetric between endpoints)."""
        hair = [m for m in members if m.ident in hairpin]
        if not hair:
            yield members, (None,) * len(bkey), None, False
            return
        plain = [m for m in members if m.ident not in hairpin]
        if plain:
            yield plain, (None,) * len(bkey), None, False
        for m in hair:
            own = tuple((sf.endpoint_of(pm.ip) if (sf is not None and pm is not None) else None)
                        for sf, pm in zip(sfs, self.member_of[m.ident]))
            yield [m], tuple("hairpin" if o else None for o in own), m.ident, True

    def _add(self, classes: dict, sl: Slot, key: tuple, label: "_Label", part: tuple, names: Optional[NodeSet],
             same: Optional[bool], hair: bool, count: int, firsts: list[Member], node: Optional[str]) -> None:
        pc = classes.get((sl, key))
        if pc is None:
            if names is None:
                rep: tuple[Member, Optional[str]] = (firsts[0], None)
            else:
                a = node if same else names.other(node)
                rep = (firsts[0], a)
            text = label.text()
            text = self._labels.setdefault(text, text)     # one string per distinct source (most repeat)
            pc = classes[(sl, key)] = ProbeClass(_key_text(sl, key), sl, text, rep=rep, hairpin=hair)
        pc.count += count
        members, excl = part
        pc.parts.append((members, names, same, excl))
        for m in firsts:
            if len(pc.samples) >= SAMPLES:
                break
            pc.samples.append(m.ident)

    def _hairpin_members(self, sfs: list[Optional[ServiceFacts]]) -> set[str]:
        idents: set[str] = set()
        for inv, sf in zip(self.invs, sfs):
            if sf is None:
                continue
            for e in sf.endpoints:
                owner = inv.endpoint_owner.get(e.address)
                if owner is not None:
                    idents.add(owner)
        return idents

    # ------------------------------------------------------------------ expansion
    def expand(self, pc: ProbeClass) -> Iterator[tuple[Member, Optional[str]]]:
        """Every raw (member, addressed node) of a class."""
        for members, names, same, exclude in pc.parts:
            for m in members:
                if m.ident in exclude:
                    continue
                if names is None:
                    yield m, None
                elif same:
                    if m.node in names:
                        yield m, m.node
                else:
                    for a in names:
                        if a != m.node:
                            yield m, a

    def pick(self, pc: ProbeClass, rng) -> tuple[Member, Optional[str]]:
        """One raw (member, addressed node) of a class drawn uniformly over its expansion, without
        expanding it: a part by its proposal weight, then a member and a node, rejected when the pair
        is not in the class (Monte Carlo rejection sampling keeps the draw uniform)."""
        weights = [len(ms) * (1 if ns is None or same else sum(len(n) for n, _s, _x in ns.parts))
                   for ms, ns, same, _x in pc.parts]
        while True:
            members, names, same, exclude = rng.choices(pc.parts, weights=weights)[0]
            m = members[rng.randrange(len(members))]
            if m.ident in exclude:
                continue
            if names is None:
                return m, None
            if same:
                if m.node in names:
                    return m, m.node
                continue
            a = names.pick(rng)
            if a != m.node:
                return m, a

    def plan(self) -> list[ProbeClass]:
        """Every class of every Service; with sharing, a Service whose signature (in every version)
        equals an earlier one's takes that one's verdicts, class by class."""
        with deferred_gc():       # millions of long-lived objects: no whole-heap passes while they are made
            return self._plan()

    def _plan(self) -> list[ProbeClass]:
        out: list[ProbeClass] = []
        first_of: dict[tuple, dict[tuple, str]] = {}
        for skey in self.service_keys():
            sfs = [inv.services.get(skey) for inv in self.invs]
            classes = self.classes(skey)
            if self.share:
                sig = tuple(sf.signature() if sf else None for sf in sfs)
                table = first_of.get(sig)
                if table is None:
                    first_of[sig] = {_relative(pc): pc.key for pc in classes}
                else:
                    for pc in classes:
                        pc.shared_from = table.get(_relative(pc))
            out += classes
        return out


def _pod_shortcut(mode: str) -> bool:
    """Whether a mode's provider sends a pod's packet for a Local Service's NodePort elsewhere to the
    cluster-wide endpoints (ProxyProvider.pod_external_shortcut; an unknown provider: no)."""
    from netsim.rules.registry import get
    return bool(getattr(get(mode), "pod_external_shortcut", False))


@dataclass(frozen=True)
class _PodFar:
    """The coarser addressed views for pods' probes of a NodePort on another node (Planner._pod_far)."""

    views: dict
    view_of: object          # (base views per version, node or None) -> the coarse view key

    def on(self, own_bt: Optional[tuple], node: Optional[str]) -> tuple[dict, Optional[tuple]]:
        """The views and the source's own node's among them (``node`` None: a node without local
        endpoints — a super bucket's)."""
        return self.views, self.view_of(own_bt, node)


def _usable_local(text: str) -> bool:
    """Whether a node's local endpoints (local_index's label) include one kube-proxy would use: a
    ready one, else a serving terminating one (CategorizeEndpoints)."""
    for e in text.split(","):
        if not e:
            continue
        not_ready, not_serving, terminating = "!r" in e, "!s" in e, "~t" in e
        if not not_ready or (not not_serving and terminating):
            return True
    return False


def _firsts(members: list[Member], exclude: frozenset) -> list[Member]:
    """The first few members not excluded (the samples and the representative)."""
    out: list[Member] = []
    for m in members:
        if m.ident not in exclude:
            out.append(m)
            if len(out) == SAMPLES:
                break
    return out


def _first(bkey: tuple) -> tuple[str, Optional[str]]:
    """A bucket's kind and node, from the first version it is in."""
    return next((b[0], b[1]) for b in bkey if b is not None)


def _own_node(bkey: tuple) -> Optional[str]:
    return _first(bkey)[1]


def _relative(pc: ProbeClass) -> tuple:
    return (pc.slot.kind, pc.slot.port if pc.slot.kind not in NODE_ADDRESSED + ("nodeport-localhost",) else 0,
            pc.slot.proto, pc.key.split(" <- ", 1)[1])


@dataclass(frozen=True)
class _Label:
    """A class's readable source description, made only when the class is new."""

    src: tuple
    atoms: Atoms
    who: Optional[str]
    vkey: Optional[tuple] = None
    same: bool = False

    def text(self) -> str:
        label = _source_label(self.src, self.atoms, self.who)
        if self.vkey is None:
            return label
        return f"{label} -> node view {' | '.join(str(x) for x in self.vkey)}{' (own node)' if self.same else ''}"


def _source_label(src: tuple, atoms: Atoms, who: Optional[str]) -> str:
    parts = []
    for p in src:
        if p is None:
            parts.append("-")
            continue
        kind, view, atom = p[:3]
        text = f"{kind}@{atoms.label(atom)}"
        if len(p) > 3:
            text += f" dns {p[3]}"
        if view is not None:
            text += f" on {view}"
        parts.append(text)
    label = " | ".join(parts)
    return f"{label} ({who})" if who else label


def _key_text(slot: Slot, key: tuple) -> str:
    """A stable probe key: the slot and the class key, as text."""
    dest = f"{slot.service} {slot.kind} {slot.ident + ' ' if slot.ident else ''}{slot.port}/{slot.proto}"
    return f"{dest} <- {key!r}"
