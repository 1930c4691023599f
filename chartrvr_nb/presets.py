"""Training presets: a frozen dataclass whose fields carry their help text, and the named presets.

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
import math
from dataclasses import dataclass

from . import UserError
from .models import MODEL_REGISTRY, TINY_MODELS
from .settings import is_positive_int, positive_int_errors, setting

# The Chart-RVR authors' GRPO training set on the hub and its size. It is ``data.TRAIN_DATASET``, written
# out here because presets are plain data and import no data code (a test checks that the two agree).
AUTHORS_TRAIN_DATA = "sanchit97/chart-rvr-grpo-train"
AUTHORS_TRAIN_ROWS = 34_194
# The rows the authors' code builds (main.py 532-591: ChartQA's human-written train questions, 2,000 PlotQA and
# 2,000 ChartFC); the hub set's 34,194 are exactly three times as many, probably three copies of each (the
# data audit counts the distinct rows when the set loads; not verifiable offline). ``dedupe`` estimates with it.
AUTHORS_DISTINCT_ROWS = 11_398
# The authors' training image budget: `_resize_up` in main.py 492-506 at sanchit97/chartrl@83c4406.
AUTHORS_TRAIN_PIXELS = 320 * 28 * 28
# Where the run's curves also go: TRL's ``report_to`` values this project installs and tests.
TRACKERS = ("none", "tensorboard", "wandb", "trackio")
FINETUNE_MODES = ("lora", "full")
LOSS_TYPES = ("bnpo", "dapo", "grpo", "dr_grpo")  # TRL 1.16's token-averaging losses (its others change the objective)
IMAGE_RESIZE_MODES = ("chart-rvr", "project")
# The system prompts (``system_prompts.SYSTEM_PROMPT_CHOICES``) and the number of rewards
# (``len(rewards.REWARDS)``), written out because settings import no data or scoring code (tests check both).
SYSTEM_PROMPTS = ("chart-rvr", "project")
REWARD_COUNT = 7

# Checked with the other fields, so it is refused before anything is imported or loaded, whether or not vLLM is
# installed. TRL 1.16 merges the LoRA adapter into the base weights before each generation and copies them to
# vLLM; merged into 4-bit layers they are no longer the shapes vLLM holds (huggingface/trl#4973, #3466, #3125,
# open), and TRL's own QLoRA notebook says not to combine the two.
VLLM_WITH_4BIT = (
    "use_vllm (--use-vllm) cannot generate for a 4-bit base (load_in_4bit, --load-in-4bit, preset colab-t4): TRL "
    "merges the LoRA adapter into the 4-bit weights before each generation and sends them to vLLM, which rejects "
    "their shapes or generates from wrongly merged weights (huggingface/trl#4973, #3466, #3125). Either drop "
    "--use-vllm (generation with transformers, the default, works with 4-bit weights and on a T4), or drop "
    "--load-in-4bit and use vLLM on a GPU with room for bf16 weights and vLLM's own copy (an L4 or A100)"
)


class InvalidSettingsError(UserError, ValueError):
    """A setting, or a combination of settings, that cannot train or evaluate; the message names each
    setting and what it may be."""


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
    """Everything that decides a GRPO run. The defaults are the ``paper`` preset's: the fork's LoRA
    recipe (what the seed guide calls "Paper (Default)": LoRA r=8, alpha 16, lr 1e-5) on the Chart-RVR
    authors' GRPO objective, system prompt and training images (``python -m chartrvr_nb fidelity``
    lists every setting beside the authors' value and its source).

    The fields from ``loss_type`` to ``max_grad_norm`` decide the GRPO objective and the rollouts:
    ``grpo_args.grpo_config`` sets each of them explicitly, so no library default decides them; their
    defaults are what the authors' code ran under TRL 0.20 (transformers 4.53, torch 2.6).

    Create variants with :func:`get_preset` (``get_preset("fast", num_generations=4)``); every
    field is checked in ``__post_init__``, so an impossible combination fails at once, before
    any model is loaded.
    """

    name: str = setting("paper", "the preset's name (pick one with --preset)", cli=False)
    model: str = setting("qwen2-5-3b", "model to train", flag="--vlm-name", choices=MODEL_REGISTRY)
    train_data: str = setting(AUTHORS_TRAIN_DATA, "training data: a hub id, a local dataset path, or 'synthetic'")
    subset_size: int | None = setting(None, "use only this many training rows (default: every row)", form=True)
    dedupe: bool = setting(
        False, "keep only the first of each repeated (image, question, label) training row (the load reports them)"
    )
    num_epochs: int = setting(4, "passes over the training rows", form=True)
    num_generations: int = setting(4, "completions sampled per prompt (GRPO group size)", form=True)
    batch_size: int = setting(
        2,
        "completions per device per micro-batch (TRL's per_device_train_batch_size) with one process; "
        "more processes shrink gradient accumulation first, then this",
        form=True,
    )
    grad_accum: int = setting(
        2,
        "gradient accumulation steps with one process; batch_size x grad_accum is the completions per "
        "optimizer step, kept whatever the number of processes (raise it for a larger global batch)",
        form=True,
    )
    gradient_checkpointing: bool = setting(
        True,
        "gradient checkpointing: less memory, slower steps (seed: 12-13 GB with it, 15-18 GB without)",
        flag="--disable-gradient-checkpointing",
        form=True,
    )
    finetune: str = setting(
        "lora",
        "what is trained: lora (an adapter: the fork's recipe) or full (every parameter: the authors' recipe)",
        choices=FINETUNE_MODES,
    )
    load_in_4bit: bool = setting(
        False,
        "QLoRA: 4-bit NF4 base weights (colab-t4 has them; works on CPU too, with bitsandbytes' CPU kernels)",
        form=True,
    )
    learning_rate: float = setting(1e-5, "optimizer learning rate")
    beta: float = setting(0.0, "KL coefficient; at 0 no reference model is kept")
    lora_r: int = setting(8, "LoRA rank (finetune lora)")
    lora_alpha: int = setting(16, "LoRA alpha (scaling)")
    lora_dropout: float = setting(0.05, "LoRA dropout")
    loss_type: str = setting(
        "bnpo",
        "how token losses are averaged (TRL's loss_type): bnpo over the micro-batch's tokens, as TRL 0.20 "
        "did for the authors; dapo (TRL 1.16's default) over the whole accumulated batch's",
        choices=LOSS_TYPES,
    )
    scale_rewards: str = setting(
        "group",
        "advantage = (reward - group mean) divided by the group's std + 1e-4 (group), the batch's (batch), "
        "or not divided (none)",
        choices=("group", "batch", "none"),
    )
    epsilon: float = setting(0.2, "PPO clipping range of the probability ratio")
    epsilon_high: float | None = setting(None, "upper clipping bound (default: epsilon, a symmetric clip)")
    num_iterations: int = setting(1, "policy updates per generation round (1: every update is on-policy)")
    importance_sampling_level: str = setting(
        "token", "probability ratios per token or per sequence (GSPO)", choices=("token", "sequence")
    )
    mask_truncated_completions: bool = setting(
        False, "leave completions cut off at max_completion_length out of the loss"
    )
    temperature: float = setting(1.0, "sampling temperature of the rollouts")
    top_p: float = setting(1.0, "nucleus sampling of the rollouts (1.0: none)")
    top_k: int = setting(0, "top-k sampling of the rollouts (0: none)")
    min_p: float | None = setting(None, "min-p sampling of the rollouts (default: none)")
    repetition_penalty: float = setting(1.0, "repetition penalty of the rollouts (1.0: none)")
    reward_weights: tuple[float, ...] = setting(
        (1.0,) * REWARD_COUNT, "weight of each of the seven rewards in the total, in REWARDS order", cli=False
    )
    optim: str = setting("adamw_torch", "optimizer (the Trainer's optim)")
    lr_scheduler_type: str = setting("linear", "learning-rate schedule (the Trainer's lr_scheduler_type)")
    warmup_steps: int = setting(0, "learning-rate warm-up steps")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    max_grad_norm: float = setting(1.0, "gradient clipping norm")
    system_prompt: str = setting(
        "chart-rvr",
        "system prompt: chart-rvr (the authors' template, fetched from their pinned commit and checked by "
        "SHA-256) or project (this project's own wording)",
        choices=SYSTEM_PROMPTS,
    )
    system_prompt_file: str | None = setting(
        None,
        "a local copy of the authors' prompts.py (commit 83c4406) for chart-rvr on a machine without internet; "
        "checked by SHA-256 as a download is",
    )
    max_prompt_length: int = setting(
        4096, "longest prompt in tokens; checked, never truncated (truncation breaks image tokens)"
    )
    max_completion_length: int = setting(
        768, "tokens generated per completion; shorter is faster but may cut answers", form=True
    )
    max_pixels: int = setting(AUTHORS_TRAIN_PIXELS, "image pixel budget: images are resized to it, never cropped")
    image_resize: str = setting(
        "chart-rvr",
        "how training images meet max_pixels: chart-rvr scales each one up or down to it (bicubic), then to the "
        "nearest 28-pixel grid as Qwen2.5-VL's processor rounds (the authors' _resize_up; can land a few "
        "percent above); project only shrinks larger ones and stays within it",
        choices=IMAGE_RESIZE_MODES,
    )
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
        errors = [
            f"{field.name} must be one of {', '.join(field.metadata['choices'])}, got {getattr(self, field.name)!r}"
            for field in dataclasses.fields(self)
            if field.metadata["choices"] and getattr(self, field.name) not in field.metadata["choices"]
        ]
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
            "num_iterations",
        )
        errors += positive_int_errors(self, positive)
        errors += positive_int_errors(self, ("save_total_limit", "subset_size", "generation_batch_size"), optional=True)
        if isinstance(self.num_generations, int) and self.num_generations < 2:
            errors.append("num_generations must be at least 2: GRPO compares completions within a group")
        counts = (self.num_generations, self.batch_size, self.grad_accum, self.generation_batch_size or 1)
        if all(map(is_positive_int, counts)):
            error = generation_batch_error(
                self.generation_batch_size or self.batch_size * self.grad_accum,
                self.num_generations,
                "generation_batch_size" if self.generation_batch_size else "batch_size * grad_accum",
            )
            errors += [error] if error else []
        bounds = {  # field: (lowest allowed, whether the lowest is allowed)
            "learning_rate": (0, False),
            "beta": (0, True),
            "epsilon": (0, False),
            "temperature": (0, False),
            "top_p": (0, False),
            "repetition_penalty": (0, False),
            "weight_decay": (0, True),
            "max_grad_norm": (0, False),
        }
        for name, (lowest, inclusive) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, float) and math.isnan(value):
                continue  # said below
            if not (value >= lowest if inclusive else value > lowest):
                errors.append(f"{name} must be {'>=' if inclusive else '>'} {lowest}, got {value!r}")
        errors += [  # inf passes every bound above, and NaN would train on as NaN weights
            f"{field.name} must be a finite number, got {getattr(self, field.name)!r}"
            for field in dataclasses.fields(self)
            if isinstance(getattr(self, field.name), float) and not math.isfinite(getattr(self, field.name))
        ]
        if not self.top_p <= 1:
            errors.append(f"top_p must be at most 1, got {self.top_p!r}")
        if not (isinstance(self.top_k, int) and self.top_k >= 0 and isinstance(self.warmup_steps, int)):
            errors.append(f"top_k and warmup_steps must be integers >= 0, got {self.top_k!r}, {self.warmup_steps!r}")
        elif self.warmup_steps < 0:
            errors.append(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.epsilon_high is not None and not self.epsilon_high >= self.epsilon:
            errors.append(f"epsilon_high must be at least epsilon ({self.epsilon}), got {self.epsilon_high!r}")
        if len(self.reward_weights) != REWARD_COUNT:
            errors.append(f"reward_weights needs one weight per reward ({REWARD_COUNT}), got {self.reward_weights!r}")
        if not 0 <= self.lora_dropout < 1:
            errors.append(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.finetune == "full" and self.load_in_4bit:
            errors.append(
                "finetune full trains every weight, which 4-bit base weights cannot be; drop --load-in-4bit "
                "or train a LoRA adapter (--finetune lora)"
            )
        if self.use_vllm and self.load_in_4bit:
            errors.append(VLLM_WITH_4BIT)
        if errors:
            raise InvalidSettingsError(f"Invalid preset {self.name!r}: " + "; ".join(errors) + ".")

    @property
    def num_samples(self) -> int:
        """Training rows the run will use (0: unknown until the data loads); with ``dedupe`` on the authors'
        hub set, the :data:`AUTHORS_DISTINCT_ROWS` it is expected to hold."""
        if self.subset_size is not None:
            return self.subset_size
        if self.train_data != AUTHORS_TRAIN_DATA:
            return 0
        return AUTHORS_DISTINCT_ROWS if self.dedupe else AUTHORS_TRAIN_ROWS

    @property
    def requires_gpu(self) -> bool:
        """Whether the run needs a CUDA GPU: every model but the tiny ones, which train on CPU in any preset."""
        return self.model not in TINY_MODELS

    @property
    def completions_per_step(self) -> int:
        """Completions per optimizer step, whatever the number of processes (``batch_size * grad_accum``)."""
        return self.batch_size * self.grad_accum

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
        return "\n".join(f"{f.name:>26}: {getattr(self, f.name)}" for f in dataclasses.fields(self))


_3B = Preset()
_TINY = dict(system_prompt="project", image_resize="project", max_pixels=224 * 224)
PRESETS: dict[str, Preset] = {
    "paper": _3B,
    "safe": dataclasses.replace(_3B, name="safe", num_epochs=1),
    "moderate": dataclasses.replace(_3B, name="moderate", num_epochs=1, num_generations=2),
    "fast": dataclasses.replace(_3B, name="fast", subset_size=10_000, num_epochs=1, num_generations=2),
    "fast-nockpt": dataclasses.replace(
        _3B, name="fast-nockpt", subset_size=10_000, num_epochs=1, num_generations=2, gradient_checkpointing=False
    ),
    # The short runs checkpoint more often than every 500 steps, which would be the whole run.
    "ultra-fast": dataclasses.replace(
        _3B, name="ultra-fast", subset_size=1_000, num_epochs=1, num_generations=2, save_steps=100
    ),
    "colab-t4": dataclasses.replace(  # a T4 session can disconnect at any time: save every ~hour
        _3B, name="colab-t4", subset_size=1_000, num_epochs=1, num_generations=2, load_in_4bit=True, save_steps=25
    ),
    # The authors' recipe (sanchit97/chartrl@83c4406 main.py 694-722): every parameter trained at TRL 0.20's
    # learning rate, 4 completions per optimizer step (their 2 GPUs x batch 2 x accumulation 1; here batch 2
    # x accumulation 2 on one GPU), 4 epochs over the distinct rows (their 11,398, not the hub set's three
    # copies). Gradient checkpointing stays on: it saves memory and leaves the gradients alone.
    "full-ft": dataclasses.replace(_3B, name="full-ft", finetune="full", learning_rate=1e-6, dedupe=True),
    "smoke": dataclasses.replace(
        _3B,
        name="smoke",
        model="tiny",
        train_data="synthetic",
        subset_size=32,
        num_epochs=1,
        num_generations=2,
        learning_rate=1e-3,  # the tiny model must move visibly in 16 steps
        max_completion_length=160,
        save_steps=8,
        sample_every=4,
        eval_dataset="synthetic",
        **_TINY,
    ),
    # `python -m chartrvr_nb learn-check`: GRPO on the tiny-learn warm start, which leaves the
    # chart type and the format's last newline to learn, each right 30% of the time when sampled
    # (see chartrvr_nb.learncheck and chartrvr_nb.starting_point).
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
        learning_rate=2e-3,  # 4e-3 collapsed one seed in three on the first tiny-learn warm start (measured)
        max_completion_length=96,
        save_steps=1000,  # no checkpoint mid-run: the check is short and is rerun, not resumed
        sample_every=20,
        eval_dataset="learn-check",
        **_TINY,
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
