"""The offline tiny Qwen2.5-VL: its tokenizer, configuration, processor and format warm start.

``tiny`` is a real Qwen2.5-VL of about 0.2M parameters, built by code with no download: random
weights, a byte-level BPE tokenizer trained locally on synthetic chart text, the Qwen2.5-VL chat
template and an image processor bounded to 224x224 pixels. It is saved once to a cache folder and
then loaded through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like the 3B
model (see :func:`chartrvr_nb.models.load_model_and_processor`), so the smoke preset exercises the
same code path as a real run. A short supervised warm start, part of the build, teaches it the
answer format so the format and count rewards are not stuck at zero in a GRPO smoke run.
``tiny-learn`` is the same model with another warm-start recipe (:data:`TINY_RECIPES`, its own
cache folder), which leaves the learn-check two choices for GRPO to learn.

The Qwen2.5 tokenizer constructor and chat template here also serve the random-weight 3B bench.
Top-level imports stay light: torch, transformers and tokenizers are imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Qwen2.5's added tokens, in the order (and so the relative ids) of the real tokenizer:
# (token, special). The first 14 are special; the tool-call and code tokens are not.
QWEN2_5_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The Qwen2.5-VL chat template, written for this project: system/user/assistant turns, string or
# list content, each image part becomes <|vision_start|><|image_pad|><|vision_end|> (the processor
# expands <|image_pad|> to one token per merged patch), and a default system turn like Qwen's.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] or [] %}"
    "{% if part['type'] in ('image', 'image_url') %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The tiny model. A saved build whose recipe (``_tiny_recipe``) differs is rebuilt; bump
# TINY_MODEL_VERSION, which names the cache folder, for changes the recipe does not capture.
TINY_MODEL_VERSION = "tiny-qwen2.5-vl-v1"
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224
TINY_BPE_SIZE = 1024  # at most this many byte-level BPE entries: embeddings dominate the parameters
TINY_SEED = 1234
WARM_START_ROWS = 192  # rendered synthetic charts; with far fewer the model memorises them instead
WARM_START_STEPS = 300
WARM_START_BATCH = 8
WARM_START_LR = 1e-2
_BUILD_INFO = "build_info.json"  # written last inside the temporary folder: marks a complete build


@dataclasses.dataclass(frozen=True)
class TinyRecipe:
    """What a tiny-model variant's warm start teaches, beyond the shared architecture and tokenizer.

    Attributes:
        folder: the cache folder's name (one per variant, so variants never overwrite each other).
        swapped_type_share: share of warm-start targets whose ``<type>`` names the next chart type
            of ``chart_types`` (bar -> line -> pie -> bar) instead of the chart's own: a systematic
            confusion, learnt together with recognising the chart.
        flawed_format_share: share of warm-start targets with a space instead of the newline
            between ``</think>`` and ``<answer>`` (which the format reward requires).
        chart_types: the chart types of the warm-start charts, in the order of the swap; all ten
            when ``None``.
        short_targets: targets keep the table's columns but not its rows, and no reasoning steps:
            a completion of ~40 tokens instead of ~110, so a GRPO step is faster and its reward
            differences come from fewer tokens.
    """

    folder: str = TINY_MODEL_VERSION
    swapped_type_share: float = 0.0
    flawed_format_share: float = 0.0
    chart_types: tuple[str, ...] | None = None
    short_targets: bool = False


# The learn-check variant leaves two choices to GRPO, each sampled 40% of the time and so never
# taken by greedy decoding: naming the chart's own type rather than the swapped one (a choice that
# depends on the chart), and the newline the format needs before <answer> (one that does not). Its
# three types are those of the learn-check preset's training data and of the learn-check benchmark.
TINY_RECIPES: dict[str, TinyRecipe] = {
    "tiny": TinyRecipe(),
    "tiny-learn": TinyRecipe(
        folder="tiny-qwen2.5-vl-learn-v1",
        swapped_type_share=0.6,
        flawed_format_share=0.6,
        chart_types=("bar", "line", "pie"),
        short_targets=True,
    ),
}


def _recipe(name: str) -> TinyRecipe:
    if name not in TINY_RECIPES:
        raise ValueError(f"Unknown tiny model {name!r}; choose one of: {', '.join(TINY_RECIPES)}.")
    return TINY_RECIPES[name]


def tiny_model_dir(cache_dir: str | os.PathLike | None = None, name: str = "tiny") -> Path:
    """Where a tiny model lives: ``<cache>/tiny-qwen2.5-vl-v1`` (its variants beside it).

    The cache is ``cache_dir``, else :func:`chartrvr_nb.data.cache_root`.

    Example:
        >>> tiny_model_dir("/tmp/cache").as_posix()
        '/tmp/cache/tiny-qwen2.5-vl-v1'
        >>> tiny_model_dir("/tmp/cache", "tiny-learn").name
        'tiny-qwen2.5-vl-learn-v1'
    """
    from .data import cache_root

    return Path(cache_dir or cache_root()).expanduser() / _recipe(name).folder


def _synthetic_examples(count: int, seed: int, chart_types: tuple[str, ...] | None = None) -> list[dict]:
    """Text-only synthetic rows (with their reasoning steps), chart types (default all) in rotation."""
    import random

    from .prompts import CHART_TYPES
    from .synthetic import QUESTION_KINDS, make_synthetic_example

    types = chart_types or CHART_TYPES
    rng = random.Random(seed)
    return [
        make_synthetic_example(types[index % len(types)], rng.choice(QUESTION_KINDS), rng) for index in range(count)
    ]


def _tokenizer_corpus(count: int = 1500) -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts, and what a smoke run shows or asks of it."""
    from .prompts import PROMPT_STYLES
    from .synthetic import synthetic_completion

    corpus = [*PROMPT_STYLES.values(), "You are a helpful assistant."] * 20
    for example in _synthetic_examples(count, TINY_SEED):
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


