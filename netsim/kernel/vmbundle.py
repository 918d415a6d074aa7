"""The Python a VM guest imports, packed once on the host and unpacked into the guest's RAM.

The guest (netsim.kernel.vm) sees this machine's files over virtme-ng's 9p root, where one stat
costs tens of milliseconds under software emulation: an interpreter importing ~450 modules through
a five-entry ``sys.path`` spends most of a minute in negative lookups before running a line. So
the host finds what the guest's entry modules import (stdlib, third-party packages, this package
laid out by its dotted names), copies those packages (whole: a lazily imported submodule must be
there too) as bytecode into one uncompressed tar (sourceless for the stdlib and third-party code;
with sources for this package, so its tracebacks keep their lines), and the guest script unpacks
it into a tmpfs that goes first on ``PYTHONPATH``. A module the bundle lacks is still found further down ``sys.path`` (slowly, over 9p), so a
missing entry costs time, never correctness.

Only bytecode for the running interpreter is shipped; the guest runs the same binary (it sees the
host's /usr), so the .pyc files are valid there (``compileall`` fills in any the host lacks).
"""
from __future__ import annotations

import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

# What the kernel half of `verify --vm` and `bench --vm` import (the pod, DNS and kube-proxy port
# servers are child processes of their own).
GUEST_MODULES = (
    "netsim.kernel.verify_vm", "netsim.kernel.build", "netsim.kernel.verify", "netsim.kernel.probe",
    "netsim.kernel.podserver", "netsim.kernel.dnsserver", "netsim.kernel.proxyport", "netsim.rules.ipvs.kernel",
    "netsim.dns.server",
    "netsim.benchmarks.kernel_runner", "netsim.benchmarks.vm_runner",
)
# Never shipped: heavy and not needed in the guest (a guest that imports them still finds them over 9p).
EXCLUDE_TOP = frozenset({"scapy", "matplotlib", "numpy", "PIL", "rich", "pygments", "hypothesis", "pytest",
                         "_pytest", "setuptools", "pip", "pkg_resources", "__main__", "tkinter", "idlelib"})
_SKIP_DIRS = frozenset({"tests", "test", "__pycache__"})      # bytecode is taken per module (_put_code)
_PROBE = r"""
import importlib, json, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
roots = {}
for n, m in list(sys.modules.items()):
    if hasattr(m, "MAPPING") and n.startswith("__editable__"):
        roots.update(m.MAPPING)                       # setuptools' editable finder: dotted name -> dir
files = {}
for n, m in list(sys.modules.items()):
    f = getattr(m, "__file__", None)
    if f:
        files[n] = [f, hasattr(m, "__path__")]
print(json.dumps({"roots": roots, "files": files}))
"""


def _imported(modules: Sequence[str]) -> dict:
    """Import `modules` in a fresh interpreter like the guest's; what it loaded, and from where."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True,
                          check=True, cwd="/")
    return json.loads(proc.stdout)


def _cached_pyc(py: Path) -> Path:
    return py.parent / "__pycache__" / f"{py.stem}.{sys.implementation.cache_tag}.pyc"


def _put_code(py: Path, out: Path, sourceless: bool) -> None:
    """A module's bytecode: sourceless (``name.pyc`` beside where ``name.py`` would be, which the
    import system loads without looking for a source) or the source with its ``__pycache__`` entry."""
    pyc = _cached_pyc(py)
    if sourceless:
        if pyc.exists():
            shutil.copy2(pyc, out / f"{py.stem}.pyc")
        else:
            py_compile.compile(str(py), cfile=str(out / f"{py.stem}.pyc"), doraise=True)
        return
    shutil.copy2(py, out / py.name)
    if pyc.exists():
        (out / "__pycache__").mkdir(exist_ok=True)
        shutil.copy2(pyc, out / "__pycache__" / pyc.name)


def _copy_tree(src: Path, dst: Path, sourceless: bool) -> None:
    """A whole package directory (a lazily imported submodule must be there too): code, extension
    modules and data files, without test folders or other interpreters' bytecode."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        out = dst / Path(dirpath).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for fn in filenames:
            f = Path(dirpath) / fn
            if fn.endswith(".py"):
                _put_code(f, out, sourceless)
            elif not fn.endswith((".pyc", ".pyo")):
                shutil.copy2(f, out / fn)


def _copy_module(path: Path, dst: Path) -> None:
    if path.suffix == ".py":
        _put_code(path, dst, sourceless=True)
    else:
        shutil.copy2(path, dst / path.name)


def stage(dst: Path, modules: Iterable[str] = GUEST_MODULES) -> int:
    """Lay out under `dst` every top-level package or module that importing `modules` loads.

    Returns the number of files staged."""
    info = _imported(list(modules))
    roots: dict[str, str] = info["roots"]
    done: set[str] = set()
    own_top = {n.split(".")[0] for n in roots}
    for name, (file, is_pkg) in sorted(info["files"].items()):
        top = name.split(".")[0]
        if top in EXCLUDE_TOP or top in done:
            continue
        if top in own_top:
            continue                                   # laid out from the editable mapping below
        path = Path(file)
        if "." in name or is_pkg:                      # a package: the directory of its top level
            pkg_dir = path.parent
            for _ in range(name.count(".")):
                pkg_dir = pkg_dir.parent
            if not (pkg_dir / "__init__.py").exists():
                continue                               # a namespace package: skipped
            _copy_tree(pkg_dir, dst / top, sourceless=True)
        else:
            _copy_module(path, dst)
        done.add(top)
    # this project's packages, each at its dotted path (an editable install maps netsim.rules to
    # rules/ and so on; a regular install has one netsim/ directory)
    if not roots:
        for name, (file, is_pkg) in info["files"].items():
            if name in own_top or (name.split(".")[0] == "netsim" and "." not in name):
                roots[name] = str(Path(file).parent)
    for dotted, src in sorted(roots.items()):
        _copy_tree(Path(src), dst.joinpath(*dotted.split(".")), sourceless=False)
    compileall.compile_dir(str(dst), quiet=2, workers=1)    # bytecode our sources still lack
    return sum(len(f) for _, _, f in os.walk(dst))


def build_bundle(tar_path: Path, modules: Iterable[str] = GUEST_MODULES) -> int:
    """Write the uncompressed tar the guest unpacks (see stage); returns its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="netsim-bundle-") as tmp:
        stage(Path(tmp), modules)
        with tarfile.open(tar_path, "w") as tf:
            for entry in sorted(os.listdir(tmp)):
                tf.add(os.path.join(tmp, entry), arcname=entry)
    return tar_path.stat().st_size
