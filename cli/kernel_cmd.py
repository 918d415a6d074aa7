"""`netsim up|down|status|exec|verify`: the cluster in real network namespaces (needs root)."""
from __future__ import annotations

import os
import sys

import click

from netsim.cli.common import EXIT_NOT_DELIVERED, ModeChoice, file_option, load_cluster


def _fail(msg: str) -> "click.ClickException":
    return click.ClickException(msg)


def _default_name(cluster, name: str | None) -> str:
    from netsim.kernel.naming import ClusterNameError, check_cluster_name
    try:
        return check_cluster_name(name or cluster.config.name[:16].strip("-") or "netsim")
    except ClusterNameError as e:
        raise _fail(str(e)) from None


def pick_running(name: str | None) -> str:
    from netsim.kernel.state import list_clusters
    if name:
        return name
    running = list_clusters()
    if len(running) == 1:
        return running[0]
    if not running:
        raise _fail("no kernel cluster is up (start one with `netsim up -f FILE`)")
    raise _fail(f"several kernel clusters are up ({', '.join(running)}); choose one with --name")


def _need_root() -> None:
    if os.geteuid() != 0:
        raise _fail("the kernel backend needs root (network namespaces, iptables-restore)")


@click.command("up")
@file_option
@click.option("--name", default=None, help="Cluster prefix for namespaces (default: the Cluster document's name).")
@click.option("--no-rules", is_flag=True, help="Do not load kube-proxy rules (topology and servers only).")
@click.option("--mode", type=ModeChoice(kube_proxy_only=True, unemulated=True), default=None,
              help="kube-proxy mode (default: the Cluster document's proxyMode).")
def up(files, name, no_rules, mode) -> None:
    """Build the cluster from real network namespaces, veths, bridges, VXLAN and iptables."""
    from netsim.kernel.build import KernelBackendError, KernelCluster
    from netsim.rules.iptables.kernel import RulesError
    _need_root()
    cluster = load_cluster(files)
    cluster.config.proxy_mode = mode or cluster.config.proxy_mode
    name = _default_name(cluster, name)
    try:
        kc = KernelCluster.up(cluster, name, sources=list(files), load_rules=not no_rules,
                              log=lambda m: click.echo(f"  {m}", err=True))
    except (KernelBackendError, RulesError) as e:
        raise _fail(str(e)) from None
    p = kc.plan
    click.echo(f"cluster {name} is up: {len(p.nodes)} nodes, {len(p.pods)} pods, "
               f"external client {p.edge.external_ip} (netns {p.edge.external_netns})")
    click.echo(f"  try: netsim exec pod/NAME [-n NS] --name {name} -- curl -s http://SERVICE/")
    click.echo(f"  remove with: netsim down --name {name}")


@click.command("down")
@click.option("--name", default=None, help="Cluster to remove (default: the only one up).")
@click.option("--all", "all_", is_flag=True, help="Remove every kernel cluster.")
@click.option("-v", "--verbose", is_flag=True, help="List what was removed.")
def down(name, all_, verbose) -> None:
    """Remove every namespace, link, process and /etc/netns entry of a kernel cluster."""
    from netsim.kernel import cleanup
    _need_root()
    if all_:
        results = cleanup.down_all()
        if name and name not in results:
            results[name] = cleanup.down(name)
    else:
        if not name:
            name = pick_running(None)
        results = {name: cleanup.down(name)}
    for n, removed in sorted(results.items()):
        click.echo(f"cluster {n}: removed {sum(1 for r in removed if r.startswith('netns'))} namespaces, "
                   f"{sum(1 for r in removed if r.startswith('process'))} processes")
        if verbose:
            for r in removed:
                click.echo(f"  {r}")
    if not results:
        click.echo("no kernel clusters")


