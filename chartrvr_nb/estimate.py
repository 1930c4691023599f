"""How many optimizer steps a preset really runs, and roughly how long and how much GPU memory.

**Steps.** TRL's ``per_device_train_batch_size`` counts completions, not prompts, so one
optimizer step consumes ``batch_size * grad_accum / num_generations`` prompts. With TRL 1.16
and its default generation batch, ``steps = samples * num_generations / (batch_size *
grad_accum) * epochs`` (rounding below), e.g. 136,776 for the paper preset. The seed guide's
``samples / (batch_size * 2) * epochs`` (34,194) is off by the factor ``num_generations``.
:func:`trainer_steps` reproduces TRL's count; :func:`seed_formula_steps` the seed's.

**Time and memory.** Seconds per step and peak GPU memory come from :mod:`chartrvr_nb.step_figures`
(the seed guide's A100 figures, and those derived from them, labelled so); :func:`estimate` puts
steps, time and memory together and :func:`format_estimate` prints them.

:func:`run_steps` is the one check that a preset can train at all (processes, rows, generation
batch), shared by ``estimate`` and ``train`` before any model loads.
"""

from __future__ import annotations

import math
import os
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
from .step_figures import GPU_NAMES, MEMORY_BANDWIDTH_GBPS, REFERENCE_GPU, step_figure


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
