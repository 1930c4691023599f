"""Evaluate a model (optionally with a LoRA adapter) on a chart benchmark.

``run_evaluation("qwen2-5-3b", "chartqa", adapter="grpo-start-ckpts/...")`` loads the
benchmark's examples (declared in :mod:`chartrvr_nb.benchmarks`), answers them with batched
greedy generation (left padding, images resized to a pixel budget), scores every answer, and
writes ``predictions.jsonl`` (one line per example) and ``summary.json`` to the output folder.
The result also holds a table that puts our number beside the paper's.

Answers are read from ``<answer>...</answer>`` for the ``rvr`` and ``cot`` prompts (a reply
without the tag scores 0, as in the accuracy reward) and from the whole reply for ``direct``.

Top-level imports stay light: torch, transformers, peft, datasets and numpy are imported inside
the functions that use them.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .answers import extract_answer, extract_between
from .benchmarks import AGGREGATIONS, BENCHMARKS, CHART_RVR, METRICS, QWEN_DIRECT, Benchmark, get_benchmark
from .checkpoints import newest_complete_checkpoint
from .presets import PAPER_MAX_PIXELS
from .prompts import PROMPT_STYLES, build_messages

if TYPE_CHECKING:  # pragma: no cover - type hints only
    import pandas as pd
    from PIL.Image import Image

# Tokens generated per answer when not given: the paper's completion length for the reasoning
# prompts, and enough for a short phrase for the direct prompt.
DEFAULT_MAX_NEW_TOKENS = {"rvr": 768, "cot": 768, "direct": 64}
BOOTSTRAP_RESAMPLES = 1000
MISTAKE_IMAGES_KEPT = 64  # wrong answers whose image stays in memory for plots.plot_mistakes
_THUMBNAIL_SIDE = 448

HEADLINE_LABELS = {
    "accuracy": "accuracy",
    "subset_mean": "accuracy (mean of subsets)",
    "acc_plus": "Acc+",
}


# --------------------------------------------------------------------------------------------
# Loading examples
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where benchmark downloads are kept and extracted.

    ``$CHARTRVR_NB_CACHE``, else ``~/.cache/chartrvr_nb``: the same cache as the tiny model.
    """
    return Path(os.environ.get("CHARTRVR_NB_CACHE") or Path.home() / ".cache" / "chartrvr_nb").expanduser()


def load_image(image: Any) -> Image:
    """Decode whatever a dataset row holds for an image into an RGB PIL image.

    Accepts a PIL image, encoded bytes, a ``{"bytes": ..., "path": ...}`` dict (``datasets``
    with ``decode=False``), or a file path.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO(); Image.new("L", (4, 3)).save(buffer, format="PNG")
        >>> load_image({"bytes": buffer.getvalue(), "path": None}).mode
        'RGB'
    """
    from PIL import Image as PILImage

    if isinstance(image, PILImage.Image):
        return image.convert("RGB")
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        with PILImage.open(io.BytesIO(image)) as opened:
            return opened.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with PILImage.open(image) as opened:
            return opened.convert("RGB")
    raise ValueError(f"Cannot read an image from a {type(image).__name__}; expected a PIL image, bytes or a path.")


def _extract_archives(directory: Path) -> list[Path]:
    """Unzip every ``*.zip`` under ``directory`` next to itself, once (like ``unzip`` in place)."""
    extracted = []
    for archive in sorted(directory.rglob("*.zip")):
        marker = archive.with_name(f".{archive.name}.extracted")
        if not marker.exists():
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(archive.parent)
            marker.touch()
        extracted.append(archive)
    return extracted


def _hub_download(benchmark: Benchmark, filename: str | None = None) -> Path:
    """Download a benchmark's hub repo (or one file of it) into the cache; return the local folder."""
    from huggingface_hub import hf_hub_download, snapshot_download

    local_dir = cache_dir() / "benchmarks" / benchmark.name
    try:
        if filename is None:
            snapshot_download(benchmark.source, repo_type="dataset", local_dir=local_dir)
        else:
            hf_hub_download(benchmark.source, filename, repo_type="dataset", local_dir=local_dir)
    except Exception as error:  # the hub client raises many types (offline, gated, missing)
        raise RuntimeError(
            f"Could not download {benchmark.source!r} for {benchmark.name} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). Check your connection, or download it elsewhere and pass "
            "its folder as data_dir (--data-dir)."
        ) from error
    return local_dir


