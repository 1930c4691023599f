"""Complete checkpoints, an atomic Google Drive mirror, and resuming from the newest one.

How the Hugging Face Trainer (transformers 5.24, ``Trainer._save_checkpoint``) writes
``checkpoint-<step>``: it creates the final directory name directly (no temporary name,
no rename), then writes, in this order, the model or adapter weights with their config,
the processor/tokenizer and ``training_args.bin``, the optimizer, scheduler and scaler,
the RNG state, and last ``trainer_state.json`` (written with a plain ``open(..., "w")``).
It rotates old checkpoints and only then calls ``TrainerCallback.on_save``.

So a process killed mid-save leaves a ``checkpoint-<step>`` directory without
``trainer_state.json``, or with one cut short. A checkpoint here is *complete* when its
``trainer_state.json`` parses as JSON, records the ``global_step`` of the directory name,
and the weights it needs are present. Copies that this module makes (to and from Drive)
go to a temporary name ``.tmp-<name>-<pid>`` and are renamed into place when finished,
so a half-copied directory never carries a checkpoint name.

It also lists the runs in a folder of run folders with their newest checkpoint (:func:`find_runs`,
e.g. the runs on Drive to resume); the run's own files are read and written by :mod:`chartrvr_nb.runfiles`.

Only the callback needs transformers: :func:`drive_mirror_callback` (or the first access of
``chartrvr_nb.checkpoints.DriveMirrorCallback``) builds the class, so importing this module
stays light.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import warnings
from datetime import datetime
from pathlib import Path

from .runfiles import METRICS_FILE, RUN_CONFIG_FILE, RUN_FILES, load_metrics, read_run_config

TRAINER_STATE_NAME = "trainer_state.json"
TEMP_PREFIX = ".tmp-"

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
# Every temporary this module creates: ".tmp-<name>-<pid>" and ".tmp-delete-<name>-<pid>".
_TEMP_NAME = re.compile(r"^\.tmp-.+-\d+$")
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


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _discard(path: Path) -> None:
    """Remove ``path`` so that no interruption leaves it half-deleted under its own name."""
    trash = path.with_name(f"{TEMP_PREFIX}delete-{path.name}-{os.getpid()}")
    if trash.exists():
        _remove(trash)
    os.replace(path, trash)
    _remove(trash)


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that interrupted copies left in ``directory``.

    Call it when no copy into ``directory`` is running (before training starts):
    :func:`prepare_resume` does.

    Args:
        directory: a run directory or Drive folder; a missing one is fine.

    Returns:
        The paths removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(child for child in directory.iterdir() if _TEMP_NAME.match(child.name))
    for path in stale:
        _remove(path)
    return stale


def copy_atomic(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a file or directory so that ``destination`` only ever appears complete.

    The copy goes to ``.tmp-<name>-<pid>`` beside ``destination`` and is renamed into place
    when finished; an existing ``destination`` is replaced.

    Args:
        source: file or directory to copy.
        destination: the final path (its parent is created).

    Returns:
        ``destination`` as a Path.
    """
    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f"{TEMP_PREFIX}{destination.name}-{os.getpid()}")
    if temporary.exists():
        _remove(temporary)
    if source.is_dir():
        shutil.copytree(source, temporary)
        if destination.exists():
            _discard(destination)
    else:
        shutil.copy2(source, temporary)
    os.replace(temporary, destination)
    return destination


