"""hostPort: the rules the CNI `portmap` plugin adds to a node's nat table for the pods on it.

containernetworking/plugins plugins/meta/portmap (portmap.go forwardPorts, fillDnatRules,
genToplevelDnatChain, genSetMarkChain, genMarkMasqChain; chain.go setup; utils.go): for each pod
sandbox with port mappings (the kubelet passes every containerPort with a hostPort as
runtimeConfig.portMappings, protocol in lower case),

* `CNI-HOSTPORT-DNAT`, jumped to from nat PREROUTING and OUTPUT with `-m addrtype --dst-type LOCAL`
  (entry rules appended: after kube-proxy's KUBE-SERVICES jump, which was there first);
* in it, per sandbox, `-m comment --comment 'dnat name: "NET" id: "SANDBOX"' -m multiport -p PROTO
  --destination-ports P1,P2,...` (at most 15 ports a rule, one rule per protocol, protocols
  sorted) jumping to the sandbox's chain `CNI-DN-<hash>`;
* in `CNI-DN-<hash>`, per mapping: hairpin (`-s` the pod's address with its subnet mask) and
  localhost (`-s 127.0.0.1`) marks through `CNI-HOSTPORT-SETMARK`, then the DNAT to POD:containerPort
  (a mapping with a hostIP other than 0.0.0.0 adds `-d HOSTIP` to all three);
* `CNI-HOSTPORT-SETMARK` sets mark bit 13 (0x2000, portmap's DefaultMarkBit) and
  `CNI-HOSTPORT-MASQ`, jumped to first thing in POSTROUTING (its entry rule is prepended),
  masquerades what carries it.

The chain name is `CNI-DN-` and the first hex digits of SHA-512(network name + container ID), 28
characters in all (pkg/utils MustFormatChainNameWithPrefix). The network is flannel's `cbr0` (its
conflist chains the portmap plugin); the sandbox ID is a stand-in derived from the pod's UID.
"""
from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Optional

NETWORK_NAME = "cbr0"                    # kube-flannel's cni-conf.json "name"
MARK_BIT = 13                            # portmap main.go DefaultMarkBit
TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
MAX_CHAIN = 28                           # pkg/utils maxChainLength
MULTIPORT_MAX = 15                       # xt_multiport: at most 15 ports a rule


@dataclass(frozen=True)
class PortMapping:
    """One runtimeConfig.portMappings entry (portmap main.go PortMapEntry)."""
    host_port: int
    container_port: int
    protocol: str                        # tcp | udp | sctp (lower case, as the kubelet passes it)
    host_ip: str = ""


@dataclass
class SandboxRules:
    chain: str
    entry_rules: list[str] = field(default_factory=list)      # in CNI-HOSTPORT-DNAT, each ending -j chain
    rules: list[str] = field(default_factory=list)            # in the sandbox's chain


def chain_name(network: str, container_id: str, prefix: str = "DN-") -> str:
    """utils.MustFormatChainNameWithPrefix: "CNI-" + prefix + SHA-512 hex, 28 characters."""
    digest = hashlib.sha512((network + container_id).encode()).hexdigest()
    return ("CNI-" + prefix + digest)[:MAX_CHAIN]


