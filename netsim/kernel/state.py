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
    _owned: set[str] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._owned = set(self.netns)

    @property
    def directory(self) -> Path:
        return run_root() / self.name

    @property
    def path(self) -> Path:
        return self.directory / "state.json"

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        data = asdict(self)
        data.pop("_owned", None)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    @property
    def ledger_path(self) -> Path:
        return self.directory / "netns.ledger"

    def own_netns(self, name: str) -> None:
        """Append `name` to the ledger file (flushed) before the namespace is created; state.json
        is rewritten only at milestones, so a 1,000-pod build stays linear."""
        if name not in self._owned:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.ledger_path, "a") as f:
                f.write(name + "\n")
            self._owned.add(name)
            self.netns.append(name)

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
        ledger = path.parent / "netns.ledger"
        if ledger.exists():                       # namespaces created after the last save
            seen = set(data.get("netns", []))
            data["netns"] = data.get("netns", []) + [n for n in ledger.read_text().split() if n not in seen
                                                     and not seen.add(n)]
        data["pods"] = {k: PodRecord(**p) for k, p in data.get("pods", {}).items()}
        return cls(**data)


class ClusterNotFound(LookupError):
    """No ledger for the named kernel cluster."""


def list_clusters() -> list[str]:
    root = run_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").exists())
