"""Benchmark: kube-proxy nftables render time and `nft -f` load time per Service count, beside
iptables render and `iptables-restore`.

    unshare --net --mount --propagation private -- python -m netsim.benchmarks.bench_nft_render [--quick] [--rounds R]

N Services × 5 endpoints (N = 100, 1000, 10000; --quick: 100 and 1000), one TCP port each (the
`netsim bench` sync scenario's inputs, benchmarks/sync.py). Per size and round:

* nftables render: a fresh proxier's first full sync (transaction built and applied to the table
  model) and the table dumped as `nft -f` input; the partial sync after one endpoint joins the
  middle Service;
* iptables render: ``syncProxyRules`` + the node's iptables-save view (netsim rules' text);
* kernel: the nftables table loaded with `nft -f` into an emptied scratch namespace, the partial
  transaction loaded on top of it, and the iptables text with `iptables-restore` (nf_tables backend,
  nfacct objects created first as kube-proxy does). The namespace ``netsim-nftbench-<random>`` is
  deleted afterwards; the kernel part is skipped with the reason in the JSON when not root or
  namespaces cannot be made.

Each figure is reported as median, min and max over the rounds (every round kept in the JSON;
``nft``: the nftables mode's figures, ``ipt``: the iptables mode's).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from netsim.benchmarks.bench_iptables_render import NFACCT_ADD_SCRIPT
from netsim.benchmarks.sync import add_one_endpoint, synthetic_inputs
from netsim.rules.iptables.proxier import node_view_text
from netsim.rules.iptables.proxier_sync import sync_proxy_rules
from netsim.rules.nftables.config import NFTablesConfig
from netsim.rules.nftables.proxier_sync import NFTablesProxier

RESULTS = Path(__file__).parent / "results" / "nft_render.json"


def summary(samples: list[float]) -> dict:
    vals = [round(s, 4) for s in samples]
    return {"median": round(statistics.median(vals), 4), "min": min(vals), "max": max(vals), "rounds": vals}


class Netns:
    """A scratch network namespace for the kernel loads (created and deleted by this benchmark)."""

    def __init__(self) -> None:
        self.name = f"netsim-nftbench-{uuid.uuid4().hex[:8]}"
        self.skipped: Optional[str] = None
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
            self.skipped = "needs root, ip and nft"
            return
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if made.returncode != 0:
            self.skipped = f"cannot create a network namespace: {made.stderr.strip()}"
            return
        subprocess.run(["ip", "netns", "exec", self.name, sys.executable, "-c", NFACCT_ADD_SCRIPT,
                        "ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"], check=True)

    def run(self, argv: list[str], text: str) -> float:
        """Seconds ``argv`` took inside the namespace reading ``text`` on stdin (raises on failure)."""
        t0 = time.perf_counter()
        res = subprocess.run(["ip", "netns", "exec", self.name, *argv], input=text, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()[:300]}")
        return elapsed

    def close(self) -> None:
        if self.skipped is None:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


def measure(n: int, e: int, rounds: int, ns: Netns) -> dict:
    ports, eps, cfg = synthetic_inputs(n, e)
    ncfg = NFTablesConfig.from_proxier_config(cfg)
    new_eps, _ = add_one_endpoint(ports, eps, e)
    nft_render, nft_partial, ipt_render = [], [], []
    nft_load, nft_partial_load, ipt_load = [], [], []
    dump, partial_text, ipt_text = "", "", ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        fp = NFTablesProxier(ncfg)
        fp.sync(ports, eps)
        dump = fp.state.dump()
        nft_render.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        partial_text = fp.sync(ports, new_eps).text()
        nft_partial.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ipt_text = node_view_text(sync_proxy_rules(ports, eps, cfg))
        ipt_render.append(time.perf_counter() - t0)
        if ns.skipped is None:
            ns.run(["nft", "flush", "ruleset"], "")
            nft_load.append(ns.run(["nft", "-f", "-"], dump))
            nft_partial_load.append(ns.run(["nft", "-f", "-"], partial_text))
            ns.run(["nft", "flush", "ruleset"], "")
            ipt_load.append(ns.run(["iptables-restore"], ipt_text))
    row = {
        "services": n, "endpoints_per_service": e,
        "nft": {"render_seconds": summary(nft_render), "partial_sync_seconds": summary(nft_partial),
                     "lines": dump.count("\n"), "bytes": len(dump.encode()),
                     "partial_transaction_lines": partial_text.count("\n")},
        "ipt": {"render_seconds": summary(ipt_render), "lines": ipt_text.count("\n"),
                     "bytes": len(ipt_text.encode())},
    }
    if ns.skipped is None:
        row["nft"]["nft_load_seconds"] = summary(nft_load)
        row["nft"]["nft_partial_load_seconds"] = summary(nft_partial_load)
        row["ipt"]["iptables_restore_seconds"] = summary(ipt_load)
    else:
        row["kernel_skipped"] = ns.skipped
    return row


def _cell(block: dict, key: str) -> str:
    v = block.get(key)
    return "-" if v is None else f"{v['median']:.3f} [{v['min']:.3f}-{v['max']:.3f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 and 1000 Services only")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (default 5)")
    parser.add_argument("--endpoints", type=int, default=5, help="endpoints per Service (default 5)")
    args = parser.parse_args(argv)
    sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    ns = Netns()
    try:
        rows = [measure(n, args.endpoints, args.rounds, ns) for n in sizes]
    finally:
        ns.close()
    versions = {tool: subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
                for tool in ("nft", "iptables-restore") if shutil.which(tool)}
    print("seconds: median [min-max] over", args.rounds, "rounds")
    print(f"{'services':>8}  {'nft render':>22}  {'nft -f load':>22}  {'nft partial load':>22}  "
          f"{'ipt render':>22}  {'iptables-restore':>22}")
    for r in rows:
        nft, ipt = r["nft"], r["ipt"]
        print(f"{r['services']:>8}  {_cell(nft, 'render_seconds'):>22}  {_cell(nft, 'nft_load_seconds'):>22}  "
              f"{_cell(nft, 'nft_partial_load_seconds'):>22}  {_cell(ipt, 'render_seconds'):>22}  "
              f"{_cell(ipt, 'iptables_restore_seconds'):>22}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "nft_render", "python": platform.python_version(),
                                   "machine": platform.machine(), "cpus": os.cpu_count(), "kernel": platform.release(),
                                   "tools": versions, "rounds": args.rounds, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
