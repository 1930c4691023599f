"""The evaluation runner: ``run_evaluation``, from the model and examples to the files and the table.

``run_evaluation(None, "chartqa", adapter="runs/my-run")`` finds and verifies what is evaluated and asks as
its run trained (:mod:`chartrvr_nb.eval_inputs`), loads the benchmark's examples
(:mod:`chartrvr_nb.benchmark_data`), answers them with batched greedy generation
(:mod:`chartrvr_nb.generation`), scores and summarises every answer (:mod:`chartrvr_nb.eval_results`), and
writes ``predictions.jsonl`` (one line per example, a batch at a time) and ``summary.json`` to the output
folder; an evaluation interrupted there resumes from the answers it wrote (:mod:`chartrvr_nb.eval_resume`).
The result also holds a table that puts our numbers beside the base model's and the paper's. The runner
never names a benchmark: what differs between them is declared in :mod:`chartrvr_nb.benchmarks`; how to
evaluate (batch size, prompt, tokens, pixel budget, ...) is one :class:`chartrvr_nb.eval_config.EvalConfig`, and
what its ``protocol`` decides (the authors' evaluation for ``chart-rvr``) is declared in
:mod:`chartrvr_nb.protocols`: the runner never names a protocol either.

Top-level imports stay light: torch, transformers, peft, datasets and numpy are imported inside
the functions that use them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .benchmark_data import load_examples, load_image
from .benchmarks import get_benchmark
from .console import quiet_known_warnings
from .drive import write_atomic
from .env import run_path
from .eval_config import EvalConfig
from .eval_inputs import evaluation_system_prompt, resolve_adapter, resolve_full_model, settings_from_run
from .eval_results import paired_bootstrap, paper_reference, prediction_record, results_table, summarize
from .eval_resume import SUMMARY_FILE, resume_predictions, set_aside_other_settings, weights_identity
from .eval_rewards import compare_rewards, reward_scores, reward_summary
from .generation import generate_batches, image_size_rule
from .official_scoring import SCORER_COMMITS

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from PIL.Image import Image

logger = logging.getLogger(__name__)

MISTAKE_IMAGES_KEPT = 64  # wrong answers whose image stays in memory for eval_plots.plot_mistakes
_THUMBNAIL_SIDE = 448


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` returns.

    Attributes:
        summary: the contents of ``summary.json``.
        predictions: the records of ``predictions.jsonl``; wrong answers (the first
            :data:`MISTAKE_IMAGES_KEPT`) also carry their ``image`` for ``eval_plots.plot_mistakes``.
        table: :func:`results_table` of the summary.
        output_dir: where the files were written.
        base_predictions: the base model's records when ``compare_base`` was set.
    """

    summary: dict[str, Any]
    predictions: list[dict[str, Any]]
    table: Any
    output_dir: Path
    base_predictions: list[dict[str, Any]] = field(default_factory=list)


def default_output_dir(
    vlm_name: str, dataset_name: str, prompt: str, adapter: str | None, protocol: str = "project"
) -> Path:
    """``runs/eval/<model>-<benchmark>-<prompt>[-<protocol>][-<adapter>]`` (the protocol unless ``project``).

    Example:
        >>> default_output_dir("qwen2-5-3b", "chartqa", "rvr", "sanchit97/chart-rvr-3b").as_posix()
        'runs/eval/qwen2-5-3b-chartqa-rvr-sanchit97-chart-rvr-3b'
        >>> default_output_dir("qwen2-5-3b", "plotqa", "rvr", None, protocol="chart-rvr").as_posix()
        'runs/eval/qwen2-5-3b-plotqa-rvr-chart-rvr'
    """
    name = f"{vlm_name}-{dataset_name}-{prompt}" + (f"-{protocol}" if protocol != "project" else "")
    if adapter:
        tag = "-".join(Path(str(adapter).rstrip("/")).parts[-2:])
        name += "-" + re.sub(r"[^A-Za-z0-9._-]+", "-", tag)
    return Path("runs") / "eval" / name


def _thumbnail(image: Image) -> Image:
    small = image.copy()
    small.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE))
    return small


