"""Run a command inside a throw-away VM booted on Debian's kernel (which has ip_vs as a module).

This machine's own kernel may lack IPVS (no CONFIG_IP_VS); Debian's ``linux-image-amd64`` ships
``ip_vs*.ko``. virtme-ng (``vng``, PyPI) boots that kernel under ``qemu-system-x86_64`` on a
copy-on-write view of this machine's filesystem, so the installed package, python and the
iptables/ipset/ipvsadm tools run inside unchanged. KVM is not used (``--disable-kvm``: software
emulation) and the guest gets no network device at all (virtme-ng starts qemu with ``-net none``):
its traffic stays between the namespaces it makes.

One call = one boot. The command's stdout, stderr and exit status come back through a directory
shared read-write with the guest (``vng --rwdir``); ``/etc`` is an overlay writable in the guest
only (``ip netns exec`` bind-mounts ``/etc/netns/<ns>/resolv.conf``). Everything else the guest
writes stays in the guest and is gone when it powers off.

Software emulation makes the guest slow (tens of times slower than the host on a loaded machine):
timings measured inside are only comparable with other timings of the same boot.
"""
from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

KERNEL_GLOB = "/boot/vmlinuz-*"
VM_MEMORY = "1G"
VM_CPUS = 2
# What a guest command may need from the environment; the rest of the host's is not passed on.
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "NETSIM_RUN_DIR")
# Module names the guest loads before the command: IPVS, the dummy link kube-ipvs0 needs, and
# br_netfilter, which kubeadm requires (its preflight checks /proc/sys/net/bridge/bridge-nf-call-iptables):
# without it a pod's reply to a same-node client crosses cni0 without meeting IPVS's reverse NAT.
GUEST_MODULES = ("ip_vs", "dummy", "br_netfilter")


class VmError(RuntimeError):
    """The VM could not be started (message says what is missing)."""


def _ipvs_module(release: str) -> Optional[str]:
    hits = glob.glob(f"/lib/modules/{release}/kernel/net/netfilter/ipvs/ip_vs.ko*")
    return hits[0] if hits else None


def find_kernel() -> Optional[str]:
    """The newest /boot/vmlinuz-* whose modules include ip_vs (Debian's linux-image-amd64)."""
    best: Optional[tuple[tuple, str]] = None
    for path in glob.glob(KERNEL_GLOB):
        release = Path(path).name[len("vmlinuz-"):]
        if not _ipvs_module(release):
            continue
        key = tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", release))
        if best is None or key > best[0]:
            best = (key, path)
    return best[1] if best else None


