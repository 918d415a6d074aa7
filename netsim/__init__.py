"""kube-netsim: a packet-level emulator of Kubernetes Service networking.

The public API (``netsim.load``, ``Emulator``, ``Trace``, ``ManifestError``) lives in
``netsim.api``; it is imported on first use so that ``import netsim`` (e.g. by the pytest plugin
at start-up) costs nothing.
"""
from __future__ import annotations

from typing import Any

__all__ = ["load", "Emulator", "Trace", "Resolution", "ManifestError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from netsim import api
        return getattr(api, name)
    raise AttributeError(f"module 'netsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
