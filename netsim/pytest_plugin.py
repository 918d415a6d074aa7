"""The pytest plugin (entry point ``pytest11``: installed = available, no conftest needed).

    @pytest.mark.netsim(manifests="k8s/", mode=None, seed=None)   # on a test, class or module
    def test_frontend(netsim_cluster):
        assert_reachable(netsim_cluster, "pod/client", "http://frontend/")

* ``netsim_cluster``: an ``netsim.Emulator`` for the nearest ``netsim`` marker, loaded once per
  session per (manifests, mode, seed) and handed to each test as ``copy()``.
* ``--netsim-mode=iptables,ipvs``: tests using ``netsim_cluster`` whose marker names no mode run
  once per listed mode (ids ``[iptables]``, ``[ipvs]``).
* ``netsim_kernel_cluster``: the same manifests brought up in real network namespaces.
* ``--netsim-trace-dir DIR``: each failing test's traces saved as JSON and pcapng.
* A failing test that traced shows its last trace; ``assert t.outcome.disposition == "DELIVERED"``
  and comparisons of traces explain themselves with the trace.

Nothing from netsim is imported until a test uses it: pytest start-up pays only for this module.
"""
from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

MARKER = ("netsim(manifests, mode=None, seed=None): the cluster the netsim_cluster and netsim_kernel_cluster "
          "fixtures load — paths (relative to the test file), example:NAME or YAML text, or a list of them")
