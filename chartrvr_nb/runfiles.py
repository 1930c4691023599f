"""The files a training run writes into its folder, and how to read them back.

A run folder holds the Trainer's ``checkpoint-<step>`` folders (see :mod:`chartrvr_nb.checkpoints`)
and three files of ours: ``metrics.jsonl`` (every log event, appended as training goes),
``samples.jsonl`` (sample completions with their rewards) and ``run_config.json`` (the preset the
run was started with, and the SHA-256 of the system prompt it trained with, written once training
has begun), and a ``README.md`` model card (:func:`model_card`). Training writes them
through this module; plots, notebooks and the CLI read them through it, so a resumed run, a crash
mid-line or a re-logged step reads the same everywhere.
:func:`find_runs` lists the runs in a folder of run folders (e.g. on Drive, to pick one to resume).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .checkpoints import checkpoint_step, newest_complete_checkpoint
from .drive import write_atomic

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
RUN_CONFIG_FILE = "run_config.json"
ADAPTER_DIR = "adapter"  # a LoRA run's final adapter
MODEL_DIR = "model"  # a full fine-tune's final model
SYSTEM_PROMPT_SHA256 = "system_prompt_sha256"  # run_config.json's record of the system prompt trained with
RUN_FILES = (METRICS_FILE, SAMPLES_FILE, RUN_CONFIG_FILE)  # mirrored to Drive beside the checkpoints


_JSON_KINDS = {str: "text", list: "a list", dict: "an object", int: "a number", float: "a number", bool: "true/false"}


def _json_object(
    line: str, required: Sequence[str], kinds: Mapping[str, tuple[tuple[type, ...], str]] | None = None
) -> tuple[dict | None, str | None]:
    """The object on one JSONL line, or what is wrong with the line."""
    try:
        record = json.loads(line)
    except ValueError as error:
        return None, f"is not valid JSON ({error}); fix or remove that line"
    if not isinstance(record, dict):
        return None, "is not a JSON object; each line needs one"
    missing = [field for field in required if field not in record]
    if missing:
        return None, f"has no {missing[0]!r} field; each line needs one"
    for name, (allowed, wanted) in (kinds or {}).items():
        value = record.get(name)
        fits = isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))  # True is an int
        if name in record and not fits:
            given = "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)
            return None, f"has {given} as its {name!r}; it must be {wanted}"
    return record, None


def read_jsonl(
    path: str | os.PathLike,
    strict: bool = False,
    required: Sequence[str] = (),
    kinds: Mapping[str, tuple[tuple[type, ...], str]] | None = None,
) -> list[dict]:
    """The JSON objects of a file of UTF-8 text, one per line (blank lines skipped): the one JSONL reader.

    Args:
        path: the file.
        strict: what a bad line (not a JSON object, or without a ``required`` field) does. False,
            for the run logs: it is skipped with one warning (a write cut short by a killed
            process). True, for a file a user hands in: it is an error naming the file and line.
        required: the fields every object must have.
        kinds: the JSON types a field must have where it is present, as Python types, with how to say
            them (``{"completion": ((str, list), "text or a list of chat messages")}``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: with ``strict``, the first bad line, as ``path:line``.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "batch.jsonl"
        >>> _ = path.write_text('{"completion": "a"}\\n{"completion": \\n')
        >>> read_jsonl(path, strict=True)
        Traceback (most recent call last):
        ...
        ValueError: .../batch.jsonl:2 is not valid JSON (...); fix or remove that line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give a JSONL file with one JSON object per line.")
    records, broken = [], 0
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:  # a byte-order mark, as some editors write, starts the first line
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                line, problem = "", f"is not UTF-8 text (byte {raw[error.start]:#04x}); save the file as UTF-8"
                if strict:
                    raise ValueError(f"{path}:{number} {problem}.") from None
                broken += 1
            if not line.strip():
                continue
            record, problem = _json_object(line, required, kinds)
            if problem is None:
                records.append(record)
            elif strict:
                raise ValueError(f"{path}:{number} {problem}.")
            else:
                broken += 1
    if broken:
        warnings.warn(f"Skipped {broken} unreadable line(s) in {path} (a write cut short by a crash).", stacklevel=3)
    return records


def _plain(value: Any) -> Any:
    """A value JSON cannot hold: a number (numpy or torch scalar) as a float, anything else as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def append_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one JSON line per record.

    Example:
        >>> import tempfile, numpy
        >>> path = Path(tempfile.mkdtemp()) / "log.jsonl"
        >>> append_jsonl(path, [{"step": 1, "loss": numpy.float32(0.5), "when": Path("x")}])
        >>> read_jsonl(path)
        [{'step': 1, 'loss': 0.5, 'when': 'x'}]
    """
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, default=_plain) + "\n")


