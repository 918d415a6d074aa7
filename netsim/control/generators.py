"""The objects kubectl's imperative commands generate, as `--dry-run=client -o yaml` prints them.

* `kubectl create deployment NAME --image=IMG --replicas=N [--port=P]`
  (staging/src/k8s.io/kubectl/pkg/cmd/create/create_deployment.go, createDeployment/buildPodSpec):
  labels and selector `app: NAME`, one container named after the image (its last path segment
  without tag or digest), a containerPort only with --port.
* `kubectl run NAME --image=IMG [--port=P]` (pkg/cmd/run/run.go with the run-pod/v1 generator):
  a Pod labelled `run: NAME`, its container named NAME. With `--replicas=N`, kubectl up to v1.17
  generated a Deployment instead (generate/versioned/run.go, DeploymentAppsV1): labels and
  selector `run: NAME`, container named NAME.
* `kubectl expose deployment|pod NAME --port=P [--target-port=T] [--type=T] [--name=S]`
  (pkg/cmd/expose/expose.go, generate/versioned/service.go ServiceGeneratorV2): the Service takes
  the object's labels, its selector is the Deployment's matchLabels (a Pod's labels), one unnamed
  port with protocol TCP and targetPort T (default P); without --port, the first containerPort.
"""
from __future__ import annotations

from typing import Optional


class GeneratorError(ValueError):
    """What kubectl would say (`error: ...`)."""


def container_name(image: str) -> str:
    """create_deployment.go buildPodSpec: the image's last path segment without tag or digest
    (kubectl also turns '.' and '_' into '-' and adds a random suffix; the suffix is left out)."""
    name = image.split("/")[-1].split("@")[0].split(":")[0]
    return name.replace("_", "-").replace(".", "-")


def _container(name: str, image: str, port: Optional[int]) -> dict:
    c: dict = {"image": image, "name": name}
    if port is not None:
        c["ports"] = [{"containerPort": port}]
    c["resources"] = {}
    return c


def create_deployment(name: str, image: str, replicas: int = 1, port: Optional[int] = None,
                      label_key: str = "app", container: Optional[str] = None) -> dict:
    labels = {label_key: name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"creationTimestamp": None, "labels": dict(labels), "name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "strategy": {},
                 "template": {"metadata": {"creationTimestamp": None, "labels": dict(labels)},
                              "spec": {"containers": [_container(container or container_name(image), image, port)]}}},
        "status": {},
    }


def run(name: str, image: str, replicas: Optional[int] = None, port: Optional[int] = None) -> dict:
    """`kubectl run`: a Pod; with --replicas, the Deployment kubectl <= 1.17 generated."""
    if replicas is not None:
        return create_deployment(name, image, replicas, port, label_key="run", container=name)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"creationTimestamp": None, "labels": {"run": name}, "name": name},
        "spec": {"containers": [_container(name, image, port)], "dnsPolicy": "ClusterFirst",
                 "restartPolicy": "Always"},
        "status": {},
    }


def expose(obj: dict, port: Optional[int], target_port: Optional[str] = None, type_: Optional[str] = None,
           name: Optional[str] = None, protocol: str = "TCP") -> dict:
    """The Service `kubectl expose` generates for a Deployment, ReplicaSet, StatefulSet or Pod document."""
    kind = obj.get("kind")
    meta = obj.get("metadata", {})
    if kind == "Pod":
        selector = dict(meta.get("labels") or {})
        containers = obj.get("spec", {}).get("containers", [])
    else:
        selector = dict(obj.get("spec", {}).get("selector", {}).get("matchLabels") or {})
        containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    if not selector:
        raise GeneratorError(f"couldn't retrieve selectors via --selector flag or introspection: "
                             f"the {kind} has no labels to select its pods")
    if port is None:
        declared = [p for c in containers for p in c.get("ports", [])]
        if not declared:
            raise GeneratorError("couldn't find port via --port flag or introspection")
        port = int(declared[0]["containerPort"])
        protocol = declared[0].get("protocol", protocol)
    tp: int | str = port
    if target_port is not None:
        tp = int(target_port) if str(target_port).isdigit() else str(target_port)
    spec: dict = {"ports": [{"port": port, "protocol": protocol, "targetPort": tp}], "selector": selector}
    if type_:
        spec["type"] = type_
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"creationTimestamp": None, "labels": dict(meta.get("labels") or {}),
                     "name": name or meta.get("name")},
        "spec": spec,
        "status": {"loadBalancer": {}},
    }
