#!/usr/bin/env bash
# Create .venv with everything chartrvr-nb needs (CPU is enough for the smoke preset and the tests).
# Idempotent: re-running it only checks what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: a bare "torch" would pull a different multi-GB build.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[dev,tracking,browser]"
# The browser test drives Debian's chromium through Playwright (Playwright's own browser download is
# never used: `playwright install` needs a host these machines cannot reach).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: install chromium (sudo apt-get install chromium) for tests/test_browser.py" >&2
    fi
fi
