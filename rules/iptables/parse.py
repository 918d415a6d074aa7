"""Parse iptables-save / iptables-restore text into a Ruleset, compiling each match and target.

Errors name `source:line` and what was expected. With lenient=True a rule that uses an
unknown or unmodelled match/target is kept, marked `unsupported`, and never matches.
"""
from __future__ import annotations

import re
from array import array
from functools import partial
from typing import Any, Iterator, Optional

from netsim.rules.iptables import matches as M
from netsim.rules.iptables import targets as T
from netsim.rules.iptables.ruleset import (
    BUILTIN_CHAINS, RAW_TYPECODE, Chain, Header, IptablesError, LazyChain, LineChain, Match, Opt, Rule, Ruleset, Table,
    Target, gc_paused,
)
from netsim.rules.iptables.values import parse_cidr, parse_proto, render_proto

_HEADER = {
    "-s": "src", "--source": "src", "--src": "src",
    "-d": "dst", "--destination": "dst", "--dst": "dst",
    "-i": "iif", "--in-interface": "iif",
    "-o": "oif", "--out-interface": "oif",
    "-p": "proto", "--protocol": "proto",
}


_TOKEN = re.compile(r'(?:"(?:\\.|[^"\\])*"?|[^\s"])+')


def tokenize(line: str, where: str) -> list[str]:
    """Split like iptables-restore: whitespace separates, "..." quotes, \\ escapes inside quotes."""
    if '"' not in line:
        return line.split()
    if "\\" in line:
        return tokenize_escaped(line, where)
    # No escapes: the pieces between double quotes alternate outside/inside; a quoted piece
    # glues to the characters touching it (`a"b c"d` is one token `ab cd`), as in iptables-restore.
    pieces = line.split('"')
    if not len(pieces) & 1:
        raise IptablesError(f"{where}: unterminated quote")
    toks: list[str] = []
    glue = False                       # the last token is still open (no whitespace after it yet)
    for k, piece in enumerate(pieces):
        if k & 1:                      # inside quotes: kept verbatim
            if glue:
                toks[-1] += piece
            else:
                toks.append(piece)
            glue = True
        elif piece:
            words = piece.split()
            if not words:              # whitespace only
                glue = False
                continue
            if glue and not piece[0].isspace():
                toks[-1] += words[0]
                del words[0]
            toks.extend(words)
            glue = not piece[-1].isspace()
    return toks


def tokenize_escaped(line: str, where: str) -> list[str]:
    """The general tokenizer (quotes with backslash escapes); `tokenize` uses it when a line has a backslash."""
    return [_unquote(t, where) if '"' in t else t for t in _TOKEN.findall(line)]


def _unquote(line: str, where: str) -> str:
    toks: list[str] = []
    cur: list[str] = []
    in_tok = in_q = False
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if in_q:
            if ch == "\\" and i + 1 < n:
                cur.append(line[i + 1])
                i += 2
                continue
            if ch == '"':
                in_q = False
            else:
                cur.append(ch)
        elif ch == '"':
            in_q = in_tok = True
        elif ch in " \t":
            if in_tok:
                toks.append("".join(cur))
                cur, in_tok = [], False
        else:
            cur.append(ch)
            in_tok = True
        i += 1
    if in_q:
        raise IptablesError(f"{where}: unterminated quote")
    if in_tok:
        toks.append("".join(cur))
    return "".join(toks)


