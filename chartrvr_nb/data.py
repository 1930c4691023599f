"""Training data: the hub/local loaders, GRPO preparation, and embedded synthetic charts.

Every source yields the same schema (see ``REQUIRED_COLUMNS``): ``image`` (PIL), ``query``,
``label``, ``chart_type`` (one of ``prompts.CHART_TYPES``), ``table``
(``{"columns": [...], "rows": [[...]]}``, cells as strings) and ``reasoning``
(``"<step-1>: ... <step-2>: ..."``). The synthetic generator needs no download: matplotlib draws
ten chart types from small random tables, and every question's label is computed from the table
by :func:`answer_question`, so labels are verifiable by construction.

Top-level imports stay light: datasets, matplotlib, numpy and PIL are imported inside functions.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable

from .prompts import CHART_TYPES, build_messages, format_completion

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from datasets import Dataset
    from PIL.Image import Image

TRAIN_DATASET = "sanchit97/chart-rvr-grpo-train"  # the paper's GRPO training set (34,194 rows)
REQUIRED_COLUMNS: tuple[str, ...] = ("image", "query", "label", "chart_type", "table", "reasoning")
QUESTION_KINDS: tuple[str, ...] = ("value", "max", "min", "difference", "sum", "count", "yes/no")

# Qwen2.5-VL merges 2x2 patches of 14 px, so 28 px is the smallest side its processor works with.
MIN_IMAGE_SIDE = 28
# The synthetic charts are drawn at this size unless a smaller pixel budget asks for less.
_RENDER_WIDTH, _RENDER_HEIGHT = 320, 240


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
        ValueError: my.parquet is missing the column(s) ['label'] ...
    """
    present = list(getattr(dataset, "column_names", dataset))
    missing = [column for column in required if column not in present]
    if missing:
        raise ValueError(
            f"{name} is missing the column(s) {missing} (it has {present}). Training rows need "
            f"{list(required)}; rename the columns to match (Dataset.rename_column), or use "
            "train_data='synthetic' to generate rows in the right schema."
        )


