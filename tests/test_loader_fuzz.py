"""Property: whatever the loader is given, it returns a valid cluster or raises one clean ManifestError
(one line) — never another exception. Inputs: the built-in examples' documents with fields dropped or
replaced by wrong types, random YAML-ish structures, and raw garbage text.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from netsim.control.cluster import Cluster
from netsim.control.manifests import ManifestError, example_path, list_examples, load_text

EXAMPLE_DOCS = [d for n in list_examples() for d in yaml.safe_load_all(Path(example_path(n)).read_text()) if d]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["None", "TCP", "UDP", "http", "10.96.0.10", "0",
                                                          "-1", "30080", "Local", "ClientIP", "", "a/b", "é"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def paths(obj, prefix=()):
    """Every (container, key) path inside a document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield prefix + (i,)
            yield from paths(v, prefix + (i,))


def mutate(doc, path, action, value):
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if action == "drop":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    else:
        parent[key] = value


def check(text: str) -> None:
    try:
        cluster = load_text(text, "fuzz.yaml")
    except ManifestError as e:
        msg = str(e)
        assert msg.startswith("fuzz.yaml") and "\n" not in msg, msg
        return
    assert isinstance(cluster, Cluster)
    for svc in cluster.services():                       # a valid cluster is internally consistent
        assert svc.type == "ExternalName" or svc.cluster_ip


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_example_documents(data):
    docs = copy.deepcopy(EXAMPLE_DOCS)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(docs) - 1))
        all_paths = list(paths(docs[i]))
        if not all_paths:
            continue
        path = data.draw(st.sampled_from(all_paths))
        mutate(docs[i], path, data.draw(st.sampled_from(["drop", "replace"])), data.draw(values))
    keep = data.draw(st.lists(st.integers(0, len(docs) - 1), min_size=1, max_size=6, unique=True))
    check(yaml.safe_dump_all([docs[i] for i in sorted(keep)], allow_unicode=True))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "items",
                                                 "endpoints", "ports", "addressType"]), values, max_size=5),
                max_size=3),
       st.sampled_from([("v1", "Service"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "List"),
                        ("discovery.k8s.io/v1", "EndpointSlice"), ("netsim.io/v1", "Cluster"), ("v1", "Namespace"),
                        ("apps/v1", "StatefulSet")]))
def test_random_structures_with_real_kinds(docs, kind):
    for d in docs:
        d.setdefault("apiVersion", kind[0])
        d.setdefault("kind", kind[1])
    check(yaml.safe_dump_all(docs, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.text(alphabet="{}[]:-,&*!|>'\"%@`#? \n\tabc10", max_size=120),
                 st.binary(max_size=80).map(lambda b: b.decode("latin-1"))))
def test_raw_garbage_text(text):
    check(text)


def test_deep_nesting_is_refused_before_the_parser_sees_it():
    # libyaml's C parser recurses per flow level and overflows the C stack (segfault) near 40,000 levels
    for text in ["a: " + "[" * 100_000 + "]" * 100_000, "a: " + "{a: " * 60_000 + "}" * 60_000]:
        try:
            load_text(text, "deep.yaml")
        except ManifestError as e:
            assert str(e) == "deep.yaml: nesting deeper than 1000 levels (not a Kubernetes manifest)"
        else:
            raise AssertionError("accepted")
    check("a: " + "[" * 900 + "]" * 900)
    from netsim.control.manifests import _flow_depth
    assert _flow_depth("a: [" + ", ".join(["[1]"] * 1500) + "]") == 2     # many brackets, shallow: fine


def test_known_nasties():
    for text in ["apiVersion: [v1]\nkind: Service\n",              # unhashable apiVersion
                 "apiVersion: v1\nkind: {a: b}\n",
                 "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, targetPort: '²'}]}\n",
                 "!!python/object:os.system {}\n",
                 "a: &x [*x]\n",
                 "[" * 5000,
                 "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {? [a] : b}}\n",
                 "apiVersion: v1\nkind: Pod\nmetadata: {name: 2020-01-01}\nspec: {containers: [{name: c}]}\n",
                 "apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: a}\nspec: {coredns: {replicas: -3}}\n",
                 "apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: a}\nspec: {nodes: [{name: a, labels: {1: 2}}]}\n",
                 "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 1}], selector: {1: 2}}\n"]:
        check(text)
