"""Golden tests: our restore text equals kube-proxy's expected text, line for line.

Every expectation comes from kubernetes/kubernetes pkg/proxy/iptables/proxier_test.go
(about v1.32/v1.33; the version with nfacct counters). Each test builds exactly the inputs
of the upstream test (NewFakeProxier: node "test-node" / 192.168.0.2, pod CIDR 10.0.0.0/8,
mark "0x4000", no --random-fully, both nfacct counters present). As upstream's
assertIPTablesRulesEqual does, the *result* is normalised with sortIPTablesRules before
comparing; the expected text is compared as written.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from netsim.rules.iptables.proxier_inputs import (
    CT_STATE_INVALID_DROPPED_COUNTER,
    EndpointInfo,
    ProxierConfig,
    ServicePortInfo,
)
from netsim.rules.iptables.proxier_sync import endpoints_key, sync_proxy_rules

GOLDEN = Path(__file__).parent / "golden" / "iptables"


# --- our own port of upstream's test normalisation (sortIPTablesRules / IPTablesDump.String) ---

_CHAIN_RE = re.compile(r"^:([^ ]*) - \[([0-9]*):([0-9]*)\]$")
_WORD_RE = re.compile(r'(?:^|\s)("[^"]*"|[^"]\S*)')


def _comment(rule: str) -> str | None:
    words = [m.group(1).strip('"') for m in _WORD_RE.finditer(rule)]
    for i, w in enumerate(words[:-1]):
        if w == "--comment":
            return words[i + 1]
    return None


def _service_name(rule: str) -> str | None:
    c = _comment(rule)
    if c is None:
        return None
    return re.split(r"[ :]", c, maxsplit=1)[0]


def _stable_sort_by_service(rules: list[str], keep_last: bool = False) -> list[str]:
    # Go's sort.SliceStable with a "less" that is false whenever a comment is missing;
    # a stable insertion sort with the same comparator reproduces it.
    def less(a: str, b: str) -> bool:
        if keep_last:
            ca, cb = _comment(a), _comment(b)
            if ca is not None and "must be the last rule" in ca:
                return False
            if cb is not None and "must be the last rule" in cb:
                return True
        na, nb = _service_name(a), _service_name(b)
        if na is None or nb is None:
            return False
        return na < nb

    out: list[str] = []
    for r in rules:
        i = len(out)
        while i > 0 and less(r, out[i - 1]):
            i -= 1
        out.insert(i, r)
    return out


def parse_dump(text: str) -> list[dict]:
    tables: list[dict] = []
    table = None
    for raw in text.strip("\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = {"name": line[1:], "chains": {}, "order": [], "deleted": set()}
            tables.append(table)
        elif (m := _CHAIN_RE.match(line)):
            table["chains"][m.group(1)] = []
            table["order"].append(m.group(1))
        elif line.startswith("-A "):
            chain = line.split()[1]
            assert chain in table["chains"], f"rule for undeclared chain: {line}"
            table["chains"][chain].append(line)
        elif line.startswith("-X "):
            table["deleted"].add(line.split()[1])
        elif line == "COMMIT":
            table = None
        else:
            raise AssertionError(f"unparsable line {line!r}")
    return tables


def dump_string(tables: list[dict]) -> str:
    out: list[str] = []
    for t in tables:
        out.append(f"*{t['name']}")
        out += [f":{c} - [0:0]" for c in t["order"]]
        for c in t["order"]:
            out += t["chains"][c]
        out += [f"-X {c}" for c in t["order"] if c in t["deleted"]]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def sort_iptables_rules(text: str) -> str:
    tables = sorted(parse_dump(text), key=lambda t: t["name"])

    def chain_key(name: str) -> tuple:
        if name == "KUBE-NODEPORTS":
            return (0, name)
        if name == "KUBE-SERVICES":
            return (1, name)
        return (2 if name.startswith("KUBE-") else 3, name)

    for t in tables:
        t["order"].sort(key=chain_key)
        for chain in ("KUBE-NODEPORTS",):
            if chain in t["chains"]:
                t["chains"][chain] = _stable_sort_by_service(t["chains"][chain])
        if "KUBE-SERVICES" in t["chains"]:
            t["chains"]["KUBE-SERVICES"] = _stable_sort_by_service(
                t["chains"]["KUBE-SERVICES"], keep_last=(t["name"] == "nat"))
    return dump_string(tables)


def expected_text(name: str) -> str:
    return dump_string(parse_dump((GOLDEN / name).read_text()))


def chain_rules(text: str, table: str, chain: str) -> list[str]:
    for t in parse_dump(text):
        if t["name"] == table:
            return t["chains"].get(chain, [])
    raise AssertionError(f"no table {table}")


# --- inputs of the upstream tests ---

def ep(ip: str, port: int = 80, local: bool = False, **kw) -> EndpointInfo:
    return EndpointInfo(ip=ip, port=port, is_local=local, **kw)


def render(ports: list[ServicePortInfo], eps: dict[str, list[EndpointInfo]], **kw) -> str:
    config = kw.pop("config", None) or ProxierConfig.upstream_test_fake()
    return sync_proxy_rules(ports, eps, config, **kw).text()


def overall_inputs() -> tuple[list[ServicePortInfo], dict[str, list[EndpointInfo]]]:
    """TestOverallIPTablesRules: six services, one of each shape."""
    svc1 = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80")
    # LoadBalancer, eTP Local, externalIP, healthCheckNodePort 30000; its endpoint has no NodeName.
    svc2 = ServicePortInfo("ns2", "svc2", "172.30.0.42", 80, port_name="p80", node_port=3001,
                           load_balancer_vips=["1.2.3.4"], external_ips=["192.168.99.22"],
                           external_policy_local=True, health_check_node_port=30000)
    svc3 = ServicePortInfo("ns3", "svc3", "172.30.0.43", 80, port_name="p80", node_port=3003)
    # type NodePort without a nodePort, with an externalIP.
    svc4 = ServicePortInfo("ns4", "svc4", "172.30.0.44", 80, port_name="p80", external_ips=["192.168.99.33"])
    # LoadBalancer, eTP Cluster (so HealthCheckNodePort() is 0), source range with stray whitespace,
    # ClientIP affinity 10800 s.
    svc5 = ServicePortInfo("ns5", "svc5", "172.30.0.45", 80, port_name="p80", node_port=3002,
                           load_balancer_vips=["5.6.7.8"], load_balancer_source_ranges=[" 203.0.113.0/25"],
                           session_affinity_client_ip=True, sticky_max_age_seconds=10800)
    svc6 = ServicePortInfo("ns6", "svc6", "172.30.0.46", 80, port_name="p80")
    ports = [svc1, svc2, svc3, svc4, svc5, svc6]
    eps = {
        endpoints_key(svc1): [ep("10.180.0.1")],
        endpoints_key(svc2): [ep("10.180.0.2")],
        endpoints_key(svc3): [ep("10.180.0.3")],
        endpoints_key(svc4): [ep("10.180.0.4"), ep("10.180.0.5", local=True)],
        endpoints_key(svc5): [ep("10.180.0.3")],
    }
    return ports, eps


def test_overall_iptables_rules() -> None:
    ports, eps = overall_inputs()
    assert sort_iptables_rules(render(ports, eps)) == expected_text("overall.txt")


class TestSyncProxyRulesRepeated:
    """TestSyncProxyRulesRepeated: one full sync, then partial syncs, then a forced full resync."""

    svc1 = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80")
    svc2 = ServicePortInfo("ns2", "svc2", "172.30.0.42", 8080, port_name="p8080")
    svc3 = ServicePortInfo("ns3", "svc3", "172.30.0.43", 80, port_name="p80")
    svc4 = ServicePortInfo("ns4", "svc4", "172.30.0.44", 80, port_name="p80")

    def state(self, eps3: list[str], with_svc2: bool = False, svc4_eps: list[str] | None = None,
              with_svc4: bool = True):
        ports = [self.svc1, self.svc3]
        eps = {endpoints_key(self.svc1): [ep("10.0.1.1")],
               endpoints_key(self.svc3): [ep(ip) for ip in eps3]}
        if with_svc2:
            ports.append(self.svc2)
            eps[endpoints_key(self.svc2)] = [ep("10.0.2.1", 8080)]
        if with_svc4:
            ports.append(self.svc4)
            if svc4_eps:
                eps[endpoints_key(self.svc4)] = [ep(ip) for ip in svc4_eps]
        return ports, eps

    def test_1_initial_full_sync(self) -> None:
        ports = [self.svc1, self.svc2]
        eps = {endpoints_key(self.svc1): [ep("10.0.1.1")], endpoints_key(self.svc2): [ep("10.0.2.1", 8080)]}
        assert sort_iptables_rules(render(ports, eps, existing_nat_chains=[])) == expected_text(
            "repeated_1_initial.txt")

    def test_2_add_service(self) -> None:
        ports, eps = self.state(["10.0.3.1"], with_svc2=True, with_svc4=False)
        existing = ["KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SNQ3ZNILQDEJNDQO",
                    "KUBE-SVC-2VJB64SDSIJUP5T6", "KUBE-SEP-UHEGFW77JX3KXTOV"]
        text = render(ports, eps, full_sync=False, changed_services={"ns3/svc3"}, existing_nat_chains=existing)
        assert sort_iptables_rules(text) == expected_text("repeated_2_add_svc3.txt")

    def test_3_delete_service(self) -> None:
        ports, eps = self.state(["10.0.3.1"], with_svc4=False)
        existing = ["KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SVC-2VJB64SDSIJUP5T6",
                    "KUBE-SEP-UHEGFW77JX3KXTOV", "KUBE-SVC-X27LE4BHSL4DOUIK", "KUBE-SEP-BSWRHOQ77KEXZLNL"]
        text = render(ports, eps, full_sync=False, changed_services={"ns2/svc2"}, existing_nat_chains=existing)
        assert sort_iptables_rules(text) == expected_text("repeated_3_delete_svc2.txt")

    existing_after_3 = ["KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SNQ3ZNILQDEJNDQO",
                        "KUBE-SVC-X27LE4BHSL4DOUIK", "KUBE-SEP-BSWRHOQ77KEXZLNL"]

    def test_4_add_service_without_endpoints(self) -> None:
        ports, eps = self.state(["10.0.3.1"])
        text = render(ports, eps, full_sync=False, changed_services={"ns4/svc4"},
                      existing_nat_chains=self.existing_after_3)
        assert sort_iptables_rules(text) == expected_text("repeated_4_add_svc4_no_endpoints.txt")

    def test_5_endpoints_arrive(self) -> None:
        ports, eps = self.state(["10.0.3.1"], svc4_eps=["10.0.4.1"])
        text = render(ports, eps, full_sync=False, changed_services={"ns4/svc4"},
                      existing_nat_chains=self.existing_after_3)
        assert sort_iptables_rules(text) == expected_text("repeated_5_svc4_endpoints.txt")

    existing_after_5 = existing_after_3 + ["KUBE-SVC-4SW47YFZTEDKD3PK", "KUBE-SEP-AYCN5HPXMIRJNJXU"]

    def test_6_change_endpoint(self) -> None:
        ports, eps = self.state(["10.0.3.2"], svc4_eps=["10.0.4.1"])
        text = render(ports, eps, full_sync=False, changed_services={"ns3/svc3"},
                      existing_nat_chains=self.existing_after_5)
        assert sort_iptables_rules(text) == expected_text("repeated_6_change_endpoint.txt")

    def test_7_add_endpoint(self) -> None:
        ports, eps = self.state(["10.0.3.2", "10.0.3.3"], svc4_eps=["10.0.4.1"])
        existing = [c for c in self.existing_after_5 if c != "KUBE-SEP-BSWRHOQ77KEXZLNL"] + [
            "KUBE-SEP-DKCFIS26GWF2WLWC"]
        text = render(ports, eps, full_sync=False, changed_services={"ns3/svc3"}, existing_nat_chains=existing)
        assert sort_iptables_rules(text) == expected_text("repeated_7_add_endpoint.txt")

    existing_after_7 = ["KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SNQ3ZNILQDEJNDQO", "KUBE-SVC-X27LE4BHSL4DOUIK",
                        "KUBE-SEP-DKCFIS26GWF2WLWC", "KUBE-SEP-JVVZVJ7BSEPPRNBS", "KUBE-SVC-4SW47YFZTEDKD3PK",
                        "KUBE-SEP-AYCN5HPXMIRJNJXU"]

    def test_8_no_change(self) -> None:
        ports, eps = self.state(["10.0.3.2", "10.0.3.3"], svc4_eps=["10.0.4.1"])
        text = render(ports, eps, full_sync=False, changed_services=set(),
                      existing_nat_chains=self.existing_after_7)
        assert sort_iptables_rules(text) == expected_text("repeated_8_no_change.txt")

    def test_9_full_resync_after_failure(self) -> None:
        ports, eps = self.state(["10.0.3.2", "10.0.3.3"], with_svc4=False)
        text = render(ports, eps, full_sync=True, existing_nat_chains=self.existing_after_7)
        assert sort_iptables_rules(text) == expected_text("repeated_9_full_recovery.txt")


# --- chain-level goldens (assertIPTablesChainEqual in upstream) ---

@pytest.mark.parametrize("random_fully, suffix", [(False, ""), (True, " --random-fully")])
def test_masquerade_rule(random_fully: bool, suffix: str) -> None:
    """TestMasqueradeRule: KUBE-POSTROUTING with and without --random-fully."""
    text = render([], {}, config=ProxierConfig.upstream_test_fake(random_fully=random_fully))
    assert chain_rules(text, "nat", "KUBE-POSTROUTING") == [
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
        + suffix,
    ]


@pytest.mark.parametrize("tcp_liberal, counters, drop_rule", [
    (False, frozenset(), "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP"),
    (False, frozenset({CT_STATE_INVALID_DROPPED_COUNTER}),
     "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP"),
    (True, frozenset(), None),
])
def test_drop_invalid_rule(tcp_liberal: bool, counters: frozenset, drop_rule: str | None) -> None:
    """TestDropInvalidRule: nfacct ensured or not, nf_conntrack_tcp_be_liberal set or not."""
    config = ProxierConfig.upstream_test_fake(conntrack_tcp_liberal=tcp_liberal, nfacct_counters=counters)
    expected = ([drop_rule] if drop_rule else []) + [
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    assert chain_rules(render([], {}, config=config), "filter", "KUBE-FORWARD") == expected


FIREWALL_RULE = ('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" '
                 "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")


@pytest.mark.parametrize("localhost_nodeports, node_port_addresses, expect_firewall", [
    (True, None, True),                                                   # "ipv4, localhost-nodeports enabled"
    (False, None, False),                                                 # "ipv4, localhost-nodeports disabled"
    (False, ["192.168.0.0/24", "127.0.0.1/32"], False),                   # "... localhost in nodeport-addresses"
    (False, ["192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"], False),  # "... multiple nodeport-addresses"
])
def test_node_ports_firewall(localhost_nodeports, node_port_addresses, expect_firewall) -> None:
    """TestNodePorts (IPv4 cases): the KUBE-FIREWALL rule exists only with localhost NodePorts."""
    config = ProxierConfig.upstream_test_fake(localhost_nodeports=localhost_nodeports,
                                              node_port_addresses=node_port_addresses)
    svc = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80", node_port=3001)
    eps = {endpoints_key(svc): [ep("10.180.0.1"), ep("10.180.2.1", local=True)]}
    text = render([svc], eps, config=config)
    assert chain_rules(text, "filter", "KUBE-FIREWALL") == ([FIREWALL_RULE] if expect_firewall else [])


def test_large_cluster_mode_drops_comments() -> None:
    """TestSyncProxyRulesLargeClusterMode: first SEP DNAT line below and above 1000 endpoints."""
    svc1 = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80")
    svc2 = ServicePortInfo("ns2", "svc2", "172.30.0.42", 8080, port_name="p8080")
    svc3 = ServicePortInfo("ns3", "svc3", "172.30.0.43", 8081, port_name="p8081")
    n = 1000 // 2 - 1
    eps = {
        endpoints_key(svc1): [ep(f"10.0.{i % 256}.{i // 256}", 80) for i in range(n)],
        endpoints_key(svc2): [ep(f"10.1.{i % 256}.{i // 256}", 8080) for i in range(n)],
    }
    text = render([svc1, svc2, svc3], eps)
    assert ("-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT "
            "--to-destination 10.0.0.0:80") in text.splitlines()
    assert text.count("-j DNAT") == 2 * n

    eps[endpoints_key(svc3)] = [ep("203.0.113.4", 8081), ep("203.0.113.8", 8081), ep("203.0.113.12", 8081)]
    text = render([svc1, svc2, svc3], eps)
    lines = text.splitlines()
    assert "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081" in lines
    assert "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80" in lines
    assert not any(line.startswith("-A KUBE-SEP-") and "--comment" in line for line in lines)


def test_large_cluster_mode_deletes_stale_chains_only_when_due() -> None:
    """TestSyncProxyRulesLargeClusterMode: no -X until syncPeriod has passed since the last cleanup."""
    svc = ServicePortInfo("ns1", "svc1", "172.30.0.41", 80, port_name="p80")
    eps = {endpoints_key(svc): [ep(f"10.0.{i % 256}.{i // 256}") for i in range(1001)]}
    stale = ["KUBE-SVC-EBDQOQU5SJFXRIL3", "KUBE-SEP-SU5STNODRYEWJAUF"]
    not_due = render([svc], eps, existing_nat_chains=stale, stale_chain_cleanup=False)
    assert "-X " not in not_due
    due = render([svc], eps, existing_nat_chains=stale, stale_chain_cleanup=True)
    assert "-X KUBE-SVC-EBDQOQU5SJFXRIL3" in due and "-X KUBE-SEP-SU5STNODRYEWJAUF" in due


def test_sort_normalisation_is_not_vacuous() -> None:
    """Guard: a single changed character anywhere in our output breaks the golden comparison."""
    ports, eps = overall_inputs()
    text = render(ports, eps).replace("0.5000000000", "0.5000000001")
    assert sort_iptables_rules(text) != expected_text("overall.txt")
