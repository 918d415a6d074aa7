"""What a pod listens on: declared containerPorts, an official image's default ports, or the
netsim.io/listen annotation; the kubectl-generated httpd-app manifests traced through the NodePort;
a wrong targetPort warned about at load time and ending NO_LISTENER with the hint."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from netsim.cli.main import cli
from netsim.control.docfields import ManifestError
from netsim.control.listen import image_repository, listen_ports, parse_listen
from netsim.control.manifests import load, load_text
from netsim.dataplane.walker import Walker
from netsim.rules import registry

SEED = "example:kubectl-httpd"


def _one_pod(annotations: str = "", image: str = "myorg/app:1.2", ports: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {{app: p}}
{annotations}
spec:
  containers:
  - name: c
    image: {image}
{ports}
"""


@pytest.mark.parametrize("image, repo", [
    ("httpd", "httpd"), ("httpd:2.4", "httpd"), ("docker.io/library/httpd:2.4-alpine", "httpd"),
    ("library/nginx@sha256:" + "0" * 64, "nginx"), ("index.docker.io/library/redis:7", "redis"),
    ("bitnami/nginx:1.25", "bitnami/nginx"), ("registry.k8s.io/echoserver:1.4", "registry.k8s.io/echoserver"),
    ("localhost:5000/httpd", "localhost:5000/httpd"),
])
def test_image_repository(image, repo):
    assert image_repository(image) == repo


def test_official_image_defaults_and_declared_ports():
    c = load_text(_one_pod(image="postgres:16") + "    ports: [{containerPort: 9187}]\n")
    assert [(lp.port, lp.protocol, lp.source) for lp in listen_ports(c.pod("default", "p"))] == [
        (9187, "TCP", "containerPort"), (5432, "TCP", "postgres image default")]
    # not an official image: bitnami/nginx listens on 8080, not nginx's 80; unknown → declared only
    assert listen_ports(load_text(_one_pod(image="bitnami/nginx")).pod("default", "p")) == []


def test_annotation_states_the_ports_exactly():
    c = load_text(_one_pod('  annotations: {netsim.io/listen: "5353/udp, 8080"}', image="redis")
                  + "    ports: [{containerPort: 9000}]\n")
    assert [str(lp) for lp in listen_ports(c.pod("default", "p"))] == ["5353/udp", "8080/tcp"]
    assert parse_listen("80/tcp,53/udp") == [(80, "TCP"), (53, "UDP")]


@pytest.mark.parametrize("value, msg", [
    ('"80/icmp"', "protocol must be tcp, udp or sctp"),
    ('"http"', "expected PORT[/PROTOCOL]"),
    ('"70000/tcp"', "between 1 and 65535"),
    ("80", "expected a string"),
])
def test_bad_annotation_is_one_line_naming_the_field(value, msg):
    with pytest.raises(ManifestError) as e:
        load_text(_one_pod(f"  annotations: {{netsim.io/listen: {value}}}"), "p.yaml")
    text = str(e.value)
    assert "\n" not in text and text.startswith("p.yaml: document 1 (Pod 'p'): metadata.annotations.netsim.io/listen")
    assert msg in text


