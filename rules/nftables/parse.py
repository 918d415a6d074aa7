"""Load nftables text into a Ruleset, as `nft -f` does: one atomic transaction (nft(8) "INPUT FILE
FORMATS"; the kernel's nfnetlink batch is all-or-nothing, so one bad line changes nothing).

Both forms are accepted: commands (`add table|chain|set|map|element|rule`, `insert rule`,
`replace rule`, `flush ...`, `delete|destroy ...` — what knftables/kube-proxy write) and blocks
(`table ip t { set s { ... } chain c { type ...; policy accept; rules } }` — what
`nft list ruleset` prints). Commands run in order, so a rule that jumps to a chain added later
fails as in the kernel; inside a table block chains and sets are declared before any rule (nft
does the same, which is why a listing loads back). Every rule is compiled when added, so an unknown
expression is an error naming its line.
"""
from __future__ import annotations

from typing import Callable, Optional

from netsim.rules.iptables.ruleset import gc_paused
from netsim.rules.nftables.compile import RuleCompiler, compile_rule
from netsim.rules.nftables.cursor import Cursor
from netsim.rules.nftables.lexer import NL, NftError, Tok, tokenize
from netsim.rules.nftables.parse_ops import EditOps
from netsim.rules.nftables.model import (CHAIN_TYPES, FAMILIES, HOOKS, PRIORITY_NAMES, Chain, NftSet, Rule, Ruleset,
                                         Table)
from netsim.rules.nftables.values import parse_duration



def load(text: str, *, source: str = "<nft>", ruleset: Optional[Ruleset] = None, now: float = 0.0) -> Ruleset:
    """Apply `text` to `ruleset` (a new one if None) in one transaction; on error nothing changes."""
    rs = ruleset if ruleset is not None else Ruleset(source=source)
    tx = Transaction(rs, source, now)
    try:
        with gc_paused():
            for stmt in split(tokenize(text, source), 0, None)[0]:
                tx.command(stmt)
            tx.validate()
    except NftError:
        tx.rollback()
        raise
    rs.generation += 1
    return rs


def split(toks: list[Tok], i: int, close: Optional[str]) -> tuple[list[list[Tok]], int]:
    """Statements from toks[i:] up to the matching '}' (close='}') or the end: separated by newlines
    and ';' outside braces. Returns (statements, index after the closing brace)."""
    out: list[list[Tok]] = []
    cur: list[Tok] = []
    depth = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        i += 1
        if not t.quoted:
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                if depth == 0:
                    if close != "}":
                        raise NftError(f"line {t.line}: unexpected '}}'")
                    if cur:
                        out.append(cur)
                    return out, i
                depth -= 1
            elif depth == 0 and (t.text == NL or t.text == ";"):
                if cur:
                    out.append(cur)
                    cur = []
                continue
        cur.append(t)
    if close is not None:
        raise NftError("end of input inside a block (missing '}')")
    if cur:
        out.append(cur)
    return out, i


def rule_text(toks: list[Tok]) -> str:
    """The rule as written, one space between tokens and none before a comma (as `nft list` spaces it)."""
    text = " ".join(f'"{t.text}"' if t.quoted else t.text for t in toks if t.text != NL or t.quoted)
    return text.replace(" , ", ", ")


