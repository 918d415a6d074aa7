"""Split nftables text into tokens with line numbers, as nft(8)'s scanner does for what matters here.

A token is a double-quoted string, one of ``{ } ; ,``, a newline (statement separator; the parser
skips newlines inside element lists and anonymous sets), or a word: a run of other non-blank characters (``10.180.0.1:80``, ``service-X/ns/tcp/p80``,
``@service-ips``, ``!=``). ``#`` starts a comment to the end of the line (nft list -a prints
``# handle N`` that way). A backslash before a newline joins lines.
"""
from __future__ import annotations

from dataclasses import dataclass


class NftError(ValueError):
    """Bad nftables input or an impossible evaluation; the message names source:line."""


@dataclass(frozen=True, slots=True)
class Tok:
    text: str
    line: int
    quoted: bool = False

    def __repr__(self) -> str:
        return f"{self.text!r}@{self.line}"


NL = "\n"
_SPECIAL = "{};,"


def tokenize(text: str, source: str = "<nft>") -> list[Tok]:
    """Tokens of `text` (consecutive newlines collapse into one newline token)."""
    out: list[Tok] = []
    i, n, line, depth = 0, len(text), 1, 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            if out and out[-1].text != NL:
                out.append(Tok(NL, line))
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif ch == "\\" and text.startswith("\\\n", i):
            line += 1
            i += 2
        elif ch == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif ch == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise NftError(f"{source}:{line}: unterminated string")
            out.append(Tok(text[i + 1:j], line, True))
            i = j + 1
        elif ch in _SPECIAL:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth < 0:
                    raise NftError(f"{source}:{line}: '}}' without a matching '{{'")
            out.append(Tok(ch, line))
            i += 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"#' and text[j] not in _SPECIAL:
                j += 1
            out.append(Tok(text[i:j], line))
            i = j
    if depth:
        raise NftError(f"{source}:{line}: {depth} '{{' not closed at end of input")
    if out and out[-1].text != NL:
        out.append(Tok(NL, line))
    return out
