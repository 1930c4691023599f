"""Resuming an interrupted evaluation from the predictions it already wrote.

An evaluation writes ``predictions.jsonl`` (and ``base_predictions.jsonl`` with ``compare_base``) a batch at a
time, and beside them ``evaluation_settings.json``: everything that decides the answers (model, weights and
their manifest, benchmark, data, protocol, prompt and system prompt, tokens per answer, pixel budget, 4-bit
base). Run again into the same folder with the same settings, it keeps the answers already written
(:func:`resume_predictions`) and generates only the rest; batch size, limit and seed do not decide an answer,
so a larger ``limit`` extends an earlier evaluation. With other settings, :func:`set_aside_other_settings`
moves the earlier files into ``previous/`` and says so, and the evaluation starts from the first example.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .drive import MANIFEST_NAME, write_atomic
from .runfiles import read_jsonl

logger = logging.getLogger(__name__)

SETTINGS_FILE = "evaluation_settings.json"
PREDICTION_FILES = ("predictions.jsonl", "base_predictions.jsonl")
SUMMARY_FILE = "summary.json"
PREVIOUS_DIR = "previous"  # where predictions made with other settings are moved (replacing an older set)


def weights_identity(path: str | None) -> str | None:
    """What identifies the evaluated weights beyond their path: for a local folder, the SHA-256 of its
    ``manifest.json`` (which holds every file's hash) or, without one, of its files' names, sizes and
    modification times; None for a hub id or nothing.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "manifest.json").write_text('{"files": {}}')
        >>> weights_identity(str(folder)) == hashlib.sha256(b'{"files": {}}').hexdigest()
        True
        >>> weights_identity("someone/adapter") is None
        True
    """
    folder = Path(path) if path else None
    if folder is None or not folder.is_dir():
        return None
    if (folder / MANIFEST_NAME).is_file():
        return hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()
    stats = [
        (file.relative_to(folder).as_posix(), file.stat().st_size, file.stat().st_mtime_ns)
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    ]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def _changes(recorded: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The settings that differ, in words.

    Example:
        >>> _changes({"max_new_tokens": 768, "prompt": "rvr"}, {"max_new_tokens": 160, "prompt": "rvr"})
        'max_new_tokens 768 -> 160'
    """
    keys = [key for key in {**recorded, **settings} if recorded.get(key) != settings.get(key)]
    return ", ".join(f"{key} {_short(recorded.get(key))} -> {_short(settings.get(key))}" for key in keys)


def _short(value: Any) -> Any:
    """A SHA-256 by its first 12 digits, as git shows a commit; anything else as it is."""
    return value[:12] + "..." if isinstance(value, str) and len(value) == 64 else value


def set_aside_other_settings(out_dir: Path, settings: Mapping[str, Any]) -> None:
    """Keep the folder's earlier predictions when ``settings`` made them; else move them into ``previous/``.

    Then record ``settings`` in :data:`SETTINGS_FILE`. Predictions without a settings record (written before
    evaluations recorded them) are set aside too: nothing says what made them.

    Args:
        out_dir: the evaluation's output folder (it exists).
        settings: what decides the answers (JSON values).
    """
    written = [out_dir / name for name in PREDICTION_FILES if (out_dir / name).is_file()]
    settings_path = out_dir / SETTINGS_FILE
    recorded = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else None
    settings = json.loads(json.dumps(settings))  # as it reads back: tuples become lists
    if written and recorded != settings:
        previous = out_dir / PREVIOUS_DIR
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        for path in [*written, out_dir / SUMMARY_FILE, settings_path]:
            if path.is_file():
                path.rename(previous / path.name)
        why = f"other settings ({_changes(recorded, settings)})" if recorded else "settings it did not record"
        logger.info(f"{out_dir} held predictions made with {why}: moved them to {previous}; evaluating from the start.")
    write_atomic(settings_path, json.dumps(settings, indent=2) + "\n")


def resume_predictions(path: Path, examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The records of ``path`` that answer the first of ``examples``, in order; the file is rewritten to hold
    exactly them (a line cut short by a killed process, and anything after a mismatch, are dropped).

    Args:
        path: a ``predictions.jsonl`` written by an evaluation with the same settings.
        examples: this evaluation's examples, in order.

    Returns:
        The kept records (``[]`` when the file does not exist).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "predictions.jsonl"
        >>> _ = path.write_text('{"index": 0, "id": "a", "question": "Q?"}\\n{"index": 1, "id"')
        >>> [record["id"] for record in resume_predictions(path, [{"id": "a", "question": "Q?"}, {"id": "b"}])]
        ['a']
        >>> path.read_text()
        '{"index": 0, "id": "a", "question": "Q?"}\\n'
    """
    if not path.is_file():
        return []
    kept: list[dict[str, Any]] = []
    for example, record in zip(examples, read_jsonl(path)):
        same = (record.get("index"), record.get("id"), record.get("question")) == (
            len(kept),
            example.get("id"),
            example.get("question"),
        )
        if not same:
            break
        kept.append(record)
    write_atomic(path, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in kept))
    return kept
