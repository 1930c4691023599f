"""The tiny models' warm start: what each variant is taught (its recipe) and the supervised training.

A fresh tiny Qwen2.5-VL knows nothing of the answer format, so GRPO's format and count rewards
would stay at zero in a smoke run. Its build (:func:`chartrvr_nb.tiny.build_tiny_model`) therefore
trains it briefly, with plain causal-LM loss on rendered synthetic charts, to answer in the format.
A recipe (:data:`TINY_RECIPES`) says what the targets teach beyond the ideal completion: the
``tiny-learn`` variant is taught a systematic chart-type confusion and a format flaw, each on 60%
of its targets, leaving the learn-check two choices for GRPO to learn.

torch and transformers are imported inside the functions that train.
"""

from __future__ import annotations

import dataclasses
import time

WARM_START_ROWS = 192  # rendered synthetic charts; with far fewer the model memorises them instead
WARM_START_STEPS = 300
WARM_START_BATCH = 8
WARM_START_LR = 1e-2


@dataclasses.dataclass(frozen=True)
class TinyRecipe:
    """What a tiny-model variant's warm start teaches, beyond the shared architecture and tokenizer.

    Attributes:
        folder: the cache folder's name (one per variant, so variants never overwrite each other);
            None for the default model's, ``chartrvr_nb.tiny.TINY_MODEL_VERSION``.
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

    folder: str | None = None
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


def get_recipe(name: str) -> TinyRecipe:
    """The recipe of a tiny-model variant, with the valid names in the error otherwise.

    Example:
        >>> get_recipe("tiny-learn").chart_types
        ('bar', 'line', 'pie')
        >>> get_recipe("tiny-3b")
        Traceback (most recent call last):
        ...
        ValueError: Unknown tiny model 'tiny-3b'; choose one of: tiny, tiny-learn.
    """
    if name not in TINY_RECIPES:
        raise ValueError(f"Unknown tiny model {name!r}; choose one of: {', '.join(TINY_RECIPES)}.")
    return TINY_RECIPES[name]


def synthetic_examples(count: int, seed: int, chart_types: tuple[str, ...] | None = None) -> list[dict]:
    """Text-only synthetic rows (with their reasoning steps), chart types (default all) in rotation.

    One generator for all rows, so a seed pins every tiny build's warm-start rows and tokenizer corpus.

    Example:
        >>> [row["chart_type"] for row in synthetic_examples(4, seed=0, chart_types=("bar", "pie"))]
        ['bar', 'pie', 'bar', 'pie']
    """
    import random

    from .prompts import CHART_TYPES
    from .synthetic import QUESTION_KINDS, make_synthetic_example

    types = chart_types or CHART_TYPES
    rng = random.Random(seed)
    return [
        make_synthetic_example(types[index % len(types)], rng.choice(QUESTION_KINDS), rng) for index in range(count)
    ]


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


def warm_start(model, processor, rows: list[dict], seed: int, steps: int = WARM_START_STEPS) -> dict:
    """Teach a fresh model the answer format with plain causal-LM training on synthetic rows.

    The loss covers only the completion (prompt and image tokens are masked), so the model learns
    to answer ``<think>\\n<type>...</type>\\n<table>...</table>\\n<step-1>: ...</think>\\n
    <answer>...</answer>`` and then end its turn. The vision tower stays frozen at its random
    initialisation, so each image is encoded once and only the language model trains: that keeps
    the whole first build to about a minute on two CPU cores.

    Args:
        model / processor: a fresh tiny Qwen2.5-VL and its processor.
        rows: examples from :func:`chartrvr_nb.synthetic.make_synthetic_example`, each with an ``image``.
        seed: the batch-sampling seed.
        steps: optimizer steps (batches of ``WARM_START_BATCH`` rows drawn at random).

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
