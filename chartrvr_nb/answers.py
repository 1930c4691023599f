"""Reading answers, tags and tables out of model text; the relaxed match shared by rewards and eval.

Everything here is pure and total: any input, however malformed, gives a value, never an
exception. Tag extraction follows the original reward code's ``split`` semantics ("the text
after the last ``<tag>`` up to the next ``</tag>``", or to the end when there is no closing tag),
except that a missing opening tag gives ``None`` instead of the whole text.
"""

from __future__ import annotations

import json
import re
from typing import Any

_JSON_FENCE = re.compile(r"```json(.*?)(?:```|$)", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of one completion, as TRL hands it to a reward function.

    A completion is a string, or a list of chat messages whose last assistant message is the
    answer; a message's content is a string or a list of parts whose text parts are joined with
    a space.

    Example:
        >>> completion_text("<answer>4</answer>")
        '<answer>4</answer>'
        >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
        ...                                                    {"type": "text", "text": "b"}]}])
        'a b'
        >>> completion_text(None)
        ''
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        chosen = assistant[-1] if assistant else (messages[-1] if messages else None)
        return _content_text(chosen.get("content")) if chosen is not None else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def extract_between(text: str, open_tag: str, close_tag: str) -> str | None:
    """Text after the last ``open_tag`` up to the next ``close_tag`` (or the end), unstripped.

    Returns ``None`` when ``open_tag`` does not occur.

    Example:
        >>> extract_between("<a>1</a><a> 2 </a>", "<a>", "</a>")
        ' 2 '
        >>> extract_between("<a>open", "<a>", "</a>")
        'open'
        >>> extract_between("none", "<a>", "</a>") is None
        True
    """
    if not isinstance(text, str) or open_tag not in text:
        return None
    return text.rsplit(open_tag, 1)[1].split(close_tag, 1)[0]


def extract_answer(text: str) -> str | None:
    """The final answer: inside the last ``<answer>``, stripped, trailing dots removed.

    Example:
        >>> extract_answer("<think>...</think>\\n<answer> 42. </answer>")
        '42'
        >>> extract_answer("no tags") is None
        True
    """
    inner = extract_between(text, "<answer>", "</answer>")
    return None if inner is None else inner.strip().rstrip(".").strip()


def chart_rvr_answer(text: str) -> str:
    """The answer as the Chart-RVR authors' evaluation reads a chain-of-thought reply (sanchit97/chartrl
    utils.py 165-168 at 83c4406): the text after the last ``<answer>``, or the whole reply when there is
    none, stripped, then cut at its first ``</answer>`` and stripped again. Dots stay: their scorer drops
    one trailing dot itself (``official_scoring.chartrl_relaxed_accuracy``).

    Example:
        >>> chart_rvr_answer("<think>...</think>\\n<answer> 42. </answer>\\n")
        '42.'
        >>> chart_rvr_answer("The answer is 12")           # no tag: the whole reply
        'The answer is 12'
        >>> chart_rvr_answer("<answer>7</answer> or <answer>8")   # the last tag, even unclosed
        '8'
        >>> chart_rvr_answer("12</answer> trailing")        # a stray closing tag still cuts
        '12'
    """
    if not isinstance(text, str):
        return ""
    after_last_tag = text.rpartition("<answer>")[2]
    return after_last_tag.strip().partition("</answer>")[0].strip()


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except (ValueError, OverflowError):
        return None


def relaxed_match(pred: Any, target: Any, max_relative_change: float = 0.05) -> bool:
    """ChartQA's relaxed correctness, the one rule used by the accuracy reward and by evaluation.

    Both sides are stripped; a value ending in ``%`` reads as a number divided by 100. When
    both read as numbers and the target is not 0, the prediction is correct iff its relative
    error is at most ``max_relative_change`` (5%); otherwise the lowercased strings must be equal.

    Example:
        >>> relaxed_match("10.4", "10")
        True
        >>> relaxed_match("-10", "-11")      # negative labels are not a free pass
        False
        >>> relaxed_match("45%", "0.45")
        True
        >>> relaxed_match("0", "0")          # zero is matched as text
        True
        >>> relaxed_match(" Yes ", "yes")
        True
    """
    pred_text = "" if pred is None else str(pred).strip()
    target_text = "" if target is None else str(target).strip()
    pred_value, target_value = _to_float(pred_text), _to_float(target_text)
    if pred_value is not None and target_value:
        relative_change = abs(pred_value - target_value) / abs(target_value)
        return bool(relative_change <= max_relative_change)  # NaN compares False
    return pred_text.lower() == target_text.lower()


def parse_table(text: Any) -> Any:
    """Parse a table written as JSON, keeping every number as the string it was written as.

    A ```json fence wins when present; otherwise newlines are dropped. Returns ``None`` when the
    text does not parse. Dicts pass through unchanged, so ground-truth tables may be given either
    as objects or as JSON strings.

    Example:
        >>> parse_table('{"columns": ["a"], "rows": [[1.50]]}')
        {'columns': ['a'], 'rows': [['1.50']]}
        >>> parse_table("```json\\n[1, 2]\\n```")
        ['1', '2']
        >>> parse_table("{broken") is None
        True
    """
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    fenced = _JSON_FENCE.search(text)
    body = fenced.group(1) if fenced else text.replace("\n", "")
    try:
        return json.loads(body, parse_float=str, parse_int=str, parse_constant=str)
    except (ValueError, RecursionError):
        return None


def _sorted_or_same(items: list) -> list:
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def table_similarity(pred: Any, truth: Any) -> float:
    """How much of a predicted table agrees with the ground truth (spec section 3).

    Both column lists are sorted case-insensitively and both row lists sorted (when sortable).
    Each column position whose names match case-insensitively adds ``0.5 / len(pred columns)``;
    each cell at the same row and cell index that is equal as a string adds
    ``0.5 / len(pred rows)``. Malformed parts add nothing; inputs are never mutated.

    Example:
        >>> truth = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
        >>> table_similarity(truth, truth)
        1.5
        >>> table_similarity({"columns": ["year"], "rows": "oops"}, truth)
        0.0
    """
    if not isinstance(pred, dict) or not isinstance(truth, dict):
        return 0.0
    score = 0.0
    pred_cols, true_cols = pred.get("columns"), truth.get("columns")
    if isinstance(pred_cols, list) and isinstance(true_cols, list) and pred_cols:
        pred_sorted = sorted((str(c) for c in pred_cols), key=str.lower)
        true_sorted = sorted((str(c) for c in true_cols), key=str.lower)
        for p, t in zip(pred_sorted, true_sorted):
            if p.lower() == t.lower():
                score += 0.5 / len(pred_cols)
    pred_rows, true_rows = pred.get("rows"), truth.get("rows")
    if isinstance(pred_rows, list) and isinstance(true_rows, list) and pred_rows:
        for p_row, t_row in zip(_sorted_or_same(pred_rows), _sorted_or_same(true_rows)):
            if not isinstance(p_row, list) or not isinstance(t_row, list):
                continue
            for p_cell, t_cell in zip(p_row, t_row):
                if str(p_cell) == str(t_cell):
                    score += 0.5 / len(pred_rows)
    return score


def count_steps(reasoning: str) -> int:
    """Number of ``<step-`` markers in a reasoning string.

    Example:
        >>> count_steps("<step-1>: a <step-2>: b")
        2
    """
    return reasoning.count("<step-") if isinstance(reasoning, str) else 0
