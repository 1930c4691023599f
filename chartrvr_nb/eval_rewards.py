"""The seven training rewards scored on evaluation replies: per example, their means, and comparisons.

Where an evaluation's rows carry the training schema's ground truth (synthetic charts always do),
:func:`reward_scores` scores each reply with every reward, :func:`reward_summary` gives their means beside the
accuracy, and :func:`compare_rewards` compares two passes over the same examples (before and after training,
or the base model and the adapter) per reward with a paired-bootstrap 95% interval of the gain. The rewards
themselves are :mod:`chartrvr_nb.rewards`; the bootstrap :func:`chartrvr_nb.eval_results.paired_bootstrap`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .benchmarks import GROUND_TRUTH_FIELDS
from .eval_results import paired_bootstrap

# The ground-truth field each reward compares with; the others need only the reply.
REWARD_FIELDS = {"accuracy": "answer", "chart_type": "chart_type", "table_style": "table", "process": "reasoning"}


def _ground_truth(record: Mapping[str, Any], name: str) -> Any:
    return record.get("answer") if name == "answer" else (record.get("meta") or {}).get(name)


def reward_scores(records: Sequence[Mapping[str, Any]]) -> list[dict[str, float | None]]:
    """The seven training rewards of each record's reply, scored against the record's ground truth.

    A record carries ground truth when its ``meta`` holds the training schema's ``chart_type``,
    ``table`` or ``reasoning`` (synthetic rows always do). A reward whose field a record lacks is
    ``None`` for it, and records without any ground truth get ``{}``.

    Example:
        >>> reply = '<think>\\n<type>bar</type>\\n<table>{}</table>\\n</think>\\n<answer>7</answer>'
        >>> scores = reward_scores([{"reply": reply, "answer": "7", "meta": {"chart_type": "pie"}}])
        >>> scores[0]["format"], scores[0]["accuracy"], scores[0]["chart_type"], scores[0]["table_style"]
        (2.0, 1.0, 0.0, None)
    """
    from .rewards import REWARDS

    scored = [i for i, r in enumerate(records) if any(_ground_truth(r, f) is not None for f in GROUND_TRUTH_FIELDS)]
    scores: list[dict[str, float | None]] = [{} for _ in records]
    if not scored:
        return scores
    replies = [records[i].get("reply") or "" for i in scored]
    columns = {
        "label": [_ground_truth(records[i], "answer") for i in scored],
        **{field: [_ground_truth(records[i], field) for i in scored] for field in GROUND_TRUTH_FIELDS},
    }
    for name, reward in REWARDS.items():
        values = reward(replies, **columns)
        field = REWARD_FIELDS.get(name)
        for i, value in zip(scored, values):
            scores[i][name] = None if field and _ground_truth(records[i], field) is None else float(value)
    return scores


def reward_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each reward, their total, and the format-valid rate over records with ground truth.

    These are the explainability figures beside accuracy: did the type, the table and the
    reasoning improve, not only the answer. Empty when no record carries ground truth.

    Returns:
        ``{"reward_examples", "rewards": {name: mean}, "total_reward", "format_valid_rate"}``;
        ``total_reward`` (the sum of the seven) only over records with every field, else ``None``;
        ``format_valid_rate`` in percent (the format reward's full 2.0).

    Example:
        >>> reply = '<think>\\n<type>bar</type>\\n<table>{}</table>\\n</think>\\n<answer>7</answer>'
        >>> summary = reward_summary([{"reply": reply, "answer": "7", "meta": {"chart_type": "bar"}},
        ...                           {"reply": "7", "answer": "7", "meta": {"chart_type": "bar"}}])
        >>> summary["reward_examples"], summary["rewards"]["chart_type"], summary["format_valid_rate"]
        (2, 0.5, 50.0)
    """
    from .rewards import REWARD_MAXIMA

    scores = [s for s in reward_scores(records) if s]
    if not scores:
        return {}
    means = {}
    for name in REWARD_MAXIMA:
        values = [s[name] for s in scores if s.get(name) is not None]
        means[name] = sum(values) / len(values) if values else None
    complete = [sum(s.values()) for s in scores if all(v is not None for v in s.values())]
    return {
        "reward_examples": len(scores),
        "rewards": means,
        "total_reward": sum(complete) / len(complete) if complete else None,
        "format_valid_rate": 100.0 * sum(s["format"] == REWARD_MAXIMA["format"] for s in scores) / len(scores),
    }


def total_rewards(scores: Sequence[Mapping[str, float | None]]) -> list[float]:
    """Each example's total reward: the sum of the seven (a missing reward counts 0).

    Example:
        >>> total_rewards([{"format": 2.0, "accuracy": 1.0}, {"format": 0.0, "accuracy": None}])
        [3.0, 0.0]
    """
    return [sum(value or 0.0 for value in score.values()) for score in scores]


def compare_rewards(
    before: Sequence[Mapping[str, float | None]], after: Sequence[Mapping[str, float | None]], seed: int = 2025
) -> dict[str, dict[str, Any]]:
    """Per reward and for the total: mean before, mean after, and the 95% paired-bootstrap
    interval of the gain (the same examples, resampled together).

    Args:
        before / after: per-example reward scores (:func:`reward_scores`) on the same examples: before and
            after training, or the base model and the adapter.
        seed: the bootstrap's seed.

    Returns:
        ``{name: {"before", "after", "gain", "ci95": [low, high]}}`` for ``total_reward`` and each reward.

    Example:
        >>> before = [{"format": 0.0, "chart_type": 0.0}, {"format": 2.0, "chart_type": 0.0}] * 20
        >>> after = [{"format": 2.0, "chart_type": 1.0}, {"format": 2.0, "chart_type": 0.0}] * 20
        >>> metrics = compare_rewards(before, after, seed=0)
        >>> metrics["total_reward"]["before"], metrics["total_reward"]["after"], metrics["format"]["gain"]
        (1.0, 2.5, 1.0)
        >>> metrics["chart_type"]["ci95"][0] > 0
        True
    """
    from .rewards import REWARDS

    if len(before) != len(after) or not before:
        raise ValueError("compare_rewards needs the same, non-empty list of examples scored before and after.")
    columns = {"total_reward": (total_rewards(before), total_rewards(after))}
    for name in REWARDS:
        columns[name] = ([s.get(name) or 0.0 for s in before], [s.get(name) or 0.0 for s in after])
    metrics = {}
    for name, (old, new) in columns.items():
        # paired_bootstrap reports score differences in percentage points; rewards keep their scale.
        gain = paired_bootstrap(new, old, seed=seed)
        metrics[name] = {
            "before": sum(old) / len(old),
            "after": sum(new) / len(new),
            "gain": gain["difference"] / 100.0,
            "ci95": [gain["ci_low"] / 100.0, gain["ci_high"] / 100.0],
        }
    return metrics
