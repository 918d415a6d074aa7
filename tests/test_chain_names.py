"""Chain names against the names in kube-proxy's own tests (pkg/proxy/iptables/proxier_test.go)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from netsim.rules.iptables.chain_names import (
    endpoint_chain_name,
    external_chain_name,
    firewall_chain_name,
    is_service_chain_name,
    join_host_port,
    port_proto_hash,
    service_chain_name,
    service_local_chain_name,
    service_port_name,
)


@pytest.mark.parametrize("spn, chain", [
    ("ns1/svc1:p80", "KUBE-SVC-XPGD46QRK7WJZT7O"),   # TestOverallIPTablesRules
    ("ns2/svc2:p80", "KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
    ("ns3/svc3:p80", "KUBE-SVC-X27LE4BHSL4DOUIK"),
    ("ns4/svc4:p80", "KUBE-SVC-4SW47YFZTEDKD3PK"),
    ("ns5/svc5:p80", "KUBE-SVC-NUKIZ6OKUXPJNT4C"),
    ("ns2/svc2:p8080", "KUBE-SVC-2VJB64SDSIJUP5T6"),  # TestSyncProxyRulesRepeated
    ("ns4/svc4:p8082", "KUBE-SVC-EBDQOQU5SJFXRIL3"),  # TestSyncProxyRulesLargeClusterMode
])
def test_service_chain_names(spn: str, chain: str) -> None:
    assert service_chain_name(spn, "tcp") == chain


def test_svc_svl_ext_fw_share_one_hash() -> None:
    # TestOverallIPTablesRules: KUBE-SVC/-SVL/-EXT-GNZBNJ2PO5MGZ6GT; KUBE-FW-/-EXT-NUKIZ6OKUXPJNT4C.
    assert service_local_chain_name("ns2/svc2:p80", "tcp") == "KUBE-SVL-GNZBNJ2PO5MGZ6GT"
    assert external_chain_name("ns2/svc2:p80", "tcp") == "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    assert firewall_chain_name("ns5/svc5:p80", "tcp") == "KUBE-FW-NUKIZ6OKUXPJNT4C"
    assert external_chain_name("ns5/svc5:p80", "tcp") == "KUBE-EXT-NUKIZ6OKUXPJNT4C"


@pytest.mark.parametrize("spn, endpoint, chain", [
    ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("ns2/svc2:p80", "10.180.0.2:80", "KUBE-SEP-RS4RBKLTHTF2IUXJ"),
    ("ns3/svc3:p80", "10.180.0.3:80", "KUBE-SEP-OYPFS5VJICHGATKP"),
    ("ns4/svc4:p80", "10.180.0.4:80", "KUBE-SEP-UKSFD7AGPMPPLUHC"),
    ("ns4/svc4:p80", "10.180.0.5:80", "KUBE-SEP-C6EBXVWJJZMIWKLZ"),
    ("ns5/svc5:p80", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
    ("ns1/svc1:p80", "10.0.0.0:80", "KUBE-SEP-DKGQUZGBKLTPAR56"),       # large-cluster test
    ("ns3/svc3:p8081", "203.0.113.4:8081", "KUBE-SEP-RUVVH7YV3PHQBDOS"),
    ("ns4/svc4:p8082", "10.4.0.1:8082", "KUBE-SEP-SU5STNODRYEWJAUF"),
    ("ns3/svc3:p80", "10.0.3.2:80", "KUBE-SEP-DKCFIS26GWF2WLWC"),        # repeated-sync test
])
def test_endpoint_chain_names(spn: str, endpoint: str, chain: str) -> None:
    assert endpoint_chain_name(spn, "tcp", endpoint) == chain


def test_protocol_is_lowercased_and_part_of_the_hash() -> None:
    assert port_proto_hash("ns1/svc1:p80", "TCP") == port_proto_hash("ns1/svc1:p80", "tcp")
    assert service_chain_name("ns1/svc1:p80", "udp") != service_chain_name("ns1/svc1:p80", "tcp")


def test_service_port_name_and_host_port() -> None:
    assert service_port_name("ns1", "svc1", "p80") == "ns1/svc1:p80"
    assert service_port_name("ns1", "svc1") == "ns1/svc1"          # unnamed port: no colon
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"
    assert join_host_port("fd00::1", 80) == "[fd00::1]:80"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.sampled_from(["tcp", "udp", "sctp"]))
def test_names_fit_iptables_limit(spn: str, proto: str) -> None:
    # iptables chain names must be <= 28 characters; all prefixes + 16 chars stay within it.
    for name in (service_chain_name(spn, proto), service_local_chain_name(spn, proto),
                 firewall_chain_name(spn, proto), external_chain_name(spn, proto),
                 endpoint_chain_name(spn, proto, "10.0.0.1:80")):
        assert len(name) <= 28 and is_service_chain_name(name)
    assert not is_service_chain_name("KUBE-SERVICES") and not is_service_chain_name("KUBE-MARK-MASQ")