def test_deployment_template_annotation():
    c = load_text("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns}
spec:
  replicas: 1
  selector: {matchLabels: {app: dns}}
  template:
    metadata:
      labels: {app: dns}
      annotations: {netsim.io/listen: "53/udp"}
    spec:
      containers: [{name: c, image: myorg/dns}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  selector: {app: dns}
  ports: [{port: 53, protocol: UDP}]
""")
    assert not [n for n in c.notices if "listens" in n]
    w = Walker(c)
    svc = c.service("default", "dns")
    t = w.connect(w.topology.hosts["node-2"], svc.cluster_ip, 53, proto="udp")
    assert t.outcome.disposition == "DELIVERED"
    t = w.connect(w.topology.hosts["node-2"], c.pods()[-1].ip, 80)
    assert t.outcome.disposition == "NO_LISTENER"


# ---------------------------------------------------------------------------- the seed's flow
def test_seed_manifests_are_kubectl_output_without_ports():
    c = load([SEED])
    pods = [p for p in c.pods("default")]
    assert len(pods) == 2 and all(p.ports == [] and p.images == ["httpd"] for p in pods)
    assert all(p.name.startswith("httpd-app-") and p.labels["app"] == "httpd-app" for p in pods)
    assert not [n for n in c.notices if "warning" in n]
    svc = c.service("default", "httpd-app")
    assert svc.type == "NodePort" and 30000 <= svc.ports[0].node_port <= 32767


@pytest.mark.parametrize("mode", registry.available_modes(kube_proxy_only=True, walks_packets=True))
def test_seed_flow_delivered_from_outside_through_every_nodes_nodeport(mode):
    c = load([SEED])
    np = c.service("default", "httpd-app").ports[0].node_port
    pods = {p.key for p in c.pods("default")}
    w = Walker(c, mode=mode)
    seen = set()
    for node in c.nodes():
        for sport in range(40000, 40008):
            t = w.connect(w.topology.hosts["external"], node.ip, np, sport=sport)
            assert t.outcome.disposition == "DELIVERED", t.render()
            assert t.outcome.port == 80 and t.outcome.pod in pods
            assert t.outcome.reply.received and t.outcome.reply.matches_request
            seen.add(t.outcome.pod)
    assert seen == pods


def test_wrong_target_port_warns_and_ends_no_listener_with_the_hint(tmp_path):
    from netsim.control.manifests import example_path
    text = open(example_path("kubectl-httpd")).read().replace("targetPort: 80", "targetPort: 8080")
    c = load_text(text, "wrong.yaml")
    warn = [n for n in c.notices if "8080" in n]
    assert len(warn) == 1
    pod = min(p.key for p in c.pods("default"))
    assert warn[0].startswith("warning: Service default/httpd-app: port 80: targetPort 8080/tcp: "
                              "no selected pod listens on it: pod ")
    assert "(image httpd) listens on 80/tcp (httpd image default) (and 1 more selected pods)" in warn[0]
    assert 'annotate the pod netsim.io/listen: "8080/tcp"' in warn[0]
    assert pod in warn[0]
    w = Walker(c)
    np = c.service("default", "httpd-app").ports[0].node_port
    t = w.connect(w.topology.hosts["external"], c.nodes()[1].ip, np)
    assert t.outcome.disposition == "NO_LISTENER"
    assert t.outcome.port == 8080
    assert "nothing listens on tcp/8080: the pod (image httpd) listens on 80/tcp (httpd image default)" \
        in t.outcome.detail


def test_cli_trace_and_demo_show_the_seed_flow():
    c = load([SEED])
    np = c.service("default", "httpd-app").ports[0].node_port
    r = CliRunner().invoke(cli, ["trace", "-f", SEED, "--from", "external", "--to",
                                 f"http://{c.nodes()[2].ip}:{np}/"])
    assert r.exit_code == 0, r.output
    assert "DELIVERED default/httpd-app-" in r.output and "HTTP/1.1 200 OK" in r.output
    r = CliRunner().invoke(cli, ["demo", "--count", "3", "--mode", "iptables"])
    assert r.exit_code == 0, r.output
    assert f"=== [iptables] example:kubectl-httpd (kubectl create deployment httpd-app --image=httpd " \
           f"--replicas=2 && kubectl expose deployment httpd-app --type=NodePort --port=80): external client " \
           f"-> NodePort {np} on node-2" in r.output


@pytest.mark.kernel
def test_seed_flow_curled_through_the_nodeport_in_real_namespaces(kernel_run_dir):
    """The pod servers listen where the emulator says the pods listen: httpd's 80, not declared."""
    from kernel_helpers import require_root_and_tools, unique_name
    from netsim.kernel import netns
    from netsim.kernel.build import KernelCluster
    require_root_and_tools("iptables-restore", "curl")
    c = load([SEED])
    np = c.service("default", "httpd-app").ports[0].node_port
    pods = {p.key for p in c.pods("default")}
    kc = KernelCluster.up(c, unique_name("t"), sources=[SEED])
    try:
        served = set()
        for node in c.nodes():
            for _ in range(6):
                r = netns.run(kc.plan.edge.external_netns,
                              ["curl", "-s", "-m", "5", f"http://{node.ip}:{np}/"], check=False)
                assert r.returncode == 0, r.stderr
                assert r.stdout.startswith("pod=default/httpd-app-") and "addr=" in r.stdout
                served.add(r.stdout.split()[0][len("pod="):])
                assert f":80 " in r.stdout.split("addr=", 1)[1][:25]
        assert served == pods
        # nothing listens on 8080 in the pods: the kernel refuses, as the emulator's NO_LISTENER says
        pod = c.pods("default")[0]
        r = netns.run(kc.plan.edge.external_netns, ["curl", "-s", "-m", "5", f"http://{pod.ip}:8080/"],
                      check=False)
        assert r.returncode == 7          # curl: failed to connect (RST)
    finally:
        kc.down()


def test_readme_lists_every_image_of_the_table():
    from pathlib import Path
    from netsim.control.listen import IMAGE_DEFAULT_PORTS
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("| image | listens on (TCP) |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        images, ports = (c.strip() for c in line.strip("|").split("|"))
        for image in images.split(", "):
            rows[image] = tuple((int(p), "TCP") for p in ports.split(", "))
    assert rows == IMAGE_DEFAULT_PORTS
