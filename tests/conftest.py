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


@pytest.fixture(scope="module")
def kernel_run_dir(tmp_path_factory):
    """For the kernel-backend tests: skip unless root with `ip` and `iptables-restore` and able to make a
    network namespace; then point NETSIM_RUN_DIR (the kernel clusters' ledger) at a fresh directory."""
    import os

    from kernel_helpers import require_root_and_tools, unique_name
    from netsim.kernel import netns

    require_root_and_tools("iptables-restore")
    probe_ns = f"{unique_name('p')}-probe"
    try:
        netns.create(probe_ns)
    except Exception as e:                                      # noqa: BLE001 - any reason to skip
        pytest.skip(f"cannot create a network namespace: {e}")
    finally:
        netns.remove(probe_ns)
    d = tmp_path_factory.mktemp("netsim-run")
    old = os.environ.get("NETSIM_RUN_DIR")
    os.environ["NETSIM_RUN_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("NETSIM_RUN_DIR", None)
    else:
        os.environ["NETSIM_RUN_DIR"] = old
