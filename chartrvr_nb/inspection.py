"""Reward inspection: what each reward read from a completion, and completions to start from.

Pure text logic shared by the reward inspector widget, the notebooks and the CLI: score named
completions of one example, explain each reward's score in words (with the rewards' own
``read_*`` functions), build a correct completion for an example plus broken variants that each
fail different rewards, and score a batch of completions (the lines of a JSONL file, read above
this layer by ``runfiles.read_jsonl``). A run's own samples are :mod:`chartrvr_nb.samples`.
pandas is imported inside functions; nothing here touches files, models or a GPU.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .answers import completion_text, count_steps, parse_table, table_similarity
from .prompts import CHART_TYPES, format_completion, table_to_json
from .rewards import (
    FORMAT_PATTERN,
    REWARD_MAXIMA,
    REWARDS,
    accuracy_reward,
    chart_type_reward,
    get_rewards,
    read_answer,
    read_reasoning,
    read_steps_text,
    read_table,
    read_tag_counts,
    read_type,
)

# The dataset columns the rewards read, passed as keyword lists (TRL's reward contract).
REWARD_COLUMNS = ("label", "chart_type", "table", "reasoning")
# Fields of a batch of completions (data.write_demo_batch's) that name a row rather than score it.
BATCH_LABELS = ("example", "variant")


def shorten(text: Any, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters.

    Example:
        >>> shorten("a\\nb  c", 10), shorten("abcdefghijkl", 6)
        ('a b c', 'abcde…')
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reward_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """The reward keyword columns of a list of rows (missing fields are None).

    Example:
        >>> reward_columns([{"label": "7", "chart_type": "bar"}])
        {'label': ['7'], 'chart_type': ['bar'], 'table': [None], 'reasoning': [None]}
    """
    return {name: [row.get(name) for row in rows] for name in REWARD_COLUMNS}


def score_completions(
    completions: Sequence[Any],
    rewards: Sequence[str] | None = None,
    weights: dict[str, float] | None = None,
    **columns,
):
    """Score completions with several rewards at once.

    Args:
        completions: strings or chat message lists.
        rewards: reward names (default: all seven, in ``REWARDS`` order).
        weights: per-reward weights for the total (default 1.0 each, as in training).
        **columns: dataset columns as lists (label, chart_type, table, reasoning).

    Returns:
        A pandas DataFrame: one row per completion, one column per reward, and ``total``.

    Example:
        >>> table = score_completions(["<think>\\n<type>pie</type>\\n<table>{}</table></think>\\n<answer>7</answer>"],
        ...                           rewards=["format", "accuracy"], label=["7"])
        >>> table.to_dict("records")
        [{'format': 2.0, 'accuracy': 1.0, 'total': 3.0}]
    """
    import pandas as pd

    names = list(REWARDS) if rewards is None else list(rewards)
    weights = weights or {}
    unknown_weights = sorted(set(weights) - set(names))
    if unknown_weights:
        raise ValueError(f"Weights given for rewards that are not scored: {unknown_weights}.")
    scores = {name: fn(completions, **columns) for name, fn in zip(names, get_rewards(names))}
    frame = pd.DataFrame(scores, columns=names)
    frame["total"] = sum(frame[name] * weights.get(name, 1.0) for name in names) if names else 0.0
    return frame


def inspect_completion(completion: Any, label: Any = None, chart_type: Any = None, table: Any = None) -> dict:
    """What each reward reads from one completion (its ``read_*`` functions): the pieces behind the scores.

    Example:
        >>> info = inspect_completion(
        ...     "<think>\\n<type>bar</type>\\n<table>{}</table>\\n<step-1>: a\\n</think>\\n<answer>2.</answer>",
        ...     label="2",
        ... )
        >>> info["type"], info["answer"], info["answer_matches_label"], info["steps"]
        ('bar', '2', True, 1)
    """
    text = completion_text(completion)
    reasoning = read_reasoning(text)
    parsed_table = read_table(text)
    return {
        "format_ok": bool(FORMAT_PATTERN.match(text)),
        "tag_counts": read_tag_counts(text),
        "type": read_type(text),
        "type_matches": chart_type_reward([text], chart_type=[chart_type]) == [1.0],
        "table": parsed_table,
        "table_similarity": table_similarity(parsed_table, parse_table(table)),
        "answer": read_answer(text),
        "answer_matches_label": accuracy_reward([text], label=[label]) == [1.0],
        "reasoning_chars": len(reasoning),
        "steps": count_steps(reasoning),
        "process_text": read_steps_text(text),
    }


def reference_steps(reasoning: Any) -> list[str]:
    """The step texts of a ``<step-1>: ... <step-2>: ...`` string.

    Example:
        >>> reference_steps("<step-1>: Read a. <step-2>: Add 1.")
        ['Read a.', 'Add 1.']
    """
    parts = re.split(r"<step-\d+>\s*:?\s*", str(reasoning or ""))
    return [part.strip() for part in parts if part.strip()]


def _wrong_answer(label: Any) -> str:
    """An answer that does not match ``label`` under the relaxed rule (a number at least 100% off).

    Example:
        >>> _wrong_answer("40"), _wrong_answer("-2.5"), _wrong_answer("0"), _wrong_answer("Yes"), _wrong_answer("Oct")
        ('80', '0', '1', 'No', 'none of them')
    """
    text = str(label).strip()
    if text.lower() in ("yes", "no"):
        return "No" if text.lower() == "yes" else "Yes"
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        return "none of them"
    if not math.isfinite(value):
        return "0"
    wrong = value + max(1.0, abs(value))
    return str(int(wrong)) if wrong == int(wrong) and abs(wrong) < 1e15 else repr(wrong)


def example_completions(row: Mapping[str, Any]) -> dict[str, str]:
    """A correct completion for ``row`` and six broken ones, each failing different rewards.

    Returns:
        Name -> completion text, the correct one first.

    Example:
        >>> row = {"label": "7", "chart_type": "bar", "reasoning": "<step-1>: Read 7.",
        ...        "table": {"columns": ["x", "y"], "rows": [["a", "7"]]}}
        >>> list(example_completions(row))  # doctest: +NORMALIZE_WHITESPACE
        ['correct', 'wrong answer', 'wrong chart type', 'broken table JSON', 'steps without markers',
         'answer outside the tags', 'text after the answer']
    """
    chart_type = str(row["chart_type"])
    table = row["table"]
    steps = reference_steps(row.get("reasoning")) or ["Read the value from the chart."]
    label = str(row["label"])
    correct = format_completion(chart_type, table, steps, label)
    other_type = (
        CHART_TYPES[(CHART_TYPES.index(chart_type) + 1) % len(CHART_TYPES)] if chart_type in CHART_TYPES else "bar"
    )
    table_json = table_to_json(table)
    marked_steps = "\n".join(f"<step-{i}>: {step}" for i, step in enumerate(steps, start=1))
    return {
        "correct": correct,
        "wrong answer": format_completion(chart_type, table, steps, _wrong_answer(label)),
        "wrong chart type": format_completion(other_type, table, steps, label),
        "broken table JSON": correct.replace(table_json, table_json[: max(1, len(table_json) - 12)]),
        "steps without markers": correct.replace(marked_steps, " ".join(steps)),
        "answer outside the tags": correct.replace(f"<answer>{label}</answer>", f"The answer is {label}."),
        "text after the answer": correct + "\nI hope this helps!",
    }


def score_examples(completions: Mapping[str, str], row: Mapping[str, Any]):
    """Score named completions of one example with the seven rewards (a DataFrame, one row each)."""
    table = score_completions(list(completions.values()), **reward_columns([row] * len(completions))).round(3)
    table.index = list(completions)
    return table


def explain_completion(completion: Any, row: Mapping[str, Any]):
    """Each reward's score for one completion, and what it read to get there.

    Args:
        completion: the text (or chat messages) to score.
        row: the training example (label, chart_type, table, reasoning).

    Returns:
        A DataFrame with columns reward, score, max and "what it read", plus a total row.
    """
    import pandas as pd

    info = inspect_completion(
        completion, label=row.get("label"), chart_type=row.get("chart_type"), table=row.get("table")
    )
    scores = score_completions([completion], **reward_columns([row])).iloc[0]
    off_counts = {tag: n for tag, n in info["tag_counts"].items() if n != 1}
    parsed = info["table"]
    if isinstance(parsed, dict) and isinstance(parsed.get("columns"), list) and isinstance(parsed.get("rows"), list):
        table_text = (
            f"parsed: {len(parsed['columns'])} columns, {len(parsed['rows'])} rows, "
            f"keys {sorted(parsed)}; match with the true table {info['table_similarity']:.2f}"
        )
    elif parsed is not None:
        table_text = f"parsed, but not a {{columns, rows}} object: {shorten(parsed, 60)}"
    else:
        table_text = "no <table> block that parses as JSON"
    read = {
        "format": "the whole text has the exact layout"
        if info["format_ok"]
        else "layout differs from "
        "<think>\\n<type>…</type>\\n<table>…</table>…</think>\\n<answer>…</answer> (nothing after)",
        "count": "every tag exactly once"
        if not off_counts
        else "not exactly once: " + ", ".join(f"{tag!r} x{n}" for tag, n in off_counts.items()),
        "accuracy": "no <answer> block"
        if info["answer"] is None
        else f"answer {info['answer']!r} vs label {row.get('label')!r}: "
        + ("match" if info["answer_matches_label"] else "no match"),
        "length": f"reasoning of {info['reasoning_chars']} characters (bonus for 71-250), "
        f"{info['steps']} step marker(s)",
        "chart_type": f"type {info['type']!r} vs {row.get('chart_type')!r}",
        "table_style": table_text,
        "process": f"steps {shorten(info['process_text'], 70)!r} vs the reference reasoning"
        if info["process_text"]
        else "no text between </table> and </think>",
    }
    rows = [
        {
            "reward": name,
            "score": round(float(scores[name]), 3),
            "max": "open" if REWARD_MAXIMA[name] is None else REWARD_MAXIMA[name],
            "what it read": read[name],
        }
        for name in REWARDS
    ]
    rows.append({"reward": "total", "score": round(float(scores["total"]), 3), "max": "", "what it read": ""})
    return pd.DataFrame(rows)


def example_summary(row: Mapping[str, Any]) -> str:
    """Question, label, chart type and the reference reasoning, one step per line.

    Example:
        >>> print(example_summary({"query": "Max?", "label": "5", "chart_type": "bar",
        ...                        "reasoning": "<step-1>: Read. <step-2>: Pick 5."}))
        question    Max?
        label       5
        chart type  bar
        reference reasoning:
          <step-1>: Read.
          <step-2>: Pick 5.
    """
    steps = re.split(r"\s+(?=<step-\d+>)", str(row.get("reasoning") or "").strip())
    return "\n".join(
        [
            f"question    {row['query']}",
            f"label       {row['label']}",
            f"chart type  {row['chart_type']}",
            "reference reasoning:",
            *(f"  {step}" for step in steps if step),
        ]
    )


def table_frame(table: Mapping[str, Any]):
    """A ``{"columns": [...], "rows": [[...]]}`` table as a DataFrame (short rows padded).

    Example:
        >>> table_frame({"columns": ["x", "y"], "rows": [["a", "1"], ["b"]]}).values.tolist()
        [['a', '1'], ['b', '']]
    """
    import pandas as pd

    columns = [str(c) for c in table.get("columns", [])]
    rows = [list(row)[: len(columns)] + [""] * (len(columns) - len(row)) for row in table.get("rows", [])]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Batches of completions (a JSONL file read with runfiles.read_jsonl, the CLI's rewards command)
# --------------------------------------------------------------------------------------------


def score_records(records: Sequence[Mapping[str, Any]], rewards: Sequence[str] | None = None):
    """Score the ``completion`` of each record (one line of a batch) against the record's own columns.

    Args:
        records: dicts with ``completion`` and the reward columns (label, chart_type, table,
            reasoning); ``example`` and ``variant`` (:data:`BATCH_LABELS`), when present, label them.
        rewards: reward names (default: all seven).

    Returns:
        A DataFrame: ``example``/``variant`` when the records have them, one column per reward, ``total``.

    Example:
        >>> score_records([{"completion": "<answer>7</answer>", "label": "7", "variant": "bare"}],
        ...               rewards=["format", "accuracy"]).to_dict("records")
        [{'variant': 'bare', 'format': 0.0, 'accuracy': 0.0, 'total': 0.0}]
    """
    table = score_completions([record["completion"] for record in records], rewards=rewards, **reward_columns(records))
    for position, name in enumerate(name for name in BATCH_LABELS if records and name in records[0]):
        table.insert(position, name, [record.get(name) for record in records])
    return table


def mean_rewards(scores):
    """Mean of each reward, per kind of completion when the batch says (``variant``), else overall.

    Example:
        >>> import pandas as pd
        >>> mean_rewards(pd.DataFrame({"variant": ["a", "a", "b"], "format": [2.0, 0.0, 2.0]}))
                 format
        variant
        a           1.0
        b           2.0
    """
    numeric = scores.drop(columns=[name for name in BATCH_LABELS if name in scores.columns])
    if "variant" in scores.columns:
        return numeric.groupby(scores["variant"], sort=False).mean().round(3)
    return numeric.mean().round(3).to_frame("mean").T
