"""A guard over the whole suite: every rule set any test renders is loaded into the real kernel once.

`RuleSetCollector.install()` wraps the places where rule text is produced — kube-proxy's restore input
(`RestoreData.text`), the node's iptables-save view (`proxier.node_view_text`), the IPVS proxier's
sync (`KubeProxyIpvs.apply`: its `ipset save` text and iptables rules) and the nftables proxier's
sync (`NFTablesProxier.sync`: the node's whole `ip kube-proxy` table after it, as `nft -f` input) —
and keeps each distinct text once (by hash) with the test that first rendered it. The last test of the session
(tests/test_zz_rendered_rule_sets.py) loads them all in one scratch namespace, batched
(tests/kernel_oracle.py), so the whole guard costs a few restore processes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from kernel_oracle import RuleSet

MAX_TEXT = 2_000_000          # bigger texts (the 10k-Service benchmarks) are counted, not loaded
NODE_VIEW = "node iptables-save view"   # what `netsim rules` prints after iptables_save(); compared too


@dataclass
class RuleSetCollector:
    current_test: str = "(collection)"
    sets: dict[str, RuleSet] = field(default_factory=dict)
    skipped_large: int = 0
    skipped_partial: int = 0
    rendered: int = 0
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def add(self, kind: str, what: str, text: str) -> None:
        self.rendered += 1
        if not text.strip():
            return
        if len(text) > MAX_TEXT:
            self.skipped_large += 1
            return
        rs = RuleSet(f"{what} first rendered by {self.current_test}", kind, text)
        self.sets.setdefault(rs.digest, rs)

    def _wrap(self, owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
        orig = getattr(owner, name)
        setattr(owner, name, functools.wraps(orig)(make(orig)))
        self._undo.append(lambda: setattr(owner, name, orig))

    def install(self) -> None:
        from netsim.rules.iptables import proxier
        from netsim.rules.iptables.proxier_sync import RestoreData
        from netsim.rules.ipvs.proxier import KubeProxyIpvs
        from netsim.rules.nftables.proxier_sync import NFTablesProxier

        def sync(orig):
            def sync_proxy_rules(*a, **kw):
                data = orig(*a, **kw)
                if not kw.get("full_sync", True):
                    # a partial sync rewrites only the changed Services' chains and jumps to the others
                    # left by the previous sync (iptables-restore --noflush): not loadable on its own
                    data._netsim_partial_sync = True
                return data
            return sync_proxy_rules

        def restore_text(orig):
            def text(data, *a, **kw):
                out = orig(data, *a, **kw)
                if getattr(data, "_netsim_partial_sync", False):
                    self.skipped_partial += 1
                else:
                    self.add("iptables", "kube-proxy restore input", out)
                return out
            return text

        def node_view(orig):
            def view(*a, **kw):
                out = orig(*a, **kw)
                self.add("iptables", NODE_VIEW, out)
                return out
            return view

        def ipvs_apply(orig):
            def apply(kp, *a, **kw):
                state = orig(kp, *a, **kw)
                self.add("ipset", "IPVS mode ipset save", state.ipset_save())
                self.add("iptables", "IPVS mode iptables rules", state.iptables)
                return state
            return apply

        def nft_sync(orig):
            def sync(fp, *a, **kw):
                tx = orig(fp, *a, **kw)
                self.add("nftables", "nftables mode ip kube-proxy table", fp.state.dump())
                return tx
            return sync

        from netsim.rules.iptables import proxier_sync
        self._wrap(proxier_sync, "sync_proxy_rules", sync)
        self._wrap(proxier, "sync_proxy_rules", sync)
        self._wrap(RestoreData, "text", restore_text)
        self._wrap(proxier, "node_view_text", node_view)
        self._wrap(KubeProxyIpvs, "apply", ipvs_apply)
        self._wrap(NFTablesProxier, "sync", nft_sync)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
