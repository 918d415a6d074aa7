"""Split nftables text into tokens with line numbers, as nft(8)'s scanner does for what matters here.

A token is a double-quoted string, one of ``{ } ; ,``, a newline (statement separator; the parser
skips newlines inside element lists and anonymous sets), or a word: a run of other non-blank characters (``10.180.0.1:80``, ``service-X/ns/tcp/p80``,
``@service-ips``, ``!=``). ``#`` starts a comment to the end of the line (nft list -a prints
``# handle N`` that way). A backslash before a newline joins lines.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class NftError(ValueError):
    """Bad nftables input or an impossible evaluation; the message names source:line."""


class Tok(NamedTuple):
    text: str
    line: int
    quoted: bool = False

    def __repr__(self) -> str:
        return f"{self.text!r}@{self.line}"


NL = "\n"
_SPECIAL = "{};,"


_TOKEN = re.compile(r'\s+|#.*|"([^"]*)"|([{};,])|([^\s"#{};,]+)|(")')


_SPACED = str.maketrans({"{": " { ", "}": " } ", ";": " ; ", ",": " , "})


def tokenize(text: str, source: str = "<nft>") -> list[Tok]:
    """Tokens of `text` (consecutive newlines collapse into one newline token)."""
    out: list[Tok] = []
    depth = 0
    lines = text.split("\n")
    i, n = 0, len(lines)
    while i < n:
        ln = lines[i]
        i += 1
        lineno = i
        if '"' in ln or "#" in ln or ln.endswith("\\"):
            while ln.endswith("\\") and i < n:          # a backslash-newline joins lines
                ln = ln[:-1] + " " + lines[i]
                i += 1
            words = _slow_line(ln, lineno, source)
        else:
            words = [Tok(w, lineno) for w in ln.translate(_SPACED).split()]
        for t in words:
            if not t.quoted:
                if t.text == "{":
                    depth += 1
                elif t.text == "}":
                    depth -= 1
                    if depth < 0:
                        raise NftError(f"{source}:{lineno}: '}}' without a matching '{{'")
        if words:
            out.extend(words)
            out.append(Tok(NL, lineno))
    if depth:
        raise NftError(f"{source}:{n}: {depth} '{{' not closed at end of input")
    return out


def _slow_line(ln: str, lineno: int, source: str) -> list[Tok]:
    out: list[Tok] = []
    for m in _TOKEN.finditer(ln):
        string, special, word, bad = m.groups()
        if word is not None or special is not None:
            out.append(Tok(word or special, lineno))
        elif string is not None:
            out.append(Tok(string, lineno, True))
        elif bad is not None:
            raise NftError(f"{source}:{lineno}: unterminated string")
    return out
