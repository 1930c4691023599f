"""A training run's own sample completions as tables: by step, by prompt group, and what GRPO learns.

The records are ``samples.jsonl`` rows, as ``runfiles.load_samples`` reads them: each completion
with its rewards, its prompt group and, when the run logged it, TRL's advantage. Pure text logic
shared by the samples browser widget, the notebooks and the CLI's ``rewards`` command; pandas is
imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .answers import completion_text
from .inspection import REWARD_COLUMNS, shorten
from .rewards import REWARD_MAXIMA, REWARDS, read_answer

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


def recent_samples(records: Sequence[Mapping[str, Any]], steps: int = 2):
    """The sample completions of the last ``steps`` sampled steps, with their rewards (a DataFrame).

    Example:
        >>> recent_samples([{"step": s, "label": "3", "completion": "c", "rewards": {"format_reward": 2.0}}
        ...                 for s in (0, 4, 8)])["step"].tolist()
        [4, 8]
    """
    import pandas as pd

    kept = sample_steps(records)[-steps:]
    rows = []
    for record in (r for r in records if r.get("step") in kept):
        rewards = {name: round(value, 2) for name, value in sample_rewards(record).items()}
        rows.append(
            {
                "step": record["step"],
                "label": record.get("label"),
                "completion": record.get("completion"),
                "total": round(sum(rewards.values()), 2),
                **rewards,
            }
        )
    return pd.DataFrame(rows)


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
        rows.append(
            {
                "group": record.get("group", 0),
                "sample": index,
                **rewards,
                "total": sum(rewards.values()),
                "advantage": record.get("advantage", math.nan),
                "flag": flags,
                "answer": read_answer(completion_text(record.get("completion", ""))) or "",
                "label": record.get("label"),
                "completion": completion_text(record.get("completion", "")),
            }
        )
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
        [{'group': 0, 'label': '7', 'completions': 2, 'lowest total': 2.0, 'highest total': 3.0,
          'learning signal': 'yes', 'format ok, answer wrong': 1},
         {'group': 1, 'label': '3', 'completions': 2, 'lowest total': 4.0, 'highest total': 4.0,
          'learning signal': 'no: all equal', 'format ok, answer wrong': 0}]
    """
    import pandas as pd

    rows = []
    for group, members in table.groupby("group", sort=True):
        rows.append(
            {
                "group": group,
                "label": members["label"].iloc[0],
                "completions": len(members),
                "lowest total": round(float(members["total"].min()), 3),
                "highest total": round(float(members["total"].max()), 3),
                "learning signal": "no: all equal" if members["flag"].str.contains("no signal").all() else "yes",
                "format ok, answer wrong": int(members["flag"].str.contains("format ok, answer wrong").sum()),
            }
        )
    return pd.DataFrame(rows)


def format_samples(
    records: Sequence[Mapping[str, Any]],
    step: int | None = None,
    width: int = 70,
    rewards: Sequence[str] | None = None,
) -> str:
    """The samples browser as text (headless notebooks, ``python -m chartrvr_nb rewards samples.jsonl``).

    Each prompt group of the step: its question and label, then one line per completion with its
    rewards (``rewards``, default all seven), total, advantage and flags, then the completion cut to
    ``width`` characters. The total is always the training total, the sum of all seven.
    """
    import pandas as pd

    table = samples_table(records, step)
    summary = group_summary(table)
    step = sample_steps(records)[-1] if step is None else step
    lines = [
        f"step {step}: {len(table)} completions in {len(summary)} prompt group(s); "
        f"{int((summary['learning signal'] != 'yes').sum())} without learning signal, "
        f"{int(summary['format ok, answer wrong'].sum())} with full format but a wrong answer"
    ]
    shown_rewards = REWARDS if rewards is None else rewards
    numbers = [name for name in (*shown_rewards, "total", "advantage") if name in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 2):
        for group, members in table.groupby("group", sort=True):
            first = records[int(members["sample"].iloc[0])]
            lines += ["", f"group {group}: {shorten(first.get('query'), width)!r}  label {first.get('label')!r}"]
            shown = members[["sample", *numbers, "answer", "flag"]].copy()
            shown["answer"] = [shorten(text, 16) for text in members["answer"]]
            shown["completion"] = [shorten(text, width) for text in members["completion"]]
            lines.append(shown.to_string(index=False))
    return "\n".join(lines)
