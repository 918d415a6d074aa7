"""What a pod's processes listen on: the ports a Service's targetPort can reach.

Kubernetes does not know which ports a container's process opens: `containerPort` is informational
("Not specifying a port here DOES NOT prevent that port from being exposed", core/v1 Container.ports),
and `kubectl create deployment NAME --image=httpd` declares none, yet httpd answers on 80. The
emulator therefore takes, per pod:

1. the annotation ``netsim.io/listen: "80/tcp,53/udp"`` when present: exactly those ports;
2. otherwise every declared containerPort, plus the default ports of a well-known official image
   (the table below: what the image's process listens on out of the box, as its Dockerfile's
   ``EXPOSE`` and documentation on Docker Hub say).

An image the table does not know listens only on its declared containerPorts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from netsim.control.model import Pod

LISTEN_ANNOTATION = "netsim.io/listen"

# Official Docker Hub images ("library/NAME") and a few images that Kubernetes tutorials use:
# the ports the process listens on with the image's default command and configuration.
# Sources: each image's Dockerfile EXPOSE line in github.com/docker-library/<name> (or the
# project's own Dockerfile) and its Docker Hub page.
IMAGE_DEFAULT_PORTS: dict[str, tuple[tuple[int, str], ...]] = {
    "httpd": ((80, "TCP"),),                      # docker-library/httpd: EXPOSE 80
    "nginx": ((80, "TCP"),),                      # nginxinc/docker-nginx: EXPOSE 80
    "redis": ((6379, "TCP"),),                    # docker-library/redis: EXPOSE 6379
    "postgres": ((5432, "TCP"),),                 # docker-library/postgres: EXPOSE 5432
    "mysql": ((3306, "TCP"), (33060, "TCP")),     # docker-library/mysql: EXPOSE 3306 33060 (X Protocol)
    "mariadb": ((3306, "TCP"),),                  # MariaDB/mariadb-docker: EXPOSE 3306
    "mongo": ((27017, "TCP"),),                   # docker-library/mongo: EXPOSE 27017
    "memcached": ((11211, "TCP"),),               # docker-library/memcached: EXPOSE 11211
    # docker-library/rabbitmq: EXPOSE 4369 5671 5672 15691 15692 25672; 5671 (TLS) needs certificates,
    # so the default configuration listens on AMQP 5672, epmd 4369, clustering 25672, prometheus 15692
    "rabbitmq": ((5672, "TCP"), (4369, "TCP"), (25672, "TCP"), (15692, "TCP")),
    "tomcat": ((8080, "TCP"),),                   # docker-library/tomcat: EXPOSE 8080
    "traefik": ((80, "TCP"),),                    # traefik/traefik-library-image: EXPOSE 80
    "registry": ((5000, "TCP"),),                 # distribution/distribution-library-image: EXPOSE 5000
    "elasticsearch": ((9200, "TCP"), (9300, "TCP")),
    "wordpress": ((80, "TCP"),),                  # docker-library/wordpress (apache variant): EXPOSE 80
    "ghost": ((2368, "TCP"),),
    "influxdb": ((8086, "TCP"),),
    "zookeeper": ((2181, "TCP"), (2888, "TCP"), (3888, "TCP"), (8080, "TCP")),
    "cassandra": ((7000, "TCP"), (9042, "TCP")),
    "nats": ((4222, "TCP"), (6222, "TCP"), (8222, "TCP")),
    "eclipse-mosquitto": ((1883, "TCP"),),
    # Kubernetes and minikube tutorials
    "registry.k8s.io/echoserver": ((8080, "TCP"),),
    "k8s.gcr.io/echoserver": ((8080, "TCP"),),
    "kicbase/echo-server": ((8080, "TCP"),),
    "gcr.io/google-samples/hello-app": ((8080, "TCP"),),
}

_DOCKER_HUB = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


@dataclass(frozen=True)
class ListenPort:
    port: int
    protocol: str          # TCP | UDP | SCTP
    source: str            # "containerPort", "httpd image default" or "annotation netsim.io/listen"
    address: str = ""      # the address the socket is bound to ("": every address of the host)

    def __str__(self) -> str:
        where = f"{self.address}:" if self.address else ""
        return f"{where}{self.port}/{self.protocol.lower()}"

    @property
    def loopback_only(self) -> bool:
        """Bound to 127.0.0.0/8: no other host can reach it (inet_bind with a loopback address)."""
        return self.address.startswith("127.")


def image_repository(image: str) -> str:
    """The repository of an image reference, without tag or digest; Docker Hub's official images
    as their short name (`docker.io/library/httpd:2.4` → `httpd`)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref = ref[: len(ref) - len(last)] + last.split(":", 1)[0]
    for hub in _DOCKER_HUB:
        if ref.startswith(hub):
            ref = ref[len(hub):]
            break
    if ref.startswith("library/"):
        ref = ref[len("library/"):]
    return ref


