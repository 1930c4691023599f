"""How many optimizer steps a preset really runs, and roughly how long and how much GPU memory.

**Steps.** TRL's ``per_device_train_batch_size`` counts completions, not prompts, so one
optimizer step consumes ``batch_size * grad_accum / num_generations`` prompts. With TRL 1.16
and its default generation batch, ``steps = samples * num_generations / (batch_size *
grad_accum) * epochs`` (rounding below), e.g. 136,776 for the paper preset. The seed guide's
``samples / (batch_size * 2) * epochs`` (34,194) is off by the factor ``num_generations``.
:func:`trainer_steps` reproduces TRL's count; :func:`seed_formula_steps` the seed's.

**Time and memory.** The only figures we have are the seed guide's, for an A100 40GB at batch 2,
grad accumulation 2: 60 s/step with 4 generations, 30 s with 2, 21 s with 2 generations and
gradient checkpointing off; 12-13 GB of GPU memory with checkpointing, 15-18 GB without, and
~15-20 GB at batch 4. Everything else in :data:`STEP_FIGURES` is derived, and labelled so:

- 4 generations without checkpointing: the 4-generation time times the seed's 21/30 ratio.
- 4-bit base weights (QLoRA): about 5 GB less (3.5B quantized parameters at ~0.55 instead of
  2 bytes each) and 1.3x the step time (NF4 dequantization in every matmul).
- L4, T4, H100: the A100 time times the ratio of memory bandwidths (A100 40GB 1,555 GB/s; L4
  300; T4 320; H100 SXM 3,350), because a GRPO step is dominated by token-by-token generation,
  which is bandwidth-bound. Memory needs do not depend on the GPU, except that on a T4 (no native
  bf16) a 4-bit base's vision tower runs in fp32: 1.3-1.5 GB more (:data:`FP32_VISION_GB`).
- Another batch size: time scales with completions per step (``batch_size * grad_accum``);
  memory grows by the seed's batch-2 to batch-4 difference per extra completion.
- Another completion length (``max_completion_length``): time in proportion to it (generation, token
  by token, dominates a step; the seed's figures are for 768 tokens, the CPU figure for 160).
- Qwen2.5-VL-7B (``--vlm-name qwen2-5-7b``): the 3B's figures with the 7B's weights in place of the
  3B's, its activations larger by its layers x hidden size, and its step time larger by its weights'
  size (each generated token reads every weight once).

:func:`run_steps` is the one check that a preset can train at all (processes, rows, generation
batch), shared by ``estimate`` and ``train`` before any model loads.

Caveat: the seed's figures were stated per *seed* step. In TRL a step processes ``batch_size *
grad_accum`` completions whatever ``num_generations`` is, so the seed's halving of the step
time for 2 generations is probably optimistic; its one logged rate (52.66 s/it at 34,194 total
steps, which is TRL's count for 1 epoch with 4 generations) agrees with the 60 s figure.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from .batches import process_batches
from .presets import (
    AUTHORS_TRAIN_DATA,
    AUTHORS_TRAIN_ROWS,
    InvalidSettingsError,
    Preset,
    as_preset,
    generation_batch_error,
)

REFERENCE_GPU = "a100-40gb"
REFERENCE_COMPLETIONS_PER_STEP = 4  # the seed's batch 2 x grad accumulation 2
GPU_NAMES = {"a100-40gb": "A100 40GB", "l4": "L4 24GB", "t4": "T4 16GB", "h100": "H100 80GB", "cpu": "CPU"}
MEMORY_BANDWIDTH_GBPS = {"a100-40gb": 1555, "l4": 300, "t4": 320, "h100": 3350}
QLORA_MEMORY_SAVING_GB = 5.0
QLORA_TIME_FACTOR = 1.3
# Per completion beyond 2 in the micro-batch: the seed's 12-13 GB at batch 2 vs 15-20 GB at batch 4.
MEMORY_PER_EXTRA_COMPLETION_GB = (1.5, 3.5)
# A full fine-tune's model states: mixed-precision Adam keeps 16 bytes per trained parameter (bf16 weights
# and gradients, 2 + 2; fp32 master weights, momentum and variance, 4 + 4 + 4: Rajbhandari et al., "ZeRO",
# arXiv:1910.02054, section 3.1), as DeepSpeed's bf16 mode does; on one GPU without DeepSpeed we keep fp32
# weights and gradients and Adam's two fp32 moments: 16 bytes as well. ZeRO-3 divides them by the processes,
# and TRL gathers the whole bf16 model onto each GPU to generate (GRPOConfig.ds3_gather_for_generation).
FULL_MODEL_PARAMETERS = {"qwen2-5-3b": 3_754_622_976, "qwen2-5-7b": 8_292_166_656}  # counted on the meta device
BYTES_PER_TRAINED_PARAMETER = 16
BF16_BYTES_PER_PARAMETER = 2
# On a GPU without native bf16 (the T4) a 4-bit base computes in fp16, and its vision tower keeps fp32 weights and
# computes in fp32 (dtypes.dtype_plan: Qwen2.5-VL's vision encoder overflows fp16): 2 more bytes for each of the
# tower's parameters (668,684,288 in the 3B, counted on the meta device) = 1.34 GB, and up to ~0.2 GB more
# activations (with gradient checkpointing, its blocks' saved inputs: 32 blocks x 1,280 patches x 1,280 wide x 2
# more bytes, for each of a micro-batch's 2 images).
NO_BF16_GPUS = ("t4",)
VISION_TOWER_PARAMETERS = 668_684_288
FP32_VISION_GB = (
    2 * VISION_TOWER_PARAMETERS / 1e9,
    2 * VISION_TOWER_PARAMETERS / 1e9 + 2 * 32 * 1280 * 1280 * 2 / 1e9,
)
# The completion length the figures were measured at: the seed's (the fork's max_completion_length) on a
# GPU, the smoke preset's on CPU.
REFERENCE_COMPLETION_TOKENS = {"gpu": 768, "cpu": 160}
# Layers x hidden size of each model's language model (their config.json), which activations scale with.
LAYERS_X_HIDDEN = {"qwen2-5-3b": 36 * 2048, "qwen2-5-7b": 28 * 3584}


@dataclass(frozen=True)
class StepFigure:
    """Seconds per optimizer step and peak GPU memory (low, high) in GB, with their source."""

    seconds_per_step: float
    memory_gb: tuple[float, float]
    source: str


def _build_step_figures() -> dict[tuple[str, int, bool, bool], StepFigure]:
    seed = "seed guide (A100 40GB)"
    table = {
        (REFERENCE_GPU, 4, True, False): StepFigure(60.0, (12.0, 13.0), seed),
        (REFERENCE_GPU, 2, True, False): StepFigure(30.0, (12.0, 13.0), seed),
        (REFERENCE_GPU, 2, False, False): StepFigure(21.0, (15.0, 18.0), seed),
        (REFERENCE_GPU, 4, False, False): StepFigure(
            60.0 * 21.0 / 30.0,
            (15.0, 18.0),
            "derived from the seed guide's A100 figures (its 21/30 ratio), not measured",
        ),
    }
    for (gpu, generations, checkpointing, _four_bit), figure in list(table.items()):
        low, high = figure.memory_gb
        table[(gpu, generations, checkpointing, True)] = StepFigure(
            figure.seconds_per_step * QLORA_TIME_FACTOR,
            (low - QLORA_MEMORY_SAVING_GB, high - QLORA_MEMORY_SAVING_GB),
            "derived from the seed guide's bf16 A100 figures for 4-bit weights, not measured",
        )
    for gpu, bandwidth in MEMORY_BANDWIDTH_GBPS.items():
        if gpu == REFERENCE_GPU:
            continue
        factor = MEMORY_BANDWIDTH_GBPS[REFERENCE_GPU] / bandwidth
        for (source_gpu, generations, checkpointing, four_bit), figure in list(table.items()):
            if source_gpu == REFERENCE_GPU:
                memory, fp32_vision = figure.memory_gb, ""
                if four_bit and gpu in NO_BF16_GPUS:
                    memory = (memory[0] + FP32_VISION_GB[0], memory[1] + FP32_VISION_GB[1])
                    fp32_vision = (
                        f"; + {FP32_VISION_GB[0]:.1f}-{FP32_VISION_GB[1]:.1f} GB for the vision tower in fp32, which "
                        "fp16 overflows (its weights, counted; its activations, estimated)"
                    )
                table[(gpu, generations, checkpointing, four_bit)] = StepFigure(
                    figure.seconds_per_step * factor,
                    memory,
                    f"scaled from A100 figures, not measured (x{factor:.2f}, memory-bandwidth ratio; "
                    f"A100 figure: {figure.source}){fp32_vision}",
                )
    cpu = StepFigure(
        1.3,
        (0.0, 0.0),
        "measured: smoke run of the tiny model on 2 CPU cores, 1 torch thread, ~100-token completions "
        "(2026-11-25; plus ~1 min start-up and the first-time model build)",
    )
    cpu_4bit = StepFigure(
        2.2,
        (0.0, 0.0),
        "measured: smoke run with --load-in-4bit on 2 shared CPU cores (median step 2.15 s vs 0.79 s without "
        "4-bit in the same session, 2026-12-01: bitsandbytes' CPU NF4 kernels are slower than fp32 matmuls)",
    )
    for generations in (2, 4):
        for checkpointing in (True, False):
            table[("cpu", generations, checkpointing, False)] = cpu
            table[("cpu", generations, checkpointing, True)] = cpu_4bit
    return table


STEP_FIGURES: dict[tuple[str, int, bool, bool], StepFigure] = _build_step_figures()
"""Keyed by (gpu, num_generations, gradient_checkpointing, load_in_4bit); batch 2, grad accum 2."""


def gpu_key(device_name: str) -> str | None:
    """The figure-table key for a CUDA device name (``env.gpu_info().name``), or None if unknown.

    A100s of either size use the A100 40GB figures.

    Example:
        >>> gpu_key("NVIDIA A100-SXM4-40GB"), gpu_key("Tesla T4"), gpu_key("NVIDIA GeForce RTX 4090")
        ('a100-40gb', 't4', None)
    """
    name = device_name.upper()
    for marker, key in (("A100", "a100-40gb"), ("H100", "h100"), ("L4", "l4"), ("T4", "t4")):
        if re.search(rf"\b{marker}\b", name):
            return key
    return None


def trainer_steps(
    num_samples: int,
    num_generations: int,
    batch_size: int,
    grad_accum: int,
    num_epochs: float,
    world_size: int = 1,
    *,
    generation_batch_size: int | None = None,
    num_iterations: int = 1,
) -> int:
    """The optimizer steps TRL 1.16's GRPOTrainer runs (``trainer.state.max_steps``).

    Follows TRL's ``GRPOConfig.__post_init__`` (generation batch = ``batch_size * world_size *
    steps_per_generation``, ``steps_per_generation = grad_accum`` by default),
    ``RepeatSampler`` (drops the last generation batch if it is not full of prompts, repeats
    each batch ``num_iterations * steps_per_generation`` times) and the Trainer's
    ``set_initial_training_values`` (``ceil(micro_batches / grad_accum)`` steps per epoch,
    ``ceil(epochs * steps_per_epoch)`` in all).

    Args:
        num_samples: training rows (prompts).
        num_generations: completions per prompt.
        batch_size: completions per device per micro-batch (``per_device_train_batch_size``).
        grad_accum: gradient accumulation steps.
        num_epochs: passes over the rows (may be fractional).
        world_size: number of processes (GPUs).
        generation_batch_size: TRL's option of that name; None for its default.
        num_iterations: TRL's ``num_iterations`` (policy updates per generation).

    Returns:
        The number of optimizer steps.

    Example:
        >>> trainer_steps(34_194, num_generations=4, batch_size=2, grad_accum=2, num_epochs=4)
        136776
        >>> trainer_steps(10_001, num_generations=2, batch_size=2, grad_accum=2, num_epochs=1)
        5000
    """
    per_round = batch_size * world_size
    if generation_batch_size is None:
        steps_per_generation = grad_accum
        generation_batch_size = per_round * steps_per_generation
        made_of = "batch_size * grad_accum" + (f" * {world_size} processes" if world_size > 1 else "")
    elif generation_batch_size % per_round:
        raise InvalidSettingsError(
            f"generation_batch_size ({generation_batch_size}) must be divisible by "
            f"batch_size * world_size ({per_round})."
        )
    else:
        steps_per_generation = generation_batch_size // per_round
        made_of = "generation_batch_size"
    error = generation_batch_error(generation_batch_size, num_generations, made_of)
    if error:
        raise InvalidSettingsError(error[0].upper() + error[1:] + ".")
    prompts_per_generation = generation_batch_size // num_generations
    generation_rounds = num_samples // prompts_per_generation
    if generation_rounds == 0:
        rows = f"{num_samples} training row{' does' if num_samples == 1 else 's do'}"
        raise InvalidSettingsError(
            f"{rows} not fill one generation batch of {prompts_per_generation} prompts ({generation_batch_size} "
            f"completions per generation round, {num_generations} per prompt), so the trainer would run 0 steps. "
            f"Use at least {prompts_per_generation} rows (--subset-size {prompts_per_generation}), or fewer "
            "completions per round (--batch-size, --grad-accum, --num-generations)."
        )
    micro_batches_per_epoch = generation_rounds * steps_per_generation * num_iterations
    steps_per_epoch = math.ceil(micro_batches_per_epoch / grad_accum)
    return math.ceil(num_epochs * steps_per_epoch)


def run_steps(preset: Preset, processes: int | None = None, rows: int | None = None) -> int | None:
    """The optimizer steps a run of ``preset`` takes, or why it cannot train at all: the one check that
    ``estimate`` and ``train.train`` share, made before any model loads (the preset's own fields were
    checked when it was made).

    Args:
        preset: the run's preset.
        processes: training processes (``--num-processes``); default ``$WORLD_SIZE``, else 1.
        rows: the training rows once they are loaded; default the preset's count (``Preset.num_samples``).

    Returns:
        :func:`trainer_steps` for them, or None while the row count is unknown (a local dataset without
        ``--subset-size``, before it loads).

    Raises:
        InvalidSettingsError: fewer than one process, processes that cannot share a step's completions, or
            too few rows for one generation batch (the trainer would run no step).

    Example:
        >>> run_steps(as_preset("smoke")), run_steps(as_preset("smoke"), processes=2)
        (16, 16)
        >>> run_steps(as_preset("smoke"), rows=1)
        Traceback (most recent call last):
        ...
        chartrvr_nb.presets.InvalidSettingsError: 1 training row does not fill one generation batch of 2 prompts ...
        >>> run_steps(as_preset("smoke"), processes=0)
        Traceback (most recent call last):
        ...
        chartrvr_nb.presets.InvalidSettingsError: The number of training processes (--num-processes) must be ...
    """
    processes = int(os.environ.get("WORLD_SIZE") or 1) if processes is None else processes
    batches = process_batches(preset, processes)
    rows = preset.num_samples or None if rows is None else rows  # num_samples 0: unknown until the data loads
    if rows is None:
        return None
    return trainer_steps(
        rows,
        preset.num_generations,
        batches.batch_size,
        batches.grad_accum,
        preset.num_epochs,
        processes,
        generation_batch_size=preset.generation_batch_size,
    )


def seed_formula_steps(num_samples: int, batch_size: int, num_epochs: float, grad_accum: int = 2) -> int:
    """The seed guide's step count, ``samples / (batch_size * 2) * epochs``, rounded up.

    Example:
        >>> seed_formula_steps(34_194, batch_size=2, num_epochs=4)
        34194
    """
    return math.ceil(num_samples / (batch_size * grad_accum) * num_epochs)


# Each style's units, tried in order: (below this many seconds, seconds per unit, format).
_DURATION_UNITS = {
    "words": (
        (90, 1, "{:.0f} s"),
        (90 * 60, 60, "{:.0f} min"),
        (48 * 3600, 3600, "{:.1f} h"),
        (math.inf, 86400, "{:.1f} days"),
    ),
    "ago": ((120, 1, "{:.0f} s ago"), (2 * 3600, 60, "{:.0f} min ago"), (math.inf, 3600, "{:.1f} h ago")),
}


def format_duration(seconds: float, style: str = "words") -> str:
    """A duration as people read it; the one place the project formats one.

    Args:
        seconds: the duration (a negative one, e.g. from clock skew, counts as 0).
        style: ``"words"`` (estimates: seconds, minutes, hours or days), ``"ago"`` (how long
            since a lock's heartbeat) or ``"clock"`` (a progress line: ``h:mm:ss``, ``m:ss``
            under an hour).

    Example:
        >>> [format_duration(s) for s in (42, 600, 75_000, 2_052_000)]
        ['42 s', '10 min', '20.8 h', '23.8 days']
        >>> [format_duration(s, "ago") for s in (30, 660, 9000)]
        ['30 s ago', '11 min ago', '2.5 h ago']
        >>> format_duration(75, "clock"), format_duration(3725.4, "clock")
        ('1:15', '1:02:05')
    """
    seconds = max(0.0, seconds)
    if style == "clock":
        hours, rest = divmod(int(round(seconds)), 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    if style not in _DURATION_UNITS:
        raise ValueError(f"Unknown duration style {style!r}; choose one of: clock, {', '.join(_DURATION_UNITS)}.")
    return next(text.format(seconds / unit) for below, unit, text in _DURATION_UNITS[style] if seconds < below)


@dataclass(frozen=True)
class Estimate:
    """What a preset costs: the trainer's real step count, time, memory, and where figures come from."""

    preset: str
    gpu: str
    steps: int
    seed_steps: int
    seconds_per_step: float
    total_seconds: float
    duration: str
    peak_memory_gb: tuple[float, float]
    figures_source: str
    note: str
    processes: int = 1  # data-parallel training processes the steps are counted for
    batches: str = ""  # how the processes share a step's completions (batches.ProcessBatches.describe)


