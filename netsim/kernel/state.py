"""The ownership ledger of one kernel cluster: /run/netsim/<name>/state.json.

Every namespace, process and /etc/netns directory is written to the ledger *before* it is created,
so `netsim down` can remove all of it after a crash or kill -9 (the lesson of Mininet's pattern-based
`mn -c`: clean up by ledger and prefix, never by broad patterns).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

RUN_ROOT_ENV = "NETSIM_RUN_DIR"
DEFAULT_RUN_ROOT = "/run/netsim"


def run_root() -> Path:
    return Path(os.environ.get(RUN_ROOT_ENV, DEFAULT_RUN_ROOT))


@dataclass
class ProcessRecord:
    pid: int
    role: str                      # "podserver" | "dns"
    netns: str                     # where it was started
    argv: list[str] = field(default_factory=list)


@dataclass
class PodRecord:
    namespace: str
    name: str
    netns: str                     # the pod's own namespace, or the node's for hostNetwork pods
    node: str
    ip: str


@dataclass
class ClusterState:
    name: str
    sources: list[str] = field(default_factory=list)
    proxy_mode: str = "iptables"
    phase: str = "creating"        # creating | up | failed
    netns: list[str] = field(default_factory=list)
    etc_netns: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)       # node name -> netns
    node_ips: dict[str, str] = field(default_factory=dict)    # node name -> InternalIP
    pods: dict[str, PodRecord] = field(default_factory=dict)  # "ns/name" -> record
    external_netns: Optional[str] = None
    external_ip: Optional[str] = None
    created_at: float = 0.0

    @property
    def directory(self) -> Path:
        return run_root() / self.name

    @property
    def path(self) -> Path:
        return self.directory / "state.json"

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def own_netns(self, name: str) -> None:
        if name not in self.netns:
            self.netns.append(name)
            self.save()

    def own_process(self, rec: ProcessRecord) -> None:
        self.processes.append(rec)
        self.save()

    @classmethod
    def load(cls, name: str) -> "ClusterState":
        path = run_root() / name / "state.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterNotFound(f"no kernel cluster named {name!r} (no {path})") from None
        except json.JSONDecodeError as e:
            raise ClusterNotFound(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        data["pods"] = {k: PodRecord(**p) for k, p in data.get("pods", {}).items()}
        return cls(**data)


class ClusterNotFound(LookupError):
    """No ledger for the named kernel cluster."""


def list_clusters() -> list[str]:
    root = run_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
