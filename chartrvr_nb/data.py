"""Training data: the row schema, synthetic rows, GRPO preparation, the image-size rule, the cache root.

Every source yields the same schema (see ``REQUIRED_COLUMNS``): ``image`` (PIL), ``query``,
``label``, ``chart_type`` (one of ``prompts.CHART_TYPES``), ``table``
(``{"columns": [...], "rows": [[...]]}``, cells as strings) and ``reasoning``
(``"<step-1>: ... <step-2>: ..."``). Synthetic rows need no download: :mod:`chartrvr_nb.chart_kinds`
draws ten chart types from small random tables and :mod:`chartrvr_nb.synthetic` computes every
label from its table, so labels are verifiable by construction. Every image that reaches a model,
in training, evaluation or a bench, is sized by one rule, :func:`fit_to_pixel_budget`. The rows are
loaded from the hub, a local file or the generator by :mod:`chartrvr_nb.train_data`.

Top-level imports stay light: datasets, matplotlib, numpy and PIL are imported inside functions.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import UserError
from .chart_kinds import render_chart
from .prompts import CHART_TYPES, build_messages
from .synthetic import QUESTION_KINDS, make_synthetic_example

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from datasets import Dataset
    from PIL.Image import Image

TRAIN_DATASET = "sanchit97/chart-rvr-grpo-train"  # the Chart-RVR authors' GRPO training set on the hub (34,194 rows)
REQUIRED_COLUMNS: tuple[str, ...] = ("image", "query", "label", "chart_type", "table", "reasoning")

# Qwen2.5-VL merges 2x2 patches of 14 px: its images have sides in multiples of 28 px (its grid),
# and its image processor keeps them at 56x56 px or more.
PATCH_GRID = 28
MIN_PIXELS = 56 * 56
# Qwen2.5-VL's image processor's own upper bound (max_pixels 12,845,056 in the 3B's preprocessor_config.json):
# how far its grid rounding may go when nothing else bounds it, as in the authors' training.
PROCESSOR_MAX_PIXELS = 16384 * 28 * 28
IMAGE_RESIZE_MODES = ("chart-rvr", "project")  # see prepare_grpo_dataset


def cache_root() -> Path:
    """Where downloads and built models are kept: ``$CHARTRVR_NB_CACHE``, else ``~/.cache/chartrvr_nb``.

    The tiny models, the benchmark downloads and the bench's random 3B all live under it.
    """
    return Path(os.environ.get("CHARTRVR_NB_CACHE") or Path.home() / ".cache" / "chartrvr_nb").expanduser()


class TrainDataError(UserError, ValueError):
    """Training rows that cannot be used as given; the message names the file (and row) and the fix."""


# --------------------------------------------------------------------------------------------
# Columns and images
# --------------------------------------------------------------------------------------------


def check_columns(dataset: Any, required: Iterable[str] = REQUIRED_COLUMNS, name: str = "training data") -> None:
    """Raise a ``ValueError`` naming every required column the dataset lacks.

    Args:
        dataset: anything with ``column_names`` (a ``datasets.Dataset``) or a list of column names.
        required: the columns that must be present.
        name: how to call the dataset in the message (e.g. its hub id or path).

    Example:
        >>> check_columns(["image", "query"], required=("image", "query"))
        >>> check_columns(["image"], required=("image", "label"), name="my.parquet")
        Traceback (most recent call last):
        ...
        chartrvr_nb.data.TrainDataError: my.parquet is missing the column(s) ['label'] ...
    """
    present = list(getattr(dataset, "column_names", dataset))
    missing = [column for column in required if column not in present]
    if missing:
        raise TrainDataError(
            f"{name} is missing the column(s) {missing} (it has {present}). Training rows need "
            f"{list(required)}; rename the columns to match (Dataset.rename_column), or use "
            "train_data='synthetic' to generate rows in the right schema."
        )


def _scale_into_budget(image: Image, max_pixels: int, upscale: bool = False) -> Image:
    """Step 1 of :func:`fit_to_pixel_budget`: scale keeping the aspect ratio until ``width * height
    <= max_pixels`` (and, with ``upscale``, as close to it as whole pixels allow). Sides are not
    shrunk below 28 px, so for an extreme aspect ratio that floor can win over the budget."""
    width, height = image.size
    if width * height <= max_pixels and not upscale:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    min_width, min_height = min(PATCH_GRID, width), min(PATCH_GRID, height)
    new_width = max(min_width, math.floor(width * scale))
    new_height = max(min_height, math.floor(height * scale))
    # Floating point can leave the product a pixel row over budget; trim the longer side.
    while new_width * new_height > max_pixels and (new_width > min_width or new_height > min_height):
        if (new_width >= new_height and new_width > min_width) or new_height <= min_height:
            new_width -= 1
        else:
            new_height -= 1
    if (new_width, new_height) == (width, height):
        return image
    from PIL import Image as PILImage

    return image.resize((new_width, new_height), PILImage.Resampling.BICUBIC)


def fit_to_pixel_budget(
    image: Image, max_pixels: int, *, upscale: bool = False, grid_max_pixels: int | None = None
) -> Image:
    """Fit an image to a pixel budget and onto Qwen2.5-VL's 28-pixel grid: the project's one image-size rule.

    Training (:func:`prepare_grpo_dataset`), evaluation and the benches all size images with it, so
    the model sees a chart the same way everywhere. Two steps, each a bicubic resize only when it
    changes the size, never a crop:

    1. scale keeping the aspect ratio until ``width * height <= max_pixels``: down when the image
       is larger; with ``upscale``, up as well, to fill the budget (a benchmark's small chart then
       costs as many image tokens as a real one);
    2. round the sides to multiples of 28 the way Qwen2.5-VL's image processor does
       (``smart_resize``: the nearest multiple, within ``[56 * 56, grid_max_pixels]`` pixels). The HF
       processor and vLLM each round an off-grid image on their own and can land on different
       sizes, so their image-token counts disagree; an image on the grid is left alone by both.

    The Chart-RVR authors' training (``_resize_up``, main.py 492-506 at 83c4406) is ``upscale=True,
    grid_max_pixels=PROCESSOR_MAX_PIXELS`` on an RGB image: every image scaled to the budget (their
    ``int(w * scale), int(h * scale)``), then rounded by the processor, whose own bound is far above it,
    so the nearest multiples of 28 can land a few percent over the budget.

    Args:
        image: a PIL image.
        max_pixels: the pixel budget (the authors train with ``320 * 28 * 28``); at least one 28x28 cell.
        upscale: also enlarge an image smaller than the budget (without it, only the grid's
            rounding, up to the processor's 56x56 px minimum, can enlarge an image).
        grid_max_pixels: the most pixels the grid's rounding may reach (default ``max_pixels``: the
            result stays within the budget).

    Returns:
        The resized image (a new image), or ``image`` itself when it is on the grid and within budget.

    Example:
        >>> from PIL import Image
        >>> fit_to_pixel_budget(Image.new("RGB", (1000, 700)), 320 * 28 * 28).size
        (588, 420)
        >>> fit_to_pixel_budget(Image.new("RGB", (320, 240)), 320 * 28 * 28).size  # only onto the grid
        (308, 252)
        >>> fit_to_pixel_budget(Image.new("RGB", (320, 240)), 320 * 28 * 28, upscale=True).size
        (588, 420)
        >>> fit_to_pixel_budget(Image.new("RGB", (1652, 1923)), 320 * 28 * 28).size  # 304 cells of 28x28
        (448, 532)
        >>> large = Image.new("RGB", (1652, 1923))
        >>> fit_to_pixel_budget(large, 320 * 28 * 28, grid_max_pixels=PROCESSOR_MAX_PIXELS).size  # 323 cells
        (476, 532)
        >>> image = Image.new("RGB", (252, 196))
        >>> fit_to_pixel_budget(image, 224 * 224) is image
        True
    """
    if max_pixels < PATCH_GRID * PATCH_GRID:
        raise ValueError(
            f"max_pixels must be a positive pixel budget of at least {PATCH_GRID}x{PATCH_GRID} "
            f"(one cell of Qwen2.5-VL's grid), got {max_pixels}."
        )
    from PIL import Image as PILImage
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    # Two resizes rather than one straight to the final size: every training row so far was made
    # this way (shrunk to the budget, then snapped to the grid), and one resize would change its pixels.
    image = _scale_into_budget(image, max_pixels, upscale)
    width, height = image.size
    min_pixels = min(MIN_PIXELS, max_pixels)  # a budget below the processor's minimum wins
    new_height, new_width = smart_resize(
        height, width, factor=PATCH_GRID, min_pixels=min_pixels, max_pixels=grid_max_pixels or max_pixels
    )
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), PILImage.Resampling.BICUBIC)


# --------------------------------------------------------------------------------------------
# Synthetic rows and datasets
# --------------------------------------------------------------------------------------------


def chart_image(chart_type: str, table: dict[str, Any], max_pixels: int | None = None) -> Image:
    """A synthetic chart of ``table`` (:func:`chartrvr_nb.chart_kinds.render_chart`) within ``max_pixels``.

    Drawn at 320x240 px; with a budget, drawn at the lower resolution that fits it and then fitted
    to it and to the 28-pixel grid by :func:`fit_to_pixel_budget`, as training would fit it.

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> chart_image("bar", table, max_pixels=112 * 112).size
        (140, 84)
        >>> chart_image("bar", table).size
        (320, 240)
    """
    image = render_chart(chart_type, table, max_pixels)
    return fit_to_pixel_budget(image, max_pixels) if max_pixels else image


def make_synthetic_rows(
    n: int,
    seed: int = 0,
    max_pixels: int | None = None,
    render: bool = True,
    chart_types: tuple[str, ...] = CHART_TYPES,
) -> list[dict]:
    """``n`` synthetic training rows, deterministic by seed.

    Row ``i`` depends only on ``(seed, i)``, so a longer list extends a shorter one. Chart types
    cycle through ``chart_types`` (all ten by default); question kinds are drawn at random.

    Args:
        n: number of rows.
        seed: random seed.
        max_pixels: draw each chart within this pixel budget, on the 28-pixel grid (default: 320x240 px).
        render: draw the charts; ``False`` leaves ``image`` as ``None`` (text-only uses, such as
            training the tiny model's tokenizer).
        chart_types: the chart types to draw (see :func:`synthetic_chart_types`).

    Returns:
        Dicts in the training schema plus ``question_kind``.

    Example:
        >>> rows = make_synthetic_rows(3, seed=1, render=False)
        >>> [r["chart_type"] for r in rows]
        ['line', 'bar', 'stacked bar']
        >>> sorted(rows[0])
        ['chart_type', 'image', 'label', 'query', 'question_kind', 'reasoning', 'table']
    """
    rows = []
    for index in range(n):
        rng = random.Random(f"chartrvr-synthetic-{seed}-{index}")
        chart_type = chart_types[index % len(chart_types)]
        example = make_synthetic_example(chart_type, rng.choice(QUESTION_KINDS), rng)
        example.pop("steps")
        example.pop("spec")
        example["image"] = chart_image(chart_type, example["table"], max_pixels) if render else None
        rows.append(example)
    return rows


def _features():
    from datasets import Features, Image, List, Value

    return Features(
        {
            "image": Image(),
            "query": Value("string"),
            "label": Value("string"),
            "chart_type": Value("string"),
            "table": {"columns": List(Value("string")), "rows": List(List(Value("string")))},
            "reasoning": Value("string"),
            "question_kind": Value("string"),
        }
    )


def make_synthetic_dataset(
    n: int, seed: int = 0, max_pixels: int | None = None, chart_types: tuple[str, ...] = CHART_TYPES
) -> Dataset:
    """``n`` synthetic rows as a ``datasets.Dataset`` in the training schema.

    Example:
        >>> ds = make_synthetic_dataset(2, seed=0, max_pixels=112 * 112)
        >>> ds.column_names
        ['image', 'query', 'label', 'chart_type', 'table', 'reasoning', 'question_kind']
        >>> ds[0]["image"].width * ds[0]["image"].height <= 112 * 112
        True
    """
    from datasets import Dataset

    rows = make_synthetic_rows(n, seed=seed, max_pixels=max_pixels, chart_types=chart_types)
    features = _features()
    return Dataset.from_list([{name: row[name] for name in features} for row in rows], features=features)


def write_demo_batch(path: str | os.PathLike, n: int = 8, seed: int = 0) -> Path:
    """Write a JSONL batch to score: every :func:`chartrvr_nb.inspection.example_completions` variant
    of ``n`` synthetic rows.

    Each line has ``completion``, ``label``, ``chart_type``, ``table``, ``reasoning`` (the
    columns ``python -m chartrvr_nb rewards`` reads), plus ``example`` and ``variant``.

    Args:
        path: the file to write; its folder is created.
        n: synthetic rows (each gives seven completions).
        seed: the generator's seed.

    Returns:
        The file written.
    """
    from .inspection import REWARD_COLUMNS, example_completions

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for index, row in enumerate(make_synthetic_rows(n, seed=seed, render=False)):
            for variant, completion in example_completions(row).items():
                record = {
                    "example": index,
                    "variant": variant,
                    "completion": completion,
                    **{name: row[name] for name in REWARD_COLUMNS},
                }
                out.write(json.dumps(record) + "\n")
    return path


def synthetic_chart_types(source: str) -> tuple[str, ...] | None:
    """The chart types a synthetic source draws: ``"synthetic"`` all ten, ``"synthetic:bar,pie"``
    those named; ``None`` for a source that is not synthetic.

    Example:
        >>> synthetic_chart_types("synthetic:bar, stacked bar")
        ('bar', 'stacked bar')
        >>> synthetic_chart_types("sanchit97/chart-rvr-grpo-train") is None
        True
        >>> synthetic_chart_types("synthetic:bars")
        Traceback (most recent call last):
        ...
        ValueError: Unknown chart type(s) ['bars'] in 'synthetic:bars'. Choose from: line, bar, ...
    """
    if source == "synthetic":
        return CHART_TYPES
    if not source.startswith("synthetic:"):
        return None
    chosen = tuple(name.strip() for name in source.removeprefix("synthetic:").split(",") if name.strip())
    unknown = [name for name in chosen if name not in CHART_TYPES]
    if unknown or not chosen:
        raise ValueError(
            f"Unknown chart type(s) {unknown} in {source!r}. Choose from: {', '.join(CHART_TYPES)} "
            "(comma-separated after 'synthetic:', e.g. synthetic:bar,pie)."
        )
    return chosen


# --------------------------------------------------------------------------------------------
# Preparing for GRPO
# --------------------------------------------------------------------------------------------


def prepare_grpo_dataset(
    dataset: Dataset,
    max_pixels: int,
    style: str = "rvr",
    *,
    system_prompt: str | None = None,
    image_resize: str = "project",
) -> Dataset:
    """Add the conversational ``prompt`` column TRL's GRPOTrainer expects and fit images to budget.

    TRL (1.16) reads the ``image`` column and fills the ``{"type": "image"}`` placeholder of the
    user message with it before applying the processor's chat template, so the prompt holds the
    placeholder, not the image. All other columns (label, chart_type, table, reasoning, ...)
    stay: TRL passes them to the reward functions as keyword arguments.

    Args:
        dataset: rows in the training schema.
        max_pixels: the image pixel budget.
        style: the prompt style of :func:`chartrvr_nb.prompts.build_messages`.
        system_prompt: the system message's text (``system_prompts.resolve_system_prompt``); default
            this project's wording for ``style``.
        image_resize: ``"chart-rvr"``: every image in RGB, scaled up or down to the budget, then to the
            nearest 28-pixel grid as Qwen2.5-VL's processor rounds it (the authors' ``_resize_up``);
            ``"project"``: larger images shrunk, the result within the budget
            (:func:`fit_to_pixel_budget` both ways).

    Returns:
        The dataset with ``prompt`` added, ``image`` fitted to the budget and the 28-pixel grid, and
        ``row_id`` (the row's position in ``dataset``, unless it has that column already) so that a
        logged sample names the chart it was generated from without holding the image.
    """
    check_columns(dataset, required=("image", "query"), name="the dataset to prepare")
    if image_resize not in IMAGE_RESIZE_MODES:
        raise ValueError(f"Unknown image_resize {image_resize!r}; choose one of {', '.join(IMAGE_RESIZE_MODES)}.")
    build_messages("", style)  # fails now, with the valid styles listed, rather than inside map
    like_the_authors = image_resize == "chart-rvr"

    def prepare(row: dict[str, Any], index: int) -> dict[str, Any]:
        image = row["image"].convert("RGB") if like_the_authors and row["image"].mode != "RGB" else row["image"]
        return {
            "prompt": build_messages(row["query"], style, system_prompt),
            "image": fit_to_pixel_budget(
                image,
                max_pixels,
                upscale=like_the_authors,
                grid_max_pixels=PROCESSOR_MAX_PIXELS if like_the_authors else None,
            ),
            **({} if "row_id" in dataset.column_names else {"row_id": index}),
        }

    return dataset.map(prepare, with_indices=True, desc="Preparing GRPO prompts")
