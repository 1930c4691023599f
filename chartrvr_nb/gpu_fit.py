"""Does a preset fit a GPU, and this machine: the memory verdict, the setup check, the estimate here.

The figures come from :mod:`chartrvr_nb.estimate` and :mod:`chartrvr_nb.step_figures` (steps, time and peak
memory per GPU); this
module holds them against a GPU's memory (:func:`fit_verdict`, :func:`fits_gpu`, with ~1 GB of CUDA
overhead on top of the peak) and against the machine the code runs on (:func:`check_preset`,
:func:`local_estimate`, via :func:`chartrvr_nb.env.gpu_info`), and tabulates a preset over the GPUs
Colab offers (:func:`estimate_table`, the setup notebook's table).
"""

from __future__ import annotations

from . import env
from .estimate import estimate, format_estimate
from .presets import as_preset
from .step_figures import GPU_NAMES, REFERENCE_GPU, gpu_key, step_figure

GPU_MEMORY_GB = {"a100-40gb": 40.0, "l4": 24.0, "t4": 16.0, "h100": 80.0}
CUDA_OVERHEAD_GB = 1.0  # CUDA context and allocator fragmentation on top of the measured peak
# The GPUs Colab offers, smallest first: the rows of the setup notebook's estimate table.
COLAB_GPUS: tuple[str, ...] = ("t4", "l4", "a100-40gb")


def fit_verdict(memory_gb: tuple[float, float], gpu_memory_gb: float) -> str:
    """Whether a peak-memory range (low, high) fits a GPU, with ~1 GB of CUDA overhead on top.

    Returns:
        ``"yes"`` when the high end fits, ``"maybe"`` when only the low end does, else ``"no"``.

    Example:
        >>> fit_verdict((12.0, 13.0), 16.0), fit_verdict((12.0, 15.5), 16.0), fit_verdict((15.0, 18.0), 15.0)
        ('yes', 'maybe', 'no')
    """
    low, high = memory_gb
    if high + CUDA_OVERHEAD_GB <= gpu_memory_gb:
        return "yes"
    return "maybe" if low + CUDA_OVERHEAD_GB <= gpu_memory_gb else "no"


def fits_gpu(preset, gpu_memory_gb: float, processes: int = 1) -> tuple[bool, str]:
    """Whether ``preset``'s peak memory (plus ~1 GB CUDA overhead) fits a GPU of that size.

    Args:
        preset: a :class:`~chartrvr_nb.presets.Preset` or a preset name.
        gpu_memory_gb: the GPU's total memory, e.g. ``chartrvr_nb.env.gpu_info().memory_gb``.
        processes: GPUs training together (a full fine-tune's model states are shared under ZeRO-3).

    Returns:
        ``(fits, message)``; the message gives the figures and, when it does not fit, what to change.

    Example:
        >>> fits_gpu("paper", 40.0)
        (True, "Preset 'paper' needs about 12-13 GB (seed guide (A100 40GB)); 40 GB available.")
    """
    preset = as_preset(preset)
    if not preset.requires_gpu:
        return True, f"Preset {preset.name!r} runs on CPU; no GPU memory needed."
    figure = step_figure(preset, REFERENCE_GPU, processes)
    low, high = figure.memory_gb
    needs = (
        f"Preset {preset.name!r} needs about {round(low, 1):g}-{round(high, 1):g} GB"
        + (f" per GPU on {processes} GPUs" if processes > 1 else "")
        + f" ({figure.source}); {gpu_memory_gb:g} GB available"
    )
    verdict = fit_verdict(figure.memory_gb, gpu_memory_gb)
    if verdict == "yes":
        return True, needs + "."
    if preset.finetune == "full":
        return False, f"{needs}: it {'may not' if verdict == 'maybe' else 'will not'} fit. " + _zero3_advice(
            preset, gpu_memory_gb
        )
    return False, f"{needs}: it {'may not' if verdict == 'maybe' else 'will not'} fit.\n" + env.oom_advice(
        preset
    ).split("\n", 1)[1]


def _zero3_advice(preset, gpu_memory_gb: float) -> str:
    """How many GPUs of that size a full fine-tune needs under DeepSpeed ZeRO-3, as a next step."""
    for processes in (2, 4, 8):
        if fit_verdict(step_figure(preset, REFERENCE_GPU, processes).memory_gb, gpu_memory_gb) == "yes":
            return (
                f"Under DeepSpeed ZeRO-3 its model states are shared by the GPUs: {processes} such GPUs fit "
                f"(accelerate launch --config_file deepspeed_zero3.yaml --num_processes {processes} main.py "
                f"--mode grpo --preset {preset.name}); or train a LoRA adapter (preset paper)."
            )
    return "Even 8 such GPUs under DeepSpeed ZeRO-3 do not fit it: use larger GPUs, or a LoRA adapter (preset paper)."


