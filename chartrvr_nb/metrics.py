"""The project's evaluation metrics and the aggregations reported beside them.

A metric takes ``(prediction, example)`` and returns a score in [0, 1]; a benchmark's accuracy is
the mean score, in percent. Relaxed accuracy is :func:`chartrvr_nb.answers.relaxed_match`, the
same function the accuracy reward uses. An aggregation takes a run's records (with their
``score``) and returns a number or a breakdown, in percent. Benchmarks name their metric and
aggregations by key (:data:`METRICS`, :data:`AGGREGATIONS`) in :mod:`chartrvr_nb.benchmarks`;
the published tables' own rules are :mod:`chartrvr_nb.official_scoring`, which ChartQAPro's
metric shares its list and item comparison with, and the aggregations their percent and per-subset rule.

Pure Python: nothing heavy is imported here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

from .answers import relaxed_match
from .official_scoring import (
    chartqapro_items_score,
    chartqapro_trim,
    chartqapro_year_flags,
    percent,
    percent_by_subset,
)

# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def relaxed_score(prediction: str, example: Mapping[str, Any]) -> float:
    """ChartQA relaxed accuracy of one prediction (1.0 or 0.0), via ``answers.relaxed_match``.

    Example:
        >>> relaxed_score("10.4", {"answer": "10"})
        1.0
        >>> relaxed_score("45%", {"answer": "0.45"})
        1.0
    """
    return float(relaxed_match(prediction, example["answer"]))


_YES_WORDS = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def read_yes_no(text: Any) -> str | None:
    """``"yes"`` or ``"no"`` when a reply starts with yes/true or no/false, else None.

    Only the first word counts, so "No, it is not higher" reads as no and "Not sure" as None.

    Example:
        >>> read_yes_no("Yes.")
        'yes'
        >>> read_yes_no(" false")
        'no'
        >>> read_yes_no("Not sure") is None
        True
    """
    match = re.match(r"\W*([A-Za-z]+)", str(text or ""))
    return _YES_WORDS.get(match.group(1).lower()) if match else None


def yes_no_score(prediction: str, example: Mapping[str, Any]) -> float:
    """1.0 when a yes/no reply agrees with a Yes/No gold answer.

    Example:
        >>> yes_no_score("yes, it does", {"answer": "Yes"})
        1.0
        >>> yes_no_score("Maybe", {"answer": "No"})
        0.0
    """
    predicted = read_yes_no(prediction)
    return float(predicted is not None and predicted == read_yes_no(example["answer"]))


def _as_list(text: str) -> list[str] | None:
    """Items of a ``[a, b]`` answer (quoted or not), or None when the text is not a list; never raises.

    Example:
        >>> _as_list("[New York, 'Boston']"), _as_list("[{[1]: 2}]"), _as_list("12")
        (['New York', 'Boston'], ['{[1]: 2}'], None)
    """
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    try:
        parsed = ast.literal_eval(stripped)
        if isinstance(parsed, (list, tuple)):
            return [str(item).strip().strip("'\"").strip() for item in parsed]
    except Exception:  # unquoted items, and lists Python parses but cannot build ([{[1]: 2}]) or print (a huge int)
        return [item.strip().strip("'\"").strip() for item in stripped[1:-1].split(",")]
    return None


CHARTQAPRO_EXACT_TYPES = ("Fact Checking", "Multi Choice")


def chartqapro_score(prediction: str, example: Mapping[str, Any]) -> float:
    """ChartQAPro's relaxed correctness, as its authors define it.

    Answers written as lists (``[a, b]``) are compared item by item and the item scores
    averaged; a missing or extra item scores 0. Each item is compared by exact match
    (case-insensitive) when it is a year (the row's ``Year`` flag says ``YES``) or the question
    is Fact Checking or Multi Choice; otherwise numbers (``%`` stripped) must be within 5% of
    the gold value (exactly 0 when the gold is 0), and text is scored with ANLS (threshold 0.5).
    Trailing dots and newlines are stripped from both sides first.

    The paper specifies exact match for Fact Checking and Multi Choice; the released script
    (vis-nlp/ChartQAPro ``evaluate_predictions.py``) computes that flag but never passes it on,
    so its numbers for those types come from the numeric/ANLS rule instead. We follow the paper.

    Example:
        >>> example = {"answer": "2016", "meta": {"question_type": "Factoid", "year_flags": ["YES"]}}
        >>> chartqapro_score("2017", example)        # years: exact, no 5% tolerance
        0.0
        >>> example = {"answer": "[12, 30%]", "meta": {"question_type": "Factoid", "year_flags": ["NO"]}}
        >>> chartqapro_score("[12.3, 30]", example)
        1.0
        >>> chartqapro_score("[12.3]", example)      # one of two items missing
        0.5
    """
    meta = example.get("meta") or {}
    gold = chartqapro_trim(str(example["answer"]))
    pred = chartqapro_trim(str(prediction or ""))
    gold_items = _as_list(gold) or [gold]
    pred_items = _as_list(pred) or [pred]
    flags = chartqapro_year_flags(meta.get("year_flags"), len(gold_items))
    always_exact = meta.get("question_type") in CHARTQAPRO_EXACT_TYPES
    exact = [
        always_exact or (index < len(flags) and flags[index].strip().upper() == "YES")
        for index in range(len(gold_items))
    ]
    return chartqapro_items_score(gold_items, pred_items, exact)


METRICS: dict[str, Callable[[str, Mapping[str, Any]], float]] = {
    "relaxed": relaxed_score,
    "yes_no": yes_no_score,
    "chartqapro": chartqapro_score,
}


# --------------------------------------------------------------------------------------------
# Aggregations: numbers reported next to the plain accuracy (all in percent)
# --------------------------------------------------------------------------------------------


def by_subset(records: list[Mapping[str, Any]]) -> dict[str, float]:
    """Accuracy of each subset (e.g. ChartQA's human and augmented splits), in percent.

    Example:
        >>> by_subset([{"subset": "human", "score": 1.0}, {"subset": "human", "score": 0.0},
        ...            {"subset": "augmented", "score": 1.0}])
        {'augmented': 100.0, 'human': 50.0}
    """
    return percent_by_subset(records, [float(record["score"]) for record in records])


def subset_mean(records: list[Mapping[str, Any]]) -> float | None:
    """Mean of the per-subset accuracies: ChartQA's headline, the average of human and augmented.

    Example:
        >>> subset_mean([{"subset": "human", "score": 1.0}, {"subset": "human", "score": 0.0},
        ...              {"subset": "augmented", "score": 1.0}])
        75.0
    """
    accuracies = list(by_subset(records).values())
    return sum(accuracies) / len(accuracies) if accuracies else None


def acc_plus(records: list[Mapping[str, Any]]) -> float | None:
    """ChartBench's Acc+: a chart counts only when both of its paired yes/no questions are right.

    Examples carry ``meta["pair"]`` (the chart's id); pairs missing a question (e.g. cut by
    ``--limit``) are left out. None when there is no complete pair.

    Example:
        >>> records = [{"meta": {"pair": 1}, "score": 1.0}, {"meta": {"pair": 1}, "score": 1.0},
        ...            {"meta": {"pair": 2}, "score": 1.0}, {"meta": {"pair": 2}, "score": 0.0}]
        >>> acc_plus(records)
        50.0
    """
    pairs: dict[Any, list[float]] = {}
    for record in records:
        pair = (record.get("meta") or {}).get("pair")
        if pair is not None:
            pairs.setdefault(pair, []).append(float(record["score"]))
    complete = [scores for scores in pairs.values() if len(scores) == 2]
    return percent([float(all(score == 1.0 for score in scores)) for scores in complete])


AGGREGATIONS: dict[str, Callable[[list[Mapping[str, Any]]], Any]] = {
    "subsets": by_subset,
    "subset_mean": subset_mean,
    "acc_plus": acc_plus,
}
