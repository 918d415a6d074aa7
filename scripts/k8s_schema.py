#!/usr/bin/env python3
"""Generate netsim/schema/k8s-fields.json: the field names of the Kubernetes kinds netsim loads,
trimmed from the Kubernetes API's own OpenAPI schema (for `--validate=strict`, as kubectl's
server-side field validation refuses unknown fields).

Input: one or more JSON files holding the API's schema definitions, in either form
  * OpenAPI v3 documents, `components.schemas` (kubernetes/kubernetes api/openapi-spec/v3/
    api__v1_openapi.json, apis__apps__v1_openapi.json, apis__discovery.k8s.io__v1_openapi.json), or
  * the `$defs` / `definitions` of a JSON-schema conversion of the same spec (e.g. the
    `_definitions.json` that the kubernetes-validate package ships per Kubernetes version,
    generated from kubernetes/kubernetes api/openapi-spec by openapi2jsonschema).
Refs are followed by type name (`#/components/schemas/X`, `#/$defs/X`), descriptions dropped.

Output: {"kubernetesVersion", "source", "kinds": {"apps/v1/Deployment": TYPE, ...},
         "types": {TYPE: {field: null | TYPE | [TYPE]}}}
  null: a scalar or a free-form map (labels, resources.limits); TYPE: an object of that type;
  [TYPE]: a list of such objects.

Usage:
  python scripts/k8s_schema.py --version v1.33.0 --source "kubernetes/kubernetes@v1.33.0 api/openapi-spec/v3" \
      api__v1_openapi.json apis__apps__v1_openapi.json apis__discovery.k8s.io__v1_openapi.json \
      > netsim/schema/k8s-fields.json
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

# the kinds netsim loads (netsim.control.manifests.KINDS) and the schema type of each
KINDS = {
    "v1/Namespace": "io.k8s.api.core.v1.Namespace",
    "v1/Pod": "io.k8s.api.core.v1.Pod",
    "v1/Service": "io.k8s.api.core.v1.Service",
    "apps/v1/Deployment": "io.k8s.api.apps.v1.Deployment",
    "apps/v1/ReplicaSet": "io.k8s.api.apps.v1.ReplicaSet",
    "apps/v1/StatefulSet": "io.k8s.api.apps.v1.StatefulSet",
    "apps/v1/DaemonSet": "io.k8s.api.apps.v1.DaemonSet",
    "discovery.k8s.io/v1/EndpointSlice": "io.k8s.api.discovery.v1.EndpointSlice",
}


def definitions(doc: dict) -> dict[str, Any]:
    for path in (("components", "schemas"), ("$defs",), ("definitions",)):
        node: Any = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    raise SystemExit("no components.schemas, $defs or definitions in an input file")


def ref_of(schema: dict) -> Optional[str]:
    """The type a property refers to: `$ref` directly or through a one-element allOf."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("allOf", "oneOf", "anyOf"):
        subs = schema.get(key)
        if isinstance(subs, list) and len(subs) == 1 and isinstance(subs[0], dict) and "$ref" in subs[0]:
            return subs[0]["$ref"].rsplit("/", 1)[-1]
    return None


def is_object_type(defs: dict, name: str) -> bool:
    """A type whose fields can be checked (not IntOrString, Quantity, Time, RawExtension, ...)."""
    d = defs.get(name, {})
    return isinstance(d.get("properties"), dict) and bool(d["properties"])


def field_spec(defs: dict, prop: dict) -> Any:
    ref = ref_of(prop)
    if ref:
        return ref if is_object_type(defs, ref) else None
    items = prop.get("items")
    if isinstance(items, dict):
        ref = ref_of(items)
        if ref and is_object_type(defs, ref):
            return [ref]
    return None


def trim(defs: dict, roots: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        if name not in defs:
            raise SystemExit(f"type {name} is not in the input definitions")
        fields = {}
        for fname, prop in sorted(defs[name].get("properties", {}).items()):
            spec = field_spec(defs, prop)
            fields[fname] = spec
            child = spec[0] if isinstance(spec, list) else spec
            if child and child not in out:
                todo.append(child)
        out[name] = fields
    return dict(sorted(out.items()))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", required=True, help="Kubernetes version of the input, e.g. v1.33.0")
    ap.add_argument("--source", required=True, help="where the input came from (recorded in the output)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    defs: dict[str, Any] = {}
    for f in args.files:
        with open(f, encoding="utf-8") as fh:
            defs.update(definitions(json.load(fh)))
    out = {"kubernetesVersion": args.version, "source": args.source,
           "generatedBy": "scripts/k8s_schema.py", "kinds": KINDS, "types": trim(defs, list(KINDS.values()))}
    json.dump(out, sys.stdout, indent=0, sort_keys=False, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
