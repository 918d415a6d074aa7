"""The IPVS virtual-server table of one node: services, their destinations (real servers), counters.

Mirrors the kernel's ``struct ip_vs_service`` / ``struct ip_vs_dest`` (include/net/ip_vs.h) as far
as scheduling and ipvsadm output need:

- a destination list in *kernel list order*: ``__ip_vs_update_dest`` adds a new destination with
  ``list_add_rcu(&dest->n_list, &svc->destinations)``, i.e. at the head, so the most recently added
  real server comes first. rr/wrr/lc/... walk this order, so it decides tie-breaks.
- ``last_weight`` keeps the latest non-zero weight ("keep the last_weight with latest non-0 weight",
  ip_vs_ctl.c); the mh scheduler builds its table from it.
- every add/delete/update of a destination calls the scheduler's add_dest/del_dest/upd_dest hook.
- a deleted destination goes to the table's *destination trash* (``__ip_vs_del_dest``) and stays
  there, counters and all, while connections still reference it and for
  ``IP_VS_DEST_TRASH_PERIOD`` after the last one went (``ip_vs_dest_trash_expire``, a timer every
  half period). Adding the same real server to the same virtual server again brings that very
  destination back (``ip_vs_add_dest`` → ``ip_vs_trash_get_dest``): its active/inactive counters,
  and the connections that still point at it, carry on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from netsim.skb.packet import int2ip, ip2int

if TYPE_CHECKING:  # pragma: no cover
    from netsim.rules.ipvs.schedulers import Scheduler

# struct ip_vs_service flags (include/uapi/linux/ip_vs.h)
IP_VS_SVC_F_PERSISTENT = 0x0001
IP_VS_SVC_F_HASHED = 0x0002
IP_VS_SVC_F_ONEPACKET = 0x0004
IP_VS_SVC_F_SCHED1 = 0x0008      # sh-fallback / mh-fallback
IP_VS_SVC_F_SCHED2 = 0x0010      # sh-port / mh-port (kube-proxy's FlagSourceHash for mh)
IP_VS_SVC_F_SCHED3 = 0x0020

IPPROTO = {"TCP": 6, "UDP": 17, "SCTP": 132}
PROTO_NAME = {v: k for k, v in IPPROTO.items()}

FWD_MASQ = "Masq"
FWD_LOCAL = "Local"
FWD_TUNNEL = "Tunnel"
FWD_ROUTE = "Route"
FORWARD_METHODS = (FWD_MASQ, FWD_LOCAL, FWD_TUNNEL, FWD_ROUTE)


IP_VS_DEST_TRASH_PERIOD = 120.0     # seconds (ip_vs_ctl.c: 120 * HZ)


class IpvsError(ValueError):
    """A bad IPVS table operation or bad ipvsadm input (the message names what was expected)."""


@dataclass
class IpvsStats:
    """ip_vs_stats counters as ipvsadm --stats prints them."""
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


@dataclass(eq=False)
class RealServer:
    """struct ip_vs_dest: one destination of a virtual server."""
    ip: int
    port: int
    weight: int = 1
    forward: str = FWD_MASQ
    u_threshold: int = 0
    l_threshold: int = 0
    last_weight: int = 1
    activeconns: int = 0
    inactconns: int = 0
    persistconns: int = 0
    available: bool = True          # IP_VS_DEST_F_AVAILABLE (cleared when unlinked)
    overloaded: bool = False        # IP_VS_DEST_F_OVERLOAD (only set by u_threshold)
    stats: IpvsStats = field(default_factory=IpvsStats)
    idle_start: Optional[float] = None    # in the trash: when the trash timer first saw it unreferenced

    def references(self) -> int:
        """Connections and templates bound to this destination (its refcnt in the trash)."""
        return self.activeconns + self.inactconns + self.persistconns

    @property
    def addr(self) -> str:
        return f"{int2ip(self.ip)}:{self.port}"

    def overhead(self) -> int:
        """ip_vs_dest_conn_overhead(): active connections weigh 256 inactive ones."""
        return (self.activeconns << 8) + self.inactconns

    def __repr__(self) -> str:
        return f"RealServer({self.addr} w={self.weight} act={self.activeconns} inact={self.inactconns})"


@dataclass(eq=False)
class VirtualServer:
    """struct ip_vs_service: protocol + address + port, scheduler, persistence, destinations."""
    protocol: str
    ip: int
    port: int
    scheduler: str = "rr"
    flags: int = 0
    timeout: int = 0                # persistence timeout, seconds
    netmask: int = 0xFFFFFFFF
    dests: list[RealServer] = field(default_factory=list)   # kernel list order (head first)
    stats: IpvsStats = field(default_factory=IpvsStats)
    sched: Optional["Scheduler"] = field(default=None, repr=False)
    table: Optional["IpvsTable"] = field(default=None, repr=False)   # owner: holds the dest trash

    def __post_init__(self) -> None:
        if self.protocol not in IPPROTO:
            raise IpvsError(f"virtual server protocol must be TCP, UDP or SCTP, got {self.protocol!r}")
        if self.sched is None:
            from netsim.rules.ipvs.schedulers import make_scheduler
            self.sched = make_scheduler(self.scheduler)
        self.sched.init_service(self)

    @property
    def key(self) -> tuple[int, int, int]:
        return (IPPROTO[self.protocol], self.ip, self.port)

    @property
    def addr(self) -> str:
        return f"{int2ip(self.ip)}:{self.port}"

    def __str__(self) -> str:
        # kube-proxy's VirtualServer.String(): "<ip>:<port>/<PROTO>"
        return f"{self.addr}/{self.protocol}"

    @property
    def persistent(self) -> bool:
        return bool(self.flags & IP_VS_SVC_F_PERSISTENT)

    # -- destinations (ip_vs_ctl.c: ip_vs_add_dest / ip_vs_edit_dest / ip_vs_del_dest) ----------
    def find_dest(self, ip: int, port: int) -> Optional[RealServer]:
        for d in self.dests:
            if d.ip == ip and d.port == port:
                return d
        return None

    def add_dest(self, ip: int, port: int, weight: int = 1, forward: str = FWD_MASQ) -> RealServer:
        if self.find_dest(ip, port) is not None:
            raise IpvsError(f"{self}: destination {int2ip(ip)}:{port} already exists")
        if weight < 0:
            raise IpvsError(f"{self}: weight must be >= 0, got {weight}")
        d = self.table.trash_get(self, ip, port) if self.table is not None else None
        if d is None:
            d = RealServer(ip, port, weight=weight, forward=forward, last_weight=weight)
        else:                            # __ip_vs_update_dest(add=1) on the trashed dest
            d.weight, d.forward, d.available, d.idle_start = weight, forward, True, None
            if weight != 0:
                d.last_weight = weight
        self.dests.insert(0, d)          # list_add_rcu at the head
        self.sched.add_dest(self, d)
        return d

    def edit_dest(self, ip: int, port: int, weight: int) -> RealServer:
        d = self.find_dest(ip, port)
        if d is None:
            raise IpvsError(f"{self}: no destination {int2ip(ip)}:{port}")
        if weight < 0:
            raise IpvsError(f"{self}: weight must be >= 0, got {weight}")
        if weight != 0:
            d.last_weight = weight
        d.weight = weight
        self.sched.upd_dest(self, d)
        return d

    def del_dest(self, ip: int, port: int) -> RealServer:
        d = self.find_dest(ip, port)
        if d is None:
            raise IpvsError(f"{self}: no destination {int2ip(ip)}:{port}")
        idx = self.dests.index(d)
        del self.dests[idx]
        d.available = False
        self.sched.del_dest(self, d, idx)
        if self.table is not None:
            self.table.trash_put(self, d)
        return d

    def set_scheduler(self, name: str, flags: Optional[int] = None) -> None:
        """ip_vs_edit_service: a new scheduler starts from fresh state."""
        from netsim.rules.ipvs.schedulers import make_scheduler
        self.scheduler = name
        if flags is not None:
            self.flags = flags
        self.sched = make_scheduler(name)
        self.sched.init_service(self)


class IpvsTable:
    """All virtual servers of one node, hashed by (protocol, address, port) like ip_vs_svc_table."""

    def __init__(self) -> None:
        self._svcs: dict[tuple[int, int, int], VirtualServer] = {}
        # ipvs->dest_trash: (proto, vaddr, vport, daddr, dport) -> the deleted destination
        self.trash: dict[tuple[int, int, int, int, int], RealServer] = {}
        self.trash_timer: Optional[float] = None     # next run of ip_vs_dest_trash_expire
        self.now = 0.0                               # the owner's clock (IpvsNode.advance)

    def __len__(self) -> int:
        return len(self._svcs)

    def __iter__(self):
        return iter(self._svcs.values())

    def lookup(self, proto: int, ip: int, port: int) -> Optional[VirtualServer]:
        """ip_vs_service_find: O(1), whatever the number of services."""
        return self._svcs.get((proto, ip, port))

    def get(self, protocol: str, addr: str, port: int) -> Optional[VirtualServer]:
        return self._svcs.get((IPPROTO[protocol], ip2int(addr), port))

    def add_service(self, protocol: str, ip: int | str, port: int, scheduler: str = "rr",
                    flags: int = 0, timeout: int = 0, netmask: int = 0xFFFFFFFF) -> VirtualServer:
        if isinstance(ip, str):
            ip = ip2int(ip)
        vs = VirtualServer(protocol, ip, port, scheduler=scheduler, flags=flags, timeout=timeout,
                           netmask=netmask, table=self)
        if vs.key in self._svcs:
            raise IpvsError(f"virtual server {vs} already exists")
        self._svcs[vs.key] = vs
        return vs

    def del_service(self, vs: VirtualServer) -> None:
        """__ip_vs_del_service: every destination is unlinked and goes to the trash."""
        self._svcs.pop(vs.key, None)
        for d in vs.dests:
            d.available = False
            self.trash_put(vs, d)
        vs.dests = []

    # -- the destination trash (ip_vs_ctl.c) -----------------------------------------------------
    def trash_put(self, vs: VirtualServer, d: RealServer) -> None:
        """__ip_vs_del_dest: into the trash; the expiry timer starts if the trash was empty."""
        if not self.trash:
            self.trash_timer = self.now + IP_VS_DEST_TRASH_PERIOD / 2
        d.idle_start = None
        self.trash[(vs.key[0], vs.ip, vs.port, d.ip, d.port)] = d

    def trash_get(self, vs: VirtualServer, ip: int, port: int) -> Optional[RealServer]:
        """ip_vs_trash_get_dest: the same real server of the same virtual server, taken out."""
        return self.trash.pop((vs.key[0], vs.ip, vs.port, ip, port), None)

    def expire_trash(self, now: float) -> list[RealServer]:
        """Run ip_vs_dest_trash_expire up to `now` (every half period while the trash is not empty):
        a destination nobody references is stamped idle, and freed one period after that stamp."""
        freed: list[RealServer] = []
        while self.trash_timer is not None and self.trash_timer <= now:
            t = self.trash_timer
            for key, d in list(self.trash.items()):
                if d.references() > 0:
                    continue
                if d.idle_start is None:
                    d.idle_start = t
                elif t >= d.idle_start + IP_VS_DEST_TRASH_PERIOD:
                    del self.trash[key]
                    freed.append(d)
            self.trash_timer = t + IP_VS_DEST_TRASH_PERIOD / 2 if self.trash else None
        self.now = max(self.now, now)
        return freed

    def services(self) -> list[VirtualServer]:
        return list(self._svcs.values())
