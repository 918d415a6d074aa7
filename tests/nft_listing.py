"""Read back `nft list table` output and compare it with the table we wrote, normalised.

`nft list` prints what the kernel holds in nft's canonical spelling. The differences from the
`nft -f` text kube-proxy writes (all observed with nft 1.0.6 on this project's kernel) are undone
here, and nothing else:

* ``mark`` is printed ``meta mark``; ``or``/``and``/``xor`` as ``|``/``&``/``^``; mark constants
  as 8 hex digits (``0x4000`` -> ``0x00004000``, ``0`` -> ``0x00000000``);
* an anonymous set with one element loses its braces (``ip daddr { 172.30.0.0/16 }`` ->
  ``ip daddr 172.30.0.0/16``); list separators are ``, `` instead of `` , ``;
* base-chain priorities print symbolically where nft can (``dstnat - 10``, ``filter``, ``srcnat``),
  and ``policy accept`` is shown; set timeouts print as durations (``10800s`` -> ``3h``);
  a dynamic set gains ``size 65535``;
* set and map elements come out in the kernel's order (compared as sets);
* 1.36's concatenated NAT map ``dnat ip addr . port to numgen ...`` prints as ``dnat ip to numgen ...``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from netsim.rules.nftables.transaction import Chain, Element, Map, Set, TableState

# nft(8) "CHAINS": standard priority names and values for the ip/ip6/inet families
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}


@dataclass
class Listed:
    comment: str | None = None
    chains: dict[str, dict] = field(default_factory=dict)     # name -> {base, comment, rules}
    sets: dict[str, dict] = field(default_factory=dict)       # name -> {kind, props, elements}


def parse_priority(text: str) -> int:
    m = re.fullmatch(r"([a-z]+)(?: ([+-]) (\d+))?|(-?\d+)", text.strip())
    if m is None:
        raise AssertionError(f"unparsable priority {text!r}")
    if m.group(4) is not None:
        return int(m.group(4))
    base = PRIORITY_NAMES[m.group(1)]
    if m.group(2):
        base += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return base


def parse_duration(text: str) -> int:
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0}
    total = 0
    for num, unit in re.findall(r"(\d+)(ms|d|h|m|s)", text):
        total += int(num) * units[unit]
    return total


def _split_elements(text: str) -> list[str]:
    out, depth, cur, quoted = [], 0, "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if not quoted and ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        if not quoted and ch == "{":
            depth += 1
        if not quoted and ch == "}":
            depth -= 1
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_listing(text: str, table: str = "kube-proxy") -> Listed:
    """The one table ``table`` of `nft list ruleset` / `nft list table` output."""
    lines = text.splitlines()
    out = Listed()
    i = 0
    while i < len(lines) and not re.match(rf"table \S+ {re.escape(table)} \{{", lines[i]):
        i += 1
    if i == len(lines):
        raise AssertionError(f"no table {table} in listing:\n{text}")
    i += 1
    block: dict | None = None
    pending = ""
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if pending:
            line = pending + " " + line
            pending = ""
        if not line:
            continue
        if block is None:
            if line == "}":
                break
            if m := re.fullmatch(r'comment "(.*)"', line):
                out.comment = m.group(1)
            elif m := re.fullmatch(r"chain (\S+) \{", line):
                block = {"what": "chain", "name": m.group(1), "base": None, "comment": None, "rules": []}
            elif m := re.fullmatch(r"(set|map) (\S+) \{", line):
                block = {"what": m.group(1), "name": m.group(2), "props": {}, "elements": set()}
            else:
                raise AssertionError(f"unexpected line in table: {line!r}")
            continue
        if line == "}":
            if block["what"] == "chain":
                out.chains[block.pop("name")] = block
            else:
                out.sets[block.pop("name")] = block
            block = None
            continue
        if block["what"] == "chain":
            if m := re.fullmatch(r"type (\S+) hook (\S+) priority (.+); policy (\S+);", line):
                block["base"] = (m.group(1), m.group(2), parse_priority(m.group(3)), m.group(4))
            elif (m := re.fullmatch(r'comment "(.*)"', line)) and not block["rules"]:
                block["comment"] = m.group(1)
            else:
                block["rules"].append(line)
            continue
        if line.startswith("elements = {"):
            body = line[len("elements = {"):]
            while not body.rstrip().endswith("}"):
                body += " " + lines[i].strip()
                i += 1
            block["elements"] = set(_split_elements(body.rstrip()[:-1]))
            continue
        key, _, value = line.partition(" ")
        block["props"][key] = value
    return out


_MARK_CONST = re.compile(r"\b(0x[0-9a-fA-F]+|\d+)\b")


def nft_print_form(rule: str) -> str:
    """A kube-proxy rule as `nft list` prints it (the rewrites in this module's docstring)."""
    words = rule.split(" ")
    out: list[str] = []
    prev_mark = False
    for w in words:
        if w == "mark" and (not out or out[-1] != "meta"):
            out += ["meta", "mark"]
            prev_mark = True
            continue
        if prev_mark and w in ("or", "and", "xor"):
            out.append({"or": "|", "and": "&", "xor": "^"}[w])
            continue
        if prev_mark and _MARK_CONST.fullmatch(w):
            out.append(f"0x{int(w, 0):08x}")
            continue
        if w not in ("set", "==", "!=", "meta", "mark"):
            prev_mark = False
        out.append(w)
    text = " ".join(out)

    def unbrace(m: re.Match) -> str:
        # ``update @set { ip saddr }`` keeps its braces: an element expression, not a one-element set
        before = text[:m.start()].rstrip().rsplit(" ", 1)[-1]
        keep = before.startswith("@") or " : " in m.group(1)       # an element expression, or a map
        return m.group(0) if keep else m.group(1)

    text = re.sub(r"\{ ([^{},]+) \}", unbrace, text)
    text = re.sub(r"\bdnat (ip6?) addr \. port to ", r"dnat \1 to ", text)
    return text.replace(" , ", ", ")


def expected_listing(state: TableState) -> Listed:
    """What `nft list` should show for the table we wrote, in :func:`parse_listing`'s shape."""
    out = Listed(comment=state.table.comment if state.table else None)
    for obj in state.objects():
        if isinstance(obj, Chain):
            base = (obj.type, obj.hook, obj.priority, "accept") if obj.type else None
            rules = [nft_print_form(r) for r in state.rules(obj.name)]
            out.chains[obj.name] = {"what": "chain", "base": base, "comment": obj.comment, "rules": rules}
        elif isinstance(obj, (Set, Map)):
            props = {"type": obj.type}
            if isinstance(obj, Set) and obj.flags:
                props["flags"] = ",".join(obj.flags)
            if isinstance(obj, Set) and obj.timeout_seconds is not None:
                props["timeout"] = obj.timeout_seconds
            if obj.comment is not None:
                props["comment"] = f'"{obj.comment}"'
            out.sets[obj.name] = {"what": obj.kind, "props": props, "elements": set()}
        elif isinstance(obj, Element):
            text = " . ".join(obj.key)
            if obj.comment is not None:
                text += f' comment "{obj.comment}"'
            if obj.value:
                text += " : " + " . ".join(obj.value)
            out.sets[obj.container]["elements"].add(text)
    return out


def normalise_listed(listed: Listed, ours: Listed) -> Listed:
    """Undo the kernel-side additions: ``size 65535`` of dynamic sets, durations as seconds."""
    for name, block in listed.sets.items():
        props = block["props"]
        if "timeout" in props:
            props["timeout"] = parse_duration(props["timeout"])
        mine = ours.sets.get(name, {}).get("props", {})
        if "size" in props and "size" not in mine and "dynamic" in props.get("flags", ""):
            del props["size"]
    return listed
