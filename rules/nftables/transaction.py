"""An nftables transaction as kube-proxy builds it, written as ``nft -f`` text, and the table it leaves.

The text of each operation follows sigs.k8s.io/knftables objects.go ``writeOperation``:

* ``add table ip kube-proxy { comment "..." ; }``
* ``add chain ip kube-proxy NAME { type filter hook input priority 0 ; comment "..." ; }``
  (priorities are written as numbers, never as ``dstnat``/``srcnat`` names);
* ``add set|map ip kube-proxy NAME { type T ; flags a,b ; timeout Ns ; comment "..." ; }``;
* ``add rule ip kube-proxy CHAIN RULE comment "..."``;
* ``add element ip kube-proxy SET { k1 . k2 comment "..." : v }`` (``delete element`` carries only the key);
* ``flush chain|set|map ...`` and ``delete chain|set|map ...`` name the object only.

``concat`` is knftables util.go ``Concat``: arguments joined by single spaces, no space after a
lone ``@``, empty strings dropped, lists spliced in.

:class:`TableState` applies a transaction the way knftables' Fake does (fake.go ``run``), so the
state of a node's table after several syncs can be dumped. :meth:`TableState.dump` writes it in an
order the kernel accepts in one ``nft -f`` batch: table, chains, sets, maps, then rules, then set
and map elements (a rule or a ``goto`` element may only name a chain or set that already exists).
:func:`parse_dump` reads such ``add`` lines back into a transaction (knftables fake.go ``ParseDump``),
so a table that existed before kube-proxy started can be given to the proxier.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union


def concat(*args: Union[str, int, Iterable[str]]) -> str:
    """knftables.Concat: space-joined words; ``"@", name`` becomes ``@name``; empty strings vanish."""
    words: list[str] = []
    append = words.append
    for arg in args:
        if isinstance(arg, str):
            if arg:
                append(arg)
        elif isinstance(arg, int):
            append(str(arg))
        else:
            words.extend(str(w) for w in arg if w != "")
    if "@" not in words:
        return " ".join(words)
    out: list[str] = []
    glue = False
    for w in words:
        if glue:
            out[-1] += w
            glue = False
        else:
            out.append(w)
        if w == "@":
            glue = True
    return " ".join(out)


def _quote(text: str) -> str:
    """Go's %q for the plain ASCII comments kube-proxy writes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Table:
    comment: Optional[str] = None

    kind = "table"


@dataclass(frozen=True)
class Chain:
    name: str
    type: Optional[str] = None          # filter | nat (base chains only)
    hook: Optional[str] = None
    priority: Optional[int] = None
    comment: Optional[str] = None

    kind = "chain"


@dataclass(frozen=True)
class Set:
    name: str
    type: str = ""
    flags: tuple[str, ...] = ()
    timeout_seconds: Optional[int] = None
    comment: Optional[str] = None

    kind = "set"


@dataclass(frozen=True)
class Map:
    name: str
    type: str = ""
    comment: Optional[str] = None

    kind = "map"


@dataclass(frozen=True)
class Rule:
    chain: str
    rule: str
    comment: Optional[str] = None

    kind = "rule"


@dataclass(frozen=True)
class Element:
    container: str                     # set or map name
    key: tuple[str, ...]
    value: tuple[str, ...] = ()
    comment: Optional[str] = None
    is_map: bool = False

    kind = "element"


NFTObject = Union[Table, Chain, Set, Map, Rule, Element]


@dataclass
class Transaction:
    """An ordered list of (verb, object) operations on one table."""
    family: str = "ip"
    table: str = "kube-proxy"
    ops: list[tuple[str, NFTObject]] = field(default_factory=list)

    def add(self, obj: NFTObject) -> None:
        self.ops.append(("add", obj))

    def flush(self, obj: NFTObject) -> None:
        self.ops.append(("flush", obj))

    def delete(self, obj: NFTObject) -> None:
        self.ops.append(("delete", obj))

    def __len__(self) -> int:
        return len(self.ops)

    def lines(self) -> list[str]:
        return [write_operation(verb, obj, self.family, self.table) for verb, obj in self.ops]

    def text(self) -> str:
        """The ``nft -f`` input kube-proxy hands to ``nft`` for this sync."""
        return "".join(line + "\n" for line in self.lines())


