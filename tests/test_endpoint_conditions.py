"""EndpointSlice conditions that are absent (nil), read as the discovery API and kube-proxy read them.

discovery.k8s.io/v1 EndpointConditions (k8s.io/api/discovery/v1/types.go): "ready ... A nil value
should be interpreted as "true""; "serving ... A nil value should be interpreted as "true""; "terminating
... A nil value should be interpreted as "false"". kube-proxy does exactly that
(pkg/proxy/endpointslicecache.go newEndpointSliceInfo), and its terminating-endpoint fallback
(pkg/proxy/topology.go CategorizeEndpoints: Serving ∧ Terminating when nothing is Ready) depends on it.

Regression: the loader copied ``ready`` into an absent ``serving``, so an endpoint written
``{ready: false, terminating: true}`` was not a fallback endpoint and the Service REJECTed.
"""
from __future__ import annotations

import pytest

from netsim.control.manifests import load_text
from netsim.rules.iptables.proxier import render
from netsim.rules.ipvs.proxier import build

CLUSTER = """\
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: conds}
spec:
  nodes:
    - {name: node-1, ip: 192.168.49.2}
    - {name: node-2, ip: 192.168.49.3}
  proxyMode: %s
  coredns: {enabled: false}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  clusterIP: 10.96.50.50
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
ports: [{port: 8080, protocol: TCP}]
endpoints:
  - addresses: [10.244.1.7]
    nodeName: node-2
%s"""


def cluster(conditions: str, mode: str = "iptables"):
    return load_text(CLUSTER % (mode, conditions), source="<conditions>")


@pytest.mark.parametrize("conditions, expected", [
    ("", (True, True, False)),                                             # no conditions at all
    ("    conditions: {}\n", (True, True, False)),
    ("    conditions: {ready: null, serving: null, terminating: null}\n", (True, True, False)),
    ("    conditions: {ready: false}\n", (False, True, False)),             # serving stays nil → true
    ("    conditions: {ready: false, terminating: true}\n", (False, True, True)),
    ("    conditions: {serving: false}\n", (True, False, False)),
    ("    conditions: {ready: true, serving: false, terminating: true}\n", (True, False, True)),
])
def test_loader_reads_nil_conditions_as_the_discovery_api(conditions: str, expected: tuple) -> None:
    (ep,) = cluster(conditions).endpoint_slices("default", "ext")[0].endpoints
    assert (ep.ready, ep.serving, ep.terminating) == expected


def test_nil_serving_terminating_endpoint_is_the_fallback_in_iptables() -> None:
    text = render(cluster("    conditions: {ready: false, terminating: true}\n"), "node-1")
    assert "has no endpoints" not in text
    assert "-j DNAT --to-destination 10.244.1.7:8080" in text
    # explicitly not serving: no fallback, the ClusterIP REJECTs
    text = render(cluster("    conditions: {ready: false, serving: false, terminating: true}\n"), "node-1")
    assert '"default/ext has no endpoints"' in text and "-d 10.96.50.50 --dport 80 -j REJECT" in text


def test_nil_serving_terminating_endpoint_is_the_fallback_in_ipvs() -> None:
    def dests(conditions: str) -> list[str]:
        state = build(cluster(conditions, "ipvs"), "node-1")
        (vs,) = [v for v in state.table if v.addr == "10.96.50.50:80"]
        return [d.addr for d in vs.dests]
    assert dests("    conditions: {ready: false, terminating: true}\n") == ["10.244.1.7:8080"]
    assert dests("    conditions: {ready: false, serving: false, terminating: true}\n") == []
    assert dests("    conditions: {ready: false}\n") == []       # not ready, not terminating: unused


def test_wrong_type_condition_is_refused_with_its_field_path() -> None:
    with pytest.raises(Exception, match=r"endpoints\[0\]\.conditions\.serving"):
        cluster("    conditions: {serving: 'yes'}\n")
