"""Bench: the seven rewards as TRL calls them (one call per batch) vs one completion at a time.

    python -m bench.rewards            # 512 completions = 128 prompts x 4 generations, 4 training steps
    python -m bench.rewards --quick    # 8 completions, 2 steps: a smoke run

The batch is realistic: prompts from the synthetic generator, ``--generations`` completions per
prompt sharing one reference reasoning (as in a GRPO group), a mix of good and broken answers
(exact, reworded, wrong answer or type, broken or fenced table, answer only, a long ramble,
cut off mid-table). The baseline is the original's way: every reward called on one completion at
a time, and the process reward encoding the completion and its reference separately, each call
its own ``encode``. The batched side is ``chartrvr_nb.rewards`` unchanged.

Several training steps are simulated on the same prompts with new completions each step, so the
reference cache shows: step 1 encodes every distinct reference once (as all through the first
epoch of a real run, where every row is new), later steps find them cached (as from the second
epoch on: the cache holds 50,000 references, more than the 34,194 training rows). Both figures
are printed, never blended. The baseline has no cache, so its cost is the same every step.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import machine_line, rate, ratio_line, set_threads, stopwatch

# Completion kinds and how often a policy mid-training produces them (weights, not fractions).
VARIANTS: dict[str, int] = {
    "exact": 3,
    "reworded": 3,
    "wrong_answer": 2,
    "wrong_type": 1,
    "broken_table": 1,
    "fenced_table": 1,
    "answer_only": 1,
    "rambling": 1,
    "cut_off": 1,
}
REWORDINGS = ("Looking at the chart,", "From the table,", "Reading the axis,", "Next,", "So")
AGREEMENT_TOLERANCE = 1e-4


def make_completion(row: dict, variant: str, rng: random.Random) -> str:
    """One completion of kind ``variant`` for a synthetic training row."""
    from chartrvr_nb.inspection import reference_steps
    from chartrvr_nb.prompts import CHART_TYPES, format_completion, table_to_json

    steps = reference_steps(row["reasoning"])
    chart_type, table, label = row["chart_type"], row["table"], row["label"]
    if variant == "exact":
        return format_completion(chart_type, table, steps, label)
    if variant == "reworded":
        reworded = [f"{rng.choice(REWORDINGS)} {step[0].lower()}{step[1:]}" for step in steps]
        return format_completion(chart_type, table, reworded, label)
    if variant == "wrong_answer":
        return format_completion(chart_type, table, steps[:-1] + ["I am not sure."], label + "1")
    if variant == "wrong_type":
        other = rng.choice([t for t in CHART_TYPES if t != chart_type])
        return format_completion(other, table, steps, label)
    if variant == "broken_table":
        text = format_completion(chart_type, table, steps, label)
        serialised = table_to_json(table)
        return text.replace(serialised, serialised[: len(serialised) // 2])
    if variant == "fenced_table":
        text = format_completion(chart_type, table, steps, label)
        serialised = table_to_json(table)
        return text.replace(serialised, f"```json\n{serialised}\n```")
    if variant == "answer_only":
        return f"<answer>{label}</answer>"
    if variant == "rambling":  # a 768-token-like ramble that still closes its tags
        ramble = [steps[i % len(steps)] + " Let me check that again." for i in range(40)]
        return format_completion(chart_type, table, ramble, label)
    if variant == "cut_off":  # hit the completion length limit inside the table
        text = format_completion(chart_type, table, steps, label)
        return text[: text.index("<table>") + 20]
    raise ValueError(f"unknown completion variant {variant!r}")


def make_step_batch(rows: Sequence[dict], generations: int, step: int, seed: int) -> tuple[list[str], dict]:
    """The completions of one training step: ``generations`` per row, and the reward columns.

    Columns are repeated per completion, exactly as TRL passes dataset columns to rewards.
    """
    completions: list[str] = []
    columns: dict[str, list] = {"label": [], "chart_type": [], "table": [], "reasoning": []}
    names, weights = list(VARIANTS), list(VARIANTS.values())
    for index, row in enumerate(rows):
        # The mix of kinds is the same every step, so steps differ in cost only by what is cached;
        # the details (rewordings, wrong chart types) change from step to step.
        kinds = random.Random(f"bench-rewards-{seed}-{index}").choices(names, weights, k=generations)
        rng = random.Random(f"bench-rewards-{seed}-{step}-{index}")
        for variant in kinds:
            completions.append(make_completion(row, variant, rng))
            for name in columns:
                columns[name].append(row[name])
    return completions, columns


def original_process_reward(
    completions: Sequence[Any], reasoning: Sequence[Any] | None = None, **kwargs
) -> list[float]:
    """The original's process reward: one ``encode`` for the completion, one for its reference."""
    from sentence_transformers import util

    from chartrvr_nb.answers import completion_text
    from chartrvr_nb.embedding import load_embedder
    from chartrvr_nb.rewards import read_steps_text

    embedder = load_embedder()
    scores = []
    for completion, reference in zip(completions, reasoning or [None] * len(completions)):
        steps = read_steps_text(completion_text(completion))
        if not steps or not isinstance(reference, str) or not reference.strip():
            scores.append(0.0)
            continue
        steps_vector = embedder.encode(steps, convert_to_tensor=True, show_progress_bar=False)
        reference_vector = embedder.encode(reference, convert_to_tensor=True, show_progress_bar=False)
        scores.append(float(util.cos_sim(steps_vector, reference_vector)))
    return scores


