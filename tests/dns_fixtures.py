"""Shared fixtures for the DNS tests: CoreDNS's own unit-test cluster, as netsim model objects.

`coredns_testns()` rebuilds the APIConnServeTest fixture of coredns plugin/kubernetes/handler_test.go
(svc1, svcempty, svc6, hdls1, hdlsprtls, external, external-to-service, kubedns) so that the expected
answers can be copied from that file. CoreDNS's fixture gives two services the same ClusterIP
(svc1 and svcempty, 10.0.0.1), which a real API server's IPAM would refuse, so it is a plain store
with watch() rather than a netsim Cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import DNSRecord, QTYPE

from netsim.control.model import (ClusterConfig, Endpoint, EndpointPort, EndpointSlice, Namespace, Pod,
                                  Service, ServicePort)


@dataclass
class StoreCluster:
    """The read side of netsim.control.cluster.Cluster: enough for netsim.dns to answer from."""

    config: ClusterConfig = field(default_factory=ClusterConfig)
    ns: list = field(default_factory=list)
    svcs: list = field(default_factory=list)
    slices: list = field(default_factory=list)
    pod_list: list = field(default_factory=list)

    def namespaces(self):
        return list(self.ns)

    def services(self, namespace=None):
        return [s for s in self.svcs if namespace in (None, s.namespace)]

    def endpoint_slices(self, namespace=None, service=None):
        return [s for s in self.slices if namespace in (None, s.namespace)
                and service in (None, s.service_name)]

    def pods(self, namespace=None):
        return [p for p in self.pod_list if namespace in (None, p.namespace)]

    def watch(self, callback):
        pass


def _slice(name, ns, svc, eps, ports, family="IPv4"):
    return EndpointSlice(name=name, namespace=ns, service_name=svc, address_type=family,
                         endpoints=[Endpoint(addresses=[ip], hostname=h) for ip, h in eps],
                         ports=[EndpointPort(port=p, protocol="TCP", name=n) for n, p in ports])


def coredns_testns() -> StoreCluster:
    http = [ServicePort(80, "TCP", "http", 80)]
    c = StoreCluster()
    c.ns = [Namespace("testns"), Namespace("kube-system"), Namespace("podns"), Namespace("default")]
    c.svcs = [
        Service("kubedns", "kube-system", cluster_ip="10.0.0.10", ports=[ServicePort(53, "UDP", "dns", 53)]),
        Service("svc1", "testns", cluster_ip="10.0.0.1", ports=list(http)),
        Service("svcempty", "testns", cluster_ip="10.0.0.1", ports=list(http)),
        Service("svc6", "testns", cluster_ip="1234:abcd::1", ports=list(http)),
        Service("hdls1", "testns", cluster_ip="None"),
        Service("external", "testns", type="ExternalName", external_name="ext.interwebs.test", ports=list(http)),
        Service("external-to-service", "testns", type="ExternalName",
                external_name="svc1.testns.svc.cluster.local.", ports=list(http)),
        Service("hdlsprtls", "testns", cluster_ip="None"),
    ]
    c.slices = [
        _slice("kubedns-x", "kube-system", "kubedns", [("172.0.0.100", None)], []),
        _slice("svc1-slice1", "testns", "svc1", [("172.0.0.1", "ep1a")], [("http", 80)]),
        _slice("svcempty-slice1", "testns", "svcempty", [], [("http", 80)]),
        _slice("hdls1-slice1", "testns", "hdls1",
               [("172.0.0.2", None), ("172.0.0.3", None), ("172.0.0.4", "dup-name"), ("172.0.0.5", "dup-name")],
               [("http", 80)]),
        _slice("hdls1-slice2", "testns", "hdls1", [("5678:abcd::1", None), ("5678:abcd::2", None)],
               [("http", 80)], family="IPv6"),
        _slice("hdlsprtls-slice1", "testns", "hdlsprtls", [("172.0.0.20", None)], []),
    ]
    # the CoreDNS pod itself (ns.go finds its Service through the endpoints holding its IP)
    c.pod_list = [Pod("coredns-0", "kube-system", labels={"k8s-app": "kube-dns"}, ip="172.0.0.100")]
    return c


def rrset(section) -> set[str]:
    """An RR section as a set of 'owner ttl type rdata' strings (CoreDNS's tests sort before comparing)."""
    return {f"{rr.rname} {rr.ttl} {QTYPE.get(rr.rtype)} {rr.rdata}" for rr in section}


def ask(resolver, name: str, qtype: str = "A") -> DNSRecord:
    return resolver.answer(DNSRecord.question(name, qtype))


def ensure_loopback() -> None:
    """A fresh network namespace (CI runs the suite under `unshare --net`) starts with lo down.

    Bring it up only when `ip link` says it is down, which never happens in a host's own namespace.
    """
    import shutil
    import subprocess
    if shutil.which("ip") is None:
        return
    out = subprocess.run(["ip", "-o", "link", "show", "lo"], capture_output=True, text=True).stdout
    flags = out.split(">")[0] if ">" in out else ""
    if flags and "UP" not in flags.split("<")[-1].split(","):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)


# A Deployment of 60 pods behind a headless Service: its A answer (60 records) does not fit a
# 512-byte UDP reply, so clients get TC=1 and retry over TCP.
HEADLESS_60_YAML = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: big, namespace: default}
spec:
  replicas: 60
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec:
      containers: [{name: big, image: nginx, ports: [{name: http, containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: big, namespace: default}
spec:
  clusterIP: None
  selector: {app: big}
  ports: [{name: http, port: 80}]
"""

# the same, plus a client pod on node-1 (the trace tests resolve the Service from it)
HEADLESS_60_WITH_CLIENT_YAML = HEADLESS_60_YAML + """---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node-1
  containers: [{name: c, image: curl}]
"""
