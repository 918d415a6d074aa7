"""Compile one nftables rule into a Program: a list of operations run left to right, as the kernel
runs a rule's expressions (net/netfilter/nf_tables_core.c nft_do_chain).

An operation is ``op(pkt, state)`` returning None (NFT_CONTINUE: go on with the next expression),
False (NFT_BREAK: the rule does not match), or a VerdictVal (the rule's verdict). Statements
follow the kernel's expressions: nft_nat (dnat/snat/masquerade/redirect) issues NF_ACCEPT after
recording the binding, nft_reject issues NF_DROP after the ICMP/RST, nft_lookup with a map writes
the verdict register (vmap) or a data register (map), a miss is NFT_BREAK, nft_dynset adds or
refreshes an element, nft_meta_set / nft_ct_set write the mark.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from netsim.rules.nftables.cursor import Cursor
from netsim.rules.nftables.exprs import Selector, SelectorParser
from netsim.rules.nftables.lexer import NftError, Tok
from netsim.rules.nftables.model import NftSet, Table
from netsim.rules.nftables.statements import ACCEPT, DROP, NatAction, Op, StatementParser
from netsim.rules.nftables.values import BITMASK_TYPES, VERDICTS, VerdictVal, parse_scalar, parse_value

RELOPS = {"==": "==", "eq": "==", "!=": "!=", "ne": "!=", "<": "<", "lt": "<", ">": ">", "gt": ">",
          "<=": "<=", "le": "<=", ">=": ">=", "ge": ">="}
BINOPS = {"and": "&", "&": "&", "or": "|", "|": "|", "xor": "^", "^": "^", "<<": "<<", ">>": ">>"}
__all__ = ["RuleCompiler", "Program", "compile_rule", "NatAction", "ACCEPT", "DROP"]


@dataclass(eq=False)
class Program:
    ops: list[Op]
    jumps: list[str] = field(default_factory=list)     # chains this rule can jump/goto (also via maps)
    sets: list[str] = field(default_factory=list)      # named sets it references


class RuleCompiler(Cursor, SelectorParser, StatementParser):
    def __init__(self, toks: list[Tok], table: Table, source: str, line: int) -> None:
        super().__init__(toks, source, line)
        self.table = table
        self.prog = Program([])

    def compile(self) -> tuple[Program, Optional[str]]:
        comment = None
        ops = self.prog.ops
        while not self.at_end():
            if self.peek() == "comment":
                self.take()
                comment = self.take_string("a comment string")
                if not self.at_end():
                    raise self.error(f"unexpected {self.peek()!r} after the rule's comment")
                break
            op = self.statement()
            if op is not None:
                ops.append(op)
        return self.prog, comment

    # ------------------------------------------------------------------ statements
    def statement(self) -> Optional[Op]:
        w = self.peek()
        if w in VERDICTS or w in ("jump", "goto"):
            return self._verdict_op(self._verdict())
        if w == "reject":
            return self._reject()
        if w == "counter":
            self.take()
            while self.peek() in ("packets", "bytes"):
                self.take()
                self.take("a number")
            return None
        if w == "log":
            return self._log()
        if w in ("dnat", "snat"):
            return self._nat(self.take())
        if w in ("masquerade", "redirect"):
            return self._masq(self.take())
        if w in ("update", "add") and self.peek(1).startswith("@"):
            return self._dynset()
        if w == "notrack":
            self.take()

            def notrack(p, s):
                p.ctstate = "UNTRACKED"
            return notrack
        return self._expr_statement()

    def _verdict(self) -> VerdictVal:
        w = self.take()
        if w in ("jump", "goto"):
            target = self.take("a chain name")
            if target not in self.table.chains:
                raise self.error(f"{w} {target}: no such chain in table {self.table.family} {self.table.name} "
                                 "(nft needs the chain added before a rule refers to it)")
            self.prog.jumps.append(target)
            return VerdictVal(w, target)
        if w == "queue":
            raise self.error("queue verdicts are not modelled")
        return VerdictVal(w)

    @staticmethod
    def _verdict_op(v: VerdictVal) -> Op:
        return lambda p, s: v

    # ------------------------------------------------------------------ expressions
    def expr(self) -> Selector:
        """A primary, optionally with a bitwise operation, concatenated with '.'."""
        parts = [self._binop(self.primary())]
        while self.peek() == ".":
            self.take()
            parts.append(self._binop(self.primary()))
        if len(parts) == 1:
            return parts[0]
        getters = tuple(p.get for p in parts)

        def concat(p, s):
            out = []
            for g in getters:
                v = g(p, s)
                if v is None:
                    return None
                out.append(v)
            return tuple(out)
        return Selector(concat, tuple(t for p in parts for t in p.dtype), " . ".join(p.text for p in parts))

    def _binop(self, sel: Selector) -> Selector:
        while self.peek() in BINOPS:
            op = BINOPS[self.take()]
            c = parse_scalar(sel.dtype[0], self.take("a constant"), self.where)
            if not isinstance(c, int):
                raise self.error(f"{op} needs an integer constant")
            g = sel.get
            f = {"&": lambda v, c=c: v & c, "|": lambda v, c=c: v | c, "^": lambda v, c=c: v ^ c,
                 "<<": lambda v, c=c: (v << c) & 0xFFFFFFFF, ">>": lambda v, c=c: v >> c}[op]
            sel = Selector(lambda p, s, g=g, f=f: None if (v := g(p, s)) is None else f(v),
                           sel.dtype, f"{sel.text} {op} {c:#x}", sel.settable)
        return sel

    def _expr_statement(self) -> Op:
        sel = self.expr()
        w = self.peek()
        if w == "set":
            return self._set_stmt(sel)
        if w == "vmap":
            self.take()
            return self._vmap(sel)
        if w == "map":
            raise self.error(f"'{sel.text} map ...' is a value, not a statement")
        op = "=="
        explicit = False
        if w in RELOPS:
            op = RELOPS[self.take()]
            explicit = True
        return self._relational(sel, op, explicit)

    def _map_value(self, sel: Selector, data_types, allow_concat_data: bool) -> Callable:
        """`SEL map { k : v, ... }` or `SEL map @m`: the data of the element SEL's value hits."""
        if self.take("map") != "map":
            raise self.error(f"expected 'map' after {sel.text}")
        if self.peek().startswith("@"):
            st = self._named_set(self.take()[1:])
            if st.kind != "map" or st.is_vmap:
                raise self.error(f"@{st.name} is not a data map")
        else:
            dt = data_types or self._guess_data_types()
            st = self._anon(sel, "map", dt)
        return self._lookup_getter(sel, st)

    def _guess_data_types(self) -> tuple[str, ...]:
        # `dnat ip to numgen ... map { 0 : 10.180.0.4 . 80 }` (nft list's form): addr, or addr . port
        i, depth = self.pos, 0
        while i < len(self.toks):
            t = self.toks[i].text
            if t == "{":
                depth += 1
            elif t == "}":
                break
            elif t == ":" and depth == 1:
                if i + 2 < len(self.toks) and self.toks[i + 2].text == ".":
                    return ("ipv4_addr", "inet_service")
                return ("ipv4_addr",)
            i += 1
        return ("ipv4_addr",)

    def key_getter(self, sel: Selector, st: NftSet) -> Callable:
        """(pkt, state) -> the key tuple `sel` reads for set `st` (None: a field is absent)."""
        if sel.dtype != st.key_types:
            raise self.error(f"{sel.text} ({' . '.join(sel.dtype)}) does not fit the key type "
                             f"{' . '.join(st.key_types)} of {'@' + st.name if st.name else 'the set'}")
        get = sel.get
        if sel.concat:
            return get
        return lambda p, s: None if (v := get(p, s)) is None else (v,)

    def _lookup_getter(self, sel: Selector, st: NftSet) -> Callable:
        key = self.key_getter(sel, st)

        def lookup(p, s):
            k = key(p, s)
            if k is None:
                return None
            s.lookups += 1
            e = st.lookup(k, s.ctx.now)
            return None if e is None else e.data
        return lookup

    def _vmap(self, sel: Selector) -> Op:
        if self.peek().startswith("@"):
            st = self._named_set(self.take()[1:])
            if not st.is_vmap:
                raise self.error(f"@{st.name} is not a verdict map")
        else:
            st = self._anon(sel, "map", ("verdict",))
            for e in list(st.exact.values()) + [e for _, e in st.ranges]:
                v = e.data
                if v.chain is not None:
                    if v.chain not in self.table.chains:
                        raise self.error(f"{v}: no such chain in table {self.table.family} {self.table.name}")
                    self.prog.jumps.append(v.chain)
        get = self._lookup_getter(sel, st)

        def vmap(p, s):
            v = get(p, s)
            return False if v is None else v
        return vmap

    def _named_set(self, name: str) -> NftSet:
        st = self.table.sets.get(name)
        if st is None:
            raise self.error(f"@{name}: no such set or map in table {self.table.family} {self.table.name}")
        self.prog.sets.append(name)
        return st

    def _anon(self, sel: Selector, kind: str, data_types) -> NftSet:
        st = NftSet("", kind, sel.dtype, data_types, anonymous=True, line=int(self.where.rsplit(":", 1)[1]))
        for key, elem in self.elements(st):
            st.add(key, elem)
        return st

    def _relational(self, sel: Selector, op: str, explicit: bool) -> Op:
        w = self.peek()
        get = sel.get
        neg = op == "!="
        if w.startswith("@"):
            self.take()
            st = self._named_set(w[1:])
            if st.kind != "set":
                raise self.error(f"@{st.name} is a map: use '{sel.text} vmap @{st.name}' or '... map @{st.name}'")
            return _member(self._lookup_set(sel, st), neg)
        if w == "{":
            if op not in ("==", "!="):
                raise self.error(f"{op} cannot compare with a set")
            st = self._anon(sel, "set", None)
            if len(st) == 1 and not sel.concat:
                # nft turns a one-element anonymous set into a plain comparison (listed without braces)
                c = next(iter(st.exact)) if st.exact else st.ranges[0][0]
                return _compare(get, c[0], neg)
            return _member(self._lookup_set(sel, st), neg)
        if sel.concat:
            raise self.error(f"a concatenation ({sel.text}) can only be looked up in a set or map")
        dtype = sel.dtype[0]
        texts = [self.take(f"a {dtype} value")]
        while self.peek() == ",":
            self.take()
            texts.append(self.take(f"a {dtype} value"))
        if dtype in BITMASK_TYPES and not (explicit and op == "=="):
            mask = 0
            for t in texts:
                mask |= parse_scalar(dtype, t, self.where)
            if op == "!=" or op == "==":
                # nft's implicit flag test: (x & mask) != 0; with '!=': (x & mask) == 0
                def flags(p, s):
                    v = get(p, s)
                    if v is None or ((v & mask) != 0) == neg:
                        return False
                return flags
            raise self.error(f"{op} does not apply to {dtype} flags")
        if len(texts) > 1:
            raise self.error(f"a list of values for {sel.text} needs braces: {{ {', '.join(texts)} }}")
        c = parse_value(dtype, texts[0], self.where)
        if isinstance(c, tuple):
            if op not in ("==", "!="):
                raise self.error(f"{op} cannot compare with a range")
            return _compare(get, c, neg)
        if isinstance(c, str) and c.endswith("*") and dtype == "ifname":
            pre = c[:-1]
            def wildcard(p, s):
                v = get(p, s)
                if v is None or v.startswith(pre) == neg:
                    return False
            return wildcard
        if op == "==" or op == "!=":
            return _compare(get, c, neg)
        cmp = {"<": lambda v: v < c, ">": lambda v: v > c, "<=": lambda v: v <= c, ">=": lambda v: v >= c}[op]
        return lambda p, s: None if (v := get(p, s)) is not None and cmp(v) else False

    def _lookup_set(self, sel: Selector, st: NftSet) -> Callable:
        key = self.key_getter(sel, st)

        def found(p, s):
            k = key(p, s)
            if k is None:
                return None
            s.lookups += 1
            return st.lookup(k, s.ctx.now) is not None
        return found


def _compare(get: Callable, c, neg: bool) -> Op:
    """x == c (or within the interval c), negated for '!='; an absent field breaks either way."""
    if isinstance(c, tuple):
        lo, hi = c

        def in_range(p, s):
            v = get(p, s)
            if v is None or (lo <= v <= hi) == neg:
                return False
        return in_range

    def equal(p, s):
        v = get(p, s)
        if v is None or (v == c) == neg:
            return False
    return equal


def _member(found: Callable, neg: bool) -> Op:
    # nft_lookup.c nft_lookup_eval: a miss (or a hit with NFT_LOOKUP_F_INV) breaks
    def member(p, s):
        f = found(p, s)
        if f is None or f == neg:
            return False
    return member


def compile_rule(toks: list[Tok], table: Table, source: str, line: int) -> tuple[Program, Optional[str]]:
    """Compile a rule's tokens against `table` (its chains and sets must exist, as nft requires)."""
    try:
        return RuleCompiler(toks, table, source, line).compile()
    except NftError:
        raise
