"""Resuming: pick the newest checkpoint that verifies, locally or on Drive, and set damaged ones aside.

:func:`prepare_resume` verifies checkpoints newest-first (:func:`chartrvr_nb.checkpoints.checkpoint_problem`)
and resumes from the newest checkpoint that passes, saying which one is damaged and why; a damaged
local checkpoint is moved aside to ``damaged-checkpoint-<step>``, kept, not deleted, and a damaged
Drive copy is never restored. A newer verified checkpoint on Drive (or the only one, e.g. on a fresh
Colab VM) is copied back atomically with the run's log files, and verified again once copied.
Before it is resumed, the checkpoint's run configuration (``run_config.json``) is compared with the
new start's: a change that would alter what the run trains is refused (:class:`RunConfigChangedError`),
before anything is restored or said about resuming. A folder with no checkpoint to resume has nothing
to protect, so any configuration may start there afresh.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import UserError
from .checkpoints import checkpoint_dirs, checkpoint_problem, checkpoint_step, is_unfinished, resume_candidates
from .drive import clean_stale_temporaries, copy_atomic, discard
from .runfiles import RUN_FILES, SYSTEM_PROMPT_SHA256, read_run_config

logger = logging.getLogger(__name__)

DAMAGED_PREFIX = "damaged-"  # a damaged checkpoint is moved aside to damaged-checkpoint-<step>

# Fields that may change between the first run and a resumed one without changing what is trained.
RESUMABLE_CHANGES = {
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "sample_every",
    "use_vllm",
    "torch_compile",
    "eval_dataset",
    "report_to",
    "system_prompt_file",  # where the authors' file was read; its text is checked by the hash
}
# What a run started before run_config.json recorded the objective (it has no system_prompt_sha256) trained
# with, where today's presets differ: TRL 1.16's default loss and the Trainer's fused AdamW, this project's
# prompt, images only shrunk. Resuming such a run with today's values would change its objective silently.
_BEFORE_THE_OBJECTIVE_WAS_RECORDED = {
    "loss_type": "dapo",
    "optim": "adamw_torch_fused",
    "system_prompt": "project",
    "image_resize": "project",
}


class RunConfigChangedError(UserError, ValueError):
    """The run folder holds a checkpoint of a run started with another configuration."""


def config_changes(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose change would alter what a resumed run trains: ``{field: (previous, current)}``.

    Args:
        previous: the run's ``run_config.json``.
        current: the new start's record (the preset's fields and the system prompt's hash).

    Example:
        >>> config_changes({"subset_size": 1, "save_steps": 8}, {"subset_size": 32, "save_steps": 4})
        {'subset_size': (1, 32)}
    """
    if SYSTEM_PROMPT_SHA256 not in previous:
        previous = {**_BEFORE_THE_OBJECTIVE_WAS_RECORDED, **previous}
    current = json.loads(json.dumps(dict(current)))  # as it would be read back: tuples are lists
    return {
        key: (previous[key], value)
        for key, value in sorted(current.items())
        if key in previous and key not in RESUMABLE_CHANGES and key != "name" and previous[key] != value
    }


def _refuse_another_configuration(
    run_config: Mapping[str, Any] | None, checkpoint: Path, *folders: Path | None
) -> None:
    """Raise :class:`RunConfigChangedError` when ``checkpoint``'s run (the first of ``folders`` holding a
    ``run_config.json``) was started with a configuration that ``run_config`` changes."""
    if run_config is None:
        return
    previous = next((found for f in folders if f is not None and (found := read_run_config(f)) is not None), None)
    changes = config_changes(previous, run_config) if previous is not None else {}
    if changes:
        details = ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise RunConfigChangedError(
            f"{checkpoint.parent} holds a run started with a different configuration ({details}), with "
            f"{checkpoint.name} to resume. Re-run with the original flags to resume it, or pass a new "
            "--output-dir to start another run."
        )


def _set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint out of the Trainer's way (``checkpoint-*``), keeping its files."""
    target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    number = 1
    while target.exists():
        number += 1
        target = checkpoint.with_name(f"{DAMAGED_PREFIX}{checkpoint.name}-{number}")
    os.replace(checkpoint, target)
    return target


