"""One result format for every `netsim bench` scenario: records, their statistics, the environment block,
and DIR/results.json + DIR/results.csv.

A record is one number with what it is (``metric``, ``unit``), where it comes from (``source``:
``kernel`` – measured on a real kernel; ``model`` – a count the emulator derives from the rules, e.g.
rules the kernel evaluates; ``emulator`` – the emulator's own Python speed), the size it belongs to
(``mode``, ``services``, ``endpoints_per_service``), how many repeats it summarises with their spread
(``spread`` = {"min", "max"} for timings, every round in ``rounds``), and whatever locates it further
(``position`` of the Service: first / middle / last; ``backend``: iptables-nft / iptables-legacy; ...).
These three sources never share a series: plots and the report keep them apart.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

SOURCES = ("kernel", "model", "emulator")
REQUIRED_FIELDS = ("mode", "services", "endpoints_per_service", "metric", "value", "unit", "source",
                   "repeats", "spread")
SCHEMA = "netsim.io/bench-results/v1"


@dataclass
class Record:
    """One measured or counted figure."""
    mode: str
    services: int
    endpoints_per_service: int
    metric: str
    value: float
    unit: str
    source: str
    repeats: int = 1
    spread: Optional[dict[str, float]] = None     # {"min": .., "max": ..} over the repeats (None: exact count)
    labels: dict[str, Any] = field(default_factory=dict)     # position, backend, stage, ... (flattened)
    rounds: Optional[list[float]] = None           # every repeat's value, as measured

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"record {self.metric}: source must be one of {SOURCES}, got {self.source!r}")

    def key(self) -> tuple:
        """What identifies this figure across runs (for --compare)."""
        return (self.mode, self.services, self.endpoints_per_service, self.metric, self.source,
                tuple(sorted((k, str(v)) for k, v in self.labels.items() if k != "note")))

    def to_dict(self) -> dict:
        d = asdict(self)
        labels = d.pop("labels")
        rounds = d.pop("rounds")
        d.update(labels)
        if rounds is not None:
            d["rounds"] = rounds
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        base = {k: d[k] for k in REQUIRED_FIELDS}
        extra = {k: v for k, v in d.items() if k not in REQUIRED_FIELDS and k != "rounds"}
        return cls(**base, labels=extra, rounds=d.get("rounds"))


def select(records: Sequence["Record"], **want: Any) -> list["Record"]:
    """The records whose fields and labels equal every ``want`` (e.g. metric=..., position=...), by Services."""
    out = []
    for r in records:
        d = {"mode": r.mode, "services": r.services, "endpoints_per_service": r.endpoints_per_service,
             "metric": r.metric, "source": r.source, "unit": r.unit, **r.labels}
        if all(d.get(k) == v for k, v in want.items()):
            out.append(r)
    return sorted(out, key=lambda r: r.services)


def timed(mode: str, services: int, endpoints: int, metric: str, samples: Sequence[float], unit: str,
          source: str, scale: float = 1.0, digits: int = 6, **labels: Any) -> Record:
    """A timing record: the median of the repeats, with min/max and every round (scaled to ``unit``)."""
    vals = [round(s * scale, digits) for s in samples]
    return Record(mode, services, endpoints, metric, round(statistics.median(vals), digits), unit, source,
                  repeats=len(vals), spread={"min": min(vals), "max": max(vals)}, labels=labels, rounds=vals)


def counted(mode: str, services: int, endpoints: int, metric: str, value: float, unit: str, source: str = "model",
            **labels: Any) -> Record:
    """An exact count (one evaluation, no spread)."""
    return Record(mode, services, endpoints, metric, value, unit, source, repeats=1, spread=None, labels=labels)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def distribution(mode: str, services: int, endpoints: int, metric: str, samples: Sequence[float], unit: str,
                 source: str, scale: float = 1.0, digits: int = 3, **labels: Any) -> list[Record]:
    """p50 and p99 records of one sample set (e.g. 1,000 connection latencies), each naming the count."""
    vals = [v * scale for v in samples]
    lo, hi = round(min(vals), digits), round(max(vals), digits)
    return [Record(mode, services, endpoints, f"{metric}_{name}", round(percentile(vals, q), digits), unit, source,
                   repeats=len(vals), spread={"min": lo, "max": hi}, labels={**labels, "statistic": name})
            for name, q in (("p50", 50), ("p99", 99))]


# ---------------------------------------------------------------- environment
def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str] = ("kube-netsim", "scapy", "pyroute2", "dnslib", "click", "PyYAML",
                                              "rich", "matplotlib", "prometheus_client")) -> dict[str, str]:
    from importlib import metadata
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def git_commit(repo: Optional[Path] = None) -> str:
    here = repo or Path(__file__).resolve().parent.parent
    sha = _run(["git", "-C", str(here), "rev-parse", "HEAD"])
    dirty = _run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"])
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def load_average() -> Optional[list[float]]:
    """The machine's 1/5/15-minute load averages when the environment block is written (the run's
    end): on a shared machine, how much the timings competed with others."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(seed: int, profile: str, **extra: Any) -> dict:
    """Kernel, CPU, Python, package versions, iptables backend, commit, seed."""
    return {
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "iptables": _run(["iptables", "--version"]) or "not installed",
        "iptables_legacy": _run(["iptables-legacy", "--version"]) or "not installed",
        "nft": _run(["nft", "--version"]) or "not installed",
        "ipset": _run(["ipset", "--version"]).splitlines()[0] if _run(["ipset", "--version"]) else "not installed",
        "ip_vs": os.path.exists("/proc/net/ip_vs") or os.path.isdir("/sys/module/ip_vs"),
        "commit": git_commit(),
        "load_average": load_average(),
        "seed": seed,
        "profile": profile,
        **extra,
    }