def _evaluate_pass(
    model: Any,
    processor: Any,
    examples: list[dict],
    path: Path,
    config: EvalConfig,
    description: str,
    system_prompt: str,
) -> tuple[list[dict[str, Any]], int]:
    """Generate, score and write one model's predictions, after those an interrupted evaluation with the
    same settings already wrote (:func:`eval_resume.resume_predictions`); lines are written as batches finish.

    Returns:
        Every example's record, and how many of them were already written.
    """
    records = resume_predictions(path, examples)
    resumed = len(records)
    if records:
        logger.info(
            f"Resuming {path}: {len(records)} of {len(examples)} answers were already written with these "
            f"settings; answering the other {len(examples) - len(records)}."
        )
    kept_images = 0
    for index, record in enumerate(records):  # their images, for the gallery of wrong answers
        if not record["correct"] and kept_images < MISTAKE_IMAGES_KEPT:
            records[index] = {**record, "image": _thumbnail(load_image(examples[index]["image"]))}
            kept_images += 1
    with path.open("a", encoding="utf-8") as out:
        batches = generate_batches(
            model, processor, examples[len(records) :], config, description=description, system_prompt=system_prompt
        )
        for batch in batches:
            for example, image, generation in batch:
                record = prediction_record(len(records), example, generation)
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                if not record["correct"] and kept_images < MISTAKE_IMAGES_KEPT:
                    record = {**record, "image": _thumbnail(image)}
                    kept_images += 1
                records.append(record)
            out.flush()
    return records, resumed


def _compare_with_base(
    summary: dict[str, Any], records: list[dict], base_records: list[dict], benchmark: Any, seed: int
) -> None:
    """Add the base model's figures and rewards, and the paired-bootstrap comparisons, to ``summary``."""
    summary["base"] = {**summarize(benchmark, base_records), **reward_summary(base_records)}
    summary["comparison"] = paired_bootstrap(
        [r["score"] for r in records], [r["score"] for r in base_records], seed=seed
    )
    scored = [(ours, base) for ours, base in zip(reward_scores(records), reward_scores(base_records)) if ours]
    if scored:  # the rows that carry ground truth: the same examples in both passes
        base_scores, our_scores = [base for _, base in scored], [ours for ours, _ in scored]
        summary["reward_comparison"] = compare_rewards(base_scores, our_scores, seed=seed)


