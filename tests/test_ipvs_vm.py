"""The emulator's IPVS against the real ip_vs, in one VM boot (netsim.kernel.vm).

The VM runs Debian's kernel (ip_vs as a module) under qemu without KVM; tests/vm_guest.py does the
kernel side: scheduling experiments (rr, sed, nq; clients that keep connections open or close each)
and the destination trash. `netsim verify --vm` (the whole cluster in the guest) is run from the
command line, not here: on this shared machine it takes 8-17 minutes. Opt-in (NETSIM_VM_TESTS=1);
skips, with the reason, where qemu, the kernel package or virtme-ng is missing. Slow by nature
(software emulation): a single boot serves every test here.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from netsim.kernel import vm
from netsim.skb.packet import ip2int

pytestmark = [pytest.mark.vm, pytest.mark.kernel]
GUEST = str(Path(__file__).with_name("vm_guest.py"))


def vm_skip_reason() -> str | None:
    """Why the VM tests do not run here (None: they do)."""
    if os.environ.get("NETSIM_VM_TESTS", "0") in ("", "0"):
        return ("VM tests are opt-in (NETSIM_VM_TESTS=1): one boot of Debian's kernel under software "
                "emulation takes minutes, more than a shared machine's full suite should")
    return vm.unavailable_reason()


@pytest.fixture(scope="module")
def vm_run():
    why = vm_skip_reason()
    if why:
        pytest.skip(why)
    res = vm.run_in_vm([sys.executable, GUEST], timeout=2400, keep=["experiments.json"],
                       progress=lambda line: print(line, file=sys.stderr, flush=True))
    assert res.returncode == 0, res.stderr[-2000:]
    return {"experiments": json.loads(res.files["experiments.json"]), "boot": res.boot_seconds,
            "total": res.vm_seconds}


def _table(sched: str, vport: int):
    """The guest's virtual server, built the same way (ipvsadm -A, then -a in the guest's order)."""
    from netsim.rules.ipvs.ipvsadm import parse_save
    sys.path.insert(0, str(Path(__file__).parent))
    import vm_guest as g
    lines = [f"-A -t {g.VIP}:{vport} -s {sched}"]
    lines += [f"-a -t {g.VIP}:{vport} -r {g.SERVERS[n]}:{g.VPORT} -m -w 1" for n in g.ADD_ORDER]
    return parse_save("\n".join(lines) + "\n"), g


def test_schedulers_choose_as_the_kernel_for_open_and_closed_clients(vm_run):
    from netsim.rules.ipvs.datapath import IpvsNode
    from netsim.rules.ipvs.ipvsadm import render_list
    from netsim.rules.ipvs.replay import replay
    for run in vm_run["experiments"]["schedule"]:
        table, g = _table(run["sched"], run["vport"])
        node = IpvsNode(table)
        got = list(replay(node, "tcp", "10.1.0.1", 40000, g.VIP, run["vport"], run["n"], close=run["close"],
                          interval=0.5))
        emulated = [c.decision.after[0] for c in got]
        form = "--close" if run["close"] else "open"
        assert emulated == run["chosen"], f"{run['sched']} {form}: kernel {run['chosen']}, emulator {emulated}"
        states = sorted({cp.state_name for cp in node.conns.all()})
        assert states == run["states"], f"{run['sched']} {form}"
        # the kernel's timers: TIME_WAIT 120 s, ESTABLISHED 900 s (the slow VM took a while since)
        assert run["expires"], form
        if run["close"]:
            assert all(0 <= e <= 120 for e in run["expires"]) and max(run["expires"]) > 60, run["expires"]
        else:
            assert all(600 <= e <= 900 for e in run["expires"]), run["expires"]
        assert render_list(table, header=False) == run["list"], form


def test_a_re_added_real_server_keeps_its_counters_as_in_the_kernel(vm_run):
    from netsim.skb.packet import Packet
    from netsim.rules.ipvs.datapath import IpvsNode
    from netsim.rules.ipvs.ipvsadm import render_list
    k = vm_run["experiments"]["trash"]
    table, g = _table("rr", k["vport"])
    node = IpvsNode(table)
    vs = next(iter(table))
    vp = k["vport"]
    node.local_in(Packet.tcp("10.1.0.1", g.VIP, 40000, vp, flags="S"), 0.0)
    node.reply(Packet.tcp(k["dip"], "10.1.0.1", g.VPORT, 40000, flags="SA"), 0.0)
    node.local_in(Packet.tcp("10.1.0.1", g.VIP, 40000, vp, flags="A"), 0.0)
    vs.del_dest(ip2int(k["dip"]), g.VPORT)
    assert render_list(table, header=False) == k["deleted"]
    vs.add_dest(ip2int(k["dip"]), g.VPORT, weight=1)
    assert render_list(table, header=False) == k["readded"]
    row = next(line for line in k["readded"].splitlines() if k["dip"] in line)
    assert row.split()[4:6] == ["1", "0"]            # ActiveConn 1: the connection came back with it
