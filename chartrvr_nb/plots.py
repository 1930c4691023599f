"""Figures for notebooks and reports: training curves from a run directory's logs, eval plots.

Every plotting function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so it works headless (Agg, papermill, CI), shows once when it is a cell's last expression in
Jupyter/Colab, and saves with ``fig.savefig(path)``. matplotlib is imported inside functions.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
_REWARD_MEAN = re.compile(r"^rewards/(.+)/mean$")


def _read_jsonl(path: Path) -> list[dict]:
    """JSON objects, one per line; a line cut short by a killed process is skipped with a warning."""
    records, broken = [], 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                broken += 1
                continue
            if isinstance(record, dict):
                records.append(record)
    if broken:
        warnings.warn(f"Skipped {broken} unreadable line(s) in {path} (a write cut short by a crash).", stacklevel=3)
    return records


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
    for record in _read_jsonl(_log_file(run_dir_or_file, METRICS_FILE)):
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
    for record in _read_jsonl(_log_file(run_dir_or_file, SAMPLES_FILE)):
        step = record.get("step")
        if not isinstance(step, int):
            continue
        if (step, record.get("run")) != previous:
            groups[step] = []  # a new block replaces an earlier block of the same step
            previous = (step, record.get("run"))
        groups[step].append(record)
    return [row for step in sorted(groups) for row in groups[step]]


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points.

    Example:
        >>> _moving_average([1.0, 2.0, 3.0, 4.0], 2)
        [1.0, 1.5, 2.5, 3.5]
    """
    averaged, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averaged.append(total / min(index + 1, window))
    return averaged


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [
        (record["step"], float(record[key])) for record in records
        if isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool)
        and math.isfinite(record[key])
    ]
    return [step for step, _ in points], [value for _, value in points]


def reward_names(records: list[dict]) -> list[str]:
    """The reward functions logged in ``records`` (``rewards/<name>/mean``), in logging order.

    Example:
        >>> reward_names([{"step": 1, "rewards/format_reward/mean": 2.0, "reward": 2.0}])
        ['format_reward']
    """
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            match = _REWARD_MEAN.match(key)
            if match:
                names.setdefault(match.group(1))
    return list(names)


