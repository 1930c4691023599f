"""Training presets: one frozen dataclass, the seed guide's names, validated on creation.

``batch_size`` is TRL's ``per_device_train_batch_size``, which counts *completions*, not
prompts: one optimizer step consumes ``batch_size * grad_accum / num_generations`` prompts.
That is why the seed's formula ``samples / (batch * 2) * epochs`` undercounts steps (see
``chartrvr_nb.estimate``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .models import MODEL_REGISTRY

# The paper's training set and its size. It is ``data.TRAIN_DATASET``, written out here because
# presets are plain data and import no data code (a test checks that the two agree).
PAPER_TRAIN_DATA = "sanchit97/chart-rvr-grpo-train"
PAPER_TRAIN_ROWS = 34_194
PAPER_MAX_PIXELS = 320 * 28 * 28
# Where the run's curves also go: TRL's ``report_to`` values this project installs and tests.
TRACKERS = ("none", "tensorboard", "wandb", "trackio")


@dataclass(frozen=True)
class Preset:
    """Everything that decides a GRPO run. Defaults are the paper's configuration.

    Create variants with :func:`get_preset` (``get_preset("fast", num_generations=4)``); every
    field is checked in ``__post_init__``, so an impossible combination fails at once, before
    any model is loaded.
    """

    name: str = "paper"
    model: str = "qwen2-5-3b"
    train_data: str = PAPER_TRAIN_DATA  # a hub id, a local path, or "synthetic"
    subset_size: int | None = None  # None: every row of the training set
    num_epochs: int = 4
    num_generations: int = 4
    batch_size: int = 2  # completions per device per micro-batch (TRL's meaning)
    grad_accum: int = 2
    gradient_checkpointing: bool = True
    load_in_4bit: bool = False  # QLoRA: NF4 base weights (colab-t4); on CPU too (bitsandbytes' CPU kernels)
    requires_gpu: bool = True
    learning_rate: float = 1e-5
    beta: float = 0.0  # KL coefficient; 0 as in the paper, so no reference model is kept
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    max_prompt_length: int = 4096  # checked, never truncated (truncation breaks image tokens)
    max_completion_length: int = 768
    max_pixels: int = PAPER_MAX_PIXELS  # images are resized to this budget, never cropped
    generation_batch_size: int | None = None  # None: TRL's default, batch_size * grad_accum
    use_vllm: bool = False
    torch_compile: bool = False
    save_steps: int = 500
    save_total_limit: int | None = 3  # local checkpoints kept (the paper preset would write ~270)
    logging_steps: int = 1
    sample_every: int = 50  # keep sample completions with their rewards every N steps
    seed: int = 2025
    eval_dataset: str = "evochart"  # the seed's --dataset-name
    report_to: str = "none"  # a tracker from TRACKERS (TRL's report_to); metrics.jsonl is written either way

    def __post_init__(self) -> None:
        errors = []
        if self.model not in MODEL_REGISTRY:
            errors.append(f"model {self.model!r} is not one of {sorted(MODEL_REGISTRY)}")
        positive = (
            "num_epochs", "num_generations", "batch_size", "grad_accum", "lora_r", "lora_alpha",
            "max_prompt_length", "max_completion_length", "max_pixels", "save_steps",
            "logging_steps", "sample_every",
        )
        for field in positive:
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                errors.append(f"{field} must be a positive integer, got {value!r}")
        if self.save_total_limit is not None and (not isinstance(self.save_total_limit, int) or self.save_total_limit <= 0):
            errors.append(f"save_total_limit must be a positive integer or None, got {self.save_total_limit!r}")
        if self.subset_size is not None and (not isinstance(self.subset_size, int) or self.subset_size <= 0):
            errors.append(f"subset_size must be a positive integer or None, got {self.subset_size!r}")
        if isinstance(self.num_generations, int) and self.num_generations < 2:
            errors.append("num_generations must be at least 2: GRPO compares completions within a group")
        generation_batch = self.generation_batch_size or (self.batch_size * self.grad_accum)
        if self.generation_batch_size is not None and self.generation_batch_size <= 0:
            errors.append(f"generation_batch_size must be positive, got {self.generation_batch_size!r}")
        elif isinstance(generation_batch, int) and isinstance(self.num_generations, int) and self.num_generations > 0:
            if generation_batch % self.num_generations:
                errors.append(
                    f"the generation batch ({generation_batch} = "
                    + ("generation_batch_size" if self.generation_batch_size else "batch_size * grad_accum")
                    + f") must be divisible by num_generations ({self.num_generations}); "
                    "change batch_size or num_generations"
                )
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
