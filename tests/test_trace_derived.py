"""Trace text is derived from what happened on the path, not assumed.

* A packet printed collapsed (after the first request and the first reply) names what rewrote its
  addresses, read from its own steps: conntrack applying the NAT binding in iptables mode, IPVS
  (ip_vs_nat_xmit / the reply un-DNAT in ip_vs_out_hook) in IPVS mode, nothing when no NAT applied.
* glibc's retry over TCP after a truncated UDP answer is answered by the DNS server of the CoreDNS
  pod whose TCP socket accepted the connection (the one kube-dns's DNAT picked), not by a shared one.
"""
from __future__ import annotations

import pytest

from netsim.control.manifests import load_text
from netsim.skb.packet import IPPROTO_TCP
from netsim.dataplane.target import parse_target, resolve
from netsim.dataplane.walker import Walker
from dns_fixtures import HEADLESS_60_WITH_CLIENT_YAML as BIG
from walker_cluster import scenario_cluster


def _collapsed(trace) -> list[str]:
    return [line for line in trace.render().splitlines() if line.startswith("---") and line.endswith(")")]


@pytest.mark.parametrize("mode,who", [("iptables", "conntrack"), ("ipvs", "IPVS")])
def test_collapsed_packets_name_what_rewrote_them(mode, who):
    c = scenario_cluster(proxy_mode=mode)
    w = Walker(c)
    t = w.connect(w.host_for("pod/client-1"), c.service("default", "web").cluster_ip, 80, full=True)
    assert t.outcome.disposition == "DELIVERED" and t.outcome.reply.matches_request
    lines = _collapsed(t)
    assert len(lines) == 2                                     # the data request and its answer
    for line in lines:
        assert line.endswith(f"hops, addresses rewritten by {who})"), line
    other = "IPVS" if who == "conntrack" else "conntrack"
    assert all(other not in line for line in lines)
    # the first packet's DNAT: by kube-proxy's nat rule (iptables) or by IPVS
    assert t.packets[0].translated_by() == (["nat rule"] if mode == "iptables" else ["IPVS"])


def test_a_collapsed_packet_without_nat_says_so():
    c = scenario_cluster()
    w = Walker(c)
    t = w.connect(w.host_for("pod/client-1"), c.pod("default", "web-2").ip, 8080, full=True)
    assert t.outcome.disposition == "DELIVERED"
    assert all(line.endswith("hops, no address rewritten)") for line in _collapsed(t)) and _collapsed(t)




def _coredns_pods(w) -> list[str]:
    return sorted(k for k in w.sockets if k.startswith("kube-system/coredns-"))


def test_the_tcp_retry_is_answered_by_the_coredns_pod_it_reached():
    cluster = load_text(BIG)
    w = Walker(cluster, "iptables")
    client = w.host_for("pod/client")
    w.sync()
    pods = _coredns_pods(w)
    assert len(pods) == 2
    own = {p: w.sockets[p].listeners[(IPPROTO_TCP, 53)].handler for p in pods}
    assert None not in own.values() and own[pods[0]] is not own[pods[1]]      # each pod its own server
    calls: dict[str, list[str]] = {p: [] for p in pods}
    for p in pods:
        lst = w.sockets[p].listeners[(IPPROTO_TCP, 53)]

        def spy(payload, protocol="udp", _own=own[p], _p=p):
            calls[_p].append(protocol)
            return _own(payload, protocol)
        lst.handler = spy
    r = resolve(w, client, parse_target("http://big/"), "tcp", "default")
    tcp = [n for n in r.notes if "/tcp" in n]
    assert len(tcp) == 1 and "NOERROR 60 records" in tcp[0]
    reached = next(p for p in pods if f"DNAT to {p}," in tcp[0])
    assert calls[reached] == ["tcp"]
    assert all(not calls[p] for p in pods if p != reached)


def test_a_tcp_retry_reaching_a_socket_without_dns_fails_there():
    cluster = load_text(BIG)
    w = Walker(cluster, "iptables")
    client = w.host_for("pod/client")
    w.sync()
    for p in _coredns_pods(w):
        w.sockets[p].listeners[(IPPROTO_TCP, 53)].handler = None
    with pytest.raises(ValueError, match="cannot resolve"):
        resolve(w, client, parse_target("http://big/"), "tcp", "default")
