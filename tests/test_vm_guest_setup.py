"""What makes the IPVS VM's guest fast enough, tested on the host (no VM needed).

* the Python bundle (netsim.kernel.vmbundle): everything the guest's entry modules import, laid out
  so that an interpreter with it first on PYTHONPATH loads netsim and its dependencies from there;
* the guest script (netsim.kernel.vm): modules loaded (ip_vs, dummy, br_netfilter), the bundle
  unpacked into a tmpfs, PYTHONSAFEPATH;
* forked helper servers (netsim.kernel.process, $NETSIM_FORK_SERVERS): readiness and exit status
  as with a new interpreter;
* /run/netns prepared without pyroute2's forked helper (netsim.kernel.netns).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from netsim.kernel import process, vm, vmbundle


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bundle")
    vmbundle.stage(d)
    return d


def test_bundle_holds_what_the_guest_imports(staged: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(staged), PYTHONSAFEPATH="1", PYTHONDONTWRITEBYTECODE="1")
    code = textwrap.dedent(f"""
        import importlib, json, sys
        for m in {list(vmbundle.GUEST_MODULES)!r}:
            importlib.import_module(m)
        print(json.dumps({{n: getattr(m, "__file__", None) for n, m in sys.modules.items()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True,
                         check=True).stdout
    files = json.loads(out)
    ours = {n: f for n, f in files.items() if f and n.split(".")[0] in ("netsim", "pyroute2", "dnslib")}
    assert {"netsim.kernel.build", "netsim.rules.ipvs.proxier", "netsim.dns.server", "pyroute2",
            "dnslib"} <= set(ours)
    outside = {n: f for n, f in ours.items() if not f.startswith(str(staged))}
    assert not outside, outside
    assert "scapy" not in files                          # the guest never pays for scapy
    # bytecode ships with the sources (no compiling inside the guest)
    build = staged / "netsim" / "kernel" / "build.py"
    assert build.exists() and list((build.parent / "__pycache__").glob("build.*.pyc"))


def test_guest_script_unpacks_the_bundle_and_loads_the_modules_kubeadm_needs(tmp_path: Path):
    text = vm._guest_script(["python3", "-m", "x"], tmp_path, "/", {"PATH": "/usr/bin"}, bundle=True)
    assert "modprobe ip_vs" in text and "modprobe dummy" in text and "modprobe br_netfilter" in text
    assert f"mount -t tmpfs -o size=512m tmpfs {vm.GUEST_PYLIB}" in text
    assert f"tar -xf {tmp_path}/{vm.BUNDLE} -C {vm.GUEST_PYLIB}" in text
    assert "PYTHONSAFEPATH=1" in text
    # the command runs after the bundle is in place, its streams go to the shared directory
    assert text.index("tar -xf") < text.index("python3 -m x")
    assert f"> {tmp_path}/stdout 2> {tmp_path}/stderr" in text
    assert "tar -xf" not in vm._guest_script(["true"], tmp_path, "/", {}, bundle=False)


def test_tail_reports_complete_lines_only(tmp_path: Path):
    f = tmp_path / "log"
    t = vm._Tail(f, "g| ")
    assert t.lines() == []
    f.write_text("one\ntw")
    assert t.lines() == ["g| one"]
    with open(f, "a") as fh:
        fh.write("o\nthree\n")
    assert t.lines() == ["g| two", "g| three"]
    assert t.last == ["g| one", "g| two", "g| three"]


def _exit_status(proc, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.poll()


def test_forked_helper_is_ready_and_exits_like_a_new_interpreter(tmp_path: Path, monkeypatch):
    mod = tmp_path / "netsim_fork_probe.py"
    mod.write_text(textwrap.dedent("""
        import os, time
        from pathlib import Path
        def main(argv):
            ready, mode = Path(argv[0]), argv[1]
            print("child", os.getpid(), os.getsid(0) == os.getpid(), flush=True)
            ready.write_text(str(os.getpid()))
            if mode == "fail":
                raise RuntimeError("boom")
            time.sleep(0.2)
            return 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(process.FORK_ENV, "1")
    ok = process.spawn([sys.executable, "-m", "netsim_fork_probe", str(tmp_path / "a.ready"), "ok"],
                       tmp_path / "a.ready", tmp_path / "a.log", "probe a")
    assert isinstance(ok.proc, process.Forked)
    process.wait_ready([ok], timeout=30)
    assert _exit_status(ok.proc) == 3
    assert (tmp_path / "a.log").read_text().split() == ["child", str(ok.pid), "True"]   # own session
    bad = process.spawn([sys.executable, "-m", "netsim_fork_probe", str(tmp_path / "b.ready"), "fail"],
                        tmp_path / "b.ready", tmp_path / "b.log", "probe b")
    assert _exit_status(bad.proc) == 1
    assert "RuntimeError: boom" in (tmp_path / "b.log").read_text()


def test_without_the_switch_helpers_are_new_interpreters(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(process.FORK_ENV, raising=False)
    ln = process.spawn([sys.executable, "-c", "import sys; open(sys.argv[1], 'w').write('x')", str(tmp_path / "r")],
                       tmp_path / "r", tmp_path / "log", "plain")
    assert isinstance(ln.proc, subprocess.Popen)
    process.wait_ready([ln], timeout=60)
    assert ln.proc.wait(timeout=60) == 0


def test_guest_command_line_names_the_cluster():
    from netsim.kernel.verify_vm import GUEST_ENV, guest_argv
    argv = guest_argv("v123")
    assert argv[-2:] == ["--cluster", "v123"] and "netsim" in " ".join(argv)
    assert GUEST_ENV[process.FORK_ENV] == "0"          # off in the guest until forked DNS servers answer


@pytest.mark.kernel
def test_netns_run_dir_is_prepared_in_process(tmp_path: Path, monkeypatch):
    """A fresh /run/netns (as in a booted VM) becomes a shared mount point of its own, as
    iproute2's netns_add makes it, without pyroute2's forked helper (which must answer in 2 s)."""
    from kernel_helpers import require_root_and_tools, unique_name
    from netsim.kernel import netns
    require_root_and_tools("ip")
    run_dir = tmp_path / "netns"
    monkeypatch.setattr(netns, "NETNS_RUN_DIR", str(run_dir))
    import pyroute2.netns

    def forked(*_a, **_k):
        raise AssertionError("pyroute2's netns.create (a forked helper) must not be used")
    monkeypatch.setattr(pyroute2.netns, "create", forked)
    name = unique_name("rd")
    try:
        netns.create(name)
        assert netns._run_dir_is_mountpoint()
        mounts = [line.split() for line in open("/proc/self/mountinfo")]
        own = next(m for m in mounts if m[4] == str(run_dir))
        assert any(f.startswith("shared:") for f in own[6:own.index("-")])
        assert any(m[4] == str(run_dir / name) for m in mounts)      # the namespace bound onto its file
        home = os.stat("/proc/thread-self/ns/net").st_ino
        with netns.entered(name):
            assert os.stat("/proc/thread-self/ns/net").st_ino == netns.inode(name) != home
        netns.create(name + "b")                                      # the second one reuses the mount
    finally:
        for n in (name, name + "b"):
            if netns.exists(n):
                netns.remove(n)
        subprocess.run(["umount", "-l", str(run_dir)], capture_output=True)


def test_down_stops_a_helper_this_process_forked_and_nothing_else(tmp_path: Path, monkeypatch):
    from netsim.kernel import cleanup
    from netsim.kernel.state import ProcessRecord
    mod = tmp_path / "netsim_fork_sleeper.py"
    mod.write_text("import time\nfrom pathlib import Path\n"
                   "def main(argv):\n    Path(argv[0]).write_text('x')\n    time.sleep(60)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(process.FORK_ENV, "1")
    ln = process.spawn([sys.executable, "-m", "netsim_fork_sleeper", str(tmp_path / "s.ready")],
                       tmp_path / "s.ready", tmp_path / "s.log", "sleeper")
    process.wait_ready([ln], timeout=30)
    rec = ProcessRecord(pid=ln.pid, role="podserver", netns="x", argv=ln.argv)
    assert cleanup.stop_process(rec, "nosuchcluster")          # our own forked child: stopped
    assert not cleanup.alive(ln.pid)
    # a process that is not our child, nor names the cluster, is left alone
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert not cleanup.stop_process(ProcessRecord(pid=1, role="podserver", netns="x", argv=[]), "nosuchcluster")
        assert not cleanup._forked_by_this_process(other.pid)    # our child, but not a fork of this process
        assert cleanup.alive(other.pid)
    finally:
        other.kill()
        other.wait()
