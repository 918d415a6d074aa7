"""Proxy mode name -> provider (:class:`netsim.rules.provider.ProxyProvider`).

The CLI's ``--mode`` choices, the loader's check of a Cluster document's ``proxyMode``, the API,
the pytest plugin, the kernel backend and the benchmarks all ask here; nothing else names modes.
Adding a mode is one line in :data:`BUILTIN` (its package holds everything else). A mode
kube-proxy has but no provider emulates yet is accepted as a name (the Cluster document may say it)
and refused, in one line, wherever rules are needed.

Providers load lazily (``import netsim.rules.registry`` imports no mode). Extra providers — a
mode written outside this package, e.g. in a test — plug in for the duration of a ``with
registered(provider):`` block (a context variable: no global state is changed).
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from netsim.rules.provider import ProxyProvider

# mode -> module whose PROVIDER is the mode's provider, in the order modes are listed
BUILTIN: dict[str, str] = {
    "iptables": "netsim.rules.iptables.provider",
    "ipvs": "netsim.rules.ipvs.provider",
    "nftables": "netsim.rules.nftables.provider",
    "none": "netsim.rules.none",
}
# The modes kube-proxy's configuration accepts on Linux (pkg/proxy/apis/config/types.go ProxyMode;
# validation.go validateProxyModeLinux): a Cluster document may name any of them.
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables")
# kube-proxy's mode when none is configured on Linux (cmd/kube-proxy/app/server_linux.go: "" -> iptables):
# the Cluster document's default and the baseline the benchmarks compare other modes with
DEFAULT_MODE = "iptables"

_EXTRA: ContextVar[tuple["ProxyProvider", ...]] = ContextVar("netsim_extra_proxy_providers", default=())


class ProxyModeError(ValueError):
    """An unknown proxy mode, or one no provider emulates (the message is one line)."""


def available_modes(*, kube_proxy_only: bool = False, walks_packets: bool = False) -> tuple[str, ...]:
    """The modes a provider emulates, in order. ``kube_proxy_only``: without modes that program no
    kube-proxy rules (``none``); ``walks_packets``: only modes whose packets can be traced."""
    names = [*BUILTIN, *(p.name for p in _EXTRA.get())]
    if kube_proxy_only:
        names = [n for n in names if get(n).kube_proxy]
    if walks_packets:
        names = [n for n in names if get(n).walks_packets]
    return tuple(dict.fromkeys(names))


def known_modes(*, kube_proxy_only: bool = False) -> tuple[str, ...]:
    """Every mode name accepted as input: the emulated ones, then kube-proxy's other modes (those
    are refused with a one-line reason where they are needed)."""
    return tuple(dict.fromkeys((*available_modes(kube_proxy_only=kube_proxy_only), *KUBE_PROXY_MODES)))


def get(mode: str) -> "ProxyProvider":
    """The provider of ``mode``; :class:`ProxyModeError` (one line) when none emulates it."""
    for p in reversed(_EXTRA.get()):
        if p.name == mode:
            return p
    path = BUILTIN.get(mode)
    if path is not None:
        return importlib.import_module(path).PROVIDER
    emulated = available_modes(kube_proxy_only=True, walks_packets=True)
    if mode in KUBE_PROXY_MODES:
        raise ProxyModeError(f"proxy mode {mode}: not emulated yet (no provider is registered for it); "
                             f"use {' or '.join('--mode ' + m for m in emulated)}")
    raise ProxyModeError(f"proxy mode: expected one of {', '.join(available_modes())}, got {mode!r}")


def notice(mode: str) -> str:
    """What a Cluster document choosing ``mode`` is told (empty when the mode is fully emulated)."""
    try:
        return get(mode).notice
    except ProxyModeError:
        return (f"proxyMode {mode} is accepted but not emulated yet: `netsim rules`, `trace` and `up` need "
                + " or ".join(f"--mode {m}" for m in available_modes(kube_proxy_only=True, walks_packets=True)))


def validate(mode: str) -> str:
    """``mode`` if some provider emulates it, else :class:`ProxyModeError` (as :func:`get`)."""
    get(mode)
    return mode


@contextmanager
def registered(*providers: "ProxyProvider") -> Iterator[None]:
    """Make ``providers`` available (and found first) while the block runs, in this context only."""
    token = _EXTRA.set((*_EXTRA.get(), *providers))
    try:
        yield
    finally:
        _EXTRA.reset(token)
