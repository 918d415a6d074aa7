"""iptables: parse any iptables-save dump, compile it, and evaluate packets through it.

Public API (kept stable for the walker, the proxier tests and the CLI):
    parse(text, *, source="<dump>", lenient=False) -> Ruleset
    Ruleset.tables[name].chains[name].policy / .rules (Rule: .line .text .comment .target)
    Ruleset.render() -> str
    Engine(ruleset).run(table, chain, pkt, ctx) -> Verdict   (chains compile on a packet's first entry;
    Engine.compile_all() compiles every chain now; Engine.has_rules(table, chain) does not compile)
    EvalContext(local_addrs, ipsets, rng, now, recent)
"""
from netsim.rules.iptables.compile import RuleInfo
from netsim.rules.iptables.engine import HOOK_TABLES, Engine, EvalContext, RuleHit, Verdict, run_hook
from netsim.rules.iptables.parse import parse
from netsim.rules.iptables.recent import RecentState
from netsim.rules.iptables.ruleset import Chain, IptablesError, Rule, Ruleset, Table
from netsim.rules.iptables.targets import NatAction

__all__ = [
    "parse", "Ruleset", "Table", "Chain", "Rule", "Engine", "EvalContext", "Verdict", "RuleHit", "RuleInfo",
    "NatAction", "RecentState", "IptablesError", "run_hook", "HOOK_TABLES",
]
