"""Prompts and the answer format the policy is trained to produce.

The target format (spec section 3) is::

    <think>
    <type>bar</type>
    <table>{"columns": [...], "rows": [[...], ...]}</table>
    <step-1>: ...
    <step-n>: ...
    </think>
    <answer>single line</answer>

``format_completion`` writes it, so the warm start, the reward inspection
examples and the tests all agree on one definition.
"""

from __future__ import annotations

import json
from typing import Any

CHART_TYPES: tuple[str, ...] = (
    "line",
    "bar",
    "stacked bar",
    "pie",
    "histogram",
    "scatterplot",
    "area",
    "stacked area",
    "bubble",
    "treemap",
)

# This project's own wording. The Chart-RVR authors' prompt (their repository has no license) is
# fetched and verified at run time by ``chartrvr_nb.system_prompts``.
SYSTEM_PROMPT = (
    "You answer questions about a chart. First reason inside <think></think>: "
    "name the chart type inside <type></type> (one of: " + ", ".join(CHART_TYPES) + "), "
    'transcribe the chart\'s data as JSON inside <table></table> with the keys "columns" and "rows", '
    "then reason in numbered steps written <step-1>: ..., <step-2>: ... . "
    "After </think>, give only the final answer on one line inside <answer></answer>."
)

DIRECT_PROMPT = "Answer the question with a single word or number."
COT_PROMPT = (
    "Think step by step inside <think></think>, then give only the final answer on one line inside <answer></answer>."
)

PROMPT_STYLES = {"rvr": SYSTEM_PROMPT, "cot": COT_PROMPT, "direct": DIRECT_PROMPT}


def build_messages(question: str, style: str = "rvr", system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for one chart question; the image goes where the processor expects it.

    Args:
        question: the question about the chart.
        style: ``"rvr"`` (the Chart-RVR format, used for training), ``"cot"`` or ``"direct"``.
        system_prompt: the system message's text; default this project's wording for ``style``
            (a run's choice, e.g. the authors' template, is resolved by ``system_prompts``).

    Returns:
        A system message and a user message whose content is an image placeholder followed by
        the question, in the multimodal chat format of transformers processors.

    Example:
        >>> msgs = build_messages("Which bar is tallest?")
        >>> [m["role"] for m in msgs]
        ['system', 'user']
        >>> [part["type"] for part in msgs[1]["content"]]
        ['image', 'text']
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"Unknown prompt style {style!r}; choose one of {sorted(PROMPT_STYLES)}.")
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt or PROMPT_STYLES[style]}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
    ]


def table_to_json(table: dict[str, Any]) -> str:
    """Serialise a ``{"columns": [...], "rows": [[...]]}`` table compactly, cells as written.

    Example:
        >>> table_to_json({"columns": ["year", "sales"], "rows": [["2020", "3.5"]]})
        '{"columns": ["year", "sales"], "rows": [["2020", "3.5"]]}'
    """
    return json.dumps({"columns": list(table["columns"]), "rows": [list(r) for r in table["rows"]]})


def format_completion(chart_type: str, table: dict[str, Any], steps: list[str], answer: str) -> str:
    """Write a completion in the exact target format (it earns the format and count rewards).

    Example:
        >>> text = format_completion("bar", {"columns": ["x", "y"], "rows": [["a", "1"]]},
        ...                          ["Read bar a: 1."], "1")
        >>> print(text)
        <think>
        <type>bar</type>
        <table>{"columns": ["x", "y"], "rows": [["a", "1"]]}</table>
        <step-1>: Read bar a: 1.
        </think>
        <answer>1</answer>
    """
    step_lines = "\n".join(f"<step-{i}>: {s}" for i, s in enumerate(steps, start=1))
    return (
        f"<think>\n<type>{chart_type}</type>\n<table>{table_to_json(table)}</table>\n"
        f"{step_lines}\n</think>\n<answer>{answer}</answer>"
    )
