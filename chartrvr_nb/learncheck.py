"""The learn-check: does GRPO, through the same ``train()`` users run, improve held-out charts?

``python -m chartrvr_nb learn-check`` evaluates the ``tiny-learn`` model greedily on held-out
synthetic charts, trains it with the ``learn-check`` preset (GRPO, the seven rewards, TRL's
trainer, via :func:`chartrvr_nb.train.train`), evaluates the adapter on the same charts (via
:func:`chartrvr_nb.evaluate.run_evaluation`, scored with the training rewards), and reports each
reward's mean before and after with a 95% paired-bootstrap interval of the gain. It passes
(``LEARNED``) only when the total reward gains at least :data:`MIN_TOTAL_GAIN` with its interval
above 0 and a reward that needs the chart (type, answer or table) gains with its interval above 0.

What it shows: rewards, advantages and gradients point the right way, end to end, on two CPU
cores in minutes. What it does not show: chart understanding at 3B scale. The ``tiny-learn``
warm start (``chartrvr_nb.warm_start.TINY_RECIPES``) teaches the format but guesses the chart type at
random and usually drops the newline the format reward needs; GRPO has to fix both.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import UserError
from .benchmarks import get_benchmark
from .eval_rewards import compare_rewards, reward_scores
from .presets import EvalConfig, Preset, get_preset

logger = logging.getLogger(__name__)

PRESET = "learn-check"
HELD_OUT_EXAMPLES = 200
MIN_TOTAL_GAIN = 1.0
# The rewards that can only improve by looking at the chart (or its question): type, answer, table.
IMAGE_REWARDS = ("chart_type", "accuracy", "table_style")
REPORT_FILE = "learn_check.json"
FIGURE_FILE = "before_after.png"
_EVAL_BATCH = 25


def held_out_seed(preset: Preset) -> int:
    """The generator seed of the held-out charts: the evaluation benchmark's, never a training seed."""
    return get_benchmark(preset.eval_dataset).synthetic_seed


def learned(metrics: Mapping[str, Mapping[str, Any]]) -> bool:
    """The verdict: the total gains at least ``MIN_TOTAL_GAIN`` with its interval above 0, and a
    chart-dependent reward (:data:`IMAGE_REWARDS`) gains with its interval above 0.

    Example:
        >>> total = {"gain": 1.4, "ci95": [0.9, 1.9]}
        >>> learned({"total_reward": total, "chart_type": {"gain": 0.2, "ci95": [0.1, 0.3]}})
        True
        >>> learned({"total_reward": total, "chart_type": {"gain": 0.1, "ci95": [-0.1, 0.3]}})
        False
    """
    total = metrics["total_reward"]
    return (
        total["gain"] >= MIN_TOTAL_GAIN
        and total["ci95"][0] > 0
        and any(name in metrics and metrics[name]["ci95"][0] > 0 for name in IMAGE_REWARDS)
    )


def shortened(report: Mapping[str, Any]) -> bool:
    """Whether a report is of a shortened check (fewer held-out charts, or training stopped early): a smoke
    check of the pipeline whose verdict means nothing.

    Example:
        >>> shortened({"held_out_examples": 200, "settings": {"max_steps": None}})
        False
        >>> shortened({"held_out_examples": 4, "settings": {"max_steps": 2}})
        True
    """
    max_steps = (report.get("settings") or {}).get("max_steps")
    return report["held_out_examples"] < HELD_OUT_EXAMPLES or max_steps is not None


def format_report(report: Mapping[str, Any]) -> str:
    """The before/after table, where the report and figure are, and the verdict line (``LEARNED ...`` or
    ``NOT LEARNED ...``), last; a shortened check (:func:`shortened`) ends in ``SHORTENED CHECK ...``, which says
    it is no verdict."""
    metrics = report["metrics"]
    lines = [f"{'reward':<14}{'before':>8}{'after':>8}{'gain':>8}   95% CI of the gain"]
    for name, row in metrics.items():
        low, high = row["ci95"]
        lines.append(
            f"{name:<14}{row['before']:>8.3f}{row['after']:>8.3f}{row['gain']:>+8.3f}   [{low:+.3f}, {high:+.3f}]"
        )
    total = metrics["total_reward"]
    image = ", ".join(
        f"{name} {metrics[name]['gain']:+.3f} [{metrics[name]['ci95'][0]:+.3f}, {metrics[name]['ci95'][1]:+.3f}]"
        for name in IMAGE_REWARDS
    )
    if report.get("files"):
        lines.append(f"Report: {report['files']['report']}; figure: {report['files']['figure']}")
    verdict = "LEARNED" if report["learned"] else "NOT LEARNED"
    if shortened(report):
        verdict = (
            f"SHORTENED CHECK, not a verdict (a smoke check of the pipeline; the proof is {HELD_OUT_EXAMPLES} "
            "held-out charts and every training step)"
        )
    lines.append(
        f"{verdict}: total reward {total['before']:.2f} -> {total['after']:.2f} ({total['gain']:+.2f}, 95% CI "
        f"[{total['ci95'][0]:+.2f}, {total['ci95'][1]:+.2f}]; needs >= +{MIN_TOTAL_GAIN:.1f} above 0); {image} "
        f"(seed {report['seed']}, {report['held_out_examples']} held-out charts, {report['train_steps']} GRPO steps, "
        f"{report['seconds']['total']:.0f} s)"
    )
    return "\n".join(lines)


