"""The seven Chart-RVR rewards, in TRL's reward-function contract.

Each reward is ``fn(completions, **kwargs) -> list[float]``: ``completions`` are strings or chat
message lists, and dataset columns (``label``, ``chart_type``, ``table``, ``reasoning``) arrive as
lists in ``kwargs``, one entry per completion. Scales are those of the authors' code (grpo_utils.py at
sanchit97/chartrl@83c4406, not the paper's text), so logs read like the
original's. What a reward reads from a completion is one of the ``read_*`` functions, the same
ones :mod:`chartrvr_nb.inspection` explains scores with; when TRL passes ``log_extra`` (its
GRPOTrainer does), a reward also logs what it read as columns of TRL's completions table. Rewards
are pure apart from the process reward's embedder (:mod:`chartrvr_nb.embedding`): they never raise
on any text, never print, and never mutate their inputs.

Defects of the original reward code that these definitions fix on purpose: a negative label made
every number correct and label 0 could never be matched (both fixed in ``answers.relaxed_match``);
an unparseable table was scored with the previous completion's table (every completion is parsed
on its own here); the similarity model was put on CUDA at import and encoded one text at a time
(see :mod:`chartrvr_nb.embedding`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from . import embedding
from .answers import (
    completion_text,
    count_steps,
    extract_answer,
    extract_between,
    parse_table,
    relaxed_match,
    table_similarity,
)

FORMAT_PATTERN = re.compile(
    r"^<think>\n<type>.*?</type>\n<table>.*?</table>.*?</think>\n<answer>.*?</answer>$", re.DOTALL
)
COUNTED_TOKENS = (
    "<think>",
    "</think>",
    "<type>",
    "</type>",
    "<table>",
    "</table>",
    "<answer>",
    "</answer>",
    "<think>\n<type>",
    "</type>\n<table>",
)


# --------------------------------------------------------------------------------------------
# What the rewards read from a completion's text
# --------------------------------------------------------------------------------------------


def read_tag_counts(text: str) -> dict[str, int]:
    """How often each counted tag (and each tag pair that must touch) occurs.

    Example:
        >>> read_tag_counts("<answer>1</answer><answer>")["<answer>"]
        2
    """
    return {token: text.count(token) for token in COUNTED_TOKENS}


def read_type(text: str) -> str | None:
    """The chart type the last ``<type>`` block names, stripped and lowercased; None without one.

    Example:
        >>> read_type("<type> Bar </type>"), read_type("bar")
        ('bar', None)
    """
    block = extract_between(text, "<type>", "</type>")
    return None if block is None else block.strip().lower()


def read_table(text: str) -> Any:
    """The last ``<table>`` block parsed as JSON (numbers kept as written); None when missing or unparseable.

    Example:
        >>> read_table('<table>{"rows": [[1.50]]}</table>'), read_table("<table>{oops</table>")
        ({'rows': [['1.50']]}, None)
    """
    block = extract_between(text, "<table>", "</table>")
    return None if block is None else parse_table(block.strip())


def read_answer(text: str) -> str | None:
    """The final answer: the last ``<answer>`` block, stripped, trailing dots removed; None without one.

    Example:
        >>> read_answer("<think></think><answer> 10.3. </answer>")
        '10.3'
    """
    return extract_answer(text)


def read_reasoning(text: str) -> str:
    """The last ``<think>`` block, stripped; empty when there is none.

    Example:
        >>> read_reasoning("<think> a <step-1> </think><answer>1</answer>"), read_reasoning("none")
        ('a <step-1>', '')
    """
    return (extract_between(text, "<think>", "</think>") or "").strip()


def read_steps_text(text: str) -> str:
    """The reasoning steps: after the last ``</table>`` up to the next ``</think>``, stripped.

    Example:
        >>> read_steps_text("<table>{}</table>\\n<step-1>: 5 is the max\\n</think>")
        '<step-1>: 5 is the max'
    """
    return (extract_between(text, "</table>", "</think>") or "").strip()


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]


def _column(values: Any, n: int) -> list:
    """A dataset column as a list of length ``n``: a single value repeated; missing or short columns
    padded with None."""
    if isinstance(values, (str, bytes, dict)) or values is None:
        values = [values] * n if values is not None else []
    values = list(values)[:n]
    return values + [None] * (n - len(values))


def _log(log_extra: Any, column: str, values: list) -> None:
    """Hand what a reward read to TRL's completions table, when TRL passed its ``log_extra``."""
    if callable(log_extra):
        log_extra(column, values)


