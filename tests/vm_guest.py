"""Run inside the IPVS VM by tests/test_ipvs_vm.py (one boot for the whole batch).

Experiments against the real ip_vs, printed as JSON for the host to compare with the emulator:

* ``schedule``: a virtual server 10.96.0.10:80 (NAT) with real servers in two namespaces; N
  connections from the director's own namespace (the LOCAL_OUT path a node's process takes), either
  kept open or each closed before the next; which real server each got (from /proc/net/ip_vs_conn)
  and the connection table's state and timer at the end;
* ``trash``: a real server with an open connection is deleted and added again; its counters."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

VIP, VPORT = "10.96.0.10", 80     # VPORT: the real servers' port; each experiment has its own virtual
# port, so no experiment revives the destinations an earlier one left in the kernel's trash
SERVERS = {"s1": "10.1.0.2", "s2": "10.2.0.2"}
ADD_ORDER = ("s1", "s2")           # ipvsadm -a order: the kernel list is newest first (s2 at the head)


def sh(*argv: str, input: str | None = None) -> str:
    p = subprocess.run(argv, input=input, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def ns(name: str, *argv: str) -> str:
    return sh("ip", "netns", "exec", name, *argv)


def sock_in(name: str) -> socket.socket:
    """A TCP socket created inside namespace `name` (it stays there)."""
    from netsim.kernel.netns import entered
    with entered(name):
        return socket.socket()


def topology() -> None:
    sh("ip", "netns", "add", "d")
    ns("d", "ip", "link", "set", "lo", "up")
    ns("d", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ns("d", "ip", "link", "add", "kube-ipvs0", "type", "dummy")
    ns("d", "ip", "addr", "add", f"{VIP}/32", "dev", "kube-ipvs0")
    for i, (name, ip) in enumerate(SERVERS.items(), start=1):
        sh("ip", "netns", "add", name)
        ns(name, "ip", "link", "set", "lo", "up")
        ns("d", "ip", "link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", name)
        ns("d", "ip", "addr", "add", f"10.{i}.0.1/24", "dev", f"v{name}")
        ns("d", "ip", "link", "set", f"v{name}", "up")
        ns(name, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        ns(name, "ip", "link", "set", "eth0", "up")
        ns(name, "ip", "route", "add", "default", "via", f"10.{i}.0.1")


def serve(name: str, ip: str, stop: threading.Event) -> None:
    """Accept, read until the client's FIN, close: the server side of a short request."""
    ls = sock_in(name)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((ip, VPORT))
    ls.listen(256)
    ls.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            c, _ = ls.accept()
            conns.append(c)
            c.setblocking(False)
        except socket.timeout:
            pass
        for x in list(conns):                   # every turn: a client waiting for our FIN gets it
            try:
                if x.recv(100) == b"":
                    x.close()
                    conns.remove(x)
            except BlockingIOError:
                pass


def ip_vs_conns() -> list[dict]:
    out = []
    for line in ns("d", "cat", "/proc/net/ip_vs_conn").splitlines()[1:]:
        f = line.split()
        hexip = lambda h: socket.inet_ntoa(bytes.fromhex(h))   # noqa: E731
        out.append({"proto": f[0], "cport": int(f[2], 16), "vport": int(f[4], 16), "dip": hexip(f[5]), "state": f[7],
                    "expires": int(f[8])})
    return out


def add_service(sched: str, vport: int) -> None:
    ns("d", "ipvsadm", "-A", "-t", f"{VIP}:{vport}", "-s", sched)
    for name in ADD_ORDER:
        ns("d", "ipvsadm", "-a", "-t", f"{VIP}:{vport}", "-r", f"{SERVERS[name]}:{VPORT}", "-m", "-w", "1")


def schedule(sched: str, n: int, close: bool, vport: int) -> dict:
    add_service(sched, vport)
    chosen, keep = [], []
    result: dict = {}

    def client() -> None:
        for _ in range(n):
            s = sock_in("d")
            s.settimeout(30)
            s.connect((VIP, vport))
            port = s.getsockname()[1]
            if close:
                s.shutdown(socket.SHUT_WR)
                s.settimeout(30)
                while s.recv(100):
                    pass
                s.close()
                time.sleep(0.3)                       # the last ACK reaches IPVS before the next SYN
            else:
                keep.append(s)
            conn = next(c for c in ip_vs_conns() if c["cport"] == port)
            chosen.append(conn["dip"])
        result["table"] = ip_vs_conns()
        result["list"] = ns("d", "ipvsadm", "-Ln", "-t", f"{VIP}:{vport}")
        for s in keep:
            s.close()

    _in_thread(client)
    return {"sched": sched, "n": n, "close": close, "vport": vport, "chosen": chosen,
            "states": sorted({c["state"] for c in result["table"] if c["vport"] == vport}),
            "expires": [c["expires"] for c in result["table"] if c["vport"] == vport], "list": result["list"]}


def _in_thread(fn) -> None:
    """Run `fn` in a thread of its own and re-raise what it raised."""
    err: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:              # noqa: BLE001 - handed to the caller
            err.append(e)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]


def trash(vport: int) -> dict:
    add_service("rr", vport)
    out: dict = {"vport": vport}

    def client() -> None:
        s = sock_in("d")
        s.settimeout(30)
        s.connect((VIP, vport))
        port = s.getsockname()[1]
        dip = next(c for c in ip_vs_conns() if c["cport"] == port)["dip"]
        ns("d", "ipvsadm", "-d", "-t", f"{VIP}:{vport}", "-r", f"{dip}:{VPORT}")
        out["deleted"] = ns("d", "ipvsadm", "-Ln", "-t", f"{VIP}:{vport}")
        ns("d", "ipvsadm", "-a", "-t", f"{VIP}:{vport}", "-r", f"{dip}:{VPORT}", "-m", "-w", "1")
        out["readded"] = ns("d", "ipvsadm", "-Ln", "-t", f"{VIP}:{vport}")
        out["dip"] = dip
        s.close()

    _in_thread(client)
    return out


def main() -> int:
    shared = os.environ.get("NETSIM_VM_SHARED", "")
    results: dict = {"uname": os.uname().release, "t0": time.time()}
    topology()
    stop = threading.Event()
    servers = [threading.Thread(target=serve, args=(n, ip, stop), daemon=True) for n, ip in SERVERS.items()]
    for t in servers:
        t.start()
    time.sleep(1.0)
    runs = [(s, close) for s in ("rr", "sed", "nq") for close in (False, True)]
    results["schedule"] = []
    for i, (s, close) in enumerate(runs):
        results["schedule"].append(schedule(s, 6, close, 8001 + i))
        print(f"{time.time() - results['t0']:.0f}s schedule {s} {'closed' if close else 'open'}: "
              f"{results['schedule'][-1]['chosen']}", file=sys.stderr, flush=True)
    results["trash"] = trash(8100)
    stop.set()
    results["seconds"] = time.time() - results["t0"]
    with open(os.path.join(shared, "experiments.json"), "w") as f:
        json.dump(results, f)
    print(f"experiments done in {results['seconds']:.0f}s", file=sys.stderr, flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
