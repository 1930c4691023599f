"""Reward inspection: what each reward read from a completion, and completions to start from.

Pure text logic shared by the reward inspector widget, the notebooks and the CLI: score named
completions of one example, explain each reward's score in words, and build a correct completion
for an example plus broken variants that each fail different rewards. pandas is imported inside
functions; nothing here touches files, models or a GPU.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

from .answers import completion_text, count_steps, extract_answer, extract_between, parse_table, relaxed_match, table_similarity
from .prompts import CHART_TYPES, format_completion, table_to_json
from .rewards import COUNTED_TOKENS, FORMAT_PATTERN, REWARD_MAXIMA, REWARDS, get_rewards

# The dataset columns the rewards read, passed as keyword lists (TRL's reward contract).
REWARD_COLUMNS = ("label", "chart_type", "table", "reasoning")


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
    """What each reward reads from one completion: the pieces behind the scores.

    Example:
        >>> info = inspect_completion("<think>\\n<type>bar</type>\\n<table>{}</table>\\n<step-1>: a\\n</think>\\n<answer>2.</answer>",
        ...                           label="2")
        >>> info["type"], info["answer"], info["answer_matches_label"], info["steps"]
        ('bar', '2', True, 1)
    """
    text = completion_text(completion)
    reasoning = (extract_between(text, "<think>", "</think>") or "").strip()
    table_block = extract_between(text, "<table>", "</table>")
    parsed_table = parse_table(table_block.strip()) if table_block is not None else None
    type_block = extract_between(text, "<type>", "</type>")
    predicted_type = type_block.strip().lower() if type_block is not None else None
    answer = extract_answer(text)
    return {
        "format_ok": bool(FORMAT_PATTERN.match(text)),
        "tag_counts": {token: text.count(token) for token in COUNTED_TOKENS},
        "type": predicted_type,
        "type_matches": predicted_type is not None and isinstance(chart_type, str)
        and predicted_type == chart_type.lower(),
        "table": parsed_table,
        "table_similarity": table_similarity(parsed_table, parse_table(table)),
        "answer": answer,
        "answer_matches_label": bool(answer) and "<think>" in text and label is not None
        and relaxed_match(answer, label),
        "reasoning_chars": len(reasoning),
        "steps": count_steps(reasoning),
        "process_text": (extract_between(text, "</table>", "</think>") or "").strip(),
    }


def _reference_steps(reasoning: Any) -> list[str]:
    """The step texts of a ``<step-1>: ... <step-2>: ...`` string.

    Example:
        >>> _reference_steps("<step-1>: Read a. <step-2>: Add 1.")
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
    steps = _reference_steps(row.get("reasoning")) or ["Read the value from the chart."]
    label = str(row["label"])
    correct = format_completion(chart_type, table, steps, label)
    other_type = CHART_TYPES[(CHART_TYPES.index(chart_type) + 1) % len(CHART_TYPES)] if chart_type in CHART_TYPES else "bar"
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


    info = inspect_completion(completion, label=row.get("label"), chart_type=row.get("chart_type"), table=row.get("table"))
    scores = score_completions([completion], **reward_columns([row])).iloc[0]
    off_counts = {tag: n for tag, n in info["tag_counts"].items() if n != 1}
    parsed = info["table"]
    if isinstance(parsed, dict) and isinstance(parsed.get("columns"), list) and isinstance(parsed.get("rows"), list):
        table_text = (f"parsed: {len(parsed['columns'])} columns, {len(parsed['rows'])} rows, "
                      f"keys {sorted(parsed)}; match with the true table {info['table_similarity']:.2f}")
    elif parsed is not None:
        table_text = f"parsed, but not a {{columns, rows}} object: {shorten(parsed, 60)}"
    else:
        table_text = "no <table> block that parses as JSON"
    read = {
        "format": "the whole text has the exact layout" if info["format_ok"]
        else "layout differs from <think>\\n<type>…</type>\\n<table>…</table>…</think>\\n<answer>…</answer> (nothing after)",
        "count": "every tag exactly once" if not off_counts
        else "not exactly once: " + ", ".join(f"{tag!r} x{n}" for tag, n in off_counts.items()),
        "accuracy": "no <answer> block" if info["answer"] is None
        else f"answer {info['answer']!r} vs label {row.get('label')!r}: "
        + ("match" if info["answer_matches_label"] else "no match"),
        "length": f"reasoning of {info['reasoning_chars']} characters (bonus for 71-250), {info['steps']} step marker(s)",
        "chart_type": f"type {info['type']!r} vs {row.get('chart_type')!r}",
        "table_style": table_text,
        "process": f"steps {shorten(info['process_text'], 70)!r} vs the reference reasoning"
        if info["process_text"] else "no text between </table> and </think>",
    }
    rows = [
        {"reward": name, "score": round(float(scores[name]), 3),
         "max": "open" if REWARD_MAXIMA[name] is None else REWARD_MAXIMA[name], "what it read": read[name]}
        for name in REWARDS
    ]
    rows.append({"reward": "total", "score": round(float(scores["total"]), 3), "max": "", "what it read": ""})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# A training run's own samples (samples.jsonl rows, as runfiles.load_samples returns them)
