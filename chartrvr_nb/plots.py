"""Figures drawn from data handed to them: training curves, a training example, reward histograms.

Every plotting function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so it works headless (Agg, papermill, CI), shows once when it is a cell's last expression in
Jupyter/Colab, and saves with ``fig.savefig(path)``. matplotlib is imported inside functions.
The evaluation figures are in :mod:`chartrvr_nb.eval_plots`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .inspection import shorten
from .rewards import REWARD_MAXIMA, REWARD_MINIMA

_REWARD_MEAN = re.compile(r"^rewards/(.+)/mean$")


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
        (record["step"], float(record[key]))
        for record in records
        if isinstance(record.get(key), (int, float))
        and not isinstance(record.get(key), bool)
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


def reward_title(name: str) -> str:
    """A logged name as a panel or bar title.

    Example:
        >>> reward_title("chart_type_reward")
        'Chart type reward'
    """
    return name.replace("_", " ").capitalize()


def plot_reward_curves(
    records: Sequence[Mapping[str, Any]],
    rewards: list[str] | None = None,
    smooth: int | None = None,
    title: str | None = None,
    run_name: str | None = None,
):
    """One panel per reward (mean with a +-std band, cut to the scores the reward can give), plus total reward
    and training health.

    Panels, when logged: total reward, each reward function, accuracy, completion length
    (mean with min-max band) and the fraction of groups whose completions all scored the same
    (``frac_reward_zero_std``: those groups give GRPO no learning signal).

    Args:
        records: the run's metrics, one dict per step (``runfiles.load_metrics(run_dir)``).
        rewards: reward names to show (``"format"``, ``"format_reward"``); None for all.
        smooth: moving-average window in steps; None picks about 1/50 of the run, 1 disables.
        title: figure title; defaults to "GRPO training: <run_name> (to step N)".
        run_name: the run's name for the default title.

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.figure import Figure

    records = list(records)
    if not records:
        raise ValueError("No metrics to plot yet: the run has not logged a step.")
    if smooth is None:
        smooth = max(1, len(records) // 50)
    # (title, mean key, band, y label, bounds); band is ("std", key) or ("range", low key, high key); a std
    # band is cut to the bounds of what the reward can score (mean - std of a 0/1 reward is no score it gives)
    panels = []
    if any("reward" in record for record in records):
        total_bounds = (sum(REWARD_MINIMA.values()), None)
        panels.append(("Total reward", "reward", ("std", "reward_std"), "reward", total_bounds))
    for name in _pick_rewards(reward_names(records), rewards):
        short = name.removesuffix("_reward")
        bounds = (REWARD_MINIMA.get(short), REWARD_MAXIMA.get(short))
        panels.append((reward_title(name), f"rewards/{name}/mean", ("std", f"rewards/{name}/std"), "reward", bounds))
    for key in ("accuracy", "eval_accuracy"):
        if any(key in record for record in records):
            panels.append((reward_title(key), key, None, "accuracy", (None, None)))
    if any("completions/mean_length" in record for record in records):
        panels.append(
            (
                "Completion length",
                "completions/mean_length",
                ("range", "completions/min_length", "completions/max_length"),
                "tokens",
                (None, None),
            )
        )
    if any("frac_reward_zero_std" in record for record in records):
        panels.append(
            ("Groups with identical rewards", "frac_reward_zero_std", None, "fraction of groups", (None, None))
        )
    if not panels:
        keys = sorted({key for record in records for key in record})
        raise ValueError(
            "No reward metrics in the records: expected GRPO keys such as 'reward' or 'rewards/<name>/mean', "
            f"found {keys}."
        )

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel_title, key, band, y_label, (lowest, highest)) in zip(axes, panels):
        steps, values = _series(records, key)
        smoothed = _moving_average(values, smooth)
        if smooth > 1:
            ax.plot(steps, values, color="C0", alpha=0.3, linewidth=0.8, label="per step")
        ax.plot(steps, smoothed, color="C0", linewidth=1.6, label=f"mean of {smooth} steps" if smooth > 1 else "mean")
        if band and band[0] == "std":
            std_by_step = dict(zip(*_series(records, band[1])))
            if std_by_step:
                spread = _moving_average([std_by_step.get(step, 0.0) for step in steps], smooth)
                ax.fill_between(
                    steps,
                    [m - s if lowest is None else max(m - s, lowest) for m, s in zip(smoothed, spread)],
                    [m + s if highest is None else min(m + s, highest) for m, s in zip(smoothed, spread)],
                    color="C0",
                    alpha=0.15,
                    label="± std",
                )
        elif band and band[0] == "range":
            low, high = dict(zip(*_series(records, band[1]))), dict(zip(*_series(records, band[2])))
            shared = [step for step in steps if step in low and step in high]
            if shared:
                ax.fill_between(
                    shared, [low[s] for s in shared], [high[s] for s in shared], color="C0", alpha=0.15, label="min-max"
                )
        if key == "frac_reward_zero_std":
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(panel_title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        if len(steps) > 1 and (ax is axes[0] or (band and band[0] == "range")):
            ax.legend(fontsize="small", loc="best")  # the other panels repeat the first one's key
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    run = f": {run_name}" if run_name else ""
    figure.suptitle(title or f"GRPO training{run} (to step {records[-1]['step']})")
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
    # Shown at a whole multiple of the training size, pixels copied, not resampled: a small image
    # stretched by a fractional factor reads as blurry, which is not what the model gets.
    scale = max(1, round(520 / width))
    title_px, caption_px = 60, 30
    figure_px = scale * height + title_px + caption_px
    figure = Figure(figsize=(scale * width / 100, figure_px / 100), dpi=100)
    ax = figure.add_axes((0, caption_px / figure_px, 1, scale * height / figure_px))  # the image, edge to edge
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"{width}x{height} px ({width * height:,} pixels), chart type: {row['chart_type']}")
    question = "\n".join(textwrap.wrap(f"Q: {row['query']}", 70))
    ax.set_title(f"{question}\nlabel: {shorten(row['label'], 60)}", fontsize=10)
    return figure


def plot_reward_histograms(scores, bins: int = 12):
    """One histogram per reward (and the total) over a scored batch.

    Args:
        scores: a DataFrame from :func:`chartrvr_nb.inspection.score_records` or ``inspection.score_completions``.
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
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.suptitle(f"Rewards over {len(scores)} completions")
    return figure
