"""Seconds per optimizer step and peak GPU memory of a preset on a GPU: the reference figures and their scaling.

The only figures we have are the seed guide's, for an A100 40GB at batch 2,
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

Caveat: the seed's figures were stated per *seed* step. In TRL a step processes ``batch_size *
grad_accum`` completions whatever ``num_generations`` is, so the seed's halving of the step
time for 2 generations is probably optimistic; its one logged rate (52.66 s/it at 34,194 total
steps, which is TRL's count for 1 epoch with 4 generations) agrees with the 60 s figure.

:func:`step_figure` is the figure for one preset, GPU and number of processes;
:func:`chartrvr_nb.estimate.estimate` multiplies its time by the steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .batches import process_batches

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
