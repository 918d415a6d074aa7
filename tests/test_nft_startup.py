"""kube-proxy restarted over the table its previous instance left: TestSyncProxyRulesStartup.

pkg/proxy/nftables/proxier_test.go (kubernetes/kubernetes@81810de6, the 1.34 ruleset we pin): the fake
nftables is loaded with part of the desired state (knftables Fake.ParseDump), then a fresh proxier's
first sync must leave the expected table and take the initial setup's operations plus 14: the two
missing elements for svc3, the two service chains rewritten (add, flush, 2 rules each), the new
endpoint chain of svc1 (add, flush, 2 rules); the elements and endpoint chains already present are
not sent again (PR #130119, "Optimize kube-proxy restart time").
"""
from __future__ import annotations

import pytest

from netsim.rules.iptables.proxier_inputs import EndpointInfo, ServicePortInfo
from netsim.rules.iptables.proxier_sync import endpoints_key
from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier
from netsim.rules.nftables.transaction import TableState, TransactionError, parse_dump
from nft_golden_helpers import golden, sort_nftables_transaction


def startup_golden() -> tuple[str, str, str]:
    """(baseRules, the table the test loads, the table it expects), from the recorded test text."""
    base = golden("overall.nft").split("# svc1")[0]
    text = golden("startup.nft")
    existing = text.split("## existing\n", 1)[1].split("## expected\n", 1)[0]
    expected = text.split("## expected\n", 1)[1]
    return base, existing, expected


def inputs() -> tuple[list[ServicePortInfo], dict[str, list[EndpointInfo]]]:
    svc1 = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80")
    svc2 = ServicePortInfo("ns2", "svc2", "172.30.0.42", 8080, port_name="p8080")
    svc3 = ServicePortInfo("ns3", "svc3", "172.30.0.43", 80, port_name="p80")
    eps = {endpoints_key(svc1): [EndpointInfo("10.0.1.1", 80), EndpointInfo("10.0.1.2", 80)],
           endpoints_key(svc2): [EndpointInfo("10.0.2.1", 8080)]}
    return [svc1, svc2, svc3], eps


def loadable(text: str) -> str:
    """baseRules in the order a batch accepts (the test text lists its rules before its elements' chains)."""
    from test_nft_parse import dump_order
    return dump_order(text)


def test_sync_proxy_rules_startup_equals_upstream() -> None:
    base, existing, expected = startup_golden()
    setup_ops = len(NFTablesProxier(NFTablesConfig.upstream_test_fake()).sync([], {}))

    state = TableState()
    state.apply(parse_dump(loadable(base + existing)))
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake(), state=state)
    ports, eps = inputs()
    tx = fp.sync(ports, eps)
    assert sort_nftables_transaction(fp.state.dump()) == sort_nftables_transaction(base + expected)
    assert len(tx) == setup_ops + 14, tx.text()
    # what it did not resend: the elements and the endpoint chain that were already there
    assert "add element ip kube-proxy cluster-ips { 172.30.0.41 }" not in tx.lines()
    kept = "ip kube-proxy endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80"
    assert not [line for line in tx.lines() if line.startswith((f"add chain {kept}", f"flush chain {kept}",
                                                                 f"add rule {kept} "))]


def test_a_restart_over_an_empty_table_is_the_ordinary_first_sync() -> None:
    ports, eps = inputs()
    fresh = NFTablesProxier(NFTablesConfig.upstream_test_fake())
    fresh.sync(ports, eps)
    state = TableState()
    state.apply(parse_dump(fresh.state.dump()))
    again = NFTablesProxier(NFTablesConfig.upstream_test_fake(), state=state)
    tx = again.sync(ports, eps)
    assert again.state.dump() == fresh.state.dump()
    # every Service element was there (nodeport-ips is flushed and refilled by every full sync's setup)
    assert not [line for line in tx.lines() if line.startswith("add element") and "nodeport-ips" not in line]


def test_a_later_full_sync_keeps_elements_but_rewrites_changed_services() -> None:
    """readOrReset on every full sync: a stale element left in the table is deleted, none is re-added."""
    ports, eps = inputs()
    fp = NFTablesProxier(NFTablesConfig.upstream_test_fake())
    fp.sync(ports, eps)
    fp.need_full_sync = True
    tx = fp.sync(ports[:2], eps)
    lines = tx.lines()
    assert "delete element ip kube-proxy cluster-ips { 172.30.0.43 }" in lines
    assert not [line for line in lines
                if line.startswith(("flush set", "flush map", "add element")) and "nodeport-ips" not in line]


def test_parse_dump_refuses_a_line_it_does_not_know() -> None:
    with pytest.raises(TransactionError, match=r"line 2: 'insert rule ip kube-proxy services drop'"):
        parse_dump("add table ip kube-proxy\ninsert rule ip kube-proxy services drop\n")
