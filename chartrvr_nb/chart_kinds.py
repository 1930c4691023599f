"""The synthetic charts' kinds: for each chart type, how its random table is made and how it is drawn.

Every chart kind is one entry of :data:`CHART_KINDS` (a table maker, a drawing function and a few
axis settings), so a new chart type is one entry here (and its name in ``prompts.CHART_TYPES``,
the output format's vocabulary). :func:`make_table` draws a small random table for a type, cells as
strings with distinct values (so max, min and difference questions are unambiguous);
:func:`render_chart` draws it with matplotlib. The questions asked about a table, and their
verifiable answers, are :mod:`chartrvr_nb.synthetic`.

Top-level imports stay light: matplotlib, numpy and PIL are imported inside :func:`render_chart`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from PIL.Image import Image

# The charts are drawn at this size unless a smaller pixel budget asks for less.
_RENDER_WIDTH, _RENDER_HEIGHT = 320, 240


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

# What a table maker returns: the column names, the row labels, and the numeric columns as strings.
_TableParts = tuple[list[str], list[str], list[list[str]]]


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


def _time_series_table(rng: random.Random, count: int, decimals: bool) -> _TableParts:
    """Line, area: one measure over consecutive months or years."""
    label_column = rng.choice(_ORDERED_LABELS)
    labels = _ordered_labels(rng, label_column, count)
    columns = [label_column, rng.choice(_MEASURES)]
    return columns, labels, [_distinct_values(rng, count, 5, 100, decimals)]


def _two_series_table(rng: random.Random, count: int, decimals: bool, *, label_columns: tuple[str, ...]) -> _TableParts:
    """Stacked bar, stacked area: two series over the rows of one of ``label_columns``."""
    label_column = rng.choice(label_columns)
    labels = (
        _ordered_labels(rng, label_column, count)
        if label_column in _ORDERED_LABELS
        else rng.sample(_CATEGORIES[label_column], count)
    )
    columns = [label_column, *rng.choice(_SERIES_PAIRS)]
    return columns, labels, [_distinct_values(rng, count, 5, 60, decimals) for _ in range(2)]


def _histogram_table(rng: random.Random, count: int, decimals: bool) -> _TableParts:
    width = rng.choice([5, 10, 20])
    start = rng.choice([0, 10, 20])
    labels = [f"{start + i * width}-{start + (i + 1) * width}" for i in range(count)]
    return ["Range", "Count"], labels, [_distinct_values(rng, count, 1, 50, decimals=False)]


def _scatter_table(rng: random.Random, count: int, decimals: bool) -> _TableParts:
    labels = sorted(_distinct_values(rng, count, 1, 40, decimals=False), key=int)
    columns = [rng.choice(["Hours", "Age", "Distance"]), rng.choice(["Score", "Price", "Weight"])]
    return columns, labels, [_distinct_values(rng, count, 5, 100, decimals)]


def _bubble_table(rng: random.Random, count: int, decimals: bool) -> _TableParts:
    label_column = rng.choice(["Country", "Product"])
    labels = rng.sample(_CATEGORIES[label_column], count)
    return (
        [label_column, "X", "Y", "Size"],
        labels,
        [_distinct_values(rng, count, 1, 50, decimals=False) for _ in range(3)],
    )


def _pie_table(rng: random.Random, count: int, decimals: bool) -> _TableParts:
    label_column = rng.choice(["Country", "Product", "Department"])
    labels = rng.sample(_CATEGORIES[label_column], count)
    return [label_column, "Share"], labels, [_percent_shares(rng, count)]


def _category_table(rng: random.Random, count: int, decimals: bool, *, allow_decimals: bool) -> _TableParts:
    """Bar, treemap: categories with one measure (whole numbers only unless ``allow_decimals``)."""
    label_column = rng.choice(["Country", "Product", "Department"])
    labels = rng.sample(_CATEGORIES[label_column], count)
    columns = [label_column, rng.choice(_MEASURES)]
    return columns, labels, [_distinct_values(rng, count, 3, 90, decimals and allow_decimals)]


def _series(table: dict[str, Any]) -> list[list[float]]:
    """The table's numeric columns as floats, one list per column."""
    return [[float(row[i]) for row in table["rows"]] for i in range(1, len(table["columns"]))]


