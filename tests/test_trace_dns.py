"""Names resolved inside `netsim trace` follow the wire rules a real pod meets: CoreDNS truncates a
UDP answer that does not fit 512 bytes (TC=1, question kept) and glibc retries over TCP (CoreDNS
request.Scrub, miekg/dns Msg.Truncate; glibc res_send.c); a datagram that is not a DNS query gets no answer."""
from __future__ import annotations

from netsim.control.manifests import load_text
from netsim.dataplane.walker import Walker
from dns_fixtures import HEADLESS_60_WITH_CLIENT_YAML as BIG



def test_headless_60_truncated_on_udp_then_resolved_over_tcp():
    from netsim.dataplane.target import parse_target, resolve
    cluster = load_text(BIG)
    w = Walker(cluster, "iptables")
    client = w.host_for("pod/client")
    r = resolve(w, client, parse_target("http://big/"), "tcp", "default")
    notes = "\n".join(r.notes)
    udp = [n for n in r.notes if "big.default.svc.cluster.local. A ->" in n and "/tcp" not in n]
    tcp = [n for n in r.notes if "/tcp" in n]
    assert len(udp) == 1 and "TC=1 (truncated)" in udp[0], notes
    assert len(tcp) == 1 and "NOERROR 60 records" in tcp[0] and "DNAT to kube-system/coredns-" in tcp[0], notes
    ready = {e.addresses[0] for s in cluster.endpoint_slices("default", "big") for e in s.endpoints}
    assert r.ip in ready


def test_garbage_udp_to_coredns_is_read_but_not_answered():
    cluster = load_text(BIG)
    w = Walker(cluster, "iptables")
    t = w.connect(w.host_for("node/node-1"), cluster.config.dns_service_ip, 53, "udp", payload=b"hello")
    assert t.outcome.disposition == "DELIVERED" and t.outcome.pod.startswith("kube-system/coredns-")
    assert not t.outcome.reply.received
    from dnslib import DNSRecord            # the same path with a real query is answered
    t2 = w.connect(w.host_for("node/node-1"), cluster.config.dns_service_ip, 53, "udp",
                   payload=DNSRecord.question("big.default.svc.cluster.local", "A").pack())
    assert t2.outcome.reply.received and t2.outcome.reply.matches_request


def test_a_and_aaaa_of_a_step_share_the_socket_and_so_the_coredns_pod():
    """As glibc sends them (tests/test_dns_kernel.py): the AAAA query leaves from the A query's port,
    rides its conntrack entry (no second DNAT) and reaches the same CoreDNS pod; each step of the
    search list uses a new port (one conntrack entry per step)."""
    import pytest
    from netsim.dataplane.target import Unresolved, parse_target, resolve
    cluster = load_text(BIG)
    w = Walker(cluster, "iptables")
    client = w.host_for("pod/client")
    with pytest.raises(Unresolved) as e:
        resolve(w, client, parse_target("http://nosuch:80"), "tcp", "default")
    notes = e.value.notes
    pods = [n.split("DNAT to ")[1].split(")")[0] for n in notes]
    assert len(pods) == 8 and all(pods[i] == pods[i + 1] for i in range(0, 8, 2)), notes
    dns_entries = [ln for node in w.conntrack for ln in w.conntrack_listing(node).splitlines()
                   if "dport=53 " in ln and "dst=10.96.0.10" in ln]
    assert len(dns_entries) == 4, dns_entries
