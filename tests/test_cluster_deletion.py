"""Pod deletion as the API server and kubelet carry it out.

Sources:
- pkg/registry/core/pod/strategy.go CheckGracefulDelete: the grace period is DeleteOptions'
  gracePeriodSeconds, else the pod's terminationGracePeriodSeconds (30 s default); a pod that is not
  scheduled (no spec.nodeName) or already Failed/Succeeded is deleted at once.
- the pod object of a graceful deletion goes only when the kubelet, having stopped the containers,
  deletes it with grace 0; a second delete may shorten the grace period, never lengthen it
  (pod_workers calculateEffectiveGracePeriod only decreases it).
- `kubectl delete --force --grace-period=0` sends gracePeriodSeconds=0: the object goes at once, no
  kubelet involved (docs: Force Delete StatefulSet Pods).
"""
from __future__ import annotations

import pytest

from netsim.control.cluster import Cluster, ClusterError
from netsim.control.model import ClusterConfig, ContainerPort, Deployment, Node, Pod, Service, ServicePort


def web_cluster(replicas: int = 2) -> Cluster:
    c = Cluster(ClusterConfig(coredns=False, seed=3))
    c.apply([Node("node-1", "192.168.49.2"), Node("node-2", "192.168.49.3"),
             Service("web", selector={"app": "web"}, ports=[ServicePort(80, target_port=8080)]),
             Deployment("Deployment", "web", "default", replicas, {"app": "web"},
                        Pod("", labels={"app": "web"}, ports=[ContainerPort(8080)]), template_hash="abc")])
    return c


def test_unscheduled_pod_is_deleted_at_once_whatever_the_grace_period():
    c = web_cluster(0)
    c.add(Pod("stuck", node_selector={"disk": "ssd"}))          # no node matches: stays unscheduled
    assert c.pod("default", "stuck").node_name is None
    c.delete_pod("default", "stuck", grace_period=30)
    assert c.pod("default", "stuck") is None
    assert not [e for e in c.event_log if e.reason == "Killing"]


def test_second_delete_shortens_the_grace_period_but_never_lengthens_it():
    c = web_cluster(0)
    c.add(Pod("a", node_name="node-1"))
    c.delete_pod("default", "a", grace_period=60)
    c.advance(10)
    c.delete_pod("default", "a", grace_period=5)                # deadline 10 + 5 = 15 (was 60)
    c.delete_pod("default", "a", grace_period=100)              # ignored
    c.advance(4)
    assert c.pod("default", "a") is not None
    c.advance(1)
    assert c.clock.now == 15 and c.pod("default", "a") is None


def test_force_delete_of_a_terminating_pod_is_immediate():
    c = web_cluster()
    victim = c.pods("default")[0]
    c.delete_pod("default", victim.name)
    assert c.pod("default", victim.name) is victim and victim.terminating
    c.delete_pod("default", victim.name, force=True)
    assert c.pod("default", victim.name) is None and c.clock.now == 0
    assert len(c.pods("default")) == 2                          # the replacement made by the first delete


def test_node_stopping_mid_termination_holds_the_pod_until_it_returns():
    c = web_cluster(0)
    c.add(Pod("a", node_name="node-2"))
    c.delete_pod("default", "a")                                 # deadline 30; the kubelet starts killing
    c.advance(10)
    c.stop_node("node-2")
    c.advance(60)
    assert c.pod("default", "a") is not None and c.pod("default", "a").terminating
    c.start_node("node-2")                                       # t=70: the kubelet kills again, 30 s
    kills = [(e.time, e.source) for e in c.event_log if e.reason == "Killing"]
    assert kills == [(0.0, "kubelet/node-2"), (70.0, "kubelet/node-2")]
    c.advance(29)
    assert c.pod("default", "a") is not None
    c.advance(1)
    assert c.pod("default", "a") is None


def test_deleted_pod_ip_is_released_only_when_the_object_goes():
    c = web_cluster(0)
    c.add(Pod("a", node_name="node-2", labels={"app": "web"}, ports=[ContainerPort(8080)]))
    ip = c.pod("default", "a").ip
    c.stop_node("node-2")
    c.delete_pod("default", "a")
    assert c.pod_by_ip(ip) is c.pod("default", "a")              # still holds its address
    c.start_node("node-2")
    c.advance(30)
    assert c.pod_by_ip(ip) is None
    assert not c.endpoint_slices("default", "web")[0].endpoints


def test_negative_grace_period_is_refused():
    c = web_cluster()
    with pytest.raises(ClusterError, match="gracePeriodSeconds: Invalid value: -1: must be >= 0"):
        c.delete_pod("default", c.pods("default")[0].name, grace_period=-1)


def test_terminating_endpoint_of_a_ready_pod_is_serving_until_it_goes():
    # EndpointSlice controller podToEndpoint: serving = pod Ready, ready = serving and not terminating
    c = web_cluster()
    victim = c.pods("default")[0]
    c.delete_pod("default", victim.name)
    eps = {e.addresses[0]: (e.ready, e.serving, e.terminating)
           for s in c.endpoint_slices("default", "web") for e in s.endpoints}
    assert eps[victim.ip] == (False, True, True)
    assert sorted(v for k, v in eps.items() if k != victim.ip) == [(True, True, False)] * 2
    c.advance(30)
    assert victim.ip not in {e.addresses[0] for s in c.endpoint_slices("default", "web") for e in s.endpoints}


def test_scaling_away_an_unscheduled_pod_removes_it_at_once():
    c = Cluster(ClusterConfig(coredns=False, seed=3))
    c.apply([Node("node-1", "192.168.49.2"),
             Deployment("Deployment", "ssd", "default", 1, {"app": "ssd"},
                        Pod("", labels={"app": "ssd"}, node_selector={"disk": "ssd"}), template_hash="abc")])
    assert [p.node_name for p in c.pods("default")] == [None]
    c.scale("default", "ssd", 0)
    assert c.pods("default") == [] and c.clock.now == 0