def run_evaluation(
    vlm_name: str | None,
    dataset_name: str,
    config: EvalConfig | None = None,
    *,
    adapter: str | os.PathLike | None = None,
    full_model: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> EvaluationResult:
    """Evaluate a model, optionally with a LoRA adapter or full trained weights, on one benchmark and
    write the results.

    Args:
        vlm_name: a key of ``models.MODEL_REGISTRY`` (``qwen2-5-3b``, ``qwen2-5-7b``, ``tiny``), or None: the
            evaluated run's model, else ``qwen2-5-3b``. A model other than the run's is refused.
        dataset_name: a key of ``benchmarks.BENCHMARKS``.
        config: how to evaluate (:class:`~chartrvr_nb.eval_config.EvalConfig`: the protocol, batch size,
            prompt, tokens per answer, pixel budget, limit, seed, 4-bit base, ``compare_base``, data
            folder, progress bars); its defaults when None. What it leaves unset of the tokens per answer,
            pixel budget, 4-bit base and system prompt is what the evaluated run trained with
            (:func:`eval_inputs.settings_from_run`), and a difference from training is said in one line.
            With ``compare_base`` the base model (adapter disabled) is evaluated on the same examples too,
            written to ``base_predictions.jsonl``, and the difference in accuracy and in each reward
            reported with a paired bootstrap 95% interval.
        adapter: a training run folder (its final ``adapter/``, else its newest complete
            checkpoint), a ``checkpoint-<step>`` folder, an ``adapter/`` folder, or a hub id; a local
            folder is verified against its manifest first.
        full_model: full weights to evaluate in place of ``vlm_name``'s (:func:`resolve_full_model`):
            a full fine-tune's run, checkpoint or ``model/`` folder, or a hub id such as the authors'
            ``sanchit97/chart-rvr-3b``; ``vlm_name`` names its architecture and base processor.
        output_dir: where ``predictions.jsonl`` and ``summary.json`` go (default
            :func:`default_output_dir`). Predictions already there from the same settings are kept and the
            evaluation goes on from them; from other settings they are moved to ``previous/``.
        verbose: log the results table and where the files are.

    Returns:
        An :class:`EvaluationResult` (summary, predictions, table, output folder).

    Raises:
        UserError: an adapter or model that is not found, fails verification or does not fit the run's
            model.
        ValueError: an unknown benchmark; ``compare_base`` without an adapter; missing data files.
        system_prompts.PromptUnavailableError: the authors' prompt could not be fetched or verified
            (before any model loads).
    """
    import torch

    from .models import load_model_and_processor, model_threads

    config = config or EvalConfig()
    benchmark = get_benchmark(dataset_name)
    if config.compare_base and adapter is None:
        raise ValueError("compare_base needs an adapter to compare with the base model; pass adapter (--adapter).")
    if adapter is not None and full_model is not None:
        raise ValueError("Pass either an adapter (--adapter) or full model weights (--model), not both.")
    adapter_path, full_model_path = resolve_adapter(adapter), resolve_full_model(full_model)
    trained = adapter_path or full_model_path
    vlm_name, config, _ = settings_from_run(vlm_name, config, trained)
    system_prompt = evaluation_system_prompt(vlm_name, config, trained)
    examples = load_examples(dataset_name, data_dir=config.data_dir, limit=config.limit, protocol=config.protocol)
    if not examples:
        raise ValueError(f"{benchmark.title} has no examples to evaluate; check data_dir and limit.")
    if output_dir is None:
        output_dir = default_output_dir(vlm_name, dataset_name, config.prompt, trained, config.protocol)
    out_dir = run_path(output_dir)  # a relative folder is under the run root, as training's are
    out_dir.mkdir(parents=True, exist_ok=True)
    source = str(config.data_dir) if config.data_dir is not None else benchmark.source
    rules = config.protocol_rules
    answers_decided_by = {  # what decides an answer: predictions made with the same are kept on a re-run
        "benchmark": benchmark.name,
        "source": source,
        "protocol": rules.name,
        "model": vlm_name,
        "load_in_4bit": config.load_in_4bit,
        "adapter": adapter_path,
        "full_model": full_model_path,
        "weights": weights_identity(trained),
        "prompt": config.prompt,
        "system_prompt_sha256": system_prompt.sha256,
        "max_new_tokens": config.tokens_per_answer,
        "max_pixels": config.pixel_budget,
    }
    set_aside_other_settings(out_dir, answers_decided_by)

    torch.manual_seed(config.seed)
    model, processor = load_model_and_processor(
        vlm_name,
        load_in_4bit=config.load_in_4bit,
        device_map="auto" if torch.cuda.is_available() else None,
        weights=full_model_path,
    )
    if adapter_path is not None:
        from peft import PeftModel

        with quiet_known_warnings():  # peft asks transformers for its renamed gradient-checkpointing state
            model = PeftModel.from_pretrained(model, adapter_path)

    started = time.perf_counter()
    with model_threads(vlm_name):  # one torch thread for the tiny model on CPU, while it generates
        records, resumed = _evaluate_pass(
            model,
            processor,
            examples,
            out_dir / "predictions.jsonl",
            config,
            description=f"{benchmark.title} ({'adapter' if adapter_path else 'model' if full_model_path else vlm_name})",  # noqa: E501
            system_prompt=system_prompt.text,
        )
    seconds = time.perf_counter() - started
    sample_size = rules.samples.get(benchmark.name)
    summary: dict[str, Any] = {
        "benchmark": benchmark.name,
        "protocol": rules.name,
        "protocol_title": rules.title,
        "protocol_source": rules.source,
        "title": benchmark.title,
        "source": source,
        "split": benchmark.split,
        "model": vlm_name,
        "load_in_4bit": config.load_in_4bit,
        "adapter": adapter_path,
        "full_model": full_model_path,
        "prompt": config.prompt,
        "system_prompt": system_prompt.choice,
        "system_prompt_sha256": system_prompt.sha256,
        "metric": benchmark.metric,
        "question_text": rules.question,
        "answer_reading": rules.answer,
        "sample": {"size": sample_size, "seed": rules.sample_seed} if sample_size is not None else None,
        **summarize(benchmark, records),
        **reward_summary(records),  # every reward's mean, where rows carry the ground truth
        "paper": dict(benchmark.paper),
        "paper_reference": paper_reference(vlm_name, trained),
        "limit": config.limit,
        "batch_size": config.batch_size,
        "max_new_tokens": config.tokens_per_answer,
        "max_pixels": image_size_rule(processor, config)["max_pixels"],
        "image_resize": rules.image_resize,
        "scorer_commits": dict(SCORER_COMMITS),
        "seed": config.seed,
        "resumed_answers": resumed,  # written by an interrupted evaluation with the same settings
        "seconds": round(seconds, 3),  # this run's generation, resumed answers not included
        "examples_per_second": round((len(records) - resumed) / seconds, 4) if seconds > 0 else None,
    }

    base_records: list[dict[str, Any]] = []
    if config.compare_base:
        with model.disable_adapter(), model_threads(vlm_name):
            base_records, _ = _evaluate_pass(
                model,
                processor,
                examples,
                out_dir / "base_predictions.jsonl",
                config,
                description=f"{benchmark.title} (base {vlm_name})",
                system_prompt=system_prompt.text,
            )
        _compare_with_base(summary, records, base_records, benchmark, config.seed)

    write_atomic(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")
    table = results_table(summary)
    if verbose:
        import pandas as pd

        shown = table if config.compare_base else table.drop(columns=["base", "ours - base", "95% CI"])
        shown = shown.astype(object).where(shown.notna(), "-")  # None and NaN alike: no number to show
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            logger.info(shown.to_string(index=False))
        logger.info("Wrote %s and %s", out_dir / "predictions.jsonl", out_dir / SUMMARY_FILE)
    return EvaluationResult(
        summary=summary, predictions=records, table=table, output_dir=out_dir, base_predictions=base_records
    )
