"""The offline tiny Qwen2.5-VL: its tokenizer, configuration and processor, built and cached once.

``tiny`` is a real Qwen2.5-VL of about 0.2M parameters, built by code with no download: random
weights, a byte-level BPE tokenizer trained locally on synthetic chart text (wrapped as Qwen2.5's,
:mod:`chartrvr_nb.qwen_tokenizer`), the Qwen2.5-VL chat template and an image processor bounded to
224x224 pixels. It is saved once to a cache folder and then loaded through ``AutoProcessor`` /
``AutoModelForImageTextToText`` exactly like the 3B model (see
:func:`chartrvr_nb.models.load_model_and_processor`), so the smoke preset exercises the same code
path as a real run. A short supervised warm start, part of the build (:mod:`chartrvr_nb.warm_start`),
teaches it the answer format so the format and count rewards are not stuck at zero in a GRPO smoke
run. ``tiny-learn`` is the same model with another warm-start recipe (its own cache folder) and a
second phase that teaches the recipe's choices their odds, checked on validation charts
(:func:`chartrvr_nb.starting_point.teach_choices`).

Top-level imports stay light: torch, transformers and tokenizers are imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import starting_point
from .qwen_tokenizer import QWEN2_5_ADDED_TOKENS, QWEN2_5_VL_CHAT_TEMPLATE, qwen2_5_tokenizer
from .warm_start import (
    WARM_START_BATCH,
    WARM_START_LR,
    WARM_START_ROWS,
    WARM_START_STEPS,
    TinyRecipe,
    encode_examples,
    get_recipe,
    synthetic_examples,
    warm_start,
)

logger = logging.getLogger(__name__)

# The tiny model. A saved build whose recipe (``_tiny_recipe``) differs is rebuilt; bump
# TINY_MODEL_VERSION, which names the cache folder, for changes the recipe does not capture.
TINY_MODEL_VERSION = "tiny-qwen2.5-vl-v1"
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224
TINY_BPE_SIZE = 1024  # at most this many byte-level BPE entries: embeddings dominate the parameters
TINY_SEED = 1234
_BUILD_INFO = "build_info.json"  # written last inside the temporary folder: marks a complete build


def tiny_model_dir(cache_dir: str | os.PathLike | None = None, name: str = "tiny") -> Path:
    """Where a tiny model lives: ``<cache>/tiny-qwen2.5-vl-v1`` (its variants beside it).

    The cache is ``cache_dir``, else :func:`chartrvr_nb.data.cache_root`.

    Example:
        >>> tiny_model_dir("/tmp/cache").as_posix()
        '/tmp/cache/tiny-qwen2.5-vl-v1'
        >>> tiny_model_dir("/tmp/cache", "tiny-learn").name
        'tiny-qwen2.5-vl-learn-v2'
    """
    from .data import cache_root

    return Path(cache_dir or cache_root()).expanduser() / (get_recipe(name).folder or TINY_MODEL_VERSION)


def _tokenizer_corpus(count: int = 1500) -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts, and what a smoke run shows or asks of it."""
    from .prompts import PROMPT_STYLES
    from .synthetic import synthetic_completion

    corpus = [*PROMPT_STYLES.values(), "You are a helpful assistant."] * 20
    for example in synthetic_examples(count, TINY_SEED):
        corpus += [example["query"], example["reasoning"], synthetic_completion(example)]
    return corpus


def build_tiny_tokenizer():
    """A ``Qwen2Tokenizer`` with a byte-level BPE trained here on synthetic chart text.

    The BPE vocabulary comes first, then Qwen2.5's added tokens in their usual order; the end of
    turn ``<|im_end|>`` is the eos token and ``<|endoftext|>`` pads, as in Qwen2.5-VL-Instruct.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    # Train with exactly the normaliser and pre-tokeniser Qwen2Tokenizer will use.
    reference = Qwen2Tokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = reference.normalizer
    bpe.pre_tokenizer = reference.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer)
    vocab = bpe.get_vocab()
    merges = [tuple(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    for token, _ in QWEN2_5_ADDED_TOKENS:
        vocab[token] = len(vocab)
    return qwen2_5_tokenizer(vocab, merges)


def _tiny_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN2_5_ADDED_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # padded like Qwen's, to a multiple of 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            # mrope sections (temporal, height, width) must sum to head_dim / 2 = 64 / 4 / 2.
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _tiny_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )


def _tiny_recipe(name: str = "tiny") -> dict[str, Any]:
    """What decides a tiny model's weights; a saved build with a different recipe is rebuilt."""
    recipe = get_recipe(name)
    variation = {  # only a variant's build info names these, so the default build stays current
        key: list(value) if isinstance(value, tuple) else value  # as build_info.json reads back
        for key, value in dataclasses.asdict(recipe).items()
        if value != getattr(TinyRecipe, key)
    }
    if recipe.teaches_choices:  # the second phase and the checks that decide its rounds
        variation["choices"] = {
            name: getattr(starting_point, name)
            for name in (
                "CHOICE_STEPS",
                "EXTRA_ROUNDS",
                "VALIDATION_CHARTS",
                "VALIDATION_SEED",
                "MAX_GREEDY_RIGHT",
                "MIN_SAMPLED_RIGHT",
                "MIN_LEARNT_RIGHT",
            )
        }
    return {
        "version": TINY_MODEL_VERSION,
        "bpe_size": TINY_BPE_SIZE,
        "seed": TINY_SEED,
        "max_pixels": TINY_MAX_PIXELS,
        "warm_start_rows": WARM_START_ROWS,
        "warm_start_steps": WARM_START_STEPS,
        "warm_start_batch": WARM_START_BATCH,
        "warm_start_lr": WARM_START_LR,
        **variation,
    }


