"""The project's commands as a user types them, for the tests that run them in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def smoke_grpo_command(*flags):
    """``python -m chartrvr_nb grpo --preset smoke`` with ``flags`` (paths are made strings)."""
    return [sys.executable, "-m", "chartrvr_nb", "grpo", "--preset", "smoke", *map(str, flags)]


def run_smoke_grpo(*flags, cwd=ROOT, timeout=900):
    """:func:`smoke_grpo_command` run to its end, offline, its output captured."""
    command = smoke_grpo_command(*flags)
    return subprocess.run(command, cwd=cwd, env=OFFLINE, capture_output=True, text=True, timeout=timeout)