def full_finetune_memory(model: str, processes: int, lora_memory_gb: tuple[float, float]) -> StepFigure:
    """Peak GPU memory of a full fine-tune per process, from the arithmetic of its model states.

    Model states (:data:`BYTES_PER_TRAINED_PARAMETER` per parameter) shared by the processes (ZeRO-3),
    plus, with more than one process, the whole bf16 model gathered for generation, plus activations:
    the LoRA figure less its bf16 base weights (the adapter's own states are negligible).

    Example:
        >>> figure = full_finetune_memory("qwen2-5-3b", 1, (12.0, 13.0))
        >>> [round(gb, 1) for gb in figure.memory_gb]
        [64.6, 65.6]
    """
    parameters = FULL_MODEL_PARAMETERS[model]
    weights_gb = BF16_BYTES_PER_PARAMETER * parameters / 1e9
    states_gb = BYTES_PER_TRAINED_PARAMETER * parameters / 1e9
    gathered_gb = weights_gb if processes > 1 else 0.0
    low, high = (max(gb - weights_gb, 0.0) for gb in lora_memory_gb)
    shared = (
        f" / {processes} processes (ZeRO-3) + {gathered_gb:.1f} GB bf16 model gathered to generate"
        if processes > 1
        else ""
    )
    return StepFigure(
        0.0,
        (states_gb / processes + gathered_gb + low, states_gb / processes + gathered_gb + high),
        f"full fine-tune: {BYTES_PER_TRAINED_PARAMETER} bytes x {parameters:,} parameters = {states_gb:.1f} GB of "
        f"weights, gradients and Adam states (ZeRO, arXiv:1910.02054, section 3.1){shared} + {low:.1f}-{high:.1f} GB "
        f"of activations (the LoRA figure less its {weights_gb:.1f} GB of bf16 weights)",
    )


