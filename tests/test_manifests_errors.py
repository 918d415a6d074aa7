"""Bad input: one ManifestError whose message names the file, the document, the field path and what was
expected. The wording follows the API server's field errors (k8s.io/apimachinery/pkg/util/validation/field:
"Invalid value", "Required value", "Unsupported value: ...: supported values: ...", "Duplicate value",
"Forbidden") and its validation rules (DNS-1123 / DNS-1035 names, IANA_SVC_NAME port names, port
1-65535, Service port uniqueness, the ClusterIP and NodePort allocators' range and "already allocated" checks).
"""
from __future__ import annotations

import pytest

from netsim.control.manifests import ManifestError, load, load_text

SVC = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n"
POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n"
CLUSTER = "apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: a}\n"
D1 = "app.yaml: document 1 (Service 'web'): "

CASES = [
    # allocator conflicts: ClusterIP
    (SVC + "  clusterIP: 10.0.0.1\n  ports: [{port: 80}]\n",
     D1 + "Service default/web: spec.clusterIP: Invalid value: '10.0.0.1': 10.0.0.1 is not in the valid range "
          "of service CIDR 10.96.0.0/12"),
    (SVC + "  clusterIP: 10.96.0.10\n  ports: [{port: 80}]\n",         # kube-dns holds it
     D1 + "Service default/web: spec.clusterIP: Invalid value: '10.96.0.10': 10.96.0.10 is already allocated"),
    (SVC + "  clusterIP: 10.96.0.0\n  ports: [{port: 80}]\n",          # the network address is never handed out
     D1 + "Service default/web: spec.clusterIP: Invalid value: '10.96.0.0': 10.96.0.0 is not in the valid range "
          "of service CIDR 10.96.0.0/12"),
    (SVC + "  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n",
     D1 + "spec.clusterIP: Invalid value: '10.96.0.300': must be a valid IPv4 address"),
    # allocator conflicts: NodePort
    (SVC + "  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n",
     D1 + "Service default/web: spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid "
          "range. The range of valid ports is 30000-32767"),
    (SVC + "  type: NodePort\n  ports: [{port: 80, nodePort: 30001}]\n---\n"
     + SVC.replace("web", "web2") + "  type: NodePort\n  ports: [{port: 80, nodePort: 30001}]\n",
     "app.yaml: document 2 (Service 'web2'): Service default/web2: spec.ports[0].nodePort: Invalid value: 30001: "
     "provided port is already allocated"),
    (SVC + "  ports: [{port: 80, nodePort: 30001}]\n",
     D1 + "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
    (SVC + "  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.0.5\n",
     D1 + "spec.clusterIP: Forbidden: may not be set for ExternalName services"),
    (SVC + "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ports: [{port: 80}]\n",
     D1 + "spec.sessionAffinityConfig: Forbidden: must not be set when `sessionAffinity` is None"),
    (SVC + "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 80\n  ports: [{port: 80}]\n",
     # alloc.go allocHealthCheckNodePort answers with an internal error, not a field error
     D1 + "Service default/web: Internal error occurred: failed to allocate requested HealthCheck NodePort 80: "
          "provided port is not in the valid range. The range of valid ports is 30000-32767"),
    # names
    ("apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\nspec:\n  ports: [{port: 80}]\n",
     "app.yaml: document 1 (Service '1web'): metadata.name: Invalid value: '1web': a DNS-1035 label must consist "
     "of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an "
     "alphanumeric character"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: My_Pod}\nspec:\n  containers: [{name: c}]\n",
     "app.yaml: document 1 (Pod 'My_Pod'): metadata.name: Invalid value: 'My_Pod': a lowercase RFC 1123 "
     "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
     "alphanumeric character"),
    ("apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
     "app.yaml: document 1 (Namespace 'a.b'): metadata.name: Invalid value: 'a.b': a lowercase RFC 1123 label "
     "must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric "
     "character"),
    (POD + "  containers: [{name: c}]\n  hostname: Web\n",
     "app.yaml: document 1 (Pod 'p'): spec.hostname: Invalid value: 'Web': a lowercase RFC 1123 label must "
     "consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
    # port ranges and names
    (SVC + "  ports: [{port: 0}]\n", D1 + "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    (SVC + "  ports: [{port: 80, targetPort: 70000}]\n",
     D1 + "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
    (SVC + "  ports: [{port: 80, targetPort: Http_Port}]\n",
     D1 + "spec.ports[0].targetPort: Invalid value: 'Http_Port': must contain only alpha-numeric characters "
          "(a-z, 0-9), and hyphens (-)"),
    (SVC + "  ports: [{port: 80, targetPort: a-very-long-port-name}]\n",
     D1 + "spec.ports[0].targetPort: Invalid value: 'a-very-long-port-name': must be no more than 15 characters"),
    # IntOrString: a quoted number is a string, validated as a port name (ValidatePortNumOrName)
    (SVC + "  ports: [{port: 80, targetPort: '8080'}]\n",
     D1 + "spec.ports[0].targetPort: Invalid value: '8080': must contain at least one letter (a-z)"),
    (SVC + "  ports: [{port: 80, targetPort: '²'}]\n",
     D1 + "spec.ports[0].targetPort: Invalid value: '²': must contain only alpha-numeric characters (a-z, 0-9), "
          "and hyphens (-)"),
    (CLUSTER + "spec: {coredns: {replicas: -1}}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.coredns.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {\"a\\nb\": c}}\nspec:\n  containers: [{name: c}]\n",
     "app.yaml: document 1 (Pod 'p'): metadata.labels.a\\nb: Invalid value: 'a\\nb': name part must consist of "
     "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
    ("apiVersion: [v1]\nkind: Service\nmetadata: {name: web}\n",
     "app.yaml: document 1 (Service 'web'): apiVersion: expected a string, got list ['v1']"),
    (POD + "  containers: [{name: c, ports: [{containerPort: 65536}]}]\n",
     "app.yaml: document 1 (Pod 'p'): spec.containers[0].ports[0].containerPort: Invalid value: 65536: must be "
     "between 1 and 65535, inclusive"),
    # duplicates
    (SVC + "  ports: [{name: a, port: 80}, {name: b, port: 80}]\n",
     D1 + "spec.ports[1]: Duplicate value: {port: 80, protocol: TCP}"),
    (SVC + "  ports: [{name: a, port: 80}, {name: a, port: 81}]\n", D1 + "spec.ports[1].name: Duplicate value: 'a'"),
    (SVC + "  ports: [{port: 80}, {port: 81}]\n",
     D1 + "spec.ports[0].name: Required value: when there is more than one port, each must be named"),
    (POD + "  containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 80}]}]\n",
     "app.yaml: document 1 (Pod 'p'): spec.containers[0].ports[1]: Duplicate value: containerPort 80/TCP already "
     "declared at spec.containers[0].ports[0]"),
    (POD + "  containers: [{name: c, ports: [{name: web, containerPort: 80}, {name: web, containerPort: 81}]}]\n",
     "app.yaml: document 1 (Pod 'p'): spec.containers[0].ports[1].name: Duplicate value: 'web'"),
    # types, enums, required fields
    (SVC + "  selector: {a: b}\n", D1 + "spec.ports: Required value"),
    (SVC + "  ports: [{port: '80'}]\n", D1 + "spec.ports[0].port: expected an integer, got str '80'"),
    (SVC + "  ports: [{port: true}]\n", D1 + "spec.ports[0].port: expected an integer, got True"),
    (SVC + "  ports: [{port: 80, protocol: ICMP}]\n",
     D1 + "spec.ports[0].protocol: Unsupported value: 'ICMP': supported values: \"TCP\", \"UDP\", \"SCTP\""),
    (SVC + "  type: Ingress\n  ports: [{port: 80}]\n",
     D1 + "spec.type: Unsupported value: 'Ingress': supported values: \"ClusterIP\", \"NodePort\", "
          "\"LoadBalancer\", \"ExternalName\""),
    (SVC + "  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n",
     D1 + "spec.clusterIP: Invalid value: \"None\": may only be set to 'None' for ClusterIP services"),
    (SVC + "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n"
           "  ports: [{port: 80}]\n",
     D1 + "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and "
          "less than 86400"),
    (SVC + "  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n",
     D1 + "spec.externalTrafficPolicy: Invalid value: 'Local': may only be set for externally-accessible services"),
    (SVC + "  type: ExternalName\n", D1 + "spec.externalName: Required value"),
    (SVC + "  ports: {port: 80}\n", D1 + "spec.ports: expected a list, got dict {'port': 80}"),
    (SVC + "  selector: {app: [a]}\n  ports: [{port: 80}]\n",
     D1 + "spec.selector.app: expected a string value, got ['a']"),
    (POD + "  containers: []\n", "app.yaml: document 1 (Pod 'p'): spec.containers: Required value: at least one container"),
    (POD + "  containers: [web]\n", "app.yaml: document 1 (Pod 'p'): spec.containers[0]: expected a mapping"),
    (POD + "  containers: [{name: c}]\nstatus: {conditions: [{type: Ready, status: yes}]}\n",
     "app.yaml: document 1 (Pod 'p'): status.conditions[0].status: expected a string, got True"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: 'x y'}}\nspec:\n  containers: [{name: c}]\n",
     "app.yaml: document 1 (Pod 'p'): metadata.labels.a: Invalid value: 'x y': a valid label must be an empty "
     "string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
     "character"),
    # references to other objects
    (POD + "  nodeName: nope\n  containers: [{name: c}]\n",
     "app.yaml: document 1 (Pod 'p'): Pod default/p: spec.nodeName: node \"nope\" not found"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  containers: [{name: c}]\n",
     "app.yaml: document 1 (Pod 'p'): Pod shop/p: namespaces \"shop\" not found"),
    (POD + "  containers: [{name: c}]\n---\n" + POD + "  containers: [{name: c}]\n",
     "app.yaml: document 2 (Pod 'p'): Pod default/p: pods \"p\" already exists"),
    # workloads and slices
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n"
     "  template: {metadata: {labels: {a: c}}, spec: {containers: [{name: c}]}}\n",
     "app.yaml: document 1 (Deployment 'd'): spec.template.metadata.labels: Invalid value: {'a': 'c'}: "
     "`selector` does not match template `labels` {'a': 'b'}"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: -1\n",
     "app.yaml: document 1 (Deployment 'd'): spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e}\naddressType: IPv4\n",
     "app.yaml: document 1 (EndpointSlice 'e'): metadata.labels.kubernetes.io/service-name: Required value: the "
     "Service this slice belongs to"),
    ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: "
     "{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [1.2.3]}]\n",
     "app.yaml: document 1 (EndpointSlice 'e'): endpoints[0].addresses[0]: Invalid value: '1.2.3': must be a valid "
     "IPv4 address"),
    # document shape
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p\nspec: x\n",
     "app.yaml: line 4, column 5: invalid YAML: did not find expected ',' or '}'"),
    ("- a\n- b\n", "app.yaml: document 1: expected a mapping (a Kubernetes object), got list"),
    ("metadata: {name: x}\n", "app.yaml: document 1 (? 'x'): apiVersion and kind: Required value (a Kubernetes object)"),
    ("apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
     "app.yaml: document 1 (Deployment 'x'): apiVersion: Unsupported value: 'apps/v1beta1': expected 'apps/v1'"),
    ("apiVersion: v1\nkind: Pod\n", "app.yaml: document 1 (Pod): metadata: Required value"),
    # the Cluster document
    (CLUSTER + "spec: {serviceCIDR: 10.96.0.1/12}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.serviceCIDR: Invalid value: '10.96.0.1/12': must be a valid IPv4 "
     "CIDR (network address with prefix length, e.g. 10.96.0.0/12)"),
    (CLUSTER + "spec: {proxyMode: userspace}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.proxyMode: Unsupported value: 'userspace': supported values: "
     "\"iptables\", \"ipvs\", \"nftables\""),
    (CLUSTER + "spec: {ipvsScheduler: fifo}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.ipvsScheduler: Unsupported value: 'fifo': supported values: "
     "\"rr\", \"wrr\", \"lc\", \"wlc\", \"lblc\", \"lblcr\", \"dh\", \"sh\", \"sed\", \"nq\", \"mh\""),
    (CLUSTER + "spec: {podNetwork: calico}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.podNetwork: Unsupported value: 'calico': supported values: "
     "\"vxlan\", \"host-gw\""),
    (CLUSTER + "spec: {nodes: [{name: a, ip: 10.0.0.1}]}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.nodes[0].ip: Invalid value: '10.0.0.1': not in nodeNetwork "
     "192.168.49.0/24"),
    (CLUSTER + "spec: {nodes: [a, a]}\n", "app.yaml: document 1 (Cluster 'a'): spec.nodes[1].name: Duplicate value: 'a'"),
    # the Cluster document is netsim's own schema: unknown fields are refused (kubectl's strict field
    # validation says `unknown field "spec.proxymode"`), with the nearest known name
    (CLUSTER + "spec: {proxymode: ipvs}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.proxymode: unknown field (did you mean \"proxyMode\"?)"),
    (CLUSTER + "spec: {nodes: [{name: a, adress: 192.168.49.9}]}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.nodes[0].adress: unknown field (known: ip, labels, name, role, taints, zone)"),
    (CLUSTER + "spec: {coredns: {enable: false}}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.coredns.enable: unknown field (did you mean \"enabled\"?)"),
    (CLUSTER + "spec: {nodes: []}\n", "app.yaml: document 1 (Cluster 'a'): spec.nodes: Required value: at least one node"),
    (CLUSTER + "spec: {dnsServiceIP: 10.0.0.10}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.dnsServiceIP: Invalid value: '10.0.0.10': not in serviceCIDR "
     "10.96.0.0/12"),
    (CLUSTER + "spec: {nodePortRange: 30000}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.nodePortRange: expected a string, got int 30000"),
    (CLUSTER + "spec: {nodePortRange: '32000-31000'}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.nodePortRange: Invalid value: '32000-31000': expected 'LOW-HIGH', "
     "e.g. 30000-32767"),
    (CLUSTER + "spec: {nodeCIDRMaskSize: 12}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.nodeCIDRMaskSize: Invalid value: 12: must be longer than the "
     "cluster CIDR's prefix and at most 30"),
    (CLUSTER + "spec: {masqueradeAll: 'yes'}\n",
     "app.yaml: document 1 (Cluster 'a'): spec.masqueradeAll: expected a boolean, got str 'yes'"),
    ("apiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: toolongname}\n",
     "app.yaml: document 1 (Cluster 'toolongname'): metadata.name: Invalid value: 'toolongname': must be at most "
     "8 characters (it prefixes kernel namespace and interface names)"),
    (CLUSTER + "---\napiVersion: netsim.io/v1\nkind: Cluster\nmetadata: {name: b}\n",
     "app.yaml: document 2 (Cluster 'b'): only one netsim.io/v1 Cluster document is allowed (first at app.yaml: "
     "document 1 (Cluster 'a'))"),
    ("apiVersion: netsim.io/v1\nkind: Node\nmetadata: {name: a}\n",
     "app.yaml: document 1 (Node 'a'): kind: Unsupported value: 'Node': netsim.io/v1 has only kind 'Cluster'"),
]


