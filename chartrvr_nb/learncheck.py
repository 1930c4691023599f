"""The learn-check: does GRPO, through the same ``train()`` users run, improve held-out charts?

``python -m chartrvr_nb learn-check`` evaluates the ``tiny-learn`` model greedily on held-out
synthetic charts, checks that its starting point leaves something to learn there
(:mod:`chartrvr_nb.starting_point`), trains it with the ``learn-check`` preset (GRPO, the seven
rewards, TRL's trainer, via :func:`chartrvr_nb.train.train`), evaluates the adapter on the same
charts (via :func:`chartrvr_nb.evaluate.run_evaluation`, scored with the training rewards), and
reports each reward's mean before and after with a 95% paired-bootstrap interval of the gain. It
passes (``LEARNED``) only when the total reward gains at least :data:`MIN_TOTAL_GAIN` with its
interval above 0 and a reward that needs the chart (type, answer or table) gains with its interval
above 0 on each chart type. A starting point with nothing to learn (greedy decoding already
right, or sampling never right) would make either verdict meaningless: the check then stops
before training and says ``VACUOUS START`` with what it measured.

What it shows: rewards, advantages and gradients point the right way, end to end, on two CPU
cores in minutes. What it does not show: chart understanding at 3B scale. The ``tiny-learn``
warm start (``chartrvr_nb.warm_start.TINY_RECIPES``) teaches the format and the chart types, then
gives the chart's own type and the newline the format reward needs 30% each; GRPO has to raise both.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import UserError
from .benchmarks import get_benchmark
from .env import make_folder, run_path
from .eval_config import EvalConfig
from .eval_rewards import compare_rewards, reward_scores
from .presets import Preset, get_preset
from .starting_point import format_starting_point

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


def compare_by_chart_type(
    before: Sequence[Mapping[str, float | None]],
    after: Sequence[Mapping[str, float | None]],
    chart_types: Sequence[str],
    seed: int = 2025,
) -> dict[str, dict[str, dict[str, Any]]]:
    """:func:`compare_rewards` within each chart type: ``{chart type: {name: {...}}}``.

    Example:
        >>> before = [{"chart_type": 0.0}] * 20
        >>> after = [{"chart_type": 1.0}] * 10 + [{"chart_type": 0.0}] * 10
        >>> by_type = compare_by_chart_type(before, after, ["bar"] * 10 + ["pie"] * 10, seed=0)
        >>> by_type["bar"]["chart_type"]["gain"], by_type["pie"]["chart_type"]["gain"]
        (1.0, 0.0)
    """
    if len(chart_types) != len(before):
        raise ValueError("compare_by_chart_type needs one chart type per example.")
    return {
        name: compare_rewards(
            [score for score, kind in zip(before, chart_types) if kind == name],
            [score for score, kind in zip(after, chart_types) if kind == name],
            seed=seed,
        )
        for name in sorted(set(chart_types))
    }


def learned(
    metrics: Mapping[str, Mapping[str, Any]], by_chart_type: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None
) -> bool:
    """The verdict: the total gains at least ``MIN_TOTAL_GAIN`` with its interval above 0, and a
    chart-dependent reward (:data:`IMAGE_REWARDS`) gains with its interval above 0, on every chart
    type of ``by_chart_type`` too (:func:`compare_by_chart_type`) when given: a reward that paid
    one chart type's name whatever the chart would gain on that type's charts only.

    Example:
        >>> total = {"gain": 1.4, "ci95": [0.9, 1.9]}
        >>> learned({"total_reward": total, "chart_type": {"gain": 0.2, "ci95": [0.1, 0.3]}})
        True
        >>> learned({"total_reward": total, "chart_type": {"gain": 0.1, "ci95": [-0.1, 0.3]}})
        False
        >>> pooled = {"total_reward": total, "chart_type": {"gain": 0.33, "ci95": [0.27, 0.4]}}
        >>> only_bar = {"bar": {"chart_type": {"gain": 1.0, "ci95": [1.0, 1.0]}},
        ...             "line": {"chart_type": {"gain": 0.0, "ci95": [0.0, 0.0]}}}
        >>> learned(pooled), learned(pooled, only_bar)
        (True, False)
    """
    total = metrics["total_reward"]
    types = list((by_chart_type or {}).values())
    return (
        total["gain"] >= MIN_TOTAL_GAIN
        and total["ci95"][0] > 0
        and any(
            name in metrics and metrics[name]["ci95"][0] > 0 and all(rows[name]["ci95"][0] > 0 for rows in types)
            for name in IMAGE_REWARDS
        )
    )


def verdict(report: Mapping[str, Any]) -> str:
    """``LEARNED``, ``NOT LEARNED``, or ``VACUOUS START`` when the starting point had nothing to learn.

    Example:
        >>> verdict({"learned": True, "starting_point_problems": []}), verdict({"learned": False})
        ('LEARNED', 'NOT LEARNED')
        >>> verdict({"learned": False, "starting_point_problems": ["format on bar charts: ..."]})
        'VACUOUS START'
    """
    if report.get("starting_point_problems"):
        return "VACUOUS START"
    return "LEARNED" if report["learned"] else "NOT LEARNED"


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
    """The starting point, the before/after table, where the report and figure are, and the verdict line
    (:func:`verdict`), last; a shortened check (:func:`shortened`) ends in ``SHORTENED CHECK ...``, which says
    it is no verdict."""
    if "starting_point" in report:
        starting = format_starting_point(report["starting_point"])
        lines = [f"starting point on the held-out charts (before training):\n{starting}"]
    else:
        lines = []
    files = report.get("files") or {}
    if verdict(report) == "VACUOUS START":
        if files:
            lines.append(f"Report: {files['report']}")
        lines.append(
            f"VACUOUS START: {' '.join(report['starting_point_problems'])} GRPO could not show learning from "
            f"this model, so it was not trained (model {report['model']}, {report['held_out_examples']} held-out "
            f"charts, {report['seconds']['total']:.0f} s); rebuild it (delete its cache folder) or report this."
        )
        return "\n".join(lines)
    metrics = report["metrics"]
    lines.append(f"{'reward':<14}{'before':>8}{'after':>8}{'gain':>8}   95% CI of the gain")
    for name, row in metrics.items():
        low, high = row["ci95"]
        lines.append(
            f"{name:<14}{row['before']:>8.3f}{row['after']:>8.3f}{row['gain']:>+8.3f}   [{low:+.3f}, {high:+.3f}]"
        )
    by_chart_type = report.get("metrics_by_chart_type") or {}
    for name in IMAGE_REWARDS:
        if by_chart_type:
            gains = ", ".join(f"{kind} {_gain(rows[name])}" for kind, rows in by_chart_type.items())
            lines.append(f"{name} by chart type: {gains}")
    total = metrics["total_reward"]
    image = ", ".join(f"{name} {_gain(metrics[name])}" for name in IMAGE_REWARDS)
    if files:
        lines.append(f"Report: {files['report']}; figure: {files['figure']}")
    label = verdict(report)
    if shortened(report):
        label = (
            f"SHORTENED CHECK, not a verdict (a smoke check of the pipeline; the proof is {HELD_OUT_EXAMPLES} "
            "held-out charts and every training step)"
        )
    lines.append(
        f"{label}: total reward {total['before']:.2f} -> {total['after']:.2f} ({total['gain']:+.2f}, 95% CI "
        f"[{total['ci95'][0]:+.2f}, {total['ci95'][1]:+.2f}]; needs >= +{MIN_TOTAL_GAIN:.1f} above 0); {image} "
        f"(one needs its interval above 0 on every chart type; seed {report['seed']}, {report['held_out_examples']} "
        f"held-out charts, {report['train_steps']} GRPO steps, {report['seconds']['total']:.0f} s)"
    )
    return "\n".join(lines)


def _gain(row: Mapping[str, Any]) -> str:
    return f"{row['gain']:+.3f} [{row['ci95'][0]:+.3f}, {row['ci95'][1]:+.3f}]"


def held_out_starting_point(preset: Preset, settings: EvalConfig) -> dict[str, dict[str, Any]]:
    """What the preset's model leaves GRPO to learn on the held-out charts, before training.

    Measured (:func:`chartrvr_nb.starting_point.measure_choices`) at the choices of the default
    learn-check model's warm start, whichever model is checked, with the system prompt and pixel
    budget of the evaluation (``settings``).

    Returns:
        :func:`chartrvr_nb.starting_point.summarize_choices`' summary.
    """
    from .benchmark_data import load_examples, load_image
    from .data import fit_to_pixel_budget
    from .eval_inputs import evaluation_system_prompt
    from .models import load_model_and_processor, model_threads
    from .starting_point import measure_choices, summarize_choices
    from .warm_start import get_recipe

    recipe = get_recipe(get_preset(PRESET).model)
    rows = [
        {
            "query": example["question"],
            "image": fit_to_pixel_budget(load_image(example["image"]), settings.max_pixels),
            "chart_type": example["meta"]["chart_type"],
            "table": example["meta"]["table"],
            "label": example["answer"],
        }
        for example in load_examples(preset.eval_dataset, limit=settings.limit)
    ]
    system_prompt = evaluation_system_prompt(preset.model, settings).text
    model, processor = load_model_and_processor(preset.model)
    with model_threads(preset.model):
        return summarize_choices(measure_choices(model, processor, rows, recipe, system_prompt))


def run_learn_check(
    output_dir: str | Path | None = None,
    seed: int = 2025,
    held_out: int = HELD_OUT_EXAMPLES,
    max_steps: int | None = None,
    progress: bool = True,
    reuse: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate, check the starting point, train with GRPO, evaluate again; write ``learn_check.json``
    and the figure.

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
        The report written to ``learn_check.json``: ``held_out_examples``, ``starting_point``
        (:func:`held_out_starting_point`) and ``starting_point_problems``, ``metrics``
        (``{name: {before, after, gain, ci95}}``), ``metrics_by_chart_type`` (the same within each
        chart type), ``learned``, ``verdict`` (:func:`verdict`), seeds, steps and seconds. With a
        vacuous start (problems) nothing is trained: both metrics are None, ``train_steps`` 0 and no
        figure is drawn. The ``settings`` asked
        (``reuse`` compares them) and the ``files`` written.

    Raises:
        UserError: fewer than one held-out chart.
        ValueError: a training seed equal to the held-out charts' seed.
        env.FolderError: ``output_dir`` cannot be made or written (a file in the way, a read-only disk).
    """
    from .eval_plots import plot_before_after
    from .evaluate import run_evaluation
    from .starting_point import starting_point_problems
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
    out = make_folder(run_path(output_dir or f"runs/learn-check/seed-{seed}"), "--output-dir")  # said now if unusable
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
    starting_point = held_out_starting_point(preset, settings)
    report: dict[str, Any] = {
        "held_out_examples": len(before.predictions),
        "held_out_seed": held_out_seed(preset),
        "seed": seed,
        "model": preset.model,
        "preset": preset.to_dict(),
        "starting_point": starting_point,
        "starting_point_problems": starting_point_problems(starting_point),
        "train_steps": 0,
        "metrics": None,
        "metrics_by_chart_type": None,
        "learned": False,
        "settings": settings_used,  # what run_learn_check was asked (reuse compares it)
        "files": {"report": str(out / REPORT_FILE), "figure": str(out / FIGURE_FILE)},
    }
    evaluated = time.perf_counter()
    seconds = {"before": round(evaluated - started, 1)}
    if not report["starting_point_problems"]:
        run = train(preset, output_dir=run_dir, max_steps=max_steps)
        trained = time.perf_counter()
        after = run_evaluation(
            preset.model,
            preset.eval_dataset,
            settings,
            adapter=run.weights_dir,
            output_dir=out / "after",
            verbose=False,
        )
        scores = reward_scores(before.predictions), reward_scores(after.predictions)
        metrics = compare_rewards(*scores, seed=seed)
        chart_types = [record["meta"]["chart_type"] for record in before.predictions]
        by_chart_type = compare_by_chart_type(*scores, chart_types, seed=seed)
        report.update(
            train_steps=run.global_step,
            metrics=metrics,
            metrics_by_chart_type=by_chart_type,
            learned=learned(metrics, by_chart_type),
        )
        seconds.update(train=round(trained - evaluated, 1), after=round(time.perf_counter() - trained, 1))
    report["verdict"] = verdict(report)
    report["seconds"] = {**seconds, "total": round(time.perf_counter() - started, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if report["metrics"] is not None:
        figure = plot_before_after(
            report["metrics"], title=f"Learn-check, seed {seed}: {len(before.predictions)} held-out charts"
        )
        figure.savefig(out / FIGURE_FILE, dpi=120)
    return report