def step_figure(preset, gpu: str, processes: int = 1) -> StepFigure:
    """Seconds per step and peak memory per GPU of ``preset`` on ``gpu`` with ``processes`` sharing each
    step (:func:`chartrvr_nb.batches.process_batches`): its table entry, scaled to its generations and to
    one process's batch when the table has no entry for them; a full fine-tune's memory is
    :func:`full_finetune_memory`."""
    batches = process_batches(preset, processes)
    figure = _lora_step_figure(preset, gpu, batches.batch_size, batches.grad_accum)
    figure = _for_completion_length(_for_model(figure, preset), preset, gpu)
    if preset.finetune != "full" or gpu == "cpu":
        return figure
    memory = full_finetune_memory(preset.model, processes, figure.memory_gb)
    return StepFigure(
        figure.seconds_per_step,
        memory.memory_gb,
        f"time: {figure.source}, for LoRA (a full fine-tune's weight gradients and optimizer step add time, "
        f"not measured); memory: {memory.source}",
    )


def _weights_gb(model: str, load_in_4bit: bool) -> float:
    """GB of a model's base weights in bf16, or in 4-bit NF4 (the 3B's :data:`QLORA_MEMORY_SAVING_GB` less,
    in proportion)."""
    bf16 = BF16_BYTES_PER_PARAMETER * FULL_MODEL_PARAMETERS[model] / 1e9
    if not load_in_4bit:
        return bf16
    three_b = BF16_BYTES_PER_PARAMETER * FULL_MODEL_PARAMETERS["qwen2-5-3b"] / 1e9
    return bf16 * (three_b - QLORA_MEMORY_SAVING_GB) / three_b