class _Parser:
    def __init__(self, source: str, lenient: bool, lazy: bool = False, lines: Optional[dict] = None) -> None:
        self.source = source
        # a lazy chain's line -> what parsing it gave (header, matches, target name and options), shared
        # between the parses of one cluster's nodes: their dumps repeat each other's lines (the top-level
        # KUBE-SERVICES of every node lists every Service), so a line is read once per cluster
        self.lines = lines
        self.lenient = lenient
        self.lazy = lazy and not lenient
        self.text = ""                     # what run() reads (a lazy chain's lines are offsets into it)
        self.loaders: dict[str, partial] = {}      # table name -> its lazy chains' loader (one per table)
        self.rs = Ruleset(source=source)
        self.table: Optional[Table] = None
        self.pending: list[tuple[Rule, str, tuple, bool, str]] = []   # rules whose target awaits COMMIT
        # Rules of one dump repeat a few shapes: parse each address once, and share one Header,
        # Match or Target object among rules that write the same one (see ruleset.Match).
        self.cidr_cache: dict[str, tuple[int, int]] = {}
        self.header_cache: dict[tuple, Header] = {}
        self.match_cache: dict[tuple, Match] = {}
        self.target_cache: dict[tuple, Target] = {}

    def where(self, lineno: int) -> str:
        return f"{self.source}:{lineno}"

    def run(self, text: str) -> Ruleset:
        if self.lazy and len(text) < 1 << 32 and _OTHER_LINE_BREAKS.search(text) is None:
            self._run_offsets(text)
        else:
            self.lazy = False              # (offsets need lines split at "\n" only, as str.splitlines then does)
            lineno = 0
            for lineno, raw in enumerate(text.splitlines(), 1):
                self.line(raw.strip(), lineno, 0)
            self.finish(lineno)
        return self.rs

    def _run_offsets(self, text: str) -> None:
        """run() for lazy parsing: each line found by offset, a lazy chain's ``-A`` lines kept as
        (line number, offset) pairs without making a string of them (a 10,000-Service node's
        rules are ~400,000 lines, read again only for the chains a packet enters)."""
        self.text = text
        find, match, n = text.find, _APPEND.match, len(text)
        pos = lineno = 0
        while pos < n:
            end = find("\n", pos)
            if end < 0:
                end = n
            lineno += 1
            if text.startswith("-A ", pos) and self.table is not None:
                m = match(text, pos, end)
                if m is not None:
                    chain = self.table.chains.get(m.group(1))
                    if isinstance(chain, LazyChain):
                        chain.raw.append(lineno)         # parsed when first read
                        chain.raw.append(pos)
                        pos = end + 1
                        continue
            self.line(text[pos:end].strip(), lineno, pos)
            pos = end + 1
        self.finish(lineno)

    def line(self, line: str, lineno: int, pos: int) -> None:
        """One line of the dump (stripped); ``pos``: its offset in the text (lazy parsing)."""
        if not line:
            return
        first = line[0]
        if first == "-" and self.table is not None:
            if self.lazy and line.startswith("-A "):
                parts = line.split(None, 2)
                chain = self.table.chains.get(parts[1]) if len(parts) > 1 else None
                if isinstance(chain, LazyChain):
                    chain.raw.append(lineno)             # parsed when first read
                    chain.raw.append(pos)
                    return
                if chain is not None:
                    chain.rules                          # (parses what it holds first: order kept)
            self.command(line, lineno)             # the common case: a rule
        elif first == "#":
            return
        elif first == "*":
            self.begin_table(line[1:].strip(), lineno)
        elif line == "COMMIT":
            if self.table is None:
                raise IptablesError(f"{self.where(lineno)}: COMMIT without a table (expected '*filter', '*nat', ...)")
            self.commit()
        elif self.table is None:
            raise IptablesError(f"{self.where(lineno)}: expected a table header like '*nat' before "
                                f"{line.split()[0]!r}")
        elif first == ":":
            self.declare_chain(line, lineno)
        else:
            self.command(line, lineno)

    def finish(self, lineno: int) -> None:
        if self.table is not None:
            raise IptablesError(f"{self.where(lineno)}: table {self.table.name} has no COMMIT line")

    def begin_table(self, name: str, lineno: int) -> None:
        w = self.where(lineno)
        if self.table is not None:
            raise IptablesError(f"{w}: table {name} starts before table {self.table.name} was COMMITted")
        if name not in BUILTIN_CHAINS:
            raise IptablesError(f"{w}: unknown table {name!r} (expected {', '.join(BUILTIN_CHAINS)})")
        t = self.rs.tables.get(name)
        if t is None:
            t = Table(name, line=lineno)
            for c in BUILTIN_CHAINS[name]:
                t.chains[c] = self.new_chain(t, c, "ACCEPT", 0)
            self.rs.tables[name] = t
        self.table = t

    def declare_chain(self, line: str, lineno: int) -> None:
        w = self.where(lineno)
        parts = line[1:].split()
        if len(parts) < 2:
            raise IptablesError(f"{w}: chain line must be ':NAME POLICY [packets:bytes]', got {line!r}")
        name, policy = parts[0], parts[1]
        counters = _counters(parts[2], w) if len(parts) > 2 else None
        builtin = name in BUILTIN_CHAINS[self.table.name]
        if builtin:
            if policy not in ("ACCEPT", "DROP", "-"):
                raise IptablesError(f"{w}: built-in chain {name} needs policy ACCEPT, DROP or '-', got {policy!r}")
            c = self.table.chains[name]
            c.line, c.counters = lineno, counters
            if policy != "-":
                # iptables-restore (iptables/iptables-restore.c): '-' leaves the chain's policy as it
                # is, i.e. ACCEPT on a table this dump creates
                c.policy = policy
        else:
            if policy != "-":
                raise IptablesError(f"{w}: user chain {name} must have policy '-', got {policy!r}")
            if len(name) > 28:
                raise IptablesError(f"{w}: chain name {name!r} is longer than 28 characters")
            c = self.table.chains.get(name)
            if c is None:
                self.table.chains[name] = self.new_chain(self.table, name, None, lineno, counters)
            else:
                c.rules.clear()   # iptables-restore flushes a declared chain
                c.line = lineno

    def command(self, line: str, lineno: int) -> None:
        w = self.where(lineno)
        toks = tokenize(line, w)
        counters = None
        text = line
        if toks and toks[0].startswith("["):
            counters = _counters(toks[0], w)
            toks = toks[1:]
            text = line[line.index("]") + 1:].lstrip()
        if not toks:
            raise IptablesError(f"{w}: empty rule")
        cmd = toks[0]
        if cmd in ("-A", "--append", "-I", "--insert"):
            if len(toks) < 2:
                raise IptablesError(f"{w}: {cmd} needs a chain name")
            chain = self.table.chains.get(toks[1])
            if chain is None:
                raise IptablesError(f"{w}: chain {toks[1]!r} is not declared in table {self.table.name} "
                                    f"(expected a ':{toks[1]} - [0:0]' line first)")
            rest = toks[2:]
            pos = None
            if cmd in ("-I", "--insert"):
                pos = 1
                if rest and rest[0].isdigit():
                    pos = int(rest[0])
                    rest = rest[1:]
            rule = self.rule(chain.name, rest, lineno, text, counters, w)
            if pos is None:
                chain.rules.append(rule)
            else:
                chain.rules.insert(pos - 1, rule)
        elif cmd in ("-N", "--new-chain") and len(toks) == 2:
            if toks[1] not in self.table.chains:
                self.table.chains[toks[1]] = self.new_chain(self.table, toks[1], None, lineno)
        elif cmd in ("-X", "--delete-chain") and len(toks) == 2:
            if toks[1] not in self.table.chains or self.table.chains[toks[1]].builtin:
                raise IptablesError(f"{w}: -X of unknown or built-in chain {toks[1]!r}")
            del self.table.chains[toks[1]]
        elif cmd in ("-F", "--flush"):
            if len(toks) > 1 and toks[1] not in self.table.chains:
                raise IptablesError(f"{w}: -F of unknown chain {toks[1]!r} in table {self.table.name}")
            for c in ([self.table.chains[toks[1]]] if len(toks) > 1 else self.table.chains.values()):
                c.rules.clear()
        elif cmd in ("-P", "--policy") and len(toks) == 3:
            c = self.table.chains.get(toks[1])
            if c is None or not c.builtin or toks[2] not in ("ACCEPT", "DROP"):
                raise IptablesError(f"{w}: -P needs a built-in chain and ACCEPT or DROP")
            c.policy = toks[2]
        else:
            raise IptablesError(f"{w}: expected a rule '-A CHAIN ...', got {cmd!r}")

    def new_chain(self, table: Table, name: str, policy: Optional[str], lineno: int,
                  counters: Optional[tuple[int, int]] = None) -> Chain:
        if not self.lazy:
            return Chain(name, policy, line=lineno, counters=counters)
        loader = self.loaders.get(table.name)
        if loader is None:
            loader = self.loaders[table.name] = partial(self.load, table)
        return LazyChain(name, policy, lineno, counters, loader=loader)

    def load(self, table: Table, chain: LazyChain) -> None:
        """Parse a lazy chain's ``-A`` lines: while its table is being read, as the eager parser
        would (targets resolved at COMMIT); afterwards with the table's chains all declared."""
        raw, chain.raw = chain.raw, array(RAW_TYPECODE)
        if chain._parsed is None:
            chain._parsed = []
        if self.table is table:
            self._load_lines(chain, raw)
            return
        outer, pending = self.table, self.pending
        self.table, self.pending = table, []
        try:
            with gc_paused():
                self._load_lines(chain, raw)
                self.commit()
        finally:
            self.table, self.pending = outer, pending

    def _load_lines(self, chain: LazyChain, raw: Any) -> None:
        parsed = chain._parsed
        assert parsed is not None and self.table is not None
        seen = self.lines.setdefault(self.table.name, {}) if self.lines is not None else None
        tname, cname, pending = self.table.name, chain.name, self.pending
        for lineno, line in (self._raw_lines(raw) if isinstance(raw, array) else ((0, x) for x in raw)):
            if seen is not None:
                got = seen.get(line)
                if got is not None:            # the same line parsed for another node: the same parts
                    header, matches, target, topts, goto = got
                    rule = Rule(tname, cname, lineno, line, header, list(matches))
                    if target is not None:
                        pending.append((rule, target, topts, goto, self.where(lineno)))
                    parsed.append(rule)
                    continue
            w = self.where(lineno)
            rule = self.rule(cname, tokenize(line, w)[2:], lineno, line, None, w)
            parsed.append(rule)
            if seen is not None and rule.unsupported is None and rule.counters is None \
                    and not any(m.per_rule for m in rule.matches):
                last = pending[-1] if pending and pending[-1][0] is rule else None
                seen[line] = (rule.header, tuple(rule.matches), *(last[1:4] if last else (None, (), False)))

    def _raw_lines(self, raw: array) -> Iterator[tuple[int, str]]:
        """A lazy chain's lines: (line number, stripped line) from its offsets into the text."""
        text, find = self.text, self.text.find
        for i in range(0, len(raw), 2):
            lineno, start = raw[i], raw[i + 1]
            end = find("\n", start)
            yield lineno, text[start:end if end >= 0 else len(text)].strip()

    # -- one rule -----------------------------------------------------------------------------
    def rule(self, chain: str, toks: list[str], lineno: int, text: str, counters, w: str) -> Rule:
        rule = Rule(self.table.name, chain, lineno, text, _NO_HEADER, [], None, counters)
        try:
            self._fill(rule, toks, w)
        except IptablesError as e:
            if not self.lenient:
                raise
            rule.unsupported = str(e)
            self.rs.unsupported.append(str(e))
        return rule

    def _fill(self, rule: Rule, toks: list[str], w: str) -> None:
        header = Header()
        rule.header = header                # interned below once complete
        raw: list[tuple[str, list[tuple[str, tuple[str, ...], bool]]]] = []    # (module, option tuples)
        target: Optional[str] = None
        goto = False
        topts: list[tuple[str, tuple[str, ...], bool]] = []
        cur: Optional[int] = None          # index into raw; -1 means the target
        neg = False
        i, n = 0, len(toks)
        while i < n:
            tok = toks[i]
            if tok == "!":
                if neg:
                    raise IptablesError(f"{w}: double '!'")
                neg = True
                i += 1
                continue
            field_name = _HEADER.get(tok)
            if field_name is not None:
                if i + 1 > n - 1:
                    raise IptablesError(f"{w}: {tok} needs a value")
                self._header(header, field_name, toks[i + 1], neg, w)
                neg = False
                i += 2
            elif tok == "-m" or tok == "--match":
                if neg:
                    raise IptablesError(f"{w}: '!' cannot negate -m")
                if i + 1 > n - 1:
                    raise IptablesError(f"{w}: {tok} needs a module name")
                raw.append((toks[i + 1], []))
                cur = len(raw) - 1
                i += 2
            elif tok in _JUMP:
                if i + 1 > n - 1:
                    raise IptablesError(f"{w}: {tok} needs a target")
                target = toks[i + 1]
                goto = tok == "-g" or tok == "--goto"
                cur = -1
                i += 2
            elif tok in ("-f", "--fragment"):
                header.fragment = not neg
                neg = False
                i += 1
            elif tok in ("-c", "--set-counters"):
                if i + 2 > n - 1:
                    raise IptablesError(f"{w}: {tok} needs packet and byte counts")
                rule.counters = (int(toks[i + 1]), int(toks[i + 2]))
                i += 3
            elif tok[:1] == "-":
                owner, k, canon = self._owner(tok, raw, cur, target, header, w)
                args = toks[i + 1:i + 1 + k]
                if len(args) < k:
                    raise IptablesError(f"{w}: option {tok} needs {k} argument(s)")
                if args and args[0] == "!":           # old syntax: --dport ! 80
                    neg = True
                    args = toks[i + 2:i + 2 + k]
                    i += 1
                opt = (canon, tuple(args), neg)
                if owner == -1:
                    topts.append(opt)
                else:
                    raw[owner][1].append(opt)
                neg = False
                i += 1 + k
            else:
                raise IptablesError(f"{w}: unexpected {tok!r} (expected an option such as -p, -m, -j)")
        if neg:
            raise IptablesError(f"{w}: '!' at the end of the rule negates nothing")
        # iptables.c do_command4: no output interface on the incoming hooks, no input interface on
        # the outgoing ones ("Can't use -o with INPUT"), checked against the chain the rule is added to
        if header.oif is not None and rule.chain in ("PREROUTING", "INPUT"):
            raise IptablesError(f"{w}: Can't use -o with {rule.chain}")
        if header.iif is not None and rule.chain in ("POSTROUTING", "OUTPUT"):
            raise IptablesError(f"{w}: Can't use -i with {rule.chain}")
        rule.header = header = self._intern_header(header)
        matches = rule.matches
        cache = self.match_cache
        proto = header.proto
        for idx, (mod, opts) in enumerate(raw):
            ckey = (mod, tuple(opts), proto)
            m = cache.get(ckey)
            if m is None:
                m = M.build_match(mod, [_opt(o) for o in opts], header, w,
                                  (self.source, rule.table, rule.chain, rule.line, idx))
                if not m.per_rule:
                    cache[ckey] = m
            matches.append(m)
        if target is not None:
            self.pending.append((rule, target, tuple(topts), goto, w))

    def _owner(self, tok: str, raw, cur, target, header: Header, w: str) -> tuple[int, int, str]:
        """Which loaded match (or the target) takes option `tok`, its arity and canonical name."""
        if cur == -1:
            spec = _TARGET_OPTS.get(target)
            if spec is None:
                # a jump to a user chain takes no options; unknown targets are reported at COMMIT
                raise IptablesError(f"{w}: unknown target {target!r} with option {tok}")
            found = spec.get(tok)
            if found is None:
                raise IptablesError(f"{w}: target {target} has no option {tok}")
            return -1, found[1], found[0]
        if cur is not None:
            spec = _MATCH_OPTS.get(raw[cur][0])
            if spec is not None:
                found = spec.get(tok)
                if found is not None:           # the common case: an option of the last -m
                    return cur, found[1], found[0]
        order = ([cur] if cur is not None else []) + [j for j in range(len(raw) - 1, -1, -1) if j != cur]
        for j in order:
            mod = raw[j][0]
            spec = _MATCH_OPTS.get(mod)
            if spec is None:
                raise IptablesError(f"{w}: unknown match module -m {mod}")
            found = spec.get(tok)
            if found is not None:
                return j, found[1], found[0]
        # iptables loads the protocol's match implicitly: `-p tcp --dport 80`
        if header.proto is not None and not header.proto[1]:
            pname = render_proto(header.proto[0])
            spec = _MATCH_OPTS.get(pname)
            if spec is not None:
                found = spec.get(tok)
                if found is not None:
                    raw.append((pname, []))
                    return len(raw) - 1, found[1], found[0]
        where_mod = f" for -m {raw[cur][0]}" if cur is not None else ""
        raise IptablesError(f"{w}: unknown option {tok}{where_mod}")

    def _header(self, h: Header, field: str, val: str, neg: bool, w: str) -> None:
        if getattr(h, field) is not None:
            raise IptablesError(f"{w}: {field} given twice")
        if field in ("src", "dst"):
            if "," in val:
                raise IptablesError(f"{w}: address lists ({val!r}) are not supported; write one rule per address")
            cidr = self.cidr_cache.get(val)
            if cidr is None:
                cidr = self.cidr_cache[val] = parse_cidr(val, w)
            setattr(h, field, (cidr[0], cidr[1], neg))
        elif field in ("iif", "oif"):
            setattr(h, field, (val, neg))
        else:
            setattr(h, field, (parse_proto(val, w), neg))

    def _intern_header(self, h: Header) -> Header:
        """One shared Header per distinct set of header fields (most rules have one of a few)."""
        key = (h.src, h.dst, h.iif, h.oif, h.proto, h.fragment)
        shared = self.header_cache.get(key)
        if shared is None:
            shared = self.header_cache[key] = h
        return shared

    def commit(self) -> None:
        t = self.table
        for rule, target, topts, goto, w in self.pending:
            try:
                rule.target_spec = self._target(t, target, topts, goto, rule.header, w)
            except IptablesError as e:
                if not self.lenient:
                    raise
                rule.unsupported = str(e)
                self.rs.unsupported.append(str(e))
        self.pending = []
        self.table = None

    def _target(self, t: Table, name: str, topts: tuple, goto: bool, header: Header, w: str) -> Target:
        chain = t.chains.get(name)
        if chain is not None and not chain.builtin:
            if topts:
                raise IptablesError(f"{w}: a jump to chain {name} takes no options")
            key: tuple = (name, goto)
        else:
            if name in BUILTIN_CHAINS[t.name]:
                raise IptablesError(f"{w}: cannot jump to built-in chain {name}")
            key = (name, goto, topts, header.proto, t.name)
        cached = self.target_cache.get(key)
        if cached is not None:
            return cached
        if len(key) == 2:
            tgt = Target(name, [], goto, f"{'-g' if goto else '-j'} {name}", None)
        else:
            tgt = T.build_target(name, [_opt(o) for o in topts], header, t.name, w, goto)
        self.target_cache[key] = tgt
        return tgt


