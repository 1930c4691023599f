"""Complete and verified checkpoints, resuming from the newest good one, a full disk, and finding runs.

How the Hugging Face Trainer (transformers 5.24, ``Trainer._save_checkpoint``) writes
``checkpoint-<step>``: it creates the final directory name directly (no temporary name,
no rename), then writes, in this order, the model or adapter weights with their config,
the processor/tokenizer and ``training_args.bin``, the optimizer, scheduler and scaler,
the RNG state, and last ``trainer_state.json`` (written with a plain ``open(..., "w")``).
It rotates old checkpoints and only then calls ``TrainerCallback.on_save``.

So a process killed mid-save leaves a ``checkpoint-<step>`` directory without
``trainer_state.json``, or with one cut short. A checkpoint here is *complete* when its
``trainer_state.json`` parses as JSON, records the ``global_step`` of the directory name,
and the weights it needs are present. Our own copies (to and from Drive) are atomic
(:mod:`chartrvr_nb.drive`), so a half-copied directory never carries a checkpoint name.

Complete is not the same as intact: a Drive sync cut short or a full disk can truncate a weights
file after ``trainer_state.json`` was written, and a bit can flip. So each checkpoint gets a
``manifest.json`` (every file's size and sha256), written last and atomically by
:func:`write_manifest` as soon as the Trainer has saved (``trainer.ManifestCallback``), and copied
last to Drive. :func:`prepare_resume` verifies newest-first (:func:`checkpoint_problem`: the
manifest, then that the safetensors and torch files are whole) and resumes from the newest
checkpoint that passes, saying which one is damaged and why; a damaged local checkpoint is moved
aside to ``damaged-checkpoint-<step>``, kept, not deleted, and a damaged Drive copy is never
restored. A checkpoint written before manifests existed is accepted when complete and its files
are whole. When the disk fills up during a save, :func:`explain_disk_full` removes the unfinished
checkpoint and says how much space is left and which checkpoint the next run resumes from.

It also lists the runs in a folder of run folders with their newest checkpoint (:func:`find_runs`,
e.g. the runs on Drive to resume); the run's own files are read and written by :mod:`chartrvr_nb.runfiles`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from datetime import datetime
from pathlib import Path

from .drive import MANIFEST_NAME, TEMP_PREFIX, clean_stale_temporaries, copy_atomic, discard, write_atomic
from .runfiles import METRICS_FILE, RUN_CONFIG_FILE, RUN_FILES, load_metrics, read_run_config
from .runlock import RunFolderError

logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"
DAMAGED_PREFIX = "damaged-"  # a damaged checkpoint is moved aside to damaged-checkpoint-<step>

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The global step in a ``checkpoint-<step>`` name, or None for any other name.

    Example:
        >>> checkpoint_step("runs/x/checkpoint-1500")
        1500
        >>> checkpoint_step("runs/x/.tmp-checkpoint-1500-4242") is None
        True
    """
    match = _CHECKPOINT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def _has_weights(directory: Path) -> bool:
    """Whether ``directory`` holds model weights in a layout the Trainer can resume from."""
    for index_name in _SHARD_INDEXES:
        index = directory / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (ValueError, KeyError, TypeError, OSError):
                return False
            return all((directory / shard).is_file() for shard in shards)
    if any((directory / name).is_file() for name in _WEIGHT_FILES):
        return True
    for child in directory.iterdir():
        if child.is_dir():
            # DeepSpeed writes "global_step<N>/", FSDP "pytorch_model_fsdp_0/", PEFT with a
            # named adapter "<adapter>/adapter_model.safetensors".
            if child.name.startswith(("global_step", "pytorch_model_fsdp")):
                return True
            if any((child / name).is_file() for name in _WEIGHT_FILES[:2]):
                return True
        elif child.name.startswith("pytorch_model_fsdp"):
            return True
    return False


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``checkpoint-<step>`` directory that the Trainer finished writing.

    Complete means: the name is ``checkpoint-<step>`` (temporary names never are), the
    Trainer's last file ``trainer_state.json`` parses and records that same ``global_step``,
    and the model or adapter weights are present (every shard, for sharded weights).

    Args:
        path: a directory.

    Returns:
        True only for a checkpoint that training can resume from.
    """
    path = Path(path)
    step = checkpoint_step(path)
    if step is None or not path.is_dir():
        return False
    try:
        state = json.loads((path / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(state, dict) or state.get("global_step") != step:
        return False
    return _has_weights(path)


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints directly inside ``run_dir``, oldest step first ([] if none)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [child for child in run_dir.iterdir() if is_complete_checkpoint(child)]
    return sorted(found, key=checkpoint_step)


def newest_complete_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest global step in ``run_dir``, or None.

    Incomplete checkpoints (a save or copy that was interrupted) are ignored.
    """
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


