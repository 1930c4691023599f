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