_CACHE = pytest.StashKey[dict]()
_TRACES = pytest.StashKey[Any]()
_SHOWN = 3                               # traces a failing test shows


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netsim", "kube-netsim network assertions")
    group.addoption("--netsim-mode", default=None, metavar="MODES",
                    help="Comma-separated kube-proxy modes (iptables,ipvs): tests using netsim_cluster without "
                         "an explicit mode= run once per mode.")
    group.addoption("--netsim-trace-dir", default=None, metavar="DIR",
                    help="Save each failing test's traces there as JSON and pcapng.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    config.stash[_CACHE] = {}
    _modes(config)                                   # a bad --netsim-mode is a usage error at once


def _modes(config: pytest.Config) -> list[str]:
    value = config.getoption("--netsim-mode")
    if not value:
        return []
    from netsim.rules import registry
    modes = [m.strip() for m in value.split(",") if m.strip()]
    for m in modes:
        if m not in registry.available_modes(walks_packets=True):
            raise pytest.UsageError(f"--netsim-mode: {m!r}: expected a comma-separated list of "
                                    f"{', '.join(registry.available_modes(kube_proxy_only=True, walks_packets=True))}")
    return modes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "netsim_cluster" not in metafunc.fixturenames:
        return
    modes = _modes(metafunc.config)
    marker = metafunc.definition.get_closest_marker("netsim")
    if not modes or marker is None or _marker_args(marker)[1] is not None:
        return
    metafunc.parametrize("netsim_mode", modes, ids=modes, scope="function")


@pytest.fixture
def netsim_mode(request: pytest.FixtureRequest) -> Optional[str]:
    """The proxy mode --netsim-mode chose for this test (None: the marker's or the manifests')."""
    return getattr(request, "param", None)


def _marker_args(marker: pytest.Mark) -> tuple[Any, Optional[str], Optional[int]]:
    kw = dict(marker.kwargs)
    manifests = kw.pop("manifests", marker.args[0] if marker.args else None)
    mode = kw.pop("mode", None)
    seed = kw.pop("seed", None)
    if kw:
        raise pytest.UsageError(f"@pytest.mark.netsim: unknown argument(s) {', '.join(sorted(kw))} "
                                "(expected manifests, mode, seed)")
    return manifests, mode, seed


def _sources(request: pytest.FixtureRequest) -> tuple[tuple[str, ...], Optional[str], Optional[int]]:
    marker = request.node.get_closest_marker("netsim")
    if marker is None:
        pytest.fail(f"{request.fixturename} needs @pytest.mark.netsim(manifests=...) on the test, its class or "
                    "its module (pytestmark)", pytrace=False)
    manifests, mode, seed = _marker_args(marker)
    if manifests is None:
        pytest.fail("@pytest.mark.netsim: manifests= is required", pytrace=False)
    items = manifests if isinstance(manifests, (list, tuple)) else [manifests]
    base = Path(str(request.node.path)).parent
    out = []
    for m in items:
        s = os.fspath(m)
        if "\n" not in s and not s.startswith("example:") and not os.path.isabs(s):
            s = str(base / s)
        out.append(s)
    return tuple(out), mode, seed


def _base_emulator(config: pytest.Config, key: tuple) -> Any:
    """The session's emulator for (sources, mode, seed): loaded, every node's rules rendered once."""
    cache = config.stash[_CACHE]
    got = cache.get(key)
    if got is None:
        import netsim
        sources, mode, seed = key
        import gc
        # the session keeps this emulator to its end: its store, then its rules, go out of every
        # later collection (gc.freeze, as the one-shot `netsim` command does after each build; at
        # 10,000 Services a pass walks millions of objects and finds none dead). The collector stays
        # off until then: switched back on at the end of the load, it would walk everything the load
        # made (all of it still in the youngest generation) at the next allocation, before the freeze.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            em = netsim.load(*sources, mode=mode, seed=seed)
            gc.freeze()
            em.prepare()
            gc.freeze()
            got = ("ok", em)
        except (netsim.ManifestError, ValueError) as e:
            got = ("error", f"@pytest.mark.netsim: {e}")
        finally:
            if was_enabled:
                gc.enable()
        cache[key] = got
    if got[0] == "error":
        pytest.fail(got[1], pytrace=False)
    return got[1]


@pytest.fixture
def netsim_cluster(request: pytest.FixtureRequest, netsim_mode: Optional[str]) -> Iterator[Any]:
    """An Emulator for the nearest ``netsim`` marker: the session's cached load, as a copy of its own."""
    sources, mode, seed = _sources(request)
    em = _base_emulator(request.config, (sources, mode or netsim_mode, seed)).copy()
    _record(request, em)
    yield em


def _record(request: pytest.FixtureRequest, em: Any) -> None:
    """Keep the test's traces: all of them with --netsim-trace-dir (captured for pcapng), else the last few."""
    full = bool(request.config.getoption("--netsim-trace-dir"))
    log: Any = [] if full else deque(maxlen=_SHOWN)
    em._recorder = log
    em._capture_all = full
    request.node.stash[_TRACES] = (em, log)


# ---------------------------------------------------------------------- the kernel backend
class KernelTestCluster:
    """A kernel cluster for one test: ``emulator`` (the same manifests, emulated), ``kernel``
    (``netsim.kernel.build.KernelCluster``), ``netns(src)`` and ``probe(src, ip, port)``."""

    def __init__(self, emulator: Any, kernel: Any) -> None:
        self.emulator = emulator
        self.kernel = kernel
        self.name = kernel.name

    def netns(self, src: str, namespace: str = "default") -> str:
        """The network namespace of ``pod/NAME``, ``node/NAME`` or ``external``."""
        st = self.kernel.state
        kind, _, name = src.partition("/")
        if kind == "pod" and f"{namespace}/{name}" in st.pods:
            return st.pods[f"{namespace}/{name}"].netns
        if kind == "node" and name in st.nodes:
            return st.nodes[name]
        if src == "external" and st.external_netns:
            return st.external_netns
        raise ValueError(f"{src}: no such pod, node or external host in kernel cluster {self.name}")

    def probe(self, src: str, ip: str, port: int, proto: str = "TCP", namespace: str = "default",
              timeout: float = 2.0) -> Any:
        """One real connection from ``src`` (``netsim.kernel.probe.ProbeResult``: outcome answered,
        refused, unreachable, timeout; ``pod`` that answered)."""
        from netsim.kernel.probe import probe
        return probe(self.netns(src, namespace), ip, port, proto.upper(), timeout=timeout)


def _kernel_skip_reason() -> Optional[str]:
    import shutil
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "netsim_kernel_cluster needs root to create network namespaces (run pytest as root under " \
               "`unshare --net --mount`)"
    for tool in ("ip", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"netsim_kernel_cluster needs `{tool}`, which is not installed"
    return None


def kernel_cluster_name(worker: Optional[str], serial: int) -> str:
    """A kernel cluster name unique per pytest-xdist worker and test: ``nt<worker>-<pid>-<n>`` fitted to
    16 characters (the kernel backend's limit; it prefixes every namespace and link)."""
    w = re.sub(r"[^0-9]", "", worker or "") or "m"
    return f"nt{w}-{os.getpid() % 100000:x}-{serial:x}"[:16].rstrip("-")


@pytest.fixture
def netsim_kernel_cluster(request: pytest.FixtureRequest, netsim_mode: Optional[str]) -> Iterator[KernelTestCluster]:
    """The marker's manifests brought up in real network namespaces (kernel backend), torn down after
    the test even when it fails; skipped with the reason where namespaces cannot be made."""
    reason = _kernel_skip_reason()
    if reason:
        pytest.skip(reason)
    sources, mode, seed = _sources(request)
    em = _base_emulator(request.config, (sources, mode or netsim_mode, seed)).copy()
    _record(request, em)
    from netsim.kernel import netns
    from netsim.kernel.build import KernelBackendError, KernelCluster
    cache = request.config.stash[_CACHE]
    serial = cache["kernel-serial"] = cache.get("kernel-serial", 0) + 1
    name = kernel_cluster_name(os.environ.get("PYTEST_XDIST_WORKER"), serial)
    probe_ns = f"{name}-probe"
    try:
        netns.create(probe_ns)
    except Exception as e:                                      # noqa: BLE001 - any reason to skip
        pytest.skip(f"netsim_kernel_cluster: cannot create a network namespace: {e}")
    finally:
        netns.remove(probe_ns)
    try:
        kc = KernelCluster.up(em.cluster, name, sources=list(sources))
    except KernelBackendError as e:
        pytest.fail(f"netsim_kernel_cluster: {e}", pytrace=False)
    try:
        yield KernelTestCluster(em, kc)
    finally:
        kc.down()


# ---------------------------------------------------------------------- failures explain themselves
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    got = item.stash.get(_TRACES, None)
    if got is None or not report.failed:
        return
    em, log = got
    traces = list(log)
    if not traces:
        return
    shown = traces[-_SHOWN:]
    report.sections.append((f"netsim: last {len(shown)} of the test's traces" if len(shown) > 1
                            else "netsim: the test's last trace", "\n\n".join(t.render() for t in shown)))
    trace_dir = item.config.getoption("--netsim-trace-dir")
    if trace_dir and report.when == "call":
        where = _save_traces(Path(trace_dir), item.nodeid, em, traces)
        report.sections.append(("netsim: traces saved", where))


def _save_traces(d: Path, nodeid: str, em: Any, traces: list) -> str:
    import json
    d.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")
    js = d / f"{stem}.json"
    js.write_text(json.dumps({"schema": "netsim.test-traces/v1", "test": nodeid,
                              "traces": [t.to_dict() for t in traces]}, indent=2))
    pcap = d / f"{stem}.pcapng"
    n = em.write_pcap(pcap, traces)
    return f"{len(traces)} traces to {js}, {n} packets to {pcap}"


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: Any, right: Any) -> Optional[list[str]]:
    """``assert t.outcome.disposition == "DELIVERED"`` (the disposition knows its trace) and
    comparisons of traces or outcomes: the expectation, then the trace."""
    import sys
    trace_mod = sys.modules.get("netsim.dataplane.trace")
    if trace_mod is None or op not in ("==", "!="):
        return None
    for a, b in ((left, right), (right, left)):
        if isinstance(a, trace_mod.Disposition) and a.trace is not None:
            # pytest shows the first lines only (unless -vv): say where and why it stopped first
            return [f"{left!s} {op} {right!s}", _where(a.trace), "", *a.trace.render().splitlines()]
        if isinstance(a, trace_mod.Trace) and isinstance(b, trace_mod.Trace):
            return [f"traces differ: {left.outcome.disposition} {op} {right.outcome.disposition}",
                    "left: " + _where(left), "right: " + _where(right), _outcome_diff(left.outcome, right.outcome),
                    "", "left:", *left.render().splitlines(), "", "right:", *right.render().splitlines()]
        if isinstance(a, trace_mod.Outcome) and isinstance(b, trace_mod.Outcome):
            lines = [f"outcomes differ: {left.disposition} {op} {right.disposition}",
                     _outcome_diff(left, right)]
            for o in (left, right):
                t = getattr(o.disposition, "trace", None)
                if t is not None:
                    lines += ["", *t.render().splitlines()]
            return lines
    return None


def _where(t: Any) -> str:
    o = t.outcome
    at = f" {o.pod or o.host}" if (o.pod or o.host) else ""
    return f"the connection was {o.disposition}{at}" + (f": {o.detail}" if o.detail else "")


def _outcome_diff(a: Any, b: Any) -> str:
    if a is None or b is None:
        return f"{a!r} vs {b!r}"
    da, db = a.to_dict(), b.to_dict()
    diff = [f"{k}: {da[k]!r} != {db[k]!r}" for k in da if da[k] != db.get(k)]
    return "; ".join(diff) or "same outcome (the hops differ)"
