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
from typing import Iterator, Optional, Sequence

from netsim.reach.atoms import Atoms
from netsim.reach.inventory import Inventory, Member, ServiceFacts

DEST_KINDS = ("clusterip", "clusterip-unused", "nodeport", "nodeport-localhost", "loadbalancer", "externalip",
              "dns")
SAMPLES = 3


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


@dataclass
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


def _view(sf: Optional[ServiceFacts], inv: Inventory, node: Optional[str]) -> Optional[str]:
    """The node's view of one Service, as a stable label."""
    if node is None or sf is None:
        return None
    n = inv.nodes.get(node)
    base = "ready" if n is None or (n.ready and n.running) else ("notready" if n.running else "stopped")
    if not sf.node_dependent:
        return base
    local = sf.local_endpoints(node)
    eps = ",".join(f"{a}{'' if r else '!r'}{'' if s else '!s'}{'~t' if t else ''}" for a, r, s, t in local)
    return f"{base}:local[{eps}]"


class Planner:
    """Builds the probe classes of one or more versions (rows align across them)."""

    def __init__(self, inventories: Sequence[Inventory], *, share: bool = True) -> None:
        self.invs = list(inventories)
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
        self._templates: dict[tuple, dict[tuple, ProbeClass]] = {}

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
        if slot.kind == "nodeport":
            if not any(p.node_port == slot.port for p in s.ports) or node not in inv.nodes:
                return None
            return inv.nodes[node].ip
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

    # ------------------------------------------------------------------ classes
    def slot_exists(self, slot: Slot, v: int) -> bool:
        if slot.kind == "nodeport":
            sf = self.invs[v].services.get(slot.service)
            return sf is not None and any(p.node_port == slot.port for p in sf.service.ports)
        return self.address(slot, v, None) is not None

    def service_keys(self) -> list[str]:
        return sorted({k for inv in self.invs for k in inv.services})

    def classes(self, skey: str) -> list[ProbeClass]:
        """Every probe class of one Service (all its slots). Members of a bucket are counted, not
        enumerated (a NodePort's pairs by multiplication). Under Cluster policies every node has one
        view, so the classes of plain sources are the same for every such Service: they are made once
        per slot shape (a template) and each Service only takes its own endpoint pods out of them."""
        sfs = [inv.services.get(skey) for inv in self.invs]
        views = [{n: _view(sf, inv, n) for n in inv.nodes} if sf is not None else {}
                 for inv, sf in zip(self.invs, sfs)]
        hairpin = self._hairpin_members(sfs)
        cluster_views = not any(sf is not None and sf.node_dependent for sf in sfs)
        classes: dict[tuple, ProbeClass] = {}
        for sl in self.slots(skey):
            exists = tuple(self.slot_exists(sl, v) for v in range(len(self.invs)))
            addressed = self._addressed_views(sl, sfs, views, exists) if sl.kind == "nodeport" else {}
            if not cluster_views:
                self._slot_pass(classes, sl, views, exists, addressed, self.buckets.items(), hairpin, sfs)
                continue
            shape = (sl.kind, exists, tuple(sf is not None for sf in sfs), tuple(addressed))
            tmpl = self._templates.get(shape)
            if tmpl is None:
                tmpl = self._templates[shape] = {}
                self._slot_pass(tmpl, sl, views, exists, addressed, self.buckets.items(), set(), sfs)
            hair_items = [(self.bucket_of[h], [self.member_of_rep[h]]) for h in sorted(hairpin)]
            taken: dict[tuple, ProbeClass] = {}
            self._slot_pass(taken, sl, views, exists, addressed, hair_items, set(), sfs)     # what they leave
            for (_tsl, key), t in tmpl.items():
                left = t.count - (taken[(sl, key)].count if (sl, key) in taken else 0)
                if left <= 0:
                    continue
                parts = [(m, names, same, frozenset(hairpin)) for m, names, same, _x in t.parts]
                members = (m for group, _n, _s, ex in parts for m in group if m.ident not in ex)
                first = next(members)
                rep = (first, t.rep[1] if first.node == t.rep[0].node else self._renode(t, first))
                samples = [first.ident] + [m.ident for m, _ in zip(members, range(SAMPLES - 1))]
                classes[(sl, key)] = ProbeClass(_key_text(sl, key), sl, t.source, left, samples, rep, parts)
            self._slot_pass(classes, sl, views, exists, addressed, hair_items, hairpin, sfs)
        return list(classes.values())

    @staticmethod
    def _renode(t: ProbeClass, first: Member) -> Optional[str]:
        """The addressed node for a representative on another node than the template's."""
        for _m, names, same, _x in t.parts:
            if names is None:
                return None
            for a in names:
                if (a == first.node) == same:
                    return a
        return None

    def _slot_pass(self, classes: dict, sl: Slot, views, exists: tuple, addressed: dict, items, hairpin: set[str],
                   sfs) -> None:
        """Add the classes of ``items`` (bucket key, members) for one slot."""
        for bkey, members in items:
            base_kind, node = next((b[0], b[1]) for b in bkey if b is not None)
            if base_kind not in sl.sources():
                continue
            for group, kinds, who, hair in self._groups(bkey, members, hairpin, sfs):
                src = []
                for v, b in enumerate(bkey):
                    if b is None or not exists[v]:
                        src.append(None)
                        continue
                    kind, bnode, atom, dns = b
                    src.append((kinds[v] or kind, views[v].get(bnode) if bnode else None, atom)
                               + ((dns,) if sl.kind == "dns" else ()))
                src_t = tuple(src)
                if all(p is None for p in src_t):
                    continue
                if sl.kind != "nodeport":
                    self._add(classes, sl, (src_t, who), _Label(src_t, self.atoms, who), group, None, None, hair)
                    continue
                for vkey, (names, nameset) in addressed.items():
                    for same in (False, True):
                        n_addr = (1 if node in nameset else 0) if same else len(names) - (node in nameset)
                        if n_addr:
                            self._add(classes, sl, ((src_t, who), vkey, same),
                                      _Label(src_t, self.atoms, who, vkey, same), group, names, same, hair,
                                      n_addr, node)

    def _addressed_views(self, sl: Slot, sfs, views, exists) -> dict[tuple, tuple[list[str], set[str]]]:
        """Nodes a NodePort can be addressed on, grouped by their views (over every version)."""
        by: dict[tuple, list[str]] = defaultdict(list)
        for n in sorted({n for inv in self.invs for n in inv.nodes}):
            key = tuple(views[v].get(n) if exists[v] and n in self.invs[v].nodes else None
                        for v in range(len(self.invs)))
            if any(k is not None for k in key):
                by[key].append(n)
        return {k: (names, set(names)) for k, names in by.items()}

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

    @staticmethod
    def _add(classes: dict, sl: Slot, key: tuple, label: "_Label", group: list[Member], names: Optional[list[str]],
             same: Optional[bool], hair: bool, n_addr: int = 1, node: Optional[str] = None) -> None:
        pc = classes.get((sl, key))
        if pc is None:
            if names is None:
                rep: tuple[Member, Optional[str]] = (group[0], None)
            else:
                a = node if same else next(x for x in names if x != node)
                rep = (group[0], a)
            pc = classes[(sl, key)] = ProbeClass(_key_text(sl, key), sl, label.text(), rep=rep, hairpin=hair)
        pc.count += len(group) * n_addr
        pc.parts.append((group, names, same, frozenset()))
        for m in group:
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
                else:
                    for a in names:
                        if (m.node == a) == same:
                            yield m, a

    def plan(self) -> list[ProbeClass]:
        """Every class of every Service; with sharing, a Service whose signature (in every version)
        equals an earlier one's takes that one's verdicts, class by class."""
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


def _relative(pc: ProbeClass) -> tuple:
    return (pc.slot.kind, pc.slot.port if pc.slot.kind not in ("nodeport", "nodeport-localhost") else 0,
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
