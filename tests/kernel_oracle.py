"""The kernel as oracle for rendered rule sets: load many of them with the real `iptables-restore`
(nf_tables and legacy backends) and `ipset restore`, in one scratch network namespace, batched.

Batching: the rule sets are concatenated into one restore input. `iptables-restore` commits each
`*table ... COMMIT` block on its own (iptables-restore(8): "the table is flushed ... and then
committed") and stops at the first block it cannot load, naming the line; the block's owner is
recorded as rejected and the rest is loaded in the next run. So N accepted rule sets cost one process
per backend, not N. `ipset restore` works the same way ("Error in line N"); the kube-proxy ipsets of
every node share names and types, so `-exist` lets all nodes' entries go into the same sets.

Every namespace here is created by the caller (kernel_helpers.scratch_netns) and deleted by it.
"""
from __future__ import annotations

import difflib
import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from netsim.rules.iptables import kernel as kernel_rules

RESTORE = {"nft": "iptables-restore", "legacy": "iptables-legacy-restore"}
_LINE = re.compile(r"(?:Error occurred at line: |line )(\d+)|Error in line (\d+)")


@dataclass(frozen=True)
class RuleSet:
    """One text to load: `kind` is "iptables" (an iptables-restore input), "ipset" (ipset restore) or
    "nftables" (`nft -f` input of kube-proxy's `ip kube-proxy` table)."""
    label: str
    kind: str
    text: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.text}".encode()).hexdigest()


@dataclass
class Rejection:
    ruleset: RuleSet
    tool: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} rejected {self.ruleset.label}: {self.message}"


def available_backends() -> list[str]:
    return [b for b, tool in RESTORE.items() if shutil.which(tool)]


def _run(netns: str, argv: list[str], text: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=text, capture_output=True, text=True,
                          timeout=300)


def _batched(netns: str, argv: list[str], sets: list[RuleSet], tool: str) -> list[Rejection]:
    """Load `sets` with one `argv` process per rejection (plus one); return the rejected ones."""
    rejected: list[Rejection] = []
    todo = list(sets)
    while todo:
        starts, lines = [], []
        for s in todo:
            starts.append(len(lines) + 1)
            body = s.text if s.text.endswith("\n") else s.text + "\n"
            lines += body.splitlines()
        proc = _run(netns, argv, "\n".join(lines) + "\n")
        if proc.returncode == 0:
            break
        msg = " ".join((proc.stderr or proc.stdout).split())
        m = _LINE.search(msg)
        if m is None:
            if len(todo) == 1:
                rejected.append(Rejection(todo[0], tool, msg))
                break
            # no line to blame: load one by one
            for s in todo:
                rejected += _batched(netns, argv, [s], tool)
            break
        line = int(m.group(1) or m.group(2))
        i = max(k for k, start in enumerate(starts) if start <= line)
        rel = line - starts[i] + 1
        rejected.append(Rejection(todo[i], tool, f"line {rel}: {todo[i].text.splitlines()[rel - 1] if rel <= len(todo[i].text.splitlines()) else ''} — {msg}"))
        todo = todo[i + 1:]
    return rejected


_NFT_OP = re.compile(r"^((?:add|flush|delete) (?:table|chain|set|map|rule|element) (?:ip|ip6|inet)) kube-proxy\b")
_NFT_LINE = re.compile(r"^[^:\n]*:(\d+):\d+(?:-\d+)?: Error", re.M)


