"""`netsim bench --vm`: the kernel measurements inside one VM boot (Debian's kernel, which has ip_vs).

A :class:`netsim.benchmarks.kernel_runner.KernelRunner` whose ``run`` boots the VM once
(netsim.kernel.vm.run_in_vm) and executes ``python -m netsim.benchmarks.kernel_runner --measures
netsim.benchmarks.vm_runner:VM_MEASURES`` inside with the jobs on stdin. In that kernel IPVS is
programmed for real, so the measures table adds the IPVS first connection
(:func:`measure_ipvs_connect`: the cluster brought up in IPVS mode by the kernel backend, then the
same connections as the iptables measurement).

The guest runs under software emulation (qemu without KVM) on a shared machine: its absolute
timings say nothing about a real node. Every record it returns is labelled
``kernel_runner: vm-<release>`` and ``vm: software-emulated``, and the runner adds, per size and
position, the ratio of each IPVS figure to the iptables one of the same boot — the only VM figures
to quote.
"""
from __future__ import annotations

import json
import sys
import uuid
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

from netsim.benchmarks import kernel_measure as km
from netsim.benchmarks.kernel_runner import DEFAULT_MEASURES, KernelJob, Measure, records_from_json
from netsim.benchmarks.records import Record, distribution, timed

VM_LABEL = "software-emulated (qemu without KVM): compare only with other figures of the same boot"


def measure_ipvs_connect(job: KernelJob) -> list[Record]:
    """First-connection latency through IPVS (p50/p99) and CPU per connection, to the first and the
    last Service by name (IPVS looks a virtual server up in a hash table: position should not matter)."""
    from netsim.kernel.build import KernelCluster
    from netsim.kernel.ipvs import kernel_has_ipvs
    if not kernel_has_ipvs():
        raise km.KernelMeasureError("IPVS first connection needs the ip_vs kernel module")
    if not job.services:
        raise km.KernelMeasureError("IPVS first connection needs at least one Service")
    cluster = km.connect_cluster(job.services, job.endpoints_per_service)
    cluster.config.proxy_mode = "ipvs"
    name = "nv" + uuid.uuid4().hex[:6]
    kc = KernelCluster.up(cluster, name, start_servers=True)
    try:
        client = kc.plan.pods["default/client"].netns
        svcs = sorted((s for s in cluster.services() if s.name.startswith("svc-")), key=lambda s: s.name)
        targets = {"first": svcs[0].cluster_ip, "last": svcs[-1].cluster_ip}
        out: list[Record] = []
        for position, ip in targets.items():
            km._connections(client, ip, 80, 20)                 # neighbour entries, caches
            lat: list[float] = []
            cpu: list[float] = []
            per = max(1, job.connections // job.repeats)
            for _ in range(job.repeats):
                got, c = km._connections(client, ip, 80, per)
                lat += got
                cpu.append(c / per)
            labels = dict(position=position, backend="ipvs", rules="kube-proxy")
            out += distribution("ipvs", job.services, job.endpoints_per_service,
                                   "kernel_first_connection_latency", lat, "µs", "kernel", scale=1e6, **labels)
            out.append(timed("ipvs", job.services, job.endpoints_per_service, "kernel_cpu_per_connection",
                                cpu, "µs", "kernel", scale=1e6, digits=2, **labels, process="client"))
        return out
    finally:
        kc.down()


VM_MEASURES: Mapping[tuple[str, str], Measure] = MappingProxyType({
    **DEFAULT_MEASURES,
    ("connect", "ipvs"): measure_ipvs_connect,
})


def mode_ratios(records: list[Record], runner: str) -> list[Record]:
    """Per (metric, services, endpoints, position, statistic): IPVS value / iptables value of one run."""
    keyed: dict[tuple, dict[str, Record]] = {}
    for r in records:
        if r.source != "kernel" or r.mode not in ("iptables", "ipvs") or not r.value:
            continue
        if r.mode == "iptables" and r.labels.get("backend") not in (None, "iptables-nft"):
            continue
        key = (r.metric, r.services, r.endpoints_per_service, r.labels.get("position"), r.labels.get("statistic"))
        keyed.setdefault(key, {})[r.mode] = r
    out = []
    for (metric, services, eps, position, statistic), pair in sorted(keyed.items(), key=str):
        if "ipvs" not in pair or "iptables" not in pair:
            continue
        labels = {"kernel_runner": runner, "vm": VM_LABEL, "ratio": "ipvs / iptables (same VM boot)"}
        if position is not None:
            labels["position"] = position
        if statistic is not None:
            labels["statistic"] = statistic
        out.append(Record(mode="ipvs", services=services, endpoints_per_service=eps,
                          metric=f"{metric}_ratio_to_iptables", value=round(pair["ipvs"].value / pair["iptables"].value, 3),
                          unit="ratio", source="kernel", repeats=pair["ipvs"].repeats, spread=None, labels=labels))
    return out


@dataclass
class VmKernelRunner:
    """The kernel measurements in one boot of Debian's kernel under qemu (netsim.kernel.vm)."""
    timeout: float = 3600.0
    name: str = "vm"

    def unavailable(self) -> Optional[str]:
        from netsim.kernel import vm
        return vm.unavailable_reason()

    def supports(self, job: KernelJob) -> Optional[str]:
        if (job.kind, job.mode) not in VM_MEASURES:
            return f"no kernel measurement for {job.kind} in mode {job.mode}"
        if job.kind == "connect" and job.mode == "ipvs" and not job.services:
            return "IPVS first connection needs at least one Service"
        return None

    def run(self, jobs: Sequence[KernelJob], progress: Callable[[KernelJob, list[Record]], None]) -> list[Record]:
        from netsim.kernel import vm
        if not jobs:
            return []
        kernel = vm.find_kernel() or "vm"
        self.name = f"vm-{kernel.rsplit('vmlinuz-', 1)[-1]}"
        res = vm.run_in_vm([sys.executable, "-m", "netsim.benchmarks.kernel_runner",
                            "--measures", "netsim.benchmarks.vm_runner:VM_MEASURES"],
                           timeout=self.timeout, input=json.dumps([asdict(j) for j in jobs]),
                           env={"NETSIM_READY_TIMEOUT": "900"})
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise km.KernelMeasureError(f"kernel measurements in the VM failed (exit {res.returncode}): {tail}")
        records = records_from_json(res.stdout)
        for r in records:
            r.labels["kernel_runner"] = self.name
            r.labels["vm"] = VM_LABEL
        for job in jobs:
            progress(job, [r for r in records if r.mode == job.mode and r.services == job.services])
        return records + mode_ratios(records, self.name)


__all__ = ["VM_MEASURES", "VmKernelRunner", "measure_ipvs_connect", "mode_ratios"]