def _is_current_build(folder: Path, name: str = "tiny") -> bool:
    try:
        return json.loads((folder / _BUILD_INFO).read_text()).get("recipe") == _tiny_recipe(name)
    except (OSError, ValueError):
        return False


def build_tiny_model(cache_dir: str | os.PathLike | None = None, force: bool = False, name: str = "tiny") -> Path:
    """Build a tiny Qwen2.5-VL once (tokenizer, random weights, warm start) and save it.

    The build happens in a temporary folder next to the target and is renamed into place only
    when complete, so an interrupted build never leaves a half-written model that a later run
    would load. Concurrent builders are safe: the first rename wins and the others reuse it. A
    folder saved by a different recipe (see ``build_info.json``) is rebuilt.

    Args:
        cache_dir: the cache root (see :func:`tiny_model_dir`).
        force: rebuild even when a current build exists.
        name: the variant, a key of :data:`chartrvr_nb.warm_start.TINY_RECIPES` (``tiny-learn`` for the learn-check).

    Returns:
        The model folder, loadable with ``AutoProcessor`` / ``AutoModelForImageTextToText``.
    """
    target = tiny_model_dir(cache_dir, name)
    if _is_current_build(target, name) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
    started = time.perf_counter()
    # Once per machine and recipe, and half a minute on 2 CPU cores: say so, not half a minute of silence.
    logger.info(f"Building the offline {name!r} model into {target} (first use only; about 30 s)...")
    try:
        _build_tiny_model_into(staging, name)
        if target.exists() and (force or not _is_current_build(target, name)):
            # Move the old build aside in one rename (a reader never sees it half-deleted).
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, retired / target.name)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_current_build(target, name):
                raise  # not a lost race with another builder: something else is in the way
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(f"Built the {name!r} model in {time.perf_counter() - started:.0f} s.")
    return target


@contextmanager
def single_torch_thread():
    """One torch thread inside the block, the previous count restored after (``models.model_threads``
    uses it too). Tensors this small gain nothing from threads, and on a busy shared CPU a second
    thread spin-waits: one thread builds the tiny model several times faster there."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _build_tiny_model_into(folder: Path, name: str = "tiny") -> None:
    with single_torch_thread():
        _build_tiny_model_steps(folder, name)


def _build_tiny_model_steps(folder: Path, name: str) -> None:
    from importlib.metadata import version

    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from .chart_kinds import render_chart

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    torch.manual_seed(TINY_SEED)
    tokenizer = build_tiny_tokenizer()
    processor = _tiny_processor(tokenizer)
    config = _tiny_config(tokenizer)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    lap("tokenizer_and_model")
    recipe = get_recipe(name)
    rows = synthetic_examples(WARM_START_ROWS, TINY_SEED + 1, recipe.chart_types)
    for row in rows:
        # Drawn within the budget (258x193) and left off the 28-pixel grid, as in every build so far:
        # the processor fits it to its grid. Fitting it here would change the images, so the weights.
        row["image"] = render_chart(row["chart_type"], row["table"], TINY_MAX_PIXELS)
    lap("render_charts")
    examples = encode_examples(model, processor, rows, recipe)
    warm = warm_start(model, examples, processor.tokenizer.pad_token_id, seed=TINY_SEED)
    lap("warm_start")
    if recipe.teaches_choices:
        # The ideal answers are learnt; now the choices' odds, checked on charts the build never trained on.
        validation = starting_point.validation_charts(recipe, TINY_MAX_PIXELS)
        warm["choices"] = starting_point.teach_choices(model, processor, examples, validation, recipe, seed=TINY_SEED)
        lap("choices")

    text = config.text_config
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=[text.eos_token_id, text.pad_token_id],  # end of turn, or end of text
        pad_token_id=text.pad_token_id,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    lap("save")
    info = {
        "recipe": _tiny_recipe(name),
        # Rendering and numerics decide the weights too: a build says what it was made with.
        "libraries": {library: version(library) for library in ("torch", "transformers", "matplotlib")},
        "parameters": sum(p.numel() for p in model.parameters()),  # tied weights once
        "tokenizer_size": len(tokenizer),
        "warm_start": warm,
        "seconds": seconds,
    }
    (folder / _BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