# --------------------------------------------------------------------------------------------
# The seven rewards
# --------------------------------------------------------------------------------------------


def format_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    """2.0 when the whole completion has the exact Chart-RVR layout, else 0.0.

    It reads the whole text, so it logs nothing beyond its score.

    Args:
        completions: strings or chat message lists.

    Returns:
        One float per completion.

    Example:
        >>> good = '<think>\\n<type>bar</type>\\n<table>{}</table>\\n<step-1>: x\\n</think>\\n<answer>3</answer>'
        >>> format_reward([good, good + "\\n", "<answer>3</answer>"])
        [2.0, 2.0, 0.0]
    """
    return [2.0 if FORMAT_PATTERN.match(text) else 0.0 for text in _texts(completions)]


def count_reward(completions: Sequence[Any], log_extra: Any = None, **kwargs) -> list[float]:
    """2.0 when each tag (and the two tag pairs that must touch) occurs exactly once, else 0.0.

    Logs ``tags_not_once``: the tags it found a different number of times (``'<answer>' x2``).

    Example:
        >>> one = '<think>\\n<type>bar</type>\\n<table>{}</table>\\n</think>\\n<answer>3</answer>'
        >>> count_reward([one, one + "<answer>"])
        [2.0, 0.0]
    """
    counts = [read_tag_counts(text) for text in _texts(completions)]
    off = [{tag: n for tag, n in found.items() if n != 1} for found in counts]
    _log(log_extra, "tags_not_once", [", ".join(f"{tag!r} x{n}" for tag, n in tags.items()) for tags in off])
    return [0.0 if tags else 2.0 for tags in off]


def accuracy_reward(
    completions: Sequence[Any], label: Sequence[Any] | None = None, log_extra: Any = None, **kwargs
) -> list[float]:
    """1.0 when the ``<answer>`` relaxed-matches the label (ChartQA's 5% rule), else 0.0.

    The completion must contain both ``<think>`` and ``<answer>``; the answer is
    :func:`read_answer`'s. Logs ``answer``: the answer compared (None when there was none).

    Example:
        >>> accuracy_reward(["<think></think><answer>10.3.</answer>", "<answer>10</answer>"],
        ...                 label=["10", "10"])
        [1.0, 0.0]
        >>> accuracy_reward(["<think></think><answer>-5</answer>"], label=["-7"])
        [0.0]
    """
    texts = _texts(completions)
    answers = [read_answer(text) if "<think>" in text else None for text in texts]
    _log(log_extra, "answer", answers)
    return [
        1.0 if answer and target is not None and relaxed_match(answer, target) else 0.0
        for answer, target in zip(answers, _column(label, len(texts)))
    ]


def length_reward(completions: Sequence[Any], log_extra: Any = None, **kwargs) -> list[float]:
    """Reasoning of a useful length and in steps: up to 1.0 + 1.5.

    ``r`` is :func:`read_reasoning`'s ``<think>`` block: +1.0 when 70 < len(r) <= 250, plus
    min(0.25 * (number of ``<step-`` in r + 1), 1.5). Logs ``reasoning_chars`` and ``step_markers``.

    Example:
        >>> length_reward(["<think>" + "x" * 100 + "<step-1><step-2></think>", "no think"])
        [1.75, 0.25]
    """
    reasonings = [read_reasoning(text) for text in _texts(completions)]
    steps = [count_steps(reasoning) for reasoning in reasonings]
    _log(log_extra, "reasoning_chars", [len(reasoning) for reasoning in reasonings])
    _log(log_extra, "step_markers", steps)
    return [
        (1.0 if 70 < len(reasoning) <= 250 else 0.0) + min(0.25 * (count + 1), 1.5)
        for reasoning, count in zip(reasonings, steps)
    ]


def chart_type_reward(
    completions: Sequence[Any], chart_type: Sequence[Any] | None = None, log_extra: Any = None, **kwargs
) -> list[float]:
    """1.0 when the ``<type>`` block names the chart's type (case-insensitive), else 0.0.

    Logs ``type``: :func:`read_type`'s reading.

    Example:
        >>> chart_type_reward(["<type> Bar </type>", "<type>pie</type>", "bar"], chart_type=["bar"] * 3)
        [1.0, 0.0, 0.0]
    """
    texts = _texts(completions)
    predicted = [read_type(text) for text in texts]
    _log(log_extra, "type", predicted)
    return [
        1.0 if guess is not None and isinstance(truth, str) and guess == truth.lower() else 0.0
        for guess, truth in zip(predicted, _column(chart_type, len(texts)))
    ]


