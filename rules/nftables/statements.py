"""nftables statements (nft(8) "STATEMENTS"): reject, log, nat (dnat/snat/masquerade/redirect),
set (`meta mark set`, `ct mark set`), dynamic set updates. A mixin of the rule compiler.

As in the kernel: nft_reject issues NF_DROP after sending the ICMP error or RST; nft_nat records the
binding and issues NF_ACCEPT (nf_nat_setup_info), which ends the base chain; nft_dynset adds the
element or refreshes its timeout; nft_meta_set / nft_ct_set write the mark and go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from netsim.rules.nftables.exprs import Selector
from netsim.rules.nftables.model import Element
from netsim.rules.nftables.values import VerdictVal, parse_duration, parse_scalar, parse_value

Op = Callable[[Any, Any], Any]
ACCEPT = VerdictVal("accept")
DROP = VerdictVal("drop")
# reject types (nft(8) "REJECT STATEMENT"; icmp codes of include/uapi/linux/icmp.h) as the walker names them
REJECT_TYPES = {"net-unreachable": "icmp-net-unreachable", "host-unreachable": "icmp-host-unreachable",
                "prot-unreachable": "icmp-proto-unreachable", "port-unreachable": "icmp-port-unreachable",
                "net-prohibited": "icmp-net-prohibited", "host-prohibited": "icmp-host-prohibited",
                "admin-prohibited": "icmp-admin-prohibited", "no-route": "icmp-net-unreachable"}
DEFAULT_REJECT = "icmp-port-unreachable"   # nft's default for `reject` in the ip family (checked in a kernel)


@dataclass(frozen=True, slots=True)
class NatAction:
    """What a nat statement asked for (the walker/conntrack applies it, as nf_nat_setup_info does)."""

    kind: str                         # DNAT | SNAT | MASQUERADE | REDIRECT
    ip: Optional[int] = None
    port: Optional[int] = None
    random_fully: bool = False




class StatementParser:
    """Statement parsing for RuleCompiler (which provides the cursor, expr(), primary(), maps, sets)."""

    def _reject(self) -> Op:
        self.take()
        kind = DEFAULT_REJECT
        tcp_only = False
        if self.peek() == "with":
            self.take()
            fam = self.take("icmp, icmpx or tcp")
            if fam == "tcp":
                if self.take("reset") != "reset":
                    raise self.error("expected 'reject with tcp reset'")
                kind, tcp_only = "tcp-reset", True
            elif fam in ("icmp", "icmpx"):
                if self.peek() == "type":
                    self.take()
                code = self.take("an icmp reject type")
                if code not in REJECT_TYPES:
                    raise self.error(f"unknown reject type {code!r} (expected {', '.join(REJECT_TYPES)})")
                kind = REJECT_TYPES[code]
            else:
                raise self.error(f"reject with {fam}: expected icmp, icmpx or tcp")

        def reject(p, s):
            if tcp_only and p._proto != 6:
                return False
            s.reject_with = kind
            return DROP
        return reject

    def _log(self) -> None:
        self.take()
        while self.peek() in ("prefix", "level", "group", "snaplen", "queue-threshold", "flags"):
            opt = self.take()
            self.take_string(f"a log {opt}")
            while opt == "flags" and self.peek() == ",":
                self.take()
                self.take()
        return None

    def _nat(self, kind: str) -> Op:
        if self.peek() == "ip":
            self.take()
        mode = None
        if self.peek() == "addr":                  # dnat ip addr . port to MAP
            self.take()
            self.expect(".")
            if self.take("port") != "port":
                raise self.error(f"{kind} ip addr . port: expected 'port'")
            mode = "addr.port"
        self.expect("to")
        w = self.peek()
        if w and (w[0].isdigit() or w[0] == ":"):
            text = self.take()
            ip, port = _addr_port(text, self.where)
            act = NatAction(kind.upper(), ip, port)
            self._nat_flags()

            def nat(p, s):
                s.nat = act
                return ACCEPT
            return nat
        sel = self.primary()
        data_types = ("ipv4_addr", "inet_service") if mode == "addr.port" else None
        get = self._map_value(sel, data_types, allow_concat_data=True)
        self._nat_flags()
        up = kind.upper()

        def nat_map(p, s):
            v = get(p, s)
            if v is None:
                return False
            s.nat = NatAction(up, v[0], v[1]) if isinstance(v, tuple) else NatAction(up, v, None)
            return ACCEPT
        return nat_map

    def _nat_flags(self) -> None:
        while self.peek() in ("random", "fully-random", "persistent"):
            self.take()
            if self.peek() == ",":
                self.take()

    def _masq(self, kind: str) -> Op:
        port = None
        if self.peek() == "to":
            self.take()
            text = self.take("a port")
            if not text.startswith(":"):
                raise self.error(f"{kind} to {text}: expected ':PORT'")
            port = int(text[1:].partition("-")[0])
        fully = False
        while self.peek() in ("random", "fully-random", "persistent", ","):
            fully = fully or self.peek() == "fully-random"
            self.take()
        act = NatAction(kind.upper(), None, port, fully)

        def masq(p, s):
            s.nat = act
            return ACCEPT
        return masq

    def _dynset(self) -> Op:
        refresh = self.take() == "update"
        name = self.take()[1:]
        st = self._named_set(name)
        self.expect("{")
        sel = self.expr()
        timeout = None
        if self.peek() == "timeout":
            self.take()
            timeout = parse_duration(self.take("a timeout"), self.where)
        if self.peek() == "counter":
            self.take()
        self.expect("}")
        tmo = timeout if timeout is not None else st.timeout
        keyof = self.key_getter(sel, st)

        def dynset(p, s):
            # nft_dynset.c: add the element if absent; `update` also refreshes an existing one's timeout
            key = keyof(p, s)
            if key is None:
                return False
            e = st.exact.get(key)
            exp = s.ctx.now + tmo if tmo is not None else None
            if e is None:
                st.exact[key] = Element(expires=exp)
            elif refresh:
                e.expires = exp
        return dynset

    def _set_stmt(self, sel: Selector) -> Op:
        self.take()
        if sel.settable is None:
            raise self.error(f"{sel.text} cannot be set")
        val = self._value_expr(sel.dtype[0])
        if sel.settable == "mark":
            def set_mark(p, s):
                v = val(p, s)
                if v is None:
                    return False
                p.mark = v & 0xFFFFFFFF
            return set_mark
        if sel.settable == "ctmark":
            def set_ctmark(p, s):
                v = val(p, s)
                if v is None:
                    return False
                if p.ct is not None:
                    p.ct.mark = v & 0xFFFFFFFF
            return set_ctmark

        def set_trace(p, s):
            s.nftrace = bool(val(p, s))
        return set_trace

    def _value_expr(self, dtype: str) -> Callable:
        """The right side of `... set`: a constant, or an expression (with bitwise ops, or a map)."""
        w = self.peek()
        if w and (w[0].isdigit() or w[0] == "-"):
            c = parse_scalar(dtype, self.take(), self.where)
            return lambda p, s: c
        sel = self.expr()
        if self.peek() == "map":
            return self._map_value(sel, (dtype,), allow_concat_data=False)
        return sel.get


def _addr_port(text: str, where: str) -> tuple[Optional[int], Optional[int]]:
    addr, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    ip = parse_value("ipv4_addr", addr, where) if addr else None
    if isinstance(ip, tuple):
        ip = ip[0]
    p = None
    if sep:
        p = parse_scalar("inet_service", port.partition("-")[0], where)
    return ip, p
