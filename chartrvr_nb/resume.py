"""Resuming: pick the newest checkpoint that verifies, locally or on Drive, and set damaged ones aside.

:func:`prepare_resume` verifies checkpoints newest-first (:func:`chartrvr_nb.checkpoints.checkpoint_problem`)
and resumes from the newest checkpoint that passes, saying which one is damaged and why; a damaged
local checkpoint is moved aside to ``damaged-checkpoint-<step>``, kept, not deleted, and a damaged
Drive copy is never restored. A newer verified checkpoint on Drive (or the only one, e.g. on a fresh
Colab VM) is copied back atomically with the run's log files, and verified again once copied.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .checkpoints import checkpoint_dirs, checkpoint_problem, checkpoint_step, is_unfinished, resume_candidates
from .drive import clean_stale_temporaries, copy_atomic, discard
from .runfiles import RUN_FILES

logger = logging.getLogger(__name__)

DAMAGED_PREFIX = "damaged-"  # a damaged checkpoint is moved aside to damaged-checkpoint-<step>


def _set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint out of the Trainer's way (``checkpoint-*``), keeping its files."""
    target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    number = 1
    while target.exists():
        number += 1
        target = checkpoint.with_name(f"{DAMAGED_PREFIX}{checkpoint.name}-{number}")
    os.replace(checkpoint, target)
    return target


def prepare_resume(output_dir: str | os.PathLike, drive_dir: str | os.PathLike | None = None) -> Path | None:
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

    Returns:
        The local checkpoint to pass as ``trainer.train(resume_from_checkpoint=...)``, or
        None to start from step 0.
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
                restored = copy_atomic(candidate, output_dir / candidate.name)
                problem = checkpoint_problem(restored)  # what arrived from Drive must verify as well
                if problem is None:
                    break
                discard(restored)
                restored, problem = None, f"{problem} (in the copy read from Drive)"
            logger.info(f"Not restoring {candidate.name} from Drive {drive_dir}: it is damaged, {problem}.")

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
