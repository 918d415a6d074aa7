"""Read manifest input without letting hostile input run for minutes or fill the machine's memory.

Three bounds, each a one-line ManifestError naming the source:

* bytes: a file (or standard input, ``-``) is read in chunks and refused as soon as it passes
  ``max_bytes``, so ``-f /dev/zero`` or a runaway pipe never gets read whole; a NUL byte in the
  first chunk means "not a text file" at once;
* YAML values: before parsing, an upper bound of the number of YAML nodes is counted at C speed
  (every node but the first follows one of ``, : - [ { ? \\n``); PyYAML keeps a few hundred bytes
  per node, so this bounds the parser's memory and time for input made of tiny values;
* alias expansion: a document whose nodes come mostly from alias expansion (a "billion laughs"
  bomb) is refused with the rule kubectl's YAML decoder applies (gopkg.in/yaml.v2 decode.go
  ``allowedAliasRatio``, CVE-2019-11253): after more than 100 alias-driven and 1,000 total
  decodes, the alias share may not exceed 99% up to 400,000 decodes, falling linearly to 10% at
  4,000,000. The count stops as soon as the rule trips, so checking a bomb costs little.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Optional

import yaml

from netsim.control.docfields import ManifestError

STDIN = "-"
_CHUNK = 1 << 20
_BaseSafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when available: ~10x faster


class _SafeLoader(_BaseSafeLoader):     # type: ignore[misc,valid-type]
    """PyYAML's safe loader, making one string object of equal string scalars within one input.

    PyYAML constructs a new ``str`` for every scalar (SafeConstructor.construct_yaml_str); the
    objects built from 10,000 Services and Deployments keep ~40,000 copies of the key ``app``, four
    of each ``app-N``, one ``default`` per object. The values are the same; only their number
    changes (the memo lives as long as the loader)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._strings: dict[str, str] = {}

    def construct_yaml_str(self, node: Any) -> str:
        value = self.construct_scalar(node)
        return self._strings.setdefault(value, value)


_SafeLoader.add_constructor("tag:yaml.org,2002:str", _SafeLoader.construct_yaml_str)
_SEPARATORS = (b",", b":", b"-", b"[", b"{", b"?", b"\n")

# gopkg.in/yaml.v2 decode.go: the range over which the allowed alias ratio scales
_ALIAS_RATIO_LOW = 400_000
_ALIAS_RATIO_HIGH = 4_000_000


@dataclass(frozen=True)
class InputLimits:
    """How much input one manifest source may hold (``--max-input-bytes`` / ``--max-yaml-values``,
    or ``NETSIM_MAX_INPUT_BYTES`` / ``NETSIM_MAX_YAML_VALUES``)."""

    max_bytes: int = 64 << 20          # 64 MiB: 14x the 10,000-Service benchmark's 4.4 MiB
    max_values: int = 1_000_000        # 1.4x that benchmark's 710,000 YAML nodes (~0.4 GiB parsed)


_SIZE = re.compile(r"^\s*(\d+)\s*(|k|ki|m|mi|g|gi)b?\s*$", re.I)
_UNITS = {"": 1, "k": 10**3, "ki": 1 << 10, "m": 10**6, "mi": 1 << 20, "g": 10**9, "gi": 1 << 30}