def _batched_nft(netns: str, sets: list[RuleSet]) -> list[Rejection]:
    """Load nftables rule sets in one `nft -f` batch, each in a table of its own (kube-proxy's table
    renamed `kp<N>`). The batch is one transaction: a refused line voids all of it, so its owner is
    recorded as rejected and the others are loaded again without it."""
    rejected: list[Rejection] = []
    todo = list(sets)
    while todo:
        starts, lines = [], ["flush ruleset"]
        for i, s in enumerate(todo):
            starts.append(len(lines) + 1)
            lines += [_NFT_OP.sub(rf"\1 kp{i}", line) for line in s.text.splitlines()]
        proc = _run(netns, ["nft", "-f", "-"], "\n".join(lines) + "\n")
        if proc.returncode == 0:
            break
        msg = " ".join((proc.stderr or proc.stdout).split())
        m = _NFT_LINE.search(proc.stderr or "")
        if m is None or int(m.group(1)) < starts[0]:
            if len(todo) == 1:
                rejected.append(Rejection(todo[0], "nft -f", msg[:400]))
                break
            for s in todo:
                rejected += _batched_nft(netns, [s])
            break
        line = int(m.group(1))
        i = max(k for k, start in enumerate(starts) if start <= line)
        rejected.append(Rejection(todo[i], "nft -f", f"line {line - starts[i] + 1}: {msg[:400]}"))
        todo = todo[:i] + todo[i + 1:]
    _run(netns, ["nft", "flush", "ruleset"], "")
    return rejected


# `-m ipvs --vaddr A --vproto P --vport N` (xt_ipvs) needs the ip_vs module, which this project's CI
# kernel lacks; where the kernel refuses the match, it is taken out of the rule before loading (the rest
# of the rule — chain, addresses, target — is still checked). The IPVS VM runner loads it whole.
_IPVS_MATCH = re.compile(r" -m ipvs(?: --vaddr \S+| --vproto \S+| --vport \S+| --vdir \S+| --vmethod \S+)*")
_IPVS_PROBE = "*filter\n:FZ-IPVS - [0:0]\n-A FZ-IPVS -m ipvs --vaddr 10.0.0.1 -j ACCEPT\nCOMMIT\n"


def ipvs_match_supported(netns: str, backends: list[str]) -> bool:
    return all(_run(netns, [RESTORE[b]], _IPVS_PROBE).returncode == 0 for b in backends)


def without_ipvs_match(s: RuleSet) -> RuleSet:
    if " -m ipvs" not in s.text:
        return s
    return RuleSet(s.label + " [-m ipvs taken out: no ip_vs in this kernel]", s.kind, _IPVS_MATCH.sub("", s.text))


def load_all(netns: str, sets: Iterable[RuleSet], backends: Optional[list[str]] = None) -> list[Rejection]:
    """Load every rule set into `netns` (ipsets first: iptables rules name them); the rejected ones."""
    unique = list({s.digest: s for s in sets}.values())
    backends = backends or available_backends()
    if any(" -m ipvs" in s.text for s in unique) and not ipvs_match_supported(netns, backends):
        unique = [without_ipvs_match(s) for s in unique]
    ipsets = [s for s in unique if s.kind == "ipset"]
    tables = [s for s in unique if s.kind == "iptables"]
    nft_tables = [s for s in unique if s.kind == "nftables"]
    rejected: list[Rejection] = []
    if nft_tables:
        rejected += _batched_nft(netns, nft_tables)
    if tables:
        kernel_rules.ensure_nfacct(netns, "\n".join(t.text for t in tables))
    if ipsets:
        rejected += _batched(netns, ["ipset", "restore", "-exist"], ipsets, "ipset restore")
    for backend in backends:
        rejected += _batched(netns, [RESTORE[backend], "-w", "5"], tables, RESTORE[backend])
    return rejected


def node_rule_sets(cluster: object, label: str, node_names: Iterable[str]) -> list[RuleSet]:
    """Every rule set kube-proxy would load on each node, in every mode this kernel can hold:
    iptables mode (the node's iptables-save view) and IPVS mode (its ipsets and iptables rules)."""
    from netsim.rules.iptables.proxier import render
    from netsim.rules.ipvs.proxier import build
    out = []
    for node in node_names:
        out.append(RuleSet(f"{label} node {node} (iptables mode)", "iptables", render(cluster, node)))
        state = build(cluster, node)
        out.append(RuleSet(f"{label} node {node} (ipvs mode, ipset save)", "ipset", state.ipset_save()))
        out.append(RuleSet(f"{label} node {node} (ipvs mode, iptables)", "iptables", state.iptables))
    return out


