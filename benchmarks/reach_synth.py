"""The seeded synthetic cluster `netsim reach`'s benchmarks run on: N nodes (zones as node labels),
bare pods pinned to nodes in apps whose sizes follow a Zipf-like skew, and Services over the apps —
ClusterIP, NodePort and LoadBalancer in chosen shares, some with Local traffic policies, some LB
Services with loadBalancerSourceRanges, 1..k ports each. Several Services over one app with the same
ports share a signature (and so trace work), as Services over one Deployment do in real clusters.
NodePort and LoadBalancer Services stop where the apiserver's default NodePort range (2,768 ports)
is full: later ones are generated as ClusterIP Services (the apiserver refuses them: "range is full").

    python -m netsim.benchmarks.reach_synth --nodes 500 --services 5000 --pods 5000 > synth.yaml
"""
from __future__ import annotations

import argparse
import ipaddress
import random
import sys
from dataclasses import dataclass

NODE_NET_BASE = ipaddress.ip_address("192.168.0.0")
NODE_PORTS = 32767 - 30000 + 1           # the apiserver's default --service-node-port-range, 30000-32767
POD_CIDR = "10.128.0.0/9"                  # room for 32,768 /24 podCIDRs, away from 10.96.0.0/12
SOURCE_RANGES = ["203.0.113.0/24", "198.51.100.0/24", "192.168.0.0/16", "10.128.0.0/9"]


@dataclass(frozen=True)
class SynthKnobs:
    nodes: int = 20
    services: int = 100
    pods: int = 200
    apps: int = 0                    # 0: services // 2
    ports_per_service: int = 2       # 1..this many ports
    endpoint_skew: float = 1.1       # Zipf exponent of app sizes
    nodeport_share: float = 0.2
    lb_share: float = 0.05
    local_share: float = 0.1         # of NodePort/LB Services: externalTrafficPolicy Local
    internal_local_share: float = 0.02
    source_range_share: float = 0.5  # of LB Services
    zones: int = 3
    seed: int = 1


def node_network(n_nodes: int) -> str:
    """The smallest network from 192.168.0.0 with room for the nodes, the router, the external client
    and the load balancer pool (a /24 of its own at the top)."""
    bits = min(24, 32 - (n_nodes + 300).bit_length())
    return f"{NODE_NET_BASE}/{bits}"


def generate(k: SynthKnobs) -> str:
    """The manifests, as one multi-document YAML text."""
    rng = random.Random(k.seed)
    net = ipaddress.ip_network(node_network(k.nodes))
    hosts = list(net.hosts())
    # the node network's last /24 (the nodes take its first addresses): no LB IP is a node's IP
    lb_pool = ipaddress.ip_network((int(net.broadcast_address) - 255, 24)) if net.prefixlen < 24 else None
    apps = k.apps or max(1, k.services // 2)
    out = ["apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: synth}\nspec:\n"
           f"  seed: {k.seed}\n  nodeNetwork: {net}\n  podCIDR: {POD_CIDR}\n"
           "  coredns: {enabled: true, replicas: 2}\n"
           + (f"  loadBalancerPool: {lb_pool}\n" if lb_pool else "")
           + "  nodes:\n"]
    for i in range(k.nodes):
        out.append(f"    - {{name: node-{i + 1}, ip: {hosts[i + 1]}, labels: "
                   f"{{topology.kubernetes.io/zone: zone-{i % max(1, k.zones)}}}}}\n")
    weights = [1.0 / (a + 1) ** k.endpoint_skew for a in range(apps)]
    total = sum(weights)
    sizes = [max(1, round(k.pods * w / total)) for w in weights]
    ports_of = {a: sorted(rng.sample([80, 443, 8080, 8443, 9000, 53], rng.randint(1, k.ports_per_service)))
                for a in range(apps)}
    pod = 0
    for a, size in enumerate(sizes):
        for j in range(size):
            node = rng.randrange(k.nodes) + 1
            ports = ", ".join(f"{{containerPort: {p}}}" for p in ports_of[a])
            out.append(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: app{a}-{j}, labels: {{app: app{a}}}}}\n"
                       f"spec: {{nodeName: node-{node}, containers: [{{name: c, image: app, ports: [{ports}]}}]}}\n")
            pod += 1
    lb_left = (254 if lb_pool else 14)
    node_ports_left = NODE_PORTS     # every NodePort and LoadBalancer port takes one of the range
    for s in range(k.services):
        a = s % apps
        r = rng.random()
        typ = "LoadBalancer" if r < k.lb_share and lb_left > 0 else \
            "NodePort" if r < k.lb_share + k.nodeport_share else "ClusterIP"
        spec = [f"  selector: {{app: app{a}}}"]
        if typ != "ClusterIP":
            local = rng.random() < k.local_share
            # every port takes a nodePort, and a LoadBalancer Service with externalTrafficPolicy Local a
            # healthCheckNodePort too (pkg/registry/core/service/storage: allocHealthCheckNodePort);
            # past the range the apiserver refuses it ("failed to allocate a nodePort: range is full")
            need = len(ports_of[a]) + (1 if typ == "LoadBalancer" and local else 0)
            if need > node_ports_left:
                typ = "ClusterIP"
            else:
                node_ports_left -= need
                lb_left -= typ == "LoadBalancer"
                spec.append(f"  type: {typ}")
                if local:
                    spec.append("  externalTrafficPolicy: Local")
        if rng.random() < k.internal_local_share:
            spec.append("  internalTrafficPolicy: Local")
        if typ == "LoadBalancer" and rng.random() < k.source_range_share:
            spec.append(f"  loadBalancerSourceRanges: [{rng.choice(SOURCE_RANGES)}]")
        ports = ", ".join(f"{{name: p{p}, port: {p}, targetPort: {p}}}" for p in ports_of[a])
        spec.append(f"  ports: [{ports}]")
        out.append(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{s}}}\nspec:\n" + "\n".join(spec) + "\n")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in SynthKnobs.__dataclass_fields__.values():
        ap.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    a = ap.parse_args(argv)
    sys.stdout.write(generate(SynthKnobs(**{f: getattr(a, f) for f in SynthKnobs.__dataclass_fields__})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