@pytest.mark.parametrize("text, message", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_message(text, message):
    with pytest.raises(ManifestError) as err:
        load_text(text, "app.yaml")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_missing_file_and_unknown_example(tmp_path):
    with pytest.raises(ManifestError, match=r"^/nonexistent\.yaml: cannot read: No such file or directory$"):
        load("/nonexistent.yaml")
    with pytest.raises(ManifestError, match=r"^example:nope: no such built-in example \(have: .*httpd-app.*\)$"):
        load("example:nope")
    binary = tmp_path / "x.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match=r"x\.yaml: not a text file \(expected YAML\)$"):
        load(str(binary))


def test_message_names_the_right_file_among_several(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SVC + "  ports: [{port: 80}]\n")
    bad.write_text(POD + "  containers: [{name: c}]\n---\n" + SVC.replace("web", "api") + "  ports: [{port: 80, protocol: tcp}]\n")
    with pytest.raises(ManifestError) as err:
        load([str(good), str(bad)])
    assert str(err.value).startswith(f"{bad}: document 2 (Service 'api'): spec.ports[0].protocol: Unsupported value: 'tcp'")


def test_refused_service_releases_what_it_had_allocated():
    """A Service refused half way (second nodePort taken) must not leak its first nodePort or ClusterIP."""
    from netsim.control.cluster import Cluster, ClusterError
    from netsim.control.model import Service, ServicePort
    c = Cluster()
    c.add(Service("a", type="NodePort", cluster_ip="10.96.1.1", ports=[ServicePort(80, node_port=30001)]))
    bad = Service("b", type="NodePort", cluster_ip="10.96.1.2",
                  ports=[ServicePort(80, name="x", node_port=30002), ServicePort(81, name="y", node_port=30001)])
    with pytest.raises(ClusterError, match=r"spec.ports\[1\].nodePort: Invalid value: 30001: provided port is already allocated"):
        c.add(bad)
    c.add(Service("c", type="NodePort", cluster_ip="10.96.1.2", ports=[ServicePort(80, node_port=30002)]))
    assert c.service("default", "c").ports[0].node_port == 30002


def test_duplicate_node_ip_names_the_field(tmp_path):
    from netsim.control.docfields import ManifestError
    from netsim.control.manifests import load
    f = tmp_path / "dup.yaml"
    f.write_text("apiVersion: netsim.io/v1\nkind: Cluster\nspec:\n"
                 "  nodes: [{name: a, ip: 192.168.49.2}, {name: b, ip: 192.168.49.2}]\n")
    with pytest.raises(ManifestError) as e:
        load([str(f)])
    assert str(e.value) == (f"{f}: document 1 (Cluster): spec.nodes[1].ip: Duplicate value: "
                            "'192.168.49.2' is already the IP of node 'a'")


@pytest.mark.parametrize("spec, message", [
    ("podCIDR: 10.96.0.0/16", "spec.serviceCIDR: Invalid value: '10.96.0.0/12': overlaps spec.podCIDR "
                              "10.96.0.0/16 (at 10.96.0.0/16)"),
    ("nodeNetwork: 10.244.3.0/24", "spec.nodeNetwork: Invalid value: '10.244.3.0/24': overlaps spec.podCIDR "
                                   "10.244.0.0/16 (at 10.244.3.0/24)"),
    ("loadBalancerPool: 10.100.0.0/28", "spec.loadBalancerPool: Invalid value: '10.100.0.0/28': overlaps "
                                        "spec.serviceCIDR 10.96.0.0/12"),
])
def test_overlapping_address_plan_is_refused(spec, message):
    """kubeadm refuses a pod subnet overlapping the service subnet; so do we, for node and LB ranges too."""
    with pytest.raises(ManifestError) as e:
        load_text(f"apiVersion: netsim.io/v1\nkind: Cluster\nspec:\n  {spec}\n", source="plan.yaml")
    assert str(e.value) == f"plan.yaml: document 1 (Cluster): {message}"


def test_kube_proxy_cluster_cidr_may_be_wider_than_the_pod_network():
    c = load_text("apiVersion: netsim.io/v1\nkind: Cluster\nspec:\n  clusterCIDR: 10.0.0.0/8\n")
    assert c.config.cluster_cidr == "10.0.0.0/8"