def find_vng() -> Optional[str]:
    """virtme-ng's `vng`: $NETSIM_VNG, PATH, this Python's bin directory, or /opt/vng/bin."""
    for cand in (os.environ.get("NETSIM_VNG"), shutil.which("vng"),
                 str(Path(sys.executable).parent / "vng"), "/opt/vng/bin/vng"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def unavailable_reason() -> Optional[str]:
    """None when a VM can be booted here; otherwise one line naming what is missing."""
    missing = []
    if shutil.which("qemu-system-x86_64") is None:
        missing.append("qemu-system-x86_64 (Debian package qemu-system-x86)")
    if find_kernel() is None:
        missing.append("a kernel under /boot with the ip_vs module (Debian package linux-image-amd64)")
    if find_vng() is None:
        missing.append("virtme-ng's vng (pip install virtme-ng)")
    if not any(shutil.which(b) for b in ("busybox", "busybox-static")) \
            and not os.path.exists("/usr/lib/initramfs-tools/bin/busybox"):
        missing.append("busybox (Debian package busybox-static, for virtme-ng's initramfs)")
    if os.geteuid() != 0:
        missing.append("root (the guest runs as the calling user; namespaces need root)")
    return ("cannot boot the IPVS VM: missing " + "; ".join(missing)) if missing else None


BUNDLE = "pylib.tar"                  # the guest's Python, unpacked into its RAM (netsim.kernel.vmbundle)
GUEST_PYLIB = "/run/netsim-py"        # where: a tmpfs of the guest's own
PROGRESS = "progress"                 # the guest script's own lines (the command logs to stderr)


def _guest_script(argv: Sequence[str], shared: Path, cwd: str, env: Mapping[str, str], stdin: bool = False,
                  bundle: bool = False) -> str:
    lines = ["#!/bin/sh"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines.append("export PYTHONDONTWRITEBYTECODE=1")
    prog = f"{shared}/{PROGRESS}"
    lines.append(f'echo "guest: booted, kernel $(uname -r)" >> {prog}')
    lines += [f"modprobe {m} 2>/dev/null" for m in GUEST_MODULES]
    if bundle:
        # one sequential read over 9p instead of thousands of stats; PYTHONSAFEPATH: the script's
        # folder or the cwd (over 9p) never goes first on sys.path
        lines += [f"t0=$(date +%s.%N); mkdir -p {GUEST_PYLIB} && mount -t tmpfs -o size=512m tmpfs {GUEST_PYLIB} "
                  f"&& tar -xf {shared}/{BUNDLE} -C {GUEST_PYLIB} "
                  f"&& export PYTHONPATH={GUEST_PYLIB}${{PYTHONPATH:+:$PYTHONPATH}} PYTHONSAFEPATH=1",
                  f'echo "guest: Python bundle unpacked in $(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo ?)s" >> {prog}']
    lines.append(f"cd {shlex.quote(cwd)} 2>/dev/null || cd /")
    lines.append(f"date +%s.%N > {shared}/started")
    src = f"{shared}/stdin" if stdin else "/dev/null"
    lines.append(f"{shlex.join(argv)} > {shared}/stdout 2> {shared}/stderr < {src}")
    lines.append(f"echo $? > {shared}/rc")
    lines.append(f'echo "guest: command done (exit $(cat {shared}/rc)), powering off" >> {prog}')
    return "\n".join(lines) + "\n"


class _Tail:
    """New complete lines of a file the guest appends to (read from the host between polls)."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path, self.prefix, self.pos, self.partial = path, prefix, 0, b""
        self.last: list[str] = []

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        data = self.partial + data
        *done, self.partial = data.split(b"\n")
        out = [self.prefix + d.decode(errors="replace") for d in done if d.strip()]
        self.last = (self.last + out)[-20:]
        return out


def vng_argv(kernel: str, script: Path, shared: Path, memory: str = VM_MEMORY, cpus: int = VM_CPUS) -> list[str]:
    """The `vng` command line for one boot running `script`."""
    return [find_vng() or "vng", "--run", kernel, "--disable-kvm", "--memory", memory, "--cpus", str(cpus),
            "--rwdir", str(shared), "--overlay-rwdir", "/etc", "--exec", f"sh {shared}/guest.sh"]


def run_in_vm(argv: Sequence[str], timeout: float = 900.0, *, cwd: Optional[str] = None,
              env: Optional[Mapping[str, str]] = None, files: Optional[Mapping[str, bytes]] = None,
              keep: Optional[list[str]] = None, input: Optional[str] = None, bundle: bool = True,
              progress: Optional[Callable[[str], None]] = None, poll: float = 2.0) -> subprocess.CompletedProcess:
    """Boot the VM once, run `argv` inside (as root, in the guest's own kernel), power off.

    Returns a CompletedProcess with the command's own stdout, stderr and exit status; `input` is the
    command's standard input (none otherwise). `files` are
    written into the shared directory first (its path is in $NETSIM_VM_SHARED inside the guest);
    names listed in `keep` are read back from it afterwards into ``result.files``. With `bundle`, the
    Python the guest imports is shipped as one tar and unpacked into the guest's RAM first
    (netsim.kernel.vmbundle). `progress` gets each line the guest logs (its script's steps and the
    command's stderr) as it appears, so a long run shows where it is. Raises VmError when the VM
    cannot start, and subprocess.TimeoutExpired after `timeout` seconds (the VM is killed; the
    exception's ``output`` holds the guest's last lines).
    """
    why = unavailable_reason()
    if why:
        raise VmError(why)
    kernel = find_kernel()
    assert kernel is not None
    shared = Path(tempfile.mkdtemp(prefix="netsim-vm-"))
    try:
        genv = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
        genv.update(env or {})
        genv["NETSIM_VM_SHARED"] = str(shared)
        genv.setdefault("PATH", os.defpath)
        for name, data in (files or {}).items():
            (shared / name).write_bytes(data)
        if bundle:
            from netsim.kernel.vmbundle import build_bundle
            size = build_bundle(shared / BUNDLE)
            if progress:
                progress(f"host: Python bundle for the guest {size / 1e6:.0f} MB")
        script = shared / "guest.sh"
        if input is not None:
            (shared / "stdin").write_text(input)
        script.write_text(_guest_script(list(argv), shared, cwd or os.getcwd(), genv, stdin=input is not None,
                                        bundle=bundle))
        vng = vng_argv(kernel, script, shared)
        t0, wall0 = time.monotonic(), time.time()
        host_env = dict(os.environ)            # vng runs its sibling virtme-run through PATH
        host_env["PATH"] = f"{Path(vng[0]).parent}{os.pathsep}{host_env.get('PATH', os.defpath)}"
        tails = [_Tail(shared / PROGRESS, ""), _Tail(shared / "stderr", "guest| ")]
        with tempfile.TemporaryFile() as console:
            proc = subprocess.Popen(vng, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd="/", env=host_env)
            try:
                while True:
                    try:
                        proc.wait(timeout=poll)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    for tail in tails:
                        for line in tail.lines():
                            if progress:
                                progress(f"[{time.monotonic() - t0:5.0f}s] {line}")
                    if time.monotonic() - t0 > timeout:
                        last = "\n".join(tails[0].last[-3:] + tails[1].last[-5:])
                        raise subprocess.TimeoutExpired(vng, timeout, output=last)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, 9)
                    proc.wait()
            console.seek(0)
            console_text = console.read().decode(errors="replace")
        for tail in tails:
            for line in tail.lines():
                if progress:
                    progress(f"[{time.monotonic() - t0:5.0f}s] {line}")
        seconds = time.monotonic() - t0
        rc_file = shared / "rc"
        if not rc_file.exists():
            tail = " ".join(console_text.split()[-40:])
            raise VmError(f"the VM did not run the command (vng exit {proc.returncode}): {tail}")
        result = subprocess.CompletedProcess(list(argv), int(rc_file.read_text().strip() or 125),
                                             (shared / "stdout").read_text(errors="replace"),
                                             (shared / "stderr").read_text(errors="replace"))
        result.files = {n: (shared / n).read_bytes() for n in (keep or []) if (shared / n).exists()}  # type: ignore[attr-defined]
        started = shared / "started"
        result.boot_seconds = (float(started.read_text()) - wall0  # type: ignore[attr-defined]
                               if started.exists() else None)    # guest clock: from the RTC, roughly the host's
        result.vm_seconds = seconds                                                    # type: ignore[attr-defined]
        return result
    finally:
        shutil.rmtree(shared, ignore_errors=True)
