"""The public Python API: netsim.load, Emulator (traces, DNS, rules, faults), copy() isolation."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import netsim
from netsim.cli.main import cli

EXTRA = """\
apiVersion: v1
kind: Pod
metadata: {name: extra, labels: {app: extra}}
spec:
  containers: [{name: c, image: busybox}]
"""


@pytest.fixture(scope="module")
def httpd() -> netsim.Emulator:
    return netsim.load("example:httpd-app")


def endpoints(em, src, dst, n, **kw) -> set:
    return {t.outcome.pod for t in em.traces(src, dst, n, **kw)}


# ---------------------------------------------------------------- load
def test_load_path_example_and_text_merge(tmp_path):
    f = tmp_path / "extra.yaml"
    f.write_text(EXTRA)
    for extra in (str(f), f, EXTRA):
        em = netsim.load("example:httpd-app", extra)
        assert em.cluster.pod("default", "extra") is not None
        assert em.cluster.pod("default", "client") is not None


def test_load_list_argument_is_merged(tmp_path):
    em = netsim.load(["example:httpd-app", EXTRA])
    assert em.cluster.pod("default", "extra") is not None


def test_bad_input_raises_manifest_error_one_line(tmp_path):
    with pytest.raises(netsim.ManifestError, match=r"nope\.yaml: cannot read"):
        netsim.load(str(tmp_path / "nope.yaml"))
    with pytest.raises(netsim.ManifestError) as e:
        netsim.load("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}]}\n")
    assert "\n" not in str(e.value) and "<string>" in str(e.value) and "port" in str(e.value)
    with pytest.raises(netsim.ManifestError, match="no such built-in example"):
        netsim.load("example:nope")
    with pytest.raises(netsim.ManifestError, match="no manifests"):
        netsim.load()


def test_mode_and_seed():
    em = netsim.load("example:httpd-app", mode="ipvs")
    assert em.mode == "ipvs" and em.cluster.config.proxy_mode == "ipvs"
    t = em.trace("pod/client", "http://httpd-app/")
    assert t.mode == "ipvs" and any(s.action == "IPVS" for s in t.steps()) and t.outcome.ok
    a = [t.flow.sport for t in netsim.load("example:httpd-app", seed=7).traces("pod/client", "httpd-app:80", 5)]
    b = [t.flow.sport for t in netsim.load("example:httpd-app", seed=7).traces("pod/client", "httpd-app:80", 5)]
    c = [t.flow.sport for t in netsim.load("example:httpd-app", seed=8).traces("pod/client", "httpd-app:80", 5)]
    assert a == b and a != c
    with pytest.raises(ValueError, match="mode: expected"):
        netsim.load("example:httpd-app", mode="bogus")


# ---------------------------------------------------------------- traces
def test_trace_shape_and_text(httpd):
    em = httpd.copy()
    t = em.trace("pod/client", "http://httpd-app/")
    assert isinstance(t, netsim.Trace)
    o = t.outcome
    assert o.disposition == "DELIVERED" and o.pod.startswith("default/httpd-app-") and o.port == 80
    assert o.reply.received and o.reply.matches_request and t.rules_evaluated > 0
    assert str(t) == t.render() and "DELIVERED" in str(t) and "KUBE-SEP-" in str(t)
    d = json.loads(t.to_json())
    assert d["outcome"]["disposition"] == "DELIVERED" and d["flow"]["client"] == "pod/default/client"


def test_trace_matches_cli_json(httpd):
    args = ["trace", "-f", "example:httpd-app", "--from", "pod/client", "--to", "http://httpd-app/", "-o", "json"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    cli_trace = json.loads(out.output)
    api_trace = netsim.load("example:httpd-app").trace("pod/client", "http://httpd-app/").to_dict()
    assert api_trace == cli_trace


def test_bad_src_dst_value_error_with_cli_message(httpd):
    em = httpd.copy()
    with pytest.raises(ValueError, match=r"--from pod/ghost: no pod 'ghost' in namespace 'default'"):
        em.trace("pod/ghost", "http://httpd-app/")
    with pytest.raises(ValueError, match=r"--to httpd-app:99999: port 99999 out of range"):
        em.trace("pod/client", "httpd-app:99999")
    out = CliRunner().invoke(cli, ["trace", "-f", "example:httpd-app", "--from", "pod/ghost", "--to", "x:80"])
    assert "--from pod/ghost: no pod 'ghost' in namespace 'default'" in out.output


def test_traces_counts_new_connections(httpd):
    em = httpd.copy()
    ts = em.traces("pod/client", "httpd-app:80", 40)
    assert len(ts) == 40 and len({t.flow.sport for t in ts}) > 30
    assert len({t.outcome.pod for t in ts}) == 2
    assert "# conntrack -L (node node-3)" in em.conntrack()


# ---------------------------------------------------------------- DNS and rules
def test_resolve_direct_and_search_walk(httpd):
    ip = httpd.cluster.service("default", "httpd-app").cluster_ip
    r = httpd.resolve("httpd-app.default.svc.cluster.local")
    assert r.ok and r.ips == [ip] and r.rcode == "NOERROR" and "ANSWER SECTION" in str(r)
    w = httpd.resolve("httpd-app", from_pod="pod/client")
    assert w.ok and w.ips == [ip] and w.answered_name == "httpd-app.default.svc.cluster.local."
    assert w.steps[0].qname == "httpd-app.default.svc.cluster.local."
    nx = httpd.resolve("nothing.default.svc.cluster.local")
    assert not nx.ok and nx.rcode == "NXDOMAIN"
    with pytest.raises(netsim.api.DnsQueryError, match="record type"):
        httpd.resolve("x", "BOGUS")
    with pytest.raises(ValueError, match='pod "ghost" not found'):
        httpd.resolve("x", from_pod="pod/ghost")


def test_rules_is_what_netsim_rules_prints(httpd):
    for extra in ([], ["--restore-input"], ["--table", "nat"], ["--mode", "ipvs"]):
        out = CliRunner().invoke(cli, ["rules", "-f", "example:httpd-app", "--node", "node-1", *extra])
        assert out.exit_code == 0, out.output
        kw = {"restore_input": "--restore-input" in extra, "tables": ("nat",) if "nat" in extra else None,
              "mode": "ipvs" if "ipvs" in extra else None}
        assert httpd.rules("node-1", **kw) == out.output
    with pytest.raises(ValueError, match="node-9"):
        httpd.rules("node-9")


# ---------------------------------------------------------------- faults
def test_faults_resync_the_proxiers(httpd):
    em = httpd.copy()
    pods = sorted(p.name for p in em.cluster.pods() if p.name.startswith("httpd-app"))
    em.set_pod_ready(pods[0], False)
    assert endpoints(em, "pod/client", "httpd-app:80", 20) == {f"default/{pods[1]}"}
    em.set_pod_ready(pods[0], True)
    em.delete_pod(pods[1], force=True)
    assert f"default/{pods[1]}" not in endpoints(em, "pod/client", "httpd-app:80", 20)
    em.scale("httpd-app", 0)
    em.advance(31)
    assert em.trace("pod/client", "httpd-app:80").outcome.disposition == "REJECTED"
    em.scale("httpd-app", 2)
    assert em.trace("pod/client", "httpd-app:80").outcome.ok


def test_node_failure_and_recovery(httpd):
    em = httpd.copy()
    em.stop_node("node-2")
    em.advance(60)
    assert not em.cluster.node("node-2").ready and httpd.cluster.node("node-2").ready   # the copy's store only
    ip = em.cluster.service("default", "httpd-app").cluster_ip     # a CoreDNS pod was on node-2
    served = endpoints(em, "pod/client", f"{ip}:80", 20)
    assert all(em.cluster.pod(*p.split("/")).node_name != "node-2" for p in served) and served
    em.start_node("node-2")
    assert em.cluster.node("node-2").ready
    assert "NodeReady" in [e.reason for e in em.events()]


# ---------------------------------------------------------------- copy()
def test_copy_isolation_both_ways():
    base = netsim.load("example:httpd-app")
    base.trace("pod/client", "httpd-app:80")
    a, b = base.copy(), base.copy()
    a.scale("httpd-app", 0)
    a.advance(31)
    assert a.trace("pod/client", "httpd-app:80").outcome.disposition == "REJECTED"
    assert b.trace("pod/client", "httpd-app:80").outcome.ok
    assert base.trace("pod/client", "httpd-app:80").outcome.ok
    # 3 workload pods + kubeadm's 4 static pods and 3 kube-proxy pods
    assert len(a.cluster.pods("default")) == 1 and len(base.cluster.pods("default")) == 3 \
        and len(b.cluster.pods("default")) == 3 and len(a.cluster.pods()) == 10
    # the original changes after copying: the copies do not see it
    c = base.copy()
    base.delete_pod("client", force=True)
    assert base.cluster.pod("default", "client") is None
    assert c.trace("pod/client", "httpd-app:80").outcome.ok and b.cluster.pod("default", "client") is not None
    assert base.now == 0 and a.now == 31


def test_copy_has_its_own_rng_and_conntrack():
    base = netsim.load("example:httpd-app")
    base.trace("pod/client", "httpd-app:80")
    before = base.conntrack()
    a = base.copy()
    b = base.copy()
    ta = [t.flow.sport for t in a.traces("pod/client", "httpd-app:80", 10)]
    tb = [t.flow.sport for t in b.traces("pod/client", "httpd-app:80", 10)]
    assert ta == tb                                     # same state at copy time, same future
    assert base.conntrack() == before                   # the copies' connections are their own
    assert [t.flow.sport for t in base.traces("pod/client", "httpd-app:80", 10)] == ta
    assert a.conntrack() != before


def test_copy_shares_rendered_rules_until_a_change():
    base = netsim.load("example:httpd-app")
    base.prepare()
    nf = base._walkers["iptables"].netfilter("node-3")
    a = base.copy()
    a.trace("pod/client", "httpd-app:80")
    a_nf = a._walkers["iptables"].netfilter("node-3")
    assert a_nf.engine is nf.engine and a_nf.ctx is not nf.ctx and a_nf.ctx.rng is not nf.ctx.rng
    a.scale("httpd-app", 1)
    a.trace("pod/client", "httpd-app:80")
    assert a._walkers["iptables"].netfilter("node-3").text != nf.text        # re-rendered in the copy
    assert base._walkers["iptables"].netfilter("node-3") is nf                # untouched in the original
    assert base.rules("node-3") != a.rules("node-3")


def test_copy_affinity_state_is_independent():
    """ClientIP affinity (xt_recent lists in iptables mode): a copy's connections do not stick the original."""
    for mode in ("iptables", "ipvs"):
        base = netsim.load("example:shop", mode=mode)
        base.prepare()
        a = base.copy()
        first = a.trace("pod/client", "backend:8080", namespace="shop").outcome.pod
        assert endpoints(a, "pod/client", "backend:8080", 10, namespace="shop") == {first}
        b = base.copy()
        got = endpoints(b, "pod/client", "backend:8080", 1, namespace="shop")
        assert len(got) == 1
        # the original was never used: its affinity state is empty, whatever the copies did
        wk = base._walkers[mode]
        recent = [nf.ctx.recent.lists for nf in wk._nf.values()]
        assert all(not lists or not any(lists.values()) for lists in recent)


