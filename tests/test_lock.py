"""The locked environment: requirements-lock.txt is complete and pinned, requirements-colab.txt and
pyproject.toml agree with it, and the environment the tests run in is the locked one."""

import importlib.util
import os
import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-lock.txt"
# scripts/upgrade-lock.sh tests a candidate lock in a scratch environment before it replaces ours.
INSTALLED_FROM = Path(os.environ.get("CHARTRVR_NB_LOCK_FILE") or LOCK)
_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _direct_requirements() -> list[Requirement]:
    """pyproject's dependencies and the extras that scripts/setup.sh installs (dev, tracking, browser)."""
    project = _project()
    extras = project["optional-dependencies"]
    return [
        Requirement(text) for text in project["dependencies"] + extras["dev"] + extras["tracking"] + extras["browser"]
    ]


def test_every_locked_package_is_pinned_exactly_and_hash_checked():
    text = LOCK.read_text()
    entries = re.findall(r"^(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, flags=re.MULTILINE)
    requirement_lines = [
        line for line in text.splitlines() if line and not line[0].isspace() and not line.startswith("#")
    ]
    assert len(entries) == len(requirement_lines) > 100, "each requirement line carries its sha256 hashes"
    assert all("==" in name for name, _ in entries), [name for name, _ in entries if "==" not in name]


def test_the_lock_holds_every_direct_dependency_within_pyproject_ranges():
    locked = lockfile.read_pins(LOCK)
    for requirement in _direct_requirements():
        name = lockfile.canonical(requirement.name)
        assert name in locked, (
            f"{name} is in pyproject.toml but not in the lock: run bash scripts/upgrade-lock.sh {name}"
        )
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"the lock's {name}=={locked[name]} is outside pyproject.toml's {requirement}"
        )


def test_torch_is_held_at_the_build_every_figure_was_measured_with():
    held = lockfile.read_pins(ROOT / "scripts" / "lock-constraints.txt")
    locked = lockfile.read_pins(LOCK)
    assert held == {"torch": "2.14.1", "torchvision": "0.29.1"}
    assert {name: locked[name] for name in held} == held


def test_colab_requirements_are_the_locked_versions_and_never_torch():
    colab = lockfile.read_pins(ROOT / "requirements-colab.txt")
    locked = lockfile.read_pins(LOCK)
    assert {"transformers", "trl", "peft", "accelerate", "datasets", "sentence-transformers"} <= set(colab)
    for name, pinned in colab.items():
        assert not re.match(r"(torch|torchvision|torchaudio|triton|nvidia-.*)$", name), name
        assert locked.get(name) == pinned, (
            f"requirements-colab.txt pins {name}=={pinned}, the lock has {locked.get(name)}"
        )
    lines = [
        line for line in (ROOT / "requirements-colab.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert len(lines) == len(colab), "every line of requirements-colab.txt is an exact pin"


def test_the_tests_run_in_the_locked_environment():
    locked = lockfile.read_pins(INSTALLED_FROM)
    for requirement in _direct_requirements():
        name = lockfile.canonical(requirement.name)
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        assert installed == locked[name], (
            f"{name} {installed} is installed, {INSTALLED_FROM.name} locks {locked[name]}: "
            "run bash scripts/setup.sh to install the locked environment"
        )


def test_sync_colab_takes_each_pin_from_the_lock_and_keeps_comments(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("Transformers==5.25.0 \\\n    --hash=sha256:" + "0" * 64 + "\ntrl==1.16.0\n")
    colab = tmp_path / "colab.txt"
    colab.write_text("# keep me\ntransformers==5.24.0\ntrl==1.16.0\nextra-package==1.0\n")
    assert lockfile.sync_colab(lock, colab) == ["transformers: 5.24.0 -> 5.25.0"]
    assert colab.read_text() == "# keep me\ntransformers==5.25.0\ntrl==1.16.0\nextra-package==1.0\n"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({"a": "1"}, {"a": "2"}, ["a: 1 -> 2"]),
        ({"a": "1"}, {"a": "1", "b": "3"}, ["b: (new) -> 3"]),
        ({"a": "1", "c": "0"}, {"a": "1"}, ["c: 0 -> (removed)"]),
        ({"a": "1"}, {"a": "1"}, []),
    ],
)
def test_lock_changes_name_each_package_that_moved(old, new, expected):
    assert lockfile.changes(old, new) == expected