def qwen2_5_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A ``Qwen2Tokenizer`` over a byte-level BPE that already holds Qwen2.5's added tokens.

    ``<|im_end|>`` ends a turn (eos) and ``<|endoftext|>`` pads, as in Qwen2.5-VL-Instruct; the
    chat template is :data:`QWEN2_5_VL_CHAT_TEMPLATE`.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    extra = [token for token, special in QWEN2_5_ADDED_TOKENS[1:] if special]  # <|im_start|> ... <|video_pad|>
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extra,
        errors="replace",
        split_special_tokens=False,
        model_max_length=32768,
    )
    tokenizer.add_tokens(
        [AddedToken(token, special=special, normalized=False) for token, special in QWEN2_5_ADDED_TOKENS]
    )
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


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


def warm_start_target(row: dict, recipe: TinyRecipe, rng) -> str:
    """The completion a warm start teaches for a row: the ideal one, or the recipe's variation of it.

    Example:
        >>> import random
        >>> from chartrvr_nb.synthetic import make_synthetic_example
        >>> row = make_synthetic_example("pie", "max", random.Random(0))
        >>> target = warm_start_target(row, TinyRecipe(flawed_format_share=1.0), random.Random(0))
        >>> "</think> <answer>" in target, target.startswith("<think>\\n<type>pie</type>")
        (True, True)
    """
    from .prompts import CHART_TYPES, format_completion

    chart_type = row["chart_type"]
    types = recipe.chart_types or CHART_TYPES
    if rng.random() < recipe.swapped_type_share:
        chart_type = types[(types.index(chart_type) + 1) % len(types)]
    if recipe.short_targets:
        target = format_completion(chart_type, {"columns": row["table"]["columns"], "rows": []}, [], row["label"])
    else:
        target = format_completion(chart_type, row["table"], row["steps"], row["label"])
    if rng.random() < recipe.flawed_format_share:
        target = target.replace("</think>\n<answer>", "</think> <answer>")
    return target


def _warm_start_examples(model, processor, rows: list[dict]) -> list[dict]:
    """Tokenise each row once (chat prompt with image, then target completion and <|im_end|>) and
    encode its image once with the frozen vision tower. A row's ``target`` overrides its ideal
    completion."""
    import torch

    from .prompts import build_messages
    from .synthetic import synthetic_completion

    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for row in rows:
        prompt = processor.apply_chat_template(build_messages(row["query"]), add_generation_prompt=True, tokenize=False)
        encoded = processor(text=[prompt], images=[row["image"]], return_tensors="pt")
        completion_ids = tokenizer(row.get("target") or synthetic_completion(row), add_special_tokens=False)[
            "input_ids"
        ]
        target = torch.tensor(completion_ids + [end_of_turn])
        prompt_ids = encoded["input_ids"][0]
        with torch.no_grad():
            image_features = model.get_image_features(encoded["pixel_values"], encoded["image_grid_thw"]).pooler_output
        examples.append(
            {
                "input_ids": torch.cat([prompt_ids, target]),
                "labels": torch.cat([torch.full_like(prompt_ids, -100), target]),
                # Marks image tokens; without it the model falls back to 1-D positions, unlike
                # generation (and TRL), which use the 3-D multimodal rotary positions.
                "mm_token_type_ids": torch.cat([encoded["mm_token_type_ids"][0], torch.zeros_like(target)]),
                "image_grid_thw": encoded["image_grid_thw"],
                "image_features": image_features[0],
            }
        )
    return examples


