"""Read requirements-lock.txt, compare two locks, and keep requirements-colab.txt's pins equal to the lock.

python scripts/lockfile.py diff OLD_LOCK NEW_LOCK     # what moved, one package a line
python scripts/lockfile.py sync-colab LOCK COLAB_FILE  # rewrite COLAB_FILE's pins from LOCK
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def canonical(name: str) -> str:
    """PEP 503 name: ``Sentence_Transformers`` and ``sentence-transformers`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str | Path) -> dict[str, str]:
    """``{package: version}`` of every ``name==version`` line of a requirements file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per package added, removed or moved between two locks."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before != after:
            lines.append(f"{name}: {before or '(new)'} -> {after or '(removed)'}")
    return lines


def sync_colab(lock: str | Path, colab: str | Path) -> list[str]:
    """Set each pin of the Colab requirements to the lock's version; returns the lines changed."""
    pins = read_pins(lock)
    text, changed = [], []
    for line in Path(colab).read_text().splitlines():
        match = PIN.match(line)
        if match and canonical(match[1]) in pins and match[2] != pins[canonical(match[1])]:
            changed.append(f"{match[1]}: {match[2]} -> {pins[canonical(match[1])]}")
            line = f"{match[1]}=={pins[canonical(match[1])]}{line[match.end() :]}"
        text.append(line)
    Path(colab).write_text("\n".join(text) + "\n")
    return changed


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "diff":
        print("\n".join(changes(read_pins(paths[0]), read_pins(paths[1]))) or "no package moved")
    elif command == "sync-colab":
        print("\n".join(sync_colab(*paths)) or f"{paths[1]} already matches the lock")
    else:
        sys.exit(__doc__)
