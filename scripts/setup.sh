#!/usr/bin/env bash
# Create .venv with exactly the tested environment: requirements-lock.txt (every package, exact version,
# sha256-checked), then this checkout in editable mode. CPU is enough for the smoke preset and the tests.
# Idempotent: re-running it only checks what is installed, and moves .venv back to the lock if it drifted.
# To move the lock itself to newer releases: bash scripts/upgrade-lock.sh (it runs the tests first).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q "pip==$(sed -n 's/^pip==\([^ ]*\).*/\1/p' requirements-lock.txt)"
.venv/bin/python -m pip install -q --require-hashes -r requirements-lock.txt
# The lock already holds every dependency (and setuptools, the build backend): install only the project
# (quietly: setuptools warns at every editable build that a folder named like the package shadows it).
PYTHONWARNINGS="ignore::UserWarning" .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# The browser test drives Debian's chromium through Playwright (Playwright's own browser download is
# never used: `playwright install` needs a host these machines cannot reach).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: install chromium (sudo apt-get install chromium) for tests/test_browser.py" >&2
    fi
fi
