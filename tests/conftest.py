"""Shared fixtures: the built-in example clusters, freshly loaded for each test; the fuzz budget."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from netsim.control.cluster import Cluster
from netsim.control.manifests import load


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


# ---------------------------------------------------------------------------- generator-driven fuzz
def pytest_addoption(parser):
    parser.addoption("--netsim-fuzz-long", type=int, default=None, metavar="N",
                     help="nightly-style fuzz: N generated clusters per fuzz test, random seeds "
                          "(also NETSIM_FUZZ_LONG=N); default: the bounded, derandomized CI budget")


@dataclass(frozen=True)
class FuzzBudget:
    """How much the generator-driven fuzz tests do (tests/test_fuzz_*.py)."""
    rules_examples: int          # clusters whose every rule set is loaded into the kernel
    verify_clusters: int         # clusters brought up and compared with `netsim verify`
    verify_flows: int            # flows per verified cluster
    long: bool                   # random seeds (a nightly run) instead of derandomized CI examples


@pytest.fixture(scope="session")
def fuzz_budget(request) -> FuzzBudget:
    n = request.config.getoption("--netsim-fuzz-long")
    if n is None and os.environ.get("NETSIM_FUZZ_LONG"):
        n = int(os.environ["NETSIM_FUZZ_LONG"])
    if n:
        return FuzzBudget(rules_examples=n, verify_clusters=n, verify_flows=120, long=True)
    return FuzzBudget(rules_examples=40, verify_clusters=5, verify_flows=60, long=False)


# ---------------------------------------------------------------------------- every rendered rule set
# tests/rule_collector.py: every rule set any test renders is kept (deduplicated) and loaded into the
# kernel by the session's last test, tests/test_zz_rendered_rule_sets.py.
COLLECTOR_TEST = "test_zz_rendered_rule_sets.py"


def pytest_configure(config):
    from rule_collector import RuleSetCollector
    config.netsim_rule_sets = RuleSetCollector()
    config.netsim_rule_sets.install()


def pytest_unconfigure(config):
    collector = getattr(config, "netsim_rule_sets", None)
    if collector is not None:
        collector.uninstall()


def pytest_collection_modifyitems(session, config, items):
    last = [i for i in items if i.path.name == COLLECTOR_TEST]
    items[:] = [i for i in items if i.path.name != COLLECTOR_TEST] + last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    collector = getattr(item.config, "netsim_rule_sets", None)
    if collector is not None:
        collector.current_test = item.nodeid
    yield


@pytest.fixture(scope="session")
def rendered_rule_sets(request):
    """Everything the tests so far have rendered (tests/rule_collector.py)."""
    return request.config.netsim_rule_sets
