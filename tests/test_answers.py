"""answers: tag extraction, relaxed match (ChartQA's rule), table parsing and comparison."""

import copy
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chartrvr_nb.answers import (
    completion_text,
    extract_answer,
    extract_between,
    parse_table,
    relaxed_match,
    table_similarity,
)


@pytest.mark.parametrize(
    "pred, target, expected",
    [
        ("10", "10", True),
        ("10.49", "10", True),  # 4.9% off
        ("10.6", "10", False),  # 6% off
        ("9.5", "10", True),  # exactly 5%
        ("-10.4", "-10", True),
        ("5", "-10", False),  # the original accepted any number for a negative label
        ("-100", "-10", False),
        ("0", "0", True),  # the original could never match a zero label
        ("0.0", "0", False),  # zero target: compared as text, as ChartQA does
        ("0.01", "0", False),
        ("45%", "0.45", True),
        ("0.45", "45%", True),
        ("45", "45%", False),
        ("Yes", "yes", True),
        ("  Paris ", "paris", True),
        ("Paris", "London", False),
        ("nan", "1", False),
        ("inf", "1", False),
        ("1", "inf", False),
        ("", "", True),
        ("%", "1", False),
    ],
)
def test_relaxed_match(pred, target, expected):
    assert relaxed_match(pred, target) is expected


def test_relaxed_match_accepts_numbers_and_none():
    assert relaxed_match(3.0, 3) is True
    assert relaxed_match(None, "3") is False
    assert relaxed_match("3", None) is False


def _reads_as_non_finite(text):
    try:
        return not math.isfinite(float(text.strip().removesuffix("%")))
    except (ValueError, OverflowError):
        return False


@given(st.text(), st.text())
def test_relaxed_match_never_raises(pred, target):
    assert relaxed_match(pred, target) in (True, False)


@given(st.text() | st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,3})?%?", fullmatch=True))
def test_relaxed_match_is_reflexive(target):
    assume(not _reads_as_non_finite(target))
    assert relaxed_match(target, target)


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).filter(lambda x: abs(x) > 1e-3))
def test_relaxed_match_tolerance_is_relative_to_the_target(target):
    assert relaxed_match(str(target * 1.04), str(target))
    assert not relaxed_match(str(target * 1.06), str(target))


def test_extract_between_takes_last_open_tag_and_next_close_tag():
    assert extract_between("<a>1</a> <a>2</a> tail</a>", "<a>", "</a>") == "2"
    assert extract_between("<a>unclosed", "<a>", "</a>") == "unclosed"
    assert extract_between("nothing", "<a>", "</a>") is None
    assert extract_between(None, "<a>", "</a>") is None


def test_extract_answer_strips_and_drops_trailing_dots():
    assert extract_answer("<answer>  12.5... </answer>") == "12.5"
    assert extract_answer("<answer>first</answer><answer>second</answer>") == "second"
    assert extract_answer("<answer></answer>") == ""


def test_completion_text_handles_strings_messages_and_garbage():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "first"},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}],
        },
    ]
    assert completion_text(messages) == "a b"
    assert completion_text([{"role": "assistant", "content": "plain"}]) == "plain"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    assert completion_text(42) == ""
    assert completion_text([1, 2]) == ""


def test_parse_table_keeps_numbers_as_written():
    assert parse_table('{"columns": ["a"], "rows": [[1.50, 2, -0.0]]}') == {
        "columns": ["a"],
        "rows": [["1.50", "2", "-0.0"]],
    }


def test_parse_table_prefers_json_fence_and_drops_newlines():
    fenced = 'here:\n```json\n{"columns": [], "rows": []}\n```\ntrailing {junk'
    assert parse_table(fenced) == {"columns": [], "rows": []}
    assert parse_table('{"columns":\n ["a"],\n "rows": []}') == {"columns": ["a"], "rows": []}
    assert parse_table("not json") is None
    assert parse_table(None) is None


def test_table_similarity_sorts_columns_case_insensitively_and_rows():
    truth = {"columns": ["Year", "sales"], "rows": [["2021", "5"], ["2020", "3"]]}
    pred = {"columns": ["SALES", "year"], "rows": [["2020", "3"], ["2021", "5"]]}
    # 2 matching columns * 0.5/2 + 4 matching cells * 0.5/2
    assert table_similarity(pred, truth) == pytest.approx(1.5)


def test_table_similarity_partial_credit_uses_predicted_sizes():
    truth = {"columns": ["a", "b"], "rows": [["1", "2"], ["3", "4"]]}
    pred = {"columns": ["a", "b", "c"], "rows": [["1", "9"]]}
    # columns: a==a, b==b over 3 predicted columns -> 2 * 0.5/3; rows: one cell over 1 predicted row -> 0.5
    assert table_similarity(pred, truth) == pytest.approx(1 / 3 + 0.5)


def test_table_similarity_malformed_parts_add_nothing_and_inputs_are_not_mutated():
    truth = {"columns": ["b", "a"], "rows": [["2"], ["1"]]}
    pred = {"columns": ["a", "b"], "rows": [["x", ["nested"]], 5, None]}
    before = (copy.deepcopy(truth), copy.deepcopy(pred))
    assert table_similarity(pred, truth) == pytest.approx(0.5)
    assert (truth, pred) == before
    assert table_similarity(["not", "a", "dict"], truth) == 0.0
    assert table_similarity({"columns": [], "rows": []}, truth) == 0.0