def _quote(arg: str) -> str:
    """An argument as iptables-restore reads it (quotes for spaces, backslash before a quote)."""
    if arg and not any(c in arg for c in ' "\'\\'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mark(bit: int) -> str:
    v = 1 << bit
    return f"{v:#x}/{v:#x}"


def sandbox_rules(network: str, container_id: str, pod_net: str, mappings: list[PortMapping],
                  snat: bool = True, conditions: Optional[list[str]] = None) -> SandboxRules:
    """fillDnatRules for an IPv4 sandbox: `pod_net` is the address with its prefix as the IPAM
    result gives it (e.g. 10.244.1.5/24; -s keeps the host bits, iptables masks them)."""
    out = SandboxRules(chain_name(network, container_id))
    comment = f'dnat name: "{network}" id: "{container_id}"'
    if len(comment) > 255:                                  # utils.go trimComment
        comment = comment[:253] + "..."
    by_proto: dict[str, list[int]] = {}
    for m in mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    for proto in sorted(by_proto):
        ports = by_proto[proto]
        for i in range(0, len(ports), MULTIPORT_MAX):
            spec = ",".join(str(p) for p in ports[i:i + MULTIPORT_MAX])
            cond = (" " + " ".join(conditions)) if conditions else ""
            out.entry_rules.append(f"-m comment --comment {_quote(comment)} -m multiport -p {proto} "
                                   f"--destination-ports {spec}{cond} -j {out.chain}")
    pod_ip = pod_net.split("/")[0]
    for m in mappings:
        if m.host_ip and ":" in m.host_ip:
            continue                    # an IPv6 hostIP: only the sandbox's IPv6 rules take it
        base = f"-p {m.protocol} --dport {m.host_port}"
        if m.host_ip and m.host_ip != "0.0.0.0":
            base += f" -d {m.host_ip}"
        if snat:
            out.rules.append(f"{base} -s {pod_net} -j {SETMARK}")
            out.rules.append(f"{base} -s 127.0.0.1 -j {SETMARK}")
        out.rules.append(f"{base} -j DNAT --to-destination {pod_ip}:{m.container_port}")
    return out


def sandbox_id(pod: Any) -> str:
    """A 64-hex-digit sandbox (pause container) ID for the pod: a stand-in derived from its UID."""
    return hashlib.sha256(f"sandbox/{pod.uid or pod.key}".encode()).hexdigest()


def pod_mappings(pod: Any) -> list[PortMapping]:
    """The kubelet's port mappings for a pod: every containerPort with a hostPort (protocol lower-cased)."""
    return [PortMapping(cp.host_port, cp.container_port, cp.protocol.lower(), cp.host_ip or "")
            for cp in pod.ports if cp.host_port]


def node_sandboxes(cluster: Any, node: str) -> list[SandboxRules]:
    """The portmap rules of every running pod on `node` that maps host ports, in the order their
    sandboxes were set up (the pods' creation order). hostNetwork pods have no CNI sandbox."""
    n = cluster.node(node)
    if n is None or not n.pod_cidr:
        return []
    prefix = ipaddress.ip_network(n.pod_cidr).prefixlen
    out = []
    for pod in cluster.host_port_pods():
        if pod.node_name != node or pod.host_network or not pod.ip or pod.phase != "Running":
            continue
        maps = pod_mappings(pod)
        if maps:
            out.append(sandbox_rules(NETWORK_NAME, sandbox_id(pod), f"{pod.ip}/{prefix}", maps))
    return out


def nat_lines(sandboxes: list[SandboxRules], mark_bit: int = MARK_BIT) -> tuple[list[str], list[str], list[str], list[str]]:
    """(chain declarations, PREROUTING/OUTPUT appends, POSTROUTING prepends, chain bodies) in
    iptables-restore form."""
    chains = [TOP_DNAT, MASQ, SETMARK] + [s.chain for s in sandboxes]
    decls = [f":{c} - [0:0]" for c in chains]
    appends = [f"-A {hook} -m addrtype --dst-type LOCAL -j {TOP_DNAT}" for hook in ("PREROUTING", "OUTPUT")]
    prepends = [f'-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j {MASQ}']
    body = [f'-A {SETMARK} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {_mark(mark_bit)}',
            f"-A {MASQ} -m mark --mark {_mark(mark_bit)} -j MASQUERADE"]
    for s in sandboxes:
        body += [f"-A {TOP_DNAT} {r}" for r in s.entry_rules]
        body += [f"-A {s.chain} {r}" for r in s.rules]
    return decls, appends, prepends, body


def with_host_ports(text: str, cluster: Any, node: str) -> str:
    """The node's iptables-restore text `text` (kube-proxy's) with the portmap plugin's chains
    merged into its nat table, where they sit on a node whose kube-proxy started first; `text`
    unchanged when no pod on the node maps a host port."""
    sandboxes = node_sandboxes(cluster, node)
    if not sandboxes:
        return text
    decls, appends, prepends, body = nat_lines(sandboxes)
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "*nat"), None)
    if start is None:
        nat = ["*nat"] + [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")]
        return text.rstrip("\n") + "\n" + "\n".join(nat + decls + prepends + appends + body + ["COMMIT"]) + "\n"
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "COMMIT")
    table = lines[start + 1:end]
    last_decl = max((i for i, ln in enumerate(table) if ln.startswith(":")), default=-1)
    declared = {ln.split()[0][1:] for ln in table if ln.startswith(":")}
    table[last_decl + 1:last_decl + 1] = [d for d in decls if d.split()[0][1:] not in declared]
    for hook in ("PREROUTING", "OUTPUT"):
        rule = next(a for a in appends if a.startswith(f"-A {hook} "))
        at = max((i for i, ln in enumerate(table) if ln.startswith(f"-A {hook} ")),
                 default=max(i for i, ln in enumerate(table) if ln.startswith(":")))
        table.insert(at + 1, rule)
    first_post = next((i for i, ln in enumerate(table) if ln.startswith("-A POSTROUTING ")), None)
    if first_post is None:
        first_post = max(i for i, ln in enumerate(table) if ln.startswith(":")) + 1
    table[first_post:first_post] = prepends
    table += body
    return "\n".join(lines[:start + 1] + table + lines[end:]) + "\n"
