"""Synthetic examples: questions about a chart's table, with answers computed from the table.

A synthetic row is a random table of a chart kind (:mod:`chartrvr_nb.chart_kinds`), a question
about it (one of :data:`QUESTION_KINDS`) and its label, computed from the table by
:func:`answer_question` with the reasoning steps that derive it, so labels are verifiable by
construction. A row depends only on its random generator, so a seed always gives the same tables,
questions and pictures (the tiny models' warm start and the learn-check rely on it).

Pure Python. The rows of the training schema, with their charts drawn and fitted to a pixel
budget, are :func:`chartrvr_nb.data.make_synthetic_rows`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .chart_kinds import format_number, make_table
from .prompts import format_completion

QUESTION_KINDS: tuple[str, ...] = ("value", "max", "min", "difference", "sum", "count", "yes/no")


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
# Synthetic examples
# --------------------------------------------------------------------------------------------


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
