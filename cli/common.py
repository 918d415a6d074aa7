"""Options and error handling shared by the netsim commands."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

import click

from netsim.control.docfields import ManifestError

if TYPE_CHECKING:
    from netsim.api import Emulator
    from netsim.control.cluster import Cluster

# grep(1)'s convention, the same for every command (documented in README "Exit status").
EXIT_OK = 0             # delivered / answered / agreed
EXIT_NOT_DELIVERED = 1  # not delivered / not answered / disagreed
EXIT_INPUT_ERROR = 2    # usage or input error (click.UsageError already exits 2)

_VALIDATE_KEY = "netsim.validate"


class ModeChoice(click.Choice):
    """``--mode``'s choices, asked of the proxy-mode registry (netsim.rules.registry) when the
    command runs, so a provider plugged in later (``registry.registered``) is offered too.

    ``kube_proxy_only``: without ``none`` (no kube-proxy rules); ``walks_packets``: only modes whose
    packets can be traced; ``unemulated``: also kube-proxy's modes no provider emulates yet (refused
    by the command in one line); ``extra``: other words first (e.g. ``all``)."""

    def __init__(self, *, kube_proxy_only: bool = False, walks_packets: bool = False, unemulated: bool = False,
                 extra: tuple[str, ...] = ()) -> None:
        self.kube_proxy_only = kube_proxy_only
        self.walks_packets = walks_packets
        self.unemulated = unemulated
        self.extra = extra
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from netsim.rules import registry
        if self.unemulated:
            return (*self.extra, *registry.known_modes(kube_proxy_only=self.kube_proxy_only))
        return (*self.extra, *registry.available_modes(kube_proxy_only=self.kube_proxy_only,
                                                        walks_packets=self.walks_packets))

    @choices.setter
    def choices(self, _value: object) -> None:
        pass                       # click.Choice.__init__ assigns; the registry answers instead


def _remember_validate(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from netsim.control.apischema import normalize_mode
    try:
        ctx.meta[_VALIDATE_KEY] = normalize_mode(value)
    except ValueError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1]) from None
    return value


validate_option = click.option(
    "--validate", default="strict", show_default=True, expose_value=False, callback=_remember_validate,
    metavar="strict|warn|ignore",
    help="As kubectl: refuse (strict), warn about or ignore fields the Kubernetes API does not have.")


_KUBEADM_KEY = "netsim.control.kubeadm"


def _remember_kubeadm(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_KUBEADM_KEY] = False
    return value


kubeadm_option = click.option(
    "--no-kubeadm-objects", is_flag=True, expose_value=False, callback=_remember_kubeadm,
    help="Leave out what kubeadm creates besides CoreDNS: the default/kubernetes Service, the static "
         "control-plane Pods and the kube-proxy DaemonSet (as spec.kubeadm.enabled: false).")


def _remember_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[_VERBOSE_KEY] = value
    return value


_VERBOSE_KEY = "netsim.verbose"


_LIMITS_KEY = "netsim.input-limits"


def _remember_limit(ctx: click.Context, param: click.Parameter, value):
    from netsim.control.inputread import InputLimits, parse_size
    if value is None:
        return value
    limits = ctx.meta.get(_LIMITS_KEY, InputLimits())
    try:
        n = parse_size(value) if param.name == "max_input_bytes" else int(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    field = "max_bytes" if param.name == "max_input_bytes" else "max_values"
    ctx.meta[_LIMITS_KEY] = dataclasses.replace(limits, **{field: n})
    return value


limit_options = [
    click.option("--max-input-bytes", envvar="NETSIM_MAX_INPUT_BYTES", default=None, expose_value=False,
                 callback=_remember_limit, metavar="SIZE",
                 help="Refuse a manifest source larger than this (default 64Mi; env NETSIM_MAX_INPUT_BYTES)."),
    click.option("--max-yaml-values", envvar="NETSIM_MAX_YAML_VALUES", default=None, expose_value=False,
                 callback=_remember_limit, metavar="N",
                 help="Refuse a source with more YAML values than this (default 1000000; env NETSIM_MAX_YAML_VALUES)."),
]


def input_limits():
    """The --max-input-bytes / --max-yaml-values of the running command, else the environment's."""
    from netsim.control.inputread import limits_from_env
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _LIMITS_KEY in ctx.meta:
        return ctx.meta[_LIMITS_KEY]
    try:
        return limits_from_env()
    except ValueError as e:
        raise click.ClickException(f"NETSIM_MAX_INPUT_BYTES / NETSIM_MAX_YAML_VALUES: {e}") from None