def _for_model(figure: StepFigure, preset) -> StepFigure:
    """A 3B figure made a 7B one: see the module's docstring. Other models keep the figure."""
    if preset.model not in FULL_MODEL_PARAMETERS or preset.model == "qwen2-5-3b":
        return figure
    three_b, weights = _weights_gb("qwen2-5-3b", preset.load_in_4bit), _weights_gb(preset.model, preset.load_in_4bit)
    activations = LAYERS_X_HIDDEN[preset.model] / LAYERS_X_HIDDEN["qwen2-5-3b"]
    time = FULL_MODEL_PARAMETERS[preset.model] / FULL_MODEL_PARAMETERS["qwen2-5-3b"]
    low, high = ((gb - three_b) * activations + weights for gb in figure.memory_gb)
    return StepFigure(
        figure.seconds_per_step * time,
        (low, high),
        figure.source + f"; for {preset.model}: its {weights:.1f} GB of weights, activations x{activations:.2f} "
        f"(layers x hidden size), time x{time:.2f} (weights read per token), not measured",
    )


def _for_completion_length(figure: StepFigure, preset, gpu: str) -> StepFigure:
    """The figure's time scaled to the preset's completion length (memory left as measured)."""
    reference = REFERENCE_COMPLETION_TOKENS["cpu" if gpu == "cpu" else "gpu"]
    if preset.max_completion_length == reference:
        return figure
    return StepFigure(
        figure.seconds_per_step * preset.max_completion_length / reference,
        figure.memory_gb,
        figure.source + f"; time scaled to {preset.max_completion_length}-token completions from {reference}",
    )


