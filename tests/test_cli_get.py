"""`netsim get`, `netsim events`, `netsim examples`: kubectl-shaped output, one-line errors.

Column sets follow `kubectl get` (pods: NAME READY STATUS RESTARTS AGE [+IP NODE with -o wide]; services:
NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE [+SELECTOR]; -A adds NAMESPACE first; -o json|yaml prints a
v1 List) and `kubectl get events` (NAMESPACE LAST SEEN TYPE REASON OBJECT SOURCE MESSAGE).
"""
from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from netsim.cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def header_and_rows(out: str) -> tuple[list[str], list[list[str]]]:
    lines = [l for l in out.splitlines() if l.strip()]
    split = [[c for c in l.split("   ") if c.strip()] for l in lines]
    return [c.strip() for c in split[0]], [[c.strip() for c in r] for r in split[1:]]


def test_get_pods_default_namespace(httpd_cluster):
    r = run("get", "pods", "-f", "example:httpd-app")
    assert r.exit_code == 0, r.output
    header, rows = header_and_rows(r.stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert sorted(row[0] for row in rows) == sorted(p.name for p in httpd_cluster.pods("default"))
    assert all(row[1:4] == ["1/1", "Running", "0"] for row in rows)


def test_get_pods_wide_all_namespaces(httpd_cluster):
    r = run("get", "pods", "-A", "-o", "wide", "-f", "example:httpd-app")
    header, rows = header_and_rows(r.stdout)
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                      "READINESS GATES"]                       # printers.go podColumnDefinitions
    got = {(row[0], row[1]): (row[6], row[7]) for row in rows}
    assert all(row[8:] == ["<none>", "<none>"] for row in rows)
    assert got == {(p.namespace, p.name): (p.ip, p.node_name) for p in httpd_cluster.pods()}
    assert {ns for ns, _ in got} == {"default", "kube-system"}


def test_get_services_in_namespace_wide(shop_cluster):
    r = run("get", "svc", "-n", "shop", "-o", "wide", "-f", "example:shop")
    header, rows = header_and_rows(r.stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    by_name = {row[0]: row for row in rows}
    lb = shop_cluster.service("shop", "api")
    assert by_name["api"][1:5] == ["LoadBalancer", lb.cluster_ip, "192.168.49.241", f"443:{lb.ports[0].node_port}/TCP"]
    assert by_name["frontend"][4] == "80:30100/TCP" and by_name["frontend"][6] == "app=frontend"
    assert by_name["db"][2] == "None"
    assert by_name["payments"][1:4] == ["ExternalName", "<none>", "payments.example.com"]
    assert by_name["backend"][4] == "8080/TCP,9100/TCP"


def test_get_nodes_wide():
    r = run("get", "nodes", "-o", "wide", "-f", "example:httpd-app")
    header, rows = header_and_rows(r.stdout)
    # printers.go nodeColumnDefinitions; a node without nodeInfo prints <unknown> there
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                      "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert [(row[0], row[1], row[5], row[6]) for row in rows] == [
        ("node-1", "Ready", "192.168.49.2", "<none>"), ("node-2", "Ready", "192.168.49.3", "<none>"),
        ("node-3", "Ready", "192.168.49.4", "<none>")]