_FAULTS_KEY = "netsim.faults"


def _remember_fault(ctx: click.Context, param: click.Parameter, value):
    faults = ctx.meta.setdefault(_FAULTS_KEY, {})
    faults[param.name] = value
    return value


fault_options = [
    click.option("--stop-node", multiple=True, metavar="NODE", expose_value=False, callback=_remember_fault,
                 help="Fault injection: stop NODE's kubelet at t=0 (repeatable)."),
    click.option("--delete-pod", multiple=True, metavar="[NS/]POD", expose_value=False, callback=_remember_fault,
                 help="Fault injection: delete a pod at t=0 as `kubectl delete pod` does (repeatable)."),
    click.option("--advance", type=click.FloatRange(min=0), default=0.0, metavar="SECONDS", expose_value=False,
                 callback=_remember_fault, help="Run the cluster clock forward (after the faults) before reading."),
]


def apply_faults(em: "Emulator") -> None:
    """The running command's --stop-node / --delete-pod, then --advance, on a loaded emulator."""
    ctx = click.get_current_context(silent=True)
    faults = ctx.meta.get(_FAULTS_KEY, {}) if ctx is not None else {}
    for n in faults.get("stop_node", ()):
        if em.cluster.node(n) is None:
            raise click.ClickException(f"--stop-node: no node named {n!r}")
        em.stop_node(n)
    for ref in faults.get("delete_pod", ()):
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        if em.cluster.pod(ns, name) is None:
            raise click.ClickException(f'--delete-pod: pod "{name}" not found in namespace "{ns}"')
        em.delete_pod(name, namespace=ns)
    if faults.get("advance"):
        em.advance(faults["advance"])


def file_option(command):
    """-f/--filename (repeatable) and kubectl's --validate for every command that loads manifests,
    and -v (each skipped object named) where the command has no -v of its own."""
    if not any(p.name == "verbose" for p in getattr(command, "__click_params__", [])):
        command = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_remember_verbose,
                               help="Name every object the loader skipped.")(command)
    for option in limit_options + fault_options:
        command = option(command)
    return click.option(
        "-f", "--filename", "files", multiple=True, required=True, metavar="FILE",
        help="Manifest file (multi-document YAML), - for standard input, or example:NAME; repeatable.")(
        validate_option(kubeadm_option(command)))


def validate_mode() -> str:
    """The --validate value of the running command (strict outside a command)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_VALIDATE_KEY, "strict") if ctx is not None else "strict"


def load_emulator(files: tuple[str, ...], quiet: bool = False, mode: Optional[str] = None,
                  seed: Optional[int] = None) -> "Emulator":
    """netsim.load; bad input becomes a one-line error and exit code 2, never a traceback."""
    from netsim.api import load
    try:
        ctx = click.get_current_context(silent=True)
        kubeadm = ctx.meta.get(_KUBEADM_KEY) if ctx is not None else None
        em = load(*files, mode=mode, seed=seed, validate=validate_mode(), limits=input_limits(), kubeadm=kubeadm)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    apply_faults(em)
    if not quiet:
        for n in em.notices:
            click.echo(n, err=True)
        ctx = click.get_current_context(silent=True)
        if ctx is not None and (ctx.params.get("verbose") or ctx.meta.get(_VERBOSE_KEY)):
            for n in em.cluster.skipped:
                click.echo(n, err=True)
    return em


def load_cluster(files: tuple[str, ...], quiet: bool = False) -> "Cluster":
    """The control plane alone (commands that only read the store)."""
    return load_emulator(files, quiet).cluster


def read_dump(path: str, expected: str) -> str:
    """A rule dump's text, read in chunks under the input limits (``-f``'s); unreadable, binary or
    oversized files become a one-line error naming what was expected."""
    from netsim.control.inputread import read_source
    try:
        return read_source(path, input_limits(), expected=expected)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
