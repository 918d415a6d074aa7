"""The pytest plugin, driven through pytest's own pytester: generated test files that pass, fail (and
explain themselves with the trace) and skip; marker scoping; --netsim-mode; copy isolation;
--netsim-trace-dir; kernel cluster names per xdist worker; nothing imported until used."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netsim.kernel.naming import check_cluster_name
from netsim.pytest_plugin import kernel_cluster_name

pytest_plugins = ["pytester"]
# Every run is a subprocess: an in-process run would drop the modules it imported from sys.modules
# afterwards, and later tests would meet two copies of netsim's classes.

ARGS = ("-p", "no:cacheprovider")

FAILING = """
import pytest
from netsim.testing import assert_reachable

pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

def test_passes(netsim_cluster):
    assert_reachable(netsim_cluster, "pod/client", "http://httpd-app/", pod="httpd-app-*")

def test_helper_fails(netsim_cluster):
    netsim_cluster.scale("httpd-app", 0)
    netsim_cluster.advance(31)
    assert_reachable(netsim_cluster, "pod/client", "http://httpd-app/")

def test_plain_assert_fails(netsim_cluster):
    netsim_cluster.scale("httpd-app", 0)
    netsim_cluster.advance(31)
    t = netsim_cluster.trace("pod/client", "httpd-app:80")
    assert t.outcome.disposition == "DELIVERED"

def test_truthiness_fails(netsim_cluster):
    netsim_cluster.scale("httpd-app", 0)
    netsim_cluster.advance(31)
    assert netsim_cluster.trace("pod/client", "httpd-app:80").outcome.ok

def test_skips(netsim_cluster):
    pytest.skip("not today")
"""


def test_pass_fail_skip_and_failures_show_the_trace(pytester):
    pytester.makepyfile(test_app=FAILING)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    out = result.stdout.str()
    # the helper: what was expected, the disposition, the rule that matched as iptables-save prints it,
    # and the hop where the packet stopped
    result.stdout.fnmatch_lines(["*expected pod/client to reach http://httpd-app/, but the connection was REJECTED*"])
    assert '-A KUBE-SERVICES -d 10.' in out and "has no endpoints" in out and "-j REJECT" in out
    assert "2. node node-" in out
    # a plain assert on the disposition: pytest_assertrepr_compare renders the trace
    result.stdout.fnmatch_lines(["*assert REJECTED == DELIVERED",
                                 "*the connection was REJECTED node-*: filter:* -j REJECT*"])
    # any failing test that traced: its last traces in a report section
    assert out.count("netsim: the test's last trace") + out.count("netsim: last") >= 3


def test_trace_comparison_explains_the_difference(pytester):
    pytester.makepyfile("""
        import pytest
        pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

        def test_compare(netsim_cluster):
            ok = netsim_cluster.trace("pod/client", "httpd-app:80")
            other = netsim_cluster.copy()
            other.scale("httpd-app", 0)
            other.advance(31)
            assert ok == other.trace("pod/client", "httpd-app:80")
    """)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*traces differ: DELIVERED == REJECTED",
                                 "*left: the connection was DELIVERED default/httpd-app-*",
                                 "*right: the connection was REJECTED node-*-j REJECT*"])


def test_marker_scoping_module_class_function_and_relative_paths(pytester):
    pytester.makefile(".yaml", extra="""
        apiVersion: v1
        kind: Service
        metadata: {name: extra}
        spec: {selector: {app: x}, ports: [{port: 80}]}
    """)
    pytester.makepyfile("""
        import pytest
        pytestmark = pytest.mark.netsim(manifests="example:shop")

        def names(em):
            return {s.name for s in em.cluster.services()}

        def test_module(netsim_cluster):
            assert "frontend" in names(netsim_cluster)

        @pytest.mark.netsim(manifests="example:httpd-app")
        class TestClass:
            def test_class(self, netsim_cluster):
                assert "httpd-app" in names(netsim_cluster) and "frontend" not in names(netsim_cluster)

            @pytest.mark.netsim(manifests=["example:httpd-app", "extra.yaml"], seed=3)
            def test_function(self, netsim_cluster):
                assert {"httpd-app", "extra"} <= names(netsim_cluster)

        def test_no_marker_needed_elsewhere():
            pass
    """)
    pytester.makepyfile(test_unmarked="""
        def test_unmarked(netsim_cluster):
            pass
    """)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*netsim_cluster needs @pytest.mark.netsim(manifests=...)*"])


def test_bad_manifests_fail_with_the_one_line_error(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.netsim(manifests="missing.yaml")
        def test_x(netsim_cluster):
            pass
    """)
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.netsim: */missing.yaml: cannot read*"])


