"""Comments and docs cite public sources only (upstream file + function, KEP, man page, URL).

A citation of notes that live outside the repository ("reference §1.5", "../shared/...",
"cluster-dns.md §2.2") cannot be followed by a maintainer, so none may appear in the code, the
tests, the benchmarks or the docs.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("netsim", "rules", "dns", "cli", "tests", "benchmarks", "scripts", ".ci")
TOP_FILES = ("README.md", "setup.cfg", "setup.py", "pyproject.toml")
SUFFIXES = {".py", ".md", ".txt", ".cfg", ".toml", ".json", ".sh", ".yaml", ".yml", ".ini", ""}

PRIVATE_CITATION = re.compile(
    r"\.\./shared"                                   # relative path to the notes
    r"|/work/shared"                                 # absolute path to the notes
    r"|shared/reference"
    r"|reference\s*(note\s*)?§"                      # "reference §1.5", "reference note §2.2"
    r"|reference\s+(note\s+)?[\w-]+\.md"             # "reference kube-proxy-iptables.md"
    r"|(kube-proxy-(iptables|ipvs|nftables)|cluster-dns|bench-anchors|emulators-and-tools|ipvs-in-a-vm)\.md",
    re.IGNORECASE,
)


def _files() -> list[Path]:
    out = [ROOT / f for f in TOP_FILES if (ROOT / f).is_file()]
    for folder in FOLDERS:
        base = ROOT / folder
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts:
                out.append(p)
    return out


def private_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) for every line that cites notes outside the repository."""
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if PRIVATE_CITATION.search(line)]


def test_the_pattern_catches_the_citation_styles_that_were_used() -> None:
    for line in ("# (reference §1.5)", "see ../shared/notes.md", "(reference note cluster-dns.md §2.2)",
                 "reference kube-proxy-iptables.md §3.1", "/work/shared/reference/kube-proxy-ipvs.md §2",
                 "bench-anchors.md §6.2"):
        assert private_citations(line), line
    for line in ("# pkg/proxy/iptables/proxier.go syncProxyRules", "RFC 1035 §2.3.4",
                 "Kubernetes DNS spec 1.1.0 §2.4.1", "a reference cycle", "def test_references():"):
        assert not private_citations(line), line


def test_no_code_comment_or_doc_cites_notes_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{n}: {line}"
            for p in _files() if p.resolve() != me
            for n, line in private_citations(p.read_text(encoding="utf-8", errors="replace"))]
    assert not hits, "cite public sources (upstream file + function, KEP, man page, URL):\n" + "\n".join(hits)
