"""Training presets and evaluation settings: frozen dataclasses whose fields carry their help text.

``batch_size`` is TRL's ``per_device_train_batch_size``, which counts *completions*, not
prompts: one optimizer step consumes ``batch_size * grad_accum / num_generations`` prompts.
That is why the seed's formula ``samples / (batch * 2) * epochs`` undercounts steps (see
``chartrvr_nb.estimate``).

Every field is declared with :func:`chartrvr_nb.settings.setting`, which keeps its help text, its
command-line flag and whether the 02_train form offers it in the field's metadata (the open-r1 / TRL
config idiom). The command line (``chartrvr_nb.cli``) and the form (``chartrvr_nb.widgets.PresetForm``)
are generated from those fields, so a new setting is added here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .models import MODEL_REGISTRY
from .settings import setting

# The paper's training set and its size. It is ``data.TRAIN_DATASET``, written out here because
# presets are plain data and import no data code (a test checks that the two agree).
PAPER_TRAIN_DATA = "sanchit97/chart-rvr-grpo-train"
PAPER_TRAIN_ROWS = 34_194
PAPER_MAX_PIXELS = 320 * 28 * 28
# Where the run's curves also go: TRL's ``report_to`` values this project installs and tests.
TRACKERS = ("none", "tensorboard", "wandb", "trackio")
# Tokens generated per answer when not given, by prompt style: the paper's completion length for the
# reasoning prompts, and enough for a short phrase for the direct prompt. The styles are
# ``prompts.PROMPT_STYLES``' names, written out here because settings import no scoring code (a test
# checks that the two agree).
DEFAULT_MAX_NEW_TOKENS = {"rvr": 768, "cot": 768, "direct": 64}


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _not_positive(settings: Any, names: Sequence[str], *, optional: bool = False) -> list[str]:
    """An error for each field among ``names`` that is not a positive integer (or None, when ``optional``)."""
    errors = []
    for name in names:
        value = getattr(settings, name)
        if not (_is_positive_int(value) or optional and value is None):
            errors.append(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")
    return errors


def generation_batch_error(generation_batch: int, num_generations: int, made_of: str) -> str | None:
    """Why TRL would refuse a generation batch, or None: it must hold whole groups of completions.

    Args:
        generation_batch: completions generated per round.
        num_generations: completions per prompt (the GRPO group).
        made_of: how the batch was counted, named as the user set it (``"batch_size * grad_accum"``).

    Example:
        >>> generation_batch_error(4, 2, "batch_size * grad_accum") is None
        True
        >>> print(generation_batch_error(4, 3, "batch_size * grad_accum"))
        the generation batch (4 completions = batch_size * grad_accum) must be divisible by
        num_generations (3); change batch_size or num_generations
    """
    if generation_batch % num_generations == 0:
        return None
    return (
        f"the generation batch ({generation_batch} completions = {made_of}) must be divisible by num_generations "
        f"({num_generations}); change batch_size or num_generations"
    )


@dataclass(frozen=True)
class Preset:
    """Everything that decides a GRPO run. Defaults are the paper's configuration.

    Create variants with :func:`get_preset` (``get_preset("fast", num_generations=4)``); every
    field is checked in ``__post_init__``, so an impossible combination fails at once, before
    any model is loaded.
    """

    name: str = setting("paper", "the preset's name (pick one with --preset)", cli=False)
    model: str = setting("qwen2-5-3b", "model to train", flag="--vlm-name", choices=MODEL_REGISTRY)
    train_data: str = setting(PAPER_TRAIN_DATA, "training data: a hub id, a local dataset path, or 'synthetic'")
    subset_size: int | None = setting(None, "use only this many training rows (default: every row)", form=True)
    num_epochs: int = setting(4, "passes over the training rows", form=True)
    num_generations: int = setting(4, "completions sampled per prompt (GRPO group size)", form=True)
    batch_size: int = setting(
        2, "completions per device per micro-batch (TRL's per_device_train_batch_size)", form=True
    )
    grad_accum: int = setting(2, "gradient accumulation steps", form=True)
    gradient_checkpointing: bool = setting(
        True,
        "gradient checkpointing: less memory, slower steps (seed: 12-13 GB with it, 15-18 GB without)",
        flag="--disable-gradient-checkpointing",
        form=True,
    )
    load_in_4bit: bool = setting(
        False,
        "QLoRA: 4-bit NF4 base weights (colab-t4 has them; works on CPU too, with bitsandbytes' CPU kernels)",
        form=True,
    )
    requires_gpu: bool = setting(True, "the preset needs a CUDA GPU (the tiny-model presets do not)", cli=False)
    learning_rate: float = setting(1e-5, "optimizer learning rate")
    beta: float = setting(0.0, "KL coefficient; at 0 no reference model is kept")
    lora_r: int = setting(8, "LoRA rank")
    lora_alpha: int = setting(16, "LoRA alpha (scaling)")
    lora_dropout: float = setting(0.05, "LoRA dropout")
    max_prompt_length: int = setting(
        4096, "longest prompt in tokens; checked, never truncated (truncation breaks image tokens)"
    )
    max_completion_length: int = setting(
        768, "tokens generated per completion; shorter is faster but may cut answers", form=True
    )
    max_pixels: int = setting(PAPER_MAX_PIXELS, "image pixel budget: images are resized to it, never cropped")
    generation_batch_size: int | None = setting(
        None,
        "completions generated per generation round, divisible by num_generations "
        "(default: TRL's, batch_size * grad_accum)",
    )
    use_vllm: bool = setting(False, "generate with vLLM (colocate) when it is installed")
    torch_compile: bool = setting(False, "compile the model with torch.compile")
    save_steps: int = setting(500, "checkpoint every N optimizer steps", form=True)
    save_total_limit: int | None = setting(3, "local checkpoints kept (the paper preset would write ~270)")
    logging_steps: int = setting(1, "log metrics every N optimizer steps")
    sample_every: int = setting(50, "keep sample completions with their rewards every N steps")
    seed: int = setting(2025, "random seed", form=True)
    eval_dataset: str = setting("evochart", "validation benchmark, as in the seed guide", flag="--dataset-name")
    report_to: str = setting(
        "none",
        "also log to this tracker (TRL's report_to); metrics.jsonl is written either way, "
        "and W&B without a login logs offline",
        choices=TRACKERS,
        form=True,
    )

    def __post_init__(self) -> None:
        errors = []
        if self.model not in MODEL_REGISTRY:
            errors.append(f"model {self.model!r} is not one of {sorted(MODEL_REGISTRY)}")
        positive = (
            "num_epochs",
            "num_generations",
            "batch_size",
            "grad_accum",
            "lora_r",
            "lora_alpha",
            "max_prompt_length",
            "max_completion_length",
            "max_pixels",
            "save_steps",
            "logging_steps",
            "sample_every",
        )
        errors += _not_positive(self, positive)
        errors += _not_positive(self, ("save_total_limit", "subset_size", "generation_batch_size"), optional=True)
        if isinstance(self.num_generations, int) and self.num_generations < 2:
            errors.append("num_generations must be at least 2: GRPO compares completions within a group")
        counts = (self.num_generations, self.batch_size, self.grad_accum, self.generation_batch_size or 1)
        if all(map(_is_positive_int, counts)):
            error = generation_batch_error(
                self.generation_batch_size or self.batch_size * self.grad_accum,
                self.num_generations,
                "generation_batch_size" if self.generation_batch_size else "batch_size * grad_accum",
            )
            errors += [error] if error else []
        if not self.learning_rate > 0:
            errors.append(f"learning_rate must be positive, got {self.learning_rate!r}")
        if not self.beta >= 0:
            errors.append(f"beta must be >= 0, got {self.beta!r}")
        if not 0 <= self.lora_dropout < 1:
            errors.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.report_to not in TRACKERS:
            errors.append(f"report_to must be one of {', '.join(TRACKERS)}, got {self.report_to!r}")
        if errors:
            raise ValueError(f"Invalid preset {self.name!r}: " + "; ".join(errors) + ".")

    @property
    def num_samples(self) -> int:
        """Training rows the run will use."""
        if self.subset_size is not None:
            return self.subset_size
        return PAPER_TRAIN_ROWS if self.train_data == PAPER_TRAIN_DATA else 0

    def output_dir(self) -> str:
        """The seed's run directory: ``grpo-start-ckpts/<model>-prm-large-train-v2-<seed>``."""
        return f"grpo-start-ckpts/{self.model}-prm-large-train-v2-{self.seed}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line per field, for notebooks and logs.

        Example:
            >>> print(get_preset("smoke").summary().splitlines()[1])
                               model: tiny
        """
        return "\n".join(f"{f.name:>24}: {getattr(self, f.name)}" for f in dataclasses.fields(self))


_3B = Preset()
PRESETS: dict[str, Preset] = {
    "paper": _3B,
    "safe": dataclasses.replace(_3B, name="safe", num_epochs=1),
    "moderate": dataclasses.replace(_3B, name="moderate", num_epochs=1, num_generations=2),
    "fast": dataclasses.replace(_3B, name="fast", subset_size=10_000, num_epochs=1, num_generations=2),
    "fast-nockpt": dataclasses.replace(
        _3B, name="fast-nockpt", subset_size=10_000, num_epochs=1, num_generations=2, gradient_checkpointing=False
    ),
    # The short runs checkpoint more often than the paper's 500 steps, which would be the whole run.
    "ultra-fast": dataclasses.replace(
        _3B, name="ultra-fast", subset_size=1_000, num_epochs=1, num_generations=2, save_steps=100
    ),
    "colab-t4": dataclasses.replace(  # a T4 session can disconnect at any time: save every ~hour
        _3B, name="colab-t4", subset_size=1_000, num_epochs=1, num_generations=2, load_in_4bit=True, save_steps=25
    ),
    "smoke": dataclasses.replace(
        _3B,
        name="smoke",
        model="tiny",
        train_data="synthetic",
        subset_size=32,
        num_epochs=1,
        num_generations=2,
        requires_gpu=False,
        learning_rate=1e-3,  # the tiny model must move visibly in 16 steps
        max_completion_length=160,
        max_pixels=224 * 224,
        save_steps=8,
        sample_every=4,
        eval_dataset="synthetic",
    ),
    # `python -m chartrvr_nb learn-check`: GRPO on the tiny-learn warm start, which leaves the
    # chart type and the format's last newline to learn (see chartrvr_nb.learncheck).
    "learn-check": dataclasses.replace(
        _3B,
        name="learn-check",
        model="tiny-learn",
        train_data="synthetic:bar,line,pie",
        subset_size=400,
        num_epochs=1,
        num_generations=4,
        batch_size=4,
        grad_accum=2,
        requires_gpu=False,
        learning_rate=2e-3,  # 4e-3 learns faster but collapsed one seed in three (measured)
        max_completion_length=96,
        max_pixels=224 * 224,
        save_steps=1000,  # no checkpoint mid-run: the check is short and is rerun, not resumed
        sample_every=20,
        eval_dataset="learn-check",
    ),
}


def get_preset(name: str, **overrides) -> Preset:
    """A preset by name, with fields overridden; unknown names and keys are errors.

    Example:
        >>> get_preset("fast", num_generations=4).num_generations
        4
        >>> get_preset("fast", num_gens=4)
        Traceback (most recent call last):
        ...
        ValueError: Unknown preset option(s) ['num_gens']. Valid options: ...
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}.")
    valid = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"Unknown preset option(s) {unknown}. Valid options: {', '.join(sorted(valid))}.")
    return dataclasses.replace(PRESETS[name], **overrides)