def estimate_report(preset, gpu: str = REFERENCE_GPU, processes: int | None = None) -> str:
    """:func:`format_estimate` of ``preset`` on ``gpu``, with a last line saying whether it fits that GPU,
    and what to change when it does not.

    Example:
        >>> print(estimate_report("full-ft", "a100-40gb").splitlines()[-1])  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
          fits             no: 64.6-65.6 GB + ~1 GB of CUDA overhead exceed the 40 GB of the A100 40GB.
          Under DeepSpeed ZeRO-3 ... 4 such GPUs fit ...
    """
    est = estimate(preset, gpu=gpu, world_size=processes)
    text = format_estimate(est)
    if est.gpu == "cpu":
        return text
    preset, memory = as_preset(preset), GPU_MEMORY_GB[est.gpu]
    low, high = (round(gb, 1) for gb in est.peak_memory_gb)
    verdict = fit_verdict(est.peak_memory_gb, memory)
    line = f"{low:g}-{high:g} GB + ~{CUDA_OVERHEAD_GB:g} GB of CUDA overhead"
    if verdict == "yes":
        return text + f"\n  fits             yes: {line}, within the {memory:g} GB of the {GPU_NAMES[est.gpu]}."
    if preset.finetune == "full":
        advice = _zero3_advice(preset, memory)
    else:
        advice = env.oom_advice(preset).split("\n", 1)[1].replace("\n", " ")
    sign = "may exceed" if verdict == "maybe" else "exceed"
    return (
        text + f"\n  fits             {verdict}: {line} {sign} the {memory:g} GB of the {GPU_NAMES[est.gpu]}. {advice}"
    )


# --------------------------------------------------------------------------------------------
# This machine (the notebooks' setup and training cells)
# --------------------------------------------------------------------------------------------


def local_estimate(preset) -> str:
    """:func:`format_estimate` for this machine's GPU.

    Without a GPU (or on one the estimator has no figures for) a GPU preset gets the reference
    A100 40GB figures, the seed guide's, with a first line saying so.
    """
    preset = as_preset(preset)
    gpu = env.gpu_info()
    key = gpu_key(gpu.name) if gpu else None
    text = estimate_report(preset, gpu=key or REFERENCE_GPU)
    if preset.requires_gpu and key is None:
        found = f"no figures were measured on this GPU ({gpu.name})" if gpu else "no GPU was found on this machine"
        text = (
            f"NOTE: {found}, so these are the figures of the reference GPU, the {GPU_NAMES[REFERENCE_GPU]} "
            "of the seed guide.\n" + text
        )
    return text


def check_preset(preset) -> str:
    """Whether ``preset`` can run on this machine, and what to change when it cannot.

    Args:
        preset: a Preset or preset name.

    Returns:
        One or more lines starting with ``OK`` or ``PROBLEM``.
    """
    preset = as_preset(preset)
    gpu = env.gpu_info()
    if not preset.requires_gpu:
        return f"OK: preset {preset.name!r} trains the tiny model on CPU; it runs anywhere in a few minutes."
    if gpu is None:
        return (
            f"PROBLEM: preset {preset.name!r} needs a CUDA GPU and this runtime has none. In Colab: Runtime > "
            "Change runtime type > T4 (preset colab-t4) or L4/A100 (the others). Without a GPU use preset 'smoke'."
        )
    fits, message = fits_gpu(preset, gpu.memory_gb)
    lines = [("OK: " if fits else "PROBLEM: ") + message]
    if not gpu.bf16 and not preset.load_in_4bit:
        lines.append(
            f"NOTE: the {gpu.name} has no native bfloat16 (compute capability "
            f"{'.'.join(map(str, gpu.compute_capability))}), so 16-bit math is emulated and slow here; "
            "preset colab-t4 (4-bit weights) is the one made for this GPU."
        )
    return "\n".join(lines)


def estimate_table(preset, gpus: tuple[str, ...] = COLAB_GPUS):
    """Steps, time and memory of ``preset`` on each GPU, with whether it fits (a DataFrame).

    A CPU preset (smoke) gives one CPU row.
    """
    import pandas as pd

    preset = as_preset(preset)
    rows = []
    for gpu in gpus if preset.requires_gpu else ("cpu",):
        est = estimate(preset, gpu=gpu)
        low, high = est.peak_memory_gb
        rows.append(
            {
                "GPU": GPU_NAMES[gpu],
                "optimizer steps": est.steps,
                "seed formula steps": est.seed_steps,
                "s / step": round(est.seconds_per_step, 2),
                "total time": est.duration,
                "GPU memory (GB)": "n/a" if gpu == "cpu" else f"{low:g}-{high:g}",
                "fits": "yes" if gpu == "cpu" else fit_verdict(est.peak_memory_gb, GPU_MEMORY_GB[gpu]),
            }
        )
    return pd.DataFrame(rows)