# ---------------------------------------------------------------- files
def write_results(out_dir: Path, env: dict, records: Sequence[Record]) -> Path:
    """DIR/results.json and DIR/results.csv (one row per record, labels as columns)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r.to_dict() for r in records]
    path = out_dir / "results.json"
    path.write_text(json.dumps({"schema": SCHEMA, "environment": env, "results": rows}, indent=1) + "\n")
    cols: list[str] = list(REQUIRED_FIELDS)
    for row in rows:
        for k in row:
            if k not in cols and k != "rounds":
                cols.append(k)
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols + ["rounds"], extrasaction="ignore")
        w.writeheader()
        for row in rows:
            flat = dict(row)
            if isinstance(flat.get("spread"), dict):
                flat["spread"] = f"{flat['spread']['min']}..{flat['spread']['max']}"
            if "rounds" in flat:
                flat["rounds"] = " ".join(str(x) for x in flat["rounds"])
            w.writerow(flat)
    return path


class ResultsError(ValueError):
    """A results.json that is not one of ours (the message names the file and what was expected)."""


def read_results(path: Path) -> tuple[dict, list[Record]]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ResultsError(f"{path}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise ResultsError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list) or "environment" not in data:
        raise ResultsError(f"{path}: expected a netsim bench results.json "
                           '({"environment": {...}, "results": [...]})')
    records = []
    for i, row in enumerate(data["results"]):
        missing = [k for k in REQUIRED_FIELDS if k not in row] if isinstance(row, dict) else list(REQUIRED_FIELDS)
        if missing:
            raise ResultsError(f"{path}: results[{i}]: missing {', '.join(missing)}")
        try:
            records.append(Record.from_dict(row))
        except (TypeError, ValueError) as e:
            raise ResultsError(f"{path}: results[{i}]: {e}") from None
    return data["environment"], records


def merge_results(paths: Sequence[Path]) -> tuple[dict, list[Record]]:
    """Records of several runs of one sweep (e.g. stage groups run as separate processes) as one run: the
    first environment, every run's skipped list, and a note naming the parts."""
    env: dict = {}
    records: list[Record] = []
    skipped: list[str] = []
    parts: list[dict] = []
    for p in paths:
        e, recs = read_results(Path(p))
        if not env:
            env = dict(e)
        elif e.get("kernel_runner") and not env.get("kernel_runner"):
            env["kernel_runner"] = e["kernel_runner"]
        for key in ("modes", "services", "endpoints"):          # the sweep's axes: every part's
            env[key] = sorted(set(env.get(key) or []) | set(e.get(key) or []),
                              key=lambda v: (isinstance(v, str), v))
        skipped += [s for s in e.get("skipped", []) if s not in skipped]
        records += recs
        # what each part was and how loaded the machine was while it ran
        parts.append({"path": str(p), "stages": sorted({r.labels.get("stage", "?") for r in recs}),
                      "records": len(recs), "kernel_runner": e.get("kernel_runner"), "commit": e.get("commit"),
                      "services": e.get("services"), "connections": e.get("connections"),
                      "stage_seconds": e.get("stage_seconds"), "load_average_start": e.get("load_average_start"),
                      "load_average": e.get("load_average")})
    env["skipped"] = skipped
    env["merged_from"] = [str(p) for p in paths]
    env["parts"] = parts
    return env, records
