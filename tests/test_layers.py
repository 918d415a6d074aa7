"""DESIGN.md's one-way arrows, checked on every module's imports (module level and inside functions):
cli -> benchmarks -> netsim (API) -> data plane -> rules, dns -> control-plane model; netsim.skb
(the packet, hook registrations, hook results, trace steps) is the leaf under all of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = {"rules": "netsim.rules", "dns": "netsim.dns", "cli": "netsim.cli",
                "benchmarks": "netsim.benchmarks", "netsim": "netsim"}

ABOVE_RULES_AND_DNS = ("netsim.dataplane", "netsim.api", "netsim.cli", "netsim.benchmarks", "netsim.reach",
                       "netsim.testing", "netsim.pytest_plugin", "netsim.check", "netsim.verdict")
# (layer prefix, modules it must not import, exceptions: (module, imported) pairs with their reason)
RULES = [
    ("netsim.rules", ABOVE_RULES_AND_DNS, set()),
    ("netsim.dns", ABOVE_RULES_AND_DNS + ("netsim.kernel",), set()),
    ("netsim.control", ABOVE_RULES_AND_DNS + ("netsim.kernel", "netsim.rules", "netsim.dns"),
     # the loader names the valid spec.proxyMode values; the registry is a table of names that
     # imports no provider
     {("netsim.control.manifests", "netsim.rules.registry")}),
    ("netsim.skb", ("netsim.",), set()),
]


def _modules():
    for folder, pkg in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([pkg, *parts])


def _imports(path: Path, module: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (the project writes absolute imports)"
            out.update(f"{node.module}.{a.name}" for a in node.names)   # `from a.b import c` -> a.b.c
    return out


def test_imports_point_one_way():
    bad = []
    for path, module in _modules():
        for layer, forbidden, allowed in RULES:
            if not (module == layer or module.startswith(layer + ".")):
                continue
            for imp in _imports(path, module):
                if not imp.startswith("netsim"):
                    continue
                if layer == "netsim.skb" and imp.startswith("netsim.skb"):
                    continue
                for f in forbidden:
                    if (imp == f or imp.startswith(f if f.endswith(".") else f + ".")) and \
                            not any(module == m and imp.startswith(i) for m, i in allowed):
                        bad.append(f"{path.relative_to(ROOT)}: {module} imports {imp}")
    assert not bad, "imports against DESIGN.md's arrows:\n" + "\n".join(sorted(set(bad)))


def test_the_scan_sees_imports_inside_functions(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text("def f():\n    from netsim.dataplane.walker import Walker\n")
    assert _imports(p, "netsim.rules.probe") == {"netsim.dataplane.walker.Walker"}
