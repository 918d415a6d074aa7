"""No proxy-mode string comparisons or hard-coded mode lists outside the providers and the registry
(DESIGN.md "Proxy modes are providers"): every other module asks netsim.rules.registry.

The scan reads the syntax tree of every module of the netsim package's folders except rules/<mode>/
(a provider's own package) and the registry itself, and reports, with file and line:
a comparison with a mode name (``mode == "ipvs"``, ``m in ("iptables", "ipvs")``), a dict keyed by a
mode name (a dispatch table: two or more mode keys, or a tuple key with one), a ``match`` case on one, and a tuple/list/set naming two or more modes
(a mode list). Mode names as data (tool names, record labels, documentation) are not comparisons.
"""
from __future__ import annotations

import ast
from pathlib import Path

from netsim.rules import registry

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("netsim", "rules", "cli", "benchmarks", "dns")
MODES = frozenset({*registry.KUBE_PROXY_MODES, *registry.BUILTIN})


def _allowed(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    if rel[0] != "rules":
        return False
    if len(rel) >= 3 and rel[1] in MODES:              # rules/<mode>/...: a provider's package
        return True
    return rel[1] in ("registry.py", "provider.py") or rel[1].removesuffix(".py") in MODES


def _mode(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in MODES


def _modes_in(node: ast.AST) -> set[str]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if _mode(e)}
    return {node.value} if _mode(node) else set()


def mode_comparisons(source: str, filename: str = "<src>") -> list[str]:
    """Where ``source`` compares, dispatches on or lists proxy-mode names: "file:line: what"."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        what = ""
        if isinstance(node, ast.Compare):
            if any(_modes_in(x) for x in (node.left, *node.comparators)):
                what = "compares a proxy mode name"
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
            # a dispatch table: two or more modes as keys, or a (kind, mode) tuple key
            if sum(1 for k in keys if _mode(k)) >= 2 or any(isinstance(k, ast.Tuple) and _modes_in(k) for k in keys):
                what = "a table keyed by proxy mode name"
        elif isinstance(node, ast.MatchValue):
            if _mode(node.value):
                what = "matches on a proxy mode name"
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            if len(_modes_in(node)) >= 2:
                what = "a hard-coded list of proxy modes"
        if what:
            found.append(f"{filename}:{node.lineno}: {what}: {ast.get_source_segment(source, node)}")
    return sorted(set(found))


def test_no_proxy_mode_string_comparisons_outside_providers_and_registry() -> None:
    found: list[str] = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if not _allowed(path):
                found += mode_comparisons(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "ask netsim.rules.registry instead:\n" + "\n".join(found)


def test_the_scan_finds_a_planted_comparison() -> None:
    planted = ('def f(cluster, mode):\n'
               '    if cluster.config.proxy_mode == "ipvs":\n'
               '        return 1\n'
               '    if mode not in ("iptables", "nftables"):\n'
               '        return 2\n'
               '    table = {"iptables": 3, "ipvs": 4}\n'
               '    match mode:\n'
               '        case "nftables":\n'
               '            return 4\n'
               '    return [m for m in ["iptables", "ipvs"]]\n')
    got = mode_comparisons(planted, "planted.py")
    assert [g.split(": ", 2)[:2] for g in got] == [
        ["planted.py:10", "a hard-coded list of proxy modes"],
        ["planted.py:2", "compares a proxy mode name"],
        ["planted.py:4", "a hard-coded list of proxy modes"],
        ["planted.py:4", "compares a proxy mode name"],
        ["planted.py:6", "a table keyed by proxy mode name"],
        ["planted.py:8", "matches on a proxy mode name"],
    ]
    # mode names as data are not comparisons: a tool's name, a record's label, a default
    assert mode_comparisons('x = run(["iptables", "--version"])\nrecord(mode="ipvs")\ndef f(m="iptables"): pass\n'
                            'env = {"iptables": "v1.8.9", "kernel": "6.1"}\n') == []


def test_the_scan_fails_on_a_planted_file(tmp_path, monkeypatch) -> None:
    """The tree test itself fails when a module outside the providers compares a mode."""
    import tests.test_no_mode_strings as me
    (tmp_path / "netsim").mkdir()
    (tmp_path / "netsim" / "planted.py").write_text('def f(mode):\n    return mode != "iptables"\n')
    (tmp_path / "rules" / "ipvs").mkdir(parents=True)
    (tmp_path / "rules" / "ipvs" / "provider.py").write_text('OK = "ipvs" == "ipvs"\n')
    monkeypatch.setattr(me, "ROOT", tmp_path)
    try:
        me.test_no_proxy_mode_string_comparisons_outside_providers_and_registry()
    except AssertionError as e:
        assert "netsim/planted.py:2: compares a proxy mode name" in str(e) and "rules/ipvs" not in str(e)
    else:
        raise AssertionError("the scan passed a tree with a planted mode comparison")
