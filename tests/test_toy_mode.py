"""A fourth proxy mode written here, outside netsim, plugs in through the registry alone: a
provider whose hook drops every packet. It shows up in `netsim trace --mode` and the trace ends
DROPPED at its hook, with no change to netsim (netsim.rules.registry.registered)."""
from __future__ import annotations

from typing import Any, Optional

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.skb.hook_result import HookResult, RuleHit
from netsim.rules import registry
from netsim.rules.provider import ProxyProvider, SyncResult
from netsim.skb.netfilter import HOOKS, NF_IP_PRI_FILTER, HookRegistration, NodeHooks


class DropEverything:
    """Every built-in chain of every table: one rule, ``-j DROP``."""

    def has_rules(self, table: str, chain: str) -> bool:
        return True

    def run(self, table: str, chain: str, pkt: Any, now: float, steps: Optional[list] = None) -> HookResult:
        hit = RuleHit(table, chain, 1, f"-A {chain} -m comment --comment \"drop-all\" -j DROP", "DROP")
        if steps is not None:
            steps.append(hit.step)
        return HookResult("DROP", None, [hit], 1)


class DropAllDataplane:
    ipvs = None

    def netfilter(self, node: str, local_addrs: set[int], rng: Any) -> DropEverything:
        return DropEverything()

    def hooks(self, node: str, local_addrs: set[int], rng: Any) -> NodeHooks:
        """One function at every hook, at the filter table's priority: DROP."""
        rules = DropEverything()
        return NodeHooks(tuple(HookRegistration(hook, NF_IP_PRI_FILTER, "drop-all",
                                                lambda pkt, now, steps, hook=hook: rules.run("drop-all", hook, pkt, now, steps))
                               for hook in HOOKS))

    def resync(self, local_addrs: Any, rules_changed: bool) -> None:
        pass

    def advance(self, now: float) -> None:
        pass

    def fork(self, rng: Any, memo: dict) -> "DropAllDataplane":
        return self

    def rebind(self, cluster: Any) -> None:
        pass


class DropAll:
    name = "drop-all"
    kube_proxy = True
    walks_packets = True
    notice = ""
    iptables_only = False
    tool = "drop-all"
    trace_actions = ("RULE",)
    metric_families: tuple = ()

    def proxier(self, cluster: Any, node: str, *, partial_syncs: bool = True) -> Any:
        raise NotImplementedError

    def render(self, cluster: Any, node: str, *, restore_input: bool = False,
               tables: Optional[tuple[str, ...]] = None, release: Optional[str] = None) -> str:
        return f"# drop-all on {node}\n"

    def dataplane(self, cluster: Any) -> DropAllDataplane:
        return DropAllDataplane()

    def kernel_support(self) -> Optional[str]:
        return "drop-all is a test mode"

    def measure_sync(self, ports: list, endpoints: dict, config: Any, changed_endpoints: dict,
                     changed_service: str, repeats: int) -> Any:
        raise NotImplementedError("drop-all has no proxier to time")

    def program_kernel(self, netns: str, cluster: Any, node: str, result: SyncResult) -> None:
        raise NotImplementedError


def test_the_toy_provider_satisfies_the_protocol() -> None:
    assert isinstance(DropAll(), ProxyProvider)
    for mode in registry.available_modes():
        assert isinstance(registry.get(mode), ProxyProvider), mode


def test_a_fourth_mode_plugs_in_through_the_registry_and_drops_at_its_hook() -> None:
    runner = CliRunner()
    assert "drop-all" not in runner.invoke(cli, ["trace", "--help"]).output
    refused = runner.invoke(cli, ["trace", "-f", "example:httpd-app", "--mode", "drop-all",
                                  "--from", "node/node-1", "--to", "10.96.0.10:53", "--proto", "udp"])
    assert refused.exit_code == 2 and "'drop-all' is not one of" in refused.output
    with registry.registered(DropAll()):
        assert registry.available_modes()[-1] == "drop-all"
        assert "drop-all" in runner.invoke(cli, ["trace", "--help"]).output
        got = runner.invoke(cli, ["trace", "-f", "example:httpd-app", "--mode", "drop-all",
                                  "--from", "node/node-1", "--to", "10.96.0.10:53", "--proto", "udp",
                                  "-o", "json"])
        assert got.exit_code == 1, got.output
        import json
        t = json.loads(got.output)
        assert t["mode"] == "drop-all"
        assert t["outcome"]["disposition"] == "DROPPED" and t["outcome"]["host"] == "node-1"
        last = t["packets"][-1]["hops"][-1]["steps"]
        assert last[-2]["action"] == "RULE" and last[-2]["rule"].endswith("-j DROP")
        assert last[-1]["action"] == "DROPPED"
        text = runner.invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", "--mode", "drop-all"])
        assert text.exit_code == 0 and text.output == "# drop-all on node-1\n"
    assert "drop-all" not in registry.available_modes()      # the block's registration is gone


def test_unknown_and_unemulated_modes_are_one_line_errors() -> None:
    with pytest.raises(registry.ProxyModeError) as e:
        registry.get("userspace")
    assert str(e.value) == f"proxy mode: expected one of {', '.join(registry.available_modes())}, got 'userspace'"
    for mode in registry.KUBE_PROXY_MODES:        # kube-proxy's modes no provider emulates yet
        if mode in registry.available_modes():
            continue
        with pytest.raises(registry.ProxyModeError) as e:
            registry.get(mode)
        assert str(e.value).startswith(f"proxy mode {mode}: not emulated yet") and "\n" not in str(e.value)