def _lora_step_figure(preset, gpu: str, batch_size: int, grad_accum: int) -> StepFigure:
    key = (gpu, preset.num_generations, preset.gradient_checkpointing, preset.load_in_4bit)
    figure = STEP_FIGURES.get(key)
    if figure is None:
        # Only 2 and 4 generations have figures; the seed's model is time proportional to generations.
        base = STEP_FIGURES[(gpu, 2, preset.gradient_checkpointing, preset.load_in_4bit)]
        figure = StepFigure(
            base.seconds_per_step * preset.num_generations / 2,
            base.memory_gb,
            base.source + f"; scaled to {preset.num_generations} generations",
        )
    completions = batch_size * grad_accum
    if gpu == "cpu" or completions == REFERENCE_COMPLETIONS_PER_STEP and batch_size == 2:
        return figure
    low, high = figure.memory_gb
    extra = max(batch_size - 2, 0)
    return StepFigure(
        figure.seconds_per_step * completions / REFERENCE_COMPLETIONS_PER_STEP,
        (low + extra * MEMORY_PER_EXTRA_COMPLETION_GB[0], high + extra * MEMORY_PER_EXTRA_COMPLETION_GB[1]),
        figure.source + f"; scaled to batch {batch_size} x grad accum {grad_accum}",
    )


