#!/usr/bin/env bash
# Move requirements-lock.txt to the newest versions pyproject.toml allows, on purpose and gated by the tests:
# re-resolve in a scratch folder, install that into a scratch environment, run the whole test suite there,
# and only when it passes rewrite the lock and requirements-colab.txt and print what moved.
#
#   bash scripts/upgrade-lock.sh                 # upgrade everything (torch stays: scripts/lock-constraints.txt)
#   bash scripts/upgrade-lock.sh trl peft        # upgrade only these (also: add a new dependency to the lock)
#   KEEP_SCRATCH=1 bash scripts/upgrade-lock.sh  # keep the scratch folder even when the tests pass
#
# The lock is made by pip-tools' pip-compile: it resolves with pip itself, so it sees the same indexes,
# constraints and wheels as the pip that installs it (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/pip-compile ] || bash scripts/setup.sh

scratch=$(mktemp -d "${TMPDIR:-/tmp}/chartrvr-nb-upgrade.XXXXXX")
cp requirements-lock.txt "$scratch/requirements-lock.txt"  # pip-compile upgrades from the current pins
if [ $# -gt 0 ]; then
    upgrade=(); for package in "$@"; do upgrade+=(--upgrade-package "$package"); done
else
    upgrade=(--upgrade)
fi

echo "== resolving the newest allowed versions into $scratch"
CUSTOM_COMPILE_COMMAND="bash scripts/upgrade-lock.sh" .venv/bin/pip-compile --quiet "${upgrade[@]}" \
    --extra dev --extra tracking --extra browser --constraint scripts/lock-constraints.txt \
    --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
    --output-file "$scratch/requirements-lock.txt" pyproject.toml
moved=$(.venv/bin/python scripts/lockfile.py diff requirements-lock.txt "$scratch/requirements-lock.txt")
echo "$moved"
if [ "$moved" = "no package moved" ] && cmp -s requirements-lock.txt "$scratch/requirements-lock.txt"; then
    rm -rf "$scratch"; echo "requirements-lock.txt is already the newest allowed stack."; exit 0
fi

echo "== installing it into $scratch/venv"
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q "pip==$(sed -n 's/^pip==\([^ ]*\).*/\1/p' "$scratch/requirements-lock.txt")"
"$scratch/venv/bin/python" -m pip install -q --require-hashes -r "$scratch/requirements-lock.txt"
PYTHONWARNINGS="ignore::UserWarning" "$scratch/venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e .

echo "== running the test suite on it (log: $scratch/pytest.log)"
# A fresh model cache: the tiny models are rebuilt by the new stack, as on a new user's machine.
if ! CHARTRVR_NB_CACHE="$scratch/cache" CHARTRVR_NB_LOCK_FILE="$scratch/requirements-lock.txt" "$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider \
        2>&1 | tee "$scratch/pytest.log" | tail -n 25; then
    echo "The tests failed on the new stack: requirements-lock.txt is unchanged." >&2
    echo "The scratch environment stays for a look: $scratch (venv, requirements-lock.txt, pytest.log)" >&2
    exit 1
fi

result=$(tail -n 1 "$scratch/pytest.log")
cp "$scratch/requirements-lock.txt" requirements-lock.txt
.venv/bin/python scripts/lockfile.py sync-colab requirements-lock.txt requirements-colab.txt
[ -n "${KEEP_SCRATCH:-}" ] || rm -rf "$scratch"
echo "== requirements-lock.txt upgraded; the suite on it: $result"
echo "Moved:"; echo "$moved" | sed 's/^/  /'
echo "Next: bash scripts/setup.sh (moves .venv to the new lock), then commit requirements-lock.txt and requirements-colab.txt."
