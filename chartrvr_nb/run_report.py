"""What a training run shows when it ends, or whenever asked: its reward curves saved into the run folder,
how each reward moved from the first steps to the last, and the command that evaluates it next.

``python -m chartrvr_nb grpo`` ends with :func:`finish_report`; ``python -m chartrvr_nb curves RUN`` prints
the same for any run folder, finished or not (:func:`curves_report`); 02_train saves its figure with
:func:`save_reward_curves`. The curves are :func:`chartrvr_nb.plots.plot_reward_curves` of the run's
``metrics.jsonl`` (:func:`chartrvr_nb.runfiles.load_metrics`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .env import run_path, run_root
from .plots import plot_reward_curves, reward_names
from .runfiles import METRICS_FILE, load_metrics, read_run_config

CURVES_FILE = "reward_curves.png"
TOTAL = "total"


def smoothing_window(steps: int) -> int:
    """The moving-average window of a run's curves: about 1/20 of the run, at least 3 steps.

    Example:
        >>> smoothing_window(16), smoothing_window(2000)
        (3, 100)
    """
    return max(3, steps // 20)


def save_reward_curves(run_dir: str | os.PathLike, dpi: int = 110):
    """Draw the run's reward curves and save them as ``reward_curves.png`` in its folder.

    Args:
        run_dir: the training run folder (a relative one is under the run root).
        dpi: the saved image's resolution.

    Returns:
        The matplotlib Figure (a notebook shows it as a cell's last expression).

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl`` (no run has logged a step there).
    """
    run = run_path(run_dir)
    metrics = load_metrics(run)
    figure = plot_reward_curves(metrics, smooth=smoothing_window(len(metrics)), run_name=run.name)
    figure.savefig(run / CURVES_FILE, dpi=dpi)
    return figure


def _window(steps: int, window: int | None) -> int:
    """Steps averaged at each end of a run: ``window``, else a tenth of the run, at least 1, at most half."""
    return window or min(max(1, steps // 10), max(1, steps // 2))


def reward_change(records: Sequence[Mapping[str, Any]], window: int | None = None) -> dict[str, tuple[float, float]]:
    """Each reward's mean (and the total's) over the first ``window`` logged steps and over the last.

    Args:
        records: the run's metrics, one dict per step (:func:`runfiles.load_metrics`).
        window: steps averaged at each end; default a tenth of the run, at least 1 and at most half of it.

    Returns:
        ``{"total": (first, last), "<reward>": (first, last), ...}``, rewards by short name, in logging order.

    Example:
        >>> records = [{"step": s, "reward": r, "rewards/format_reward/mean": f}
        ...            for s, r, f in [(1, 1.0, 0.0), (2, 3.0, 2.0), (3, 4.0, 2.0), (4, 6.0, 2.0)]]
        >>> reward_change(records, window=2)
        {'total': (2.0, 5.0), 'format': (1.0, 2.0)}
    """
    records = list(records)
    if not records:
        return {}
    window = _window(len(records), window)
    keys = {TOTAL: "reward", **{name.removesuffix("_reward"): f"rewards/{name}/mean" for name in reward_names(records)}}
    change = {}
    for name, key in keys.items():
        values = [float(record[key]) for record in records if isinstance(record.get(key), (int, float))]
        if values:
            change[name] = (sum(values[:window]) / len(values[:window]), sum(values[-window:]) / len(values[-window:]))
    return change


def format_reward_change(records: Sequence[Mapping[str, Any]], window: int | None = None) -> str:
    """:func:`reward_change` as a few lines: each reward's first and last mean and the change.

    Example:
        >>> records = [{"step": s, "reward": r} for s, r in [(1, 1.0), (2, 3.0), (3, 4.0), (4, 6.0)]]
        >>> print(format_reward_change(records, window=2))
        Rewards, mean of steps 1-2 -> steps 3-4 (4 logged steps):
          total           2.000 ->   5.000  (+3.000)
    """
    records = list(records)
    change = reward_change(records, window)
    if not change:
        return "No rewards logged yet."
    window = _window(len(records), window)
    first, last = records[:window], records[-window:]
    if window == 1:
        ends = f"step {first[0]['step']} -> step {last[0]['step']}"
    else:
        ends = f"mean of steps {first[0]['step']}-{first[-1]['step']} -> steps {last[0]['step']}-{last[-1]['step']}"
    lines = [f"Rewards, {ends} ({len(records)} logged steps):"]
    lines += [
        f"  {name:<12}{start:>8.3f} -> {end:>7.3f}  ({end - start:+.3f})" for name, (start, end) in change.items()
    ]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as a command takes it: relative to the run root when under it (commands resolve it there)."""
    try:
        return str(path.relative_to(run_root()))
    except ValueError:
        return str(path)


def next_command(run_dir: str | os.PathLike) -> str:
    """The command that evaluates the run next: its adapter against the base model (a LoRA run), or its full
    weights, on the run's validation benchmark; the run's own settings apply without flags.

    Example:
        >>> import tempfile, json
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "run_config.json").write_text(json.dumps({"finetune": "lora", "eval_dataset": "synthetic"}))
        >>> next_command(run).replace(str(run), "RUN")
        'python -m chartrvr_nb eval --adapter RUN --dataset-name synthetic --compare-base --limit 100'
    """
    run = run_path(run_dir)
    config = read_run_config(run) or {}
    full = config.get("finetune") == "full"  # a full fine-tune has no adapter to switch off for the base model
    words = ["python -m chartrvr_nb eval", "--model" if full else "--adapter", shlex.quote(_shown(run))]
    words += ["--dataset-name", str(config.get("eval_dataset") or "synthetic")]
    return " ".join([*words, *([] if full else ["--compare-base"]), "--limit", "100"])


def curves_report(run_dir: str | os.PathLike) -> str:
    """Save the run's reward curves into its folder and say how each reward moved and what to run next.

    Raises:
        FileNotFoundError: the folder has no ``metrics.jsonl``.
    """
    run = run_path(run_dir)
    save_reward_curves(run)
    lines = [format_reward_change(load_metrics(run)), f"Reward curves: {run / CURVES_FILE}"]
    return "\n".join([*lines, f"next: {next_command(run)}"])


def finish_report(run_dir: str | os.PathLike) -> str:
    """What ``grpo`` prints when training ends: :func:`curves_report`, or a line saying nothing was logged."""
    run = run_path(run_dir)
    if not (run / METRICS_FILE).is_file():
        return f"No steps were logged in {run}, so there are no reward curves yet."
    return curves_report(run)
