"""Expectation files checked against an emulator: netsim's own YAML list, or netassert v2 test files
read unchanged (github.com/controlplaneio/netassert, v2 README: a YAML list of tests with ``name``,
``type: k8s``, ``protocol``, ``targetPort``, ``exitCode`` 0/1, ``src.k8sResource`` and
``dst.k8sResource`` or ``dst.host.name``).

Own format, one entry per expectation::

    - name: frontend by name          # optional
      from: pod/client                # as `netsim trace --from`
      namespace: shop                 # of `from` (default: default)
      to: http://frontend/            # as `netsim trace --to`
      proto: tcp                      # optional
      expect: delivered               # delivered | rejected | dropped | unresolved | no_listener | no_route | ...
      pods: frontend-*                # delivered: the pod (name or glob) that must answer
      port: 8080                      # delivered: the port the server socket saw
      snat: false                     # delivered: source NATed (true), preserved (false) or this IP
      balanced: true                  # delivered: chi-square test over 1000 connections (or {n:, alpha:})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from netsim.control.docfields import ManifestError
from netsim.testing import DISPOSITIONS

if TYPE_CHECKING:
    from netsim.api import Emulator

OWN_FIELDS = ("name", "from", "namespace", "to", "proto", "expect", "pods", "port", "snat", "balanced")
NETASSERT_KINDS = ("deployment", "statefulset", "daemonset", "pod")


@dataclass
class Expectation:
    name: str
    src: str
    dst: str
    expect: str                             # a disposition (upper case)
    namespace: str = "default"
    proto: Optional[str] = None
    pods: Optional[str] = None
    port: Optional[int] = None
    snat: Union[bool, str, None] = None
    balanced: Optional[dict] = None         # {"n": int, "alpha": float}


@dataclass
class Result:
    expectation: Expectation
    mode: str
    ok: bool
    got: str                                # the disposition seen (or "ERROR")
    message: str = ""                       # why it failed: the expectation, then the trace


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


# ---------------------------------------------------------------------- reading
def read_expectations(path: str, emulator: "Emulator", fmt: str = "auto") -> list[Expectation]:
    """Parse an expectation file; ManifestError (one line, naming the entry) on bad input."""
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ManifestError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text file (expected a YAML list of expectations)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{path}:{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, list) or not data:
        raise ManifestError(f"{path}: expected a non-empty YAML list of expectations, got "
                            f"{type(data).__name__ if data is not None else 'nothing'}")
    if fmt == "auto":
        fmt = "netassert" if all(isinstance(e, dict) and "src" in e and "type" in e for e in data) else "netsim"
    out: list[Expectation] = []
    for i, entry in enumerate(data, 1):
        where = f"{path}: entry {i}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: expected a mapping, got {type(entry).__name__}")
        out += _netassert(entry, where, emulator) if fmt == "netassert" else [_own(entry, where, i)]
    return out


def _field(entry: dict, key: str, where: str, typ: Any, required: bool = False) -> Any:
    v = entry.get(key)
    if v is None:
        if required:
            raise ManifestError(f"{where}: {key}: Required value")
        return None
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ManifestError(f"{where}: {key}: expected {want}, got {type(v).__name__} {v!r}")
    return v


def _own(entry: dict, where: str, i: int) -> Expectation:
    unknown = sorted(set(entry) - set(OWN_FIELDS))
    if unknown:
        raise ManifestError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(OWN_FIELDS)})")
    expect = str(_field(entry, "expect", where, str, True)).upper()
    if expect not in DISPOSITIONS:
        raise ManifestError(f"{where}: expect: {entry['expect']!r}: expected one of "
                            f"{', '.join(d.lower() for d in DISPOSITIONS)}")
    proto = _field(entry, "proto", where, str)
    if proto is not None and proto.lower() not in ("tcp", "udp", "icmp"):
        raise ManifestError(f"{where}: proto: {proto!r}: expected tcp, udp or icmp")
    balanced = entry.get("balanced")
    if balanced is True:
        balanced = {"n": 1000, "alpha": 0.001}
    elif balanced in (None, False):
        balanced = None
    elif isinstance(balanced, dict) and set(balanced) <= {"n", "alpha"}:
        balanced = {"n": int(balanced.get("n", 1000)), "alpha": float(balanced.get("alpha", 0.001))}
    else:
        raise ManifestError(f"{where}: balanced: expected true or {{n: N, alpha: A}}, got {balanced!r}")
    extra = [k for k in ("pods", "port", "snat") if entry.get(k) is not None] + (["balanced"] if balanced else [])
    if expect != "DELIVERED" and extra:
        raise ManifestError(f"{where}: {extra[0]}: only meaningful with expect: delivered")
    src = _field(entry, "from", where, str, True)
    dst = _field(entry, "to", where, str, True)
    return Expectation(_field(entry, "name", where, str) or f"#{i} {src} -> {dst}", src, dst, expect,
                       _field(entry, "namespace", where, str) or "default", proto.lower() if proto else None,
                       _field(entry, "pods", where, str), _field(entry, "port", where, int),
                       _field(entry, "snat", where, (bool, str)), balanced)


def _netassert(entry: dict, where: str, em: "Emulator") -> list[Expectation]:
    """One netassert test → one expectation per source pod and destination pod (or host)."""
    name = _field(entry, "name", where, str, True)
    if _field(entry, "type", where, str, True) != "k8s":
        raise ManifestError(f"{where}: type: {entry['type']!r}: only k8s tests can be emulated")
    proto = str(_field(entry, "protocol", where, str, True)).lower()
    if proto not in ("tcp", "udp"):
        raise ManifestError(f"{where}: protocol: {entry['protocol']!r}: expected tcp or udp")
    port = _field(entry, "targetPort", where, int, True)
    if not 0 < port < 65536:
        raise ManifestError(f"{where}: targetPort: {port}: expected 1-65535")
    code = _field(entry, "exitCode", where, int, True)
    if code not in (0, 1):
        raise ManifestError(f"{where}: exitCode: {code}: expected 0 (connects) or 1 (does not)")
    src = _field(entry, "src", where, dict, True)
    dst = _field(entry, "dst", where, dict, True)
    sources = _workload_pods(src.get("k8sResource"), f"{where}: src.k8sResource", em)
    if isinstance(dst.get("k8sResource"), dict):
        targets = [(f"{p.ip}:{port}", key) for key, p in _workload_pods(dst["k8sResource"],
                                                                        f"{where}: dst.k8sResource", em, pods=True)]
    elif isinstance(dst.get("host"), dict) and isinstance(dst["host"].get("name"), str):
        targets = [(f"{dst['host']['name']}:{port}", dst["host"]["name"])]
    else:
        raise ManifestError(f"{where}: dst: expected k8sResource {{kind, name, namespace}} or host {{name}}")
    expect = "DELIVERED" if code == 0 else "NOT_DELIVERED"
    out = []
    for src_key, _pod in sources:
        ns, pod_name = src_key.split("/", 1)
        for to, label in targets:
            out.append(Expectation(f"{name} ({src_key} -> {label})", f"pod/{pod_name}", to, expect, ns, proto))
    return out


def _workload_pods(ref: Any, where: str, em: "Emulator", pods: bool = False) -> list:
    if not isinstance(ref, dict):
        raise ManifestError(f"{where}: expected a mapping with kind, name, namespace")
    kind = str(ref.get("kind", "")).lower()
    name, ns = ref.get("name"), ref.get("namespace")
    if kind not in NETASSERT_KINDS or not isinstance(name, str) or not isinstance(ns, str):
        raise ManifestError(f"{where}: expected kind ({', '.join(NETASSERT_KINDS)}), name and namespace")
    cluster = em._cluster                     # read only
    if kind == "pod":
        found = [p for p in cluster.pods(ns) if p.name == name]
    else:
        found = [p for p in cluster.pods(ns) if p.owner and p.owner[1] == name and not p.terminating]
    found = [p for p in found if p.ip]
    if not found:
        raise ManifestError(f"{where}: no running pod of {kind} {ns}/{name} in the manifests")
    return [(p.key, p) for p in sorted(found, key=lambda p: p.name)]


# ---------------------------------------------------------------------- checking
def run(em: "Emulator", expectations: list[Expectation], modes: list[str]) -> Report:
    """Each expectation in each mode, on a fresh copy of ``em`` (order never matters)."""
    from netsim.testing import assert_balanced, assert_reachable, assert_unreachable, attempt
    report = Report()
    for mode in modes:
        for e in expectations:
            c = em.copy()
            try:
                if e.expect == "DELIVERED":
                    t = assert_reachable(c, e.src, e.dst, pod=e.pods, port=e.port, snat=e.snat, proto=e.proto,
                                         namespace=e.namespace, mode=mode)
                    if e.balanced:
                        assert_balanced(c, e.src, e.dst, pods=[e.pods] if e.pods else None, n=e.balanced["n"],
                                        alpha=e.balanced["alpha"], proto=e.proto, namespace=e.namespace, mode=mode)
                    got = t.outcome.disposition
                elif e.expect == "NOT_DELIVERED":
                    got = assert_unreachable(c, e.src, e.dst, proto=e.proto, namespace=e.namespace,
                                             mode=mode).disposition
                else:
                    got = assert_unreachable(c, e.src, e.dst, outcome=e.expect, proto=e.proto,
                                             namespace=e.namespace, mode=mode).disposition
                report.results.append(Result(e, mode, True, str(got)))
            except AssertionError as err:
                got = attempt(em.copy(), e.src, e.dst, proto=e.proto, namespace=e.namespace, mode=mode).disposition
                report.results.append(Result(e, mode, False, got, str(err)))
            except ValueError as err:
                report.results.append(Result(e, mode, False, "ERROR", str(err)))
    return report


def render_table(report: Report) -> str:
    from netsim.control.events import format_table
    rows = [["PASS" if r.ok else "FAIL", r.mode, r.expectation.name, r.expectation.expect.lower(), r.got.lower()]
            for r in report.results]
    n_fail = len(report.failed)
    return (format_table(["RESULT", "MODE", "EXPECTATION", "EXPECTED", "GOT"], rows) +
            f"\n{len(report.results) - n_fail} passed, {n_fail} failed")


def render_tap(report: Report) -> str:
    """TAP version 14 (testanything.org), as netassert prints its results: a failure's YAML block
    says what was expected and holds the trace."""
    lines = ["TAP version 14", f"1..{len(report.results)}"]
    for i, r in enumerate(report.results, 1):
        name = f"{r.expectation.name} [{r.mode}]"
        lines.append(f"{'ok' if r.ok else 'not ok'} {i} - {name}")
        if not r.ok:
            lines += ["  ---", f"  expected: {r.expectation.expect.lower()}", f"  got: {r.got.lower()}",
                      "  message: |"] + [f"    {line}" for line in r.message.splitlines()] + ["  ..."]
    return "\n".join(lines)
