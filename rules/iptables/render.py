"""Render a Ruleset as iptables-save (nf_tables backend, v1.8.9) prints it.

Observed with iptables-save v1.8.9 (nf_tables) in a scratch netns (iptables/nft-shared.c
save_rule / libxtables' per-match ->save callbacks): header fields are hoisted first in the order
-s -d -i -o -p (addresses always with a prefix length), then each match with its options in
the module's own order, then the target; built-in chains first, then user chains sorted by
name; tables in the order raw, mangle, filter, nat, security. Rules that lenient parsing kept
as unsupported are printed as they were written.
"""
from __future__ import annotations

from netsim.rules.iptables.ruleset import BUILTIN_CHAINS, TABLE_ORDER, Rule, Ruleset
from netsim.rules.iptables.values import render_cidr, render_proto


def render_rule(rule: Rule) -> str:
    if rule.unsupported is not None:
        return rule.text
    h = rule.header
    parts = [f"-A {rule.chain}"]
    for flag, f in (("-s", h.src), ("-d", h.dst)):
        if f is not None:
            parts.append(f"{'! ' if f[2] else ''}{flag} {render_cidr(f[0], f[1])}")
    for flag, f in (("-i", h.iif), ("-o", h.oif)):
        if f is not None:
            parts.append(f"{'! ' if f[1] else ''}{flag} {f[0]}")
    if h.proto is not None:
        parts.append(f"{'! ' if h.proto[1] else ''}-p {render_proto(h.proto[0])}")
    if h.fragment is not None:
        parts.append("-f" if h.fragment else "! -f")
    parts.extend(m.text for m in rule.matches)
    if rule.target_spec is not None:
        parts.append(rule.target_spec.text)
    return " ".join(parts)


def chain_order(table: str, names) -> list[str]:
    builtins = [c for c in BUILTIN_CHAINS[table] if c in names]
    return builtins + sorted(n for n in names if n not in BUILTIN_CHAINS[table])


def render_ruleset(rs: Ruleset, counters: bool = False) -> str:
    out: list[str] = []
    names = [t for t in TABLE_ORDER if t in rs.tables] + [t for t in rs.tables if t not in TABLE_ORDER]
    for tname in names:
        t = rs.tables[tname]
        order = chain_order(tname, t.chains)
        out.append(f"*{tname}")
        for cname in order:
            c = t.chains[cname]
            pk, by = c.counters if (counters and c.counters) else (0, 0)
            out.append(f":{cname} {c.policy or '-'} [{pk}:{by}]")
        for cname in order:
            for r in t.chains[cname].rules:
                line = render_rule(r)
                if counters:
                    pk, by = r.counters or (0, 0)
                    line = f"[{pk}:{by}] {line}"
                out.append(line)
        out.append("COMMIT")
    return "".join(line + "\n" for line in out)
