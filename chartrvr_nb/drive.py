"""Atomic writes and copies: a reader, a Drive sync or the next run sees the old version or the new one, never half.

Every write of ours that a crash must not leave half done goes through here: the lock file
(:mod:`chartrvr_nb.runlock`), ``run_config.json`` (:mod:`chartrvr_nb.runfiles`), each checkpoint's
``manifest.json``, and the copies of checkpoints and log files to and from Google Drive
(:mod:`chartrvr_nb.resume`, the Drive mirror in :mod:`chartrvr_nb.callbacks`). Each goes to a
temporary name beside its target, ``.tmp-<name>-<pid>``, and is renamed over the target when
finished (``os.replace``, atomic on one file system); so a name we write only ever holds a whole
file or folder. A process killed mid-write leaves its temporary behind: :func:`clean_stale_temporaries`
removes those before the next run starts. Deleting goes through a temporary name too
(:func:`discard`), so an interrupted delete never leaves a half-deleted folder under its own name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TEMP_PREFIX = ".tmp-"
# Every temporary made here: ".tmp-<name>-<pid>" and, while deleting, ".tmp-delete-<name>-<pid>".
_TEMP_NAME = re.compile(r"^\.tmp-.+-(\d+)$")
# A folder's list of its own files (each checkpoint gets one, see checkpoints.write_manifest). A
# copy writes it last: on a syncing Drive it must never arrive before the files it lists.
MANIFEST_NAME = "manifest.json"


def _temporary(path: Path) -> Path:
    """Where the new version of ``path`` is written before it is renamed into place."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}-{os.getpid()}")


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that ``path`` holds the old text or the new, never a part.

    The text goes to a temporary file that is flushed to disk (fsync) and renamed over ``path``.
    A write that fails (a full disk, an interrupt) removes its temporary and leaves ``path`` as it was.

    Args:
        path: the file to write (its folder must exist).
        text: the whole new content, written as UTF-8.

    Returns:
        ``path`` as a Path.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "run_config.json"
        >>> write_atomic(path, '{"seed": 42}').read_text()
        '{"seed": 42}'
        >>> [p.name for p in path.parent.iterdir()]  # no temporary left
        ['run_config.json']
    """
    path = Path(path)
    temporary = _temporary(path)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def discard(path: str | os.PathLike) -> None:
    """Remove a file or folder so that no interruption leaves it half-deleted under its own name.

    It is renamed to ``.tmp-delete-<name>-<pid>`` first (atomic), then deleted; a delete cut short
    leaves only that temporary, which :func:`clean_stale_temporaries` removes later.
    """
    path = Path(path)
    trash = path.with_name(f"{TEMP_PREFIX}delete-{path.name}-{os.getpid()}")
    if trash.exists():
        _remove(trash)
    os.replace(path, trash)
    _remove(trash)


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that interrupted writes, copies and deletes left in ``directory``.

    Call it when no other process is writing into ``directory`` (before training starts:
    ``resume.prepare_resume`` does). This process's own temporaries are in flight (the run
    lock's heartbeat writes one every minute) and are left alone.

    Args:
        directory: a run folder or Drive folder; a missing one is fine.

    Returns:
        The paths removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = sorted(
        child
        for child in directory.iterdir()
        if (match := _TEMP_NAME.match(child.name)) and int(match.group(1)) != os.getpid()
    )
    for path in stale:
        _remove(path)
    return stale


def copy_atomic(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a file or folder so that ``destination`` only ever appears complete.

    The copy goes to ``.tmp-<name>-<pid>`` beside ``destination`` and is renamed into place
    when finished; an existing ``destination`` is replaced. A folder's ``manifest.json`` is
    copied last, so that on a syncing Drive it never arrives before the files it lists. A copy
    that fails (e.g. Drive is full) removes its temporary.

    Args:
        source: file or folder to copy.
        destination: the final path (its parent is created).

    Returns:
        ``destination`` as a Path.
    """
    source, destination = Path(source), Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(destination)
    if temporary.exists():
        _remove(temporary)
    try:
        if source.is_dir():
            shutil.copytree(
                source, temporary, ignore=lambda folder, names: [MANIFEST_NAME] if Path(folder) == source else []
            )
            if (source / MANIFEST_NAME).is_file():
                shutil.copy2(source / MANIFEST_NAME, temporary / MANIFEST_NAME)
            if destination.exists():
                discard(destination)
        else:
            shutil.copy2(source, temporary)
    except BaseException:
        if temporary.exists():
            _remove(temporary)
        raise
    os.replace(temporary, destination)
    return destination