def table_style_reward(
    completions: Sequence[Any], table: Sequence[Any] | None = None, log_extra: Any = None, **kwargs
) -> list[float]:
    """How well the ``<table>`` block transcribes the chart's data table (open-ended scale).

    +0.5 if :func:`read_table` parses the block (a ```json fence wins; numbers kept as written),
    plus ``answers.table_similarity`` against the ground truth, plus 0.25 when the keys are exactly
    ``columns`` and ``rows``. An unparseable table scores 0. Logs ``table_similarity`` (None for
    an unparseable table).

    Example:
        >>> truth = {"columns": ["x", "y"], "rows": [["a", "1"]]}
        >>> table_style_reward(['<table>{"columns": ["x", "y"], "rows": [["a", 1]]}</table>',
        ...                     '<table>{"columns": </table>'], table=[truth, truth])
        [2.25, 0.0]
    """
    texts = _texts(completions)
    parsed = [read_table(text) for text in texts]
    similarities = [
        None if found is None else table_similarity(found, parse_table(truth))
        for found, truth in zip(parsed, _column(table, len(texts)))
    ]
    _log(log_extra, "table_similarity", similarities)
    return [
        0.0
        if similarity is None
        else 0.5 + similarity + (0.25 if isinstance(found, dict) and set(found) == {"columns", "rows"} else 0.0)
        for found, similarity in zip(parsed, similarities)
    ]


def process_reward(
    completions: Sequence[Any], reasoning: Sequence[Any] | None = None, log_extra: Any = None, **kwargs
) -> list[float]:
    """Cosine similarity between the completion's reasoning steps and the reference reasoning.

    The steps are :func:`read_steps_text`'s. Completions without steps, or rows without a
    reference, score 0. All completions of a call are encoded together and each distinct
    reference once (the G completions of a prompt share one; see :mod:`chartrvr_nb.embedding`).
    Logs ``steps_text``: the steps compared.

    Example:
        >>> process_reward(["<table>{}</table><step-1>: 5 is the max</think>"], reasoning=[""])
        [0.0]
    """
    texts = _texts(completions)
    references = _column(reasoning, len(texts))
    steps = [read_steps_text(text) for text in texts]
    _log(log_extra, "steps_text", steps)
    scored = [i for i, (s, r) in enumerate(zip(steps, references)) if s and isinstance(r, str) and r.strip()]
    scores = [0.0] * len(texts)
    if not scored:
        return scores
    step_vectors = embedding.embed_texts([steps[i] for i in scored])
    reference_vectors = embedding.reference_embeddings([references[i] for i in scored])
    for i, vector in zip(scored, step_vectors):
        similarity = float(vector @ reference_vectors[references[i]])
        scores[i] = similarity if math.isfinite(similarity) else 0.0
    return scores


RewardFn = Callable[..., list]

REWARDS: dict[str, RewardFn] = {
    "format": format_reward,
    "count": count_reward,
    "accuracy": accuracy_reward,
    "length": length_reward,
    "chart_type": chart_type_reward,
    "table_style": table_style_reward,
    "process": process_reward,
}
# The highest score each reward can give (table_style has no fixed maximum).
REWARD_MAXIMA: dict[str, float | None] = {
    "format": 2.0,
    "count": 2.0,
    "accuracy": 1.0,
    "length": 2.5,
    "chart_type": 1.0,
    "table_style": None,
    "process": 1.0,
}


# The lowest score each reward can give: process is a cosine similarity; the others start at 0.
REWARD_MINIMA: dict[str, float] = {name: 0.0 for name in REWARDS} | {"process": -1.0}


def get_rewards(names: Sequence[str] | None = None) -> list[RewardFn]:
    """Reward functions by name, in the given order (all seven by default).

    Example:
        >>> [f.__name__ for f in get_rewards(["format", "accuracy"])]
        ['format_reward', 'accuracy_reward']
    """
    names = list(REWARDS) if names is None else list(names)
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"Unknown reward(s) {unknown}. Choose from: {', '.join(REWARDS)}.")
    return [REWARDS[n] for n in names]
