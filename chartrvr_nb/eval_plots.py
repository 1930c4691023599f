"""Evaluation figures drawn from data handed to them: benchmark accuracy beside the paper, a gallery of wrong
answers, and rewards before and after training (the learn-check's, and an adapter's beside its base model's).

Like :mod:`chartrvr_nb.plots`, every function returns a :class:`matplotlib.figure.Figure` built without
pyplot, so it works headless (Agg, papermill, CI), shows once when it is a cell's last expression in
Jupyter/Colab, and saves with ``fig.savefig(path)``. matplotlib is imported inside functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .inspection import shorten
from .plots import reward_title

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
    ax.set_xticks(positions, [reward_title(name) for name in names], fontsize=8, rotation=20)
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
            ax.set_xticks(range(len(names)), [reward_title(name) for name in names], fontsize=8, rotation=20)
            ax.grid(axis="y", alpha=0.3)
        ax.set_ylabel("mean reward")
        ax.set_title(
            f"{summary.get('title', summary.get('benchmark', ''))}: {summary.get('reward_examples', '')} examples"
        )
    figure.suptitle(title or "Rewards: base model vs adapter on the same examples (gain, 95% interval)")
    return figure
