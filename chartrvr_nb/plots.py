"""Figures drawn from data handed to them: training curves, reward histograms, evaluation plots.

Every plotting function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so it works headless (Agg, papermill, CI), shows once when it is a cell's last expression in
Jupyter/Colab, and saves with ``fig.savefig(path)``. matplotlib is imported inside functions.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
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


def _title(name: str) -> str:
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
        panels.append((_title(name), f"rewards/{name}/mean", ("std", f"rewards/{name}/std"), "reward", bounds))
    for key in ("accuracy", "eval_accuracy"):
        if any(key in record for record in records):
            panels.append((_title(key), key, None, "accuracy", (None, None)))
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


# --------------------------------------------------------------------------------------------
# Evaluation plots (benchmark accuracy against the paper, a gallery of wrong answers)
# --------------------------------------------------------------------------------------------


# The results table's own columns (eval_results.RESULT_COLUMNS and "vs paper"); the rest are the paper's models.
_TABLE_COLUMNS = ("benchmark", "protocol", "metric", "n", "ours", "base", "ours - base", "95% CI", "vs paper")


def plot_benchmark_accuracy(table, title: str | None = None):
    """Grouped bars per benchmark: our headline accuracy beside the paper's numbers.

    Args:
        table: a results table (``eval_results.results_table``): one row per reported number,
            the first of each benchmark its headline, with ``ours`` and one column per paper model.
        title: figure title.

    Returns:
        A matplotlib Figure: one group per benchmark with bars for ours and for each of the paper's
        models where it reports a number, each bar labelled with its value.
    """
    from matplotlib.figure import Figure

    if table.empty:
        raise ValueError("Nothing to plot: the results table is empty; evaluate at least one benchmark first.")
    headline = table.groupby("benchmark", sort=False).head(1)  # the first row of each benchmark is its headline
    paper_models = [column for column in table.columns if column not in _TABLE_COLUMNS]
    series = [("ours", "ours", "C0")] + [
        (column, f"paper: {column}", color) for column, color in zip(paper_models, ("C7", "C1", "C2", "C3"))
    ]
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
                ax.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    metric_names = [f"{b}\n({m})" if m != "accuracy" else b for b, m in zip(headline["benchmark"], headline["metric"])]
    ax.set_xticks(positions, metric_names, fontsize=8)
    ax.set_xlabel("benchmark")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    ax.set_title(title or "Benchmark accuracy: ours vs the paper")
    return figure


def plot_mistakes(predictions, n: int = 8, columns: int = 2, title: str | None = None):
    """A gallery of wrong answers: the chart, the question, gold vs predicted, and the reasoning.

    Args:
        predictions: prediction records (``EvaluationResult.predictions``, an ``EvaluationResult``,
            or ``eval_results.read_predictions(path)``). Records from memory carry the chart image
            of the first wrong answers; from a file, or past those, the panel shows the text only.
        n: at most this many wrong answers, in evaluation order.
        columns: panels per row. Two keep the figure about as wide as a notebook's output area, so
            it is shown unscaled and its 10-point reasoning text stays readable.
        title: figure title.

    Returns:
        A matplotlib Figure with one titled panel per wrong answer (or a note when none is wrong).
    """
    import textwrap

    from matplotlib.figure import Figure

    if hasattr(predictions, "predictions"):
        predictions = predictions.predictions
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
    figure = Figure(figsize=(4.6 * columns, 6.0 * rows), layout="constrained")
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
        ax.set_title("\n".join(textwrap.wrap(shorten(record.get("question", ""), 110), 44)), fontsize=10)
        caption = [
            f"gold: {shorten(record.get('answer', ''), 40)}",
            f"predicted: {shorten(record.get('prediction') or '(none)', 40)}",
        ]
        if record.get("reasoning"):
            caption += textwrap.wrap("reasoning: " + shorten(record["reasoning"], 200), 46)
        ax.set_xlabel("\n".join(caption), fontsize=10, loc="left")
    for ax in axes[len(wrong) :]:
        ax.set_visible(False)
    wrong_count = sum(not r.get("correct") for r in records)
    figure.suptitle(title or f"Wrong answers ({len(wrong)} shown of {wrong_count} wrong, {len(records)} evaluated)")
    return figure


def _draw_before_after(ax, metrics: Mapping[str, Mapping[str, Any]], labels: tuple[str, str]) -> None:
    """One pair of bars per reward on ``ax`` (before grey, after blue), labelled with the gain and its interval."""
    names = sorted(metrics, key=lambda name: name != "total_reward")  # the total first, then as given
    positions = list(range(len(names)))
    before = [float(metrics[name]["before"]) for name in names]
    after = [float(metrics[name]["after"]) for name in names]
    ax.bar([p - 0.2 for p in positions], before, width=0.4, color="C7", label=labels[0])
    ax.bar([p + 0.2 for p in positions], after, width=0.4, color="C0", label=labels[1])
    for position, name, low, high in zip(positions, names, before, after):
        gain_low, gain_high = metrics[name]["ci95"]
        ax.annotate(
            f"{high - low:+.2f}\n[{gain_low:+.2f}, {gain_high:+.2f}]",
            (position, max(low, high)),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 3),
            textcoords="offset points",
        )
    ax.set_xticks(positions, [_title(name) for name in names], fontsize=8, rotation=20)
    ax.set_ylim(min(0.0, *before, *after), max(before + after) * 1.25 + 0.1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")


def plot_before_after(
    metrics: Mapping[str, Mapping[str, Any]],
    title: str | None = None,
    labels: tuple[str, str] = ("before GRPO (warm start)", "after GRPO"),
    y_label: str = "mean reward on held-out charts",
):
    """Bars of each reward before and after training, labelled with the gain and its 95% interval.

    Args:
        metrics: ``{name: {"before", "after", "ci95": [low, high]}}``, as in ``learn_check.json`` or an
            evaluation summary's ``reward_comparison`` (``total_reward`` included, drawn first).
        title: figure title.
        labels: the legend's names of the two bars.
        y_label: the y axis' label.

    Returns:
        A matplotlib Figure: one pair of bars per reward (before grey, after blue), each pair
        labelled with ``after - before`` and the paired-bootstrap interval of that gain.

    Example:
        >>> figure = plot_before_after({"total_reward": {"before": 4.0, "after": 6.5, "ci95": [2.2, 2.8]},
        ...                             "format": {"before": 0.0, "after": 2.0, "ci95": [1.9, 2.0]}})
        >>> [text.get_text() for text in figure.axes[0].texts]
        ['+2.50\\n[+2.20, +2.80]', '+2.00\\n[+1.90, +2.00]']
    """
    from matplotlib.figure import Figure

    if not metrics:
        raise ValueError("Nothing to plot: no before/after metrics were given.")
    figure = Figure(figsize=(max(6.0, 1.1 * len(metrics) + 1.5), 4.0), layout="constrained")
    ax = figure.subplots()
    _draw_before_after(ax, metrics, labels)
    ax.set_ylabel(y_label)
    ax.set_title(title or "Rewards before and after GRPO (gain, 95% paired-bootstrap interval)")
    return figure


def plot_reward_changes(summaries, title: str | None = None):
    """What training changed, reward by reward: the adapter's mean rewards beside the base model's on the same
    examples, one panel per benchmark whose rows carry the ground truth the rewards need (``synthetic`` does).

    Args:
        summaries: evaluation results or their ``summary.json`` dicts; one evaluated with ``compare_base``
            shows base and adapter with the gain and its 95% paired-bootstrap interval, one without shows
            its own means.
        title: figure title.

    Returns:
        A matplotlib Figure (a note instead of bars when no benchmark had rewards to show).

    Example:
        >>> summary = {"title": "Synthetic", "rewards": {"format": 1.5}, "total_reward": 4.0,
        ...            "reward_comparison": {"total_reward": {"before": 3.0, "after": 4.0, "ci95": [0.5, 1.5]},
        ...                                  "format": {"before": 0.5, "after": 1.5, "ci95": [0.5, 1.5]}}}
        >>> [text.get_text().split()[0] for text in plot_reward_changes([summary]).axes[0].texts]
        ['+1.00', '+1.00']
    """
    from matplotlib.figure import Figure

    shown = [getattr(item, "summary", item) for item in summaries]
    shown = [summary for summary in shown if summary.get("rewards")]
    if not shown:
        figure = Figure(figsize=(6.0, 1.6), layout="constrained")
        ax = figure.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "No benchmark here has the ground truth the rewards need (synthetic has).", ha="center")
        return figure
    figure = Figure(figsize=(7.5, 4.0 * len(shown)), layout="constrained")
    for ax, summary in zip(figure.subplots(len(shown), 1, squeeze=False).ravel(), shown):
        compared = summary.get("reward_comparison")
        if compared:
            _draw_before_after(ax, compared, ("base model", "with the adapter"))
        else:
            means = {"total_reward": summary.get("total_reward"), **summary["rewards"]}
            names = [name for name, value in means.items() if value is not None]
            ax.bar(range(len(names)), [means[name] for name in names], color="C0")
            ax.set_xticks(range(len(names)), [_title(name) for name in names], fontsize=8, rotation=20)
            ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel("mean reward")
        ax.set_title(
            f"{summary.get('title', summary.get('benchmark', ''))}: {summary.get('reward_examples', '')} examples"
        )
    figure.suptitle(title or "Rewards: base model vs adapter on the same examples (gain, 95% interval)")
    return figure