def _opt(o: tuple[str, tuple[str, ...], bool]) -> Opt:
    return Opt(o[0], o[1], o[2])


def _option_table(options: dict[str, dict[str, int]], aliases: dict[str, dict[str, str]]) -> dict:
    """module/target -> {option as written: (canonical option, number of arguments)}, aliases included."""
    out: dict[str, dict[str, tuple[str, int]]] = {}
    for mod, opts in options.items():
        table = {o: (o, k) for o, k in opts.items()}
        for alias, canon in aliases.get(mod, {}).items():
            if canon in opts:
                table[alias] = (canon, opts[canon])
            else:
                table.pop(alias, None)
        out[mod] = table
    return out


_MATCH_OPTS = _option_table(M.OPTIONS, M.ALIASES)
_TARGET_OPTS = _option_table(T.OPTIONS, T.ALIASES)
_JUMP = frozenset(("-j", "--jump", "-g", "--goto"))
_NO_HEADER = Header()
_APPEND = re.compile(r"-A\s+(\S+)")
# line boundaries str.splitlines() knows besides "\n" (lazy parsing finds lines by "\n" alone)
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


_ZERO_COUNTERS = (0, 0)          # what kube-proxy writes on every chain line ("[0:0]"): one tuple for all


def _counters(text: str, where: str) -> tuple[int, int]:
    if text == "[0:0]":
        return _ZERO_COUNTERS
    if not (text.startswith("[") and text.endswith("]") and ":" in text):
        raise IptablesError(f"{where}: expected counters like [0:0], got {text!r}")
    a, _, b = text[1:-1].partition(":")
    try:
        return int(a), int(b)
    except ValueError:
        raise IptablesError(f"{where}: expected counters like [0:0], got {text!r}") from None


