"""The EndpointSlice controller's rules, as pkg/controller/endpointslice (reconciler.go, utils.go) has them:

- podToEndpoint: serving = pod Ready; terminating = deletionTimestamp set;
  ready = publishNotReadyAddresses || (serving && !terminating) — serving is never forced.
- ShouldPodBeInEndpoints(pod, includeTerminating=true): pods without an IP and terminal pods
  (Succeeded/Failed) are left out; terminating pods stay.
- getEndpointPorts: podutil.FindPort per Service port (a name matches name *and* protocol); a port the
  pod lacks is skipped, the pod is still an endpoint; endpoints are grouped by their resolved port
  set, so a named targetPort that resolves differently per pod gives separate slices.
- --max-endpoints-per-slice defaults to 100; a selector Service without endpoints keeps one empty slice.
- hostname is copied when pod.spec.hostname is set and pod.spec.subdomain equals the Service name.
"""
from __future__ import annotations

import random

from netsim.control import endpointslices as eps
from netsim.control.cluster import Cluster
from netsim.control.model import ClusterConfig, ContainerPort, Node, Pod, Service, ServicePort


def small_cluster(**cfg) -> Cluster:
    c = Cluster(ClusterConfig(coredns=False, **cfg))
    for i in (1, 2):
        c.add(Node(f"node-{i}", f"192.168.49.{i + 1}", zone="za" if i == 1 else "zb"))
    return c


def web_service(**kw) -> Service:
    return Service("web", selector={"app": "web"}, ports=[ServicePort(80, target_port=kw.pop("target", 8080))], **kw)


def web_pod(name: str, **kw) -> Pod:
    return Pod(name, labels={"app": "web"}, ports=kw.pop("ports", [ContainerPort(8080, name="http")]), **kw)


def endpoints(c: Cluster, svc: str = "web") -> dict[str, tuple[bool, bool, bool]]:
    out = {}
    for s in c.endpoint_slices("default", svc):
        for e in s.endpoints:
            out[e.target_ref[2]] = (e.ready, e.serving, e.terminating)
    return out


def test_ready_and_not_ready_pods():
    c = small_cluster()
    c.apply([web_service(), web_pod("a"), web_pod("b", ready=False)])
    assert endpoints(c) == {"a": (True, True, False), "b": (False, False, False)}


def test_publish_not_ready_addresses_forces_ready_but_not_serving():
    c = small_cluster()
    c.apply([web_service(publish_not_ready_addresses=True), web_pod("a"), web_pod("b", ready=False)])
    assert endpoints(c) == {"a": (True, True, False), "b": (True, False, False)}
    c.delete_pod("default", "a")
    assert endpoints(c)["a"] == (True, True, True)     # terminating, still ready when publishing


def test_terminating_endpoint_during_grace_period_then_gone():
    c = small_cluster()
    c.apply([web_service(), web_pod("a"), web_pod("b")])
    c.delete_pod("default", "a")
    assert endpoints(c) == {"a": (False, True, True), "b": (True, True, False)}
    c.advance(29)
    assert "a" in endpoints(c)
    c.advance(1)                                       # terminationGracePeriodSeconds 30
    assert endpoints(c) == {"b": (True, True, False)}


def test_pending_and_terminal_pods_are_left_out():
    c = small_cluster()
    c.apply([web_service(), web_pod("a"), web_pod("pending", node_selector={"no": "such"})])
    assert set(endpoints(c)) == {"a"}
    assert eps.pod_is_endpoint_candidate(Pod("x", ip="10.0.0.1", phase="Succeeded")) is False
    assert eps.pod_is_endpoint_candidate(Pod("x", ip="10.0.0.1", phase="Failed")) is False
    assert eps.pod_is_endpoint_candidate(Pod("x", ip="10.0.0.1", phase="Running", terminating=True)) is True


def test_named_target_port_resolving_differently_gives_separate_slices():
    c = small_cluster()
    c.apply([web_service(target="http"),
             web_pod("a", ports=[ContainerPort(8080, name="http")]),
             web_pod("b", ports=[ContainerPort(9090, name="http")]),
             web_pod("c", ports=[ContainerPort(8080, name="http")])])
    by_port = {s.ports[0].port: sorted(e.target_ref[2] for e in s.endpoints) for s in c.endpoint_slices("default", "web")}
    assert by_port == {8080: ["a", "c"], 9090: ["b"]}


def test_named_port_matches_protocol_too():
    svc = Service("dns", selector={"app": "web"}, ports=[ServicePort(53, "UDP", "dns", "dns")])
    tcp_only = Pod("a", ports=[ContainerPort(5353, "TCP", "dns")])
    udp = Pod("b", ports=[ContainerPort(5353, "UDP", "dns")])
    assert eps.resolve_target_port(svc.ports[0], tcp_only) is None
    assert eps.resolve_target_port(svc.ports[0], udp) == 5353


