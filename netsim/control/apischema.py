"""The Kubernetes API's field names for the kinds netsim loads, and the unknown-field check that
kubectl's default server-side field validation (`kubectl apply --validate=strict`, KEP-2885) makes.

The names come from the API's own OpenAPI schema, trimmed to the types these kinds reach by
scripts/k8s_schema.py into schema/k8s-fields.json (the file records its source and version); a
field the API server would refuse with `strict decoding error: unknown field "spec.replcas"` is
found here with the same path.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Optional

VALIDATE_MODES = ("strict", "warn", "ignore")
# kubectl --validate also takes the legacy booleans: true = strict, false = ignore
VALIDATE_ALIASES = {"true": "strict", "false": "ignore"}


@dataclass(frozen=True)
class UnknownField:
    path: str                      # e.g. spec.template.spec.containers[0].imagePullPolcy
    closest: Optional[str]         # the nearest known field name at that level, if any is near

    def describe(self) -> str:
        hint = f' (did you mean "{self.closest}"?)' if self.closest else ""
        return f'unknown field "{self.path}"{hint}'


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The trimmed schema file (read once per process; it is never modified)."""
    text = resources.files("netsim").joinpath("schema").joinpath("k8s-fields.json").read_text()
    return json.loads(text)


def kubernetes_version() -> str:
    return schema()["kubernetesVersion"]


def known_kind(api_version: str, kind: str) -> bool:
    return f"{api_version}/{kind}" in schema()["kinds"]


def unknown_fields(api_version: str, kind: str, body: dict) -> list[UnknownField]:
    """Every field of `body` that the kind's schema does not have, in document order."""
    root = schema()["kinds"].get(f"{api_version}/{kind}")
    if root is None:
        return []
    out: list[UnknownField] = []
    _walk(schema()["types"], root, body, "", out)
    return out


def _walk(types: dict, type_name: str, obj: Any, prefix: str, out: list[UnknownField]) -> None:
    if not isinstance(obj, dict):
        return                           # a type error: the loader reports it with the field path
    fields = types[type_name]
    for key, val in obj.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            out.append(UnknownField(path, near[0] if near else None))
            continue
        spec = fields[key]
        if spec is None:
            continue
        if isinstance(spec, list):
            if isinstance(val, list):
                for i, item in enumerate(val):
                    _walk(types, spec[0], item, f"{path}[{i}]", out)
        else:
            _walk(types, spec, val, path, out)


def normalize_mode(value: str) -> str:
    """`--validate` value → strict | warn | ignore; ValueError naming the accepted values."""
    v = VALIDATE_ALIASES.get(value.lower(), value.lower())
    if v not in VALIDATE_MODES:
        raise ValueError(f'--validate: invalid value {value!r}: expected "strict", "warn" or "ignore" '
                         '(or "true" / "false")')
    return v