def _log_file(run_dir_or_file: str | os.PathLike, name: str) -> Path:
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(
            f"No {name} at {path}. Pass the training run directory (the --output-dir of a GRPO run) "
            f"or the {name} file itself."
        )
    return path


def load_metrics(run_dir_or_file: str | os.PathLike) -> list[dict]:
    """A run's logged metrics, one record per optimizer step, in step order.

    A resumed run appends to the same ``metrics.jsonl`` and re-logs the steps after its last
    checkpoint, and the end-of-training summary shares the last step; so records of one step
    are merged, the later value of each key winning. The curve is one continuous line.

    Args:
        run_dir_or_file: the run directory or its ``metrics.jsonl``.

    Returns:
        A list of dicts, each with ``"step"`` and the Trainer/TRL keys logged at that step.
    """
    by_step: dict[int, dict] = {}
    for record in read_jsonl(_log_file(run_dir_or_file, METRICS_FILE)):
        if isinstance(record.get("step"), int):
            by_step.setdefault(record["step"], {}).update(record)
    return [by_step[step] for step in sorted(by_step)]


def load_samples(run_dir_or_file: str | os.PathLike) -> list[dict]:
    """Sample completions with their rewards (``samples.jsonl``), in step order.

    When a resumed run logged a step again, only its latest block of samples is kept. A block
    ends where the step changes, or where the optional ``"run"`` field (an id of the training
    process that wrote the row) changes: without it, a resumed run that re-logs the very step
    the crashed run logged last cannot be told apart from it.

    Args:
        run_dir_or_file: the run directory or its ``samples.jsonl``.

    Returns:
        A list of dicts with ``step``, ``prompt``, ``completion``, ``label`` and ``rewards``.
    """
    groups: dict[int, list[dict]] = {}
    previous = None
    for record in read_jsonl(_log_file(run_dir_or_file, SAMPLES_FILE)):
        step = record.get("step")
        if not isinstance(step, int):
            continue
        if (step, record.get("run")) != previous:
            groups[step] = []  # a new block replaces an earlier block of the same step
            previous = (step, record.get("run"))
        groups[step].append(record)
    return [row for step in sorted(groups) for row in groups[step]]


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The preset fields a run was started with (``run_config.json``), or None before the first start."""
    path = Path(run_dir) / RUN_CONFIG_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_run_config(run_dir: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write ``run_config.json`` (the preset as a dict) into the run folder, atomically: a write cut
    short (a full disk, a kill) leaves the previous file whole, which a resume compares against."""
    return write_atomic(Path(run_dir) / RUN_CONFIG_FILE, json.dumps(dict(config), indent=2) + "\n")


