"""The cluster the walker/trace scenario tests share (pods pinned to nodes with nodeName)."""
from __future__ import annotations

SCENARIO_YAML = """
apiVersion: netsim.io/v1
kind: Cluster
metadata: {name: walk}
spec:
  nodes:
    - {name: node-1, ip: 192.168.49.2}
    - {name: node-2, ip: 192.168.49.3}
    - {name: node-3, ip: 192.168.49.4}
  proxyMode: iptables
  podNetwork: %(pod_network)s
  seed: 11
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-1
  containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: multi-a, labels: {app: multi}}
spec:
  nodeName: node-1
  containers: [{name: a, image: x, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: multi-b, labels: {app: multi}}
spec:
  nodeName: node-2
  containers: [{name: b, image: x, ports: [{name: http, containerPort: 9090}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-1, labels: {app: echo}}
spec:
  nodeName: node-1
  containers: [{name: e, image: x, ports: [{name: echo, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-2, labels: {app: echo}}
spec:
  nodeName: node-2
  containers: [{name: e, image: x, ports: [{name: echo, containerPort: 5353, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-1, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: c, image: curl}]
---
apiVersion: v1
kind: Pod
metadata: {name: client-3, labels: {app: client}}
spec:
  nodeName: node-3
  containers: [{name: c, image: curl}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-ext}
spec:
  selector: {app: web}
  externalIPs: [203.0.113.50]
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-aff}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-matches}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: multi}
spec:
  selector: {app: multi}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: udp-echo}
spec:
  selector: {app: echo}
  ports: [{port: 53, protocol: UDP, targetPort: echo}]
"""


def scenario_cluster(pod_network: str = "vxlan", proxy_mode: str = "iptables"):
    from netsim.control.manifests import load_text
    text = SCENARIO_YAML % {"pod_network": pod_network}
    text = text.replace("proxyMode: iptables", f"proxyMode: {proxy_mode}")
    return load_text(text, "walker_cluster.yaml")
