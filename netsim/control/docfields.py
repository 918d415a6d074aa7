"""Typed access to one YAML document's fields, with errors that name the file, document and field path."""
from __future__ import annotations

from typing import Any, Callable, Optional


class ManifestError(ValueError):
    """Bad input: the message names the file, the document, the field path and what was expected.

    Always one line: control characters that came from the input are shown escaped."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (\\n, \\x1c, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", dict: "a mapping", list: "a list"}


class Doc:
    """One document being read: where it came from, plus helpers that raise ManifestError."""

    def __init__(self, source: str, index: int, body: dict) -> None:
        self.source, self.index, self.body = source, index, body
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        self.kind = body.get("kind") if isinstance(body.get("kind"), str) else "?"
        self.name = meta.get("name") if isinstance(meta.get("name"), str) else None

    @property
    def where(self) -> str:
        what = f"{self.kind} {self.name!r}" if self.name else self.kind
        return f"{self.source}: document {self.index} ({what})"

    def fail(self, path: str, message: str) -> ManifestError:
        return ManifestError(f"{self.where}: {path}: {message}")

    def get(self, obj: Any, key: str, path: str, typ: type | tuple, default: Any = _MISSING) -> Any:
        """obj[key] checked against typ; `path` is the field path of `obj[key]` for messages."""
        if not isinstance(obj, dict):
            raise self.fail(path.rsplit(".", 1)[0] or path, "expected a mapping")
        if key not in obj or obj[key] is None:
            if default is _MISSING:
                raise self.fail(path, "Required value")
            return default
        val = obj[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if isinstance(val, bool) and bool not in types:
            raise self.fail(path, f"expected {_expect(types)}, got {val!r}")
        if not isinstance(val, types):
            raise self.fail(path, f"expected {_expect(types)}, got {type(val).__name__} {_short(val)}")
        return val

    def check(self, value: Any, path: str, validator: Callable[[Any], Optional[str]]) -> Any:
        err = validator(value)
        if err:
            raise self.fail(path, f"Invalid value: {value!r}: {err}")
        return value

    def str_map(self, obj: Any, key: str, path: str) -> dict[str, str]:
        """A label map (labels, selectors, nodeSelector): keys are qualified names, values label values.
        Unquoted YAML numbers and booleans are taken as their text."""
        from netsim.control import validation
        m = self.get(obj, key, path, dict, {})
        out = {}
        for k, v in m.items():
            if not isinstance(k, str):
                raise self.fail(f"{path}.{k}", f"expected a string key, got {type(k).__name__} {_short(k)}")
            if isinstance(v, (dict, list)) or v is None:
                raise self.fail(f"{path}.{k}", f"expected a string value, got {_short(v)}")
            self.check(k, f"{path}.{k}", validation.qualified_name)
            val = str(v).lower() if isinstance(v, bool) else str(v)
            self.check(val, f"{path}.{k}", validation.label_value)
            out[k] = val
        return out


def _expect(types: tuple) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."
