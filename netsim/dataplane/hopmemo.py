"""Whole-hop memo: a node's handling of a received packet, remembered and replayed.

What a node does with a packet it receives (PREROUTING, the routing decision, FORWARD or INPUT,
POSTROUTING, the device it leaves by) is a function of a few things: the packet fields the hooks
and the routing read, the conntrack entry the packet belongs to (or that it has none), and the
node's rules, routes, neighbours and local addresses. Everything else a hop does — conntrack's
own bookkeeping (timeouts, counters, a new entry, its confirmation or an insert clash), applying a
NAT binding to the packet, a MASQUERADE port drawn from the RNG, the VXLAN header, handing the
packet to a socket — depends on the packet's other fields or on state, and is run live every time.

So a hop is recorded while it is walked live (netsim.dataplane.hooks ``_hook`` writes down what
each hook ran) and kept under its :func:`hop_key` when every rule-set walk in it was *pure*: a
walk the rule engine remembered whole (netsim.rules.iptables.engine.VerdictMemo: no ``-m
statistic`` draw, no ``-m recent`` list, nothing that reads beyond the fields it is keyed by) and
that reads no field the hop key leaves out (the source port: a new connection draws one, and
keying on it would remember nothing). A hop that runs anything else (a draw, an IPVS hook, a DROP,
a bridged frame, a capture) is not kept and is walked live each time, exactly as before. A packet
whose key was kept gets the recorded hop: the same RULE steps, rules counted and packet marks, and
the live parts in the same order, so its trace, the conntrack tables and every RNG draw are those
of the live walk (tests/test_hop_memo.py checks this with hypothesis on random flows and random
cluster changes). The memo is emptied when the walker rebuilds its hosts and rules (any cluster
change, a node stopped or started) and when a walker is forked.

Only rule sets whose results say they are pure (HookResult.pure_fields: iptables mode's engine)
are remembered; nftables and IPVS hops are walked live.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

LOCAL, FORWARD, BRIDGED = 0, 1, 2   # what a recorded hop does after PREROUTING
# what a recorded hop ran, in order (HookRunner._hook and IPv4Stack._node_walk write them):
# (OP_CHAIN, RULE steps, rules counted, mark after): pure functions' results, consecutive ones merged;
# OP_CT: conntrack (nf_conntrack_in); (OP_NAT, manip, lookups or None): a NAT binding asked for (each
# function's (steps, rules, mark, result whose binding was made)) and applied; (OP_CONFIRM, shown);
# (OP_ROUTE, route, hairpin): forwarded by route; (OP_LOCAL, ROUTED detail): delivered locally;
# (OP_BRIDGED, port): a frame bridged between two cni0 ports (br_netfilter), out by ``port``.
OP_CHAIN, OP_NAT, OP_CONFIRM, OP_ROUTE, OP_LOCAL, OP_BRIDGED = 0, 2, 3, 4, 5, 6
OP_CT = (1,)

# The packet fields a pure result may depend on (HookResult.pure_fields) that the hop key holds
# only when some remembered result of the bucket read them, and how the key reads each: ``p`` the
# packet as it arrives, ``np`` the destination port a conntrack binding gives it in PREROUTING.
# The other fields such a result can name are fixed by the bucket: the interface the packet came
# in by (iif) and leaves by (oif, from the route), the conntrack state and direction (ctstate,
# ct_reply), the protocol, the host's local addresses (local).
_OPTIONAL = {"src": "p._src", "sport": "p._sport", "dport": "p._dport, np",
             "tcp_flags": "(p.buf[p._l4 + 13] if p._proto == 6 else 0)",
             "physdev_in": "p.physdev_in", "physdev_out": "p.physdev_out"}
_FIXED = frozenset({"dst", "mark", "proto", "iif", "oif", "ctstate", "ct_reply", "local"})


class HopRecording:
    """What one hop ran, written down by the hook runner while it is walked live."""

    __slots__ = ("ok", "ops", "hooks", "tail", "fields")

    def __init__(self, after_prerouting: bool = False) -> None:
        self.ok = True
        self.ops: list[tuple] = []         # what ran, in order (OP_*)
        self.hooks = 1 if after_prerouting else 0      # hook runs (a tail: PREROUTING ran before it)
        self.tail: Optional[tuple] = None  # (LOCAL,), (FORWARD, route) or (BRIDGED, port)
        self.fields: set[str] = set()      # the packet fields the pure results read

    def pure(self, res: Any) -> bool:
        """Whether a hook function's result is a function of packet fields alone (then the fields
        join the hop's); when not, the hop is not kept."""
        fields = res.pure_fields
        if fields is None or res.ct_dnat:
            self.ok = False
            return False
        self.fields.update(fields)
        return True

    def chain(self, hits: list, n: int, mark: int) -> None:
        """A pure function's result: its RULE steps, rules counted and the mark it left."""
        ops = self.ops
        if ops and ops[-1][0] == OP_CHAIN:
            _k, h0, n0, _m = ops[-1]
            ops[-1] = (OP_CHAIN, h0 + tuple(hits), n0 + n, mark)
        else:
            ops.append((OP_CHAIN, tuple(hits), n, mark))

    def plan(self) -> Optional[tuple]:
        """The replay: (LOCAL, ops), (FORWARD, ops, route) or (BRIDGED, ops, port); None when the hop
        may not be kept."""
        if not self.ok or self.tail is None or not self.fields <= _FIXED | _OPTIONAL.keys():
            return None
        if self.tail[0] == LOCAL:
            return (LOCAL, tuple(self.ops)) if self.hooks == 2 else None
        return (self.tail[0], tuple(self.ops), self.tail[1]) if self.hooks == 3 else None


