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
    parts: list[tuple] = field(default_factory=list)  # (members, exclude, addressed nodes, same) to expand
    shared_from: Optional[str] = None             # signature sharing: the class whose verdict this row takes


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
    if not sf.local_policy:
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
    def service_keys(self) -> list[str]:
        return sorted({k for inv in self.invs for k in inv.services})

    def classes(self, skey: str) -> list[ProbeClass]:
        """Every probe class of one Service (all its slots)."""
        sfs = [inv.services.get(skey) for inv in self.invs]
        hairpin = self._hairpin_members(sfs)
        out: list[ProbeClass] = []
        for slot in self.slots(skey):
            out += self._slot_classes(slot, sfs, hairpin)
        return out

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

    def _kind(self, m: Member, v: int, sfs: list[Optional[ServiceFacts]]) -> str:
        sf = sfs[v]
        if m.kind == "pod" and sf is not None and any(e.address == m.ip for e in sf.endpoints):
            return "hairpin"
        return m.kind

    def _src_part(self, bkey: tuple, sfs: list[Optional[ServiceFacts]], slot: Slot) -> tuple:
        """The per-version source part of a class key for a bucket (None where the member, the
        Service or the destination is absent)."""
        parts = []
        for v, (inv, sf, b) in enumerate(zip(self.invs, sfs, bkey)):
            if b is None or sf is None or not self.slot_exists(slot, v):
                parts.append(None)
                continue
            kind, node, atom, dns = b
            # a by-name probe: what the pod's resolv.conf says matters too
            parts.append((kind, _view(sf, inv, node), atom) + ((dns,) if slot.kind == "dns" else ()))
        return tuple(parts)

    def slot_exists(self, slot: Slot, v: int) -> bool:
        if slot.kind == "nodeport":
            sf = self.invs[v].services.get(slot.service)
            return sf is not None and any(p.node_port == slot.port for p in sf.service.ports)
        return self.address(slot, v, None) is not None

    def _slot_classes(self, slot: Slot, sfs: list[Optional[ServiceFacts]], hairpin: set[str]) -> list[ProbeClass]:
        classes: dict[tuple, ProbeClass] = {}
        allowed = slot.sources()
        nodes = sorted({n for inv in self.invs for n in inv.nodes})

        def add(key: tuple, label: str, members: list[Member], exclude: frozenset, addressed: Optional[list[str]],
                same: Optional[bool], hair: bool) -> None:
            n_members = sum(1 for m in members if (m.ident in exclude) == hair)
            if n_members == 0:
                return
            if addressed is not None:
                pairs = [(m, a) for m in members if (m.ident in exclude) == hair
                         for a in addressed if (m.node == a) == same]
                if not pairs:
                    return
                count = len(pairs)
                first = pairs[0]
            else:
                count = n_members
                first = (next(m for m in members if (m.ident in exclude) == hair), None)
            pc = classes.get(key)
            if pc is None:
                pc = classes[key] = ProbeClass(_key_text(slot, key), slot, label, rep=first)
            pc.count += count
            pc.parts.append((members, exclude, hair, addressed, same))
            for m in members:
                if len(pc.samples) >= SAMPLES:
                    break
                if (m.ident in exclude) == hair and m.ident not in pc.samples:
                    pc.samples.append(m.ident)

        for bkey, members in self.buckets.items():
            present = next(b for b in bkey if b is not None)
            if present[0] not in allowed:
                continue
            excl = frozenset(m.ident for m in members if m.ident in hairpin)
            src = self._src_part(bkey, sfs, slot)
            if all(p is None for p in src):
                continue
            for hair in ((False, True) if excl else (False,)):
                if hair:
                    # every endpoint pod is a class of its own: what it reaches depends on being one
                    for m in members:
                        if m.ident in excl:
                            kinds = tuple(self._kind(pm, v, sfs) if pm else None
                                          for v, pm in enumerate(self.member_of[m.ident]))
                            self._add_slot(add, slot, sfs, src, [m], excl, True, nodes, kinds, m.ident)
                    continue
                self._add_slot(add, slot, sfs, src, members, excl, False, nodes, None, None)
        return list(classes.values())

    def _add_slot(self, add, slot: Slot, sfs, src: tuple, members: list[Member], excl: frozenset, hair: bool,
                  nodes: list[str], kinds: Optional[tuple], who: Optional[str]) -> None:
        if kinds is not None:
            src = tuple((k,) + p[1:] if p is not None else None for k, p in zip(kinds, src))
        label = _source_label(src, self.atoms, who)
        base_key = (src, who)
        if slot.kind != "nodeport":
            add(base_key, label, members, excl, None, None, hair)
            return
        # NodePort: the addressed node's view, and whether it is the source's own node
        by_view: dict[tuple, list[str]] = defaultdict(list)
        for a in nodes:
            views = tuple(_view(sf, inv, a) if (sf is not None and a in inv.nodes) else None
                          for inv, sf in zip(self.invs, sfs))
            by_view[views].append(a)
        for views, addressed in by_view.items():
            for same in (False, True):
                key = (base_key, views, same)
                vlabel = " | ".join(str(x) for x in views)
                add(key, f"{label} -> node view {vlabel}{' (own node)' if same else ''}", members, excl,
                    addressed, same, hair)

    # ------------------------------------------------------------------ expansion
    def expand(self, pc: ProbeClass) -> Iterator[tuple[Member, Optional[str]]]:
        """Every raw (member, addressed node) of a class."""
        for members, exclude, hair, addressed, same in pc.parts:
            for m in members:
                if (m.ident in exclude) != hair:
                    continue
                if addressed is None:
                    yield m, None
                else:
                    for a in addressed:
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