def _image_resolver(first_ref: Any, benchmark: Benchmark, roots: Sequence[Path]) -> Any:
    """A function turning a row's image reference into a file path, checked on the first row.

    The folder is found once: the first root/image-folder combination (references may start
    with ``./`` or ``./data/``, as ChartBench's do) in which the first example's image exists is
    used for all; checking every file up front would be slow on PlotQA's millions of questions.
    """
    first_name = benchmark.image_name.format(first_ref)
    folders = [root / sub for root in roots for sub in (*benchmark.image_dirs, ".")]
    for folder in folders:
        for prefix in ("", "./", "./data/"):
            if (folder / first_name.removeprefix(prefix)).is_file():

                def resolve(ref: Any, folder: Path = folder, prefix: str = prefix) -> str:
                    return str(folder / benchmark.image_name.format(ref).removeprefix(prefix))

                return resolve
    looked = ", ".join(str(folder / first_name) for folder in folders[:6])
    raise ValueError(
        f"{benchmark.title}: cannot find the image {first_name!r} (looked in {looked}). Pass data_dir (--data-dir) "
        "as the folder holding the released files with their image folder "
        f"({', '.join(benchmark.image_dirs) or 'images'})."
    )


def _find_release_file(benchmark: Benchmark, directory: Path) -> Path | None:
    for name in benchmark.release_files:
        found = sorted(directory.rglob(name))
        if found:
            return found[0]
    return None


def _release_rows(benchmark: Benchmark, data_dir: Path | None) -> tuple[list[dict], Path]:
    """Rows of a benchmark distributed as a question file plus an image folder."""
    if data_dir is None:
        if benchmark.source in ("release", "synthetic"):
            raise ValueError(
                f"{benchmark.title} is read from its released files: pass data_dir (--data-dir) as the folder "
                f"holding {' or '.join(benchmark.release_files)} and its image folder "
                f"({', '.join(benchmark.image_dirs)})."
            )
        data_dir = _hub_download(benchmark)
    if not data_dir.is_dir():
        raise ValueError(
            f"data_dir {str(data_dir)!r} is not a folder; pass the folder with the released {benchmark.title} files."
        )
    question_file = _find_release_file(benchmark, data_dir)
    if question_file is None and _extract_archives(data_dir):
        question_file = _find_release_file(benchmark, data_dir)
    if question_file is None:
        raise ValueError(
            f"No {' or '.join(benchmark.release_files)} under {str(data_dir)!r}. Pass data_dir (--data-dir) as the "
            f"folder of the released {benchmark.title} files (zips are extracted automatically)."
        )
    text = question_file.read_text(encoding="utf-8")
    if question_file.suffix == ".jsonl":
        rows: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = json.loads(text)
    if benchmark.records_key is not None:
        rows = rows[benchmark.records_key]
    if not isinstance(rows, list):
        raise ValueError(
            f"{question_file} does not hold a list of questions; is it the released {benchmark.title} file?"
        )
    return rows, question_file


