"""A full disk while training writes: recognise it, remove the unfinished checkpoint, say what to do.

A save that runs out of space leaves a checkpoint the Trainer did not finish. :func:`explain_disk_full`
removes it (its space is what the next save needs), then raises a :class:`DiskFullError` naming the
folder, the free space and the checkpoint the next run resumes from; the earlier checkpoints are not
touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from .checkpoints import checkpoint_dirs, checkpoint_problem, is_unfinished, resume_candidates
from .drive import discard
from .runlock import RunFolderError

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
        unfinished = [path for path in checkpoint_dirs(output_dir) if is_unfinished(path)]
        for path in unfinished:
            with contextlib.suppress(OSError):
                discard(path)
        usage = shutil.disk_usage(output_dir)
        newest = next((path for path in resume_candidates(output_dir) if checkpoint_problem(path) is None), None)
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
