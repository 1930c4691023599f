"""Scoring evaluation answers and summarising them: per-example records, the benchmark's
aggregations and headline, the ``official`` and ``chart_rvr_code`` figures, the paired bootstrap,
and the table of our numbers beside the paper's.

Pure functions over records (dicts); the metrics themselves are :mod:`chartrvr_nb.metrics`, named
per benchmark in :mod:`chartrvr_nb.benchmarks` (the published-table rules in
:mod:`chartrvr_nb.official_scoring`). numpy and pandas are imported inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .benchmarks import BENCHMARKS, CHART_RVR, QWEN_DIRECT, Benchmark
from .metrics import AGGREGATIONS, METRICS
from .official_scoring import OFFICIAL_SCORERS, score_chart_rvr_code

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import pandas as pd

BOOTSTRAP_RESAMPLES = 1000


HEADLINE_LABELS = {
    "accuracy": "accuracy",
    "subset_mean": "accuracy (mean of subsets)",
    "acc_plus": "Acc+",
}


def score_example(example: Mapping[str, Any], prediction: str) -> float:
    """Score one prediction with the example's metric (see ``metrics.METRICS``).

    Example:
        >>> score_example({"answer": "No", "metric": "yes_no"}, "no")
        1.0
    """
    return float(METRICS[example.get("metric") or "relaxed"](prediction, example))


def prediction_record(index: int, example: Mapping[str, Any], generation: Mapping[str, Any]) -> dict[str, Any]:
    """The line written to ``predictions.jsonl`` for one example.

    ``score`` is the metric's value (0/1, or partial credit for ChartQAPro's ANLS and list
    answers); ``correct`` is ``score >= 0.5``.
    """
    score = score_example(example, generation["prediction"])
    return {
        "index": index,
        "id": example.get("id"),
        "subset": example.get("subset"),
        "question": example["question"],
        "answer": example["answer"],
        "prediction": generation["prediction"],
        "reasoning": generation.get("reasoning"),
        "correct": score >= 0.5,
        "score": score,
        "answer_found": generation.get("answer_found", True),
        "reply": generation.get("reply"),
        "meta": dict(example.get("meta") or {}),
    }


def summarize(benchmark: Benchmark, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The project metric's accuracy (mean score, percent), its aggregations and headline, and the two
    figures comparable with published tables.

    ``official`` is the benchmark's own evaluation code's number and breakdown (its
    leaderboard's); ``chart_rvr_code`` is the Chart-RVR authors' code's number (the paper's
    table's); see :mod:`chartrvr_nb.official_scoring`. The project metric is the rule the
    accuracy reward trains on.

    Example:
        >>> from chartrvr_nb.benchmarks import BENCHMARKS
        >>> records = [{"subset": "human", "score": 1.0, "answer_found": True, "prediction": "3%",
        ...             "answer": "3", "meta": {"labels": ["3"]}},
        ...            {"subset": "augmented", "score": 0.0, "answer_found": False, "prediction": "",
        ...             "answer": "Yes", "meta": {"labels": ["Yes"]}}]
        >>> summary = summarize(BENCHMARKS["chartqa"], records)
        >>> summary["accuracy"], summary["subsets"], summary["headline"], summary["headline_value"]
        (50.0, {'augmented': 0.0, 'human': 100.0}, 'subset_mean', 50.0)
        >>> summary["subset_sizes"]
        {'augmented': 1, 'human': 1}
        >>> summary["official"]["value"], summary["chart_rvr_code"]["value"]  # 3% is 0.03 to both
        (0.0, 0.0)
    """
    scores = [float(record["score"]) for record in records]
    summary: dict[str, Any] = {
        "n": len(records),
        "accuracy": 100.0 * sum(scores) / len(scores) if scores else None,
        "answer_found_rate": (
            100.0 * sum(bool(r.get("answer_found", True)) for r in records) / len(records) if records else None
        ),
    }
    for name in benchmark.aggregations:
        summary[name] = AGGREGATIONS[name](list(records))
    if "subsets" in summary:
        sizes: dict[str, int] = {}
        for record in records:
            if record.get("subset") is not None:
                sizes[str(record["subset"])] = sizes.get(str(record["subset"]), 0) + 1
        summary["subset_sizes"] = dict(sorted(sizes.items()))
    summary["headline"] = benchmark.headline
    summary["headline_value"] = summary.get(benchmark.headline)
    summary["official"] = OFFICIAL_SCORERS[benchmark.official](records)
    summary["chart_rvr_code"] = score_chart_rvr_code(records, benchmark.chart_rvr_tolerance)
    return summary