def write_operation(verb: str, obj: NFTObject, family: str = "ip", table: str = "kube-proxy") -> str:
    """One line of ``nft -f`` text, spelled as knftables writes it."""
    kind = obj.kind
    if kind == "rule":                       # the most frequent kinds first
        line = f"{verb} rule {family} {table} {obj.chain} {obj.rule}"
        if obj.comment is not None:
            line += f" comment {_quote(obj.comment)}"
        return line
    adding = verb == "add"
    if kind == "element":
        line = f"{verb} element {family} {table} {obj.container} {{ {' . '.join(obj.key)}"
        if adding:
            if obj.comment is not None:
                line += f" comment {_quote(obj.comment)}"
            if obj.value:
                line += f" : {' . '.join(obj.value)}"
        return line + " }"
    where = f"{family} {table}"
    if kind == "chain":
        line = f"{verb} chain {where} {obj.name}"
        if adding and (obj.type is not None or obj.comment is not None):
            parts = []
            if obj.type is not None:
                parts.append(f"type {obj.type} hook {obj.hook} priority {obj.priority} ;")
            if obj.comment is not None:
                parts.append(f"comment {_quote(obj.comment)} ;")
            line += " { " + " ".join(parts) + " }"
        return line
    if kind == "set" or kind == "map":
        line = f"{verb} {kind} {where} {obj.name}"
        if adding:
            parts = [f"type {obj.type} ;"]
            if kind == "set" and obj.flags:
                parts.append(f"flags {','.join(obj.flags)} ;")
            if kind == "set" and obj.timeout_seconds is not None:
                parts.append(f"timeout {obj.timeout_seconds}s ;")
            if obj.comment is not None:
                parts.append(f"comment {_quote(obj.comment)} ;")
            line += " { " + " ".join(parts) + " }"
        return line
    if kind == "table":
        line = f"{verb} table {where}"
        if adding and obj.comment is not None:
            line += f" {{ comment {_quote(obj.comment)} ; }}"
        return line
    raise TypeError(f"not an nftables object: {obj!r}")


class TransactionError(ValueError):
    """An operation the kernel would refuse (names the line); the whole batch is then void."""


@dataclass
class _ChainState:
    chain: Chain
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _ContainerState:
    obj: Union[Set, Map]
    elements: dict[tuple[str, ...], Element] = field(default_factory=dict)