def _positions(table: dict[str, Any]) -> list[int]:
    return list(range(len(table["rows"])))


def _draw_line(ax, table: dict[str, Any]) -> None:
    ax.plot(_positions(table), _series(table)[0], marker="o")


def _draw_bar(ax, table: dict[str, Any]) -> None:
    ax.bar(_positions(table), _series(table)[0], color="tab:blue")


def _draw_stacked_bar(ax, table: dict[str, Any]) -> None:
    series, columns = _series(table), table["columns"]
    ax.bar(_positions(table), series[0], label=columns[1])
    ax.bar(_positions(table), series[1], bottom=series[0], label=columns[2])
    ax.legend(fontsize=6)


def _draw_histogram(ax, table: dict[str, Any]) -> None:
    ax.bar(_positions(table), _series(table)[0], width=1.0, edgecolor="black", color="tab:green")


def _draw_area(ax, table: dict[str, Any]) -> None:
    ax.fill_between(_positions(table), _series(table)[0], alpha=0.6)
    ax.plot(_positions(table), _series(table)[0])


def _draw_stacked_area(ax, table: dict[str, Any]) -> None:
    series = _series(table)
    ax.stackplot(_positions(table), series[0], series[1], labels=table["columns"][1:], alpha=0.8)
    ax.legend(fontsize=6, loc="upper left")


def _draw_pie(ax, table: dict[str, Any]) -> None:
    wedge_labels = [f"{row[0]} ({row[1]}%)" for row in table["rows"]]
    ax.pie(_series(table)[0], labels=wedge_labels, textprops={"fontsize": 6})


def _draw_scatterplot(ax, table: dict[str, Any]) -> None:
    ax.scatter([float(row[0]) for row in table["rows"]], _series(table)[0])
    ax.set_xlabel(table["columns"][0], fontsize=7)


def _draw_bubble(ax, table: dict[str, Any]) -> None:
    xs, ys, sizes = _series(table)
    ax.scatter(xs, ys, s=[s * 15 for s in sizes], alpha=0.5)
    for row, x, y in zip(table["rows"], xs, ys):
        ax.annotate(f"{row[0]} ({row[3]})", (x, y), fontsize=6, ha="center")  # the size, as written
    ax.set_xlabel("X", fontsize=7)
    ax.set_ylabel("Y", fontsize=7)


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