def as_preset(preset: Preset | str) -> Preset:
    """``preset`` itself, or the preset of that name: for the functions that take either.

    Example:
        >>> as_preset("smoke").model, as_preset(get_preset("fast", seed=7)).seed
        ('tiny', 7)
    """
    return get_preset(preset) if isinstance(preset, str) else preset


@dataclass(frozen=True)
class EvalConfig:
    """How a benchmark is evaluated (the way an lmms-eval task's ``generation_kwargs`` are declared):
    greedy generation settings, which examples, and what else to report. Checked on creation.

    What is evaluated (the model, the adapter, the benchmark) and where the files go are the
    arguments of ``evaluate.run_evaluation`` beside it.

    Example:
        >>> EvalConfig(prompt="direct").tokens_per_answer
        64
        >>> EvalConfig(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid evaluation settings: batch_size must be a positive integer, got 0.
    """

    batch_size: int = setting(8, "examples per generation batch")
    prompt: str = setting(
        "rvr", "prompt style: rvr (the trained format), cot or direct", choices=DEFAULT_MAX_NEW_TOKENS
    )
    max_new_tokens: int | None = setting(
        None, "tokens generated per answer (default: 768 for rvr and cot, 64 for direct)"
    )
    max_pixels: int | None = setting(PAPER_MAX_PIXELS, "image pixel budget: images are resized to it, never cropped")
    limit: int | None = setting(None, "evaluate only the first N examples")
    seed: int = setting(2025, "seeds torch and the bootstrap")
    load_in_4bit: bool = setting(False, "load the base model in 4-bit NF4, as a QLoRA run (colab-t4) trained it")
    compare_base: bool = setting(
        False,
        "also evaluate the base model (adapter disabled) on the same examples and report the difference "
        "with a paired-bootstrap 95% interval",
    )
    data_dir: str | os.PathLike | None = setting(
        None, "folder with the released files of plotqa / chartfc, or a local copy of a hub benchmark"
    )
    progress: bool = setting(True, "progress bars while generating")

    def __post_init__(self) -> None:
        errors = _not_positive(self, ("batch_size",))
        errors += _not_positive(self, ("max_new_tokens", "max_pixels", "limit"), optional=True)
        if self.prompt not in DEFAULT_MAX_NEW_TOKENS:
            errors.append(f"prompt must be one of {', '.join(DEFAULT_MAX_NEW_TOKENS)}, got {self.prompt!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            errors.append(f"seed must be an integer, got {self.seed!r}")
        if errors:
            raise ValueError("Invalid evaluation settings: " + "; ".join(errors) + ".")

    @property
    def tokens_per_answer(self) -> int:
        """``max_new_tokens``, else the prompt style's default (:data:`DEFAULT_MAX_NEW_TOKENS`)."""
        return self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[self.prompt]

    @classmethod
    def for_preset(cls, preset: Preset | str, **settings: Any) -> EvalConfig:
        """Settings that evaluate as ``preset`` trains: its completion length, pixel budget and 4-bit base.

        Example:
            >>> config = EvalConfig.for_preset("smoke", limit=8)
            >>> config.max_new_tokens, config.max_pixels, config.limit
            (160, 50176, 8)
        """
        preset = as_preset(preset)
        trained_as = dict(
            max_new_tokens=preset.max_completion_length, max_pixels=preset.max_pixels, load_in_4bit=preset.load_in_4bit
        )
        return cls(**{**trained_as, **settings})
