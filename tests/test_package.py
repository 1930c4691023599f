"""Package-level promises: a light import."""

import json
import pkgutil
import subprocess
import sys

import pytest

import chartrvr_nb

HEAVY = ("torch", "transformers", "sentence_transformers", "trl", "peft", "datasets", "matplotlib")
# The modules that import those libraries at the top (ARCHITECTURE.md, "Light and heavy"): imported
# only inside the functions that need them. Every other module must stay light.
HEAVY_MODULES = ("chartrvr_nb.trainer", "chartrvr_nb.callbacks")


def _heavy_libraries_after_importing(modules: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_every_module_stays_light():
    modules = [f"chartrvr_nb.{m.name}" for m in pkgutil.iter_modules(chartrvr_nb.__path__) if m.name != "__main__"]
    assert {"chartrvr_nb.rewards", "chartrvr_nb.presets", "chartrvr_nb.cli"} <= set(modules)
    assert set(HEAVY_MODULES) <= set(modules), "a heavy module listed here no longer exists"
    assert _heavy_libraries_after_importing([m for m in modules if m not in HEAVY_MODULES]) == []


@pytest.mark.parametrize("module", HEAVY_MODULES)
def test_the_listed_heavy_modules_are_heavy(module):
    """With the test above: the list names exactly the heavy modules, none that has become light."""
    assert {"torch", "transformers"} <= set(_heavy_libraries_after_importing([module]))


def test_known_library_messages_are_dropped_and_nothing_else(caplog):
    import logging

    messages = {
        "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community: not cached",
        "kernels._internals.hf_hub": "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' "
        "because Hugging Face Hub is in offline mode.",
    }
    assert set(messages) == set(chartrvr_nb.KNOWN_LIBRARY_MESSAGES)
    with caplog.at_level(logging.WARNING):
        for name, message in messages.items():
            logging.getLogger(name).warning(message)
            logging.getLogger(name).warning("a different message from the same library")
        logging.getLogger("somebody.else").warning(messages["kernels._internals.hf_hub"])
    assert [(record.name, record.getMessage()[:11]) for record in caplog.records] == [
        ("bitsandbytes.backends.cpu.ops", "a different"),
        ("kernels._internals.hf_hub", "a different"),
        ("somebody.else", "Skipping pu"),
    ]


def test_library_reports_go_to_the_current_stdout_through_the_package_logger(capsys):
    import logging

    logging.getLogger("chartrvr_nb.checkpoints").info("Resuming from checkpoint-8.")
    logging.getLogger("chartrvr_nb").debug("not shown at the default level")
    assert capsys.readouterr().out == "Resuming from checkpoint-8.\n"