def estimate(preset, gpu: str = REFERENCE_GPU, world_size: int | None = None) -> Estimate:
    """Steps, time and peak GPU memory for ``preset`` on ``gpu``.

    Args:
        preset: a :class:`~chartrvr_nb.presets.Preset` or a preset name.
        gpu: one of ``a100-40gb``, ``l4``, ``t4``, ``h100``; ignored for CPU presets (smoke).
        world_size: training processes (GPUs, or CPU processes under torchrun); default
            ``$WORLD_SIZE`` (set by torchrun and accelerate launch), else 1. They share each optimizer
            step's completions (:func:`chartrvr_nb.batches.process_batches`), so the steps are the same
            for any number; a step takes the time of one process's share, assuming each GPU keeps its
            one-GPU speed.

    Returns:
        An :class:`Estimate`; ``note`` explains in one line when the seed's step count differs.

    Example:
        >>> est = estimate("fast")
        >>> est.steps, est.seed_steps, est.duration
        (5000, 2500, '41.7 h')
    """
    preset = as_preset(preset)
    world_size = int(os.environ.get("WORLD_SIZE") or 1) if world_size is None else world_size
    if not preset.requires_gpu:
        gpu = "cpu"
    elif gpu not in MEMORY_BANDWIDTH_GBPS:
        raise InvalidSettingsError(
            f"Unknown GPU {gpu!r} for preset {preset.name!r}. Choose one of: {', '.join(MEMORY_BANDWIDTH_GBPS)}."
        )
    steps = run_steps(preset, world_size)
    if steps is None:
        raise InvalidSettingsError(
            f"Preset {preset.name!r} reads {preset.train_data!r}, whose size is unknown: set subset_size "
            "(--subset-size N) to estimate it."
        )
    batches = process_batches(preset, world_size)
    seed_steps = seed_formula_steps(preset.num_samples, preset.batch_size, preset.num_epochs, preset.grad_accum)
    figure = step_figure(preset, gpu, processes=world_size)  # one process's share of a step
    total = steps * figure.seconds_per_step
    note = ""
    if seed_steps != steps:
        prompts = batches.completions / preset.num_generations
        note = (
            f"The seed's formula samples/(batch*2)*epochs gives {seed_steps:,} steps, but TRL's batch counts "
            f"completions, so a step sees {prompts:g} prompt{'' if prompts == 1 else 's'} "
            f"x {preset.num_generations} completions and the trainer runs {steps:,} steps."
        )
    if preset.dedupe and preset.subset_size is None and preset.train_data == AUTHORS_TRAIN_DATA:
        note += (
            f"{' ' if note else ''}With --dedupe this counts {preset.num_samples:,} distinct rows, the authors' own "
            f"count, which the hub set's {AUTHORS_TRAIN_ROWS:,} hold if they are three copies: the data audit "
            "prints the real count when the data loads (pass it as --subset-size to estimate with it)."
        )
    return Estimate(
        preset=preset.name,
        gpu=gpu,
        steps=steps,
        seed_steps=seed_steps,
        seconds_per_step=figure.seconds_per_step,
        total_seconds=total,
        duration=format_duration(total),
        peak_memory_gb=figure.memory_gb,
        figures_source=figure.source,
        note=note,
        processes=world_size,
        batches=batches.describe(),
    )