def image_default_ports(image: str) -> tuple[tuple[int, str], ...]:
    return IMAGE_DEFAULT_PORTS.get(image_repository(image), ())


def parse_listen(value: str) -> list[tuple[int, str]]:
    """`"80/tcp,53/udp"` → [(80, "TCP"), (53, "UDP")]; the protocol defaults to TCP.
    ValueError with what was expected on anything else."""
    out: list[tuple[int, str]] = []
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        port_s, _, proto = item.partition("/")
        proto = (proto or "tcp").upper()
        if proto not in ("TCP", "UDP", "SCTP"):
            raise ValueError(f"{item!r}: protocol must be tcp, udp or sctp")
        if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
            raise ValueError(f"{item!r}: expected PORT[/PROTOCOL] with PORT between 1 and 65535, "
                             'e.g. "80/tcp,53/udp"')
        if (int(port_s), proto) not in out:
            out.append((int(port_s), proto))
    return out


def listen_ports(pod: Pod) -> list[ListenPort]:
    """The ports the pod's processes listen on (see the module docstring for the rules)."""
    if pod.listen is not None:
        # (port, protocol[, address[, source]]): the last two only from netsim's own built-in pods
        return [ListenPort(e[0], e[1], e[3] if len(e) > 3 else f"annotation {LISTEN_ANNOTATION}",
                           e[2] if len(e) > 2 else "") for e in pod.listen]
    out: list[ListenPort] = []
    seen: set[tuple[int, str]] = set()
    for cp in pod.ports:
        if (cp.container_port, cp.protocol) not in seen:
            seen.add((cp.container_port, cp.protocol))
            out.append(ListenPort(cp.container_port, cp.protocol, "containerPort"))
    for image in pod.images:
        for port, proto in image_default_ports(image):
            if (port, proto) not in seen:
                seen.add((port, proto))
                out.append(ListenPort(port, proto, f"{image_repository(image)} image default"))
    return out


def listens_on(pod: Pod, port: int, protocol: str) -> bool:
    return any(lp.port == port and lp.protocol == protocol and not lp.loopback_only for lp in listen_ports(pod))


def describe(pod: Pod, with_pod: bool = True) -> str:
    """`pod default/web-1 (image httpd) listens on 80/tcp (httpd image default)` — for warnings and traces."""
    images = ", ".join(pod.images) or "none"
    ports = listen_ports(pod)
    what = ", ".join(f"{lp} ({lp.source})" for lp in ports) if ports else "no known port"
    return (f"pod {pod.key}" if with_pod else "the pod") + f" (image {images}) listens on {what}"


def hint(pod: Pod, port: int, protocol: str) -> Optional[str]:
    """How to tell the emulator that the pod does listen on a port it does not know of."""
    if pod.listen is not None:
        return None
    return (f"if its process does listen on {port}/{protocol.lower()}, declare that containerPort "
            f"or annotate the pod {LISTEN_ANNOTATION}: \"{port}/{protocol.lower()}\"")