def _is_saved_dataset(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _hub_rows(benchmark: Benchmark, data_dir: Path | None) -> Any:
    """Rows of a hub benchmark as a ``datasets.Dataset``, with images left encoded (decoded lazily)."""
    import datasets

    location = str(data_dir) if data_dir is not None else benchmark.source
    try:
        if data_dir is not None and _is_saved_dataset(data_dir):
            rows = datasets.load_from_disk(location)
            if isinstance(rows, datasets.DatasetDict):
                rows = rows[benchmark.split]
        else:
            rows = datasets.load_dataset(location, benchmark.config, split=benchmark.split)
    except Exception as error:  # offline, missing split/config, unreadable files: say what to do
        raise RuntimeError(
            f"Could not load {benchmark.title} from {location!r} (split {benchmark.split!r}"
            f"{', config ' + repr(benchmark.config) if benchmark.config else ''}): {type(error).__name__}: {error}. "
            "Check your connection, or pass data_dir (--data-dir) as a local copy of the dataset "
            "(a folder with its data files, or one written by save_to_disk)."
        ) from error
    for name, feature in rows.features.items():
        if isinstance(feature, datasets.Image):
            rows = rows.cast_column(name, datasets.Image(decode=False))
    return rows


def load_examples(
    dataset_name: str, *, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> list[dict]:
    """The examples of a benchmark, in its order, images still encoded (decoded when generating).

    Args:
        dataset_name: a key of :data:`chartrvr_nb.benchmarks.BENCHMARKS`.
        data_dir: a local copy of the data (required for PlotQA and ChartFC, optional otherwise):
            for hub benchmarks, a folder with the dataset's data files (or a ``save_to_disk``
            folder); for released files, the folder holding them (zips are extracted).
        limit: keep only the first ``limit`` examples.

    Returns:
        Dicts with ``id``, ``question``, ``answer``, ``image``, ``subset``, ``metric``, ``meta``.

    Raises:
        ValueError: an unknown benchmark, missing files, or ``limit < 1``.
        RuntimeError: a hub dataset that cannot be loaded.
    """
    benchmark = get_benchmark(dataset_name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}; leave it out to evaluate every example.")
    local = Path(data_dir).expanduser() if data_dir is not None else None
    image_roots: list[Path] = []
    if benchmark.source == "synthetic":
        import datasets

        from .data import make_synthetic_dataset

        rows: Any = make_synthetic_dataset(limit or benchmark.synthetic_rows, seed=benchmark.synthetic_seed)
        rows = rows.cast_column("image", datasets.Image(decode=False))
    elif benchmark.release_files:
        rows, question_file = _release_rows(benchmark, local)
        image_roots = [question_file.parent, *([local] if local else [])]
    else:
        rows = _hub_rows(benchmark, local)
        if benchmark.image_archive is not None:
            image_roots = [local if local is not None else _hub_download(benchmark, benchmark.image_archive)]
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows)))) if hasattr(rows, "select") else rows[:limit]

    examples: list[dict] = []
    for index, row in enumerate(rows):
        examples.extend(benchmark.examples(row, index))
    examples = examples[:limit] if limit is not None else examples
    if image_roots and examples:
        examples = _resolve_image_paths(benchmark, examples, image_roots)
    return examples


def _resolve_image_paths(benchmark: Benchmark, examples: list[dict], roots: list[Path]) -> list[dict]:
    try:
        resolve = _image_resolver(examples[0]["image"], benchmark, roots)
    except ValueError:
        # The images may still be zipped (ChartBench ships data/test.zip): extract, then look again.
        if not any(_extract_archives(root) for root in roots if root.is_dir()):
            raise
        resolve = _image_resolver(examples[0]["image"], benchmark, roots)
    return [{**example, "image": resolve(example["image"])} for example in examples]


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


def _pixel_budget(processor: Any, max_pixels: int | None) -> int:
    """The smaller of the requested budget and what the processor's image processor accepts."""
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None) or {}
    limits = [getattr(image_processor, "max_pixels", None)]
    if isinstance(size, dict):
        limits.append(size.get("longest_edge"))
    budget = max_pixels or PAPER_MAX_PIXELS
    for limit in limits:
        if isinstance(limit, int) and limit > 0:
            budget = min(budget, limit)
    return budget


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
    batch_size: int = 8,
    prompt: str = "rvr",
    max_new_tokens: int | None = None,
    *,
    max_pixels: int | None = PAPER_MAX_PIXELS,
    progress: bool = True,
    description: str = "Generating",
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
        batch_size: examples per ``generate`` call (1 for the one-at-a-time baseline).
        prompt: ``"rvr"``, ``"cot"`` or ``"direct"``.
        max_new_tokens: tokens generated per answer (default per prompt: :data:`DEFAULT_MAX_NEW_TOKENS`).
        max_pixels: images are resized to this many pixels at most (never cropped).
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Yields:
        One list per batch; each generation is ``{"reply", "prediction", "reasoning", "answer_found"}``.
    """
    import torch
    from tqdm.auto import tqdm

    from .data import resize_to_pixel_budget

    if prompt not in PROMPT_STYLES:
        raise ValueError(f"Unknown prompt {prompt!r}; choose one of {sorted(PROMPT_STYLES)} (--prompt).")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    budget = _pixel_budget(processor, max_pixels)
    tokenizer = processor.tokenizer
    config = _greedy_config(model, max_new_tokens or DEFAULT_MAX_NEW_TOKENS[prompt], tokenizer.pad_token_id)
    model.eval()
    with tqdm(total=len(examples), desc=description, unit="example", disable=not progress) as bar:
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            images = [resize_to_pixel_budget(load_image(example["image"]), budget) for example in batch]
            texts = [
                processor.apply_chat_template(
                    build_messages(example["question"], prompt), tokenize=False, add_generation_prompt=True
                )
                for example in batch
            ]
            inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
            inputs = inputs.to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, generation_config=config)
            replies = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            yield [
                (example, image, {"reply": reply, **parse_reply(reply, prompt)})
                for example, image, reply in zip(batch, images, replies)
            ]
            bar.update(len(batch))


def generate_answers(
    model: Any,
    processor: Any,
    examples: Sequence[Mapping[str, Any]],
    batch_size: int = 8,
    prompt: str = "rvr",
    max_new_tokens: int | None = None,
    *,
    max_pixels: int | None = PAPER_MAX_PIXELS,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Answer every example with batched greedy generation; ``batch_size=1`` answers one at a time.

    Args: as :func:`generate_batches`.

    Returns:
        One ``{"reply", "prediction", "reasoning", "answer_found"}`` per example, in order.
    """
    return [
        generation
        for batch in generate_batches(
            model, processor, examples, batch_size, prompt, max_new_tokens, max_pixels=max_pixels, progress=progress
        )
        for _, _, generation in batch
    ]


