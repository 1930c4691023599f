"""Bench: evaluation examples per second, batched generation vs one example at a time.

    python -m bench.eval            # GPU: Qwen2.5-VL-3B architecture, random weights, batch 16
    python -m bench.eval --dry      # CPU: the tiny model, batch 8
    python -m bench.eval --quick    # CPU smoke run: 8 examples, 8 tokens

Both sides call ``chartrvr_nb.generation.generate_answers`` on the same model and the same
synthetic benchmark examples (images fill the authors' pixel budget): ``batch_size=1`` is the
original's loop (one prompt, one ``generate`` call per example), ``--batch-size`` is what
``python -m chartrvr_nb eval`` does. Every answer is forced to exactly ``--max-new-tokens``
tokens (end-of-sequence suppressed until then), so both sides generate the same number of tokens
and a random-weight model stands in for a trained one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from bench.common import machine_line, rate, ratio_line, set_threads, stopwatch
from chartrvr_nb.eval_config import DEFAULT_MAX_NEW_TOKENS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="the tiny model on CPU (or GPU), not the 3B")
    parser.add_argument("--quick", action="store_true", help="with the tiny model: 8 examples, 8 tokens, batch 8")
    parser.add_argument("--examples", type=int, help="examples answered by each side (default: 32; 24 with --dry)")
    parser.add_argument("--batch-size", type=int, help="batched side's batch size (default: 16; 8 with --dry)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer, forced (default: 128; 32 with --dry)")
    parser.add_argument("--prompt", default="rvr", choices=list(DEFAULT_MAX_NEW_TOKENS))
    parser.add_argument(
        "--layers", type=int, help="cut the 3B to this many layers: only to check the code on a small machine"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.quick:
        args.dry = True
        args.examples, args.batch_size, args.max_new_tokens = (
            args.examples or 8,
            args.batch_size or 8,
            args.max_new_tokens or 8,
        )
    args.examples = args.examples or (24 if args.dry else 32)
    args.batch_size = args.batch_size or (8 if args.dry else 16)
    args.max_new_tokens = args.max_new_tokens or (32 if args.dry else 128)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    import torch

    from chartrvr_nb.benchmark_data import load_examples, load_image
    from chartrvr_nb.data import fit_to_pixel_budget
    from chartrvr_nb.eval_config import EvalConfig
    from chartrvr_nb.generation import generate_answers
    from chartrvr_nb.presets import AUTHORS_TRAIN_PIXELS

    if not torch.cuda.is_available() and not args.dry and args.layers is None:
        print(
            "error: no GPU is visible. Run with --dry (or --quick) to measure the tiny model on CPU, or on a "
            "GPU runtime for the 3B figures.",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    if args.dry:
        from chartrvr_nb.models import load_model_and_processor
        from chartrvr_nb.tiny import TINY_MAX_PIXELS

        max_pixels = TINY_MAX_PIXELS
        model, processor = load_model_and_processor("tiny", max_pixels=max_pixels)
        model.to("cuda" if torch.cuda.is_available() else "cpu")
        model_name = "tiny Qwen2.5-VL (random, warm-started)"
    else:
        from bench.random_3b import load_random_3b

        max_pixels = AUTHORS_TRAIN_PIXELS
        model, processor = load_random_3b(max_pixels, layers=args.layers)
        model_name = "Qwen2.5-VL-3B architecture, random weights"
        if args.layers is not None:
            model_name += f", cut to {args.layers} layers (a code check, not a 3B figure)"
    load_seconds = time.perf_counter() - started
    # Every answer runs to exactly max_new_tokens: generate_answers copies this generation config.
    model.generation_config.min_new_tokens = args.max_new_tokens

    examples = load_examples("synthetic", limit=args.examples)
    for example in examples:
        example["image"] = fit_to_pixel_budget(load_image(example["image"]), max_pixels, upscale=True)

    def answer(batch_size: int, subset=examples):
        settings = EvalConfig(
            batch_size=batch_size,
            prompt=args.prompt,
            max_new_tokens=args.max_new_tokens,
            max_pixels=max_pixels,
            progress=False,
        )
        return generate_answers(model, processor, subset, settings)

    answer(min(args.batch_size, len(examples)), examples[: args.batch_size])  # warm-up: allocations, kernels
    answer(1, examples[:1])
    one_seconds: list[float] = []
    batched_seconds: list[float] = []
    with stopwatch(one_seconds):
        one_at_a_time = answer(1)
    with stopwatch(batched_seconds):
        batched = answer(args.batch_size)

    n = len(examples)
    same = sum(a["reply"] == b["reply"] for a, b in zip(one_at_a_time, batched))
    one_rate, batched_rate = n / one_seconds[0], n / batched_seconds[0]
    print(machine_line())
    print(f"model: {model_name}, {next(model.parameters()).dtype}, loaded in {load_seconds:.1f} s (not counted)")
    print(
        f"examples: {n} synthetic charts filling {max_pixels:,} pixels, prompt {args.prompt!r}, "
        f"{args.max_new_tokens} new tokens each (forced), greedy"
    )
    print()
    print(f"{'side':<24} {'seconds':>9} {'examples/s':>11} {'tokens/s':>9}")
    for name, seconds, value in (
        ("one at a time", one_seconds[0], one_rate),
        (f"batched ({args.batch_size})", batched_seconds[0], batched_rate),
    ):
        print(f"{name:<24} {seconds:>9.2f} {rate(value):>11} {rate(value * args.max_new_tokens):>9}")
    print(
        f"identical replies, batched vs one at a time: {same}/{n} "
        "(padding changes floating-point rounding, so greedy paths may part on near-ties)"
    )
    if torch.cuda.is_available():
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    print(ratio_line(f"examples/s at batch {args.batch_size}", "batched", batched_rate, "one-at-a-time", one_rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
