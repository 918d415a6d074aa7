"""A user's own network test suite, for the built-in examples: what kube-netsim's pytest plugin and
``netsim.testing`` look like in practice. It needs no conftest — installing kube-netsim is enough:

    pytest --netsim-mode=iptables,ipvs "$(python -c 'import netsim, os; print(os.path.dirname(netsim.__file__))')/examples/tests"

Each test gets its own copy of the cluster: what one test scales, deletes or stops, the next never sees.
"""
import pytest

from netsim.testing import (assert_balanced, assert_reachable, assert_resolves, assert_sticky,
                            assert_unreachable)

pytestmark = pytest.mark.netsim(manifests="example:shop")

NODE_1 = "192.168.49.2"            # the Cluster document's node addresses
LB_IP = "192.168.49.241"           # the first address of the default LoadBalancer pool


def test_frontend_by_name_from_a_pod(netsim_cluster):
    assert_reachable(netsim_cluster, "pod/client", "http://frontend/", namespace="shop", pod="frontend-*")


def test_backend_by_cluster_ip_reaches_the_named_target_port(netsim_cluster):
    ip = netsim_cluster.resolve("backend.shop.svc.cluster.local").ips[0]
    assert_reachable(netsim_cluster, "pod/client", f"{ip}:8080", namespace="shop", pod="shop/backend-*", port=9090,
                     snat=False)


def test_dns(netsim_cluster):
    frontend_ip = netsim_cluster.cluster.service("shop", "frontend").cluster_ip
    assert_resolves(netsim_cluster, "frontend", frontend_ip, from_pod="pod/client", namespace="shop")
    db_pods = [p.ip for p in netsim_cluster.cluster.pods("shop") if p.name.startswith("db-")]
    assert_resolves(netsim_cluster, "db.shop.svc.cluster.local", db_pods)          # headless: one A per pod
    assert_resolves(netsim_cluster, "payments.shop.svc.cluster.local", "203.0.113.10")   # ExternalName CNAME
    assert_unreachable(netsim_cluster, "pod/client", "http://nothing/", namespace="shop", outcome="unresolved")


def test_nodeport_from_outside_is_masqueraded(netsim_cluster):
    """externalTrafficPolicy Cluster: the node masquerades, the pod sees a node address."""
    assert_reachable(netsim_cluster, "external", f"{NODE_1}:30100", pod="frontend-*", port=8080, snat=True)


def test_cluster_ip_is_not_reachable_from_outside(netsim_cluster):
    ip = netsim_cluster.cluster.service("shop", "frontend").cluster_ip
    assert_unreachable(netsim_cluster, "external", f"{ip}:80", outcome="no_route")


def test_load_balancer_local_policy_preserves_the_client_source(netsim_cluster):
    """externalTrafficPolicy Local: no SNAT, the pod sees the external client's own address."""
    assert_reachable(netsim_cluster, "external", f"{LB_IP}:443", pod="backend-*", snat=False)


def test_frontend_is_balanced_over_its_replicas(netsim_cluster):
    counts = assert_balanced(netsim_cluster, "pod/client", "frontend:80", namespace="shop", n=600)
    assert len(counts) == 3


def test_backend_has_client_ip_affinity(netsim_cluster):
    assert_sticky(netsim_cluster, "pod/client", "backend:8080", namespace="shop", n=20)


class TestNodeFailure:
    def test_node_down_then_back(self, netsim_cluster):
        em = netsim_cluster
        em.stop_node("node-1")
        em.advance(60)                 # 50 s without heartbeats: NotReady, its pods' endpoints not ready
        counts = assert_balanced(em, "pod/client", "frontend:80", namespace="shop", n=300)
        assert all(em.cluster.pod(*key.split("/")).node_name != "node-1" for key in counts)
        em.start_node("node-1")
        assert len(assert_balanced(em, "pod/client", "frontend:80", namespace="shop", n=300)) == 3

    def test_the_next_test_has_every_node(self, netsim_cluster):
        assert all(n.ready for n in netsim_cluster.cluster.nodes())


@pytest.mark.netsim(manifests="example:httpd-app")
class TestScaling:
    def test_scaled_to_zero_the_service_rejects(self, netsim_cluster):
        netsim_cluster.scale("httpd-app", 0)
        netsim_cluster.advance(31)     # terminationGracePeriodSeconds: the endpoints are gone after it
        assert_unreachable(netsim_cluster, "pod/client", "http://httpd-app/", outcome="rejected")

    def test_the_next_test_still_reaches_the_pods(self, netsim_cluster):
        t = netsim_cluster.trace("pod/client", "http://httpd-app/")
        assert t.outcome.disposition == "DELIVERED"