def prune_checkpoints(directory: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints in ``directory``.

    Returns:
        The checkpoints removed, oldest first.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1 (the checkpoint to resume from), got {keep_last}")
    old = complete_checkpoints(directory)[:-keep_last]
    for path in old:
        _discard(path)
    return old


class DriveMirror:
    """Mirrors a run directory's checkpoints and log files to a Drive folder, atomically.

    Args:
        drive_dir: the Drive folder for this run; checkpoints land directly in it.
        keep_last: complete checkpoints kept on Drive (older ones are deleted).

    Example:
        >>> mirror = DriveMirror("/content/drive/MyDrive/chartrvr-nb/run", keep_last=2)
        >>> mirror.keep_last
        2
    """

    def __init__(self, drive_dir: str | os.PathLike, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.drive_dir = Path(drive_dir)
        self.keep_last = keep_last

    def mirror_checkpoint(self, checkpoint_dir: str | os.PathLike) -> Path:
        """Copy one finished checkpoint to Drive, then prune Drive to ``keep_last``.

        Raises:
            ValueError: the checkpoint is incomplete (it would never be resumed from).
        """
        checkpoint_dir = Path(checkpoint_dir)
        if not is_complete_checkpoint(checkpoint_dir):
            raise ValueError(
                f"{checkpoint_dir} is not a complete checkpoint (no valid {TRAINER_STATE_NAME} "
                "or missing weights), so it was not copied to Drive."
            )
        copied = copy_atomic(checkpoint_dir, self.drive_dir / checkpoint_dir.name)
        prune_checkpoints(self.drive_dir, self.keep_last)
        return copied

    def mirror_run_files(self, run_dir: str | os.PathLike) -> list[Path]:
        """Copy metrics.jsonl, samples.jsonl and run_config.json (those that exist) to Drive."""
        run_dir = Path(run_dir)
        return [copy_atomic(run_dir / name, self.drive_dir / name) for name in RUN_FILES if (run_dir / name).is_file()]


@functools.cache
def _drive_mirror_callback_class() -> type:
    from transformers import TrainerCallback

    class DriveMirrorCallback(TrainerCallback):
        """Copies each checkpoint the Trainer saves to Drive, atomically, keeping the last K.

        Runs on the main process only, after the Trainer has finished writing the
        checkpoint. A Drive error (e.g. Drive disconnected) is reported as a warning and
        training continues: the local checkpoint is intact and the next save tries again.

        Args:
            drive_dir: the Drive folder for this run.
            keep_last: complete checkpoints kept on Drive.
        """

        def __init__(self, drive_dir: str | os.PathLike, keep_last: int = 3):
            self.mirror = DriveMirror(drive_dir, keep_last)

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            try:
                self.mirror.mirror_checkpoint(checkpoint)
                self.mirror.mirror_run_files(args.output_dir)
            except (OSError, ValueError) as error:
                warnings.warn(
                    f"Could not mirror {checkpoint.name} to Drive ({error}). Training continues and the "
                    "local checkpoint is intact; if Drive was unmounted, mount it again "
                    "(chartrvr_nb.env.mount_drive()) and the next save is mirrored.",
                    stacklevel=2,
                )
            else:
                print(f"Mirrored {checkpoint.name} to {self.mirror.drive_dir}", flush=True)

        def on_train_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            try:
                self.mirror.mirror_run_files(args.output_dir)
            except OSError as error:
                warnings.warn(f"Could not copy the run logs to Drive ({error}).", stacklevel=2)

    DriveMirrorCallback.__module__ = __name__
    return DriveMirrorCallback


def __getattr__(name: str):
    # PEP 562: build the TrainerCallback subclass (and import transformers) only when used.
    if name == "DriveMirrorCallback":
        return _drive_mirror_callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def drive_mirror_callback(drive_dir: str | os.PathLike, keep_last: int = 3):
    """A ``DriveMirrorCallback`` for ``Trainer(callbacks=[...])``: each saved checkpoint goes to
    ``drive_dir`` atomically, keeping the newest ``keep_last`` there."""
    return _drive_mirror_callback_class()(drive_dir, keep_last)


def prepare_resume(output_dir: str | os.PathLike, drive_dir: str | os.PathLike | None = None) -> Path | None:
    """Pick the checkpoint to resume from, restoring it from Drive when Drive is ahead.

    Cleans interrupted-copy temporaries (local and Drive), removes local checkpoint
    directories the Trainer did not finish, then compares the newest complete checkpoint
    on each side. A newer one on Drive (or the only one, e.g. on a fresh Colab VM) is
    copied into ``output_dir`` together with the run's log files, atomically. Prints one
    line saying what was chosen. Call it from one process only (under ``accelerate launch``,
    the main process, before the others look for the checkpoint).

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
    unfinished = [
        child for child in sorted(output_dir.iterdir())
        if checkpoint_step(child) is not None and child.is_dir() and not is_complete_checkpoint(child)
    ]
    for path in unfinished:
        # A later save to the same name must not find a stale trainer_state.json there.
        _discard(path)
    local = newest_complete_checkpoint(output_dir)

    remote = None
    if drive_dir is not None:
        drive_dir = Path(drive_dir)
        clean_stale_temporaries(drive_dir)
        remote = newest_complete_checkpoint(drive_dir)

    skipped = f" (removed unfinished {', '.join(p.name for p in unfinished)})" if unfinished else ""
    if remote is not None and (local is None or checkpoint_step(remote) > checkpoint_step(local)):
        chosen = copy_atomic(remote, output_dir / remote.name)
        for name in RUN_FILES:
            if (drive_dir / name).is_file():
                copy_atomic(drive_dir / name, output_dir / name)
        reason = "no local checkpoint" if local is None else f"newer than local {local.name}"
        print(f"Resuming from {chosen.name}, restored from Drive {drive_dir} ({reason}){skipped}.", flush=True)
        return chosen
    if drive_dir is not None:
        for name in RUN_FILES:
            if (drive_dir / name).is_file() and not (output_dir / name).exists():
                copy_atomic(drive_dir / name, output_dir / name)
    if local is not None:
        print(f"Resuming from {local}{skipped}.", flush=True)
        return local
    where = str(output_dir) + (f" or {drive_dir}" if drive_dir is not None else "")
    print(f"No complete checkpoint in {where}: starting from step 0{skipped}.", flush=True)
    return None


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
    columns = ["run", "preset", "model", "newest checkpoint", "checkpoint step", "logged steps", "last reward", "updated"]
    folders = [root] + sorted(child for child in root.iterdir() if child.is_dir()) if root.is_dir() else []
    rows = []
    for folder in (f for f in folders if _is_run(f)):
        config = read_run_config(folder) or {}
        newest = newest_complete_checkpoint(folder)
        metrics = load_metrics(folder) if (folder / METRICS_FILE).is_file() else []
        rewards = [record["reward"] for record in metrics if isinstance(record.get("reward"), (int, float))]
        updated = max(path.stat().st_mtime for path in [folder, *folder.iterdir()])
        rows.append({
            "run": "." if folder == root else folder.name,
            "preset": config.get("name"),
            "model": config.get("model"),
            "newest checkpoint": newest.name if newest else None,
            "checkpoint step": checkpoint_step(newest) if newest else 0,
            "logged steps": metrics[-1]["step"] if metrics else 0,
            "last reward": round(float(rewards[-1]), 3) if rewards else None,
            "updated": datetime.fromtimestamp(updated).strftime("%Y-%m-%d %H:%M:%S"),
            "mtime": updated,
        })
    frame = pd.DataFrame(rows, columns=[*columns, "mtime"]).sort_values("mtime", ascending=False, ignore_index=True)
    return frame.drop(columns="mtime")
