"""externalIPs and EndpointSlice addresses the API server refuses (ValidateNonSpecialIP).

kubernetes/kubernetes pkg/apis/core/validation/validation.go ``ValidateNonSpecialIP`` (used by
ValidateService for ``spec.externalIPs[i]`` and by pkg/apis/discovery/validation for IPv4/IPv6
``endpoints[i].addresses[j]``): unspecified, loopback, link-local and link-local multicast
addresses are refused; other multicast addresses are not.

Regression: such externalIPs were accepted, and kube-proxy rules were written for 127.0.0.1 etc.
"""
from __future__ import annotations

import pytest

from netsim.control import validation as v
from netsim.control.docfields import ManifestError
from netsim.control.manifests import load_text

SVC = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  externalIPs: [192.168.49.100, %s]
  ports: [{port: 80}]
"""

REFUSED = [
    ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
    ("127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("127.200.3.4", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
    ("169.254.169.254", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
    ("224.0.0.251", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
]


@pytest.mark.parametrize("ip, reason", REFUSED)
def test_external_ip_refused_with_the_api_servers_message(ip: str, reason: str) -> None:
    with pytest.raises(ManifestError) as err:
        load_text(SVC % ip, source="app.yaml")
    assert str(err.value) == f"app.yaml: document 1 (Service 'web'): spec.externalIPs[1]: Invalid value: '{ip}': {reason}"


@pytest.mark.parametrize("ip", ["224.0.1.1", "239.1.2.3", "169.253.255.255", "126.255.255.255", "203.0.113.9"])
def test_other_addresses_are_accepted(ip: str) -> None:
    # only link-local multicast is special: 224.0.1.1 and 239.x are multicast but allowed upstream
    c = load_text(SVC % ip, source="app.yaml")
    assert c.service("default", "web").external_ips == ["192.168.49.100", ip]


SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{port: 80}]
endpoints:
  - addresses: [10.244.0.9]
  - addresses: [%s]
"""


@pytest.mark.parametrize("ip, reason", REFUSED)
def test_endpoint_slice_address_refused_with_the_api_servers_message(ip: str, reason: str) -> None:
    with pytest.raises(ManifestError) as err:
        load_text(SLICE % ip, source="eps.yaml")
    assert str(err.value) == (f"eps.yaml: document 1 (EndpointSlice 'web-1'): endpoints[1].addresses[0]: "
                              f"Invalid value: '{ip}': {reason}")


def test_ipv6_rules_follow_go() -> None:
    assert v.non_special_ip("::") == "may not be unspecified (::)"
    assert v.non_special_ip("::1").startswith("may not be in the loopback range")
    assert v.non_special_ip("fe80::1").startswith("may not be in the link-local range")
    assert v.non_special_ip("ff12::1").startswith("may not be in the link-local multicast range")   # flags nibble
    assert v.non_special_ip("ff05::1") is None and v.non_special_ip("2001:db8::1") is None
