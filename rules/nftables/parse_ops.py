"""The editing half of an `nft -f` transaction: delete/destroy, flush, and the checks the kernel
makes when the batch commits (net/netfilter/nf_tables_api.c): references resolve, no jump loops
(ELOOP), jumps nest at most NFT_JUMP_STACK_SIZE deep (EMLINK), a chain with rules cannot be deleted
(EBUSY). Every change records its undo, so a refused batch leaves the ruleset as it was."""
from __future__ import annotations

from typing import Callable

from netsim.rules.nftables.cursor import Cursor
from netsim.rules.nftables.model import FAMILIES, Chain, NftSet, Ruleset, Table

MAX_JUMP_DEPTH = 16      # include/net/netfilter/nf_tables.h NFT_JUMP_STACK_SIZE


class EditOps:
    """Mixin of parse.Transaction (which provides rs, undo, touched, table_ref, set_ref, err, now)."""

    rs: Ruleset
    undo: list[Callable[[], None]]
    touched: set[tuple[str, str]]
    now: float

    # ------------------------------------------------------------------ delete / flush
    def delete(self, c: Cursor, obj: str, destroy: bool) -> None:
        if obj == "table":
            fam = c.take() if c.peek() in FAMILIES else "ip"
            name = c.take("a table name")
            t = self.rs.tables.pop((fam, name), None)
            if t is None:
                if destroy:
                    return
                raise c.error(f"no such table: {fam} {name}")
            self.undo.append(lambda: self.rs.tables.__setitem__((fam, name), t))
            return
        fam = c.peek() if c.peek() in FAMILIES else "ip"
        if destroy and self.rs.table(fam, c.peek(1) if c.peek() in FAMILIES else c.peek()) is None:
            c.pos = len(c.toks)
            return
        t = self.table_ref(c)
        if obj == "chain":
            name = c.take("a chain name")
            ch = t.chains.get(name)
            if ch is None:
                if destroy:
                    return
                raise c.error(f"no such chain {name!r}")
            if ch.rules:
                raise c.error(f"chain {name} is not empty (flush it first; the kernel says EBUSY)")
            del t.chains[name]
            self.undo.append(lambda: t.chains.__setitem__(name, ch))
        elif obj in ("set", "map"):
            name = c.take(f"a {obj} name")
            s = t.sets.pop(name, None)
            if s is None:
                if destroy:
                    return
                raise c.error(f"no such {obj} {name!r}")
            self.undo.append(lambda: t.sets.__setitem__(name, s))
        elif obj == "element":
            s = self.set_ref(c, t)
            for key, elem in c.elements(s, self.now, keys_only=True):
                old = s.exact.get(key)
                if old is None and not s.contains_key(key):
                    if destroy:
                        continue
                    raise c.error(f"no such element in {s.name}")
                old = old or next(e for k, e in s.ranges if k == key)
                s.remove(key)
                self.undo.append(lambda s=s, key=key, old=old: s.add(key, old))
        elif obj == "rule":
            ch = t.chains.get(c.take("a chain name"))
            if ch is None or c.take("handle") != "handle":
                raise c.error("delete rule needs an existing chain and 'handle N'")
            n = c.int_arg("a handle")
            idx = next((i for i, r in enumerate(ch.rules) if r.handle == n), None)
            if idx is None:
                if destroy:
                    return
                raise c.error(f"no rule with handle {n} in chain {ch.name}")
            r = ch.rules.pop(idx)
            self.undo.append(lambda: ch.rules.insert(idx, r))
        else:
            raise c.error(f"cannot delete {obj!r}")

    def flush(self, c: Cursor, obj: str) -> None:
        if obj == "ruleset":
            if c.peek() in FAMILIES:
                c.take()
            old = dict(self.rs.tables)
            self.rs.tables.clear()
            self.undo.append(lambda: self.rs.tables.update(old))
            return
        t = self.table_ref(c)
        if obj == "table":
            for ch in t.chains.values():
                self._flush_chain(ch)
            for s in t.sets.values():
                self._flush_set(s)
        elif obj == "chain":
            name = c.take("a chain name")
            if name not in t.chains:
                raise c.error(f"no such chain {name!r}")
            self._flush_chain(t.chains[name])
        elif obj in ("set", "map"):
            self._flush_set(self.set_ref(c, t))
        else:
            raise c.error(f"cannot flush {obj!r}")

    def _flush_chain(self, ch: Chain) -> None:
        old = ch.rules
        ch.rules = []
        self.undo.append(lambda: setattr(ch, "rules", old))

    def _flush_set(self, s: NftSet) -> None:
        exact, ranges = dict(s.exact), list(s.ranges)
        s.flush()
        self.undo.append(lambda: (s.exact.update(exact), s.ranges.extend(ranges)))

    # ------------------------------------------------------------------ end of transaction
    def validate(self) -> None:
        """What the kernel checks when the batch commits: references resolve, no loops, depth <= 16."""
        for key in self.touched:
            t = self.rs.tables.get(key)
            if t is None:
                continue
            graph: dict[str, list[tuple[str, int]]] = {}
            for ch in t.chains.values():
                edges = graph.setdefault(ch.name, [])
                for r in ch.rules:
                    for target in r.program.jumps:
                        if target not in t.chains:
                            raise self.err(r.line, f"rule refers to chain {target}, which no longer exists")
                        if t.chains[target].is_base:
                            raise self.err(r.line, f"cannot jump or goto base chain {target}")
                        edges.append((target, r.line))
                    for sname in r.program.sets:
                        if sname not in t.sets:
                            raise self.err(r.line, f"rule refers to set @{sname}, which no longer exists")
            for s in t.sets.values():
                if s.is_vmap:
                    for e in list(s.exact.values()) + [e for _, e in s.ranges]:
                        if e.data.chain is not None and e.data.chain not in t.chains:
                            raise self.err(s.line, f"map {s.name} refers to chain {e.data.chain}, which no longer exists")
            self._check_loops(t, graph)

    def _check_loops(self, t: Table, graph: dict[str, list[tuple[str, int]]]) -> None:
        # vmap elements in named maps are edges from every chain whose rules use the map
        for ch in t.chains.values():
            for r in ch.rules:
                for sname in r.program.sets:
                    s = t.sets.get(sname)
                    if s is not None and s.is_vmap:
                        graph[ch.name].extend((e.data.chain, r.line) for e in s.exact.values() if e.data.chain)
        depth: dict[str, int] = {}
        state: dict[str, int] = {}

        def visit(name: str) -> int:
            state[name] = 1
            d = 0
            for nxt, line in set(graph.get(name, ())):
                st = state.get(nxt)
                if st == 1:
                    raise self.err(line, f"chain {name}: jump to {nxt} closes a loop (the kernel says ELOOP)")
                d = max(d, 1 + (depth[nxt] if st == 2 else visit(nxt)))
            state[name] = 2
            depth[name] = d
            return d

        for ch in t.chains.values():
            d = depth[ch.name] if ch.name in depth else visit(ch.name)
            if ch.is_base and d > MAX_JUMP_DEPTH:
                raise self.err(ch.line, f"chain {ch.name}: jumps nest deeper than {MAX_JUMP_DEPTH} (EMLINK)")
