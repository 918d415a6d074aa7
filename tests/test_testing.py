"""netsim.testing's assertions (what passes, what fails and what a failure says) and the chi-square
survival function against published table values."""
from __future__ import annotations

import math

import pytest

import netsim
from netsim.chisquare import chi2_sf, gammaq, uniform_test
from netsim.testing import (assert_balanced, assert_reachable, assert_resolves, assert_sticky,
                            assert_unreachable, pod_matches)


# ---------------------------------------------------------------- chi-square
@pytest.mark.parametrize("x, df, p", [
    # upper-tail critical values from the NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.6.7.4
    # (Critical Values of the Chi-Square Distribution) and Abramowitz & Stegun Table 26.8
    (3.841, 1, 0.05), (6.635, 1, 0.01), (10.828, 1, 0.001),
    (5.991, 2, 0.05), (13.816, 2, 0.001),
    (7.815, 3, 0.05), (16.266, 3, 0.001),
    (11.070, 5, 0.05), (20.515, 5, 0.001),
    (23.209, 10, 0.01), (29.588, 10, 0.001),
    (67.505, 50, 0.05), (124.342, 100, 0.05), (149.449, 100, 0.001),
    (0.455, 1, 0.5), (0.016, 1, 0.9), (1.610, 5, 0.9),
])
def test_chi2_sf_matches_tables(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=2e-3)


def test_chi2_sf_closed_forms_and_edges():
    for x in (0.1, 1.0, 4.0, 30.0):
        assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)          # df 2: exp(-x/2)
        assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10)  # df 1: erfc
    assert chi2_sf(0, 3) == 1.0 and chi2_sf(1e4, 3) < 1e-300 + 1e-12
    assert gammaq(1.0, 2.0) == pytest.approx(math.exp(-2.0))
    with pytest.raises(ValueError):
        chi2_sf(1.0, 0)


def test_uniform_test():
    even = uniform_test([250, 250, 250, 250])
    assert even.statistic == 0 and even.p_value == 1.0 and even.df == 3
    skewed = uniform_test([400, 200, 200, 200])
    assert skewed.statistic == pytest.approx(120.0) and skewed.p_value < 1e-15


# ---------------------------------------------------------------- assertions
@pytest.fixture(scope="module")
def shop():
    em = netsim.load("example:shop")
    em.prepare()
    return em


def test_pod_matches():
    assert pod_matches("shop/frontend-abc", "frontend-*") and pod_matches("shop/frontend-abc", "shop/*")
    assert not pod_matches("shop/frontend-abc", "backend-*") and not pod_matches(None, "*")


def test_assert_reachable_passes_and_fails_with_the_trace(shop):
    em = shop.copy()
    t = assert_reachable(em, "pod/client", "http://frontend/", namespace="shop", pod="frontend-*", port=8080,
                         snat=False)
    assert t.outcome.ok
    assert_reachable(em, "external", "192.168.49.2:30100", snat=True)
    with pytest.raises(AssertionError) as e:
        assert_reachable(em, "pod/client", "http://frontend/", namespace="shop", pod="backend-*")
    msg = str(e.value)
    assert msg.startswith("expected pod/client to reach http://frontend/ at pod backend-*, but it was delivered "
                          "to shop/frontend-")
    assert "RULE         nat:KUBE-SEP-" in msg and "DELIVERED shop/frontend-" in msg
    with pytest.raises(AssertionError, match="the server saw the client's own address"):
        assert_reachable(em, "external", "192.168.49.241:443", snat=True)
    em.scale("frontend", 0, namespace="shop")
    em.advance(31)
    with pytest.raises(AssertionError) as e:
        assert_reachable(em, "pod/client", "http://frontend/", namespace="shop")
    msg = str(e.value)
    assert "but the connection was REJECTED" in msg and '"shop/frontend:http has no endpoints"' in msg
    assert "-j REJECT" in msg and "2. node node-3" in msg


def test_assert_unreachable(shop):
    em = shop.copy()
    ip = em.cluster.service("shop", "frontend").cluster_ip
    a = assert_unreachable(em, "external", f"{ip}:80", outcome="no_route")
    assert a.disposition == "NO_ROUTE"
    assert_unreachable(em, "pod/client", "http://nothing/", namespace="shop", outcome="unresolved")
    with pytest.raises(AssertionError, match="expected external not to reach .* \\(outcome DROPPED\\), but the "
                                             "outcome was NO_ROUTE"):
        assert_unreachable(em, "external", f"{ip}:80", outcome="dropped")
    with pytest.raises(AssertionError, match="but it was DELIVERED to shop/frontend-"):
        assert_unreachable(em, "pod/client", "http://frontend/", namespace="shop")
    with pytest.raises(ValueError, match="outcome: expected one of"):
        assert_unreachable(em, "pod/client", "http://frontend/", namespace="shop", outcome="gone")


def test_assert_resolves(shop):
    ip = shop.resolve("frontend.shop.svc.cluster.local").ips[0]
    assert_resolves(shop, "frontend", ip, from_pod="pod/client", namespace="shop")
    with pytest.raises(AssertionError) as e:
        assert_resolves(shop, "frontend", ["10.0.0.1"], from_pod="pod/client", namespace="shop")
    assert f"expected frontend from pod pod/client to resolve to 10.0.0.1, got {ip}" in str(e.value)
    assert "glibc search walk" in str(e.value)
    with pytest.raises(AssertionError, match="got no address \\(NXDOMAIN\\)"):
        assert_resolves(shop, "nothing.shop.svc.cluster.local", ["10.0.0.1"])


def test_assert_balanced_passes_for_round_robin_and_fails_for_skew(shop):
    counts = assert_balanced(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=600)
    assert len(counts) == 3 and sum(counts.values()) == 600
    counts = assert_balanced(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=300,
                             pods=["frontend-*"])
    assert len(counts) == 3
    # ClientIP affinity: every connection to one backend — the chi-square test rejects
    with pytest.raises(AssertionError) as e:
        assert_balanced(shop.copy(), "pod/client", "backend:8080", namespace="shop", n=200)
    assert "chi-square 200.00 with 1 degrees of freedom, p = " in str(e.value)
    # a pod that gets nothing is an endpoint the connections should have reached
    with pytest.raises(AssertionError, match="to be spread evenly over 4 endpoints"):
        assert_balanced(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=300,
                        pods=["frontend-*", "client"])
    with pytest.raises(AssertionError, match="but connections reached shop/frontend-"):
        assert_balanced(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=50, pods=["db-*"])
    with pytest.raises(ValueError, match="no pod matches nope-"):
        assert_balanced(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=10, pods=["nope-*"])


def test_assert_sticky(shop):
    pod = assert_sticky(shop.copy(), "pod/client", "backend:8080", namespace="shop", n=20)
    assert pod.startswith("shop/backend-")
    with pytest.raises(AssertionError, match="to stick to one pod \\(ClientIP affinity\\), but they reached 3"):
        assert_sticky(shop.copy(), "pod/client", "frontend:80", namespace="shop", n=30)
