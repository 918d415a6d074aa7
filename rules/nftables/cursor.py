"""A cursor over one statement's tokens, and the parts the parser and the rule compiler share:
set/map element lists (nft(8) "ELEMENTS") and `typeof`/`type` key declarations."""
from __future__ import annotations

from typing import Optional

from netsim.rules.nftables.lexer import NL, NftError, Tok
from netsim.rules.nftables.model import Element, NftSet
from netsim.rules.nftables.values import KNOWN_TYPES, parse_duration, parse_int, parse_value, parse_verdict

ELEMENT_OPTIONS = ("comment", "timeout", "expires", "counter")


class Cursor:
    def __init__(self, toks: list[Tok], source: str, line: int) -> None:
        self.toks = toks
        self.pos = 0
        self.source = source
        self.line = line

    @property
    def where(self) -> str:
        line = self.toks[self.pos].line if self.pos < len(self.toks) else self.line
        return f"{self.source}:{line}"

    def error(self, msg: str) -> NftError:
        return NftError(f"{self.where}: {msg}")

    def at_end(self) -> bool:
        return self.pos >= len(self.toks)

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.toks[i].text if i < len(self.toks) else ""

    def peek_tok(self) -> Optional[Tok]:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, what: str = "") -> str:
        if self.pos >= len(self.toks):
            raise self.error(f"unexpected end of statement{', expected ' + what if what else ''}")
        t = self.toks[self.pos].text
        self.pos += 1
        return t

    def expect(self, text: str) -> None:
        got = self.peek()
        if got != text:
            raise self.error(f"expected {text!r}, got {got or 'end of statement'!r}")
        self.pos += 1

    def take_string(self, what: str) -> str:
        t = self.peek_tok()
        if t is None:
            raise self.error(f"expected {what}")
        self.pos += 1
        return t.text

    def skip_nl(self) -> None:
        while self.pos < len(self.toks) and self.toks[self.pos].text == NL and not self.toks[self.pos].quoted:
            self.pos += 1

    # --------------------------------------------------------------- elements
    def elements(self, s: NftSet, now: float = 0.0, keys_only: bool = False) -> list[tuple[tuple, Element]]:
        """`{ k [opts] [: data], ... }` for set `s` (keys typed by s.key_types, data by s.data_types);
        keys_only: `delete element` names map elements by key alone."""
        self.expect("{")
        out: list[tuple[tuple, Element]] = []
        while True:
            self.skip_nl()
            if self.peek() == "}":
                self.pos += 1
                return out
            key = self._typed_tuple(s.key_types, allow_interval=True)
            if any(isinstance(k, tuple) for k in key) and not s.interval:
                raise self.error(f"set {s.name}: an interval element needs 'flags interval' on the set")
            elem = Element()
            while self.peek() in ELEMENT_OPTIONS:
                opt = self.take()
                if opt == "comment":
                    elem.comment = self.take_string("a comment string")
                elif opt == "timeout":
                    elem.timeout = parse_duration(self.take("a timeout"), self.where)
                elif opt == "expires":
                    elem.expires = now + parse_duration(self.take("an expiry"), self.where)
                else:
                    while self.peek() in ("packets", "bytes"):
                        self.take()
                        self.take()
            if s.data_types is not None and not (keys_only and self.peek() != ":"):
                self.expect(":")
                if s.is_vmap:
                    words = [self.take("a verdict")]
                    if words[0] in ("jump", "goto"):
                        words.append(self.take("a chain name"))
                    elem.data = parse_verdict(words, self.where)
                else:
                    d = self._typed_tuple(s.data_types, allow_interval=False)
                    elem.data = d[0] if len(d) == 1 else d
            if elem.expires is None:
                t = elem.timeout if elem.timeout is not None else s.timeout
                if t is not None:
                    elem.expires = now + t
            out.append((key, elem))
            self.skip_nl()
            if self.peek() == ",":
                self.pos += 1
                continue
            self.skip_nl()
            if self.peek() != "}":
                raise self.error(f"expected ',' or '}}' in the element list, got {self.peek() or 'end'!r}")

    def _typed_tuple(self, types: tuple[str, ...], allow_interval: bool) -> tuple:
        vals = []
        for i, t in enumerate(types):
            if i:
                if self.peek() != ".":
                    raise self.error(f"expected '.' and a {t} value (key type is {' . '.join(types)})")
                self.pos += 1
            text = self.take(f"a {t} value")
            v = parse_value(t, text, self.where) if allow_interval else None
            if v is None:
                from netsim.rules.nftables.values import parse_scalar
                v = parse_scalar(t, text, self.where)
            vals.append(v)
        return tuple(vals)

    # --------------------------------------------------------------- set declarations
    def type_list(self) -> tuple[str, ...]:
        """`ipv4_addr . inet_proto . inet_service` after `type`."""
        out = [self.take("a data type")]
        while self.peek() == ".":
            self.pos += 1
            out.append(self.take("a data type"))
        for t in out:
            if t not in KNOWN_TYPES:
                raise self.error(f"unknown data type {t!r}")
        return tuple(out)

    def int_arg(self, what: str) -> int:
        return parse_int(self.take(what), self.where, what)
