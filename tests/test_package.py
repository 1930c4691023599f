"""Package-level promises: a light import."""

import pkgutil
import subprocess
import sys

import chartrvr_nb

HEAVY = ("torch", "transformers", "sentence_transformers", "trl", "peft", "datasets", "matplotlib")


def test_importing_every_module_stays_light():
    modules = [f"chartrvr_nb.{m.name}" for m in pkgutil.iter_modules(chartrvr_nb.__path__) if m.name != "__main__"]
    assert {"chartrvr_nb.rewards", "chartrvr_nb.presets", "chartrvr_nb.cli"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
