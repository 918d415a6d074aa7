"""Hostile or accidental input cannot run for minutes or exhaust memory (netsim.control.inputread): a bound on
bytes (streamed, so /dev/zero is never read whole), on YAML values, and kubectl's rule against
excessive alias expansion; `-f -` reads standard input; a source without objects is said so.

The fuzz cases run `netsim` in a child process under RLIMIT_AS (1 GiB) and RLIMIT_CPU (60 s): a case
that ran away would be killed and fail; the child's peak RSS is checked
against a bound as well (os.wait4's rusage of that child). These are resource bounds, not speed assertions.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netsim.control.docfields import ManifestError
from netsim.control.inputread import InputLimits, estimate_values, parse_size, yaml_documents
from netsim.control.manifests import example_path

NETSIM = [sys.executable, "-c", "import sys; from netsim.cli.main import cli; sys.exit(cli())"]
AS_LIMIT = 1 << 30
CPU_SECONDS = 60
RSS_BOUND_MIB = 600


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def run_bounded(args: list[str], stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`netsim ARGS` in a child under the limits; its own peak RSS (os.wait4's rusage) is bounded too."""
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin or b"")
        fin.seek(0)
        child = subprocess.Popen([*NETSIM, *args], stdin=fin, stdout=fout, stderr=ferr, preexec_fn=_limits,
                                 env={**os.environ, **(env or {})})
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    assert child.returncode >= 0, f"killed by signal {-child.returncode} (a resource limit was hit)"
    assert usage.ru_maxrss / 1024 < RSS_BOUND_MIB, f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB"
    return subprocess.CompletedProcess(args, child.returncode, out, err)


def one_line_error(r: subprocess.CompletedProcess, text: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 2, (r.returncode, err[-500:])
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err[-500:]
    assert text in err, err


def bomb(width: int, depth: int, kind: str, where: str) -> str:
    """A billion-laughs document: each level an anchored list (or map, or merge) of `width` aliases."""
    def level(i: int) -> str:
        if i == 0:
            return "[" + ", ".join(["lol"] * width) + "]"
        if kind == "seq":
            return "[" + ", ".join([f"*a{i - 1}"] * width) + "]"
        if kind == "map":
            return "{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}"
        return "{<<: *a" + str(i - 1) + ", " + ", ".join(f"k{j}: *a{i - 1}" for j in range(width)) + "}"
    if kind == "merge":       # merge keys need mappings all the way down
        anchors = [f"a0: &a0 {{" + ", ".join(f"z{j}: lol" for j in range(width)) + "}"]
        anchors += [f"a{i}: &a{i} {level(i)}" for i in range(1, depth)]
    else:
        anchors = [f"a{i}: &a{i} {level(i)}" for i in range(depth)]
    body = "\n".join("    " + a for a in anchors)
    if where == "labels":
        return f"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n{body}\nspec:\n  ports: [{{port: 80}}]\n"
    if where == "template":
        return ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n"
                f"  template:\n    metadata: {{labels: {{app: web}}}}\n    x-bomb:\n{body}\n")
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n{body}\n"


# ---------------------------------------------------------------------------- in process
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(2, 12), depth=st.integers(3, 14), kind=st.sampled_from(["seq", "map", "merge"]),
       where=st.sampled_from(["labels", "template", "data"]))
def test_alias_bombs_are_refused_by_kubectls_rule(width, depth, kind, where):
    text = bomb(width, depth, kind, where)
    expanded = width ** depth
    if expanded < 200_000:
        return                       # small enough that kubectl's decoder takes it too
    with pytest.raises(ManifestError, match=r"document 1: excessive YAML aliasing"):
        list(yaml_documents("bomb.yaml", text, InputLimits()))


def test_ordinary_anchors_load():
    """YAML anchors used the way people use them (a shared template, a few aliases) are fine."""
    text = ("common: &labels {app: web, tier: front}\n" + "\n".join(f"s{i}: *labels" for i in range(500))
            + "\n" + "\n".join(f"k{i}: {i}" for i in range(2000)))
    (doc,) = yaml_documents("ok.yaml", text, InputLimits())
    assert doc["s499"] == {"app": "web", "tier": "front"} and doc["k1999"] == 1999


