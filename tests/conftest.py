"""Shared fixtures: the built-in example clusters, freshly loaded for each test."""
from __future__ import annotations

import pytest

from netsim.cluster import Cluster
from netsim.manifests import load


@pytest.fixture
def httpd_cluster() -> Cluster:
    """example:httpd-app — 3 nodes, Deployment httpd-app (2 replicas), NodePort Service, client pod."""
    return load("example:httpd-app")


@pytest.fixture
def shop_cluster() -> Cluster:
    """example:shop — NodePort, ClusterIP (named ports), LoadBalancer, headless StatefulSet, ExternalName."""
    return load("example:shop")