def run_learn_check(
    output_dir: str | Path | None = None,
    seed: int = 2025,
    held_out: int = HELD_OUT_EXAMPLES,
    max_steps: int | None = None,
    progress: bool = True,
    reuse: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate, train with GRPO, evaluate again; write ``learn_check.json`` and the figure.

    Args:
        output_dir: where everything goes (default ``runs/learn-check/seed-<seed>``; a relative folder is under
            the run root, ``env.run_root()``): ``before/`` and
            ``after/`` evaluations, the training run in ``run/`` (started afresh each time),
            :data:`REPORT_FILE` and :data:`FIGURE_FILE`.
        seed: the training seed (data, sampling, LoRA init); the held-out charts never change.
        held_out: held-out charts evaluated before and after (200 by default).
        max_steps: stop training after this many steps (a shortened check, e.g. in CI).
        progress: show progress bars.
        reuse: return the report already in ``output_dir`` when it was made with the same settings (seed,
            held-out charts, steps, overrides) instead of running the check again (02_train's "Run all").
        overrides: preset fields changed from the ``learn-check`` preset (e.g. ``learning_rate``).

    Returns:
        The report written to ``learn_check.json``: ``held_out_examples``, ``metrics``
        (``{name: {before, after, gain, ci95}}``), ``learned``, the ``settings`` asked, the ``files`` written,
        seeds, steps and seconds.

    Raises:
        UserError: fewer than one held-out chart.
        ValueError: a training seed equal to the held-out charts' seed.
    """
    from .env import run_path
    from .evaluate import run_evaluation
    from .plots import plot_before_after
    from .train import train

    if held_out < 1:
        raise UserError(
            f"--held-out must be at least 1 (the held-out charts evaluated before and after), got {held_out}."
        )
    preset = get_preset(PRESET, seed=seed, **overrides)
    if seed == held_out_seed(preset):
        raise ValueError(
            f"--seed {seed} is the seed of the held-out charts, so training would see them; pick any other seed."
        )
    out = run_path(output_dir or f"runs/learn-check/seed-{seed}")  # relative: under the run root, as runs are
    settings_used = json.loads(json.dumps({"seed": seed, "held_out": held_out, "max_steps": max_steps, **overrides}))
    if reuse and (out / REPORT_FILE).is_file() and (out / FIGURE_FILE).is_file():
        earlier = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
        if earlier.get("settings") == settings_used:
            logger.info(
                f"The learn-check with these settings is already in {out}: shown, not re-run (delete its "
                f"{REPORT_FILE} to run it again)."
            )
            return earlier
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a check always trains from the warm start, never resumes
    started = time.perf_counter()
    settings = EvalConfig.for_preset(preset, limit=held_out, batch_size=_EVAL_BATCH, seed=seed, progress=progress)
    before = run_evaluation(preset.model, preset.eval_dataset, settings, output_dir=out / "before", verbose=False)
    evaluated = time.perf_counter()
    run = train(preset, output_dir=run_dir, max_steps=max_steps)
    trained = time.perf_counter()
    after = run_evaluation(
        preset.model, preset.eval_dataset, settings, adapter=run.weights_dir, output_dir=out / "after", verbose=False
    )
    metrics = compare_rewards(reward_scores(before.predictions), reward_scores(after.predictions), seed=seed)
    finished = time.perf_counter()
    report = {
        "held_out_examples": len(before.predictions),
        "held_out_seed": held_out_seed(preset),
        "seed": seed,
        "model": preset.model,
        "preset": preset.to_dict(),
        "settings": settings_used,  # what run_learn_check was asked (reuse compares it)
        "files": {"report": str(out / REPORT_FILE), "figure": str(out / FIGURE_FILE)},
        "train_steps": run.global_step,
        "metrics": metrics,
        "learned": learned(metrics),
        "seconds": {
            "before": round(evaluated - started, 1),
            "train": round(trained - evaluated, 1),
            "after": round(finished - trained, 1),
            "total": round(finished - started, 1),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    figure = plot_before_after(metrics, title=f"Learn-check, seed {seed}: {len(before.predictions)} held-out charts")
    figure.savefig(out / FIGURE_FILE, dpi=120)
    return report
