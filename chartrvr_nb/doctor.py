"""The run-health report of a run folder, finished or running: ``python -m chartrvr_nb doctor RUN_DIR``.

The rules are :mod:`chartrvr_nb.health`'s (the same that warn live during training); here they read the
folder: its ``metrics.jsonl``, ``run_config.json`` and newest checkpoint (:func:`run_facts`), plus one
check only a folder can answer, whether the newest sampled completions earned any reward
(``samples.jsonl``). :func:`doctor` returns the report as text (:func:`format_verdicts`) and whether it passes.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from .checkpoints import TRAINER_STATE_NAME, newest_complete_checkpoint
from .env import DRIVE_MOUNT_POINT, in_colab
from .health import RunFacts, Verdict, check_run, training_records
from .runfiles import METRICS_FILE, SAMPLES_FILE, load_metrics, load_samples, read_run_config


def _max_steps(run_dir: Path, records: Sequence[Mapping], num_epochs: float | None) -> int | None:
    """The run's total steps: its newest checkpoint's trainer state, else what the logged epoch implies."""
    checkpoint = newest_complete_checkpoint(run_dir)
    if checkpoint is not None:
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        if isinstance(state.get("max_steps"), int) and state["max_steps"] > 0:
            return state["max_steps"]
    last = records[-1] if records else {}
    if num_epochs and isinstance(last.get("epoch"), (int, float)) and last["epoch"] > 0:
        return round(last["step"] * num_epochs / last["epoch"])
    return None


def run_facts(
    run_dir: str | os.PathLike, drive_dir: str | os.PathLike | None = None, records: Sequence[Mapping] | None = None
) -> RunFacts:
    """What a run folder says about its run (``run_config.json``, its checkpoints, the metrics ``records``)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir) or {}
    if records is None:
        records = training_records(load_metrics(run_dir)) if (run_dir / METRICS_FILE).is_file() else []
    return RunFacts(
        max_steps=_max_steps(run_dir, records, config.get("num_epochs")),
        max_completion_length=config.get("max_completion_length"),
        num_generations=config.get("num_generations"),
        drive=drive_dir is not None or run_dir.resolve().is_relative_to(DRIVE_MOUNT_POINT),
        in_colab=in_colab(),
    )


def _newest_samples(run_dir: Path) -> Verdict:
    """The newest sampled completions: did any earn a reward? (``samples.jsonl``)"""
    if not (run_dir / SAMPLES_FILE).is_file():
        return Verdict("samples", "wait", f"no {SAMPLES_FILE} yet")
    samples = load_samples(run_dir)
    if not samples:
        return Verdict("samples", "wait", f"no samples in {SAMPLES_FILE} yet")
    step = samples[-1]["step"]
    newest = [s for s in samples if s["step"] == step]
    scored = [s for s in newest if any(v for v in (s.get("rewards") or {}).values())]
    if scored:
        return Verdict("samples", "ok", f"{len(scored)} of {len(newest)} completions sampled at step {step} scored")
    text = " ".join(str(newest[0].get("completion", "")).split())
    return Verdict(
        "samples",
        "warn",
        f"none of the {len(newest)} completions sampled at step {step} earned any reward; one reads: "
        f"{text[:160]!r}{'...' if len(text) > 160 else ''}",
    )


def doctor(run_dir: str | os.PathLike, drive_dir: str | os.PathLike | None = None) -> tuple[str, bool]:
    """Every check on a finished or running run folder, from its ``metrics.jsonl`` and ``samples.jsonl``.

    Args:
        run_dir: the training run's folder (its ``--output-dir``), local or on Drive.
        drive_dir: the Drive folder the run mirrors its checkpoints to, if it does (a run folder on
            Drive counts as mirrored).

    Returns:
        ``(report, passed)``: a verdict per check as text, and whether every check passes (``wait`` passes).

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl``.
    """
    run_dir = Path(run_dir)
    records = training_records(load_metrics(run_dir))
    facts = run_facts(run_dir, drive_dir, records)
    verdicts = [*check_run(records, facts), _newest_samples(run_dir)]
    where = f"step {records[-1]['step']}" if records else "no step logged yet"
    if records and facts.max_steps:
        where += f" of {facts.max_steps}"
    preset = (read_run_config(run_dir) or {}).get("name", "unknown")
    report = format_verdicts(verdicts, f"Run health of {run_dir} (preset {preset}, {where})")
    return report, not any(verdict.status == "warn" for verdict in verdicts)


def format_verdicts(verdicts: Sequence[Verdict], title: str) -> str:
    """A verdict per line (long ones wrapped), and a last line: every check passes, or how many warn.

    Example:
        >>> print(format_verdicts([Verdict("rewards", "warn", "every reward was 0")], "Run health of runs/x"))
        Run health of runs/x
          WARN  rewards   every reward was 0
        1 check warns: see above.
    """
    lines = [title]
    for verdict in verdicts:
        status = "WARN" if verdict.status == "warn" else verdict.status
        lead = f"  {status:<4}  {verdict.check:<8}  "
        lines.append(textwrap.fill(verdict.message, width=110, initial_indent=lead, subsequent_indent=" " * len(lead)))
    warnings = sum(verdict.status == "warn" for verdict in verdicts)
    if not warnings:
        lines.append("Every check passes.")
    else:
        lines.append(f"{warnings} check{'s warn' if warnings > 1 else ' warns'}: see above.")
    return "\n".join(lines)