@dataclass
class TableState:
    """One table's contents after transactions (knftables fake.go semantics, atomic per transaction)."""
    family: str = "ip"
    name: str = "kube-proxy"
    table: Optional[Table] = None
    chains: dict[str, _ChainState] = field(default_factory=dict)
    sets: dict[str, _ContainerState] = field(default_factory=dict)
    maps: dict[str, _ContainerState] = field(default_factory=dict)

    def copy(self) -> "TableState":
        return TableState(
            self.family, self.name, self.table,
            {k: _ChainState(v.chain, list(v.rules)) for k, v in self.chains.items()},
            {k: _ContainerState(v.obj, dict(v.elements)) for k, v in self.sets.items()},
            {k: _ContainerState(v.obj, dict(v.elements)) for k, v in self.maps.items()},
        )

    def apply(self, tx: Transaction) -> None:
        """Run ``tx``: all of it or (on the first refused operation) none of it."""
        work = self.copy()
        for verb, obj in tx.ops:
            try:
                work._apply_one(verb, obj)
            except TransactionError as e:
                raise TransactionError(f"{write_operation(verb, obj, tx.family, tx.table)}: {e}") from None
        self.__dict__.update(work.__dict__)

    def _containers(self, obj: Union[Set, Map, Element]) -> dict[str, _ContainerState]:
        if isinstance(obj, Element):
            return self.maps if obj.is_map else self.sets
        return self.maps if isinstance(obj, Map) else self.sets

    def _apply_one(self, verb: str, obj: NFTObject) -> None:
        kind = getattr(obj, "kind", None)
        if kind == "rule":
            chain = self.chains.get(obj.chain)
            if chain is None:
                raise TransactionError("no such table" if self.table is None else "no such chain")
            text = obj.rule
            if "@" in text:
                for word in text.split():
                    target = word[1:] if word.startswith("@") else None
                    if target and target not in self.sets and target not in self.maps:
                        raise TransactionError(f"no such set or map {target!r}")
            self._check_chain_targets(text)
            chain.rules.append(obj)
            return
        if kind == "element":
            if self.table is None:
                raise TransactionError("no such table")
            where = self.maps if obj.is_map else self.sets
            have = where.get(obj.container)
            if have is None:
                raise TransactionError(f"no such {'map' if obj.is_map else 'set'}")
            if verb == "add":
                if obj.value:
                    self._check_chain_targets(" ".join(obj.value))
                have.elements.setdefault(obj.key, obj)
            elif obj.key not in have.elements:
                raise TransactionError("no such element")
            else:
                del have.elements[obj.key]
            return
        if kind == "table":
            if verb == "add":
                self.table = self.table or obj
            elif verb == "delete":
                self.table, self.chains, self.sets, self.maps = None, {}, {}, {}
            else:
                for c in self.chains.values():
                    c.rules.clear()
                for s in (*self.sets.values(), *self.maps.values()):
                    s.elements.clear()
            return
        if self.table is None and kind in ("chain", "set", "map"):
            raise TransactionError("no such table")
        if kind == "chain":
            have = self.chains.get(obj.name)
            if verb == "add":
                if have is None:
                    self.chains[obj.name] = _ChainState(obj)
                elif (have.chain.type, have.chain.hook, have.chain.priority) != (obj.type, obj.hook, obj.priority) \
                        and obj.type is not None:
                    raise TransactionError("chain exists with other properties")
            elif have is None:
                raise TransactionError("no such chain")
            elif verb == "flush":
                have.rules.clear()
            else:
                if self._referenced(obj.name):
                    raise TransactionError("chain is still referenced")
                del self.chains[obj.name]
            return
        if kind == "set" or kind == "map":
            where = self.maps if kind == "map" else self.sets
            have = where.get(obj.name)
            if verb == "add":
                if have is None:
                    where[obj.name] = _ContainerState(obj)
            elif have is None:
                raise TransactionError(f"no such {kind}")
            elif verb == "flush":
                have.elements.clear()
            else:
                del where[obj.name]
            return
        raise TypeError(f"not an nftables object: {obj!r}")

    def _check_chain_targets(self, text: str) -> None:
        if "jump " not in text and "goto " not in text:
            return
        words = text.split()
        for verb, target in zip(words, words[1:]):
            if verb in ("jump", "goto") and target not in self.chains:
                raise TransactionError(f"no such chain {target!r}")

    def _referenced(self, chain: str) -> bool:
        for c in self.chains.values():
            for r in c.rules:
                words = r.rule.split()
                if any(v in ("jump", "goto") and t == chain for v, t in zip(words, words[1:])):
                    return True
        for m in self.maps.values():
            for e in m.elements.values():
                if e.value[-2:] in (("goto", chain), ("jump", chain)) or " ".join(e.value) in (
                        f"goto {chain}", f"jump {chain}"):
                    return True
        return False

    def objects(self) -> list[NFTObject]:
        """Every object, in an order one ``nft -f`` batch accepts."""
        if self.table is None:
            return []
        out: list[NFTObject] = [self.table]
        out += [self.chains[n].chain for n in sorted(self.chains)]
        out += [self.sets[n].obj for n in sorted(self.sets)]
        out += [self.maps[n].obj for n in sorted(self.maps)]
        for n in sorted(self.chains):
            out += self.chains[n].rules
        for n in sorted(self.sets):
            out += list(self.sets[n].elements.values())
        for n in sorted(self.maps):
            out += list(self.maps[n].elements.values())
        return out

    def dump(self) -> str:
        """The table as ``add`` commands (loadable by ``nft -f`` into an empty namespace)."""
        family, name = self.family, self.name
        return "".join([write_operation("add", o, family, name) + "\n" for o in self.objects()])

    def rules(self, chain: str) -> list[str]:
        """The rule texts of one chain (with comments), in order."""
        state = self.chains.get(chain)
        return [] if state is None else [
            r.rule + (f" comment {_quote(r.comment)}" if r.comment is not None else "") for r in state.rules]


