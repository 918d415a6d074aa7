"""Benchmark: kube-proxy iptables render time and dump size, and iptables-restore time on a real kernel.

    python -m netsim.benchmarks.bench_iptables_render [--quick]

N Services × 5 endpoints (N = 1000, 10000; --quick: 1000 only), one TCP port each, node view as
``netsim rules`` prints it. The kernel part loads the same text with ``iptables-restore`` (nf_tables
backend) in a scratch network namespace ``netsim-bench-<random>`` (deleted afterwards); it is
skipped, with the reason in the JSON, when not root or namespaces cannot be made.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from netsim.rules.iptables.proxier import node_view_text
from netsim.benchmarks.sync import synthetic_inputs
from netsim.rules.iptables.proxier_inputs import ProxierConfig, ServicePortInfo
from netsim.rules.iptables.proxier_sync import sync_proxy_rules

RESULTS = Path(__file__).parent / "results" / "iptables_render.json"
# Creates nfacct objects in the current netns over netlink (NFNL_SUBSYS_ACCT / NFNL_MSG_ACCT_NEW),
# as kube-proxy does before its restore; run inside the namespace with `ip netns exec NS python -c`.
NFACCT_ADD_SCRIPT = r"""
import socket, struct, sys
for name in sys.argv[1:]:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    s.bind((0, 0))
    n = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(n), 1) + n             # NFACCT_NAME
    attr += b"\0" * ((4 - len(attr) % 4) % 4)
    body = struct.pack("=BBH", 0, 0, 0) + attr               # nfgenmsg
    # NFNL_SUBSYS_ACCT(7) << 8 | NFNL_MSG_ACCT_NEW(0); NLM_F_REQUEST|NLM_F_ACK|NLM_F_CREATE
    s.send(struct.pack("=IHHII", 16 + len(body), 7 << 8, 1 | 4 | 0x400, 1, 0) + body)
    err = struct.unpack("=i", s.recv(4096)[16:20])[0]
    if err:
        sys.exit(f"nfacct add {name}: errno {-err}")
"""


def build_inputs(n_services: int, n_endpoints: int) -> tuple[list[ServicePortInfo], dict, ProxierConfig]:
    """N Services × E endpoints of kube-proxy's shape (the `netsim bench` sync scenario's inputs)."""
    return synthetic_inputs(n_services, n_endpoints)


def kernel_restore(text: str) -> dict:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables-restore") is None:
        return {"skipped": "needs root, ip and iptables-restore"}
    ns = f"netsim-bench-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        return {"skipped": f"cannot create a network namespace: {made.stderr.strip()}"}
    try:
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", NFACCT_ADD_SCRIPT,
                        "ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"], check=True)
        version = subprocess.run(["iptables-restore", "--version"], capture_output=True, text=True).stdout.strip()
        t0 = time.perf_counter()
        res = subprocess.run(["ip", "netns", "exec", ns, "iptables-restore"], input=text, capture_output=True,
                             text=True)
        elapsed = time.perf_counter() - t0
        if res.returncode != 0:
            return {"error": res.stderr.strip()[:300]}
        return {"restore_seconds": round(elapsed, 3), "iptables": version}
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def run(sizes: list[int], n_endpoints: int = 5, kernel: bool = True) -> list[dict]:
    rows = []
    for n in sizes:
        ports, eps, cfg = build_inputs(n, n_endpoints)
        t0 = time.perf_counter()
        data = sync_proxy_rules(ports, eps, cfg)
        text = node_view_text(data)
        render_s = time.perf_counter() - t0
        row = {"services": n, "endpoints_per_service": n_endpoints, "render_seconds": round(render_s, 3),
               "bytes": len(text.encode()), "lines": text.count("\n"),
               "nat_rules": len(data.nat_rules), "nat_chains": len(data.nat_chains),
               "large_cluster_mode": data.large_cluster_mode}
        if kernel:
            row["kernel"] = kernel_restore(text)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1000 Services only")
    parser.add_argument("--no-kernel", action="store_true", help="skip the iptables-restore measurement")
    args = parser.parse_args(argv)
    rows = run([1000] if args.quick else [1000, 10000], kernel=not args.no_kernel)
    print(f"{'services':>8} {'render s':>9} {'MiB':>7} {'lines':>8} {'nat rules':>9} {'restore s':>10}")
    for r in rows:
        k = r.get("kernel", {})
        restore = k.get("restore_seconds", k.get("skipped", k.get("error", "-")))
        print(f"{r['services']:>8} {r['render_seconds']:>9} {r['bytes'] / 2**20:>7.2f} {r['lines']:>8} "
              f"{r['nat_rules']:>9} {restore!s:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "iptables_render", "python": platform.python_version(),
                                   "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows},
                                  indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