def test_pod_lacking_a_named_port_is_still_an_endpoint_with_fewer_ports():
    c = small_cluster()
    svc = Service("web", selector={"app": "web"},
                  ports=[ServicePort(80, name="http", target_port="http"), ServicePort(9100, name="m", target_port="metrics")])
    c.apply([svc, web_pod("a", ports=[ContainerPort(8080, name="http"), ContainerPort(9100, name="metrics")]),
             web_pod("b", ports=[ContainerPort(8080, name="http")])])
    got = {tuple((p.name, p.port) for p in s.ports): [e.target_ref[2] for e in s.endpoints]
           for s in c.endpoint_slices("default", "web")}
    assert got == {(("http", 8080), ("m", 9100)): ["a"], (("http", 8080),): ["b"]}


def test_pod_with_none_of_the_ports_is_an_endpoint_in_a_portless_slice():
    # getEndpointPorts returns an empty list; the reconciler still adds the endpoint (kube-proxy then
    # has no port to use it on, and the user sees why in `netsim get endpointslices`).
    c = small_cluster()
    c.apply([web_service(target="grpc"), web_pod("a")])
    (s,) = c.endpoint_slices("default", "web")
    assert s.ports == [] and [e.target_ref[2] for e in s.endpoints] == ["a"]


def test_hundred_endpoints_per_slice():
    c = Cluster(ClusterConfig(coredns=False, node_cidr_mask=22))
    c.add(Node("node-1", "192.168.49.2"))
    c.apply([web_service()] + [web_pod(f"p{i:03}") for i in range(250)])
    sizes = sorted(len(s.endpoints) for s in c.endpoint_slices("default", "web"))
    assert sizes == [50, 100, 100]
    assert all(s.name.startswith("web-") and len(s.name) == 9 for s in c.endpoint_slices("default", "web"))
    assert sum(sizes) == len({e.addresses[0] for s in c.endpoint_slices("default", "web") for e in s.endpoints})


def test_service_without_endpoints_keeps_one_empty_slice():
    c = small_cluster()
    c.add(web_service())
    (s,) = c.endpoint_slices("default", "web")
    assert s.endpoints == [] and s.ports == [] and s.managed_by == "endpointslice-controller.k8s.io"


def test_slice_name_is_kept_across_updates():
    c = small_cluster()
    c.apply([web_service(), web_pod("a")])
    (before,) = c.endpoint_slices("default", "web")
    c.add(web_pod("b"))
    (after,) = c.endpoint_slices("default", "web")
    assert after.name == before.name and len(after.endpoints) == 2


def test_endpoint_fields_zone_node_hostname():
    c = small_cluster()
    c.apply([web_service(), web_pod("a", node_name="node-2", hostname="a", subdomain="web"),
             web_pod("b", node_name="node-1", hostname="b", subdomain="other")])
    got = {e.target_ref[2]: (e.node_name, e.zone, e.hostname) for s in c.endpoint_slices() for e in s.endpoints}
    assert got == {"a": ("node-2", "zb", "a"), "b": ("node-1", "za", None)}


def test_selector_matches_only_same_namespace_and_all_labels():
    c = small_cluster()
    from netsim.control.model import Namespace
    c.apply([Namespace("other"), web_service(),
             Pod("x", namespace="other", labels={"app": "web"}),
             Pod("y", labels={"app": "web", "extra": "1"}), Pod("z", labels={"app": "api"})])
    assert set(endpoints(c)) == {"y"}
    assert c.select_pods("default", {}) == []          # empty selector selects nothing for Services


def test_user_slice_for_selector_service_is_left_alone():
    from netsim.control.model import Endpoint, EndpointPort, EndpointSlice
    c = small_cluster()
    user = EndpointSlice("web-extra", "default", "web", endpoints=[Endpoint(["10.9.9.9"])],
                         ports=[EndpointPort(8080)], managed_by="user")
    c.apply([web_service(), web_pod("a"), user])
    slices = {s.name: s for s in c.endpoint_slices("default", "web")}
    assert slices["web-extra"].endpoints[0].addresses == ["10.9.9.9"]     # not rewritten by the controller
    assert len(slices) == 2
    c.add(web_pod("b"))
    assert c.endpoint_slices("default", "web") and \
        [s for s in c.endpoint_slices("default", "web") if s.name == "web-extra"][0].endpoints[0].addresses == ["10.9.9.9"]
    assert any(e.reason == "UnmanagedSlice" for e in c.event_log)


def test_random_suffix_uses_kubernetes_alphabet_and_the_seed():
    a, b = eps.random_suffix(random.Random(3)), eps.random_suffix(random.Random(3))
    assert a == b and len(a) == 5 and set(a) <= set("bcdfghjklmnpqrstvwxz2456789")