def _collate(examples: list[dict], pad_id: int) -> dict:
    """Right-padded batch; the cached image features go in as the model's encoder outputs."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    length = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    mm_token_type_ids = torch.zeros((len(examples), length), dtype=examples[0]["mm_token_type_ids"].dtype)
    for i, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = example["input_ids"], example["labels"], 1
        mm_token_type_ids[i, :n] = example["mm_token_type_ids"]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "mm_token_type_ids": mm_token_type_ids,
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
        "mm_encoder_outputs": {
            "image": BaseModelOutputWithPooling(pooler_output=[e["image_features"] for e in examples])
        },
    }


def _completion_loss(model, batch: dict):
    """Causal-LM loss on the completion tokens only. Projecting just those positions through
    ``lm_head`` (instead of the whole prompt, as ``model(labels=...)`` would) halves a step."""
    import torch

    labels = batch.pop("labels")[:, 1:]
    hidden = model.model(**batch).last_hidden_state[:, :-1]
    scored = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[scored]), labels[scored])


def warm_start(model, processor, rows: list[dict], steps: int = WARM_START_STEPS, seed: int = TINY_SEED) -> dict:
    """Teach a fresh model the answer format with plain causal-LM training on synthetic rows.

    The loss covers only the completion (prompt and image tokens are masked), so the model learns
    to answer ``<think>\\n<type>...</type>\\n<table>...</table>\\n<step-1>: ...</think>\\n
    <answer>...</answer>`` and then end its turn. The vision tower stays frozen at its random
    initialisation, so each image is encoded once and only the language model trains: that keeps
    the whole first build to about a minute on two CPU cores.

    Args:
        model / processor: a fresh tiny Qwen2.5-VL and its processor.
        rows: examples from :func:`chartrvr_nb.synthetic.make_synthetic_example`, each with an ``image``.
        steps: optimizer steps (batches of ``WARM_START_BATCH`` rows drawn at random).
        seed: the batch-sampling seed.

    Returns:
        ``{"steps", "first_loss", "last_loss", "seconds"}``.
    """
    import torch

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    model.model.visual.requires_grad_(False)
    examples = _warm_start_examples(model, processor, rows)
    pad_id = processor.tokenizer.pad_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=WARM_START_LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=WARM_START_LR, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for _ in range(steps):
        picks = torch.randint(len(examples), (WARM_START_BATCH,), generator=generator).tolist()
        loss = _completion_loss(model, _collate([examples[i] for i in picks], pad_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    model.model.visual.requires_grad_(True)
    tail = losses[-10:]
    return {
        "steps": steps,
        "first_loss": round(losses[0], 4),
        "last_loss": round(sum(tail) / len(tail), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _tiny_recipe(name: str = "tiny") -> dict[str, Any]:
    """What decides a tiny model's weights; a saved build with a different recipe is rebuilt."""
    recipe = _recipe(name)
    variation = {  # only a variant's build info names these, so the default build stays current
        key: list(value) if isinstance(value, tuple) else value  # as build_info.json reads back
        for key, value in dataclasses.asdict(recipe).items()
        if value != getattr(TinyRecipe, key)
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
        name: the variant, a key of :data:`TINY_RECIPES` (``tiny-learn`` for the learn-check).

    Returns:
        The model folder, loadable with ``AutoProcessor`` / ``AutoModelForImageTextToText``.
    """
    target = tiny_model_dir(cache_dir, name)
    if _is_current_build(target, name) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
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
    import random

    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from .data import chart_image

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
    recipe, target_rng = _recipe(name), random.Random(TINY_SEED + 2)
    rows = _synthetic_examples(WARM_START_ROWS, TINY_SEED + 1, recipe.chart_types)
    for row in rows:
        row["image"] = chart_image(row["chart_type"], row["table"], TINY_MAX_PIXELS)
        row["target"] = warm_start_target(row, recipe, target_rng)
    lap("render_charts")
    warm = warm_start(model, processor, rows)
    lap("warm_start")

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
        "parameters": sum(p.numel() for p in model.parameters()),  # tied weights once
        "tokenizer_size": len(tokenizer),
        "warm_start": warm,
        "seconds": seconds,
    }
    (folder / _BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
