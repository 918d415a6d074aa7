"""The imperative flow on a saved cluster, end to end as a user types it: netsim run / expose / scale /
apply / delete --state DIR, each printing kubectl's answer and the control plane's events, and every
other command reading the cluster as -f state:DIR."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from netsim.control import generators
from netsim.cli.main import cli
from netsim.control.manifests import example_path, load
from netsim.dataplane.walker import Walker

RANK = {"kube-apiserver": 0, "kube-controller-manager": 1, "kube-scheduler": 2, "kubelet": 3, "kube-proxy": 4}


def netsim(*args: str, code: int = 0):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def event_rows(output: str) -> list[list[str]]:
    lines = output.split("\n\n", 1)[1].strip().splitlines()
    assert lines[0].split() == ["COMPONENT", "REASON", "OBJECT", "MESSAGE"]
    cols = [lines[0].index(h) for h in ("COMPONENT", "REASON", "OBJECT", "MESSAGE")] + [None]
    return [[ln[cols[i]:cols[i + 1]].strip() for i in range(4)] for ln in lines[1:]]


def test_generators_write_what_kubectl_writes():
    """The built-in kubectl-httpd example is kubectl's own --dry-run=client -o yaml output; our generators
    produce the same objects."""
    docs = list(yaml.safe_load_all(Path(example_path("kubectl-httpd")).read_text()))
    deploy = generators.create_deployment("httpd-app", "httpd", replicas=2)
    assert docs == [deploy, generators.expose(deploy, 80, type_="NodePort")]
    assert generators.container_name("docker.io/library/my_app.v2:1.0") == "my-app-v2"
    old = generators.run("httpd-app", "httpd", replicas=2)      # kubectl <= 1.17: run made a Deployment
    assert old["spec"]["selector"]["matchLabels"] == {"run": "httpd-app"}
    assert old["spec"]["template"]["spec"]["containers"][0]["name"] == "httpd-app"
    pod = generators.run("web", "nginx")
    assert (pod["kind"], pod["metadata"]["labels"]) == ("Pod", {"run": "web"})
    with pytest.raises(generators.GeneratorError, match="couldn't find port via --port flag or introspection"):
        generators.expose(deploy, None)


def test_seed_flow_end_to_end(tmp_path):
    st = str(tmp_path / "st")
    r = netsim("run", "httpd-app", "--image", "httpd", "--replicas", "2", "--state", st)
    assert r.output.startswith("deployment.apps/httpd-app created\n\n")
    rows = event_rows(r.output)
    assert rows[0] == ["kube-apiserver", "Created", "deployment.apps/httpd-app",
                       "validated, written to etcd, watchers notified"]
    comps = [row[0].split(" ")[0] for row in rows]
    firsts = [comps.index(c) for c in RANK if c in comps]
    assert firsts == sorted(firsts) and len(firsts) == 4               # apiserver → cm → scheduler → kubelet
    for pod_row in (i for i, row in enumerate(rows) if row[1] == "Scheduled"):  # each pod: bound, then started
        assert rows[pod_row + 1][1] == "Started" and rows[pod_row + 1][2] == rows[pod_row][2]
    assert comps.count("kube-scheduler") == 2 and comps.count("kubelet") == 2
    assert rows[1][0] == "kube-controller-manager (deployment-controller)" and rows[1][1] == "ScalingReplicaSet"

    r = netsim("expose", "deployment", "httpd-app", "--type", "NodePort", "--port", "80", "--state", st)
    assert r.output.startswith("service/httpd-app created\n")
    rows = event_rows(r.output)
    assert [row[0].split(" ")[0] for row in rows] == [
        "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-proxy", "kube-proxy"]
    assert rows[1][1] == "EndpointSliceCreated" and "2/2 endpoints ready" in rows[1][3]

    # every other command reads the saved cluster
    cluster = load([f"state:{st}"])
    svc = cluster.service("default", "httpd-app")
    assert svc.type == "NodePort" and svc.selector == {"run": "httpd-app"}
    pods = {p.key for p in cluster.pods("default")}
    assert len(pods) == 2
    for mode in ("iptables", "ipvs"):
        w = Walker(cluster, mode=mode)
        t = w.connect(w.topology.hosts["external"], cluster.nodes()[0].ip, svc.ports[0].node_port)
        assert t.outcome.disposition == "DELIVERED" and t.outcome.pod in pods and t.outcome.port == 80
    r = netsim("trace", "-f", f"state:{st}", "--from", "external", "--to",
               f"http://{cluster.nodes()[2].ip}:{svc.ports[0].node_port}/")
    assert "DELIVERED default/httpd-app-" in r.output
    assert len(netsim("get", "pods", "-f", f"state:{st}").output.strip().splitlines()) == 3

    r = netsim("scale", "deployment", "httpd-app", "--replicas", "3", "--state", st)
    assert r.output.startswith("deployment.apps/httpd-app scaled\n")
    rows = event_rows(r.output)
    assert rows[1][3].startswith("Scaled up replica set httpd-app-") and rows[1][3].endswith(" from 2 to 3")
    assert [row[1] for row in rows[2:5]] == ["SuccessfulCreate", "Scheduled", "Started"]
    assert any(row[1] == "EndpointSliceUpdated" and "3/3 endpoints ready" in row[3] for row in rows)
    assert len(load([f"state:{st}"]).pods("default")) == 3

    r = netsim("delete", "deployment", "httpd-app", "--state", st)
    assert r.output.startswith('deployment.apps "httpd-app" deleted\n')
    assert [row[1] for row in event_rows(r.output)].count("Killing") == 3
    cluster = load([f"state:{st}"])
    assert cluster.pods("default") == [] and cluster.workloads("default") == []
    assert cluster.endpoint_slices("default", "httpd-app")[0].endpoints == []

    r = netsim("delete", "svc", "httpd-app", "--state", st)
    assert r.output.startswith('service "httpd-app" deleted\n')
    assert load([f"state:{st}"]).service("default", "httpd-app") is None
    log = yaml.safe_load_all((Path(st) / "operations.yaml").read_text())
    assert [op["command"] for op in log] == [
        "netsim run httpd-app --image httpd --replicas 2",
        "netsim expose deployment httpd-app --type NodePort --port 80",
        "netsim scale deployment httpd-app --replicas 3",
        "netsim delete deployment httpd-app", "netsim delete service httpd-app"]


def test_apply_create_unchanged_configured_and_refusals(tmp_path):
    st = str(tmp_path / "st")
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: two}\n"
                   "spec: {nodes: [{name: cp}, {name: w1}], seed: 7}\n")
    netsim("apply", "-f", str(cfg), "--state", st)
    assert [n.name for n in load([f"state:{st}"]).nodes()] == ["cp", "w1"]
    seed = example_path("kubectl-httpd")
    r = netsim("apply", "-f", seed, "--state", st)
    assert r.output.splitlines()[:2] == ["deployment.apps/httpd-app created", "service/httpd-app created"]
    r = netsim("apply", "-f", seed, "--state", st)
    assert r.output.strip().splitlines() == ["deployment.apps/httpd-app unchanged", "service/httpd-app unchanged"]
    more = tmp_path / "more.yaml"
    more.write_text(Path(seed).read_text().replace("replicas: 2", "replicas: 4"))
    r = netsim("apply", "-f", str(more), "--state", st)
    assert r.output.splitlines()[:2] == ["deployment.apps/httpd-app configured", "service/httpd-app unchanged"]
    assert len(load([f"state:{st}"]).pods("default")) == 4
    # refusals: one line, exit 2, nothing recorded
    before = (Path(st) / "operations.yaml").read_text()
    r = netsim("apply", "-f", str(cfg), "--state", st, code=2)
    assert "a netsim.io/v1 Cluster document can only start a saved cluster" in r.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}, ports: [{port: 1}]}\n")
    r = netsim("apply", "-f", str(typo), "--state", st, code=2)
    assert 'unknown field "spec.selectr" (did you mean "selector"?)' in r.output
    netsim("scale", "deployment", "nope", "--replicas", "1", "--state", st, code=2)
    netsim("delete", "pod", "nope", "--state", st, code=2)
    assert (Path(st) / "operations.yaml").read_text() == before
    # warn: recorded, and replayed the same way
    r = netsim("apply", "-f", str(typo), "--state", st, "--validate=warn")
    assert r.output.startswith("service/x created")
    assert load([f"state:{st}"], validate="warn").service("default", "x") is not None


def test_run_a_pod_expose_it_and_read_errors(tmp_path):
    st = str(tmp_path / "st")
    netsim("run", "web", "--image", "nginx", "--state", st)
    r = netsim("expose", "pod", "web", "--port", "8080", "--target-port", "80", "--state", st)
    assert r.output.startswith("service/web created")
    c = load([f"state:{st}"])
    assert c.service("default", "web").selector == {"run": "web"} and c.pod("default", "web").images == ["nginx"]
    w = Walker(c)
    t = w.connect(w.topology.hosts["node-1"], c.service("default", "web").cluster_ip, 8080)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.port == 80
    r = netsim("get", "pods", "-f", f"state:{tmp_path / 'nothing'}", code=2)
    assert "no saved cluster here" in r.output
    r = netsim("get", "pods", "-f", f"state:{st}", "-f", "example:shop", code=2)
    assert "a saved cluster is read alone" in r.output
    r = netsim("expose", "deployment", "web", "--port", "80", "--state", st, code=2)
    assert r.output.strip() == 'Error: deployment.apps "web" not found in namespace default'
    r = netsim("scale", "deployment", "web", "--replicas", "2", "--state", str(tmp_path / "empty"), code=2)
    assert "no saved cluster yet" in r.output