# --------------------------------------------------------------------------------------------

_FORMAT_MAX = REWARD_MAXIMA["format"]


def sample_rewards(record: Mapping[str, Any]) -> dict[str, float]:
    """A sample's rewards by short name (``format``, not ``format_reward``), in ``REWARDS`` order.

    Example:
        >>> sample_rewards({"rewards": {"accuracy_reward": 1, "format_reward": 2.0}})
        {'format': 2.0, 'accuracy': 1.0}
    """
    given = {str(name).removesuffix("_reward"): value for name, value in (record.get("rewards") or {}).items()}
    return {name: float(given[name]) for name in REWARDS if isinstance(given.get(name), (int, float))}


def sample_steps(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The steps that kept samples, in order.

    Example:
        >>> sample_steps([{"step": 4}, {"step": 0}, {"step": 4}])
        [0, 4]
    """
    return sorted({record["step"] for record in records if isinstance(record.get("step"), int)})


def sample_example(record: Mapping[str, Any]) -> dict[str, Any]:
    """The training example a sample answered, as the reward inspector takes it.

    Example:
        >>> sample_example({"label": "7", "chart_type": "bar", "completion": "...", "rewards": {}})
        {'query': None, 'label': '7', 'chart_type': 'bar', 'table': None, 'reasoning': None}
    """
    return {name: record.get(name) for name in ("query", *REWARD_COLUMNS)}


def samples_table(records: Sequence[Mapping[str, Any]], step: int | None = None):
    """One step's sample completions, grouped by prompt, with what GRPO learns from each group.

    Args:
        records: ``samples.jsonl`` rows (``runfiles.load_samples``).
        step: the step to show (default: the last one that kept samples).

    Returns:
        A DataFrame, one row per completion: ``group``, ``sample`` (its index in ``records``, to
        open it in the reward inspector), the seven rewards, ``total``, ``advantage`` (TRL's, when
        the run logged it), ``flag`` (``no signal``: every completion of the group scored the same
        total, so its advantages are 0 and it teaches nothing; ``format ok, answer wrong``: full
        format reward but accuracy 0), the extracted ``answer``, the ``label`` and the completion.

    Example:
        >>> ok = "<think>\\n<type>bar</type>\\n<table>{}</table></think>\\n<answer>ANSWER</answer>"
        >>> rows = [{"step": 2, "group": 0, "label": "7", "completion": ok.replace("ANSWER", "87"[i]),
        ...          "rewards": {"format_reward": 2.0, "accuracy_reward": float(i)}, "advantage": i - 0.5}
        ...         for i in (0, 1)]
        >>> samples_table(rows)[["group", "total", "advantage", "flag", "answer"]].to_dict("records")
        [{'group': 0, 'total': 2.0, 'advantage': -0.5, 'flag': 'format ok, answer wrong', 'answer': '8'},
         {'group': 0, 'total': 3.0, 'advantage': 0.5, 'flag': '', 'answer': '7'}]
    """
    import pandas as pd

    steps = sample_steps(records)
    if not steps:
        raise ValueError("No samples to show: the run has not reached its first sample_every step yet.")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"No samples at step {step}; the run kept samples at steps {steps}.")
    rows = []
    for index, record in enumerate(records):
        if record.get("step") != step:
            continue
        rewards = sample_rewards(record)
        flags = []
        if rewards.get("format") == _FORMAT_MAX and rewards.get("accuracy") == 0:
            flags.append("format ok, answer wrong")
        rows.append({
            "group": record.get("group", 0),
            "sample": index,
            **rewards,
            "total": sum(rewards.values()),
            "advantage": record.get("advantage", math.nan),
            "flag": flags,
            "answer": extract_answer(completion_text(record.get("completion", ""))) or "",
            "label": record.get("label"),
            "completion": completion_text(record.get("completion", "")),
        })
    frame = pd.DataFrame(rows)
    spread = frame.groupby("group")["total"].transform(lambda totals: totals.max() - totals.min())
    no_signal = (spread < 1e-6) & (frame.groupby("group")["total"].transform("size") > 1)
    frame["flag"] = [
        ", ".join((["no signal"] if equal else []) + flags) for equal, flags in zip(no_signal, frame["flag"])
    ]
    return frame


def group_summary(table):
    """Per prompt group of :func:`samples_table`: its label, size, total reward range and flags.

    Example:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"group": [0, 0, 1, 1], "label": ["7", "7", "3", "3"], "total": [2.0, 3.0, 4.0, 4.0],
        ...                       "flag": ["format ok, answer wrong", "", "no signal", "no signal"]})
        >>> group_summary(table).to_dict("records")
        [{'group': 0, 'label': '7', 'completions': 2, 'lowest total': 2.0, 'highest total': 3.0, 'learning signal': 'yes', 'format ok, answer wrong': 1},
         {'group': 1, 'label': '3', 'completions': 2, 'lowest total': 4.0, 'highest total': 4.0, 'learning signal': 'no: all equal', 'format ok, answer wrong': 0}]
    """
    import pandas as pd

    rows = []
    for group, members in table.groupby("group", sort=True):
        rows.append({
            "group": group,
            "label": members["label"].iloc[0],
            "completions": len(members),
            "lowest total": round(float(members["total"].min()), 3),
            "highest total": round(float(members["total"].max()), 3),
            "learning signal": "no: all equal" if members["flag"].str.contains("no signal").all() else "yes",
            "format ok, answer wrong": int(members["flag"].str.contains("format ok, answer wrong").sum()),
        })
    return pd.DataFrame(rows)


def format_samples(records: Sequence[Mapping[str, Any]], step: int | None = None, width: int = 70) -> str:
    """The samples browser as text (headless notebooks, ``python -m chartrvr_nb rewards samples.jsonl``).

    Each prompt group of the step: its question and label, then one line per completion with its
    seven rewards, total, advantage and flags, then the completion cut to ``width`` characters.
    """
    import pandas as pd

    table = samples_table(records, step)
    summary = group_summary(table)
    step = sample_steps(records)[-1] if step is None else step
    lines = [f"step {step}: {len(table)} completions in {len(summary)} prompt group(s); "
             f"{int((summary['learning signal'] != 'yes').sum())} without learning signal, "
             f"{int(summary['format ok, answer wrong'].sum())} with full format but a wrong answer"]
    numbers = [name for name in (*REWARDS, "total", "advantage") if name in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 2):
        for group, members in table.groupby("group", sort=True):
            first = records[int(members["sample"].iloc[0])]
            lines += ["", f"group {group}: {shorten(first.get('query'), width)!r}  label {first.get('label')!r}"]
            shown = members[["sample", *numbers, "answer", "flag"]].copy()
            shown["answer"] = [shorten(text, 16) for text in members["answer"]]
            shown["completion"] = [shorten(text, width) for text in members["completion"]]
            lines.append(shown.to_string(index=False))
    return "\n".join(lines)
