"""Scoring evaluation answers and summarising them: per-example records, the benchmark's
aggregations and headline, the paired bootstrap, and the table of our numbers beside the paper's.

Pure functions over records (dicts); the metrics themselves are declared per benchmark in
:mod:`chartrvr_nb.benchmarks`. numpy and pandas are imported inside functions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .benchmarks import AGGREGATIONS, BENCHMARKS, CHART_RVR, METRICS, QWEN_DIRECT, Benchmark

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import pandas as pd

BOOTSTRAP_RESAMPLES = 1000


BOOTSTRAP_RESAMPLES = 1000


HEADLINE_LABELS = {
    "accuracy": "accuracy",
    "subset_mean": "accuracy (mean of subsets)",
    "acc_plus": "Acc+",
}


def score_example(example: Mapping[str, Any], prediction: str) -> float:
    """Score one prediction with the example's metric (see ``benchmarks.METRICS``).

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
    """Accuracy (mean score, percent), the benchmark's aggregations, and the headline number.

    Example:
        >>> from chartrvr_nb.benchmarks import BENCHMARKS
        >>> records = [{"subset": "human", "score": 1.0, "answer_found": True},
        ...            {"subset": "augmented", "score": 0.0, "answer_found": False}]
        >>> summary = summarize(BENCHMARKS["chartqa"], records)
        >>> summary["accuracy"], summary["subsets"], summary["headline"], summary["headline_value"]
        (50.0, {'augmented': 0.0, 'human': 100.0}, 'subset_mean', 50.0)
        >>> summary["subset_sizes"]
        {'augmented': 1, 'human': 1}
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


def results_table(summary_or_summaries: Any) -> pd.DataFrame:
    """Our numbers beside the paper's: one row per reported number, per benchmark.

    Args:
        summary_or_summaries: a ``summary.json`` dict, a list of them (or of
            :class:`EvaluationResult`), or a dict of them by name.

    Returns:
        A DataFrame with columns ``benchmark``, ``metric``, ``n``, ``ours``, the paper's
        ``Qwen2.5-VL-3B (direct)`` and ``Chart-RVR-3B`` numbers (on the headline row), and
        ``vs paper`` (ours minus the paper's number for the same model, when there is one);
        numbers in percent, rounded to 2 decimals (``summary.json`` keeps them unrounded).

    Example:
        >>> table = results_table({"benchmark": "chartfc", "model": "qwen2-5-3b", "adapter": None,
        ...                        "n": 4, "accuracy": 75.0, "headline": "accuracy", "headline_value": 75.0})
        >>> table[["benchmark", "metric", "ours", "Qwen2.5-VL-3B (direct)", "vs paper"]].values.tolist()
        [['chartfc', 'accuracy', 75.0, 74.4, 0.6]]
    """
    import pandas as pd

    rows = []
    for summary in _summaries(summary_or_summaries):
        name = summary["benchmark"]
        paper = BENCHMARKS[name].paper if name in BENCHMARKS else {}
        reference = paper_reference(summary.get("model", ""), summary.get("adapter"))
        headline = summary.get("headline", "accuracy")
        ours = summary.get("headline_value", summary.get("accuracy"))
        rows.append(
            {
                "benchmark": name,
                "metric": HEADLINE_LABELS.get(headline, headline),
                "n": summary.get("n"),
                "ours": _round(ours),
                QWEN_DIRECT: paper.get(QWEN_DIRECT),
                CHART_RVR: paper.get(CHART_RVR),
                "vs paper": _round(ours - paper[reference]) if ours is not None and reference in paper else None,
            }
        )
        n = summary.get("n")
        extras = []  # (metric, value, number of examples behind it)
        if headline != "accuracy":
            extras.append(("accuracy (all examples)", summary.get("accuracy"), n))
        if "acc_plus" in summary and headline != "acc_plus":
            extras.append(("Acc+ (pairs of yes/no questions)", summary["acc_plus"], n))
        sizes = summary.get("subset_sizes") or {}
        for subset, value in (summary.get("subsets") or {}).items():
            extras.append((f"subset: {subset}", value, sizes.get(subset)))
        comparison = summary.get("comparison")
        if comparison:
            extras.append(("base model (same examples)", summary.get("base", {}).get("accuracy"), n))
            extras.append(("adapter - base", comparison["difference"], n))
        rows.extend(
            {"benchmark": name, "metric": metric, "n": count, "ours": _round(value)} for metric, value, count in extras
        )
    columns = ["benchmark", "metric", "n", "ours", QWEN_DIRECT, CHART_RVR, "vs paper"]
    return pd.DataFrame(rows, columns=columns)


def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``predictions.jsonl`` file (e.g. for ``plots.plot_mistakes``)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