def paired_bootstrap(
    scores: Sequence[float],
    baseline_scores: Sequence[float],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 2025,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Difference of mean scores (percentage points) with a paired bootstrap confidence interval.

    Both models answered the same examples, so each resample draws example indices with
    replacement and takes the difference on those same examples; the interval is the
    percentile interval of the resampled differences. Seeded, so it is reproducible.

    Example:
        >>> result = paired_bootstrap([1, 1, 1, 0] * 25, [1, 0, 0, 0] * 25, n_resamples=200, seed=0)
        >>> result["difference"], result["ci_low"] > 0
        (50.0, True)
    """
    import numpy as np

    ours, base = np.asarray(scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    if ours.shape != base.shape or ours.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty score lists (one per example).")
    rng = np.random.default_rng(seed)
    differences = ours - base
    resampled = []
    chunk = max(1, 2_000_000 // differences.size)  # bound memory on large benchmarks
    for start in range(0, n_resamples, chunk):
        count = min(chunk, n_resamples - start)
        indices = rng.integers(0, differences.size, size=(count, differences.size))
        resampled.append(differences[indices].mean(axis=1))
    samples = np.concatenate(resampled)
    alpha = (1.0 - confidence) / 2.0
    return {
        "difference": float(100.0 * differences.mean()),
        "ci_low": float(100.0 * np.quantile(samples, alpha)),
        "ci_high": float(100.0 * np.quantile(samples, 1.0 - alpha)),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
    }


def paper_reference(vlm_name: str, adapter: str | None) -> str | None:
    """Which of the paper's models a run compares with: Chart-RVR-3B with an adapter, the base 3B without.

    Example:
        >>> paper_reference("qwen2-5-3b", None), paper_reference("qwen2-5-3b", "sanchit97/chart-rvr-3b")
        ('Qwen2.5-VL-3B (direct)', 'Chart-RVR-3B')
        >>> paper_reference("tiny", None) is None
        True
    """
    if vlm_name != "qwen2-5-3b":
        return None
    return CHART_RVR if adapter else QWEN_DIRECT


def _summaries(summary_or_summaries: Any) -> list[Mapping[str, Any]]:
    if isinstance(summary_or_summaries, Mapping):
        if "benchmark" in summary_or_summaries:
            return [summary_or_summaries]
        return list(summary_or_summaries.values())
    return [getattr(item, "summary", item) for item in summary_or_summaries]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


Row = tuple[str, float | None, int | None, bool, str | None]  # metric, value, n, breakdown?, comparison key


def _official_rows(summary: Mapping[str, Any]) -> list[Row]:
    """The rows of the two published-table figures of a summary, the paper's first."""
    chart_rvr, official = summary.get("chart_rvr_code") or {}, summary.get("official") or {}
    sizes = summary.get("subset_sizes") or {}
    label = chart_rvr.get("label", "relaxed accuracy")
    rows: list[Row] = [(f"chart_rvr_code: {label}", chart_rvr.get("value"), chart_rvr.get("n"), False, None)]
    if official:
        rows.append(
            (f"official: {official.get('label', 'accuracy')}", official.get("value"), official.get("n"), False, None)
        )
        breakdown = official.get("breakdown") or {}
        rows.extend((f"official: {key}", value, sizes.get(key), True, None) for key, value in breakdown.items())
        if official.get("rows_official_code_crashes_on"):
            crashes = official["rows_official_code_crashes_on"]
            rows.append(("official: rows its code crashes on (scored as if it had not)", None, crashes, True, None))
    return rows


def _rows(summary: Mapping[str, Any]) -> list[Row]:
    """Every number of a summary as a row: the published-table figures, the project metric, its subsets,
    then the rewards. ``breakdown`` marks the rows :func:`results_table` leaves out without ``breakdown``; the
    comparison key names the paired-bootstrap interval that goes with a row (``accuracy`` or a reward)."""
    from .rewards import REWARD_MAXIMA

    headline, n = summary.get("headline", "accuracy"), summary.get("n")
    label = HEADLINE_LABELS.get(headline, headline)
    value = summary.get("headline_value", summary.get("accuracy"))
    key = "accuracy" if headline == "accuracy" else None
    if "chart_rvr_code" in summary:
        rows = _official_rows(summary) + [(f"project metric: {label}", value, n, False, key)]
    else:  # a summary written before the two figures existed
        rows = [(label, value, n, False, key)]
    if headline != "accuracy":
        rows.append(("accuracy (all examples)", summary.get("accuracy"), n, False, "accuracy"))
    if "acc_plus" in summary and headline != "acc_plus":
        rows.append(("Acc+ (pairs of yes/no questions)", summary["acc_plus"], n, True, None))
    sizes = summary.get("subset_sizes") or {}
    rows.extend(
        (f"subset: {subset}", value, sizes.get(subset), True, None)
        for subset, value in (summary.get("subsets") or {}).items()
    )
    rewards, scored = summary.get("rewards") or {}, summary.get("reward_examples")
    for name, mean in rewards.items():
        maximum = REWARD_MAXIMA.get(name)
        rows.append((f"reward: {name}" + (f" (max {maximum:g})" if maximum else ""), mean, scored, False, name))
    if rewards:
        rows.append(("reward: total", summary.get("total_reward"), scored, False, "total_reward"))
        rows.append(("replies in the full format (%)", summary.get("format_valid_rate"), scored, False, None))
    return rows


def _intervals(summary: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """The paired-bootstrap 95% interval of ours - base, by comparison key (``accuracy`` and each reward)."""
    found = {name: tuple(row["ci95"]) for name, row in (summary.get("reward_comparison") or {}).items()}
    comparison = summary.get("comparison")
    if comparison:
        found["accuracy"] = (comparison["ci_low"], comparison["ci_high"])
    return found


RESULT_COLUMNS = ("benchmark", "protocol", "metric", "n", "ours", "base", "ours - base", "95% CI")


def results_table(summary_or_summaries: Any, breakdown: bool = True) -> pd.DataFrame:
    """Our numbers beside the base model's and the paper's: one row per reported number, per benchmark.

    The first row of each benchmark is ``chart_rvr_code`` (scored as the Chart-RVR authors' code
    scored it), the one the paper's numbers stand beside; then ``official`` (the benchmark's own
    evaluation code: its leaderboard's number) with the breakdown that code prints; then the
    project metric (``project metric: ...``, the rule the accuracy reward trains on) and its subsets;
    then, where the rows carry the training schema's ground truth, each reward's mean (on its own
    scale: ``max`` says the highest it gives), their total and the share of replies in the full format.
    With ``compare_base``, ``base`` is the base model's number on the same examples, ``ours - base`` the
    difference and ``95% CI`` its paired-bootstrap interval (for the accuracy and the rewards). A summary
    written before the two figures existed puts the paper's numbers beside its headline. ``protocol``
    says how the examples were asked (:mod:`chartrvr_nb.protocols`): the paper's numbers are comparable
    only under ``chart-rvr``; a summary written before protocols existed was evaluated under ``project``.

    Args:
        summary_or_summaries: a ``summary.json`` dict, a list of them (or of
            :class:`EvaluationResult`), or a dict of them by name.
        breakdown: also the rows that break a number down (the official code's breakdown, subsets, Acc+);
            without them the table shows what moved at a glance.

    Returns:
        A DataFrame with columns :data:`RESULT_COLUMNS`, then the paper's ``Qwen2.5-VL-3B (direct)`` and
        ``Chart-RVR-3B`` numbers (on the first row) and ``vs paper`` (ours minus the paper's number for the
        same model, when there is one); percentages and rewards rounded to 2 decimals (``summary.json``
        keeps them unrounded).

    Example:
        >>> table = results_table({"benchmark": "chartfc", "model": "qwen2-5-3b", "adapter": None,
        ...                        "n": 4, "accuracy": 75.0, "headline": "accuracy", "headline_value": 75.0,
        ...                        "chart_rvr_code": {"value": 50.0, "n": 4}})
        >>> table[["metric", "ours", "Qwen2.5-VL-3B (direct)", "vs paper"]].values.tolist()
        [['chart_rvr_code: relaxed accuracy', 50.0, 74.4, -24.4], ['project metric: accuracy', 75.0, nan, nan]]
        >>> table["protocol"].tolist()  # a summary from before protocols: evaluated as this project does
        ['project', 'project']
        >>> compared = results_table({"benchmark": "synthetic", "n": 2, "accuracy": 50.0, "headline_value": 50.0,
        ...                           "base": {"n": 2, "accuracy": 0.0, "headline_value": 0.0},
        ...                           "comparison": {"ci_low": 0.0, "ci_high": 100.0}})
        >>> compared[["ours", "base", "ours - base", "95% CI"]].values.tolist()
        [[50.0, 0.0, 50.0, '[+0.00, +100.00]']]
    """
    import pandas as pd

    rows = []
    for summary in _summaries(summary_or_summaries):
        name, protocol = summary["benchmark"], summary.get("protocol", "project")
        paper = BENCHMARKS[name].paper if name in BENCHMARKS else {}
        reference = paper_reference(summary.get("model", ""), summary.get("adapter"))
        base = summary.get("base")
        base_values = {row[0]: row[1] for row in _rows(base)} if base else {}
        intervals = _intervals(summary)
        for position, (metric, value, count, detail, key) in enumerate(_rows(summary)):
            if detail and not breakdown:
                continue
            base_value = base_values.get(metric)
            interval = intervals.get(key) if key else None
            row = {
                "benchmark": name,
                "protocol": protocol,
                "metric": metric,
                "n": count,
                "ours": _round(value),
                "base": _round(base_value),
                "ours - base": _round(value - base_value) if value is not None and base_value is not None else None,
                "95% CI": f"[{interval[0]:+.2f}, {interval[1]:+.2f}]" if interval else None,
            }
            if position == 0:
                row[QWEN_DIRECT], row[CHART_RVR] = paper.get(QWEN_DIRECT), paper.get(CHART_RVR)
                row["vs paper"] = _round(value - paper[reference]) if value is not None and reference in paper else None
            rows.append(row)
    return pd.DataFrame(rows, columns=[*RESULT_COLUMNS, QWEN_DIRECT, CHART_RVR, "vs paper"])


def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``predictions.jsonl`` file (e.g. for ``eval_plots.plot_mistakes``).

    A bad line is an error naming it."""
    from .runfiles import read_jsonl

    return read_jsonl(path, strict=True)
