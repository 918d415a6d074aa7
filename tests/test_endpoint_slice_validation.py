"""EndpointSlices the API server refuses, refused with its field path and reason (and what it accepts).

kubernetes/kubernetes pkg/apis/discovery/validation/validation.go ValidateEndpointSlice
(validateEndpoints, validatePorts) and pkg/apis/discovery/v1/defaults.go SetDefaults_EndpointPort.
"""
from __future__ import annotations

import pytest

from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text

HEAD = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
"""
D = "eps.yaml: document 1 (EndpointSlice 'web-1'): "


def load(body: str):
    return load_text(HEAD + body, source="eps.yaml").endpoint_slices("default", "web")[0]


def refused(body: str) -> str:
    with pytest.raises(ManifestError) as err:
        load(body)
    return str(err.value)


@pytest.mark.parametrize("body, message", [
    ("endpoints: [{addresses: []}]\n", "endpoints[0].addresses: Required value: must contain at least 1 address"),
    ("endpoints: [{addresses: [%s]}]\n" % ", ".join(f"10.244.0.{i}" for i in range(1, 102)),
     "endpoints[0].addresses: Too many: 101: must have at most 100 items"),
    ("endpoints: [{addresses: [10.244.0.9], nodeName: Node_1}]\n",
     "endpoints[0].nodeName: Invalid value: 'Node_1': a lowercase RFC 1123 subdomain must consist of lower case "
     "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
    ("endpoints: [{addresses: [10.244.0.9], hostname: web.1}]\n",
     "endpoints[0].hostname: Invalid value: 'web.1': a lowercase RFC 1123 label must consist of lower case "
     "alphanumeric characters or '-', and must start and end with an alphanumeric character"),
    ("ports: [{name: http, port: 80}, {name: http, port: 81}]\n", "ports[1].name: Duplicate value: 'http'"),
    ("ports: [{name: HTTP, port: 80}]\n",
     "ports[0].name: Invalid value: 'HTTP': a lowercase RFC 1123 label must consist of lower case alphanumeric "
     "characters or '-', and must start and end with an alphanumeric character"),
    ("ports: [{port: 80, protocol: ICMP}]\n",
     "ports[0].protocol: Unsupported value: 'ICMP': supported values: \"SCTP\", \"TCP\", \"UDP\""),
])
def test_refused_as_the_api_server_refuses(body: str, message: str) -> None:
    assert refused(body) == D + message


def test_too_many_endpoints() -> None:
    eps = "".join(f"  - addresses: [10.244.{i // 250}.{i % 250 + 1}]\n" for i in range(1001))
    assert refused("endpoints:\n" + eps) == D + "endpoints: Too many: 1001: must have at most 1000 items"


def test_port_defaults_and_a_port_without_number() -> None:
    s = load("ports: [{port: 8080}, {name: other}]\nendpoints: [{addresses: [10.244.0.9]}]\n")
    # name defaults to "", protocol to TCP; the number-less port is accepted but kube-proxy ignores it
    assert [(p.name, p.protocol, p.port) for p in s.ports] == [("", "TCP", 8080)]
