"""How one packet's walk ended (:class:`End`), and the error a bad trace request raises."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from netsim.dataplane.topology import Host
    from netsim.skb.packet import Packet


class WalkError(ValueError):
    """A trace request that cannot be carried out (unknown client, bad address...)."""


class End:
    """How one packet's walk ended."""

    __slots__ = ("disposition", "host", "detail", "owner", "pkt", "generated", "client_error")

    def __init__(self, disposition: str, host: Optional[Host] = None, detail: str = "",
                 owner: Optional[str] = None, pkt: Optional[Packet] = None,
                 generated: Optional[list[tuple[Host, Packet]]] = None) -> None:
        self.disposition = disposition  # DELIVERED CLIENT NO_LISTENER KERNEL REJECTED DROPPED NO_ROUTE
        #                                 NEIGHBOR_UNREACHABLE LOST TTL_EXCEEDED
        self.host = host
        self.detail = detail
        self.owner = owner              # pod key whose socket got it
        self.pkt = pkt                  # the packet as it arrived
        self.generated = generated if generated is not None else []
        self.client_error: Optional[str] = None     # errno the sending process sees (local drops)

    def __repr__(self) -> str:
        return (f"End({self.disposition!r}, host={self.host!r}, detail={self.detail!r}, owner={self.owner!r}, "
                f"generated={len(self.generated)})")