def _pick_rewards(available: list[str], wanted: list[str] | None) -> list[str]:
    if wanted is None:
        return available
    chosen = []
    for name in wanted:
        candidates = [name, f"{name}_reward", _REWARD_MEAN.sub(r"\1", name)]
        match = next((c for c in candidates if c in available), None)
        if match is None:
            raise ValueError(f"No reward named {name!r} in the metrics. Logged rewards: {', '.join(available)}.")
        chosen.append(match)
    return chosen


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _short(text: Any, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters.

    Example:
        >>> _short("a\\nb  c", 10), _short("abcdefghijkl", 6)
        ('a b c', 'abcde…')
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_reward_curves(
    run_dir_or_file: str | os.PathLike,
    rewards: list[str] | None = None,
    smooth: int | None = None,
    title: str | None = None,
):
    """One panel per reward (mean with a +-std band), plus total reward and training health.

    Panels, when logged: total reward, each reward function, accuracy, completion length
    (mean with min-max band) and the fraction of groups whose completions all scored the same
    (``frac_reward_zero_std``: those groups give GRPO no learning signal).

    Args:
        run_dir_or_file: the run directory or its ``metrics.jsonl``.
        rewards: reward names to show (``"format"``, ``"format_reward"``); None for all.
        smooth: moving-average window in steps; None picks about 1/50 of the run, 1 disables.
        title: figure title; defaults to the run directory's name.

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.figure import Figure

    source = Path(run_dir_or_file)
    records = load_metrics(source)
    if smooth is None:
        smooth = max(1, len(records) // 50)
    panels = []  # (title, mean key, band, y label); band is ("std", key) or ("range", low key, high key)
    if any("reward" in record for record in records):
        panels.append(("Total reward", "reward", ("std", "reward_std"), "reward"))
    for name in _pick_rewards(reward_names(records), rewards):
        panels.append((_title(name), f"rewards/{name}/mean", ("std", f"rewards/{name}/std"), "reward"))
    for key in ("accuracy", "eval_accuracy"):
        if any(key in record for record in records):
            panels.append((_title(key), key, None, "accuracy"))
    if any("completions/mean_length" in record for record in records):
        panels.append(("Completion length", "completions/mean_length",
                       ("range", "completions/min_length", "completions/max_length"), "tokens"))
    if any("frac_reward_zero_std" in record for record in records):
        panels.append(("Groups with identical rewards", "frac_reward_zero_std", None, "fraction of groups"))
    if not panels:
        keys = sorted({key for record in records for key in record})
        raise ValueError(
            f"No reward metrics in {source}: expected GRPO keys such as 'reward' or 'rewards/<name>/mean', "
            f"found {keys}."
        )

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel_title, key, band, y_label) in zip(axes, panels):
        steps, values = _series(records, key)
        smoothed = _moving_average(values, smooth)
        if smooth > 1:
            ax.plot(steps, values, color="C0", alpha=0.3, linewidth=0.8, label="per step")
        ax.plot(steps, smoothed, color="C0", linewidth=1.6, label=f"mean of {smooth} steps" if smooth > 1 else "mean")
        if band and band[0] == "std":
            std_by_step = dict(zip(*_series(records, band[1])))
            if std_by_step:
                spread = _moving_average([std_by_step.get(step, 0.0) for step in steps], smooth)
                ax.fill_between(steps, [m - s for m, s in zip(smoothed, spread)],
                                [m + s for m, s in zip(smoothed, spread)], color="C0", alpha=0.15, label="± std")
        elif band and band[0] == "range":
            low, high = dict(zip(*_series(records, band[1]))), dict(zip(*_series(records, band[2])))
            shared = [step for step in steps if step in low and step in high]
            if shared:
                ax.fill_between(shared, [low[s] for s in shared], [high[s] for s in shared],
                                color="C0", alpha=0.15, label="min-max")
        if key == "frac_reward_zero_std":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(panel_title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if len(steps) > 1 and (ax is axes[0] or (band and band[0] == "range")):
            ax.legend(fontsize="small", loc="best")  # the other panels repeat the first one's key
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    run_name = source.name if source.is_dir() else source.parent.name
    figure.suptitle(title or f"GRPO training: {run_name} (to step {records[-1]['step']})")
    return figure


# --------------------------------------------------------------------------------------------
# Reward inspection plots (a training example, reward histograms over a scored batch)
# --------------------------------------------------------------------------------------------


def plot_example(row: Mapping[str, Any]):
    """The example's chart as the model sees it, titled with its type, question and label.

    Returns:
        A matplotlib Figure.
    """
    import textwrap

    from matplotlib.figure import Figure

    image = row["image"]
    width, height = image.size
    figure = Figure(figsize=(6.0, 6.0 * height / width + 1.0), layout="constrained")
    ax = figure.subplots()
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{width}x{height} px ({width * height:,} pixels), chart type: {row['chart_type']}")
    question = "\n".join(textwrap.wrap(f"Q: {row['query']}", 70))
    ax.set_title(f"{question}\nlabel: {_short(row['label'], 60)}", fontsize=10)
    return figure


def plot_reward_histograms(scores, bins: int = 12):
    """One histogram per reward (and the total) over a scored batch.

    Args:
        scores: a DataFrame from :func:`chartrvr_nb.notebooks.score_jsonl` or ``rewards.score_completions``.
        bins: histogram bins.

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.figure import Figure

    from .rewards import REWARD_MAXIMA

    names = [name for name in (*REWARD_MAXIMA, "total") if name in scores.columns]
    if not names:
        raise ValueError(f"No reward columns in the table (columns: {list(scores.columns)}); score a batch first.")
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        values = [float(v) for v in scores[name]]
        ax.hist(values, bins=bins, color="C1" if name == "total" else "C0", edgecolor="white")
        maximum = REWARD_MAXIMA.get(name)
        ax.set_title(f"{name} (max {maximum:g})" if maximum else name)
        ax.set_xlabel("reward")
        ax.set_ylabel("completions")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    figure.suptitle(f"Rewards over {len(scores)} completions")
    return figure


# --------------------------------------------------------------------------------------------
# Evaluation plots (benchmark accuracy against the paper, a gallery of wrong answers)
# --------------------------------------------------------------------------------------------


def plot_benchmark_accuracy(summary_or_table, title: str | None = None):
    """Grouped bars per benchmark: our headline accuracy beside the paper's numbers.

    Args:
        summary_or_table: a ``results_table`` DataFrame (:func:`chartrvr_nb.evaluate.results_table`),
            a ``summary.json`` dict, an ``EvaluationResult``, or a list / dict of them.
        title: figure title.

    Returns:
        A matplotlib Figure: one group per benchmark with bars for ours, Qwen2.5-VL-3B (direct)
        and Chart-RVR-3B where the paper reports a number, each bar labelled with its value.
    """
    from matplotlib.figure import Figure

    from .benchmarks import CHART_RVR, QWEN_DIRECT
    from .evaluate import results_table

    table = summary_or_table
    if hasattr(table, "summary") and not hasattr(table, "columns"):
        table = table.summary
    if not hasattr(table, "columns"):
        table = results_table(table)
    if table.empty:
        raise ValueError("Nothing to plot: the results table is empty; evaluate at least one benchmark first.")
    headline = table.groupby("benchmark", sort=False).head(1)  # the first row of each benchmark is its headline
    series = [("ours", "ours", "C0"), (QWEN_DIRECT, f"paper: {QWEN_DIRECT}", "C7"),
              (CHART_RVR, f"paper: {CHART_RVR}", "C1")]
    series = [s for s in series if s[0] in headline and headline[s[0]].notna().any()]
    width = 0.8 / len(series)
    figure = Figure(figsize=(max(5.0, 1.6 * len(headline) + 2.0), 4.0), layout="constrained")
    ax = figure.subplots()
    positions = list(range(len(headline)))
    for offset, (column, label, color) in enumerate(series):
        xs = [p - 0.4 + width * (offset + 0.5) for p in positions]
        values = [float(v) if v is not None and v == v else 0.0 for v in headline[column]]
        bars = ax.bar(xs, values, width=width, label=label, color=color)
        for bar, value in zip(bars, headline[column]):
            if value is not None and value == value:  # NaN (no number) gets no label
                ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    metric_names = [f"{b}\n({m})" if m != "accuracy" else b for b, m in zip(headline["benchmark"], headline["metric"])]
    ax.set_xticks(positions, metric_names, fontsize=8)
    ax.set_xlabel("benchmark")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title(title or "Benchmark accuracy: ours vs the paper")
    return figure


def plot_mistakes(predictions, n: int = 8, columns: int = 4, title: str | None = None):
    """A gallery of wrong answers: the chart, the question, gold vs predicted, and the reasoning.

    Args:
        predictions: prediction records (``EvaluationResult.predictions``, an
            ``EvaluationResult``, or the path of a ``predictions.jsonl``). Records from memory
            carry the chart image of the first wrong answers; from a file, or past those, the
            panel shows the text only.
        n: at most this many wrong answers, in evaluation order.
        columns: panels per row.
        title: figure title.

    Returns:
        A matplotlib Figure with one titled panel per wrong answer (or a note when none is wrong).
    """
    import textwrap

    from matplotlib.figure import Figure

    if hasattr(predictions, "predictions"):
        predictions = predictions.predictions
    if isinstance(predictions, (str, os.PathLike)):
        predictions = _read_jsonl(Path(predictions))
    records = list(predictions)
    wrong = [record for record in records if not record.get("correct")][: max(0, n)]
    if not wrong:
        figure = Figure(figsize=(5.0, 1.6), layout="constrained")
        ax = figure.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"No wrong answers among {len(records)} predictions.", ha="center", va="center")
        ax.set_title(title or "Wrong answers")
        return figure

    columns = max(1, min(columns, len(wrong)))
    rows = math.ceil(len(wrong) / columns)
    figure = Figure(figsize=(3.6 * columns, 4.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, record in zip(axes, wrong):
        image = record.get("image")
        if isinstance(image, (str, os.PathLike)) and Path(image).is_file():
            from PIL import Image

            with Image.open(image) as opened:
                image = opened.convert("RGB")
        if hasattr(image, "size"):
            ax.imshow(image)
        else:
            ax.text(0.5, 0.5, "(image not kept)", ha="center", va="center", color="gray", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("\n".join(textwrap.wrap(_short(record.get("question", ""), 110), 42)), fontsize=7)
        caption = [f"gold: {_short(record.get('answer', ''), 40)}",
                   f"predicted: {_short(record.get('prediction') or '(none)', 40)}"]
        if record.get("reasoning"):
            caption += textwrap.wrap("reasoning: " + _short(record["reasoning"], 180), 50)
        ax.set_xlabel("\n".join(caption), fontsize=7, loc="left")
    for ax in axes[len(wrong):]:
        ax.set_visible(False)
    wrong_count = sum(not r.get("correct") for r in records)
    figure.suptitle(title or f"Wrong answers ({len(wrong)} shown of {wrong_count} wrong, {len(records)} evaluated)")
    return figure