def one_at_a_time(fn: Callable) -> Callable:
    """``fn`` called once per completion, with that completion's columns."""

    def score(completions: Sequence[Any], **columns) -> list[float]:
        scores = []
        for i, completion in enumerate(completions):
            scores.extend(fn([completion], **{name: [values[i]] for name, values in columns.items()}))
        return scores

    return score


def score_all(rewards: dict[str, Callable], completions: list[str], columns: dict) -> tuple[dict, dict]:
    """Every reward on the batch, in order, as TRL does: ``(scores, seconds)`` per reward name."""
    scores, seconds = {}, {}
    for name, fn in rewards.items():
        spent: list[float] = []
        with stopwatch(spent):
            scores[name] = fn(completions, **columns)
        seconds[name] = spent[0]
    return scores, seconds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rewards", description=__doc__.split("\n")[0])
    parser.add_argument("--completions", type=int, default=512, help="completions per training step (default: 512)")
    parser.add_argument(
        "--generations", type=int, default=4, help="completions per prompt, sharing a reference (default: 4)"
    )
    parser.add_argument(
        "--steps", type=int, default=4, help="simulated training steps on the same prompts (default: 4)"
    )
    parser.add_argument(
        "--baseline-share",
        type=float,
        default=0.25,
        help="share of each step's prompts also scored one at a time, just before the batched "
        "call, so both sides see the same machine load (default: 0.25)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="8 completions, 2 steps: checks the bench runs")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.quick:
        args.completions, args.steps, args.baseline_share = 8, 2, 1.0
    if args.completions < args.generations or args.completions % args.generations:
        parser.error("--completions must be a positive multiple of --generations")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not 0 < args.baseline_share <= 1:
        parser.error("--baseline-share must be in (0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    from chartrvr_nb import embedding, rewards
    from chartrvr_nb.data import make_synthetic_rows

    prompts = args.completions // args.generations
    rows = make_synthetic_rows(prompts, seed=args.seed, render=False)
    batches = [make_step_batch(rows, args.generations, step, args.seed) for step in range(args.steps)]
    # The baseline's cost per completion does not depend on the batch, so a slice of whole groups
    # measures it; running it inside every step keeps both sides under the same load.
    sliced = max(1, round(prompts * args.baseline_share)) * args.generations

    started = time.perf_counter()
    embedder = embedding.load_embedder()
    load_seconds = time.perf_counter() - started
    batched = dict(rewards.REWARDS)
    baseline = {name: one_at_a_time(fn) for name, fn in rewards.REWARDS.items()}
    baseline["process"] = original_process_reward  # already one at a time, two encodes per completion
    # First-call costs (lazy imports, allocations, kernels chosen per tensor shape) belong to neither
    # side: warm both up on a batch of the same size from other prompts, then empty the cache.
    warm_rows = make_synthetic_rows(prompts, seed=args.seed + 1, render=False)
    warm_completions, warm_columns = make_step_batch(warm_rows, args.generations, 0, args.seed + 1)
    score_all(batched, warm_completions, warm_columns)
    score_all(baseline, warm_completions[:sliced], {name: values[:sliced] for name, values in warm_columns.items()})
    embedding.clear_reference_cache()  # step 1 starts cold, as a fresh training run does

    base_seconds, step_seconds, worst = [], [], dict.fromkeys(rewards.REWARDS, 0.0)
    for completions, columns in batches:
        base_scores, seconds = score_all(
            baseline, completions[:sliced], {name: values[:sliced] for name, values in columns.items()}
        )
        base_seconds.append(seconds)
        scores, seconds = score_all(batched, completions, columns)
        step_seconds.append(seconds)
        for name in worst:
            worst[name] = max([worst[name]] + [abs(a - b) for a, b in zip(scores[name], base_scores[name])])

    first = batches[0]
    encoded = [text for text in map(rewards.read_steps_text, first[0]) if text]
    print(machine_line())
    print(
        f"embedder: all-MiniLM-L6-v2 on {embedder.device} (max_seq_length {embedder.max_seq_length}), "
        f"loaded in {load_seconds:.1f} s (not counted)"
    )
    print(
        f"batch: {args.completions} completions per step = {prompts} prompts x {args.generations} generations, "
        f"{args.steps} steps on the same prompts; step 1 has {len(encoded)} process texts to encode "
        f"({len(set(encoded))} distinct) and {len(set(first[1]['reasoning']))} distinct references"
    )
    print(
        f"one-at-a-time: {sliced} completions of each step (the first {sliced // args.generations} prompts), "
        "scored just before the batched call, so each ratio compares rates measured side by side"
    )

    def full(seconds: dict) -> float:
        return sum(seconds.values())

    def pooled_rate(per_step: list[dict], size: int, name: str) -> float:
        total = sum(full(s) if name == "full set" else s[name] for s in per_step)
        return size * len(per_step) / total

    later = "step 2" if args.steps == 2 else f"steps 2-{args.steps}"
    periods = [("step 1", slice(0, 1))] + ([(later, slice(1, None))] if args.steps > 1 else [])
    print()
    print(
        f"{'reward':<12} "
        + " ".join(f"{'one-at-a-time / batched, ' + label:>38}" for label, _ in periods)
        + "    (completions/s; each pair measured in the same steps)"
    )
    for name in list(rewards.REWARDS) + ["full set"]:
        cells = []
        for _, steps in periods:
            base_rate = pooled_rate(base_seconds[steps], sliced, name)
            batched_rate = pooled_rate(step_seconds[steps], args.completions, name)
            cells.append(f"{rate(base_rate):>13} / {rate(batched_rate):>11} ({batched_rate / base_rate:5.2f}x)")
        print(f"{name:<12} " + " ".join(f"{cell:>38}" for cell in cells))
    print(
        "full set per step (completions/s): batched "
        + ", ".join(rate(args.completions / full(s)) for s in step_seconds)
        + "; one-at-a-time "
        + ", ".join(rate(sliced / full(s)) for s in base_seconds)
    )

    print()
    print(
        "agreement with one-at-a-time: max |difference| = "
        + ", ".join(f"{name} {value:.1e}" for name, value in worst.items())
    )
    if max(worst.values()) > AGREEMENT_TOLERANCE:
        print(f"error: batched scores differ from one-at-a-time by more than {AGREEMENT_TOLERANCE}", file=sys.stderr)
        return 1
    for label, steps in periods:
        cache = "cold reference cache" if label == "step 1" else "references cached"
        print(
            ratio_line(
                f"full-set completions/s, {'first' if label == 'step 1' else 'steady state'} ({label}, {cache})",
                "batched",
                pooled_rate(step_seconds[steps], args.completions, "full set"),
                "one-at-a-time",
                pooled_rate(base_seconds[steps], sliced, "full set"),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