def parse(text: str, *, source: str = "<dump>", lenient: bool = False, lazy: bool = False,
          lines: Optional[dict] = None) -> Ruleset:
    """Parse iptables-save (or iptables-restore) text; see module docstring for errors and lenient mode.

    With ``lazy`` (not with ``lenient``) the tables, chains, policies and the chain of every rule
    are read now, each ``-A`` rule's matches and target when its chain's rules are first read
    (:class:`LazyChain`): an error in a rule's options is then raised there. For text this program
    wrote itself (a node's kube-proxy rules), which a trace enters in a few chains. ``lines`` (lazy
    only): a dict kept by the caller across the parses of several dumps (a cluster's nodes), from
    which a lazy chain's line seen before is taken whole instead of parsed again (its rule gets this
    dump's line number; its target is resolved against this dump's chains, as always)."""
    with gc_paused():
        return _Parser(source, lenient, lazy, lines if lazy else None).run(text)


def line_chain(ruleset: Ruleset, table: str, name: str, lines: list[str]) -> LineChain:
    """A chain of ``lines`` (``-A`` lines, stripped) added to a table of a lazily parsed ruleset
    (replacing a chain of that name), parsed by that ruleset's parser when first read, as a chain of
    its text would be (its jumps resolved against the table's chains then)."""
    t = ruleset.tables[table]
    loader = next((c._loader for c in t.chains.values() if isinstance(c, LazyChain) and c._loader is not None), None)
    if loader is None:
        raise ValueError(f"table {table!r} of {ruleset.source} was not parsed lazily")
    c = t.chains[name] = LineChain(name, lines, loader=loader)
    return c
