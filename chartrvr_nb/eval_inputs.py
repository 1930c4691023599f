"""What an evaluation loads besides the base model: full trained weights, and the system prompt.

A LoRA adapter is found by ``evaluate.resolve_adapter``; full weights (a full fine-tune's run or
checkpoint, or the Chart-RVR authors' released ``sanchit97/chart-rvr-3b``) by :func:`resolve_full_model`.
:func:`evaluation_system_prompt` picks the system prompt: the one asked for or the protocol's, else the one
the evaluated run trained with (checked against the SHA-256 its ``run_config.json`` recorded), else the model's default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checkpoints import newest_verified_checkpoint
from .env import run_path
from .models import TINY_MODELS
from .presets import EvalConfig
from .runfiles import MODEL_DIR, trained_system_prompt
from .system_prompts import SystemPrompt, resolve_system_prompt


def resolve_full_model(model: str | os.PathLike | None) -> str | None:
    """Where to load full model weights from (a full fine-tune, the authors' released model): a local
    folder with ``config.json`` and weights, or a hub id.

    A full fine-tune's run folder gives its final ``model/`` when training finished, else its newest
    checkpoint that verifies; a relative path is under the run root. Anything else shaped like
    ``owner/name`` is a hub id (e.g. the authors' ``sanchit97/chart-rvr-3b``).

    Raises:
        ValueError: a local folder without full weights, or a path that does not exist.

    Example:
        >>> resolve_full_model("sanchit97/chart-rvr-3b")
        'sanchit97/chart-rvr-3b'
    """
    if model is None or str(model) == "":
        return None
    path = run_path(model)
    if path.is_dir():
        for folder in (path, path / MODEL_DIR, newest_verified_checkpoint(path)):
            if (
                folder is not None
                and (folder / "config.json").is_file()
                and not (folder / "adapter_config.json").is_file()
            ):
                return str(folder)
        raise ValueError(
            f"{str(path)!r} holds no full model: no config.json with weights, no model/ folder and no complete "
            "checkpoint-<step> with one. Pass a full fine-tune's run folder, one of its checkpoint-<step> "
            "folders, its model/ folder or a hub id; a LoRA run is evaluated with --adapter instead."
        )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(model)) and not str(model).startswith((".", "/")):
        return str(model)
    raise ValueError(f"Model {str(model)!r} not found: it is neither a local folder nor a hub id like owner/name.")


def evaluation_system_prompt(vlm_name: str, config: EvalConfig, trained: str | None = None) -> SystemPrompt:
    """The system prompt an evaluation uses, resolved before any model loads.

    ``config.system_prompt`` when given, else the protocol's (``chart-rvr`` under ``--protocol chart-rvr``);
    else the one the run of ``trained`` (a local adapter, checkpoint
    or model folder) trained with, checked against the SHA-256 its ``run_config.json`` recorded; else
    ``chart-rvr`` for the Qwen models and ``project`` for the tiny ones. The prompt style
    (``config.prompt``) picks the template: the authors' 4 for ``rvr``/``cot``, 1 for ``direct``.

    Raises:
        ValueError: the run's prompt text is no longer what this version resolves it to.
        system_prompts.PromptUnavailableError: the authors' text could not be fetched or verified.
    """
    run = trained_system_prompt(trained) if trained and Path(trained).exists() else None
    choice = config.system_prompt_choice or (run[0] if run else "project" if vlm_name in TINY_MODELS else "chart-rvr")
    prompt = resolve_system_prompt(choice, config.prompt, config.system_prompt_file)
    recorded = run[1] if run and run[0] == choice and config.prompt == "rvr" else None
    if recorded is not None and recorded != prompt.sha256:
        raise ValueError(
            f"The run of {trained} trained with a {choice!r} system prompt whose SHA-256 is {recorded}, but this "
            f"version's is {prompt.sha256} ({prompt.origin}). Evaluate with the chartrvr_nb version that trained "
            "it, or pass --system-prompt to evaluate with another prompt knowingly."
        )
    return prompt