# ------------------------------------------------------------------ iptables-save parity (issue 14 §3)
def saved_form(saved: str) -> str:
    """`iptables-save`'s output as `netsim rules` prints it: its `# Generated by` / `# Completed on`
    comment lines left out and chain counters zeroed (`[0:0]`; iptables-save(8) prints the packet and
    byte counters of each chain there)."""
    return "".join(re.sub(r" \[\d+:\d+\]$", " [0:0]", line) + "\n" if line.startswith(":") else line + "\n"
                   for line in saved.splitlines() if not line.startswith("#"))


@dataclass
class SaveMismatch:
    ruleset: RuleSet
    message: str

    def __str__(self) -> str:
        return f"{self.ruleset.label}: {self.message}"


def first_difference(ours: str, kernels: str, context: int = 2, limit: int = 20) -> str:
    """The first hunk of a unified diff of ours against the kernel's, at most `limit` lines."""
    diff = list(difflib.unified_diff(ours.splitlines(), kernels.splitlines(), "netsim iptables_save()",
                                     "kernel iptables-save", n=context, lineterm=""))
    hunk = diff[:2]
    for line in diff[2:]:
        if line.startswith("@@") and len(hunk) > 2:
            break
        hunk.append(line)
    return "\n".join(hunk[:limit])


# One process for the whole batch: for each rule set, empty the namespace (`nft flush ruleset` drops
# every table of the nf_tables backend; nfacct objects are not part of it and stay), restore the text
# (iptables-restore(8), nf_tables backend) and save it back.
_SAVE_LOOP = """
for f in "$1"/*.in; do
    b="${f%.in}"
    nft flush ruleset || exit 3
    if iptables-restore -w 5 < "$f" 2> "$b.err"; then iptables-save > "$b.out" 2>> "$b.err"; fi
done
"""


def compare_save_forms(netns: str, sets: Iterable[RuleSet],
                       render: Optional[Callable[[str], str]] = None) -> list[SaveMismatch]:
    """Restore each iptables rule set into the (otherwise unused) namespace `netns`, read it back with
    `iptables-save`, and compare with `render(text)` (default: netsim's `iptables_save`) byte for
    byte, counters and comment lines aside; the sets that differ or do not load."""
    if render is None:
        from netsim.rules.iptables.render import iptables_save as render
    todo = [s for s in {s.digest: s for s in sets}.values() if s.kind == "iptables"]
    if not todo:
        return []
    kernel_rules.ensure_nfacct(netns, "\n".join(s.text for s in todo))
    out: list[SaveMismatch] = []
    with tempfile.TemporaryDirectory(prefix="netsim-save-") as tmp:
        d = Path(tmp)
        for i, s in enumerate(todo):
            (d / f"{i:06d}.in").write_text(s.text if s.text.endswith("\n") else s.text + "\n")
        proc = subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", _SAVE_LOOP, "sh", str(d)],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"save loop failed ({proc.returncode}): {proc.stderr.strip()}")
        for i, s in enumerate(todo):
            saved = d / f"{i:06d}.out"
            if not saved.exists():
                err = " ".join((d / f"{i:06d}.err").read_text().split())
                out.append(SaveMismatch(s, f"iptables-restore refused it: {err}"))
                continue
            kernels = saved_form(saved.read_text())
            try:
                ours = render(s.text)
            except Exception as exc:          # the parser refused what the kernel loaded
                out.append(SaveMismatch(s, f"netsim cannot render it: {exc}"))
                continue
            if ours != kernels:
                out.append(SaveMismatch(s, "iptables-save prints it differently:\n"
                                           + first_difference(ours, kernels)))
    return out
