"""kube-proxy's graceful termination of IPVS real servers (pkg/proxy/ipvs/graceful_termination.go).

When an endpoint leaves a virtual server, kube-proxy first tries to delete the real server; it
deletes it at once for UDP and SCTP (``IsRsGracefulTerminationNeeded`` is false for them,
PR #77802) and for TCP only when ActiveConn + InactiveConn == 0. Otherwise it sets the weight
to 0 (no new connections; existing ones keep flowing) and lists ``"<vs>/<ip:port>"``; every
``rsCheckDeleteInterval`` (1 minute) it retries the deletion of every listed real server.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from netsim.rules.ipvs.table import IpvsTable, RealServer, VirtualServer

RS_CHECK_DELETE_INTERVAL = 60.0


def unique_rs_name(vs: VirtualServer, rs: RealServer) -> str:
    """GetUniqueRSName: ``<vs.String()>/<rs.String()>``."""
    return f"{vs}/{rs.addr}"


def graceful_termination_needed(protocol: str) -> bool:
    return protocol.upper() not in ("UDP", "SCTP")


@dataclass
class GracefulTerminationManager:
    table: IpvsTable
    pending: dict[str, tuple[tuple[int, int, int], int, int]] = field(default_factory=dict)
    next_check: float = RS_CHECK_DELETE_INTERVAL

    def in_termination_list(self, vs: VirtualServer, rs: RealServer) -> bool:
        return unique_rs_name(vs, rs) in self.pending

    def _delete_rs(self, vs: VirtualServer, rs: RealServer) -> bool:
        """deleteRsFunc: delete unless TCP connections remain."""
        if graceful_termination_needed(vs.protocol) and rs.activeconns + rs.inactconns != 0:
            return False
        vs.del_dest(rs.ip, rs.port)
        return True

    def graceful_delete_rs(self, vs: VirtualServer, rs: RealServer) -> str:
        """GracefulDeleteRS: returns "deleted" or "quiesced" (weight 0, listed)."""
        name = unique_rs_name(vs, rs)
        if self._delete_rs(vs, rs):
            self.pending.pop(name, None)
            return "deleted"
        if rs.weight != 0:
            vs.edit_dest(rs.ip, rs.port, 0)
        self.pending[name] = (vs.key, rs.ip, rs.port)
        return "quiesced"

    def move_out_of_list(self, vs: VirtualServer, rs: RealServer) -> None:
        """MoveRSOutofGracefulDeleteList: the endpoint is back; delete the weight-0 RS now."""
        self.pending.pop(unique_rs_name(vs, rs), None)
        vs.del_dest(rs.ip, rs.port)

    def try_delete_rs(self) -> list[str]:
        """tryDeleteRs(): one pass over the list; returns the names deleted."""
        done = []
        for name, (key, ip, port) in list(self.pending.items()):
            vs = self.table.lookup(*key)
            rs = vs.find_dest(ip, port) if vs is not None else None
            if vs is None or rs is None:
                del self.pending[name]
                done.append(name)
                continue
            if self._delete_rs(vs, rs):
                del self.pending[name]
                done.append(name)
        return done

    def advance(self, now: float) -> list[str]:
        """Run the 1-minute loop up to ``now``."""
        done: list[str] = []
        while now >= self.next_check:
            done += self.try_delete_rs()
            self.next_check += RS_CHECK_DELETE_INTERVAL
        return done
