"""IP address management: per-node podCIDRs, pod IPs, ClusterIPs, NodePorts and LoadBalancer IPs."""
from __future__ import annotations

import ipaddress
import random
from typing import Optional


class AllocationError(ValueError):
    """An explicit address or port is invalid or already in use, or a range is exhausted."""


class NodeCIDRAllocator:
    """kube-controller-manager's range allocator: node i gets the i-th /mask of the cluster CIDR."""

    def __init__(self, cluster_cidr: str, mask: int) -> None:
        self.network = ipaddress.ip_network(cluster_cidr)
        self.mask = mask
        self.used: set[str] = set()
        self._low = 0              # no subnet below this index is free (the scan starts here, not at 0)

    def _subnet(self, i: int) -> str:
        """The i-th /mask of the network, as ipaddress.subnets() would print it."""
        size = 1 << (self.network.max_prefixlen - self.mask)
        addr = ipaddress.ip_address(int(self.network.network_address) + i * size)
        return f"{addr}/{self.mask}"

    def allocate(self) -> str:
        if self.mask < self.network.prefixlen:
            raise ValueError(f"new prefix /{self.mask} must be longer than {self.network}'s")
        count = 1 << (self.mask - self.network.prefixlen)
        i = self._low
        while i < count:
            s = self._subnet(i)
            i += 1
            if s not in self.used:
                self.used.add(s)
                self._low = i
                return s
        self._low = count
        raise AllocationError(f"cluster CIDR {self.network} has no free /{self.mask} for another node")

    def release(self, cidr: str) -> None:
        if cidr in self.used:
            self.used.discard(cidr)
            net = ipaddress.ip_network(cidr, strict=False)
            size = 1 << (self.network.max_prefixlen - self.mask)
            if net.prefixlen == self.mask and net.subnet_of(self.network):     # type: ignore[arg-type]
                self._low = min(self._low, (int(net.network_address) - int(self.network.network_address)) // size)


class PodIPAllocator:
    """The host-local IPAM plugin on one node: .1 is the cni0 gateway, pods get .2, .3, ... in order."""

    # Up to this many addresses (a /16 of IPv4), which are taken is one byte per address of the
    # podCIDR (a /24: 256 bytes) rather than a set of ints (at 500 pods a node ~45 KiB); larger
    # ranges (IPv6) keep the set.
    BYTEMAP_LIMIT = 1 << 16

    def __init__(self, pod_cidr: str) -> None:
        self.network = ipaddress.ip_network(pod_cidr)
        self._base = int(self.network.network_address)
        self._taken: Optional[bytearray] = \
            bytearray(self.network.num_addresses) if self.network.num_addresses <= self.BYTEMAP_LIMIT else None
        self._taken_set: set[int] = set()
        self._next = self._base + 2

    def _is_taken(self, addr: int) -> bool:
        return bool(self._taken[addr - self._base]) if self._taken is not None else addr in self._taken_set

    def allocate(self) -> str:
        first = self._base + 2
        last = int(self.network.broadcast_address) - 1
        span = last - first + 1
        for i in range(span):
            cand = first + (self._next - first + i) % span
            if not self._is_taken(cand):
                if self._taken is not None:
                    self._taken[cand - self._base] = 1
                else:
                    self._taken_set.add(cand)
                self._next = cand + 1
                return str(ipaddress.ip_address(cand))
        raise AllocationError(f"pod CIDR {self.network} is full")

    def release(self, ip: str) -> None:
        addr = int(ipaddress.ip_address(ip))
        if self._taken is None:
            self._taken_set.discard(addr)
        elif 0 <= addr - self._base < len(self._taken):
            self._taken[addr - self._base] = 0


class ClusterIPAllocator:
    """The API server's service IP allocator: random free address of the service CIDR (seeded).

    Like Kubernetes, the network address and the broadcast address are never handed out; dynamic
    allocation prefers the upper band, leaving the lower band (where static IPs such as kube-dns'
    10.96.0.10 live) for explicit requests.
    """

    def __init__(self, service_cidr: str, rng: random.Random) -> None:
        self.network = ipaddress.ip_network(service_cidr)
        self.rng = rng
        self.used: set[int] = set()
        # KEP-3070 (ipallocator calculateRangeOffset): the static band is min(max(16, cidrSize/16), 256)
        # addresses after the network address, none when the CIDR has at most 16 addresses.
        self.static_band = _range_offset(self.network.num_addresses, lo=16, hi=256, step=16)

    def reserve(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise AllocationError(f"{ip!r} is not a valid IP address") from None
        if addr not in self.network or addr in (self.network.network_address, self.network.broadcast_address):
            raise AllocationError(f"{ip} is not in the valid range of service CIDR {self.network}")
        if int(addr) in self.used:
            raise AllocationError(f"{ip} is already allocated")
        self.used.add(int(addr))

    def allocate(self) -> str:
        base = int(self.network.network_address)
        size = self.network.num_addresses - 2
        lo, hi = base + 1 + self.static_band, base + size
        if lo > hi:
            lo = base + 1
        for _ in range(64):
            cand = self.rng.randint(lo, hi)
            if cand not in self.used:
                self.used.add(cand)
                return str(ipaddress.ip_address(cand))
        for cand in list(range(lo, hi + 1)) + list(range(base + 1, lo)):
            if cand not in self.used:
                self.used.add(cand)
                return str(ipaddress.ip_address(cand))
        raise AllocationError(f"service CIDR {self.network} is full")

    def release(self, ip: Optional[str]) -> None:
        if ip and ip != "None":
            self.used.discard(int(ipaddress.ip_address(ip)))


class PortAllocator:
    """The NodePort allocator: random free port in the range (seeded); explicit ports validated."""

    def __init__(self, lo: int, hi: int, rng: random.Random) -> None:
        self.lo, self.hi, self.rng = lo, hi, rng
        self.used: set[int] = set()
        # KEP-3668 (portallocator calculateRangeOffset): dynamic ports prefer the range above the
        # first min(max(16, size/32), 128) ports, which are left for explicit nodePorts.
        self.static_band = _range_offset(hi - lo + 1, lo=16, hi=128, step=32)

    def reserve(self, port: int) -> None:
        """portallocator.Allocate: ErrNotInRange / ErrAllocated, worded as the API server words them."""
        if not self.lo <= port <= self.hi:
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is "
                                  f"{self.lo}-{self.hi}")
        if port in self.used:
            raise AllocationError("provided port is already allocated")
        self.used.add(port)

    def allocate(self) -> int:
        upper = self.lo + self.static_band
        for _ in range(64):
            cand = self.rng.randint(upper, self.hi)
            if cand not in self.used:
                self.used.add(cand)
                return cand
        for cand in list(range(upper, self.hi + 1)) + list(range(self.lo, upper)):
            if cand not in self.used:
                self.used.add(cand)
                return cand
        raise AllocationError("range is full")            # portallocator ErrFull

    def release(self, port: Optional[int]) -> None:
        if port:
            self.used.discard(port)


def _range_offset(size: int, lo: int, hi: int, step: int) -> int:
    """min(max(lo, size/step), hi), or 0 when the range has at most `lo` members."""
    if size <= lo:
        return 0
    return min(max(lo, size // step), hi)


class LoadBalancerIPAllocator:
    """A cloud-provider stand-in: LoadBalancer Services without status.ingress get the next pool address."""

    def __init__(self, pool: str) -> None:
        self.network = ipaddress.ip_network(pool)
        self.used: set[str] = set()

    def reserve(self, ip: str) -> None:
        self.used.add(ip)

    def allocate(self) -> str:
        for addr in self.network.hosts():
            s = str(addr)
            if s not in self.used:
                self.used.add(s)
                return s
        raise AllocationError(f"load balancer pool {self.network} is exhausted")

    def release(self, ip: str) -> None:
        self.used.discard(ip)