def test_copy_of_copy_and_dns_through_copies():
    base = netsim.load("example:shop")
    a = base.copy()
    t = a.trace("pod/client", "http://frontend.shop/", namespace="shop")
    assert t.outcome.ok and "DNS" in (t.flow.resolved_by or "")
    b = a.copy()
    assert b.trace("pod/client", "http://frontend.shop/", namespace="shop").outcome.ok
    assert b._walkers["iptables"]._coredns is not a._walkers["iptables"]._coredns     # own DNS servers
    aa = a.copy()
    aa.scale("frontend", 0, namespace="shop")
    aa.advance(31)
    assert aa.trace("pod/client", "http://frontend.shop/", namespace="shop").outcome.disposition == "REJECTED"
    assert a.trace("pod/client", "http://frontend.shop/", namespace="shop").outcome.ok


def test_copy_lb_flows_and_clock_are_independent():
    base = netsim.load("example:shop")
    lb = base.cluster.service("shop", "api").load_balancer_ips[0]
    base.prepare()
    a = base.copy()
    t = a.trace("external", f"{lb}:443")
    assert t.outcome.disposition in ("DELIVERED", "NO_LISTENER")
    assert a._walkers["iptables"].lb_flows and not base._walkers["iptables"].lb_flows
    a.advance(600)
    assert a.now == 600 and base.now == 0 and base.copy().now == 0