class Transaction(EditOps):
    def __init__(self, rs: Ruleset, source: str, now: float) -> None:
        self.rs = rs
        self.source = source
        self.now = now
        self.undo: list[Callable[[], None]] = []
        self.touched: set[tuple[str, str]] = set()

    def rollback(self) -> None:
        for f in reversed(self.undo):
            f()
        self.undo.clear()

    def err(self, line: int, msg: str) -> NftError:
        return NftError(f"{self.source}:{line}: {msg}")

    # ------------------------------------------------------------------ commands
    def command(self, toks: list[Tok]) -> None:
        c = Cursor(toks, self.source, toks[0].line)
        verb = c.take()
        if verb == "table":
            t = self.add_table(c, create=False)
            self.table_block(c, t)
            return
        if verb in ("add", "create"):
            obj = c.take("an object (table, chain, set, map, element, rule)")
            create = verb == "create"
            if obj == "table":
                t = self.add_table(c, create)
                if c.peek() == "{":
                    self.table_block(c, t)
            elif obj == "chain":
                t = self.table_ref(c)
                self.add_chain(c, t, c.take("a chain name"), toks[0].line, create, rules_now=True)
            elif obj in ("set", "map"):
                t = self.table_ref(c)
                self.add_set(c, t, obj, c.take(f"a {obj} name"), toks[0].line, create)
            elif obj == "element":
                t = self.table_ref(c)
                self.add_elements(c, t, self.set_ref(c, t), create)
            elif obj == "rule":
                self.add_rule(c, "append")
            else:
                raise c.error(f"cannot {verb} {obj!r} (expected table, chain, set, map, element or rule)")
        elif verb == "insert" or verb == "replace":
            if c.take("rule") != "rule":
                raise c.error(f"{verb} works on rules only")
            self.add_rule(c, verb)
        elif verb in ("delete", "destroy"):
            self.delete(c, c.take("an object"), verb == "destroy")
        elif verb == "flush":
            self.flush(c, c.take("ruleset, table, chain, set or map"))
        else:
            raise c.error(f"unknown command {verb!r} (expected add, create, insert, replace, delete, destroy, "
                          "flush or a table block)")
        if not c.at_end():
            raise c.error(f"unexpected {c.peek()!r} at the end of the {verb} command")

    def table_ref(self, c: Cursor) -> Table:
        fam = c.take() if c.peek() in FAMILIES else "ip"
        name = c.take("a table name")
        t = self.rs.table(fam, name)
        if t is None:
            raise c.error(f"no such table: {fam} {name}")
        self.touched.add((fam, name))
        return t

    def set_ref(self, c: Cursor, t: Table) -> NftSet:
        name = c.take("a set name")
        s = t.sets.get(name)
        if s is None:
            raise c.error(f"no such set or map {name!r} in table {t.family} {t.name}")
        return s

    def add_table(self, c: Cursor, create: bool) -> Table:
        fam = c.take() if c.peek() in FAMILIES else "ip"
        name = c.take("a table name")
        key = (fam, name)
        t = self.rs.tables.get(key)
        if t is None:
            t = Table(fam, name, c.toks[0].line)
            self.rs.tables[key] = t
            self.undo.append(lambda: self.rs.tables.pop(key, None))
        elif create:
            raise c.error(f"table {fam} {name} already exists")
        self.touched.add(key)
        return t

    def table_block(self, c: Cursor, t: Table) -> None:
        stmts, end = split(c.toks, c.pos + 1, "}") if c.peek() == "{" else (None, 0)
        if stmts is None:
            raise c.error("expected '{' after the table name")
        c.pos = end
        later: list[tuple[Cursor, Chain]] = []
        sets: list[Cursor] = []
        for st in stmts:
            sc = Cursor(st, self.source, st[0].line)
            w = sc.take()
            if w == "comment":
                t.comment = sc.take_string("a comment string")
            elif w == "flags":
                t.flags = frozenset(self._word_list(sc))
            elif w == "chain":
                name = sc.take("a chain name")
                brace = sc.pos
                ch = self.add_chain(sc, t, name, st[0].line, False, rules_now=False)
                sc.pos = brace
                later.append((sc, ch))
            elif w in ("set", "map"):
                sets.append(sc)
            else:
                raise sc.error(f"unknown table statement {w!r} (expected chain, set, map, comment or flags)")
        for sc in sets:
            kind = sc.toks[0].text
            self.add_set(sc, t, kind, sc.take(f"a {kind} name"), sc.toks[0].line, False)
        for sc, ch in later:
            self.chain_body(sc, t, ch, rules=True, spec=False)

    def add_chain(self, c: Cursor, t: Table, name: str, line: int, create: bool, rules_now: bool) -> Chain:
        ch = t.chains.get(name)
        if ch is None:
            ch = Chain(name, line)
            t.chains[name] = ch
            self.undo.append(lambda: t.chains.pop(name, None))
        elif create:
            raise c.error(f"chain {name} already exists in table {t.family} {t.name}")
        if c.peek() == "{":
            self.chain_body(c, t, ch, rules=rules_now, spec=True)
        return ch

    def chain_body(self, c: Cursor, t: Table, ch: Chain, rules: bool, spec: bool) -> None:
        """The statements of `{ ... }` at the cursor: base-chain spec and policy (spec=True), rules (rules=True)."""
        if c.peek() != "{":
            raise c.error(f"expected '{{' after chain {ch.name}")
        stmts, end = split(c.toks, c.pos + 1, "}")
        c.pos = end
        for st in stmts:
            sc = Cursor(st, self.source, st[0].line)
            w = sc.peek()
            if w == "type":
                if spec:
                    self._base_spec(sc, t, ch)
            elif w == "policy":
                if spec:
                    sc.take()
                    pol = sc.take("accept or drop")
                    if pol not in ("accept", "drop"):
                        raise sc.error(f"chain policy {pol!r}: expected accept or drop")
                    old = ch.policy
                    ch.policy = pol
                    self.undo.append(lambda: setattr(ch, "policy", old))
            elif w == "comment" and len(st) == 2:
                if spec:
                    sc.take()
                    ch.comment = sc.take_string("a comment string")
            elif rules:
                self._append_rule(st, t, ch, len(ch.rules))

    def _base_spec(self, c: Cursor, t: Table, ch: Chain) -> None:
        c.take()
        ctype = c.take("filter, nat or route")
        if ctype not in CHAIN_TYPES:
            raise c.error(f"unknown chain type {ctype!r} (expected {', '.join(CHAIN_TYPES)})")
        if c.take("hook") != "hook":
            raise c.error("expected 'hook HOOK' after the chain type")
        hook = c.take("a hook")
        if hook not in HOOKS:
            raise c.error(f"unknown hook {hook!r} (expected {', '.join(HOOKS)})")
        device = None
        if c.peek() == "device":
            c.take()
            device = c.take_string("a device")
        if c.take("priority") != "priority":
            raise c.error("expected 'priority N' after the hook")
        prio = self._priority(c)
        if ch.hook is not None and (ch.hook, ch.type) != (hook, ctype):
            raise c.error(f"chain {ch.name} exists as type {ch.type} hook {ch.hook}; cannot change it")
        if ctype == "nat" and hook not in ("prerouting", "input", "output", "postrouting"):
            raise c.error(f"a nat chain cannot use the {hook} hook")
        old = (ch.type, ch.hook, ch.priority, ch.device)
        ch.type, ch.hook, ch.priority, ch.device = ctype, hook, prio, device
        self.undo.append(lambda: _restore(ch, old))
        if not c.at_end():
            raise c.error(f"unexpected {c.peek()!r} in the chain's type/hook/priority")

    def _priority(self, c: Cursor) -> int:
        w = c.take("a priority")
        if w in PRIORITY_NAMES:
            base = PRIORITY_NAMES[w]
            if c.peek() in ("+", "-"):
                sign = c.take()
                off = c.int_arg("a priority offset")
                return base + off if sign == "+" else base - off
            return base
        try:
            return int(w)
        except ValueError:
            raise c.error(f"bad priority {w!r} (a number or one of {', '.join(PRIORITY_NAMES)})") from None

    @staticmethod
    def _word_list(c: Cursor) -> list[str]:
        out = [c.take("a flag")]
        while c.peek() == ",":
            c.take()
            out.append(c.take("a flag"))
        return out

    # ------------------------------------------------------------------ sets
    def add_set(self, c: Cursor, t: Table, kind: str, name: str, line: int, create: bool) -> NftSet:
        stmts, end = split(c.toks, c.pos + 1, "}") if c.peek() == "{" else (None, 0)
        if stmts is None:
            raise c.error(f"expected '{{' with the {kind}'s type after its name")
        c.pos = end
        new = NftSet(name, kind, (), line=line)
        elements: list[Cursor] = []
        for st in stmts:
            sc = Cursor(st, self.source, st[0].line)
            w = sc.take()
            if w in ("type", "typeof"):
                self._set_type(sc, t, new, kind, w)
            elif w == "flags":
                new.flags = frozenset(self._word_list(sc))
                bad = new.flags - {"constant", "interval", "timeout", "dynamic"}
                if bad:
                    raise sc.error(f"unknown set flag {sorted(bad)[0]!r}")
            elif w == "timeout":
                new.timeout = parse_duration(sc.take("a timeout"), sc.where)
            elif w == "size":
                new.size = sc.int_arg("a size")
            elif w == "comment":
                new.comment = sc.take_string("a comment string")
            elif w in ("policy", "gc-interval"):
                sc.take()
            elif w in ("counter", "auto-merge"):
                pass
            elif w == "elements":
                sc.expect("=")
                elements.append(sc)
                continue
            else:
                raise sc.error(f"unknown {kind} statement {w!r}")
            if not sc.at_end():
                raise sc.error(f"unexpected {sc.peek()!r} in the {kind} declaration")
        if not new.key_types:
            raise c.error(f"{kind} {name} needs a 'type' or 'typeof'")
        if kind == "map" and new.data_types is None:
            raise c.error(f"map {name} needs a data type ('type KEY : DATA')")
        old = t.sets.get(name)
        if old is None:
            t.sets[name] = new
            self.undo.append(lambda: t.sets.pop(name, None))
            s = new
        else:
            if create:
                raise c.error(f"{kind} {name} already exists in table {t.family} {t.name}")
            if (old.kind, old.key_types, old.data_types) != (kind, new.key_types, new.data_types):
                raise c.error(f"{kind} {name} exists with another type")
            s = old
        for sc in elements:
            self.add_elements(sc, t, s, False)
        return s

    def _set_type(self, c: Cursor, t: Table, s: NftSet, kind: str, how: str) -> None:
        if how == "type":
            s.key_types = c.type_list()
            if c.peek() == ":":
                c.take()
                s.data_types = c.type_list()
            return
        # typeof: data types from expressions (nft(8) "SETS": typeof EXPR)
        rc = RuleCompiler(c.toks[c.pos:], t, self.source, c.toks[0].line)
        s.key_types = rc.expr().dtype
        if rc.peek() == ":":
            rc.take()
            s.data_types = ("verdict",) if rc.peek() == "verdict" else rc.expr().dtype
            if rc.peek() == "verdict":
                rc.take()
        s.typeof = rule_text(c.toks[c.pos:c.pos + rc.pos])
        c.pos += rc.pos

    def add_elements(self, c: Cursor, t: Table, s: NftSet, create: bool) -> None:
        for key, elem in c.elements(s, self.now):
            if s.is_vmap and elem.data.chain is not None:
                if elem.data.chain not in t.chains:
                    raise c.error(f"{elem.data}: no such chain in table {t.family} {t.name}")
            old = s.exact.get(key) if not any(isinstance(k, tuple) for k in key) else None
            if old is not None or s.contains_key(key):
                if create:
                    raise c.error(f"element already exists in {s.name}")
                if old is not None and old.data != elem.data:
                    raise c.error(f"element of {s.name} exists with other data (delete it first)")
                continue
            s.add(key, elem)
            self.undo.append(lambda s=s, key=key: s.remove(key))

    # ------------------------------------------------------------------ rules
    def add_rule(self, c: Cursor, how: str) -> None:
        t = self.table_ref(c)
        cname = c.take("a chain name")
        ch = t.chains.get(cname)
        if ch is None:
            raise c.error(f"no such chain {cname!r} in table {t.family} {t.name}")
        pos = len(ch.rules) if how == "append" else 0
        if c.peek() in ("handle", "position", "index"):
            kind = c.take()
            n = c.int_arg(f"a rule {kind}")
            if kind == "index":
                if n > len(ch.rules):
                    raise c.error(f"index {n} is past the end of chain {cname}")
                pos = n + (1 if how == "append" else 0)
            else:
                idx = next((i for i, r in enumerate(ch.rules) if r.handle == n), None)
                if idx is None:
                    raise c.error(f"no rule with handle {n} in chain {cname}")
                pos = idx + 1 if how == "append" else idx
                if how == "replace":
                    old = ch.rules.pop(idx)
                    self.undo.append(lambda: ch.rules.insert(idx, old))
        elif how == "replace":
            raise c.error("replace rule needs 'handle N'")
        rest = c.toks[c.pos:]
        c.pos = len(c.toks)
        if not rest:
            raise c.error("a rule needs at least one statement")
        self._append_rule(rest, t, ch, pos)

    def _append_rule(self, toks: list[Tok], t: Table, ch: Chain, pos: int) -> None:
        prog, comment = compile_rule(toks, t, self.source, toks[0].line)
        r = Rule(rule_text(toks), toks[0].line, self.rs.next_handle, comment, prog)
        self.rs.next_handle += 1
        ch.rules.insert(pos, r)
        self.undo.append(lambda: ch.rules.remove(r))


def _restore(ch: Chain, old: tuple) -> None:
    ch.type, ch.hook, ch.priority, ch.device = old
