"""Evaluation figures comparable with published tables: each benchmark's official scoring, and the
Chart-RVR authors' scoring, rewritten from their code with its quirks kept.

A user asks two questions of an evaluation, and each needs its own rule:

- *Where does my model stand on this benchmark's leaderboard?* ``official``: what the benchmark's
  own evaluation script computes (ChartQA, PlotQA: google-research/pix2struct
  ``pix2struct/metrics.py`` as lmms-eval uses it; ChartQAPro: vis-nlp/ChartQAPro
  ``evaluate_predictions.py`` with the ``anls`` package; ChartBench: IDEA-FinAI/ChartBench
  ``Stat/stat_all_metric.py`` and ``Stat/show_latex_table.py``; EvoChart: the rule its README
  states, as it publishes no code).
- *Did my run reproduce the Chart-RVR paper?* ``chart_rvr_code``: what sanchit97/chartrl's
  ``main.py --mode eval`` computes with ``metrics.relaxed_accuracy``: the mean relaxed accuracy
  over all examples of every benchmark (ChartBench included), with ``True`` (a 100% relative
  tolerance) passed as the tolerance for ChartQAPro. The paper's table was produced that way.

Each rule follows its repository's newest commit when it was checked, named in
:data:`SCORER_COMMITS` and beside each quirk with the file and line it reproduces.

Each official scorer takes the records of a run (dicts with ``prediction``, ``answer``,
``subset``, ``meta`` and the project metric's ``score``) and returns a dict with ``value`` (the
script's headline, in percent), ``label`` (what the script calls it), ``breakdown`` (the
per-subset / per-type figures it prints), ``n`` and ``rows_official_code_crashes_on``: rows on
which the official script would raise, scored here as it would have scored them had it not
crashed. Gold answers are read as the dataset gives them (``meta["labels"]``, ChartQAPro's
``meta["answers"]``): the official scripts strip them less than the examples' ``answer`` is.
Pure Python, total: no input makes a scorer raise.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Record = Mapping[str, Any]

# The commit of each repository whose code the rules here follow (its newest when checked).
SCORER_COMMITS: dict[str, str] = {
    "google-research/pix2struct": "945f27e936c9464d9d7c133f1bd1f4f383be9e99",
    "vis-nlp/ChartQAPro": "4b422c658270aff1d3105fd0fb39b1dd5de9f08c",
    "shunk031/ANLS": "6472e1d71e84d6cee28e3c6d2e18564bafaa312d",  # the `anls` package, 0.0.2 on PyPI
    "IDEA-FinAI/ChartBench": "548980b09984412b00971968169b7ff148947f09",
    "sanchit97/chartrl": "83c44068a920b7101b7c3c7d6edcb96fdf9a321d",
}


def percent(values: Sequence[float]) -> float | None:
    """The mean of scores in [0, 1], in percent; None for no scores (every figure here and in ``metrics``).

    Example:
        >>> percent([1.0, 0.0, 1.0, 1.0]), percent([])
        (75.0, None)
    """
    return 100.0 * sum(values) / len(values) if values else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def percent_by_subset(records: Sequence[Record], scores: Sequence[float]) -> dict[str, float]:
    """The :func:`percent` of each subset's scores (a record's ``subset``; records without one are left out).

    Example:
        >>> percent_by_subset([{"subset": "human"}, {"subset": "human"}, {"subset": None}], [1.0, 0.0, 1.0])
        {'human': 50.0}
    """
    groups: dict[str, list[float]] = {}
    for record, score in zip(records, scores):
        if record.get("subset") is not None:
            groups.setdefault(str(record["subset"]), []).append(score)
    return {name: percent(values) for name, values in sorted(groups.items())}


def _result(
    rule: str, label: str, value: float | None, n: int, breakdown: Mapping[str, Any], crashes: int = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "rule": rule,
        "label": label,
        "value": value,
        "n": n,
        "breakdown": dict(breakdown),
        "rows_official_code_crashes_on": crashes,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# Text similarity (ANLS), as the ``anls`` package that ChartQAPro's script imports computes it
# --------------------------------------------------------------------------------------------


def levenshtein(first: str, second: str) -> int:
    """Edit distance (insertions, deletions, substitutions) between two strings.

    Example:
        >>> levenshtein("kitten", "sitting")
        3
        >>> levenshtein("", "abc")
        3
    """
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for i, char_first in enumerate(first, start=1):
        current = [i]
        for j, char_second in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_first != char_second)))
        previous = current
    return previous[-1]


def anls(prediction: str, gold: str, threshold: float = 0.5) -> float:
    """Normalized Levenshtein similarity as the ``anls`` package scores it: ``1 - NL`` when ``NL < threshold``, else 0.

    Both texts are lowercased and their whitespace collapsed (metrics/score.py:16, :22); ``NL`` is
    the edit distance over the longer length *upper-cased* (metrics/dist.py:21 at 6472e1d), so a
    ``ß`` counts two characters there. A near miss keeps partial credit and anything at least half
    wrong scores 0.

    Example:
        >>> round(anls("Apples", "apple"), 3)
        0.833
        >>> round(anls("Straße", "Staße"), 3)   # distance 1 over len("STRASSE") = 7
        0.857
        >>> anls("ab", "ac")                 # NL = 0.5 is not below the threshold
        0.0
        >>> anls("", "")
        1.0
    """
    pred = " ".join(str(prediction).lower().split())
    true = " ".join(str(gold).lower().split())
    # dist.py:21 `length = max(len(s1.upper()), len(s2.upper()))`; the distance is taken on the lowercased texts
    longest = max(len(pred.upper()), len(true.upper()))
    if longest == 0:
        return 1.0
    distance = levenshtein(pred, true) / longest
    return 1.0 - distance if distance < threshold else 0.0


# --------------------------------------------------------------------------------------------
# ChartQA, PlotQA: pix2struct's relaxed_correctness (lmms-eval's ChartQA task uses the same rule);
# google-research/pix2struct pix2struct/metrics.py at 945f27e
# --------------------------------------------------------------------------------------------


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # the official scripts catch ValueError only; float() of a str raises nothing else
        return None


def _percent_float(text: str) -> float | None:
    """A number, where a trailing ``%`` (every one: ``text.rstrip("%")``) divides by 100."""
    if text.endswith("%"):  # metrics.py:107 `return float(text.rstrip("%")) / 100.0`
        value = _float(text.rstrip("%"))
        return None if value is None else value / 100.0
    return _float(text)


def pix2struct_relaxed_correctness(target: Any, prediction: Any, max_relative_change: float = 0.05) -> bool:
    """pix2struct's ``relaxed_correctness(target, prediction)``: 5% relative tolerance, else equal text.

    Nothing is stripped, the target no more than the prediction; a value ending in ``%`` loses
    *every* trailing ``%`` and is divided by 100; a target of 0 is compared as text.

    Example:
        >>> pix2struct_relaxed_correctness("0.45", "45%%")     # rstrip("%") drops both signs
        True
        >>> pix2struct_relaxed_correctness("Line", " line")    # no stripping
        False
        >>> pix2struct_relaxed_correctness("Yes ", "Yes")      # nor of the gold
        False
        >>> pix2struct_relaxed_correctness("0", "0.0")         # a zero target needs equal text
        False
    """
    target, prediction = _text(target), _text(prediction)

    prediction_value, target_value = _percent_float(prediction), _percent_float(target)
    if prediction_value is not None and target_value:  # metrics.py:115 `and target_float` (0 falls to text)
        return abs(prediction_value - target_value) / abs(target_value) <= max_relative_change
    return prediction.lower() == target.lower()  # metrics.py:119, neither side stripped


def score_pix2struct(records: Sequence[Record]) -> dict[str, Any]:
    """Relaxed accuracy as pix2struct aggregates it: the best over a question's labels, mean over all.

    ``meta["labels"]`` holds every gold label as the dataset gives it, unstripped (ChartQA's
    ``label`` is a list; PlotQA's ``answer`` one value); the breakdown is per subset (ChartQA:
    human / augmented, as lmms-eval's ``relaxed_human_split`` / ``relaxed_augmented_split``).

    Example:
        >>> records = [{"prediction": "7", "answer": "3", "meta": {"labels": ["3", "7"]}, "subset": "human"},
        ...            {"prediction": "12%", "answer": "0.12", "meta": {}, "subset": "augmented"}]
        >>> result = score_pix2struct(records)
        >>> result["value"], result["breakdown"]
        (100.0, {'augmented': 100.0, 'human': 100.0})
    """
    scores = []
    for record in records:
        labels = (record.get("meta") or {}).get("labels") or [record.get("answer")]
        # metrics.py:35 aggregate_metrics: `max(metric_fn(normalize_fn(t), p) for t in target)`, raw labels
        scores.append(float(max(pix2struct_relaxed_correctness(label, record.get("prediction")) for label in labels)))
    return _result(
        "pix2struct relaxed_correctness: best of the labels, 5% relative tolerance, every trailing % read as "
        "percent, nothing stripped (google-research/pix2struct pix2struct/metrics.py at 945f27e)",
        "relaxed accuracy",
        percent(scores),
        len(records),
        percent_by_subset(records, scores),
    )


# --------------------------------------------------------------------------------------------
# ChartQAPro: vis-nlp/ChartQAPro evaluate_predictions.py at 4b422c6
# --------------------------------------------------------------------------------------------

# fix_list_format (line 25): `re.sub(r"(?<!['\w])(\w[^,]*?)(?!['\w])", r"'\1'", content)`; it quotes each run
# of word characters, so "New York" becomes 'New' 'York', which Python joins into 'NewYork'.
_UNQUOTED_ITEM = re.compile(r"(?<!['\w])(\w[^,]*?)(?!['\w])")
_BRACKETED = re.compile(r"^\[(.*)\]$")


def _chartqapro_parse_to_list(text: str) -> tuple[list[str] | None, bool]:
    """parse_to_list: ``ast.literal_eval`` and, when that gives a list, its items as stripped strings;
    and whether the official code raises here."""
    try:
        parsed = ast.literal_eval(text)
    except Exception:  # line 40: `except Exception: return None`
        return None, False
    if not isinstance(parsed, list):
        return None, False
    try:
        return [str(item).strip(" '") for item in parsed], False  # line 43
    except (ValueError, RecursionError):  # str() of a hex integer of over 4,300 digits, outside the official try
        return None, True


def _chartqapro_gold_items(text: str) -> tuple[list[str], bool]:
    """A gold answer's items (lines 94-95): fix_list_format quotes the items of a ``[a, b]`` answer and
    evaluates it, parse_to_list reads the result's text; the whole text is one item when that gives no list.
    And whether the official code raises on it."""
    fixed = text
    match = _BRACKETED.match(text.strip())
    if match:
        try:
            value = ast.literal_eval("[" + _UNQUOTED_ITEM.sub(r"'\1'", match.group(1)) + "]")
        except (SyntaxError, ValueError):  # line 28: so "[45%, 30%]" ('45'%, ...) or "[$5, $6]" stays one string
            value = text
        except Exception:  # nothing else is caught there (an unhashable dict key, deep nesting): the script raises
            return [text], True
        try:
            fixed = str(value)  # line 95: `parse_to_list(str(fixed_t))`
        except (ValueError, RecursionError):
            return [text], True
    items, crashes = _chartqapro_parse_to_list(fixed)
    return items or [text], crashes  # `parse_to_list(...) or [str(target)]`


def _chartqapro_prediction_items(text: str) -> tuple[list[str], bool]:
    """A reply's items: parse_to_list alone (line 96, no fix_list_format), else the whole text as one item;
    and whether the official code raises on it."""
    items, crashes = _chartqapro_parse_to_list(text)
    return items or [text], crashes


# The pieces below are one rule in both ChartQAPro columns: the project metric
# (metrics.chartqapro_score) differs only in how it reads lists and which items are exact.


def chartqapro_trim(text: str) -> str:
    """A final ``.`` and then newlines removed (lines 126-127, ``.strip(".").strip("\\n")``: a dot before trailing
    whitespace stays, and so does the whitespace).

    Example:
        >>> chartqapro_trim("Paris."), chartqapro_trim("Paris. ")
        ('Paris', 'Paris. ')
    """
    return text.strip(".").strip("\n")


def chartqapro_year_flags(year_flags: Sequence[Any] | None, items: int) -> list[str]:
    """The ``Year`` flags as text; fewer than ``items`` flags are repeated (lines 99-100, ``year_flags * n``).

    Example:
        >>> chartqapro_year_flags(["YES"], 2), chartqapro_year_flags(None, 2)
        (['YES', 'YES'], [])
    """
    flags = [str(flag) for flag in year_flags or []]
    if flags and len(flags) < items:
        flags = flags * items
    return flags


def chartqapro_item_score(target: str, prediction: str, exact: bool, max_relative_change: float = 0.05) -> float:
    """One answer item: equal text (case-insensitive) when ``exact``; else ``evaluate_single_answer``:
    numbers (``%`` stripped) within the tolerance (exactly 0 for a gold 0), text by ANLS.

    Example:
        >>> chartqapro_item_score("2016", "2017", exact=True), chartqapro_item_score("2016", "2017", exact=False)
        (0.0, 1.0)
    """
    if exact:
        return 1.0 if target.strip().lower() == prediction.strip().lower() else 0.0
    target = target.strip().strip("%").strip()  # lines 67-68
    prediction = prediction.strip().strip("%").strip()
    # to_float (line 52) strips again: `float(text.strip().strip('%'))`, so "% %5% %" reads as 5
    target_value, prediction_value = _float(target.strip().strip("%")), _float(prediction.strip().strip("%"))
    if target_value is not None and prediction_value is not None:
        if target_value == 0.0:  # lines 74-75
            return 1.0 if prediction_value == 0.0 else 0.0
        change = abs(prediction_value - target_value) / abs(target_value)
        return 1.0 if change <= max_relative_change else 0.0
    # line 80 `anls_score(prediction=p.lower(), gold_labels=[t.lower()], threshold=0.5)`
    return anls(prediction.lower(), target.lower())


def chartqapro_items_score(
    target_items: Sequence[str],
    prediction_items: Sequence[str],
    exact: Sequence[bool],
    max_relative_change: float = 0.05,
) -> float:
    """The mean of the item scores, pairwise; a missing or extra item scores 0. ``exact[i]``: item i needs equal text.

    Example:
        >>> chartqapro_items_score(["3", "10"], ["3", "9", "1"], [False, False])
        0.3333333333333333
    """
    scores = []
    for index in range(max(len(target_items), len(prediction_items))):
        if index >= len(target_items) or index >= len(prediction_items):
            scores.append(0.0)
        else:
            scores.append(
                chartqapro_item_score(target_items[index], prediction_items[index], exact[index], max_relative_change)
            )
    return sum(scores) / len(scores)


def chartqapro_relaxed_correctness(
    target: Any, prediction: Any, year_flags: Sequence[Any] | None, max_relative_change: float = 0.05
) -> tuple[float, bool]:
    """ChartQAPro's ``relaxed_correctness_chartqapro``, and whether the official code crashes on the row.

    The gold answer's list is parsed after quoting its items (``fix_list_format``), the
    prediction's without; list items are scored pairwise and averaged (missing or extra items
    score 0). An item flagged ``YES`` in ``Year`` needs equal text; any other is scored by
    ``evaluate_single_answer``. An empty ``Year`` list makes the official code raise
    (``year_flags[idx]``); such a row is scored as if no item were a year.

    Example:
        >>> chartqapro_relaxed_correctness("[New York, Boston]", "['NewYork', 'Boston']", ["NO"])
        (1.0, False)
        >>> chartqapro_relaxed_correctness("2016", "2017", [])   # crashes officially; scored as a number
        (1.0, True)
    """
    target_items, gold_crashes = _chartqapro_gold_items(_text(target))
    prediction_items, reply_crashes = _chartqapro_prediction_items(_text(prediction))
    flags = chartqapro_year_flags(year_flags, len(target_items))
    # line 110 `year_flags[idx]` on [] (or None) raises; every row reaches it at idx 0
    crashes = gold_crashes or reply_crashes or not flags
    # line 111 `flag.upper() == 'YES'`
    exact = [bool(flags) and flags[index].upper() == "YES" for index in range(len(target_items))]
    return chartqapro_items_score(target_items, prediction_items, exact, max_relative_change), crashes


def score_chartqapro(records: Sequence[Record]) -> dict[str, Any]:
    """ChartQAPro's ``evaluate_predictions_chartqapro``: Overall and one figure per question type.

    The gold is the last turn's answer as the dataset gives it (``meta["answers"][-1]``; the
    example's ``answer`` when a record has no ``answers``). Both texts lose a final ``.`` and then
    newlines, nothing else (``.strip(".").strip("\\n")``: a dot before trailing whitespace stays,
    and so does the whitespace); Conversational rows use their last ``Year`` flag. The script
    computes ``always_use_exact_match`` for Fact Checking and Multi Choice but never passes it,
    so those types are scored by the numeric/ANLS rule like the others.

    Example:
        >>> records = [{"prediction": "Tru", "answer": "True", "subset": "Fact Checking",
        ...             "meta": {"question_type": "Fact Checking", "year_flags": ["NO"]}}]
        >>> score_chartqapro(records)["value"]          # ANLS 0.75, not exact match's 0
        75.0
        >>> records = [{"prediction": "Germany", "answer": "Germany.", "meta": {"answers": ["Germany. "],
        ...             "question_type": "Factoid", "year_flags": ["NO"]}}]
        >>> score_chartqapro(records)["value"]          # "germany." kept: ANLS 1 - 1/8
        87.5
    """
    scores, crashes = [], 0
    for record in records:
        meta = record.get("meta") or {}
        answers = meta.get("answers") or [record.get("answer")]
        gold = chartqapro_trim(_text(answers[-1]))  # line 126 `x['Answer'][-1].strip(".").strip("\n")`
        prediction = chartqapro_trim(_text(record.get("prediction")))  # line 127 `x[pred_key].strip(".")...`
        # line 140-141: `always_use_exact_match` is computed but not passed to relaxed_correctness_chartqapro.
        score, crashed = chartqapro_relaxed_correctness(gold, prediction, meta.get("year_flags"))
        scores.append(score)
        crashes += crashed
    breakdown = percent_by_subset(records, scores)
    return _result(
        "ChartQAPro relaxed_correctness_chartqapro: year items exact, numbers within 5% (% stripped), text by ANLS "
        "0.5, lists item by item; Fact Checking and Multi Choice not exact "
        "(vis-nlp/ChartQAPro evaluate_predictions.py at 4b422c6, ANLS by the anls package)",
        "Overall",
        percent(scores),
        len(records),
        breakdown,
        crashes,
    )


# --------------------------------------------------------------------------------------------
# ChartBench: IDEA-FinAI/ChartBench Stat/stat_all_metric.py and Stat/show_latex_table.py at 548980b
# --------------------------------------------------------------------------------------------

# stat_all_metric.py:6-23 `metric_group`, by the chart's `type.image`: facts of the benchmark, copied as
# data. 'ring_wi_anno' is in no chart group (the pie group lists 'ring_wo_anno', 'ring', ...).
CHARTBENCH_GROUPS: dict[str, tuple[str, ...]] = {
    "box": ("box_h", "box_v", "stock"),
    "combination": ("bar_line", "line_line", "pie_bar", "pie_pie"),
    "pie": ("sector", "ring_wo_anno", "pie", "ring", "InteSun"),
    "scatter": ("scatter_2d", "scatter_2d_smooth", "scatter_3d"),
    "line": ("line_err", "line_multi_wi_anno", "line_multi", "line_single_wi_anno", "line_single"),
    "bar": (
        "horizontal_single",
        "vertical_single",
        "horizontal_single_wi_anno",
        "vertical_single_wi_anno",
        "vertical_percent_stacked",
        "horizontal_multi",
        "vertical_multi",
        "threeD_stacked",
        "vertical_stacked",
        "horizontal_stacked",
        "threeD_bar_multi",
        "horizontal_percent_stacked",
        "threeD_percent_stacked",
    ),
    "radar": ("radar_single_wi_anno", "radar_single", "radar_multi_fill", "radar_multi"),
    "area": ("area", "area_stack", "area_percent"),
    "node": ("node_link", "node_link_dir", "node_link_undir"),
}
# stat_all_metric.py:151: these groups make 'regular', every other group 'extra'
CHARTBENCH_REGULAR = ("line", "bar", "pie")
# stat_all_metric.py:25-34 `metric_anno['wi_anno']`, a dictionary of its own since a32f246 (so these types no
# longer count in 'extra'); lines 155-156: a type not listed here counts as 'wo_anno', whatever metric_anno says.
CHARTBENCH_ANNOTATED = (
    "horizontal_single_wi_anno",
    "vertical_single_wi_anno",
    "pie_pie",
    "pie_bar",
    "radar_single_wi_anno",
    "node_link_dir",
    "node_link_undir",
    "ring_wi_anno",
    "line_multi_wi_anno",
    "line_single_wi_anno",
)
# stat_all_metric.py:43-47 `metric_record_nqa`: the keys the pooled 'final' figure (lines 195-199) is kept for
CHARTBENCH_POOLED_KEYS = ("all", "regular", "extra", *CHARTBENCH_GROUPS, "wi_anno", "wo_anno")
# show_latex_table.py:52, :60 and :184: the group columns weigh `accp * 0.8 + nqa * 0.2`
CHARTBENCH_ACC_PLUS_WEIGHT, CHARTBENCH_NQA_WEIGHT = 0.8, 0.2
# stat_all_metric.py:171 strips this string (DeepSeek's end-of-sentence token) from each NQA reply with str.strip,
# which takes it as a set of characters: "Yes" loses "s" and "e" and becomes "Y", "78 cents" becomes "78 ".
CHARTBENCH_REPLY_STRIP = "<\uff5cend\u2581of\u2581sentence\uff5c>"


def chartbench_says_yes(reply: Any) -> bool:
    """fuzzy_match: a reply is Yes when it contains "yes" anywhere; everything else is No.

    Example:
        >>> chartbench_says_yes("Eyes on the chart: no"), chartbench_says_yes("No.")
        (True, False)
    """
    # stat_all_metric.py:95 `contains_yes = 'yes' in sentence.lower()`, and line 96 returns its negation as No
    return "yes" in _text(reply).lower()


def chartbench_nqa_correct(reply: Any, label: Any, max_relative_change: float = 0.05) -> bool:
    """stat_all_metric.py's NQA check (line 171), ``relaxed_correctness(reply.strip().strip(S), label)``, as called.

    The reply is stripped of whitespace and then of every character of ``<｜end▁of▁sentence｜>``
    at either end (:data:`CHARTBENCH_REPLY_STRIP`), so a ``Yes`` reply is read as ``Y``. The
    function is declared ``(target, prediction)`` but called with the reply first, so the reply is
    parsed as the target (a ``%`` reply counts both as ``v`` and ``v/100``) and the label as the
    prediction (``%`` dropped without dividing: the ``/ 100.0`` is commented out); the relative
    change is taken against the reply, and a reply of 0 accepts any label <= 0.05.

    Example:
        >>> chartbench_nqa_correct("Yes", "Yes")      # the reply is read as "Y"
        False
        >>> chartbench_nqa_correct("78 cents", "78.0")  # read as "78 ", a number
        True
        >>> chartbench_nqa_correct("45%", "45")       # the reply's 45% read as 45
        True
        >>> chartbench_nqa_correct("100", "105")      # |105 - 100| / 100, against the reply
        True
        >>> chartbench_nqa_correct("0", "-7")         # reply 0: `relative_change = prediction_float`
        True
    """
    reply, label = _text(reply).strip().strip(CHARTBENCH_REPLY_STRIP), _text(label)

    def label_value(text: str) -> float | None:  # lines 53-62 `_prediction_to_float`: `float(text.rstrip('%'))`
        return _float(text.rstrip("%")) if text.endswith("%") else _float(text)

    def reply_values(text: str) -> list[float] | None:  # lines 64-73 `_target_to_float`: `[v, v / 100.0]`
        if text.endswith("%"):
            value = _float(text.rstrip("%"))
            return None if value is None else [value, value / 100.0]
        value = _float(text)
        return None if value is None else [value]

    label_number, reply_numbers = label_value(label), reply_values(reply)
    if label_number is not None and reply_numbers is not None:
        # lines 81-82 `if t == 0: relative_change = prediction_float` (no abs: any negative label passes)
        return any(
            (label_number if value == 0 else abs(label_number - value) / abs(value)) <= max_relative_change
            for value in reply_numbers
        )
    return label.lower() == reply.lower()  # line 88


def _chartbench_keys(image_type: str, task: str | None) -> list[str]:
    """The metric keys one ChartBench item is appended to (stat_all_metric.py:147-161 and 174-183)."""
    keys = ["all"]
    for group, members in CHARTBENCH_GROUPS.items():  # lines 149-153
        if image_type in members:
            keys += [group, "regular" if group in CHARTBENCH_REGULAR else "extra"]
    annotated = image_type in CHARTBENCH_ANNOTATED
    keys.append("wi_anno" if annotated else "wo_anno")  # lines 155-156, once per item
    if task:  # Acc+ items only, lines 158-161: `update_yes_no(metrics, task_type, ...)` and `wi_<task>` / `wo_<task>`
        keys += [task, ("wi_" if annotated else "wo_") + task]
    return keys


def _chartbench_pairs(records: Iterable[Record]) -> list[tuple[Mapping[str, Any], Any, Any]]:
    """(meta, first reply, second reply) of each complete Acc+ pair, in first-seen order.

    A pair's n-th first assertion goes with its n-th second one, so a row listed twice (several
    released reply files repeat rows) counts twice, as the official loop over rows counts it.
    """
    turns: dict[Any, tuple[list[Record], list[Record]]] = {}
    for record in records:
        meta = record.get("meta") or {}
        if meta.get("pair") is not None:
            turn = 1 if str(meta.get("turn") or 0) == "1" else 0
            turns.setdefault(meta["pair"], ([], []))[turn].append(record)
    return [
        (first.get("meta") or {}, first.get("prediction"), second.get("prediction"))
        for firsts, seconds in turns.values()
        for first, second in zip(firsts, seconds)  # a pair cut by --limit is left out
    ]


def _chartbench_weighted(details: Mapping[str, Mapping[str, float | None]], key: str) -> float | None:
    """show_latex_table.py's ``accp * 0.8 + nqa * 0.2`` for one group; None when the group has no item.

    Both figures are first rounded to 2 decimals, as the spreadsheet it reads holds them
    (stat_all_metric.py:220 writes ``f'{i:.2f}'``); a group without NQA rows counts NQA as 0
    (``format_percent_metric``, line 125).
    """
    if key not in details["Acc+"] and key not in details["NQA"]:
        return None
    acc_plus, nqa = details["Acc+"].get(key) or 0.0, details["NQA"].get(key) or 0.0
    return CHARTBENCH_ACC_PLUS_WEIGHT * round(acc_plus, 2) + CHARTBENCH_NQA_WEIGHT * round(nqa, 2)


def score_chartbench(records: Sequence[Record]) -> dict[str, Any]:
    """ChartBench's ``eval_all_metric_in_chartbench`` and the "Avg" of its overview table.

    Acc+ questions come in pairs whose first assertion is the true one: Acc+ counts a chart when
    the first reply says Yes and the second does not (the labels are not read), Acc scores each
    reply that way, CoR counts pairs answered alike, Err the rest. NQA scores each numeric
    question with :func:`chartbench_nqa_correct` against its best label. The headline, the
    published "Avg", pools the Acc+ pairs and the NQA questions (``final['all']``: one mean over
    both); ``0.8 x Acc+ + 0.2 x NQA`` is reported for the chart groups only, as the tables do.
    Groups follow ``metric_group`` by image type, annotation ``metric_anno``.

    Example:
        >>> pair = {"pair": "1", "image_type": "line_single", "task": "CR", "qa": "Acc+"}
        >>> records = [{"prediction": "Yes", "meta": {**pair, "turn": 0}},
        ...            {"prediction": "No", "meta": {**pair, "turn": 1}},
        ...            {"prediction": "9", "answer": "10", "meta": {"qa": "GPT-acc", "labels": ["10"],
        ...                                                          "image_type": "line_single"}}]
        >>> result = score_chartbench(records)
        >>> result["value"], result["breakdown"]["Acc+"], result["breakdown"]["NQA"]
        (50.0, 100.0, 0.0)
        >>> result["breakdown"]["average: line"]      # 0.8 x 100 + 0.2 x 0
        80.0
    """
    lists: dict[str, dict[str, list[float]]] = {name: {} for name in ("Acc+", "CoR", "Acc", "Err", "NQA")}

    def add(metric: str, keys: list[str], values: list[float]) -> None:
        for key in keys:
            lists[metric].setdefault(key, []).extend(values)

    pairs = _chartbench_pairs(records)
    for meta, first, second in pairs:
        first_yes, second_yes = chartbench_says_yes(first), chartbench_says_yes(second)
        acc_plus = first_yes and not second_yes  # accuracy_plus (lines 106-110): `isYes and isNo`
        confused = first_yes == second_yes  # confuse_rate (lines 118-122): both Yes or both No
        keys = _chartbench_keys(str(meta.get("image_type") or ""), meta.get("task") or None)
        add("Acc+", keys, [float(acc_plus)])
        add("CoR", keys, [float(confused)])
        add("Acc", keys, [float(first_yes), float(not second_yes)])  # accuracy_vanilla, line 132 `.extend(acc)`
        add("Err", keys, [float(not acc_plus and not confused)])  # line 146
    numeric = [r for r in records if (r.get("meta") or {}).get("qa") == "GPT-acc"]
    for record in numeric:
        meta = record.get("meta") or {}
        labels = meta.get("labels") or [record.get("answer")]
        # lines 170-173 `max([relaxed_correctness(eval_answer.strip().strip(...), ann) for ann in ...['label']])`;
        # our extracted answer stands in for the `gpt_filter` value an LLM would have extracted (lines 166-169)
        correct = max(chartbench_nqa_correct(record.get("prediction"), label) for label in labels)
        add("NQA", _chartbench_keys(str(meta.get("image_type") or ""), None), [float(correct)])
    details = {metric: {key: percent(values) for key, values in by_key.items()} for metric, by_key in lists.items()}
    # lines 195-199: 'final' pools each key's NQA rows and Acc+ pairs; show_latex_table.py:64 prints final['all']
    details["Avg"] = {
        key: percent(lists["NQA"].get(key, []) + lists["Acc+"].get(key, []))
        for key in CHARTBENCH_POOLED_KEYS
        if key in lists["NQA"] or key in lists["Acc+"]
    }

    breakdown = {metric: details[metric]["all"] for metric in ("Acc+", "NQA", "Acc", "CoR") if "all" in details[metric]}
    for part in ("regular", "extra"):  # the overview table's Reg_ and Ext_ columns
        for metric in ("Acc+", "NQA"):
            if part in details[metric]:
                breakdown[f"{metric}: {part}"] = details[metric][part]
    for key in ("line", "bar", "pie", "regular", "area", "box", "radar", "scatter", "node", "combination", "extra"):
        weighted = _chartbench_weighted(details, key)
        if weighted is not None:
            breakdown[f"average: {key}"] = weighted
    for task in ("CR", "VE", "VC", "GC"):
        if task in details["Acc+"]:
            breakdown[f"Acc+: {task}"] = details["Acc+"][task]
            breakdown[f"CoR: {task}"] = details["CoR"][task]
    return _result(
        "ChartBench stat_all_metric.py: 'yes' anywhere in a reply means Yes; Acc+ per pair; NQA by relaxed_correctness "
        "called (reply, label) on the reply stripped of the characters of '<\uff5cend\u2581of\u2581sentence\uff5c>'; "
        "headline Avg: Acc+ pairs and NQA questions pooled; groups 0.8 x Acc+ + 0.2 x NQA "
        "(IDEA-FinAI/ChartBench Stat/stat_all_metric.py, Stat/show_latex_table.py at 548980b)",
        "Avg (Acc+ pairs and NQA questions pooled)",
        details["Avg"].get("all"),
        2 * len(pairs) + len(numeric),
        breakdown,
        details=details,
    )


# --------------------------------------------------------------------------------------------
# EvoChart: no code is published; the README's rule
# --------------------------------------------------------------------------------------------


def _is_clear(value: Any) -> bool:
    return value is True or _text(value).strip().lower() in ("true", "1", "yes")


def score_evochart(records: Sequence[Record]) -> dict[str, Any]:
    """EvoChart-QA as its README states: ``is_clear`` answers by string match, the rest with 5% tolerance.

    String match is read as equal text after stripping, case-insensitive; the tolerance rule is
    pix2struct's relaxed correctness, on the gold as the dataset gives it (``meta["labels"]``,
    unstripped: a gold ``"Yes "`` does not match ``"Yes"``).

    Example:
        >>> records = [{"prediction": "41", "answer": "42", "meta": {"is_clear": True}},
        ...            {"prediction": "41", "answer": "42", "meta": {"is_clear": False}}]
        >>> result = score_evochart(records)
        >>> result["value"], result["breakdown"]
        (50.0, {'is_clear (string match)': 0.0, 'not is_clear (5% tolerance)': 100.0})
    """
    clear, other, scores = [], [], []
    for record in records:
        meta = record.get("meta") or {}
        prediction, answer = _text(record.get("prediction")), _text((meta.get("labels") or [record.get("answer")])[0])
        if _is_clear(meta.get("is_clear")):
            score = float(prediction.strip().lower() == answer.strip().lower())
            clear.append(score)
        else:
            score = float(pix2struct_relaxed_correctness(answer, prediction))
            other.append(score)
        scores.append(score)
    breakdown = {"is_clear (string match)": percent(clear), "not is_clear (5% tolerance)": percent(other)}
    return _result(
        "EvoChart README: answers with is_clear scored by string match, the others with 5% relative tolerance "
        "(no evaluation code is published)",
        "accuracy",
        percent(scores),
        len(records),
        {k: v for k, v in breakdown.items() if v is not None},
    )


def score_project_metric(records: Sequence[Record]) -> dict[str, Any]:
    """For benchmarks without an official script for free-text replies: the project's own metric.

    Example:
        >>> score_project_metric([{"score": 1.0, "subset": "bar"}, {"score": 0.0, "subset": "bar"}])["value"]
        50.0
    """
    scores = [float(record.get("score") or 0.0) for record in records]
    return _result(
        "no official evaluation code for free-text replies: the project's metric (metrics.METRICS)",
        "accuracy",
        percent(scores),
        len(records),
        percent_by_subset(records, scores),
    )


OFFICIAL_SCORERS: dict[str, Callable[[Sequence[Record]], dict[str, Any]]] = {
    "pix2struct": score_pix2struct,
    "chartqapro": score_chartqapro,
    "chartbench": score_chartbench,
    "evochart": score_evochart,
    "project": score_project_metric,
}


# --------------------------------------------------------------------------------------------
# The Chart-RVR authors' scoring: sanchit97/chartrl metrics.relaxed_accuracy at 83c4406, mean over examples
# --------------------------------------------------------------------------------------------


def chartrl_relaxed_accuracy(target: Any, prediction: Any, tolerance: float = 0.05) -> bool:
    """One item of chartrl's ``relaxed_accuracy(targets, predictions, tol)`` (metrics.py:31-63).

    The prediction loses one trailing ``.`` and is then stripped; the target is only stripped, its
    dots kept; ``%`` values are divided by 100; a target of 0 is compared as text; the relative
    change must be at most ``tolerance`` (ChartQAPro was run with ``tol=True``, i.e. 1.0: any
    number between 0 and twice the gold passes).

    Example:
        >>> chartrl_relaxed_accuracy("5", "0", tolerance=True)
        True
        >>> chartrl_relaxed_accuracy("Yes", " yes.")       # the reply's dot goes
        True
        >>> chartrl_relaxed_accuracy("Yes.", "Yes")       # the gold's stays
        False
        >>> chartrl_relaxed_accuracy(".5", "0.5")         # so ".5" is still a number
        True
    """
    prediction = _text(prediction)
    prediction = prediction[:-1] if prediction.endswith(".") else prediction  # line 50, before stripping
    prediction, target = prediction.strip(), _text(target).strip()  # line 51 (77b746d also stripped the gold's dots)

    # line 47 `_to_float` is pix2struct's: `float(text.rstrip('%')) / 100.0 if text.endswith('%')`
    prediction_value, target_value = _percent_float(prediction), _percent_float(target)
    if prediction_value is not None and target_value:  # line 55 `if p_float is not None and t_float:`
        return abs(prediction_value - target_value) / abs(target_value) <= tolerance
    return prediction.lower() == target.lower()  # line 59


def score_chart_rvr_code(records: Sequence[Record], tolerance: float = 0.05) -> dict[str, Any]:
    """The Chart-RVR code's figure: mean :func:`chartrl_relaxed_accuracy` over all examples, per subset too.

    Every example counts once (each ChartBench assertion and numeric question alike), scored
    against the gold the authors' loader gave it: the first turn's answer of a ChartQAPro row
    (``meta["answers"][0]``: dataset_process.py:439 ``Answer[0]``), else the example's answer
    (a ChartQA row's first label).

    Example:
        >>> records = [{"prediction": "0", "answer": "5", "subset": None}, {"prediction": "12", "answer": "5"}]
        >>> score_chart_rvr_code(records, tolerance=True)["value"]
        50.0
        >>> conversation = {"prediction": "France", "answer": "France", "meta": {"answers": ["Germany", "France"]}}
        >>> score_chart_rvr_code([conversation], tolerance=True)["value"]    # scored against "Germany"
        0.0
    """
    scores = []
    for record in records:
        answers = (record.get("meta") or {}).get("answers") or [record.get("answer")]
        scores.append(float(chartrl_relaxed_accuracy(answers[0], record.get("prediction"), tolerance)))
    return {
        "rule": "Chart-RVR code: mean relaxed accuracy over all examples, "
        f"{100 * float(tolerance):g}% relative tolerance (sanchit97/chartrl metrics.relaxed_accuracy at 83c4406)",
        "label": "relaxed accuracy",
        "value": percent(scores),
        "n": len(records),
        "tolerance": float(tolerance),
        "breakdown": percent_by_subset(records, scores),
    }