def test_get_endpointslices_json(httpd_cluster):
    r = run("get", "endpointslices", "-o", "json", "-f", "example:httpd-app")
    doc = json.loads(r.stdout)
    assert doc["kind"] == "List" and len(doc["items"]) == 2
    item, apiserver = doc["items"]       # by name, as kubectl lists: kube-apiserver's own slice "kubernetes" last
    assert apiserver["metadata"] == {"name": "kubernetes", "namespace": "default",
                                     "labels": {"kubernetes.io/service-name": "kubernetes"}}
    assert [e["addresses"] for e in apiserver["endpoints"]] == [["192.168.49.2"]]
    assert apiserver["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    assert item["kind"] == "EndpointSlice" and item["apiVersion"] == "discovery.k8s.io/v1"
    assert item["metadata"]["labels"]["kubernetes.io/service-name"] == "httpd-app"
    assert sorted(e["addresses"][0] for e in item["endpoints"]) == sorted(
        p.ip for p in httpd_cluster.pods("default") if p.name.startswith("httpd-app-"))
    assert all(e["conditions"] == {"ready": True, "serving": True, "terminating": False} for e in item["endpoints"])
    assert item["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]


def test_get_services_yaml_round_trips_through_the_loader(shop_cluster):
    r = run("get", "services", "-n", "shop", "-o", "yaml", "-f", "example:shop")
    doc = yaml.safe_load(r.stdout)
    svc = {i["metadata"]["name"]: i for i in doc["items"]}
    assert svc["backend"]["spec"]["sessionAffinity"] == "ClientIP"
    assert svc["backend"]["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert svc["api"]["status"]["loadBalancer"]["ingress"] == [{"ip": "192.168.49.241"}]
    assert svc["api"]["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["db"]["spec"]["clusterIP"] == "None"


def test_get_empty_namespace_says_so():
    r = run("get", "pods", "-n", "nothing-here", "-f", "example:httpd-app")
    assert r.exit_code == 0 and r.stdout == "" and "No resources found in nothing-here namespace." in r.stderr


def test_skipped_kind_notice_goes_to_stderr():
    r = run("get", "pods", "-n", "shop", "-f", "example:shop")
    assert r.stderr.splitlines() == ["skipped 1 object that does not affect Service networking: ConfigMap x1"]
    assert "ConfigMap" not in r.stdout
    r = run("get", "pods", "-n", "shop", "-f", "example:shop", "-v")
    assert r.stderr.splitlines()[1:] == [
        "example:shop: document 12 (ConfigMap 'shop-config'): skipped: ConfigMap does not affect Service networking"]


def test_events_and_fault_flags():
    r = run("events", "-f", "example:httpd-app", "--stop-node", "node-2", "--advance", "60")
    assert r.exit_code == 0, r.output
    header, rows = header_and_rows(r.stdout)
    assert header[:4] == ["NAMESPACE", "LAST SEEN", "TYPE", "REASON"]
    # default --node-monitor-grace-period 50 s (v1.32+): first 5 s monitor tick with 0 + 50 < now is t=55
    reasons = [l for l in r.stdout.splitlines() if "NodeNotReady" in l and "node/node-2" in l]
    assert len(reasons) == 1 and "t+55s" in reasons[0]
    bad = run("events", "-f", "example:httpd-app", "--stop-node", "node-9")
    assert bad.exit_code == 2 and bad.stderr.strip() == "Error: --stop-node: no node named 'node-9'"


def test_events_namespace_filter():
    r = run("events", "-f", "example:shop", "-n", "kube-system")
    lines = r.stdout.splitlines()[1:]
    assert lines and not [l for l in lines if l.startswith("shop ")]
    assert [l for l in lines if "coredns" in l]


def test_examples_list_and_show():
    r = run("examples")
    assert r.exit_code == 0 and "httpd-app" in r.stdout and "(-f example:shop)" in r.stdout
    r = run("examples", "shop")
    assert r.exit_code == 0 and yaml.safe_load_all(r.stdout) and "kind: Cluster" in r.stdout
    r = run("examples", "nope")
    assert r.exit_code == 2 and r.stderr.startswith("Error: example:nope: no such built-in example")


def test_bad_input_is_one_line_nonzero_no_traceback(tmp_path):
    bad = tmp_path / "app.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 70000}]\n")
    for args in (["get", "pods"], ["events"]):
        r = run(*args, "-f", str(bad))
        assert r.exit_code == 2
        assert r.stdout == ""
        assert r.stderr == (f"Error: {bad}: document 1 (Service 'web'): spec.ports[0].port: Invalid value: 70000: "
                            "must be between 1 and 65535, inclusive\n")
        assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)


def test_missing_file_is_one_line_error():
    r = run("get", "pods", "-f", "/no/such.yaml")
    assert r.exit_code == 2 and r.stderr == "Error: /no/such.yaml: cannot read: No such file or directory\n"


def test_short_names_several_types_and_all(httpd_cluster):
    r = run("get", "svc,ep", "-f", "example:httpd-app")
    assert r.exit_code == 0, r.output
    svc_table, ep_table = r.stdout.strip().split("\n\n")
    assert svc_table.splitlines()[1].startswith("service/httpd-app ")
    header, rows = header_and_rows(ep_table)
    assert header == ["NAME", "ENDPOINTS", "AGE"] and rows[0][0] == "endpoints/httpd-app"
    ips = sorted((p.ip for p in httpd_cluster.pods("default") if p.name.startswith("httpd-app-")),
                 key=lambda ip: tuple(map(int, ip.split("."))))
    assert rows[0][1] == ",".join(f"{ip}:80" for ip in ips)                 # printers.go formatEndpoints
    for short, long in (("deploy", "deployments"), ("rs", "replicasets"), ("sts", "statefulsets"), ("po", "pods")):
        a, b = run("get", short, "-n", "shop", "-f", "example:shop"), run("get", long, "-n", "shop", "-f", "example:shop")
        assert a.exit_code == 0 and a.stdout == b.stdout and a.stdout, (short, a.output)
    everything = run("get", "all", "-n", "shop", "-f", "example:shop").stdout
    kinds = [block.splitlines()[1].split("/")[0] for block in everything.strip().split("\n\n")]
    assert kinds == ["pod", "service", "deployment.apps", "replicaset.apps", "statefulset.apps"]
    header, rows = header_and_rows(run("get", "deploy", "-n", "shop", "-o", "wide", "-f", "example:shop").stdout)
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert ["frontend", "3/3", "3", "3", "0s", "web", "nginx", "app=frontend"] in rows
    header, rows = header_and_rows(run("get", "sts", "-n", "shop", "-o", "wide", "-f", "example:shop").stdout)
    assert header == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"] and rows == [["db", "2/2", "0s", "postgres",
                                                                                    "postgres"]]
    bad = run("get", "frobs", "-f", "example:shop")
    assert bad.exit_code == 2 and 'the server doesn\'t have a resource type "frobs"' in bad.output