def resize_to_pixel_budget(image: Image, max_pixels: int) -> Image:
    """Shrink an image, keeping its aspect ratio, until ``width * height <= max_pixels``.

    Never crops and never upscales: an image already within budget is returned unchanged.
    Sides are not shrunk below 28 px (Qwen2.5-VL's smallest patch grid), so for an extreme
    aspect ratio that floor can win over the budget.

    Args:
        image: a PIL image.
        max_pixels: the pixel budget (the paper uses ``320 * 28 * 28``).

    Returns:
        The resized image (a new image), or ``image`` itself when it already fits.

    Example:
        >>> from PIL import Image
        >>> resize_to_pixel_budget(Image.new("RGB", (400, 200)), 20_000).size
        (200, 100)
        >>> resize_to_pixel_budget(Image.new("RGB", (40, 20)), 20_000).size
        (40, 20)
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}.")
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = math.sqrt(max_pixels / (width * height))
    min_width, min_height = min(MIN_IMAGE_SIDE, width), min(MIN_IMAGE_SIDE, height)
    new_width = max(min_width, math.floor(width * scale))
    new_height = max(min_height, math.floor(height * scale))
    # Floating point can leave the product a pixel row over budget; trim the longer side.
    while new_width * new_height > max_pixels and (new_width > min_width or new_height > min_height):
        if (new_width >= new_height and new_width > min_width) or new_height <= min_height:
            new_width -= 1
        else:
            new_height -= 1
    from PIL import Image as PILImage

    return image.resize((new_width, new_height), PILImage.Resampling.BICUBIC)


def snap_to_patch_grid(image: Image, max_pixels: int, min_pixels: int = 56 * 56) -> Image:
    """Resize an image to the size Qwen2.5-VL's processor would pick (sides multiples of 28).

    The HF processor and vLLM each round an image to the 28-pixel grid on their own, and for an
    off-grid image under a budget they can land on different sizes, so the image-token counts
    disagree. An image already on the grid is left alone by both.

    Example:
        >>> from PIL import Image
        >>> snap_to_patch_grid(Image.new("RGB", (230, 170)), 224 * 224).size
        (224, 168)
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = image.size
    new_height, new_width = smart_resize(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
    if (new_width, new_height) == (width, height):
        return image
    from PIL import Image as PILImage

    return image.resize((new_width, new_height), PILImage.Resampling.BICUBIC)


# --------------------------------------------------------------------------------------------
# Questions and their verifiable answers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionSpec:
    """What a synthetic question asks, in a form :func:`answer_question` can evaluate.

    ``column`` is the numeric column asked about; ``first``/``second`` are row labels (values of
    the table's first column) for value, difference and yes/no questions; ``threshold`` is the
    cut-off of a count question.
    """

    kind: str
    column: str
    first: str | None = None
    second: str | None = None
    threshold: str | None = None


def _number(text: str) -> Decimal:
    return Decimal(str(text).replace(",", ""))


def format_number(value: Decimal) -> str:
    """Write a number the way the tables do: no exponent, no trailing zeros.

    Example:
        >>> format_number(Decimal("12.50"))
        '12.5'
        >>> format_number(Decimal("30.0"))
        '30'
    """
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def answer_question(table: dict[str, Any], spec: QuestionSpec) -> tuple[str, list[str]]:
    """The answer to a question about a table, and the reasoning steps that derive it.

    The table's first column labels the rows; ``spec.column`` names a numeric column. Arithmetic
    is exact (decimal), so labels are what a careful reader of the table would write.

    Args:
        table: ``{"columns": [...], "rows": [[...]]}`` with string cells.
        spec: the question.

    Returns:
        ``(answer, steps)``: the label string, and the steps (without ``<step-i>:`` prefixes).

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5.5"]]}
        >>> answer_question(table, QuestionSpec("difference", "Sales", "2021", "2020"))[0]
        '2.5'
        >>> answer_question(table, QuestionSpec("max", "Sales"))
        ('2021', ['Read Sales: 2020 = 3, 2021 = 5.5.', 'The highest Sales is 5.5, for 2021.'])
        >>> answer_question(table, QuestionSpec("count", "Sales", threshold="4"))[0]
        '1'
    """
    columns = list(table["columns"])
    label_column, index = columns[0], columns.index(spec.column)
    values = {row[0]: row[index] for row in table["rows"]}
    listing = f"Read {spec.column}: " + ", ".join(f"{k} = {v}" for k, v in values.items()) + "."

    if spec.kind == "value":
        value = values[spec.first]
        return value, [f"Find {label_column} {spec.first} in the chart.", f"Its {spec.column} is {value}."]
    if spec.kind in ("max", "min"):
        pick = max if spec.kind == "max" else min
        best = pick(values, key=lambda k: _number(values[k]))
        word = "highest" if spec.kind == "max" else "lowest"
        return best, [listing, f"The {word} {spec.column} is {values[best]}, for {best}."]
    if spec.kind == "sum":
        total = format_number(sum(_number(v) for v in values.values()))
        return total, [f"Add up {spec.column}: {' + '.join(values.values())} = {total}."]
    if spec.kind == "count":
        above = [k for k, v in values.items() if _number(v) > _number(spec.threshold)]
        names = ", ".join(above) if above else "none"
        return str(len(above)), [listing, f"Above {spec.threshold}: {names}, so {len(above)}."]
    first, second = values[spec.first], values[spec.second]
    read = [f"{spec.first} has {spec.column} {first}.", f"{spec.second} has {spec.column} {second}."]
    if spec.kind == "difference":
        high, low = sorted((first, second), key=_number, reverse=True)
        difference = format_number(_number(high) - _number(low))
        return difference, read + [f"{high} - {low} = {difference}."]
    if spec.kind == "yes/no":
        greater = _number(first) > _number(second)
        relation = "is greater than" if greater else "is not greater than"
        answer = "Yes" if greater else "No"
        return answer, read + [f"{first} {relation} {second}, so the answer is {answer}."]
    raise ValueError(f"Unknown question kind {spec.kind!r}; choose one of {QUESTION_KINDS}.")


def question_text(table: dict[str, Any], spec: QuestionSpec) -> str:
    """The natural-language question for a spec.

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> question_text(table, QuestionSpec("yes/no", "Sales", "2020", "2021"))
        'Is the Sales of 2020 greater than that of 2021?'
    """
    label_column = table["columns"][0]
    templates = {
        "value": "What is the {column} of {first}?",
        "max": "Which {label} has the highest {column}?",
        "min": "Which {label} has the lowest {column}?",
        "difference": "What is the difference between the {column} of {first} and {second}?",
        "sum": "What is the total {column} over all {label} entries?",
        "count": "How many {label} entries have a {column} above {threshold}?",
        "yes/no": "Is the {column} of {first} greater than that of {second}?",
    }
    return templates[spec.kind].format(
        column=spec.column, label=label_column, first=spec.first, second=spec.second, threshold=spec.threshold
    )


# --------------------------------------------------------------------------------------------
# Random tables
# --------------------------------------------------------------------------------------------

_CATEGORIES = {
    "Country": ["Brazil", "Canada", "China", "Egypt", "France", "India", "Japan", "Kenya", "Mexico", "Peru"],
    "Product": ["Apples", "Bread", "Coffee", "Milk", "Rice", "Tea", "Juice", "Cheese", "Pasta", "Honey"],
    "Department": ["Sales", "Legal", "Support", "Design", "Finance", "Research", "Marketing", "Admin"],
    "Month": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    "Year": [str(year) for year in range(2012, 2024)],
}
_MEASURES = ["Revenue", "Users", "Exports", "Visitors", "Orders", "Output", "Score", "Sales", "Costs"]
_SERIES_PAIRS = [("Online", "Retail"), ("Men", "Women"), ("Urban", "Rural"), ("Domestic", "Foreign")]
_ORDERED_LABELS = ("Month", "Month", "Year")  # time-like axes (in order); months tokenise shorter


def _distinct_values(rng: random.Random, count: int, low: int, high: int, decimals: bool) -> list[str]:
    """``count`` different numbers as strings (distinct, so max/min/difference are unambiguous)."""
    if decimals:
        picks = rng.sample(range(low * 10, high * 10), count)
        return [format_number(Decimal(p) / 10) for p in picks]
    return [str(p) for p in rng.sample(range(low, high), count)]


def _percent_shares(rng: random.Random, count: int) -> list[str]:
    """``count`` different whole percentages (each at least 3) that add up to 100, for pie charts."""
    while True:
        cuts = [0, *sorted(rng.sample(range(1, 100), count - 1)), 100]
        shares = [high - low for low, high in zip(cuts, cuts[1:])]
        if len(set(shares)) == count and min(shares) >= 3:
            return [str(share) for share in shares]


def _ordered_labels(rng: random.Random, label_column: str, count: int) -> list[str]:
    names = _CATEGORIES[label_column]
    start = rng.randrange(len(names) - count + 1)
    return names[start : start + count]


def make_table(chart_type: str, rng: random.Random) -> dict[str, Any]:
    """A small random table suited to a chart type, cells as strings.

    The first column labels the rows; the other columns are numeric with distinct values.

    Example:
        >>> table = make_table("stacked bar", random.Random(0))
        >>> len(table["columns"]), all(isinstance(c, str) for r in table["rows"] for c in r)
        (3, True)
    """
    if chart_type not in CHART_TYPES:
        raise ValueError(f"Unknown chart type {chart_type!r}; choose one of {CHART_TYPES}.")
    # Small tables keep a formatted completion short (Qwen's tokenizer spends one token per digit):
    # the smoke preset's completion budget must hold the whole target.
    count = 3 if chart_type in ("bubble", "stacked bar", "stacked area") else rng.randint(3, 4)
    decimals = rng.random() < 0.15
    if chart_type in ("line", "area"):
        label_column = rng.choice(_ORDERED_LABELS)
        labels = _ordered_labels(rng, label_column, count)
        columns = [label_column, rng.choice(_MEASURES)]
        series = [_distinct_values(rng, count, 5, 100, decimals)]
    elif chart_type in ("stacked bar", "stacked area"):
        label_column = rng.choice(_ORDERED_LABELS if chart_type == "stacked area" else ["Country", "Product", "Month"])
        labels = (
            _ordered_labels(rng, label_column, count)
            if label_column in _ORDERED_LABELS
            else rng.sample(_CATEGORIES[label_column], count)
        )
        columns = [label_column, *rng.choice(_SERIES_PAIRS)]
        series = [_distinct_values(rng, count, 5, 60, decimals) for _ in range(2)]
    elif chart_type == "histogram":
        width = rng.choice([5, 10, 20])
        start = rng.choice([0, 10, 20])
        labels = [f"{start + i * width}-{start + (i + 1) * width}" for i in range(count)]
        columns = ["Range", "Count"]
        series = [_distinct_values(rng, count, 1, 50, decimals=False)]
    elif chart_type == "scatterplot":
        labels = sorted(_distinct_values(rng, count, 1, 40, decimals=False), key=int)
        columns = [rng.choice(["Hours", "Age", "Distance"]), rng.choice(["Score", "Price", "Weight"])]
        series = [_distinct_values(rng, count, 5, 100, decimals)]
    elif chart_type == "bubble":
        label_column = rng.choice(["Country", "Product"])
        labels = rng.sample(_CATEGORIES[label_column], count)
        columns = [label_column, "X", "Y", "Size"]
        series = [_distinct_values(rng, count, 1, 50, decimals=False) for _ in range(3)]
    elif chart_type == "pie":
        label_column = rng.choice(["Country", "Product", "Department"])
        labels = rng.sample(_CATEGORIES[label_column], count)
        columns = [label_column, "Share"]
        series = [_percent_shares(rng, count)]
    else:  # bar, treemap: categories with one measure
        label_column = rng.choice(["Country", "Product", "Department"])
        labels = rng.sample(_CATEGORIES[label_column], count)
        columns = [label_column, rng.choice(_MEASURES)]
        series = [_distinct_values(rng, count, 3, 90, decimals and chart_type == "bar")]
    rows = [[label, *(values[i] for values in series)] for i, label in enumerate(labels)]
    return {"columns": columns, "rows": rows}


def make_question(table: dict[str, Any], kind: str, rng: random.Random) -> QuestionSpec:
    """A random question of the given kind about a table.

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> make_question(table, "count", random.Random(1)).threshold
        '4'
    """
    if kind not in QUESTION_KINDS:
        raise ValueError(f"Unknown question kind {kind!r}; choose one of {QUESTION_KINDS}.")
    column = rng.choice(table["columns"][1:])
    labels = [row[0] for row in table["rows"]]
    first, second = rng.sample(labels, 2)
    if kind == "value":
        return QuestionSpec(kind, column, first=first)
    if kind in ("difference", "yes/no"):
        return QuestionSpec(kind, column, first=first, second=second)
    if kind == "count":
        # A threshold between two neighbouring values: no value sits on the edge.
        index = table["columns"].index(column)
        values = sorted(_number(row[index]) for row in table["rows"])
        cut = rng.randrange(len(values) - 1)
        threshold = (values[cut] + values[cut + 1]) / 2
        return QuestionSpec(kind, column, threshold=format_number(threshold))
    return QuestionSpec(kind, column)


def make_synthetic_example(chart_type: str, kind: str, rng: random.Random) -> dict[str, Any]:
    """One synthetic row without its image: table, question, label and reasoning.

    Returns:
        A dict with ``query``, ``label``, ``chart_type``, ``table``, ``reasoning``,
        ``question_kind``, plus ``steps`` (the reasoning as a list) and ``spec`` (the
        :class:`QuestionSpec`), which the dataset leaves out.

    Example:
        >>> row = make_synthetic_example("bar", "sum", random.Random(3))
        >>> row["reasoning"], row["label"]
        ('<step-1>: Add up Revenue: 63 + 36 + 73 = 172.', '172')
    """
    table = make_table(chart_type, rng)
    spec = make_question(table, kind, rng)
    label, steps = answer_question(table, spec)
    return {
        "query": question_text(table, spec),
        "label": label,
        "chart_type": chart_type,
        "table": table,
        "reasoning": " ".join(f"<step-{i}>: {step}" for i, step in enumerate(steps, start=1)),
        "question_kind": kind,
        "steps": steps,
        "spec": spec,
    }


def synthetic_completion(row: dict[str, Any]) -> str:
    """The ideal completion for a synthetic row, in the exact target format.

    Example:
        >>> row = make_synthetic_example("pie", "max", random.Random(0))
        >>> synthetic_completion(row).startswith("<think>\\n<type>pie</type>")
        True
    """
    return format_completion(row["chart_type"], row["table"], row["steps"], row["label"])


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------


def _treemap_rectangles(values: list[float], x: float, y: float, width: float, height: float):
    """Slice-and-dice treemap: split the longer side in proportion to the first value, recurse."""
    if len(values) == 1:
        return [(x, y, width, height)]
    share = values[0] / sum(values)
    if width >= height:
        first = (x, y, width * share, height)
        return [first, *_treemap_rectangles(values[1:], x + width * share, y, width * (1 - share), height)]
    first = (x, y, width, height * share)
    return [first, *_treemap_rectangles(values[1:], x, y + height * share, width, height * (1 - share))]


def _draw_chart(ax, chart_type: str, table: dict[str, Any]) -> None:
    columns, rows = table["columns"], table["rows"]
    labels = [row[0] for row in rows]
    series = [[float(row[i]) for row in rows] for i in range(1, len(columns))]
    positions = list(range(len(rows)))
    if chart_type == "line":
        ax.plot(positions, series[0], marker="o")
    elif chart_type == "bar":
        ax.bar(positions, series[0], color="tab:blue")
    elif chart_type == "stacked bar":
        ax.bar(positions, series[0], label=columns[1])
        ax.bar(positions, series[1], bottom=series[0], label=columns[2])
        ax.legend(fontsize=6)
    elif chart_type == "histogram":
        ax.bar(positions, series[0], width=1.0, edgecolor="black", color="tab:green")
    elif chart_type == "area":
        ax.fill_between(positions, series[0], alpha=0.6)
        ax.plot(positions, series[0])
    elif chart_type == "stacked area":
        ax.stackplot(positions, series[0], series[1], labels=columns[1:], alpha=0.8)
        ax.legend(fontsize=6, loc="upper left")
    elif chart_type == "pie":
        wedge_labels = [f"{row[0]} ({row[1]}%)" for row in rows]
        ax.pie(series[0], labels=wedge_labels, textprops={"fontsize": 6})
    elif chart_type == "scatterplot":
        ax.scatter([float(k) for k in labels], series[0])
        ax.set_xlabel(columns[0], fontsize=7)
    elif chart_type == "bubble":
        xs, ys, sizes = series
        ax.scatter(xs, ys, s=[s * 15 for s in sizes], alpha=0.5)
        for row, x, y in zip(rows, xs, ys):
            ax.annotate(f"{row[0]} ({row[3]})", (x, y), fontsize=6, ha="center")  # the size, as written
        ax.set_xlabel("X", fontsize=7)
        ax.set_ylabel("Y", fontsize=7)
    elif chart_type == "treemap":
        from matplotlib.patches import Rectangle

        rectangles = _treemap_rectangles(series[0], 0.0, 0.0, 1.0, 1.0)
        for colour, ((x, y, w, h), row) in enumerate(zip(rectangles, rows)):
            ax.add_patch(Rectangle((x, y), w, h, facecolor=f"C{colour}", edgecolor="white", linewidth=2))
            ax.text(x + w / 2, y + h / 2, f"{row[0]}\n{row[1]}", ha="center", va="center", fontsize=6)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
    if chart_type in ("line", "bar", "stacked bar", "histogram", "area", "stacked area"):
        ax.set_xticks(positions, labels, fontsize=6)
        ax.set_xlabel(columns[0], fontsize=7)
    if chart_type not in ("pie", "treemap", "bubble"):
        ax.set_ylabel(columns[1] if len(columns) == 2 else "Value", fontsize=7)
    ax.tick_params(labelsize=6)


def render_chart(chart_type: str, table: dict[str, Any], max_pixels: int | None = None) -> Image:
    """Draw a table as a chart of the given type and return it as an RGB PIL image.

    Uses a bare matplotlib ``Figure`` with the Agg canvas, never pyplot, so no global figure
    state is created or leaked. The chart is drawn at 320x240 px, or smaller to fit
    ``max_pixels``.

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> render_chart("bar", table).size
        (320, 240)
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image as PILImage

    dpi = 80.0
    if max_pixels is not None and _RENDER_WIDTH * _RENDER_HEIGHT > max_pixels:
        dpi *= math.sqrt(max_pixels / (_RENDER_WIDTH * _RENDER_HEIGHT))
    figure = Figure(figsize=(_RENDER_WIDTH / 80.0, _RENDER_HEIGHT / 80.0), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    _draw_chart(ax, chart_type, table)
    ax.set_title(f"{table['columns'][0]} vs {', '.join(table['columns'][1:])}", fontsize=7)
    # Fixed margins rather than tight_layout: measuring text extents was half the drawing time.
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
    canvas.draw()
    image = PILImage.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return resize_to_pixel_budget(image, max_pixels) if max_pixels else image


# --------------------------------------------------------------------------------------------
# Synthetic rows and datasets
# --------------------------------------------------------------------------------------------


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
        max_pixels: draw each chart within this pixel budget (default: 320x240 px).
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
        example["image"] = render_chart(chart_type, example["table"], max_pixels) if render else None
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


# --------------------------------------------------------------------------------------------
# Loading and preparing
# --------------------------------------------------------------------------------------------

SYNTHETIC_DEFAULT_ROWS = 256  # rows generated for train_data="synthetic" when no subset size is given


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
_DATA_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _load_local(path: str) -> Dataset:
    import datasets

    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(os.path.join(path, "state.json")):
            loaded = datasets.load_from_disk(path)  # written by Dataset(Dict).save_to_disk
            return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(path, split="train")  # a folder of parquet/json files
    extension = os.path.splitext(path)[1].lower()
    if extension == ".arrow":
        return datasets.Dataset.from_file(path)
    if extension not in _DATA_FILE_BUILDERS:
        raise ValueError(
            f"Don't know how to read {path!r}; give a .parquet, .json, .jsonl, .csv or .arrow file, "
            "a folder written by Dataset.save_to_disk, or a folder of data files."
        )
    return datasets.load_dataset(_DATA_FILE_BUILDERS[extension], data_files=path, split="train")


def _load_hub(dataset_id: str) -> Dataset:
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split="train")
    except Exception as error:  # the hub client raises many types (offline, gated, missing)
        raise RuntimeError(
            f"Could not load the dataset {dataset_id!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{error}). Check the id and your internet connection; for a gated or private dataset run "
            "`huggingface-cli login`; offline, download it on a machine with internet and pass its local "
            "folder, or use train_data='synthetic' (--train-data synthetic)."
        ) from error


def load_train_dataset(
    source: str = TRAIN_DATASET,
    subset_size: int | None = None,
    seed: int = 2025,
    max_pixels: int | None = None,
) -> Dataset:
    """Load training rows from the hub, a local path, or the synthetic generator.

    Args:
        source: ``"synthetic"`` (or ``"synthetic:bar,pie"``, only those chart types); a local ``save_to_disk`` folder, folder of data files, or a
            ``.parquet``/``.json``/``.jsonl``/``.csv``/``.arrow`` file; otherwise a hub dataset id
            (its ``train`` split).
        subset_size: keep this many rows after shuffling with ``seed`` (all rows when ``None``;
            for ``"synthetic"``, the number of rows generated, default 256).
        seed: shuffle seed (and the synthetic generator's seed).
        max_pixels: resize images to this pixel budget (never cropped).

    Returns:
        A ``datasets.Dataset`` with at least ``REQUIRED_COLUMNS``.

    Raises:
        ValueError: missing columns, or ``subset_size`` larger than the dataset.
        RuntimeError: a hub dataset that cannot be downloaded.
    """
    chart_types = synthetic_chart_types(source)
    if chart_types is not None:
        return make_synthetic_dataset(
            subset_size or SYNTHETIC_DEFAULT_ROWS, seed=seed, max_pixels=max_pixels, chart_types=chart_types
        )
    if os.path.exists(source):
        dataset = _load_local(source)
    else:
        dataset = _load_hub(source)
    check_columns(dataset, name=source)
    if subset_size is not None:
        if subset_size > len(dataset):
            raise ValueError(
                f"subset_size={subset_size} is larger than {source!r}, which has {len(dataset)} rows; "
                f"pass a subset size of at most {len(dataset)} (--subset-size), or none to use every row."
            )
        dataset = dataset.shuffle(seed=seed).select(range(subset_size))
    if max_pixels is not None:
        dataset = dataset.map(
            lambda row: {"image": resize_to_pixel_budget(row["image"], max_pixels)},
            desc=f"Resizing images to {max_pixels} pixels",
        )
    return dataset


def prepare_grpo_dataset(dataset: Dataset, max_pixels: int, style: str = "rvr") -> Dataset:
    """Add the conversational ``prompt`` column TRL's GRPOTrainer expects and fit images to budget.

    TRL (1.16) reads the ``image`` column and fills the ``{"type": "image"}`` placeholder of the
    user message with it before applying the processor's chat template, so the prompt holds the
    placeholder, not the image. All other columns (label, chart_type, table, reasoning, ...)
    stay: TRL passes them to the reward functions as keyword arguments.

    Args:
        dataset: rows in the training schema.
        max_pixels: the image pixel budget.
        style: the prompt style of :func:`chartrvr_nb.prompts.build_messages`.

    Returns:
        The dataset with ``prompt`` added, ``image`` resized to the budget and the 28-pixel grid, and
        ``row_id`` (the row's position in ``dataset``, unless it has that column already) so that a
        logged sample names the chart it was generated from without holding the image.
    """
    check_columns(dataset, required=("image", "query"), name="the dataset to prepare")
    build_messages("", style)  # fails now, with the valid styles listed, rather than inside map

    def prepare(row: dict[str, Any], index: int) -> dict[str, Any]:
        return {
            "prompt": build_messages(row["query"], style),
            "image": snap_to_patch_grid(resize_to_pixel_budget(row["image"], max_pixels), max_pixels),
            **({} if "row_id" in dataset.column_names else {"row_id": index}),
        }

    return dataset.map(prepare, with_indices=True, desc="Preparing GRPO prompts")