def model_card(config: Mapping[str, Any], run_dir: str | os.PathLike) -> str:
    """The ``README.md`` of a run folder: what was trained, from what, on what, and how to evaluate it.

    Args:
        config: the run's ``run_config.json`` (a preset's fields).
        run_dir: the run folder.

    Example:
        >>> card = model_card({"name": "smoke", "model": "tiny", "train_data": "synthetic", "finetune": "lora",
        ...                    "eval_dataset": "synthetic"}, "runs/smoke")
        >>> print(card.splitlines()[6])  # doctest: +NORMALIZE_WHITESPACE
        A LoRA adapter trained with GRPO on the Chart-RVR rewards by chartrvr-nb, preset `smoke`, from the
        offline tiny Qwen2.5-VL that chartrvr-nb builds by code (`tiny`, not on the Hugging Face Hub), on
        `synthetic` training rows.
    """
    from importlib.metadata import version

    from .models import MODEL_REGISTRY, TINY_MODELS

    model = str(config.get("model"))
    hub_id = MODEL_REGISTRY.get(model) if model not in TINY_MODELS else None
    base = (
        f"[{hub_id}](https://huggingface.co/{hub_id})"
        if hub_id
        else f"the offline tiny Qwen2.5-VL that chartrvr-nb builds by code (`{model}`, not on the Hugging Face Hub)"
    )
    full = config.get("finetune") == "full"
    weights, flag = (MODEL_DIR, "--model") if full else (ADAPTER_DIR, "--adapter")
    return "\n".join(
        [
            "---",
            *([f"base_model: {hub_id}"] if hub_id else []),
            "tags: [chartrvr-nb, grpo, trl, chart-qa]",
            "---",
            "",
            f"# {Path(run_dir).name}",
            "",
            f"{'A full fine-tune' if full else 'A LoRA adapter'} trained with GRPO on the Chart-RVR rewards by "
            f"chartrvr-nb, preset `{config.get('name')}`, from {base}, on `{config.get('train_data')}` training rows.",
            "",
            f"The final weights are in `{weights}/`, the configuration in `{RUN_CONFIG_FILE}`, each step's rewards in "
            f"`{METRICS_FILE}` and sample completions in `{SAMPLES_FILE}`. Evaluate it with:",
            "",
            f"    python -m chartrvr_nb eval {flag} {run_dir} --vlm-name {model} --dataset-name "
            f"{config.get('eval_dataset')}",
            "",
            f"Trained with TRL {version('trl')} and transformers {version('transformers')}.",
            "",
        ]
    )


def preset_from_run(run_dir: str | os.PathLike):
    """The Preset a run was started with, rebuilt from its ``run_config.json``.

    Raises:
        FileNotFoundError: the folder has no run_config.json (it is not a training run).
    """
    import dataclasses

    from .presets import Preset, get_preset

    config = read_run_config(run_dir)
    if config is None:
        raise FileNotFoundError(
            f"No {RUN_CONFIG_FILE} in {run_dir}: not a training run folder (train() writes it when a run starts). "
            "Pick a folder listed by runfiles.find_runs()."
        )
    fields = {field.name for field in dataclasses.fields(Preset)} - {"name"}
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in config.items() if key in fields}
    return get_preset(config["name"], **values)


def find_run_config(path: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """The run a folder belongs to and its ``run_config.json``: for a run folder or anything inside one (a
    checkpoint, its ``adapter/`` or ``model/``), ``(run folder, config)``; None when no ``run_config.json``
    is found there or one folder up.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = write_run_config(run, {"name": "smoke", "model": "tiny"})
        >>> found = find_run_config(run / "adapter")
        >>> found[0] == run, found[1]["model"]
        (True, 'tiny')
    """
    path = Path(path)
    for folder in (path, path.parent):
        config = read_run_config(folder)
        if config is not None:
            return folder, config
    return None


def trained_system_prompt(path: str | os.PathLike) -> tuple[str, str | None] | None:
    """The system prompt a run trained with, for a run folder or anything inside one (a checkpoint, its
    ``adapter/`` or ``model/``): ``(choice, sha256)``, the hash None for a run from before it was recorded;
    None when no ``run_config.json`` is found there or one folder up.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = write_run_config(run, {"name": "smoke", "system_prompt": "project", SYSTEM_PROMPT_SHA256: "ab12"})
        >>> trained_system_prompt(run / "checkpoint-8")
        ('project', 'ab12')
    """
    found = find_run_config(path)
    if found is None:
        return None
    config = found[1]
    return config.get("system_prompt", "project"), config.get(SYSTEM_PROMPT_SHA256)


# --------------------------------------------------------------------------------------------
# Finding runs (e.g. a Drive folder of run folders, to resume one)
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
