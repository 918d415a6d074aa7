"""Each proxy mode's trace steps come from its provider's vocabulary (``trace_actions``): a step
action that only a mode's hooks produce (IPVS's ``IPVS``, the rule engines' ``RULE``) appears in a
trace only when the traced mode declares it; everything else is the data plane's own vocabulary."""
from __future__ import annotations

import netsim
from netsim.cli.demo_cmd import demo_scenarios
from netsim.rules import registry


def _actions(mode: str) -> set[str]:
    seen: set[str] = set()
    for example in ("httpd-app", "shop"):
        em = netsim.load(f"example:{example}", mode=mode)
        targets = [(c, t) for c, t, _ in demo_scenarios(em.cluster, example)]
        targets.append(("node/node-1", "10.96.0.10:53"))
        for client, to in targets:
            for t in em.traces(client, to, 2, proto="udp" if to.endswith(":53") else None):
                seen |= {s.action for s in t.steps()}
    return seen


def test_mode_specific_steps_come_only_from_the_mode_that_declares_them() -> None:
    modes = registry.available_modes(walks_packets=True)
    seen = {m: _actions(m) for m in modes}
    declared = {m: set(registry.get(m).trace_actions) for m in modes}
    mode_words = set().union(*declared.values())
    assert {"RULE", "IPVS"} <= mode_words
    for m in modes:
        assert seen[m] & mode_words <= declared[m], (m, sorted(seen[m] & mode_words - declared[m]))
    # and the words are really used: each declared action shows up in its mode's traces
    for m in modes:
        assert declared[m] <= seen[m], (m, sorted(declared[m] - seen[m]))
    # the data plane's own words are shared by every mode
    common = set.intersection(*(seen[m] - mode_words for m in modes))
    assert {"ORIGINATED", "ROUTED", "TRANSMITTED", "RECEIVED"} <= common
