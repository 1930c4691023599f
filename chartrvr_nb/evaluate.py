"""The evaluation runner: batched greedy generation, adapters, and ``run_evaluation``.

``run_evaluation("qwen2-5-3b", "chartqa", adapter="grpo-start-ckpts/...")`` loads the
benchmark's examples (:mod:`chartrvr_nb.benchmark_data`), answers them with batched greedy
generation (left padding, images fitted to a pixel budget as in training), scores and summarises every answer
(:mod:`chartrvr_nb.eval_results`), and writes ``predictions.jsonl`` (one line per example) and
``summary.json`` to the output folder. The result also holds a table that puts our number beside
the paper's. The runner never names a benchmark: what differs between them is declared in
:mod:`chartrvr_nb.benchmarks`; how to evaluate (batch size, prompt, tokens, pixel budget, ...) is one
:class:`chartrvr_nb.presets.EvalConfig`, and what its ``protocol`` decides (the authors' evaluation
for ``chart-rvr``) is declared in :mod:`chartrvr_nb.protocols`: the runner never names a protocol either.

The protocol's answer reader (:data:`ANSWER_READERS`) reads the scored answer. This project's reads
``<answer>...</answer>`` for the ``rvr`` and ``cot`` prompts (a reply without the tag scores 0, as in
the accuracy reward) and the whole reply for ``direct``; the authors' is :func:`parse_reply_chart_rvr`.

Top-level imports stay light: torch, transformers, peft, datasets and numpy are imported inside
the functions that use them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answers import chart_rvr_answer, extract_answer, extract_between
from .benchmark_data import load_examples, load_image
from .benchmarks import get_benchmark
from .checkpoints import newest_verified_checkpoint
from .console import quiet_known_warnings
from .env import run_path
from .eval_inputs import evaluation_system_prompt, resolve_full_model
from .eval_results import (
    paired_bootstrap,
    paper_reference,
    prediction_record,
    results_table,
    reward_summary,
    summarize,
)
from .official_scoring import SCORER_COMMITS
from .presets import EvalConfig
from .prompts import build_messages

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from PIL.Image import Image

logger = logging.getLogger(__name__)

MISTAKE_IMAGES_KEPT = 64  # wrong answers whose image stays in memory for plots.plot_mistakes
_THUMBNAIL_SIDE = 448


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def parse_reply(reply: str, prompt: str) -> dict[str, Any]:
    """Split a model reply into the scored prediction and the reasoning.

    For ``rvr`` and ``cot`` the prediction is the text inside the last ``<answer>`` tag
    (``answers.extract_answer``; empty when there is none) and the reasoning the text inside
    ``<think>``; for ``direct`` the prediction is the whole reply, trailing dots removed.

    Example:
        >>> parse_reply("<think>\\n<type>bar</type> ...</think>\\n<answer>12.</answer>", "rvr")
        {'prediction': '12', 'reasoning': '<type>bar</type> ...', 'answer_found': True}
        >>> parse_reply(" Yes.\\n", "direct")
        {'prediction': 'Yes', 'reasoning': None, 'answer_found': True}
        >>> parse_reply("I think 12", "cot")["prediction"]
        ''
    """
    if prompt == "direct":
        return {"prediction": reply.strip().rstrip(".").strip(), "reasoning": None, "answer_found": True}
    answer = extract_answer(reply)
    thinking = extract_between(reply, "<think>", "</think>")
    return {
        "prediction": answer or "",
        "reasoning": thinking.strip() if thinking is not None else None,
        "answer_found": answer is not None,
    }


def parse_reply_chart_rvr(reply: str, prompt: str) -> dict[str, Any]:
    """Read a reply as the Chart-RVR authors' evaluation did (sanchit97/chartrl utils.py 165-168 at 83c4406).

    With chain of thought (``rvr``, ``cot``) the prediction is :func:`chartrvr_nb.answers.chart_rvr_answer`
    (the whole reply when it has no ``<answer>`` tag); for ``direct`` it is the reply as decoded, unstripped.
    The reasoning is read as :func:`parse_reply` reads it, for display only.

    Example:
        >>> parse_reply_chart_rvr("<think>\\n<type>bar</type> ...</think>\\n<answer>12.</answer>", "rvr")
        {'prediction': '12.', 'reasoning': '<type>bar</type> ...', 'answer_found': True}
        >>> parse_reply_chart_rvr("I think 12", "cot")["prediction"]
        'I think 12'
        >>> parse_reply_chart_rvr(" Yes.\\n", "direct")["prediction"]
        ' Yes.\\n'
    """
    if prompt == "direct":
        return {"prediction": reply, "reasoning": None, "answer_found": True}
    thinking = extract_between(reply, "<think>", "</think>")
    return {
        "prediction": chart_rvr_answer(reply),
        "reasoning": thinking.strip() if thinking is not None else None,
        "answer_found": "<answer>" in reply,
    }


# How each protocol reads the scored answer from a reply (``protocols.Protocol.answer`` names one).
ANSWER_READERS = {"project": parse_reply, "chart-rvr": parse_reply_chart_rvr}


def image_size_rule(processor: Any, config: EvalConfig) -> dict[str, Any]:
    """How images are sized for ``config`` (the keyword arguments of ``data.fit_to_pixel_budget``).

    The budget is the config's (:attr:`EvalConfig.pixel_budget`), lowered to what the processor's image
    processor accepts: an image fitted to a larger budget would be resized again inside it. The
    ``chart-rvr`` resize scales every image up or down to the budget, then rounds it onto the 28-pixel
    grid as qwen-vl-utils does for the authors' evaluation (within the processor's bound); otherwise
    only larger images are shrunk, and the grid's rounding stays within the budget.

    Args:
        processor: the model's processor (its image processor's ``size["longest_edge"]`` or ``max_pixels``
            bounds the budget; Qwen2.5-VL's is 16384 * 28 * 28 pixels, the default when it has none).
        config: the evaluation settings (their pixel budget and protocol).

    Returns:
        ``{"max_pixels", "upscale", "grid_max_pixels"}``.

    Example:
        >>> image_size_rule(None, EvalConfig(protocol="chart-rvr"))
        {'max_pixels': 376320, 'upscale': True, 'grid_max_pixels': 12845056}
        >>> image_size_rule(None, EvalConfig())
        {'max_pixels': 250880, 'upscale': False, 'grid_max_pixels': None}
    """
    from .data import PROCESSOR_MAX_PIXELS

    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)  # transformers 5: a SizeDict, which is no dict but has .get
    limits = [getattr(image_processor, "max_pixels", None), size.get("longest_edge") if hasattr(size, "get") else None]
    limits = [limit for limit in limits if isinstance(limit, int) and limit > 0]
    processor_limit = min(limits, default=PROCESSOR_MAX_PIXELS)
    upscale = config.protocol_rules.image_resize == "chart-rvr"
    return {
        "max_pixels": min(config.pixel_budget, processor_limit),
        "upscale": upscale,
        "grid_max_pixels": processor_limit if upscale else None,
    }


def _greedy_config(model: Any, max_new_tokens: int, pad_token_id: int | None) -> Any:
    """The model's generation config made greedy: sampling settings dropped, so none leak in.

    Other settings stay as the model ships them (Qwen2.5-VL's ``repetition_penalty`` of 1.05,
    its two end tokens), which keeps decoding deterministic and as the released model intends.
    """
    import copy

    config = copy.deepcopy(model.generation_config)
    config.do_sample = False
    config.num_beams = 1
    config.temperature = None
    config.top_p = None
    config.top_k = None
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if pad_token_id is not None:
        config.pad_token_id = pad_token_id
    return config


def generate_batches(
    model: Any,
    processor: Any,
    examples: Sequence[Mapping[str, Any]],
    config: EvalConfig | None = None,
    *,
    description: str = "Generating",
    system_prompt: str | None = None,
) -> Iterator[list[tuple[Mapping[str, Any], Image, dict[str, Any]]]]:
    """Answer examples batch by batch, yielding ``(example, image, generation)`` per example.

    Left padding keeps every prompt's last token at the end of the batch, where generation
    continues; the attention mask tells the model which positions are padding (Qwen2.5-VL also
    derives its multimodal rotary positions from it), so a batch answers exactly as the same
    examples would one at a time. Decoding is greedy.

    Args:
        model: a Qwen2.5-VL model (or a ``PeftModel`` around one).
        processor: its processor.
        examples: dicts with ``question`` and ``image`` (see :func:`load_examples`).
        config: the settings used here: ``batch_size`` examples per ``generate`` call (1 for the
            one-at-a-time baseline), the ``prompt`` style, ``tokens_per_answer``, the image budget
            ``pixel_budget`` (images are fitted to it and the 28-pixel grid, never cropped, by the
            protocol's rule: :func:`image_size_rule`), the protocol's answer reader
            (:data:`ANSWER_READERS`) and ``progress`` (a tqdm bar).
        description: the progress bar's label.
        system_prompt: the system message's text (:func:`evaluation_system_prompt`); default this
            project's wording for the prompt style.

    Yields:
        One list per batch; each generation is ``{"reply", "prediction", "reasoning", "answer_found"}``.
    """
    import torch
    from tqdm.auto import tqdm

    from .data import fit_to_pixel_budget

    config = config or EvalConfig()
    sizing = image_size_rule(processor, config)
    read_reply = ANSWER_READERS[config.protocol_rules.answer]
    greedy = _greedy_config(model, config.tokens_per_answer, processor.tokenizer.pad_token_id)
    model.eval()
    with tqdm(total=len(examples), desc=description, unit="example", disable=not config.progress) as bar:
        for start in range(0, len(examples), config.batch_size):
            batch = examples[start : start + config.batch_size]
            # Sized as training sizes them (onto the processor's grid), so the processor takes them as they are.
            images = [fit_to_pixel_budget(load_image(example["image"]), **sizing) for example in batch]
            texts = [
                processor.apply_chat_template(
                    build_messages(example["question"], config.prompt, system_prompt),
                    tokenize=False,
                    add_generation_prompt=True,
                )
                for example in batch
            ]
            inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
            inputs = inputs.to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, generation_config=greedy)
            replies = processor.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            yield [
                (example, image, {"reply": reply, **read_reply(reply, config.prompt)})
                for example, image, reply in zip(batch, images, replies)
            ]
            bar.update(len(batch))


def generate_answers(
    model: Any,
    processor: Any,
    examples: Sequence[Mapping[str, Any]],
    config: EvalConfig | None = None,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """Answer every example with batched greedy generation; ``batch_size=1`` answers one at a time.

    Args: as :func:`generate_batches`.

    Returns:
        One ``{"reply", "prediction", "reasoning", "answer_found"}`` per example, in order.
    """
    batches = generate_batches(model, processor, examples, config, system_prompt=system_prompt)
    return [generation for batch in batches for _, _, generation in batch]


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


def resolve_adapter(adapter: str | os.PathLike | None) -> str | None:
    """Where to load a LoRA adapter from: a local folder with ``adapter_config.json``, or a hub id.

    A folder that holds ``adapter_config.json`` (a ``checkpoint-<step>`` or a final ``adapter/``
    folder) is used as is; a relative path is under the run root (``env.run_root()``), where the CLI
    and the notebooks put their runs. A training run folder gives its final ``adapter/`` when training
    finished, else its newest complete checkpoint. Anything else shaped like ``owner/name`` is
    taken as a hub id of an adapter (the authors' released ``sanchit97/chart-rvr-3b`` is a full model:
    :func:`resolve_full_model`).

    Raises:
        ValueError: a local folder without an adapter, or a path that does not exist.

    Example:
        >>> resolve_adapter("someone/chart-rvr-lora")
        'someone/chart-rvr-lora'
        >>> resolve_adapter(None) is None
        True
    """
    if adapter is None or str(adapter) == "":
        return None
    path = run_path(adapter)  # a relative run folder is under the run root, where training put it
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return str(path)
        if (path / "adapter" / "adapter_config.json").is_file():
            return str(path / "adapter")
        newest = newest_verified_checkpoint(path)  # finished by the Trainer and matching its manifest
        if newest is not None and (newest / "adapter_config.json").is_file():
            return str(newest)
        raise ValueError(
            f"{str(path)!r} holds no LoRA adapter: no adapter_config.json, no adapter/ folder and no complete "
            "checkpoint-<step> with one. Pass a training run folder, one of its checkpoint-<step> folders, "
            "its adapter/ folder, or a hub id such as someone/chart-rvr-lora. A full fine-tune's run is "
            "evaluated with --model instead."
        )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", str(adapter)) and not path.exists() and not str(adapter).startswith((".", "/")):
        return str(adapter)
    raise ValueError(
        f"Adapter {str(adapter)!r} not found: it is neither a local folder nor a hub id like owner/name. "
        "Check the path (a run folder, a checkpoint-<step> folder or an adapter/ folder)."
    )


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` returns.

    Attributes:
        summary: the contents of ``summary.json``.
        predictions: the records of ``predictions.jsonl``; wrong answers (the first
            :data:`MISTAKE_IMAGES_KEPT`) also carry their ``image`` for ``plots.plot_mistakes``.
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
) -> list[dict[str, Any]]:
    """Generate, score and write one model's predictions; lines are written as batches finish."""
    records: list[dict[str, Any]] = []
    kept_images = 0
    with path.open("w", encoding="utf-8") as out:
        batches = generate_batches(
            model, processor, examples, config, description=description, system_prompt=system_prompt
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
    return records


def run_evaluation(
    vlm_name: str,
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
        vlm_name: a key of ``models.MODEL_REGISTRY`` (``qwen2-5-3b``, ``qwen2-5-7b``, ``tiny``).
        dataset_name: a key of ``benchmarks.BENCHMARKS``.
        config: how to evaluate (:class:`~chartrvr_nb.presets.EvalConfig`: the protocol, batch size,
            prompt, tokens per answer, pixel budget, limit, seed, 4-bit base, ``compare_base``, data
            folder, progress bars); its defaults when None. With ``compare_base`` the base model (adapter
            disabled) is evaluated on the same examples too, written to ``base_predictions.jsonl``,
            and the difference reported with a paired bootstrap 95% interval.
        adapter: a training run folder (its final ``adapter/``, else its newest complete
            checkpoint), a ``checkpoint-<step>`` folder, an ``adapter/`` folder, or a hub id.
        full_model: full weights to evaluate in place of ``vlm_name``'s (:func:`resolve_full_model`):
            a full fine-tune's run, checkpoint or ``model/`` folder, or a hub id such as the authors'
            ``sanchit97/chart-rvr-3b``; ``vlm_name`` names its architecture and base processor.
        output_dir: where ``predictions.jsonl`` and ``summary.json`` go (default
            :func:`default_output_dir`).
        verbose: log the results table and where the files are.

    Returns:
        An :class:`EvaluationResult` (summary, predictions, table, output folder).

    Raises:
        ValueError: an unknown benchmark, adapter or model; ``compare_base`` without an adapter; missing
            data files.
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
    system_prompt = evaluation_system_prompt(vlm_name, config, trained)
    examples = load_examples(dataset_name, data_dir=config.data_dir, limit=config.limit, protocol=config.protocol)
    if not examples:
        raise ValueError(f"{benchmark.title} has no examples to evaluate; check data_dir and limit.")

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
    if output_dir is None:
        output_dir = default_output_dir(vlm_name, dataset_name, config.prompt, trained, config.protocol)
    out_dir = run_path(output_dir)  # a relative folder is under the run root, as training's are
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    with model_threads(vlm_name):  # one torch thread for the tiny model on CPU, while it generates
        records = _evaluate_pass(
            model,
            processor,
            examples,
            out_dir / "predictions.jsonl",
            config,
            description=f"{benchmark.title} ({'adapter' if adapter_path else 'model' if full_model_path else vlm_name})",  # noqa: E501
            system_prompt=system_prompt.text,
        )
    seconds = time.perf_counter() - started
    rules = config.protocol_rules
    sample_size = rules.samples.get(benchmark.name)
    summary: dict[str, Any] = {
        "benchmark": benchmark.name,
        "protocol": rules.name,
        "protocol_title": rules.title,
        "protocol_source": rules.source,
        "title": benchmark.title,
        "source": str(config.data_dir) if config.data_dir is not None else benchmark.source,
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
        "seconds": round(seconds, 3),
        "examples_per_second": round(len(records) / seconds, 4) if seconds > 0 else None,
    }

    base_records: list[dict[str, Any]] = []
    if config.compare_base:
        with model.disable_adapter(), model_threads(vlm_name):
            base_records = _evaluate_pass(
                model,
                processor,
                examples,
                out_dir / "base_predictions.jsonl",
                config,
                description=f"{benchmark.title} (base {vlm_name})",
                system_prompt=system_prompt.text,
            )
        summary["base"] = summarize(benchmark, base_records)
        summary["comparison"] = paired_bootstrap(
            [r["score"] for r in records], [r["score"] for r in base_records], seed=config.seed
        )

    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    table = results_table(summary)
    if verbose:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.precision", 2, "display.max_columns", 20):
            logger.info(table.to_string(index=False))
        logger.info("Wrote %s and %s", out_dir / "predictions.jsonl", out_dir / "summary.json")
    return EvaluationResult(
        summary=summary, predictions=records, table=table, output_dir=out_dir, base_predictions=base_records
    )