class _Bucket:
    """The hops remembered for one host, interface, protocol, local-address version and conntrack
    finding: the optional fields their keys hold, and the replays by key."""

    __slots__ = ("fields", "key", "plans")

    def __init__(self, fields: frozenset, key: Callable) -> None:
        self.fields = fields
        self.key = key
        self.plans: dict[tuple, tuple] = {}


class HopMemo:
    """The remembered hops of one walker (see the module text).

    As the rule engine's VerdictMemo keeps walks, hops are kept in buckets whose key holds every
    optional field a remembered result of the bucket read: a recording that read more is not kept
    and the bucket starts afresh with the larger key. Two packets equal in the key take the same
    path through every rule set (each walk's branches read only fields in the key) and through the
    routing (the destination after PREROUTING: the packet's, a rule's DNAT or the conntrack
    binding's, all in the key)."""

    __slots__ = ("buckets", "keys", "size")
    MAX_HOPS = 1 << 14

    def __init__(self) -> None:
        self.buckets: dict[tuple, _Bucket] = {}
        self.keys: dict[frozenset, Callable] = {}
        self.size = 0

    def clear(self) -> None:
        self.buckets.clear()
        self.size = 0

    def _key(self, fields: frozenset) -> Callable:
        fn = self.keys.get(fields)
        if fn is None:
            opt = "".join(f", {_OPTIONAL[f]}" for f in sorted(fields) if f in _OPTIONAL)
            fn = self.keys[fields] = eval(  # noqa: S307 - text from the fixed table above
                f"lambda p, nd, np: (p._dst, p.buf[8] > 1, p.mark, nd{opt})")
        return fn

    def lookup_tail(self, host: Any, iface: Any, pkt: Any, e: Any, bridged_to: Any = None) -> tuple:
        """:meth:`lookup` for what follows a PREROUTING walked live: under the conntrack state it left
        (the packet's ctstate and direction, the entry's confirmation and bindings) and the packet
        as it left it."""
        what = ("after PREROUTING", pkt.ctstate, pkt.ct_reply,
                None if e is None else (e.confirmed, e.dnat, e.snat))
        return self.lookup(host, iface, pkt, what, None, None, None, bridged_to)

    def lookup(self, host: Any, iface: Any, pkt: Any, what: Any, nd: Any, np: Any, hit: Any,
               bridged_to: Any = None) -> tuple:
        """(bucket, its key function, the key, the remembered replay or None, the conntrack entry
        found) for a received packet, given what Conntrack.peek found for it (``what``, ``nd``,
        ``np``, ``hit``: the caller peeks, a hop whose peek is None is not memoised). ``bridged_to``:
        the cni0 port a bridged frame is for (br_netfilter), which the bucket holds (a frame for
        another port, or a routed one, is another bucket)."""
        bkey = (host.name, iface.name, pkt._proto, host.routes.local.version, what,
                None if bridged_to is None else bridged_to.bridge_port)
        b = self.buckets.get(bkey)
        if b is None:
            if len(self.buckets) >= self.MAX_HOPS:
                self.clear()
            b = self.buckets[bkey] = _Bucket(frozenset(), self._key(frozenset()))
        fn = b.key
        key = fn(pkt, nd, np)
        return b, fn, key, b.plans.get(key), hit

    def store(self, found: tuple, rec: HopRecording) -> None:
        """Keep a recorded hop under the key :meth:`lookup` gave (``found``)."""
        plan = rec.plan()
        b, fn, key, _plan, _hit = found
        if plan is None or b.key is not fn:
            return
        extra = frozenset(f for f in rec.fields if f in _OPTIONAL)
        if not extra <= b.fields:
            fields = b.fields | extra              # read more: the bucket's keys hold it from now on
            b.fields, b.key, b.plans = fields, self._key(fields), {}
            return
        if self.size >= self.MAX_HOPS:
            self.clear()
            return
        self.size += 1
        b.plans[key] = plan