def prepare_resume(
    output_dir: str | os.PathLike,
    drive_dir: str | os.PathLike | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> Path | None:
    """Pick the checkpoint to resume from, restoring it from Drive when Drive is ahead.

    Cleans interrupted-copy temporaries (local and Drive), removes local checkpoint
    directories the Trainer did not finish, then verifies checkpoints newest-first
    (:func:`checkpoint_problem`) and compares the newest one that verifies on each side. A
    damaged local checkpoint is moved aside to ``damaged-checkpoint-<step>`` (kept, not
    deleted); a damaged Drive copy is left where it is and not restored. A newer verified one
    on Drive (or the only one, e.g. on a fresh Colab VM) is copied into ``output_dir`` together
    with the run's log files, atomically, and verified again there. Logs one line per damaged
    checkpoint and one saying what was chosen. Call it from one process only (under
    ``accelerate launch``, the main process, before the others look for the checkpoint).

    Args:
        output_dir: the training run directory (``TrainingArguments.output_dir``).
        drive_dir: the run's Drive folder, or None without Drive.
        run_config: the new start's configuration (what ``run_config.json`` records); the checkpoint
            chosen must have been trained with it, except for :data:`RESUMABLE_CHANGES`. None: not checked.

    Returns:
        The local checkpoint to pass as ``trainer.train(resume_from_checkpoint=...)``, or
        None to start from step 0.

    Raises:
        RunConfigChangedError: the checkpoint to resume belongs to a run with another configuration;
            raised before anything is restored from Drive.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(output_dir)
    unfinished = [path for path in checkpoint_dirs(output_dir) if is_unfinished(path)]
    for path in unfinished:
        # A later save to the same name must not find a stale trainer_state.json there.
        discard(path)
    local = None
    for candidate in resume_candidates(output_dir):
        problem = checkpoint_problem(candidate)
        if problem is None:
            local = candidate
            break
        moved = _set_aside(candidate)  # out of the way of the Trainer's next save of this step
        logger.info(
            f"Skipping damaged {candidate.name}: {problem}. Moved it aside to {moved.name} "
            "(kept for inspection; delete it when done)."
        )

    restored = None
    if drive_dir is not None:
        drive_dir = Path(drive_dir)
        clean_stale_temporaries(drive_dir)
        for candidate in resume_candidates(drive_dir, above_step=checkpoint_step(local) if local else -1):
            problem = checkpoint_problem(candidate)
            if problem is None:
                _refuse_another_configuration(run_config, candidate, drive_dir, output_dir)
                restored = copy_atomic(candidate, output_dir / candidate.name)
                problem = checkpoint_problem(restored)  # what arrived from Drive must verify as well
                if problem is None:
                    break
                discard(restored)
                restored, problem = None, f"{problem} (in the copy read from Drive)"
            logger.info(f"Not restoring {candidate.name} from Drive {drive_dir}: it is damaged, {problem}.")

    if restored is None and local is not None:
        _refuse_another_configuration(run_config, local, output_dir, drive_dir)
    skipped = f" (removed unfinished {', '.join(p.name for p in unfinished)})" if unfinished else ""
    if restored is not None:
        for name in RUN_FILES:
            if (drive_dir / name).is_file():
                copy_atomic(drive_dir / name, output_dir / name)
        reason = "no local checkpoint" if local is None else f"newer than local {local.name}"
        logger.info(f"Resuming from {restored.name}, restored from Drive {drive_dir} ({reason}){skipped}.")
        return restored
    if drive_dir is not None:
        for name in RUN_FILES:
            if (drive_dir / name).is_file() and not (output_dir / name).exists():
                copy_atomic(drive_dir / name, output_dir / name)
    if local is not None:
        logger.info(f"Resuming from {local}{skipped}.")
        return local
    where = str(output_dir) + (f" or {drive_dir}" if drive_dir is not None else "")
    logger.info(f"No complete checkpoint in {where}: starting from step 0{skipped}.")
    return None
