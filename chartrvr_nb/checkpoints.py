"""What a checkpoint is: complete, verified by its manifest, unfinished; the newest good one; pruning.

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
:func:`write_manifest` as soon as the Trainer has saved (``callbacks.ManifestCallback``), and copied
last to Drive. :func:`checkpoint_problem` verifies one: the manifest, then that the safetensors and
torch files are whole; a checkpoint written before manifests existed is accepted when complete and
its files are whole. A run's final ``adapter/`` or ``model/`` gets a manifest too, and evaluation
verifies what it loads (:func:`saved_weights_problem`). Resuming from the newest one that verifies
is :mod:`chartrvr_nb.resume`; a full disk while saving, :mod:`chartrvr_nb.disk_full`; the runs in a
folder, ``runfiles.find_runs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from pathlib import Path

from .drive import MANIFEST_NAME, TEMP_PREFIX, discard, write_atomic

logger = logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"

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

    Used for every checkpoint and for a run's final ``adapter/`` or ``model/`` folder. Call it once the
    folder is fully written; the manifest is written atomically
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


def _manifest_problem(path: Path) -> str | None:
    """Why the files ``manifest.json`` lists differ from it (missing, resized, other bytes), or None (also
    when there is no manifest)."""
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
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
    return None


def _whole_files_problem(path: Path) -> str | None:
    """Why a safetensors or torch file in ``path`` cannot load (cut short, overwritten), or None."""
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
    problem = _manifest_problem(path)
    if problem is None and not is_complete_checkpoint(path):
        problem = (
            f"it is incomplete (no valid {TRAINER_STATE_NAME} for step {checkpoint_step(path)}, or weights missing)"
        )
    return problem or _whole_files_problem(path)


def saved_weights_problem(path: str | os.PathLike) -> str | None:
    """Why a folder of saved weights (a run's final ``adapter/`` or ``model/``, a checkpoint) must not be
    evaluated, or None when it verifies: its manifest, that it holds weights, and that they are whole.

    A checkpoint is verified as resume verifies it (:func:`checkpoint_problem`). A final folder gets its
    manifest when training saves it; one without (saved before final folders had manifests, or by other
    code) is checked for weights and truncation only.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "adapter_config.json").write_text("{}")
        >>> saved_weights_problem(folder)
        'it holds no weights (no adapter_model.safetensors, model.safetensors or shards)'
    """
    path = Path(path)
    if checkpoint_step(path) is not None:
        return checkpoint_problem(path)
    problem = _manifest_problem(path)
    if problem is None and not _has_weights(path):
        problem = "it holds no weights (no adapter_model.safetensors, model.safetensors or shards)"
    return problem or _whole_files_problem(path)


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


# --------------------------------------------------------------------------------------------
# Finished or not (what resuming and a full disk look at), and pruning
# --------------------------------------------------------------------------------------------


def checkpoint_dirs(directory: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` directory in ``directory``, oldest step first."""
    if not directory.is_dir():
        return []
    return sorted(
        (child for child in directory.iterdir() if checkpoint_step(child) is not None and child.is_dir()),
        key=checkpoint_step,
    )


def is_unfinished(path: Path) -> bool:
    """A save cut short: incomplete and without a manifest (a checkpoint with one was finished once)."""
    return not (path / MANIFEST_NAME).is_file() and not is_complete_checkpoint(path)


def resume_candidates(directory: Path, above_step: int = -1) -> list[Path]:
    """The checkpoints to try resuming from, newest first: every finished one above ``above_step``."""
    return [
        path
        for path in reversed(checkpoint_dirs(directory))
        if checkpoint_step(path) > above_step and not is_unfinished(path)
    ]


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
