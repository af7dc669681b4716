"""Check that containers/versions.env is the only place the container stack's versions appear.

    python3 containers/check_versions.py [--root DIR]

Fails (exit 1, one `file:line: why` per finding) when
- a pinned value that is not a bare number (image name, tag, digest, commit, source URL) appears in
  any other file of the repository;
- a bare-number pin (e.g. a torch or ROCm version) appears in the container recipes, their tests or
  README's "Containers" section;
- a recipe hard-codes what versions.env should carry: a `FROM` not built from `${...}` or an
  earlier stage, an `ARG NAME=default` holding a version, a version literal in a recipe or script.
Run by containers/lint.sh (`make lint-containers`, part of `make test`). Standard library only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

VERSIONS = Path("containers/versions.env")
SKIP_DIRS = {".git", ".venv", "runs", "build", "dist", "out", "__pycache__", ".pytest_cache"}
VERSION_LITERAL = re.compile(r"(?<![\w.-])v?\d+\.\d+(?:\.\d+)*(?![\w]|\.\d)")


def read_versions(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if m:
            pins[m.group(1)] = m.group(2)
    return pins


def repo_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (the tree walked when `root` is not a checkout)."""
    if (root / ".git").exists():
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [root / p for p in out.split("\0") if p and (root / p).is_file()]
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(root).parts[:-1])
    ]


def text_of(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return None if b"\0" in data[:8192] else data.decode("utf-8", errors="replace")


def pattern(value: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w.-])v?" + re.escape(value) + r"(?![\w]|\.\d)")


def is_recipe(rel: str) -> bool:
    return rel.startswith(("containers/", "tests/containers/"))


def readme_section(text: str) -> str:
    """README's "## Containers" section, with other lines blanked so line numbers still match."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Containers"
        out.append(line if inside else "")
    return "\n".join(out)


def find_pins(rel: str, text: str, pins: dict[str, str]) -> list[str]:
    found = []
    scope_numbers = is_recipe(rel) or rel == "README.md"
    if rel == "README.md":
        section = readme_section(text)
    for key, value in pins.items():
        if not value:
            continue
        numeric = re.fullmatch(r"[\d.]+", value) is not None
        if numeric and not scope_numbers:
            continue
        haystack = section if numeric and rel == "README.md" else text
        for m in pattern(value).finditer(haystack):
            line = haystack.count("\n", 0, m.start()) + 1
            found.append(
                f"{rel}:{line}: {value!r} is pinned as {key} in {VERSIONS}; use it from there"
            )
    return found


def recipe_literals(rel: str, text: str) -> list[str]:
    """Hard-coded versions in containers/ recipes and scripts (comments excluded)."""
    if not rel.startswith("containers/") or rel.endswith(".py"):
        return []
    found, stages = [], set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("#!") else ""
        m = re.match(r"\s*FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m and rel.split("/")[-1].startswith("Dockerfile"):
            if not (m.group(1).startswith("${") or m.group(1) in stages):
                found.append(f"{rel}:{n}: FROM {m.group(1)}: use ${{BASE_REF}} from {VERSIONS}")
            if m.group(2):
                stages.add(m.group(2))
        m = re.match(r"\s*ARG\s+(\w+)=(\S*\d\S*)", line)
        if m:
            found.append(f"{rel}:{n}: ARG {m.group(1)} has a default; pass it from {VERSIONS}")
        elif VERSION_LITERAL.search(line):
            found.append(f"{rel}:{n}: version literal; pin it in {VERSIONS}")
    return found


def check(root: Path) -> list[str]:
    versions = root / VERSIONS
    if not versions.is_file():
        return [f"{versions}: missing"]
    pins = read_versions(versions)
    findings = []
    for path in repo_files(root):
        rel = path.relative_to(root).as_posix()
        if rel == VERSIONS.as_posix():
            continue
        text = text_of(path)
        if text is not None:
            findings += find_pins(rel, text, pins) + recipe_literals(rel, text)
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    findings = check(args.root.resolve())
    for line in findings:
        print(line, file=sys.stderr)
    if not findings:
        print(f"check_versions: versions appear only in {VERSIONS}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
