"""The tiny models' warm start: what each variant is taught (its recipe) and the supervised training.

A fresh tiny Qwen2.5-VL knows nothing of the answer format, so GRPO's format and count rewards
would stay at zero in a smoke run. Its build (:func:`chartrvr_nb.tiny.build_tiny_model`) therefore
trains it briefly, with plain causal-LM loss on rendered synthetic charts, to answer in the format.
A recipe (:data:`TINY_RECIPES`) says what the targets teach beyond the ideal completion: the
``tiny-learn`` variant is taught two choices (:class:`Choice`), each a single token of the target
where the right option gets only a minority of the probability, leaving the learn-check two
choices for GRPO to learn. Its build learns the ideal answers first and the choices' odds second;
:mod:`chartrvr_nb.starting_point` teaches that second phase and checks both.

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
        swapped_type_share: the probability taught, on every chart, for naming the next chart type
            of ``chart_types`` (bar -> line -> pie -> bar) instead of the chart's own, at the type's
            token: a systematic confusion, taught once the chart types themselves are learnt.
        flawed_format_share: the probability taught, on every chart, for leaving out the newline
            between ``</think>`` and ``<answer>`` (which the format reward requires), at its token.
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

    @property
    def teaches_choices(self) -> bool:
        """Whether the targets hold choices (:class:`Choice`), taught after the ideal answers."""
        return bool(self.swapped_type_share or self.flawed_format_share)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One token of a warm-start target where the recipe teaches two options with fixed odds.

    Every chart is taught the same odds (a soft target: ``1 - wrong_share`` for ``right``,
    ``wrong_share`` for ``wrong``). The first tiny-learn build drew one option per chart at random
    instead; its model never learnt the odds per chart type, and greedy decoding's side on an
    unseen chart came down to rounding noise.

    Attributes:
        reward: the reward that pays for the right option (``chart_type``, ``format``).
        position: the token's index in the completion's tokens.
        right: the token the reward pays for (the chart's own type; the newline).
        wrong: the token taught instead (the swapped type; no newline).
        wrong_share: the probability taught for ``wrong``.
    """

    reward: str
    position: int
    right: int
    wrong: int
    wrong_share: float


