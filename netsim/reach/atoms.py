"""Address atoms: the IPv4 space cut into disjoint intervals at every boundary of the ranges that the
rules can tell apart (the cluster CIDR, the node network, every loadBalancerSourceRange and LB
ingress IP, 0.0.0.0/0), so two sources in one atom match exactly the same source-address rules —
the "atoms" of Batfish's header-space analysis (Kazemian et al., Header Space Analysis, NSDI 2012)."""
from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from typing import Iterable

import netaddr


@dataclass(frozen=True)
class Atoms:
    """Sorted interval starts; atom i is [starts[i], starts[i+1] - 1]."""

    starts: tuple[int, ...]

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> "Atoms":
        """The coarsest partition of 0.0.0.0/0 in which every CIDR (or address) given is a union of atoms."""
        cuts = {0}
        for text in cidrs:
            net = netaddr.IPNetwork(text)
            if net.version != 4:
                continue
            cuts.add(int(net.first))
            if net.last < 0xFFFFFFFF:
                cuts.add(int(net.last) + 1)
        return cls(tuple(sorted(cuts)))

    def index(self, ip: str) -> int:
        """The atom an address falls in."""
        return bisect.bisect_right(self.starts, int(netaddr.IPAddress(ip))) - 1

    def label(self, i: int) -> str:
        """``first-last`` of atom i, as netaddr prints an IPRange (a CIDR when it is one)."""
        return _label(self.starts, i)

    def label_of(self, ip: str) -> str:
        return self.label(self.index(ip))

    def __len__(self) -> int:
        return len(self.starts)


@functools.lru_cache(maxsize=4096)
def _label(starts: tuple[int, ...], i: int) -> str:
    first = starts[i]
    last = starts[i + 1] - 1 if i + 1 < len(starts) else 0xFFFFFFFF
    r = netaddr.IPRange(first, last)
    cidrs = r.cidrs()
    return str(cidrs[0]) if len(cidrs) == 1 else str(r)
