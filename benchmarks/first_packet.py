"""The modelled first packet (``source: model``): how many rules the kernel evaluates for a new
connection's first packet, and for a packet of an established connection, at N Services.

One node holds a client pod and E server pods; N ClusterIP Services select the servers. The walker
(the compiled engine, which reports the count the kernel's linear walk would have made while it
looks rules up by index) carries:

* a SYN to the Service whose KUBE-SERVICES rule comes first, the middle one and the last one;
* SYNs to a seeded sample of Services (all of them up to ``sample``): mean and p99 of the count;
* a SYN straight to a server pod's IP (position ``pod-ip``: a KUBE-SERVICES miss walks the whole
  chain, as every non-Service packet does on a node);
* an ACK of an open connection (a conntrack hit: the nat table is not consulted again).

In IPVS mode the same connections cost the constant ipset-matching rules (KUBE-SERVICES matches
``KUBE-CLUSTER-IP`` once) plus the IPVS hash lookups, which are not rules.
"""
from __future__ import annotations

import random
import statistics

from netsim.benchmarks.records import Record, counted, percentile
from netsim.control.cluster import Cluster
from netsim.control.model import ClusterConfig, ContainerPort, Node, Pod, Service, ServicePort
from netsim.skb.packet import Packet
from netsim.dataplane.walker import Walker


def model_cluster(n_services: int, n_endpoints: int, seed: int = 1) -> Cluster:
    c = Cluster(ClusterConfig(seed=seed, coredns=False, service_cidr="10.96.0.0/12"))
    objs: list = [Node("node-1", "192.168.49.2")]
    objs += [Pod(f"web-{j}", labels={"app": "web"}, node_name="node-1", ports=[ContainerPort(8080, name="http")])
             for j in range(n_endpoints)]
    objs.append(Pod("client", labels={"app": "client"}, node_name="node-1"))
    objs += [Service(f"svc-{i}", selector={"app": "web"}, ports=[ServicePort(80, "TCP", "http", "http")])
             for i in range(n_services)]
    c.apply(objs)
    return c


def kube_services_order(text: str) -> list[str]:
    """ClusterIPs in nat KUBE-SERVICES order (iptables-save text)."""
    out = []
    for line in text.splitlines():
        if line.startswith("-A KUBE-SERVICES ") and " -d " in line and "-j KUBE-SVC-" in line:
            out.append(line.split(" -d ", 1)[1].split()[0].split("/")[0])
    return out


def model_records(mode: str, n: int, e: int, sample: int = 1000, seed: int = 1) -> list[Record]:
    c = model_cluster(n, e, seed)
    w = Walker(c, mode)
    client = w.host_for("pod/client")
    order = kube_services_order(w.netfilter("node-1").save())
    if not order:           # no KUBE-SVC jumps (IPVS): the iptables proxier's order (position has no effect)
        by_name = sorted(c.services(), key=lambda s: f"{s.namespace}/{s.name}:http")
        order = [s.cluster_ip for s in by_name if s.name.startswith("svc-")]
    out: list[Record] = []

    sports = iter(range(20000, 60000))     # distinct source ports: no reply-tuple clash on one endpoint

    def syn_rules(ip: str, port: int = 80) -> int:
        tr = w.connect(client, ip, port, sport=next(sports))
        if not tr.outcome.ok:
            raise RuntimeError(f"model first packet to {ip}:{port} in {mode}: {tr.outcome.disposition}")
        return tr.request.rules

    for position, ip in (("first", order[0]), ("middle", order[len(order) // 2]), ("last", order[-1])):
        out.append(counted(mode, n, e, "rules_first_packet", syn_rules(ip), "rules", position=position))
    web_ip = next(p.ip for p in c.pods() if p.name == "web-0")
    out.append(counted(mode, n, e, "rules_first_packet", syn_rules(web_ip, 8080), "rules", position="pod-ip"))
    rng = random.Random(seed)
    picks = order if len(order) <= sample else rng.sample(order, sample)
    counts = []
    for k, ip in enumerate(picks):
        if k % 100 == 0:
            c.advance(5)          # half-open entries expire as they would (no reply-tuple clashes)
        counts.append(syn_rules(ip))
    out.append(counted(mode, n, e, "rules_first_packet_mean", round(statistics.mean(counts), 1), "rules",
                       position="all", sampled=len(picks)))
    out.append(counted(mode, n, e, "rules_first_packet_p99", percentile(counts, 99), "rules",
                       position="all", sampled=len(picks)))
    tr = w.connect(client, order[0], 80, sport=45000)
    ack = Packet.tcp(tr.flow.src, order[0], 45000, 80, flags="A", seq=1, ack=1)
    _, pt = w.send(w.host_for("pod/client"), ack)
    out.append(counted(mode, n, e, "rules_established_packet", pt.rules, "rules", position="first"))
    return out