def test_get_by_name_and_not_found():
    r = run("get", "svc", "httpd-app", "-f", "example:httpd-app")
    header, rows = header_and_rows(r.stdout)
    assert r.exit_code == 0 and [row[0] for row in rows] == ["httpd-app"]
    r = run("get", "svc", "httpd-app", "nope", "-f", "example:httpd-app")
    assert r.exit_code == 1 and 'Error from server (NotFound): services "nope" not found' in r.stderr
    one = json.loads(run("get", "svc", "httpd-app", "-o", "json", "-f", "example:httpd-app").stdout)
    assert one["kind"] == "Service" and one["metadata"]["name"] == "httpd-app"


def test_age_follows_the_cluster_clock_and_fault_flags_work_everywhere():
    """AGE is duration.HumanDuration of the cluster clock; --stop-node/--advance on every reader."""
    r = run("get", "pods", "-f", "example:httpd-app", "--stop-node", "node-2", "--advance", "400")
    header, rows = header_and_rows(r.stdout)
    ages = {row[0]: row[4] for row in rows}
    assert ages["client"] == "6m40s"
    replacement = [row for row in rows if row[2] == "Running" and row[4] == "45s"]   # created at t+5m55s
    assert len(replacement) == 1 and any(row[2] == "Terminating" for row in rows)
    assert run("get", "pods", "-f", "example:httpd-app", "--advance", "7200").stdout.count(" 120m") >= 3
    t = run("trace", "-f", "example:httpd-app", "--from", "pod/client", "--to", "http://httpd-app/",
            "--stop-node", "node-1", "--stop-node", "node-2", "--stop-node", "node-3", "--advance", "400")
    assert t.exit_code == 1, t.output
    rules = run("rules", "-f", "example:httpd-app", "--node", "node-1", "--stop-node", "node-2", "--advance", "60")
    before = run("rules", "-f", "example:httpd-app", "--node", "node-1").stdout
    assert rules.exit_code == 0 and '-> 10.244.1.' in before and '-> 10.244.1.' not in rules.stdout   # node-2's pods


def test_json_items_in_kubectls_order():
    """`-o json`: items sorted by namespace then name (the API server's list order), keys sorted."""
    doc = json.loads(run("get", "pods", "-A", "-o", "json", "-f", "example:shop").stdout)
    keys = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in doc["items"]]
    assert keys == sorted(keys) and list(doc) == ["apiVersion", "items", "kind", "metadata"]