def test_a_copy_takes_each_pods_sockets_when_a_packet_first_reaches_it():
    """A copy (a verdict's path) wires no pod's sockets up front: each is taken from the emulator it
    was copied from when first looked up — the same listeners, except a CoreDNS pod's, which answer
    through the copy's own DNS server — so copying costs nothing per pod (50,000 pods in a reach
    worker). A copy of a copy does the same, and both see every pod."""
    base = netsim.load("example:shop")
    assert base.trace("pod/client", "http://frontend.shop/", namespace="shop").outcome.ok
    src = base._walkers["iptables"].sockets
    a = base.copy()
    socks = a._walkers["iptables"].sockets
    assert dict.__len__(socks) == 0                         # nothing taken yet
    b = a.copy()
    assert b.trace("pod/client", "http://frontend.shop/", namespace="shop").outcome.ok
    assert set(b._walkers["iptables"].sockets) == set(src) == set(socks)
    dns = [k for k in src if src[k].listeners.get((17, 53)) is not None and src[k].listeners[(17, 53)].handler]
    assert dns
    for k in src:
        mine, theirs = socks[k], src[k]
        if k in dns:                                         # answers through the copy's DNS server
            assert mine is not theirs and mine.listeners[(17, 53)].handler is not theirs.listeners[(17, 53)].handler
        else:
            assert mine is theirs