# --------------------------------------------------------------------------------------------
# Scoring and summaries
# --------------------------------------------------------------------------------------------


def score_example(example: Mapping[str, Any], prediction: str) -> float:
    """Score one prediction with the example's metric (see ``benchmarks.METRICS``).

    Example:
        >>> score_example({"answer": "No", "metric": "yes_no"}, "no")
        1.0
    """
    return float(METRICS[example.get("metric") or "relaxed"](prediction, example))


def prediction_record(index: int, example: Mapping[str, Any], generation: Mapping[str, Any]) -> dict[str, Any]:
    """The line written to ``predictions.jsonl`` for one example.

    ``score`` is the metric's value (0/1, or partial credit for ChartQAPro's ANLS and list
    answers); ``correct`` is ``score >= 0.5``.
    """
    score = score_example(example, generation["prediction"])
    return {
        "index": index,
        "id": example.get("id"),
        "subset": example.get("subset"),
        "question": example["question"],
        "answer": example["answer"],
        "prediction": generation["prediction"],
        "reasoning": generation.get("reasoning"),
        "correct": score >= 0.5,
        "score": score,
        "answer_found": generation.get("answer_found", True),
        "reply": generation.get("reply"),
        "meta": dict(example.get("meta") or {}),
    }


def summarize(benchmark: Benchmark, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy (mean score, percent), the benchmark's aggregations, and the headline number.

    Example:
        >>> from chartrvr_nb.benchmarks import BENCHMARKS
        >>> records = [{"subset": "human", "score": 1.0, "answer_found": True},
        ...            {"subset": "augmented", "score": 0.0, "answer_found": False}]
        >>> summary = summarize(BENCHMARKS["chartqa"], records)
        >>> summary["accuracy"], summary["subsets"], summary["headline"], summary["headline_value"]
        (50.0, {'augmented': 0.0, 'human': 100.0}, 'subset_mean', 50.0)
        >>> summary["subset_sizes"]
        {'augmented': 1, 'human': 1}
    """
    scores = [float(record["score"]) for record in records]
    summary: dict[str, Any] = {
        "n": len(records),
        "accuracy": 100.0 * sum(scores) / len(scores) if scores else None,
        "answer_found_rate": (
            100.0 * sum(bool(r.get("answer_found", True)) for r in records) / len(records) if records else None
        ),
    }
    for name in benchmark.aggregations:
        summary[name] = AGGREGATIONS[name](list(records))
    if "subsets" in summary:
        sizes: dict[str, int] = {}
        for record in records:
            if record.get("subset") is not None:
                sizes[str(record["subset"])] = sizes.get(str(record["subset"]), 0) + 1
        summary["subset_sizes"] = dict(sorted(sizes.items()))
    summary["headline"] = benchmark.headline
    summary["headline_value"] = summary.get(benchmark.headline)
    return summary


def paired_bootstrap(
    scores: Sequence[float],
    baseline_scores: Sequence[float],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 2025,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Difference of mean scores (percentage points) with a paired bootstrap confidence interval.

    Both models answered the same examples, so each resample draws example indices with
    replacement and takes the difference on those same examples; the interval is the
    percentile interval of the resampled differences. Seeded, so it is reproducible.

    Example:
        >>> result = paired_bootstrap([1, 1, 1, 0] * 25, [1, 0, 0, 0] * 25, n_resamples=200, seed=0)
        >>> result["difference"], result["ci_low"] > 0
        (50.0, True)
    """
    import numpy as np

    ours, base = np.asarray(scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    if ours.shape != base.shape or ours.size == 0:
        raise ValueError("paired_bootstrap needs two equally long, non-empty score lists (one per example).")
    rng = np.random.default_rng(seed)
    differences = ours - base
    resampled = []
    chunk = max(1, 2_000_000 // differences.size)  # bound memory on large benchmarks
    for start in range(0, n_resamples, chunk):
        count = min(chunk, n_resamples - start)
        indices = rng.integers(0, differences.size, size=(count, differences.size))
        resampled.append(differences[indices].mean(axis=1))
    samples = np.concatenate(resampled)
    alpha = (1.0 - confidence) / 2.0
    return {
        "difference": float(100.0 * differences.mean()),
        "ci_low": float(100.0 * np.quantile(samples, alpha)),
        "ci_high": float(100.0 * np.quantile(samples, 1.0 - alpha)),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
    }


def paper_reference(vlm_name: str, adapter: str | None) -> str | None:
    """Which of the paper's models a run compares with: Chart-RVR-3B with an adapter, the base 3B without.

    Example:
        >>> paper_reference("qwen2-5-3b", None), paper_reference("qwen2-5-3b", "sanchit97/chart-rvr-3b")
        ('Qwen2.5-VL-3B (direct)', 'Chart-RVR-3B')
        >>> paper_reference("tiny", None) is None
        True
    """
    if vlm_name != "qwen2-5-3b":
        return None
    return CHART_RVR if adapter else QWEN_DIRECT


def _summaries(summary_or_summaries: Any) -> list[Mapping[str, Any]]:
    if isinstance(summary_or_summaries, Mapping):
        if "benchmark" in summary_or_summaries:
            return [summary_or_summaries]
        return list(summary_or_summaries.values())
    return [getattr(item, "summary", item) for item in summary_or_summaries]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def results_table(summary_or_summaries: Any) -> pd.DataFrame:
    """Our numbers beside the paper's: one row per reported number, per benchmark.

    Args:
        summary_or_summaries: a ``summary.json`` dict, a list of them (or of
            :class:`EvaluationResult`), or a dict of them by name.

    Returns:
        A DataFrame with columns ``benchmark``, ``metric``, ``n``, ``ours``, the paper's
        ``Qwen2.5-VL-3B (direct)`` and ``Chart-RVR-3B`` numbers (on the headline row), and
        ``vs paper`` (ours minus the paper's number for the same model, when there is one);
        numbers in percent, rounded to 2 decimals (``summary.json`` keeps them unrounded).

    Example:
        >>> table = results_table({"benchmark": "chartfc", "model": "qwen2-5-3b", "adapter": None,
        ...                        "n": 4, "accuracy": 75.0, "headline": "accuracy", "headline_value": 75.0})
        >>> table[["benchmark", "metric", "ours", "Qwen2.5-VL-3B (direct)", "vs paper"]].values.tolist()
        [['chartfc', 'accuracy', 75.0, 74.4, 0.6]]
    """
    import pandas as pd

    rows = []
    for summary in _summaries(summary_or_summaries):
        name = summary["benchmark"]
        paper = BENCHMARKS[name].paper if name in BENCHMARKS else {}
        reference = paper_reference(summary.get("model", ""), summary.get("adapter"))
        headline = summary.get("headline", "accuracy")
        ours = summary.get("headline_value", summary.get("accuracy"))
        rows.append(
            {
                "benchmark": name,
                "metric": HEADLINE_LABELS.get(headline, headline),
                "n": summary.get("n"),
                "ours": _round(ours),
                QWEN_DIRECT: paper.get(QWEN_DIRECT),
                CHART_RVR: paper.get(CHART_RVR),
                "vs paper": _round(ours - paper[reference]) if ours is not None and reference in paper else None,
            }
        )
        n = summary.get("n")
        extras = []  # (metric, value, number of examples behind it)
        if headline != "accuracy":
            extras.append(("accuracy (all examples)", summary.get("accuracy"), n))
        if "acc_plus" in summary and headline != "acc_plus":
            extras.append(("Acc+ (pairs of yes/no questions)", summary["acc_plus"], n))
        sizes = summary.get("subset_sizes") or {}
        for subset, value in (summary.get("subsets") or {}).items():
            extras.append((f"subset: {subset}", value, sizes.get(subset)))
        comparison = summary.get("comparison")
        if comparison:
            extras.append(("base model (same examples)", summary.get("base", {}).get("accuracy"), n))
            extras.append(("adapter - base", comparison["difference"], n))
        rows.extend(
            {"benchmark": name, "metric": metric, "n": count, "ours": _round(value)} for metric, value, count in extras
        )
    columns = ["benchmark", "metric", "n", "ours", QWEN_DIRECT, CHART_RVR, "vs paper"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


def resolve_adapter(adapter: str | os.PathLike | None) -> str | None:
    """Where to load a LoRA adapter from: a local folder with ``adapter_config.json``, or a hub id.

    A folder that holds ``adapter_config.json`` (a ``checkpoint-<step>`` or a final ``adapter/``
    folder) is used as is. A training run folder gives its final ``adapter/`` when training
    finished, else its newest complete checkpoint. Anything else shaped like ``owner/name`` is
    taken as a hub id (e.g. ``sanchit97/chart-rvr-3b``).

    Raises:
        ValueError: a local folder without an adapter, or a path that does not exist.

    Example:
        >>> resolve_adapter("sanchit97/chart-rvr-3b")
        'sanchit97/chart-rvr-3b'
        >>> resolve_adapter(None) is None
        True
    """
    if adapter is None or str(adapter) == "":
        return None
    path = Path(adapter).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return str(path)
        if (path / "adapter" / "adapter_config.json").is_file():
            return str(path / "adapter")
        newest = newest_complete_checkpoint(path)  # one the Trainer finished writing
        if newest is not None and (newest / "adapter_config.json").is_file():
            return str(newest)
        raise ValueError(
            f"{str(path)!r} holds no LoRA adapter: no adapter_config.json, no adapter/ folder and no complete "
            "checkpoint-<step> with one. Pass a training run folder, one of its checkpoint-<step> folders, "
            "its adapter/ folder, or a hub id such as sanchit97/chart-rvr-3b."
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


def default_output_dir(vlm_name: str, dataset_name: str, prompt: str, adapter: str | None) -> Path:
    """``runs/eval/<model>-<benchmark>-<prompt>[-<adapter>]``.

    Example:
        >>> default_output_dir("qwen2-5-3b", "chartqa", "rvr", "sanchit97/chart-rvr-3b").as_posix()
        'runs/eval/qwen2-5-3b-chartqa-rvr-sanchit97-chart-rvr-3b'
    """
    name = f"{vlm_name}-{dataset_name}-{prompt}"
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
    *,
    batch_size: int,
    prompt: str,
    max_new_tokens: int | None,
    max_pixels: int | None,
    progress: bool,
    description: str,
) -> list[dict[str, Any]]:
    """Generate, score and write one model's predictions; lines are written as batches finish."""
    records: list[dict[str, Any]] = []
    kept_images = 0
    with path.open("w", encoding="utf-8") as out:
        batches = generate_batches(
            model, processor, examples, batch_size, prompt, max_new_tokens,
            max_pixels=max_pixels, progress=progress, description=description,
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
    *,
    adapter: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    prompt: str = "rvr",
    data_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    compare_base: bool = False,
    max_new_tokens: int | None = None,
    seed: int = 2025,
    max_pixels: int | None = PAPER_MAX_PIXELS,
    progress: bool = True,
    verbose: bool = True,
) -> EvaluationResult:
    """Evaluate a model, optionally with a LoRA adapter, on one benchmark and write the results.

    Args:
        vlm_name: a key of ``models.MODEL_REGISTRY`` (``qwen2-5-3b``, ``qwen2-5-7b``, ``tiny``).
        dataset_name: a key of ``benchmarks.BENCHMARKS``.
        adapter: a training run folder (its final ``adapter/``, else its newest complete
            checkpoint), a ``checkpoint-<step>`` folder, an ``adapter/`` folder, or a hub id.
        limit: evaluate only the first ``limit`` examples.
        batch_size: examples per generation batch.
        prompt: ``"rvr"`` (the trained format), ``"cot"`` or ``"direct"``.
        data_dir: local copy of the data (required for ``plotqa`` and ``chartfc``).
        output_dir: where ``predictions.jsonl`` and ``summary.json`` go (default
            :func:`default_output_dir`).
        compare_base: also evaluate the base model (adapter disabled) on the same examples,
            write ``base_predictions.jsonl``, and report the difference with a paired bootstrap
            95% interval.
        max_new_tokens: tokens per answer (default: 768 for rvr/cot, 64 for direct).
        seed: seeds torch and the bootstrap.
        max_pixels: image pixel budget (default: the paper's 320*28*28).
        progress: show progress bars.
        verbose: print the results table and where the files are.

    Returns:
        An :class:`EvaluationResult` (summary, predictions, table, output folder).

    Raises:
        ValueError: an unknown benchmark, prompt or adapter; ``compare_base`` without an adapter;
            missing data files.
    """
    import torch

    from .models import load_model_and_processor

    benchmark = get_benchmark(dataset_name)
    if prompt not in PROMPT_STYLES:
        raise ValueError(f"Unknown prompt {prompt!r}; choose one of {sorted(PROMPT_STYLES)} (--prompt).")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size} (--batch-size).")
    if compare_base and adapter is None:
        raise ValueError("compare_base needs an adapter to compare with the base model; pass adapter (--adapter).")
    adapter_path = resolve_adapter(adapter)
    examples = load_examples(dataset_name, data_dir=data_dir, limit=limit)
    if not examples:
        raise ValueError(f"{benchmark.title} has no examples to evaluate; check data_dir and limit.")

    torch.manual_seed(seed)
    model, processor = load_model_and_processor(vlm_name, device_map="auto" if torch.cuda.is_available() else None)
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    if output_dir is None:
        output_dir = default_output_dir(vlm_name, dataset_name, prompt, adapter_path)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(
        batch_size=batch_size, prompt=prompt, max_new_tokens=max_new_tokens, max_pixels=max_pixels, progress=progress
    )

    started = time.perf_counter()
    records = _evaluate_pass(
        model, processor, examples, out_dir / "predictions.jsonl",
        description=f"{benchmark.title} ({'adapter' if adapter_path else vlm_name})", **settings,
    )
    seconds = time.perf_counter() - started
    summary: dict[str, Any] = {
        "benchmark": benchmark.name,
        "title": benchmark.title,
        "source": str(data_dir) if data_dir is not None else benchmark.source,
        "split": benchmark.split,
        "model": vlm_name,
        "adapter": adapter_path,
        "prompt": prompt,
        "metric": benchmark.metric,
        **summarize(benchmark, records),
        "paper": dict(benchmark.paper),
        "paper_reference": paper_reference(vlm_name, adapter_path),
        "limit": limit,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens or DEFAULT_MAX_NEW_TOKENS[prompt],
        "max_pixels": _pixel_budget(processor, max_pixels),
        "seed": seed,
        "seconds": round(seconds, 3),
        "examples_per_second": round(len(records) / seconds, 4) if seconds > 0 else None,
    }

    base_records: list[dict[str, Any]] = []
    if compare_base:
        with model.disable_adapter():
            base_records = _evaluate_pass(
                model, processor, examples, out_dir / "base_predictions.jsonl",
                description=f"{benchmark.title} (base {vlm_name})", **settings,
            )
        summary["base"] = summarize(benchmark, base_records)
        summary["comparison"] = paired_bootstrap(
            [r["score"] for r in records], [r["score"] for r in base_records], seed=seed
        )

    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    table = results_table(summary)
    if verbose:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.precision", 2, "display.max_columns", 20):
            print(table.to_string(index=False))
        print(f"Wrote {out_dir / 'predictions.jsonl'} and {out_dir / 'summary.json'}")
    return EvaluationResult(
        summary=summary, predictions=records, table=table, output_dir=out_dir, base_predictions=base_records
    )


def read_predictions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``predictions.jsonl`` file (e.g. for ``plots.plot_mistakes``)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "EvaluationResult",
    "generate_answers",
    "generate_batches",
    "load_examples",
    "load_image",
    "paired_bootstrap",
    "parse_reply",
    "read_predictions",
    "resolve_adapter",
    "results_table",
    "run_evaluation",
    "summarize",
]