def format_estimate(est: Estimate) -> str:
    """A short block to print in a notebook or terminal.

    Example:
        >>> print(format_estimate(estimate("paper")))
        Preset 'paper' on A100 40GB
          optimizer steps  136,776 (the seed's formula says 34,194)
          completions      1 process x batch 2 x accumulation 2 = 4 completions = 1 prompt per optimizer step
          time per step    60 s
          total time       ~95.0 days
          GPU memory       12-13 GB peak
          figures          seed guide (A100 40GB)
          note             The seed's formula ... the trainer runs 136,776 steps.
    """
    low, high = est.peak_memory_gb
    per_gpu = " per GPU" if est.processes > 1 else ""
    memory = "n/a (CPU)" if est.gpu == "cpu" else f"{round(low, 1):g}-{round(high, 1):g} GB peak{per_gpu}"
    steps = f"{est.steps:,}" + (f" (the seed's formula says {est.seed_steps:,})" if est.seed_steps != est.steps else "")
    lines = [
        f"Preset {est.preset!r} on {GPU_NAMES[est.gpu]}"
        + (f", {est.processes} processes" if est.processes > 1 else ""),
        f"  optimizer steps  {steps}",
        f"  completions      {est.batches}",
        f"  time per step    {est.seconds_per_step:.3g} s",
        f"  total time       ~{est.duration}",
        f"  GPU memory       {memory}",
        f"  figures          {est.figures_source}",
    ]
    if est.note:
        lines.append(f"  note             {est.note}")
    return "\n".join(lines)
