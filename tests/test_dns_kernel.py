"""Real clients against the stand-in inside a scratch network namespace: glibc getaddrinfo with the
pod's kubelet-written resolv.conf (bind-mounted by `ip netns exec` from /etc/netns/<ns>/resolv.conf)
and the server listening on 127.0.0.1:53 in that namespace.

Expected query sequences and results: glibc resolv/res_query.c __res_context_search (glibc 2.36) and
res_send.c send_vc (the 60-record headless answer needs glibc's TCP retry after TC=1, with A and AAAA on one
connection).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dns_fixtures import HEADLESS_60_YAML
from kernel_helpers import scratch_netns

pytestmark = pytest.mark.kernel

CLUSTER = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: kdns}
spec:
  nodes: [{name: node-1, ip: 192.168.49.2}, {name: node-2, ip: 192.168.49.3}]
  upstreamDNS: {example.com: [93.184.216.34]}
---""" + HEADLESS_60_YAML + """---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.50.5, selector: {app: big}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox}]
"""

LOOKUP = textwrap.dedent("""
    import socket, sys
    try:
        infos = socket.getaddrinfo(sys.argv[1], 80, socket.AF_UNSPEC, socket.SOCK_STREAM)
        print(" ".join(sorted({i[4][0] for i in infos})))
    except socket.gaierror as e:
        print("ERR", e.errno)
""")


def _run(*argv, check=True, timeout=30):
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def netns(tmp_path_factory):
    with scratch_netns("nsdnst") as name:
        etc = Path("/etc/netns") / name
        try:
            _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
            yield name, etc, tmp_path_factory.mktemp("kdns")
        finally:
            shutil.rmtree(etc, ignore_errors=True)


@pytest.fixture(scope="module")
def served(netns):
    """The server in the namespace on 127.0.0.1:53, and the client pod's resolv.conf pointed at it."""
    from netsim.dns.resolvconf import ResolvConf, pod_resolv_conf
    from netsim.control.manifests import load_text
    name, etc, tmp = netns
    manifest = tmp / "cluster.yaml"
    manifest.write_text(CLUSTER)
    cluster = load_text(CLUSTER)
    rc = pod_resolv_conf(cluster.pod("default", "client"), cluster.config)
    # kubelet's file, with the nameserver moved to where the server listens inside this namespace
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(ResolvConf(("127.0.0.1",), rc.searches, rc.options).render())
    log = open(tmp / "serve.log", "w")
    proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c",
                             "from netsim.cli.main import cli; cli()", "dns", "serve",
                             "-f", str(manifest), "--listen", "127.0.0.1:53", "-v"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(100):
            probe = _run("ip", "netns", "exec", name, "dig", "@127.0.0.1", "+time=1", "+tries=1", "+short",
                         "web.default.svc.cluster.local", check=False)
            if probe.stdout.strip() == "10.96.50.5":
                break
            if proc.poll() is not None:
                pytest.fail(f"dns serve exited: {(tmp / 'serve.log').read_text()[-500:]}")
            time.sleep(0.1)
        yield name, cluster, tmp / "serve.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def getaddrinfo(ns, host):
    return _run("ip", "netns", "exec", ns, sys.executable, "-c", LOOKUP, host, timeout=60).stdout.strip()


def test_short_name_resolves_through_search_list(served):
    ns, cluster, _ = served
    assert getaddrinfo(ns, "web") == "10.96.50.5"


def test_external_name_walks_search_list_then_upstream(served):
    ns, _, log = served
    before = log.read_text().count("\n")
    assert getaddrinfo(ns, "example.com") == "93.184.216.34"
    lines = log.read_text().splitlines()[before:]
    asked = [ln.split()[2] for ln in lines if " udp " in ln]
    # glibc: 3 search domains then the name as is, each with A and AAAA (8 queries)
    assert asked[-8:] == [n for n in ("example.com.default.svc.cluster.local.", "example.com.svc.cluster.local.",
                                      "example.com.cluster.local.", "example.com.") for _ in range(2)]


def test_unknown_name_is_eai_noname(served):
    ns, _, _ = served
    import socket
    assert getaddrinfo(ns, "nosuch") == f"ERR {socket.EAI_NONAME}"


def test_headless_60_endpoints_needs_the_tcp_retry(served):
    ns, cluster, log = served
    before = log.read_text().count("\n")
    got = getaddrinfo(ns, "big").split()
    assert sorted(got) == sorted(p.ip for p in cluster.pods("default") if p.name.startswith("big-"))
    assert len(got) == 60
    lines = log.read_text().splitlines()[before:]
    assert any(" udp big.default.svc.cluster.local. A " in ln and " tc" in ln for ln in lines)
    assert any(" tcp big.default.svc.cluster.local. A " in ln for ln in lines)


def test_dig_udp_and_tcp_in_namespace(served):
    ns, _, _ = served
    for transport in ("+notcp", "+tcp"):
        out = _run("ip", "netns", "exec", ns, "dig", "@127.0.0.1", transport, "+short", "+time=2",
                   "web.default.svc.cluster.local").stdout.split()
        assert out == ["10.96.50.5"]


def test_glibc_sends_a_steps_a_and_aaaa_from_one_port(served):
    """glibc res_send.c send_dg: one connected UDP socket per step, closed after it (a new port per
    search-list step); the step's A and AAAA leave from it (the port conntrack's DNS race is about)."""
    ns, _, log = served
    before = log.read_text().count("\n")
    assert getaddrinfo(ns, "example.com") == "93.184.216.34"
    lines = [ln.split() for ln in log.read_text().splitlines()[before:] if " udp " in ln]
    ports = [ln[0].rsplit("#", 1)[1] for ln in lines[-8:]]
    assert [ln[3] for ln in lines[-8:]] == ["A", "AAAA"] * 4
    assert all(ports[i] == ports[i + 1] for i in range(0, 8, 2))          # A and AAAA: one socket
    assert len({ports[i] for i in range(0, 8, 2)}) == 4                   # each step: a new socket
