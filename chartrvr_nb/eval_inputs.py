"""What an evaluation loads and how it asks: the adapter or full weights, verified; the settings the evaluated
run trained with; the system prompt.

:func:`resolve_adapter` finds a LoRA adapter and :func:`resolve_full_model` full weights (a full fine-tune's run
or checkpoint, or the Chart-RVR authors' released ``sanchit97/chart-rvr-3b``); a local folder is verified
before it is used, as resume verifies a checkpoint (its manifest, and that its weights are whole).
:func:`settings_from_run` makes the evaluation ask as the evaluated run trained (its model, 4-bit base,
completion length, pixel budget and system prompt, read from its ``run_config.json``) unless told otherwise,
and says in one line where it does not. :func:`evaluation_system_prompt` picks the system prompt and checks
it against the SHA-256 the run recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

from . import UserError
from .checkpoints import checkpoint_step, newest_verified_checkpoint, saved_weights_problem
from .drive import MANIFEST_NAME
from .env import run_path, run_root
from .eval_config import EvalConfig
from .models import TINY_MODELS
from .runfiles import ADAPTER_DIR, MODEL_DIR, RUN_CONFIG_FILE, find_run_config, trained_system_prompt
from .system_prompts import SystemPrompt, resolve_system_prompt

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2-5-3b"  # evaluated when neither --vlm-name nor the evaluated run names a model
# Where this project's runs live (the notebooks' runs/, the seed's grpo-start-ckpts/): a path starting with
# one of them is a local folder that is missing, never a hub id.
LOCAL_RUN_FOLDERS = ("runs", "grpo-start-ckpts")
# The evaluation settings the evaluated run decides when they are not given:
# EvalConfig field -> the run_config.json (Preset) field it is read from.
TRAINED_SETTINGS = {
    "max_new_tokens": "max_completion_length",
    "max_pixels": "max_pixels",
    "load_in_4bit": "load_in_4bit",
    "system_prompt": "system_prompt",
    "system_prompt_file": "system_prompt_file",
}
_SETTING_WORDS = {  # how a difference is said: (what, flag)
    "max_new_tokens": ("tokens per answer", "--max-new-tokens"),
    "max_pixels": ("image pixel budget", "--max-pixels"),
    "load_in_4bit": ("4-bit base", "--load-in-4bit"),
    "system_prompt": ("system prompt", "--system-prompt"),
}


# --------------------------------------------------------------------------------------------
# What is evaluated: an adapter or full weights, verified
# --------------------------------------------------------------------------------------------


def _verified(folder: Path) -> str:
    """``folder`` when its saved weights verify (:func:`checkpoints.saved_weights_problem`), else a UserError."""
    problem = saved_weights_problem(folder)
    if problem is None:
        if checkpoint_step(folder) is None and not (folder / MANIFEST_NAME).is_file():
            logger.info(
                f"{folder} has no {MANIFEST_NAME} (saved before final folders had one): checked for whole files only."
            )
        return str(folder)
    run = find_run_config(folder)
    newest = newest_verified_checkpoint(run[0] if run else folder.parent)
    instead = f" (the newest that verifies is {newest})" if newest is not None else ""
    raise UserError(
        f"{folder} cannot be evaluated: {problem}. Evaluate a checkpoint of the run instead{instead}, or re-run the "
        "training command: it saves the final folder again from the newest checkpoint."
    )


def _hub_id(given: str | os.PathLike, path: Path, what: str) -> str:
    """``given`` when it can only be a hub id (``owner/name``, and no local folder of that name's owner
    exists); else a UserError saying the local folder is missing."""
    text = str(given)
    local = (
        text.startswith((".", "/", "~"))
        or Path(text).parts[0] in LOCAL_RUN_FOLDERS
        or path.parent.is_dir()
        or Path(text).parent.is_dir()
    )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text) and not local:
        return text
    raise UserError(
        f"{what} {text!r} not found: there is no folder {path}. Pass a training run folder, one of its "
        f"checkpoint-<step> folders or its final folder (a relative path is under the run root, {run_root()}), "
        "or a hub id such as owner/name."
    )


def resolve_adapter(adapter: str | os.PathLike | None) -> str | None:
    """Where to load a LoRA adapter from: a local folder with ``adapter_config.json``, verified, or a hub id.

    A folder that holds ``adapter_config.json`` (a ``checkpoint-<step>`` or a final ``adapter/`` folder) is
    used when it verifies; a relative path is under the run root (``env.run_root()``), where the CLI and the
    notebooks put their runs. A training run folder gives its final ``adapter/`` when training finished, else
    its newest checkpoint that verifies. Anything else shaped like ``owner/name`` is a hub id of an adapter
    (the authors' released ``sanchit97/chart-rvr-3b`` is a full model: :func:`resolve_full_model`); a path
    under ``runs/`` or an existing folder is never taken for one.

    Raises:
        UserError: a local folder without an adapter, one that fails verification (its manifest, its weights),
            or a path that does not exist.

    Example:
        >>> resolve_adapter("someone/chart-rvr-lora")
        'someone/chart-rvr-lora'
        >>> resolve_adapter(None) is None
        True
        >>> resolve_adapter("runs/no-such-run")
        Traceback (most recent call last):
        ...
        chartrvr_nb.UserError: Adapter 'runs/no-such-run' not found: there is no folder .../runs/no-such-run. ...
    """
    if adapter is None or str(adapter) == "":
        return None
    path = run_path(adapter)  # a relative run folder is under the run root, where training put it
    if not path.is_dir():
        return _hub_id(adapter, path, "Adapter")
    for folder in (path, path / ADAPTER_DIR):
        if (folder / "adapter_config.json").is_file():
            return _verified(folder)
    newest = newest_verified_checkpoint(path)  # finished by the Trainer and matching its manifest
    if newest is not None and (newest / "adapter_config.json").is_file():
        return str(newest)
    raise UserError(
        f"{path} holds no LoRA adapter: no adapter_config.json, no {ADAPTER_DIR}/ folder and no complete "
        "checkpoint-<step> with one. Pass a training run folder, one of its checkpoint-<step> folders, "
        f"its {ADAPTER_DIR}/ folder, or a hub id such as someone/chart-rvr-lora. A full fine-tune's run is "
        "evaluated with --model instead."
    )


def _is_full_model(folder: Path | None) -> bool:
    return folder is not None and (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file()


def resolve_full_model(model: str | os.PathLike | None) -> str | None:
    """Where to load full model weights from (a full fine-tune, the authors' released model): a local
    folder with ``config.json`` and weights, verified, or a hub id.

    A full fine-tune's run folder gives its final ``model/`` when training finished, else its newest
    checkpoint that verifies; a relative path is under the run root. Anything else shaped like
    ``owner/name`` is a hub id (e.g. the authors' ``sanchit97/chart-rvr-3b``).

    Raises:
        UserError: a local folder without full weights, one that fails verification, or a path that
            does not exist.

    Example:
        >>> resolve_full_model("sanchit97/chart-rvr-3b")
        'sanchit97/chart-rvr-3b'
    """
    if model is None or str(model) == "":
        return None
    path = run_path(model)
    if not path.is_dir():
        return _hub_id(model, path, "Model")
    for folder in (path, path / MODEL_DIR):
        if _is_full_model(folder):
            return _verified(folder)
    newest = newest_verified_checkpoint(path)
    if _is_full_model(newest):
        return str(newest)
    raise UserError(
        f"{path} holds no full model: no config.json with weights, no {MODEL_DIR}/ folder and no complete "
        "checkpoint-<step> with one. Pass a full fine-tune's run folder, one of its checkpoint-<step> "
        f"folders, its {MODEL_DIR}/ folder or a hub id; a LoRA run is evaluated with --adapter instead."
    )


# --------------------------------------------------------------------------------------------
# How it is asked: the run's settings, and the system prompt
# --------------------------------------------------------------------------------------------


def _said(field: str, value: Any) -> str:
    if field == "max_pixels":
        return f"{value:,}"
    return "on" if value is True else "off" if value is False else str(value)


def settings_from_run(
    vlm_name: str | None, config: EvalConfig, trained: str | None
) -> tuple[str, EvalConfig, dict[str, Any] | None]:
    """The model and settings to evaluate ``trained`` with: what was given, else what its run trained with.

    The run is found from a local ``trained`` folder (the run, a checkpoint, its ``adapter/`` or ``model/``)
    through its ``run_config.json``. Its ``model`` is the model unless ``vlm_name`` names another, which is
    refused (an adapter or full weights load only on the architecture they were trained on). Each of
    :data:`TRAINED_SETTINGS` left unset in ``config``, and not decided by the protocol, becomes the run's; one
    line says which settings came from the run, and one more which differ from it (given, or the protocol's).
    Without a run: ``vlm_name``, else :data:`DEFAULT_MODEL`, and ``config`` as it is.

    Args:
        vlm_name: the model asked for (``--vlm-name``), or None.
        config: the evaluation settings asked for.
        trained: the resolved adapter or full-model path (:func:`resolve_adapter`), or None.

    Returns:
        ``(model name, settings, the run's config or None)``; the settings' ``load_in_4bit`` is never None.

    Raises:
        UserError: ``vlm_name`` is not the model the run trained.

    Example:
        >>> settings_from_run(None, EvalConfig(), None)[:2]
        ('qwen2-5-3b', EvalConfig(protocol='project', ...load_in_4bit=False, ...))
    """
    found = find_run_config(trained) if trained and Path(trained).is_dir() else None
    if found is None:
        return vlm_name or DEFAULT_MODEL, dataclasses.replace(config, load_in_4bit=bool(config.load_in_4bit)), None
    run_dir, run = found
    model = run.get("model") or DEFAULT_MODEL
    if vlm_name is not None and vlm_name != model:
        raise UserError(
            f"{run_dir} trained {model}, so its weights do not load on --vlm-name {vlm_name}. Leave --vlm-name out "
            f"(the run's model is used) or pass --vlm-name {model}."
        )
    decided = config.protocol_rules.fixes()
    taken = {
        field: run[key]
        for field, key in TRAINED_SETTINGS.items()
        if getattr(config, field) is None and field not in decided and run.get(key) is not None
    }
    settings = dataclasses.replace(config, **taken)
    settings = dataclasses.replace(settings, load_in_4bit=bool(settings.load_in_4bit))
    effective = {
        "max_new_tokens": settings.tokens_per_answer,
        "max_pixels": settings.pixel_budget,
        "load_in_4bit": settings.load_in_4bit,
        "system_prompt": settings.system_prompt_choice,
    }
    trained_as = {field: run.get(TRAINED_SETTINGS[field]) for field in effective}
    logger.info(
        f"Evaluating as {run_dir} trained ({RUN_CONFIG_FILE}): model {model}, "
        + ", ".join(
            f"{_SETTING_WORDS[field][0]} {_said(field, value)}"
            for field, value in trained_as.items()
            if value is not None
        )
        + "."
    )
    differences = [
        f"{_SETTING_WORDS[field][0]} {_said(field, value)} (trained with {_said(field, trained_as[field])}; "
        + (
            f"{_SETTING_WORDS[field][1]} given"
            if getattr(config, field) is not None
            else f"the {config.protocol} protocol's"
        )
        + ")"
        for field, value in effective.items()
        if trained_as[field] is not None and value != trained_as[field]
    ]
    if differences:
        logger.info("Differs from training: " + "; ".join(differences) + ".")
    return model, settings, run


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