# The learn-check variant leaves two choices to GRPO, each taught right with probability 0.3 and
# so never taken by greedy decoding: naming the chart's own type rather than the swapped one (a
# choice that depends on the chart), and the newline the format needs before <answer> (one that
# does not). Its three types are those of the learn-check preset's training data and benchmark.
TINY_RECIPES: dict[str, TinyRecipe] = {
    "tiny": TinyRecipe(),
    "tiny-learn": TinyRecipe(
        folder="tiny-qwen2.5-vl-learn-v2",
        swapped_type_share=0.7,
        flawed_format_share=0.7,
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


def warm_start_target(row: dict, recipe: TinyRecipe) -> str:
    """The completion a warm start teaches for a row, with every choice on its right side (the
    recipe's choices are taught at their tokens: :func:`target_tokens`).

    Example:
        >>> import random
        >>> from chartrvr_nb.synthetic import make_synthetic_example
        >>> row = make_synthetic_example("pie", "max", random.Random(0))
        >>> print(warm_start_target(row, get_recipe("tiny-learn")))
        <think>
        <type>pie</type>
        <table>{"columns": ["Product", "Share"], "rows": []}</table>
        <BLANKLINE>
        </think>
        <answer>Apples</answer>
    """
    from .prompts import format_completion

    if recipe.short_targets:
        return format_completion(row["chart_type"], {"columns": row["table"]["columns"], "rows": []}, [], row["label"])
    return format_completion(row["chart_type"], row["table"], row["steps"], row["label"])


def choice_variants(row: dict, recipe: TinyRecipe) -> list[tuple[str, str, float]]:
    """The choices a recipe teaches on a row: ``(reward, the target with the wrong option, its share)``.

    Example:
        >>> import random
        >>> from chartrvr_nb.synthetic import make_synthetic_example
        >>> row = make_synthetic_example("pie", "max", random.Random(0))
        >>> [(reward, share) for reward, _, share in choice_variants(row, get_recipe("tiny-learn"))]
        [('chart_type', 0.7), ('format', 0.7)]
        >>> swapped, flawed = (text for _, text, _ in choice_variants(row, get_recipe("tiny-learn")))
        >>> "<type>bar</type>" in swapped, "</think><answer>" in flawed  # pie -> bar; no newline
        (True, True)
        >>> choice_variants(row, get_recipe("tiny"))
        []
    """
    from .prompts import CHART_TYPES

    ideal, variants = warm_start_target(row, recipe), []
    if recipe.swapped_type_share:
        types = recipe.chart_types or CHART_TYPES
        swapped = types[(types.index(row["chart_type"]) + 1) % len(types)]
        own_tag, swapped_tag = f"<type>{row['chart_type']}</type>", f"<type>{swapped}</type>"
        variants.append(("chart_type", ideal.replace(own_tag, swapped_tag, 1), recipe.swapped_type_share))
    if recipe.flawed_format_share:
        flawed = ideal.replace("</think>\n<answer>", "</think><answer>", 1)
        variants.append(("format", flawed, recipe.flawed_format_share))
    return variants


def target_tokens(row: dict, recipe: TinyRecipe, tokenizer) -> tuple[list[int], list[Choice]]:
    """The target completion's token ids and the recipe's choices in it.

    A choice is the first token where the wrong variant's tokens leave the target's; the target's
    later tokens follow it, so each choice is one token whatever the tokenizer merges after it.

    Raises:
        ValueError: a wrong option that one token cannot make (the target with it swapped in does
            not read as the variant), e.g. a chart type the tokenizer splits differently.
    """
    target = tokenizer(warm_start_target(row, recipe), add_special_tokens=False)["input_ids"]
    choices = []
    for reward, text, share in choice_variants(row, recipe):
        variant = tokenizer(text, add_special_tokens=False)["input_ids"]
        position = next(i for i, (ours, theirs) in enumerate(zip(target, variant)) if ours != theirs)
        if tokenizer.decode(target[:position] + [variant[position]] + target[position + 1 :]) != text:
            raise ValueError(
                f"The {reward} choice of this warm-start recipe is not one token for this tokenizer (at token "
                f"{position} of {text!r}); pick chart types or a format flaw that differ from the target in one token."
            )
        choices.append(Choice(reward, position, target[position], variant[position], share))
    return target, choices


def encode_examples(model, processor, rows: list[dict], recipe: TinyRecipe, system_prompt: str | None = None):
    """Each row as a teacher-forced training example: chat prompt with image, then the target
    completion and ``<|im_end|>``, its image encoded once with the (frozen) vision tower.

    Args:
        model / processor: a tiny Qwen2.5-VL and its processor.
        rows: synthetic rows with an ``image``.
        recipe: what the targets teach (:func:`warm_start_target`, :func:`target_tokens`).
        system_prompt: the system message (default this project's wording, as the tiny presets use).

    Returns:
        One dict per row: the model's inputs, ``labels`` (the target, -100 on the prompt),
        ``wrong_labels`` / ``wrong_shares`` (each choice's wrong token and its share at the choice's
        position; the target token and 0 elsewhere) and ``choices`` (``(absolute position, Choice)``).
    """
    import torch

    from .prompts import build_messages

    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for row in rows:
        messages = build_messages(row["query"], system_prompt=system_prompt)
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded = processor(text=[prompt], images=[row["image"]], return_tensors="pt")
        completion_ids, choices = target_tokens(row, recipe, tokenizer)
        target = torch.tensor(completion_ids + [end_of_turn])
        prompt_ids = encoded["input_ids"][0]
        wrong, shares = target.clone(), torch.zeros(len(target))
        for choice in choices:
            wrong[choice.position], shares[choice.position] = choice.wrong, choice.wrong_share
        with torch.no_grad():
            image_features = model.get_image_features(encoded["pixel_values"], encoded["image_grid_thw"]).pooler_output
        examples.append(
            {
                "input_ids": torch.cat([prompt_ids, target]),
                "labels": torch.cat([torch.full_like(prompt_ids, -100), target]),
                "wrong_labels": torch.cat([torch.full_like(prompt_ids, -100), wrong]),
                "wrong_shares": torch.cat([torch.zeros(len(prompt_ids)), shares]),
                # Marks image tokens; without it the model falls back to 1-D positions, unlike
                # generation (and TRL), which use the 3-D multimodal rotary positions.
                "mm_token_type_ids": torch.cat([encoded["mm_token_type_ids"][0], torch.zeros_like(target)]),
                "image_grid_thw": encoded["image_grid_thw"],
                "image_features": image_features[0],
                "choices": [(len(prompt_ids) + choice.position, choice) for choice in choices],
            }
        )
    return examples


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-padded batch of :func:`encode_examples`' examples (without their ``choices``); the
    cached image features go in as the model's encoder outputs."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    length = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    wrong_labels = torch.full((len(examples), length), -100, dtype=torch.long)
    wrong_shares = torch.zeros((len(examples), length))
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    mm_token_type_ids = torch.zeros((len(examples), length), dtype=examples[0]["mm_token_type_ids"].dtype)
    for i, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = example["input_ids"], example["labels"], 1
        wrong_labels[i, :n], wrong_shares[i, :n] = example["wrong_labels"], example["wrong_shares"]
        mm_token_type_ids[i, :n] = example["mm_token_type_ids"]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "wrong_labels": wrong_labels,
        "wrong_shares": wrong_shares,
        "attention_mask": attention_mask,
        "mm_token_type_ids": mm_token_type_ids,
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
        "mm_encoder_outputs": {
            "image": BaseModelOutputWithPooling(pooler_output=[e["image_features"] for e in examples])
        },
    }


def _completion_loss(model, batch: dict):
    """Causal-LM loss on the completion tokens only, with each choice's soft target. Projecting
    just those positions through ``lm_head`` (instead of the whole prompt, as ``model(labels=...)``
    would) halves a step."""
    import torch

    labels = batch.pop("labels")[:, 1:]
    wrong_labels, wrong_shares = batch.pop("wrong_labels")[:, 1:], batch.pop("wrong_shares")[:, 1:]
    hidden = model.model(**batch).last_hidden_state[:, :-1]
    scored = labels != -100
    logits = model.lm_head(hidden[scored])
    loss = torch.nn.functional.cross_entropy(logits, labels[scored], reduction="none")
    share = wrong_shares[scored]
    wrong_loss = torch.nn.functional.cross_entropy(logits, wrong_labels[scored], reduction="none")
    return ((1 - share) * loss + share * wrong_loss).mean()


def warm_start(
    model, examples: list[dict], pad_id: int, seed: int, steps: int = WARM_START_STEPS, with_choices: bool = False
) -> dict:
    """Train a tiny model on warm-start examples with plain causal-LM loss (one run of the schedule).

    The loss covers only the completion (prompt and image tokens are masked), so the model learns
    to answer ``<think>\\n<type>...</type>\\n<table>...</table>\\n<step-1>: ...</think>\\n
    <answer>...</answer>`` and then end its turn. The vision tower stays frozen at its random
    initialisation (each image was encoded once, by :func:`encode_examples`), so only the language
    model trains: that keeps the whole first build to about a minute on two CPU cores.

    Args:
        model: a tiny Qwen2.5-VL.
        examples: :func:`encode_examples`' examples.
        pad_id: the tokenizer's padding id.
        seed: the batch-sampling seed.
        steps: optimizer steps (batches of ``WARM_START_BATCH`` examples drawn at random), over
            which the learning rate rises to ``WARM_START_LR`` and falls again.
        with_choices: teach each choice with the recipe's odds; without, its right side only (the
            ideal completion), which is how the chart types are learnt before their odds are.

    Returns:
        ``{"steps", "first_loss", "last_loss", "seconds"}``.
    """
    import torch

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    model.model.visual.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=WARM_START_LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=WARM_START_LR, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for _ in range(steps):
        picks = torch.randint(len(examples), (WARM_START_BATCH,), generator=generator).tolist()
        batch = collate([examples[i] for i in picks], pad_id)
        if with_choices:
            # The soft target teaches a choice's odds; the input takes the wrong option as often, so
            # what follows it (the same tokens) is learnt after either option.
            taken = torch.rand(batch["wrong_shares"].shape, generator=generator) < batch["wrong_shares"]
            batch["input_ids"] = torch.where(taken, batch["wrong_labels"], batch["input_ids"])
        else:
            batch["wrong_shares"].zero_()
        loss = _completion_loss(model, batch)
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