_COMMENT_AT_END = re.compile(r' comment "((?:[^"\\]|\\.)*)"$')
_PROPS = re.compile(r"^(\S+) \{ (.*) \}$")


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def _props(body: str) -> dict[str, str]:
    """``type T hook H priority P ; comment "C" ;`` as {"type": ..., "hook": ..., "comment": ...}."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in body.split(" ;")):
        if not part:
            continue
        word, _, rest = part.partition(" ")
        if word == "type" and " hook " in rest:
            ctype, _, rest = rest.partition(" hook ")
            hook, _, prio = rest.partition(" priority ")
            out.update(type=ctype, hook=hook, priority=prio)
        elif word == "comment":
            out["comment"] = _unquote(rest[1:-1])
        else:
            out[word] = rest
    return out


def parse_dump(text: str, family: str = "ip", table: str = "kube-proxy") -> Transaction:
    """``add`` lines as knftables' Fake.Dump writes them (blank lines and ``#`` comments skipped) as a
    transaction; a line that is not one of them is a one-line error naming it."""
    tx = Transaction(family, table)
    maps: set[str] = set()
    prefix = f" {family} {table}"
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        verb, _, rest = line.partition(" ")
        kind, _, rest = rest.partition(" ")
        if verb != "add" or not (" " + rest + " ").startswith(prefix + " "):
            raise TransactionError(f"line {number}: {line!r}: expected 'add KIND {family} {table} ...'")
        rest = rest[len(prefix):].strip()
        if kind == "table":
            props = _props(_PROPS.match("t " + rest).group(2)) if rest else {}
            tx.add(Table(props.get("comment")))
        elif kind == "chain":
            m = _PROPS.match(rest)
            props = _props(m.group(2)) if m else {}
            prio = props.get("priority")
            tx.add(Chain(m.group(1) if m else rest, props.get("type"), props.get("hook"),
                         int(prio) if prio is not None else None, props.get("comment")))
        elif kind in ("set", "map"):
            m = _PROPS.match(rest)
            if m is None:
                raise TransactionError(f"line {number}: {line!r}: expected {{ type ... ; }}")
            props = _props(m.group(2))
            if kind == "map":
                maps.add(m.group(1))
                tx.add(Map(m.group(1), props.get("type", ""), props.get("comment")))
            else:
                timeout = props.get("timeout")
                tx.add(Set(m.group(1), props.get("type", ""),
                           tuple(props["flags"].split(",")) if "flags" in props else (),
                           int(timeout.rstrip("s")) if timeout else None, props.get("comment")))
        elif kind == "rule":
            chain, _, rule = rest.partition(" ")
            m = _COMMENT_AT_END.search(rule)
            tx.add(Rule(chain, rule[:m.start()] if m else rule, _unquote(m.group(1)) if m else None))
        elif kind == "element":
            name, _, body = rest.partition(" ")
            if not (body.startswith("{ ") and body.endswith(" }")):
                raise TransactionError(f"line {number}: {line!r}: expected {{ KEY [: VALUE] }}")
            body = body[2:-2]
            key, _, value = body.partition(" : ")
            comment = None
            m = _COMMENT_AT_END.search(key)
            if m:
                key, comment = key[:m.start()], _unquote(m.group(1))
            tx.add(Element(name, tuple(key.split(" . ")), tuple(value.split(" . ")) if value else (), comment,
                           is_map=name in maps))
        else:
            raise TransactionError(f"line {number}: {line!r}: unknown object {kind!r}")
    return tx
