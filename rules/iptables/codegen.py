"""Generate one Python function per chain that returns the position of the first rule a packet matches.

Why: a walk through a cold KUBE-SVC/KUBE-SEP chain of a 10,000-Service ruleset used to touch
dozens of scattered closure objects per rule; one generated function keeps the tests in one
function (shared by every chain of the same shape, so it stays in the CPU cache) and the
chain's constants in one tuple passed as `k`. The generated tests are the Match.expr / header expressions, evaluated left to
right with short-circuit `and` exactly like the kernel; a test with no expression calls the
match's compiled predicate. tests/test_iptables_engine.py checks the generated scanners
against the closure-based walk on random rulesets.

    scan(p, c, pos, k) -> first i >= pos whose rule matches (or is unsupported), else len(rules)
    (k: the chain's rules, then its constants)
"""
from __future__ import annotations

from types import CodeType, FunctionType
from typing import Any, Callable


class ScannerFactory:
    """Builds scanners, compiling each distinct chain shape (source text) only once."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[[Any, Any, int, tuple], int]] = {}

    def scanner(self, rule_exprs: list[list[tuple[str, tuple]] | None]) -> tuple[Callable[[Any, Any, int, tuple], int], tuple]:
        """`rule_exprs[i]` is rule i's tests as (format, constants) pairs; None marks an unsupported rule.
        Returns the (shared) scanner and the chain's constants; the caller passes as `k` a tuple
        holding the chain's len(rule_exprs) rules followed by these constants (read as k[n + j])."""
        consts: list[Any] = []
        lines: list[str] = []
        for i, exprs in enumerate(rule_exprs):
            if exprs is None:
                lines.append(f"    if pos <= {i}: return {i}")
                continue
            conds = []
            for fmt, vals in exprs:
                names = [f"k[{len(rule_exprs) + len(consts) + j}]" for j in range(len(vals))]
                consts.extend(vals)
                conds.append(fmt.format(*names))
            cond = " and ".join(f"({x})" for x in conds) if conds else "True"
            lines.append(f"    if pos <= {i} and {cond}: return {i}")
        src = "def scan(p, c, pos, k):\n" + "".join(line + "\n" for line in lines) + \
            f"    return {len(rule_exprs)}\n"
        fn = self._functions.get(src)
        if fn is None:
            module = compile(src, "<iptables chain scanner>", "exec")
            code = next(co for co in module.co_consts if isinstance(co, CodeType))
            fn = self._functions[src] = FunctionType(code, {"__builtins__": {}}, "scan")
        return fn, tuple(consts)