# --------------------------------------------------------------------------------------------
# Manifests and verification
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_manifest(checkpoint_dir: str | os.PathLike) -> Path:
    """Record the size and sha256 of every file in ``checkpoint_dir`` in its ``manifest.json``.

    Call it once the checkpoint is fully written; the manifest is written atomically
    (:func:`chartrvr_nb.drive.write_atomic`), so it is the last file to appear and never appears half-written.

    Returns:
        The manifest's path.
    """
    checkpoint_dir = Path(checkpoint_dir)
    files = {}
    for path in sorted(checkpoint_dir.rglob("*")):
        relative = path.relative_to(checkpoint_dir).as_posix()
        if path.is_file() and relative != MANIFEST_NAME and not path.name.startswith(TEMP_PREFIX):
            files[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": 1, "step": checkpoint_step(checkpoint_dir), "files": files}
    return write_atomic(checkpoint_dir / MANIFEST_NAME, json.dumps(manifest, indent=1))


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot load (its header, or its size against the header), or None."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_length is None or header_length > size - 8:
            return f"{path.name} is cut short: its safetensors header does not fit in its {size:,} bytes"
        try:
            header = json.loads(handle.read(header_length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return f"{path.name} has an unreadable safetensors header"
    if 8 + header_length + end != size:
        return f"{path.name} has {size:,} bytes but its tensors need {8 + header_length + end:,}"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why a torch.save file (a zip archive: optimizer, scheduler, RNG state) cannot load, or None."""
    try:
        with zipfile.ZipFile(path):
            return None
    except (zipfile.BadZipFile, OSError):
        return f"{path.name} is not a whole torch file (cut short or overwritten)"


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the checkpoint at ``path`` must not be resumed from, or None when it verifies.

    With a ``manifest.json``: every file it lists must exist with its recorded size and sha256.
    Always: the checkpoint must be complete (:func:`is_complete_checkpoint`) and its safetensors
    and torch files whole, so a checkpoint from before manifests is still checked for truncation.

    Args:
        path: a ``checkpoint-<step>`` directory.

    Returns:
        One line naming the damaged file and what is wrong with it, or None.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
            expected = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return f"its {MANIFEST_NAME} is unreadable"
        for name, (size, _) in expected.items():  # sizes first: a missing or cut file costs no hashing
            if not (path / name).is_file():
                return f"{name} is missing (the manifest lists it)"
            actual = (path / name).stat().st_size
            if actual != size:
                return f"{name} has {actual:,} bytes, the manifest records {size:,}"
        for name, (_, digest) in expected.items():
            if _sha256(path / name) != digest:
                return f"{name} does not match its sha256 in the manifest (its bytes changed after the save)"
    if not is_complete_checkpoint(path):
        return f"it is incomplete (no valid {TRAINER_STATE_NAME} for step {checkpoint_step(path)}, or weights missing)"
    for file in sorted(path.rglob("*")):
        if file.suffix == ".safetensors":
            problem = _safetensors_problem(file)
        elif file.suffix in (".pt", ".pth", ".bin"):
            problem = _torch_file_problem(file)
        else:
            continue
        if problem:
            return problem
    return None


def newest_verified_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``run_dir`` that also verifies (:func:`checkpoint_problem`).

    For readers such as evaluation: a damaged checkpoint is passed over with a logged line saying
    why, and left where it is (resume, not a reader, moves damaged checkpoints aside).
    """
    for checkpoint in reversed(complete_checkpoints(run_dir)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        logger.info(f"Passing over damaged {checkpoint.name}: {problem}.")
    return None


def _checkpoint_dirs(directory: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` directory in ``directory``, oldest step first."""
    if not directory.is_dir():
        return []
    return sorted(
        (child for child in directory.iterdir() if checkpoint_step(child) is not None and child.is_dir()),
        key=checkpoint_step,
    )


def _unfinished(path: Path) -> bool:
    """A save cut short: incomplete and without a manifest (a checkpoint with one was finished once)."""
    return not (path / MANIFEST_NAME).is_file() and not is_complete_checkpoint(path)


def _candidates(directory: Path, above_step: int = -1) -> list[Path]:
    """The checkpoints to try resuming from, newest first: every finished one above ``above_step``."""
    return [
        path
        for path in reversed(_checkpoint_dirs(directory))
        if checkpoint_step(path) > above_step and not _unfinished(path)
    ]


def _set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint out of the Trainer's way (``checkpoint-*``), keeping its files."""
    target = checkpoint.with_name(DAMAGED_PREFIX + checkpoint.name)
    number = 1
    while target.exists():
        number += 1
        target = checkpoint.with_name(f"{DAMAGED_PREFIX}{checkpoint.name}-{number}")
    os.replace(checkpoint, target)
    return target


def prune_checkpoints(directory: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints in ``directory``.

    Returns:
        The checkpoints removed, oldest first.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (the checkpoint to resume from), got {keep_last}")
    old = complete_checkpoints(directory)[:-keep_last]
    for path in old:
        discard(path)
    return old


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
    unfinished = [path for path in _checkpoint_dirs(output_dir) if _unfinished(path)]
    for path in unfinished:
        # A later save to the same name must not find a stale trainer_state.json there.
        discard(path)
    local = None
    for candidate in _candidates(output_dir):
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
        for candidate in _candidates(drive_dir, above_step=checkpoint_step(local) if local else -1):
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


# --------------------------------------------------------------------------------------------
# A full disk while saving
# --------------------------------------------------------------------------------------------

_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# safetensors says "I/O error: No space left on device (os error 28)" inside a SafetensorError.
_DISK_FULL_WORDS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
# torch.save loses the errno: "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
# (torch 2.14 on a full tmpfs). That counts as a full disk only when the disk is in fact nearly full.
_TORCH_WRITE_WORDS = ("inline_container", "pytorchstreamwriter", "file write failed")
_NEARLY_FULL_BYTES = 64 * 2**20


class DiskFullError(RunFolderError):
    """The disk of the run folder filled up while training wrote to it."""


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def is_disk_full(error: BaseException, folder: str | os.PathLike) -> bool:
    """Whether ``error`` (or an error it was raised from) means the disk of ``folder`` is full.

    Example:
        >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"), ".")
        True
        >>> is_disk_full(ValueError("bad preset"), ".")
        False
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error).lower()
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        if any(words in text for words in _DISK_FULL_WORDS):
            return True
        if any(words in text for words in _TORCH_WRITE_WORDS):
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def explain_disk_full(output_dir: str | os.PathLike):
    """Turn a full disk during training into a :class:`DiskFullError` that says what to do.

    Removes the checkpoint the Trainer was writing (it is unfinished, and its space is what the
    next save needs), then names the folder, the free space, and the checkpoint the next run
    resumes from; the earlier checkpoints are not touched. The original error stays attached as
    ``__cause__``.

    Args:
        output_dir: the run folder (``TrainingArguments.output_dir``).
    """
    try:
        yield
    except Exception as error:
        if not is_disk_full(error, output_dir):
            raise
        output_dir = Path(output_dir)
        unfinished = [path for path in _checkpoint_dirs(output_dir) if _unfinished(path)]
        for path in unfinished:
            with contextlib.suppress(OSError):
                discard(path)
        usage = shutil.disk_usage(output_dir)
        newest = next((path for path in _candidates(output_dir) if checkpoint_problem(path) is None), None)
        removed = f"Removed the unfinished {', '.join(path.name for path in unfinished)}; now " if unfinished else ""
        resume = (
            f"{newest.name} is intact (verified) and the next run resumes from it."
            if newest
            else "No checkpoint was finished yet, so the next run starts from step 0."
        )
        raise DiskFullError(
            f"The disk of {output_dir} is full: training stopped while writing to it. "
            f"{removed}{_size(usage.free)} free of {_size(usage.total)}. {resume}\n"
            "Free some space (old runs, damaged-checkpoint-* folders) or pass an --output-dir on a larger "
            "disk, then run the same command again."
        ) from error


# --------------------------------------------------------------------------------------------
# Finding runs to resume (a Drive folder of run folders)
# --------------------------------------------------------------------------------------------


def _is_run(folder: Path) -> bool:
    return (folder / RUN_CONFIG_FILE).is_file() or any(
        checkpoint_step(child) is not None and child.is_dir() for child in folder.iterdir()
    )


def find_runs(root: str | os.PathLike):
    """The training runs in ``root`` (a Drive folder, or any folder of run folders), newest first.

    Returns:
        A DataFrame with run (folder name, ``.`` for ``root`` itself), preset, model, newest
        complete checkpoint, its step, the last logged step, the last total reward and when the
        run was last written; empty when there are none.
    """
    import pandas as pd

    root = Path(root)
    columns = [
        "run",
        "preset",
        "model",
        "newest checkpoint",
        "checkpoint step",
        "logged steps",
        "last reward",
        "updated",
    ]
    folders = [root] + sorted(child for child in root.iterdir() if child.is_dir()) if root.is_dir() else []
    rows = []
    for folder in (f for f in folders if _is_run(f)):
        config = read_run_config(folder) or {}
        newest = newest_complete_checkpoint(folder)
        metrics = load_metrics(folder) if (folder / METRICS_FILE).is_file() else []
        rewards = [record["reward"] for record in metrics if isinstance(record.get("reward"), (int, float))]
        updated = max(path.stat().st_mtime for path in [folder, *folder.iterdir()])
        rows.append(
            {
                "run": "." if folder == root else folder.name,
                "preset": config.get("name"),
                "model": config.get("model"),
                "newest checkpoint": newest.name if newest else None,
                "checkpoint step": checkpoint_step(newest) if newest else 0,
                "logged steps": metrics[-1]["step"] if metrics else 0,
                "last reward": round(float(rewards[-1]), 3) if rewards else None,
                "updated": datetime.fromtimestamp(updated).strftime("%Y-%m-%d %H:%M:%S"),
                "mtime": updated,
            }
        )
    frame = pd.DataFrame(rows, columns=[*columns, "mtime"]).sort_values("mtime", ascending=False, ignore_index=True)
    return frame.drop(columns="mtime")