def test_value_estimate_bounds_the_real_count():
    text = Path(example_path("shop")).read_text()
    import yaml

    def count(node) -> int:
        if not isinstance(node.value, list):
            return 1
        return 1 + sum(count(item[0]) + count(item[1]) if isinstance(item, tuple) else count(item)
                       for item in node.value)
    real = sum(count(n) for n in yaml.compose_all(text, Loader=yaml.SafeLoader))
    assert real <= estimate_values(text) < 3 * real


def test_sizes_parse_as_kubernetes_quantities():
    assert [parse_size(s) for s in ("64Mi", "500M", "1Gi", "1048576", "10ki")] == [64 << 20, 500 * 10**6, 1 << 30,
                                                                                   1 << 20, 10 << 10]
    with pytest.raises(ValueError, match="expected a size"):
        parse_size("lots")


# ---------------------------------------------------------------------------- the CLI, bounded
def test_dev_zero_is_refused_at_once():
    one_line_error(run_bounded(["get", "pods", "-f", "/dev/zero"]), "/dev/zero: not a text file (expected YAML)")


def test_endless_text_stops_at_the_byte_limit_and_the_limit_can_be_raised():
    big = b"a" * ((64 << 20) + 10)
    one_line_error(run_bounded(["get", "pods", "-f", "-"], big), "stdin: more than 64 MiB of input")
    small = b"a" * (3 << 20)
    one_line_error(run_bounded(["get", "pods", "-f", "-", "--max-input-bytes", "2Mi"], small),
                   "stdin: more than 2 MiB of input (the limit; raise it with --max-input-bytes")
    one_line_error(run_bounded(["get", "pods", "-f", "-"], small, env={"NETSIM_MAX_INPUT_BYTES": "1Mi"}),
                   "stdin: more than 1 MiB of input")
    # raised: the same input now reaches the YAML parser (and is not a Kubernetes object)
    one_line_error(run_bounded(["get", "pods", "-f", "-", "--max-input-bytes", "4Mi"], small),
                   "stdin: document 1: expected a mapping")


def test_millions_of_tiny_values_are_refused_before_parsing():
    many = b"a: [" + b"0," * 1_200_000 + b"0]\n"
    one_line_error(run_bounded(["get", "pods", "-f", "-"], many), "more than the limit of 1,000,000 (raise it with "
                                                                  "--max-yaml-values")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(width=st.integers(5, 20), depth=st.integers(8, 30), kind=st.sampled_from(["seq", "map", "merge"]),
       where=st.sampled_from(["labels", "template", "data"]))
def test_alias_bombs_through_the_cli_stay_bounded(tmp_path, width, depth, kind, where):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(width, depth, kind, where))
    one_line_error(run_bounded(["trace", "-f", str(f), "--from", "external", "--to", "10.96.0.10:53"]),
                   "excessive YAML aliasing")


def test_stdin_and_empty_sources(tmp_path):
    text = Path(example_path("httpd-app")).read_bytes()
    r = run_bounded(["get", "svc", "-f", "-"], text)
    assert r.returncode == 0 and b"httpd-app" in r.stdout, r.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n---\n")
    one_line_error(run_bounded(["get", "pods", "-f", str(empty)]),
                   f"{empty}: no objects in the input (empty, or only comments and '---'")
    r = run_bounded(["get", "pods", "-f", str(empty), "-f", "example:httpd-app"])
    assert r.returncode == 0 and f"warning: {empty}: no objects in it".encode() in r.stderr


def test_rule_dumps_are_read_under_the_same_bounds():
    one_line_error(run_bounded(["iptables", "replay", "--dump", "/dev/zero", "--src", "1.1.1.1", "--dst", "2.2.2.2:80"]),
                   "/dev/zero: not a text file (expected iptables-save output)")