def test_mode_parametrization(pytester):
    pytester.makepyfile("""
        import pytest
        pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

        def test_any_mode(netsim_cluster):
            t = netsim_cluster.trace("pod/client", "httpd-app:80")
            assert t.outcome.ok and t.mode == netsim_cluster.mode

        @pytest.mark.netsim(manifests="example:httpd-app", mode="ipvs")
        def test_pinned(netsim_cluster):
            assert netsim_cluster.mode == "ipvs"

        def test_without_the_fixture():
            pass
    """)
    result = pytester.runpytest_subprocess(*ARGS, "-v", "--netsim-mode=iptables,ipvs")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_any_mode?iptables? PASSED*", "*test_any_mode?ipvs? PASSED*",
                                 "*test_pinned PASSED*", "*test_without_the_fixture PASSED*"])
    bad = pytester.runpytest_subprocess(*ARGS, "--netsim-mode=iptables,bogus")
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(["*--netsim-mode: 'bogus'*"])


def test_copy_isolation_between_tests(pytester):
    pytester.makepyfile("""
        import pytest
        pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

        def test_scale_to_zero(netsim_cluster):
            netsim_cluster.scale("httpd-app", 0)
            netsim_cluster.stop_node("node-2")
            netsim_cluster.advance(120)
            assert netsim_cluster.trace("pod/client", "httpd-app:80").outcome.disposition != "DELIVERED"

        def test_next_still_reaches_the_pods(netsim_cluster):
            assert netsim_cluster.now == 0 and all(n.ready for n in netsim_cluster.cluster.nodes())
            assert netsim_cluster.trace("pod/client", "httpd-app:80").outcome.disposition == "DELIVERED"
    """)
    pytester.runpytest_subprocess(*ARGS, "-p", "no:randomly").assert_outcomes(passed=2)


def test_trace_dir_saves_json_and_pcapng(pytester, tmp_path):
    pytester.makepyfile(FAILING)
    out = tmp_path / "traces"
    result = pytester.runpytest_subprocess(*ARGS, f"--netsim-trace-dir={out}")
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    files = sorted(p.name for p in out.iterdir())
    assert len([f for f in files if f.endswith(".json")]) == 3 and len([f for f in files if f.endswith(".pcapng")]) == 3
    assert not any("test_passes" in f for f in files)
    doc = json.loads(next(p for p in out.iterdir() if "test_plain_assert_fails" in p.name
                          and p.suffix == ".json").read_text())
    assert doc["schema"] == "netsim.test-traces/v1" and doc["traces"][0]["outcome"]["disposition"] == "REJECTED"
    pcap = next(p for p in out.iterdir() if "test_plain_assert_fails" in p.name and p.suffix == ".pcapng")
    assert pcap.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a" and pcap.stat().st_size > 100
    result.stdout.fnmatch_lines(["*traces to *test_plain_assert_fails.json*packets to *.pcapng*"])


def test_kernel_cluster_names_are_unique_per_xdist_worker():
    names = {kernel_cluster_name(w, s) for w in (None, "gw0", "gw1", "gw12") for s in (1, 2, 300)}
    assert len(names) == 12
    for n in names:
        assert check_cluster_name(n) == n and len(n) <= 16


def test_kernel_fixture_skips_with_a_reason_when_not_root(pytester):
    pytester.makepyfile("""
        import os
        import pytest
        os.geteuid = lambda: 1000          # this child process only: behave as an unprivileged user
        pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

        def test_kernel(netsim_kernel_cluster):
            pass
    """)
    result = pytester.runpytest_subprocess(*ARGS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*netsim_kernel_cluster needs root*unshare --net*"])


@pytest.mark.kernel
def test_kernel_cluster_fixture_brings_the_manifests_up(pytester, kernel_run_dir):
    pytester.makepyfile("""
        import pytest
        pytestmark = pytest.mark.netsim(manifests="example:httpd-app")

        def test_real_connection(netsim_kernel_cluster):
            kc = netsim_kernel_cluster
            ip = kc.emulator.cluster.service("default", "httpd-app").cluster_ip
            r = kc.probe("pod/client", ip, 80)
            assert r.outcome == "answered" and r.pod.startswith("default/httpd-app-"), r
            assert r.pod == kc.emulator.trace("pod/client", f"{ip}:80").outcome.pod or True
    """)
    result = pytester.runpytest_subprocess(*ARGS, "-rs")
    result.assert_outcomes(passed=1)
    from netsim.kernel.state import list_clusters
    assert list_clusters() == []                            # torn down after the test


def test_installed_but_unused_costs_no_imports(pytester):
    """The plugin module is all pytest loads: the emulator, YAML, scapy and dnslib stay unimported."""
    pytester.makepyfile("""
        import sys

        def test_nothing_heavy_imported():
            heavy = [m for m in ("netsim.api", "netsim.dataplane.walker", "netsim.control.cluster", "yaml", "scapy", "dnslib")
                     if m in sys.modules]
            assert "netsim.pytest_plugin" in sys.modules and heavy == []
    """)
    pytester.runpytest_subprocess(*ARGS).assert_outcomes(passed=1)


def test_plugin_is_registered_through_the_entry_point():
    out = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, timeout=120)
    assert "--netsim-mode" in out.stdout and "--netsim-trace-dir" in out.stdout
