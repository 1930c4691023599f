"""Bench: seconds per GRPO optimizer step and peak GPU memory, generation backends side by side.

    python -m bench.train_step                      # GPU: Qwen2.5-VL-3B architecture, random weights
    python -m bench.train_step --preset moderate    # 2 generations (the seed's 30 s/step row)
    python -m bench.train_step --dry                # CPU: the tiny model, a few real GRPO steps

Each variant is a real run through the trainer ``chartrvr_nb.trainer`` builds: the preset mapped by
``grpo_args.grpo_config``, the project's GRPOTrainer subclass, the seven rewards, the fork's LoRA,
synthetic charts resized to fill the preset's pixel budget. Completions are forced to exactly
``--completion-length`` tokens (end-of-sequence suppressed until then), so steps are comparable
with the seed's 60 s (4 generations) and 30 s (2 generations) at 768 tokens, and across variants.

Variants: HF generation with gradient checkpointing on (the presets' default) and off, and, when
vLLM is importable and a GPU is there, vLLM colocate with checkpointing on; ``--variants
hf-compile`` adds ``torch.compile`` (opt-in: compiling takes minutes). The first step of each
variant is a warm-up (allocations, kernel selection, compilation, vLLM start-up), reported apart.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

from bench.common import gib, machine_line, ratio_line, set_threads

VARIANTS = {
    "hf": "HF generate, grad ckpt on",
    "hf-nockpt": "HF generate, grad ckpt off",
    "vllm": "vLLM colocate, grad ckpt on",
    "hf-compile": "HF generate, ckpt on, compiled",  # opt-in: compiling takes minutes
}


def _step_timer():
    from transformers import TrainerCallback

    from bench.common import synchronize

    class StepTimer(TrainerCallback):
        """Wall time of every optimizer step (generation, rewards, forward/backward, update)."""

        def __init__(self):
            self.seconds: list[float] = []
            self._last = None

        def on_train_begin(self, args, state, control, **kwargs):
            synchronize()
            self._last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            now = time.perf_counter()
            self.seconds.append(now - self._last)
            self._last = now

    return StepTimer()


def bench_dataset(rows: int, max_pixels: int, seed: int):
    """Synthetic training rows with charts filling the pixel budget, prepared as ``train`` prepares them."""
    from chartrvr_nb.data import fit_to_pixel_budget, make_synthetic_dataset, prepare_grpo_dataset

    dataset = make_synthetic_dataset(rows, seed=seed)
    dataset = dataset.map(lambda row: {"image": fit_to_pixel_budget(row["image"], max_pixels, upscale=True)})
    return prepare_grpo_dataset(dataset, max_pixels=max_pixels)


def load_model(args, preset):
    """The tiny model (``--dry``) or the random-weight 3B, as the trainer will get it."""
    if args.dry:
        from chartrvr_nb.models import load_model_and_processor

        return load_model_and_processor(preset.model, max_pixels=preset.max_pixels)
    from bench.random_3b import load_random_3b

    return load_random_3b(preset.max_pixels, layers=args.layers)


def run_variant(args, variant: str, dataset) -> dict:
    """Train ``--steps`` + 1 optimizer steps with one variant; its step times and peak memory."""
    import torch

    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.presets import get_preset
    from chartrvr_nb.trainer import build_trainer

    preset = get_preset(
        args.preset,
        max_completion_length=args.completion_length,
        gradient_checkpointing=variant != "hf-nockpt",
        use_vllm=variant == "vllm",
        torch_compile=variant == "hf-compile",
        **({"num_generations": args.num_generations} if args.num_generations else {}),
    )
    length = preset.max_completion_length
    force_length = {"min_tokens": length, "ignore_eos": True} if preset.use_vllm else {"min_new_tokens": length}
    model, processor = load_model(args, preset)
    timer = _step_timer()
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as output_dir:
        config = grpo_config(
            preset,
            output_dir,
            max_steps=args.steps + 1,
            generation_kwargs=force_length,
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
        )
        trainer = build_trainer(preset, model, processor, dataset, config, [timer], f"{output_dir}/samples.jsonl")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        lengths = [
            record["completions/mean_length"]
            for record in trainer.state.log_history
            if "completions/mean_length" in record
        ]
    result = {
        "variant": variant,
        "preset": preset,
        "warmup_s": timer.seconds[0],
        "step_s": statistics.median(timer.seconds[1:]),
        "completion_tokens": statistics.mean(lengths) if lengths else float("nan"),
    }
    if torch.cuda.is_available():
        result["peak_allocated"] = torch.cuda.max_memory_allocated()
        result["peak_reserved"] = torch.cuda.max_memory_reserved()
    del trainer, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def peak_rss_bytes() -> float:
    """The process's peak resident memory (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dry", action="store_true", help="the tiny model and the smoke preset: a CPU check of the same code path"
    )
    parser.add_argument("--quick", action="store_true", help="with --dry: 2 timed steps, 8-token completions")
    parser.add_argument("--preset", help="preset to measure (default: paper; smoke with --dry)")
    parser.add_argument("--num-generations", type=int, help="override the preset's generations per prompt")
    parser.add_argument(
        "--completion-length",
        type=int,
        help="tokens generated per completion, forced (default: the preset's, 768; 32 with --dry)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant, after one warm-up")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        help="what to compare (default: hf hf-nockpt, plus vllm on a GPU with vLLM installed)",
    )
    parser.add_argument(
        "--layers", type=int, help="cut the 3B to this many layers: only to check the code on a small machine"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.dry = True
        args.steps = min(args.steps, 2)
        args.completion_length = args.completion_length or 8
    args.preset = args.preset or ("smoke" if args.dry else "paper")
    args.completion_length = args.completion_length or (32 if args.dry else None)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import importlib.util

    import torch

    from chartrvr_nb.presets import get_preset

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry and args.layers is None:
        print(
            "error: no GPU is visible. Run with --dry to check the same GRPO path on CPU with the tiny "
            "model, or on a GPU runtime for the 3B figures.",
            file=sys.stderr,
        )
        return 2
    vllm_ready = cuda and importlib.util.find_spec("vllm") is not None
    variants = args.variants or ["hf", "hf-nockpt"] + (["vllm"] if vllm_ready else [])
    if "vllm" in variants and not vllm_ready:
        print("error: the vllm variant needs a GPU and vLLM (pip install 'vllm>=0.22,<=0.31').", file=sys.stderr)
        return 2
    preset = get_preset(args.preset)
    args.completion_length = args.completion_length or preset.max_completion_length
    generations = args.num_generations or preset.num_generations
    prompts_per_step = preset.batch_size * preset.grad_accum // generations
    dataset = bench_dataset(prompts_per_step * (args.steps + 1) * 2, preset.max_pixels, args.seed)

    model_name = "tiny Qwen2.5-VL (random, warm-started)" if args.dry else "Qwen2.5-VL-3B architecture, random weights"
    if args.layers is not None and not args.dry:
        model_name += f", cut to {args.layers} layers (a code check, not a 3B figure)"
    results = [run_variant(args, variant, dataset) for variant in variants]

    print(machine_line())
    print(
        f"model: {model_name}; preset {args.preset}: {generations} generations x batch {preset.batch_size} "
        f"x grad accum {preset.grad_accum} = {preset.batch_size * preset.grad_accum} completions per optimizer "
        f"step; completions forced to {args.completion_length} tokens; images fill {preset.max_pixels:,} pixels"
    )
    print()
    memory = "   peak allocated / reserved" if cuda else ""
    print(f"{'variant':<28} {'s/step':>8} {'warm-up step':>13} {'tokens/completion':>18}{memory}")
    for result in results:
        line = (
            f"{VARIANTS[result['variant']]:<28} {result['step_s']:>8.3f} {result['warmup_s']:>11.2f} s"
            f" {result['completion_tokens']:>18.0f}"
        )
        if cuda:
            line += f"   {gib(result['peak_allocated'])} / {gib(result['peak_reserved'])}"
        print(line)
    if not cuda:
        print(f"peak resident memory of the process (all variants): {gib(peak_rss_bytes())}")
    print(f"s/step is the median of {args.steps} steps after the warm-up step")

    by_name = {result["variant"]: result for result in results}
    base = by_name.get("hf")
    if base is None:
        return 0
    for variant in ("hf-nockpt", "hf-compile", "vllm"):
        if variant in by_name:
            print(
                ratio_line(
                    f"optimizer steps/hour ({args.preset})",
                    VARIANTS[variant],
                    3600 / by_name[variant]["step_s"],
                    VARIANTS["hf"],
                    3600 / base["step_s"],
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