@click.command("status")
@click.option("--name", default=None, help="Only this cluster.")
def status(name) -> None:
    """List the kernel clusters, their namespaces and running processes."""
    from netsim.kernel import cleanup, netns
    from netsim.kernel.state import ClusterNotFound, ClusterState, list_clusters
    names = [name] if name else list_clusters()
    if not names:
        click.echo("no kernel clusters")
        return
    for n in names:
        try:
            st = ClusterState.load(n)
        except ClusterNotFound as e:
            raise _fail(str(e)) from None
        present = sum(1 for ns in st.netns if netns.exists(ns))
        alive = [p for p in st.processes if cleanup.alive(p.pid)]
        click.echo(f"{n}: {st.phase}, mode {st.proxy_mode}, {len(st.nodes)} nodes, {len(st.pods)} pods, "
                   f"{present}/{len(st.netns)} namespaces, {len(alive)}/{len(st.processes)} processes"
                   f" (from {', '.join(st.sources) or '-'})")
        for node, ns in sorted(st.nodes.items()):
            click.echo(f"  node/{node:<20} {st.node_ips.get(node, ''):<16} netns {ns}")
        for key, rec in sorted(st.pods.items()):
            click.echo(f"  pod/{key:<40} {rec.ip:<16} {rec.node:<10} netns {rec.netns}")
        if st.external_netns:
            click.echo(f"  external {st.external_ip:<16} netns {st.external_netns}")
        for p in st.processes:
            click.echo(f"  pid {p.pid:<8} {p.role:<10} {'running' if p in alive else 'gone':<8} {p.netns}")


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="pod/NAME|node/NAME|external")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--name", default=None, help="Kernel cluster (default: the only one up).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(target, namespace, name, command) -> None:
    """Run COMMAND inside a pod's (or node's, or the external client's) network namespace."""
    from netsim.kernel import netns
    from netsim.kernel.state import ClusterNotFound, ClusterState
    _need_root()
    cname = pick_running(name)
    try:
        st = ClusterState.load(cname)
    except ClusterNotFound as e:
        raise _fail(str(e)) from None
    kind, _, obj = target.partition("/")
    if kind in ("pod", "po") and obj:
        rec = st.pods.get(f"{namespace}/{obj}")
        if rec is None:
            raise _fail(f'pod "{obj}" not found in namespace {namespace} of kernel cluster {cname}')
        ns = rec.netns
    elif kind in ("node", "no") and obj:
        ns = st.nodes.get(obj)
        if ns is None:
            raise _fail(f'node "{obj}" not found in kernel cluster {cname}')
    elif target == "external":
        ns = st.external_netns
    else:
        raise _fail(f"target {target!r}: expected pod/NAME, node/NAME or external")
    if not ns or not netns.exists(ns):
        raise _fail(f"network namespace {ns!r} is missing (is the cluster up? `netsim status`); "
                    "refusing to run on the host")
    argv = list(command[1:] if command and command[0] == "--" else command)
    sys.stdout.flush()
    os.execvp("ip", netns.exec_argv(ns, argv))


@click.command("verify")
@file_option
@click.option("--flows", default=200, show_default=True, help="Number of real connections to send.")
@click.option("--name", default=None, help="Prefix for the temporary kernel cluster (default: v<pid>).")
@click.option("--seed", default=0, show_default=True, help="Seed for choosing the flows.")
@click.option("-v", "--verbose", is_flag=True, help="Print every flow, not only disagreements.")
@click.option("--mode", type=ModeChoice(kube_proxy_only=True, unemulated=True), default=None,
              help="kube-proxy mode (default: the Cluster document's proxyMode).")
@click.option("--scheduler", type=click.Choice(["rr", "wrr", "lc", "wlc", "sed", "nq", "lblc", "lblcr", "sh", "dh", "mh"]),
              default=None, help="IPVS scheduler (default: the Cluster document's ipvsScheduler).")
@click.option("--vm", is_flag=True,
              help="Run the kernel half in a VM booted on Debian's kernel (has ip_vs; qemu without KVM, "
                   "no network device): one boot, minutes under software emulation.")
def verify(files, flows, name, seed, verbose, mode, scheduler, vm) -> None:
    """Send real connections through the kernel and compare each with the emulator's trace."""
    from netsim.kernel.build import KernelBackendError
    from netsim.rules.iptables.kernel import RulesError
    from netsim.kernel.verify import VerifyError, run_verify
    from netsim.kernel.vm import VmError
    _need_root()
    cluster = load_cluster(files)
    cluster.config.proxy_mode = mode or cluster.config.proxy_mode
    cluster.config.ipvs_scheduler = scheduler or cluster.config.ipvs_scheduler
    name = name or f"v{os.getpid() % 100000}"
    try:
        if vm:
            from netsim.kernel.verify_vm import run_verify_vm
            report = run_verify_vm(cluster, name, flows=flows, seed=seed,
                                   log=lambda m: click.echo(f"  {m}", err=True))
        else:
            report = run_verify(cluster, name, flows=flows, seed=seed, sources=list(files))
    except (KernelBackendError, RulesError, VerifyError, VmError) as e:
        raise _fail(str(e)) from None
    for line in report.lines(verbose=verbose):
        click.echo(line)
    if report.disagreements:
        sys.exit(EXIT_NOT_DELIVERED)


KERNEL_COMMANDS = (up, down, status, exec_, verify)