def _draw_treemap(ax, table: dict[str, Any]) -> None:
    from matplotlib.patches import Rectangle

    rectangles = _treemap_rectangles(_series(table)[0], 0.0, 0.0, 1.0, 1.0)
    for colour, ((x, y, w, h), row) in enumerate(zip(rectangles, table["rows"])):
        ax.add_patch(Rectangle((x, y), w, h, facecolor=f"C{colour}", edgecolor="white", linewidth=2))
        ax.text(x + w / 2, y + h / 2, f"{row[0]}\n{row[1]}", ha="center", va="center", fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")


@dataclass(frozen=True)
class ChartKind:
    """One chart type of the generator.

    Attributes:
        table: ``(rng, rows, decimals) -> (columns, row labels, numeric columns)``, cells as strings.
        draw: ``(matplotlib axes, table) -> None``, the chart itself.
        rows: a fixed number of rows; None draws 3 or 4. Small tables keep a formatted completion
            short (Qwen's tokenizer spends one token per digit): the smoke preset's completion
            budget must hold the whole target.
        category_axis: the row labels are the x axis's ticks (and the first column its label).
        value_axis: the y axis is labelled with the measure ("Value" for several series).
    """

    table: Callable[[random.Random, int, bool], _TableParts]
    draw: Callable[[Any, dict[str, Any]], None]
    rows: int | None = None
    category_axis: bool = False
    value_axis: bool = True


CHART_KINDS: dict[str, ChartKind] = {
    "line": ChartKind(_time_series_table, _draw_line, category_axis=True),
    "bar": ChartKind(partial(_category_table, allow_decimals=True), _draw_bar, category_axis=True),
    "stacked bar": ChartKind(
        partial(_two_series_table, label_columns=("Country", "Product", "Month")),
        _draw_stacked_bar,
        rows=3,
        category_axis=True,
    ),
    "pie": ChartKind(_pie_table, _draw_pie, value_axis=False),
    "histogram": ChartKind(_histogram_table, _draw_histogram, category_axis=True),
    "scatterplot": ChartKind(_scatter_table, _draw_scatterplot),
    "area": ChartKind(_time_series_table, _draw_area, category_axis=True),
    "stacked area": ChartKind(
        partial(_two_series_table, label_columns=_ORDERED_LABELS), _draw_stacked_area, rows=3, category_axis=True
    ),
    "bubble": ChartKind(_bubble_table, _draw_bubble, rows=3, value_axis=False),
    "treemap": ChartKind(partial(_category_table, allow_decimals=False), _draw_treemap, value_axis=False),
}


def chart_kind(chart_type: str) -> ChartKind:
    """The declaration of a chart type, with the valid types in the error otherwise.

    Example:
        >>> chart_kind("bubble").rows
        3
        >>> chart_kind("bars")
        Traceback (most recent call last):
        ...
        ValueError: Unknown chart type 'bars'; choose one of ('line', 'bar', ...
    """
    if chart_type not in CHART_KINDS:
        raise ValueError(f"Unknown chart type {chart_type!r}; choose one of {tuple(CHART_KINDS)}.")
    return CHART_KINDS[chart_type]


def make_table(chart_type: str, rng: random.Random) -> dict[str, Any]:
    """A small random table suited to a chart type, cells as strings.

    The first column labels the rows; the other columns are numeric with distinct values.

    Example:
        >>> table = make_table("stacked bar", random.Random(0))
        >>> len(table["columns"]), all(isinstance(c, str) for r in table["rows"] for c in r)
        (3, True)
    """
    kind = chart_kind(chart_type)
    count = kind.rows or rng.randint(3, 4)
    decimals = rng.random() < 0.15
    columns, labels, series = kind.table(rng, count, decimals)
    rows = [[label, *(values[i] for values in series)] for i, label in enumerate(labels)]
    return {"columns": columns, "rows": rows}


def render_chart(chart_type: str, table: dict[str, Any], max_pixels: int | None = None) -> Image:
    """Draw a table as a chart of the given type and return it as an RGB PIL image.

    Uses a bare matplotlib ``Figure`` with the Agg canvas, never pyplot, so no global figure
    state is created or leaked. The chart is drawn at 320x240 px, or at a lower resolution for a
    smaller ``max_pixels`` (whole pixels can round a row over it: :func:`chartrvr_nb.data.chart_image`
    draws within the budget exactly).

    Example:
        >>> table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> render_chart("bar", table).size
        (320, 240)
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image as PILImage

    kind = chart_kind(chart_type)
    dpi = 80.0
    if max_pixels is not None and _RENDER_WIDTH * _RENDER_HEIGHT > max_pixels:
        dpi *= math.sqrt(max_pixels / (_RENDER_WIDTH * _RENDER_HEIGHT))
    figure = Figure(figsize=(_RENDER_WIDTH / 80.0, _RENDER_HEIGHT / 80.0), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    columns = table["columns"]
    kind.draw(ax, table)
    if kind.category_axis:
        ax.set_xticks(_positions(table), [row[0] for row in table["rows"]], fontsize=6)
        ax.set_xlabel(columns[0], fontsize=7)
    if kind.value_axis:
        ax.set_ylabel(columns[1] if len(columns) == 2 else "Value", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_title(f"{columns[0]} vs {', '.join(columns[1:])}", fontsize=7)
    # Fixed margins rather than tight_layout: measuring text extents was half the drawing time.
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
    canvas.draw()
    return PILImage.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())