def parse_size(text: str) -> int:
    """'64Mi', '500M', '1Gi', '1048576' → bytes (Kubernetes quantity suffixes); ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r}: expected a size such as 64Mi, 500M, 1Gi or a number of bytes")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def read_source(path: str, limits: InputLimits, display: Optional[str] = None, expected: str = "YAML") -> str:
    """The text of a manifest file (or rule dump), or of standard input for ``-``, read in chunks
    under ``limits``; ``expected`` names what a binary file should have been."""
    name = display or ("stdin" if path == STDIN else path)
    try:
        if path == STDIN:
            return _read_bounded(sys.stdin.buffer, name, limits, expected)
        with open(path, "rb") as f:
            return _read_bounded(f, name, limits, expected)
    except OSError as e:
        raise ManifestError(f"{name}: cannot read: {e.strerror or e}") from None


def _read_bounded(f: BinaryIO, name: str, limits: InputLimits, expected: str) -> str:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        if not chunks and b"\0" in chunk:
            raise ManifestError(f"{name}: not a text file (expected {expected})")
        total += len(chunk)
        if total > limits.max_bytes:
            raise ManifestError(f"{name}: more than {_size(limits.max_bytes)} of input (the limit; raise it with "
                                "--max-input-bytes or NETSIM_MAX_INPUT_BYTES)")
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{name}: not a text file (expected {expected})") from None


def _size(n: int) -> str:
    for unit, mult in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} bytes"


def estimate_values(text: str) -> int:
    """An upper bound of the YAML nodes in ``text``: one, plus one per separator character."""
    data = text.encode("utf-8", "surrogatepass") if not text.isascii() else text.encode("ascii")
    return 1 + sum(data.count(s) for s in _SEPARATORS)


def yaml_documents(source: str, text: str, limits: InputLimits) -> Iterator[Any]:
    """The documents of ``text`` as Python values (PyYAML's safe loader), within ``limits``.

    yaml.YAMLError and RecursionError pass through for the caller to word."""
    if len(text) > limits.max_bytes:
        raise ManifestError(f"{source}: more than {_size(limits.max_bytes)} of input (the limit; raise it with "
                            "--max-input-bytes or NETSIM_MAX_INPUT_BYTES)")
    values = estimate_values(text)
    if values > limits.max_values:
        raise ManifestError(f"{source}: up to {values:,} YAML values, more than the limit of {limits.max_values:,} "
                            "(raise it with --max-yaml-values or NETSIM_MAX_YAML_VALUES)")
    if "&" not in text:                 # no anchor, hence no alias: nothing can expand
        yield from yaml.load_all(text, Loader=_SafeLoader)
        return
    loader = _SafeLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            index += 1
            _check_aliasing(node, source, index)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def _allowed_alias_ratio(decodes: int) -> float:
    """gopkg.in/yaml.v2 decode.go allowedAliasRatio."""
    if decodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if decodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * ((decodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW))


def _check_aliasing(root: Any, source: str, index: int) -> None:
    """Walk the composed document in document order as go-yaml's decoder decodes it, every alias
    expanded, counting decodes and alias-driven decodes; refuse as kubectl does once the alias
    share is excessive. PyYAML composes an alias as the anchored node itself: a position (parent,
    slot) is an alias if, the first time it is walked, its node had been met already (an anchor
    always comes before its aliases); walks inside an expansion meet the same positions again."""
    decodes = aliased = 0
    seen: set[int] = set()
    alias_at: dict[tuple[int, int], bool] = {}
    stack: list[tuple[Any, int, tuple[int, int]]] = [(root, 0, (0, 0))]    # (node, alias depth, position)
    while stack:
        node, depth, pos = stack.pop()
        is_alias = alias_at.get(pos)
        if is_alias is None:
            is_alias = alias_at[pos] = id(node) in seen
            seen.add(id(node))
        if is_alias:                                  # the alias node itself, then its target inside it
            decodes += 1
            aliased += depth > 0
            depth += 1
        decodes += 1
        aliased += depth > 0
        if aliased > 100 and decodes > 1000 and aliased / decodes > _allowed_alias_ratio(decodes):
            raise ManifestError(f"{source}: document {index}: excessive YAML aliasing (more than "
                                f"{aliased:,} of {decodes:,} values come from alias expansion; kubectl "
                                "refuses it too: \"document contains excessive aliasing\")")
        value = node.value
        if isinstance(value, list):
            me = id(node)
            slot = 2 * len(value)
            for item in reversed(value):
                if isinstance(item, tuple):           # a mapping's (key, value)
                    stack.append((item[1], depth, (me, slot - 1)))
                    stack.append((item[0], depth, (me, slot - 2)))
                else:
                    stack.append((item, depth, (me, slot - 2)))
                slot -= 2


def limits_from_env(environ: Optional[dict[str, str]] = None) -> InputLimits:
    """InputLimits with NETSIM_MAX_INPUT_BYTES / NETSIM_MAX_YAML_VALUES applied (ValueError if malformed)."""
    env = os.environ if environ is None else environ
    base = InputLimits()
    max_bytes = parse_size(env["NETSIM_MAX_INPUT_BYTES"]) if env.get("NETSIM_MAX_INPUT_BYTES") else base.max_bytes
    max_values = int(env["NETSIM_MAX_YAML_VALUES"]) if env.get("NETSIM_MAX_YAML_VALUES") else base.max_values
    return InputLimits(max_bytes, max_values)
