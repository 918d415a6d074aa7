"""`netsim bench --vm`: the kernel measurements inside one VM boot (Debian's kernel, which has ip_vs).

A :class:`netsim.benchmarks.kernel_runner.KernelRunner` whose ``run`` boots the VM once
(netsim.kernel.vm.run_in_vm) and executes ``python -m netsim.benchmarks.kernel_runner --measures
netsim.benchmarks.vm_runner:VM_MEASURES`` inside with the jobs on stdin. In that kernel IPVS is
programmed for real, so the default measures run the IPVS first connection too
(kernel_measure.measure_connect_programmed: the cluster brought up in IPVS mode by the kernel
backend, then the same connections as the iptables measurement).

The guest runs under software emulation (qemu without KVM) on a shared machine: its absolute
timings say nothing about a real node. Every record it returns is labelled
``kernel_runner: vm-<release>`` and ``vm: software-emulated``, and the runner adds, per size and
position, the ratio of each IPVS figure to the iptables one of the same boot — the only VM figures
to quote.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from netsim.benchmarks import kernel_measure as km
from netsim.benchmarks.kernel_runner import (DEFAULT_MEASURES, KernelJob, Measure, failures_from_json,
                                             records_from_json, unsupported)
from netsim.benchmarks.records import Record

VM_LABEL = "software-emulated (qemu without KVM): compare only with other figures of the same boot"


# Inside the guest every measure is the default one: a mode that is not one iptables text (IPVS) is
# brought up by the kernel backend (kernel_measure.measure_connect_programmed), which the guest's
# kernel can do (it has ip_vs).
VM_MEASURES: Mapping[str, Measure] = DEFAULT_MEASURES


# the connection figures: one per mode, size, position and statistic (a load has one per tool, and the
# tools differ between modes, so a load's ratio would compare unlike things)
RATIO_METRICS = ("kernel_first_connection_latency", "kernel_cpu_per_connection")


def mode_ratios(records: list[Record], runner: str, boot: Optional[str] = None) -> list[Record]:
    """Per mode, size, position and statistic: the mode's kernel value / the baseline mode's
    (kube-proxy's default, netsim.rules.registry.DEFAULT_MODE, with its first iptables backend) of one run."""
    from netsim.benchmarks.kernel_measure import BACKENDS
    from netsim.rules.registry import DEFAULT_MODE
    first_backend = next(iter(BACKENDS))
    keyed: dict[tuple, dict[str, Record]] = {}
    for r in records:
        if r.source != "kernel" or not r.value or not r.metric.startswith(RATIO_METRICS):
            continue
        if r.labels.get("backend") in BACKENDS and r.labels.get("backend") != first_backend:
            continue
        key = (r.metric, r.services, r.endpoints_per_service, r.labels.get("position"), r.labels.get("statistic"))
        keyed.setdefault(key, {})[r.mode] = r
    out = []
    for (metric, services, eps, position, statistic), by_mode in sorted(keyed.items(), key=str):
        base = by_mode.get(DEFAULT_MODE)
        if base is None:
            continue
        for mode, r in by_mode.items():
            if mode == base.mode:
                continue
            labels = {"kernel_runner": runner, "vm": VM_LABEL, "ratio": f"{mode} / {base.mode} (same VM boot)"}
            if boot is not None:
                labels["vm_boot"] = boot
            if position is not None:
                labels["position"] = position
            if statistic is not None:
                labels["statistic"] = statistic
            out.append(Record(mode=mode, services=services, endpoints_per_service=eps,
                              metric=f"{metric}_ratio_to_{base.mode}", value=round(r.value / base.value, 3),
                              unit="ratio", source="kernel", repeats=r.repeats, spread=None, labels=labels))
    return out


@dataclass
class VmKernelRunner:
    """The kernel measurements in one boot of Debian's kernel under qemu (netsim.kernel.vm)."""
    timeout: float = 3600.0
    name: str = "vm"
    progress: Optional[Callable[[str], None]] = None    # the guest's lines as they appear
    failures: list[str] = field(default_factory=list)   # "job: why" for each job that failed in the guest

    def unavailable(self) -> Optional[str]:
        from netsim.kernel import vm
        return vm.unavailable_reason()

    def supports(self, job: KernelJob) -> Optional[str]:
        return unsupported(job, VM_MEASURES, kernel=False)       # the guest's kernel has ip_vs

    def run(self, jobs: Sequence[KernelJob], progress: Callable[[KernelJob, list[Record]], None]) -> list[Record]:
        from netsim.kernel import vm
        if not jobs:
            return []
        kernel = vm.find_kernel() or "vm"
        self.name = f"vm-{kernel.rsplit('vmlinuz-', 1)[-1]}"
        boot = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())     # which boot: ratios never cross boots
        try:
            res = self._boot(jobs)
        except subprocess.TimeoutExpired as e:
            raise km.KernelMeasureError(f"kernel measurements in the VM took longer than {self.timeout:.0f}s; "
                                        f"the guest's last lines: {e.output or 'none'}") from None
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise km.KernelMeasureError(f"kernel measurements in the VM failed (exit {res.returncode}): {tail}")
        records = records_from_json(res.stdout)
        self.failures = failures_from_json(res.stdout)
        for r in records:
            r.labels["kernel_runner"] = self.name
            r.labels["vm"] = VM_LABEL
            r.labels["vm_boot"] = boot
        for job in jobs:
            progress(job, [r for r in records if r.mode == job.mode and r.services == job.services])
        return records + mode_ratios(records, self.name, boot)

    def _boot(self, jobs: Sequence[KernelJob]) -> subprocess.CompletedProcess:
        from netsim.kernel import vm
        return vm.run_in_vm([sys.executable, "-m", "netsim.benchmarks.kernel_runner",
                            "--measures", "netsim.benchmarks.vm_runner:VM_MEASURES"],
                           timeout=self.timeout, input=json.dumps([asdict(j) for j in jobs]),
                           # see verify_vm.GUEST_ENV; a command in a namespace (ipset restore, nft -f of a
                           # large set) can take minutes in the guest on a loaded host
                           env={"NETSIM_READY_TIMEOUT": "900", "NETSIM_FORK_SERVERS": "0",
                                "NETSIM_CMD_TIMEOUT": "1200"},
                           progress=self.progress)


__all__ = ["VM_MEASURES", "VmKernelRunner", "mode_ratios"]
