"""The published-table figures: each benchmark's official scoring (quirks included) and the Chart-RVR
code's scoring.

Every expected value below was worked out by hand from the official code, not produced by ours:
IDEA-FinAI/ChartBench Stat/stat_all_metric.py (+ Stat/show_latex_table.py's 0.8/0.2 average),
vis-nlp/ChartQAPro evaluate_predictions.py, google-research/pix2struct pix2struct/metrics.py, the
EvoChart README's rule, and sanchit97/chartrl metrics.relaxed_accuracy. Each comment shows the
arithmetic.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chartrvr_nb.benchmarks import BENCHMARKS, chartbench_examples, field_example
from chartrvr_nb.eval_results import prediction_record, results_table, summarize
from chartrvr_nb.metrics import chartqapro_score
from chartrvr_nb.official_scoring import (
    chartbench_nqa_correct,
    chartqapro_relaxed_correctness,
    chartrl_relaxed_accuracy,
    pix2struct_relaxed_correctness,
    score_chartbench,
    score_chartqapro,
    score_evochart,
    score_pix2struct,
)


def records_for(examples, predictions):
    """predictions.jsonl records, as the runner writes them, for given examples and predictions."""
    return [
        prediction_record(i, example, {"prediction": prediction, "reply": prediction})
        for i, (example, prediction) in enumerate(zip(examples, predictions))
    ]


# --------------------------------------------------------------------------------------------
# ChartBench
# --------------------------------------------------------------------------------------------


def chartbench_row(chart_id, image_type, chart="bar", task="CR", qa="Acc+", labels=("Yes", "No")):
    """A row of SincereX/ChartBench's test_data: Acc+ pairs list the true assertion first."""
    if qa == "Acc+":
        conversation = [
            {"query": f"Assertion {i} about chart {chart_id}.", "label": label} for i, label in enumerate(labels)
        ]
    else:
        conversation = [{"query": f"What is the value in chart {chart_id}?", "label": list(labels)}]
    return {
        "id": chart_id,
        "image": f"./data/test/{chart}/{image_type}/chart_{chart_id}/image.png",
        "type": {"chart": chart, "image": image_type, "task": task if qa == "Acc+" else "", "QA": qa},
        "conversation": conversation,
    }


def chartbench_records(rows_and_replies):
    examples, predictions = [], []
    for index, (row, replies) in enumerate(rows_and_replies):
        row_examples = chartbench_examples(BENCHMARKS["chartbench"], row, index)
        examples += row_examples
        predictions += list(replies)[: len(row_examples)]
    return records_for(examples, predictions)


def test_chartbench_reads_yes_anywhere_in_the_reply_and_everything_else_as_no():
    # fuzzy_match: `'yes' in sentence.lower()`. "Eyes..." contains "yes": the first assertion counts as Yes.
    # "Not sure" has no "yes": it counts as No, so the second assertion is "right".
    records = chartbench_records([(chartbench_row(1, "vertical_single"), ["Eyes on the bars: no", "Not sure"])])
    official = score_chartbench(records)
    assert official["breakdown"]["Acc+"] == 100.0
    # the project metric reads the first word: "Eyes" and "Not" are neither yes nor no
    assert [record["score"] for record in records] == [0.0, 0.0]


def test_chartbench_acc_plus_cor_acc_and_the_combined_figure_on_paired_rows():
    rows = [
        (chartbench_row(1, "vertical_single", task="CR"), ["Yes", "No"]),  # Acc+ 1, CoR 0, Acc [1, 1]
        (chartbench_row(2, "line_single", chart="line", task="VE"), ["yes", "yes"]),  # Acc+ 0, CoR 1, Acc [1, 0]
        (chartbench_row(3, "pie", chart="pie", task="VC"), ["no", "no"]),  # Acc+ 0, CoR 1, Acc [0, 1]
        (chartbench_row(4, "area", chart="area", task="GC"), ["No", "Yes"]),  # Acc+ 0, CoR 0, Acc [0, 0], Err
        (chartbench_row(5, "vertical_single", qa="GPT-acc", labels=("12",)), ["12.4"]),  # NQA: |12-12.4|/12.4 < 5%
        (chartbench_row(6, "vertical_single", qa="GPT-acc", labels=("30",)), ["20"]),  # NQA: 10/20 = 50%: wrong
    ]
    official = score_chartbench(chartbench_records(rows))
    breakdown = official["breakdown"]
    assert breakdown["Acc+"] == 25.0  # 1 of 4 pairs
    assert breakdown["CoR"] == 50.0  # pairs 2 and 3 answered alike
    assert breakdown["Acc"] == 50.0  # 4 of 8 replies
    assert official["details"]["Err"]["all"] == 25.0  # pair 4
    assert breakdown["NQA"] == 50.0
    assert official["value"] == pytest.approx(0.8 * 25.0 + 0.2 * 50.0)  # show_latex_table: accp * 0.8 + nqa * 0.2 = 30
    assert official["label"] == "0.8 x Acc+ + 0.2 x NQA" and official["n"] == 10
    assert breakdown["Acc+: CR"] == 100.0 and breakdown["Acc+: VE"] == 0.0 and breakdown["CoR: VE"] == 100.0
    # 'bar' group: pair 1 (Acc+ 1) and NQA rows 5, 6 (1, 0): 0.8 * 100 + 0.2 * 50 = 90
    assert breakdown["average: bar"] == pytest.approx(90.0)


def test_chartbench_group_quirks_of_metric_group():
    rows = [
        (chartbench_row(1, "line_single", chart="line"), ["Yes", "No"]),  # right
        (chartbench_row(2, "area", chart="area"), ["No", "No"]),  # wrong
        (chartbench_row(3, "ring_wi_anno", chart="pie"), ["Yes", "No"]),  # right
        (chartbench_row(4, "pie", chart="pie"), ["No", "No"]),  # wrong
    ]
    official = score_chartbench(chartbench_records(rows))
    acc_plus = official["details"]["Acc+"]
    # 'ring_wi_anno' is in no chart group: the pie group holds only pair 4
    assert acc_plus["pie"] == 0.0 and official["breakdown"]["average: pie"] == 0.0
    # a listed wi_anno / wo_anno type is appended twice to its annotation group (group loop + anno_key);
    # 'area' and 'pie' are in neither list, so once each to wo_anno: (1 + 1 + 0 + 0) / 4
    assert acc_plus["wi_anno"] == 100.0
    assert acc_plus["wo_anno"] == pytest.approx(50.0)
    # wi_anno / wo_anno are keys of metric_group, so pairs 1 and 3 also land in 'extra' (besides area):
    # extra = [area 0, line_single via wo_anno 1, ring_wi_anno via wi_anno 1] -> 2/3
    assert acc_plus["extra"] == pytest.approx(200 / 3)
    # no NQA row: format_percent_metric gives 0, so the average is 0.8 * Acc+
    assert official["breakdown"]["average: line"] == pytest.approx(80.0)
    assert official["value"] == pytest.approx(0.8 * 50.0)


@pytest.mark.parametrize(
    ("reply", "label", "expected", "why"),
    [
        ("45%", "45", True, "the reply is parsed as the target: 45% -> [45, 0.45]; 45 matches 45"),
        ("0.45", "45%", False, "the label is parsed as the prediction, % dropped without /100: 45 vs 0.45"),
        ("95", "100", False, "change against the reply: |100 - 95| / 95 = 5.26% > 5%"),
        ("105", "100", True, "|100 - 105| / 105 = 4.76%"),
        ("0", "-7", True, "a reply of 0: relative_change = prediction_float = -7 <= 0.05"),
        ("0", "0.06", False, "0.06 > 0.05"),
        (" Paris ", "paris", True, "the reply is stripped, then text compared lowercased"),
    ],
)
def test_chartbench_nqa_calls_relaxed_correctness_with_swapped_arguments(reply, label, expected, why):
    assert chartbench_nqa_correct(reply, label) is expected, why


def test_chartbench_nqa_takes_the_best_label_and_the_pix2struct_order_would_differ():
    records = chartbench_records([(chartbench_row(1, "vertical_single", qa="GPT-acc", labels=("7", "95")), ["100"])])
    assert score_chartbench(records)["breakdown"]["NQA"] == 100.0  # label 95: |95 - 100| / 100 = 5%
    assert pix2struct_relaxed_correctness("95", "100") is False  # in pix2struct's order: 5 / 95 = 5.26%


# --------------------------------------------------------------------------------------------
# ChartQAPro
# --------------------------------------------------------------------------------------------


def pro_record(prediction, answer, question_type="Factoid", year_flags=("NO",)):
    example = {
        "id": "0",
        "question": "q",
        "answer": answer,
        "subset": question_type,
        "metric": "chartqapro",
        "meta": {"question_type": question_type, "year_flags": list(year_flags)},
    }
    return prediction_record(0, example, {"prediction": prediction})


@pytest.mark.parametrize(
    ("prediction", "answer", "question_type", "expected", "why"),
    [
        # fix_list_format cannot quote '45'% -> literal_eval fails -> the gold stays one string;
        # the prediction parses to 2 items: anls("45", "[45%, 30%]") = 0 (distance 8 of 10), extra item 0
        ("[45, 30]", "[45%, 30%]", "Factoid", 0.0, "a list with % stays one string"),
        ("[45%, 30%]", "[45%, 30%]", "Factoid", 1.0, "the same text: ANLS 1"),
        ("[$5, $6]", "[$5, $6]", "Factoid", 1.0, "$ lists too are one string"),
        # "New York" -> 'New' 'York' -> 'NewYork'; the prediction is parsed without quoting:
        # anls("new york", "newyork") = 1 - 1/8, "boston" = 1 -> (0.875 + 1) / 2
        ("['New York', 'Boston']", "[New York, Boston]", "Factoid", 0.9375, "unquoted words are joined"),
        # an unquoted prediction list does not parse: one string against two items -> 0 and 0
        ("[New York, Boston]", "[New York, Boston]", "Factoid", 0.0, "predictions are not quoted"),
        # always_use_exact_match is never passed: ANLS("tru", "true") = 1 - 1/4
        ("Tru", "True", "Fact Checking", 0.75, "Fact Checking is not exact match"),
        ("Northh", "North", "Multi Choice", 1 - 1 / 6, "Multi Choice is not exact match"),
        # .strip(".") runs before .strip("\n") and there is no whitespace strip: the dot stays;
        # anls("paris.", "paris") = 1 - 1/6
        ("Paris.\n", "Paris", "Factoid", 1 - 1 / 6, "a final dot before a newline stays"),
        ("Paris. ", "Paris", "Factoid", 1 - 1 / 6, "a final dot before a space stays"),
        ("Paris.", "Paris", "Factoid", 1.0, "a final dot goes"),
        ("30", "30%", "Factoid", 1.0, "% stripped, not divided"),
    ],
)
def test_chartqapro_official_quirks(prediction, answer, question_type, expected, why):
    value = score_chartqapro([pro_record(prediction, answer, question_type)])["value"]
    assert value == pytest.approx(100 * expected), why


def test_chartqapro_year_flags_and_the_empty_year_list_the_official_code_crashes_on():
    # flagged a year: equal text only (2017 is within 5% of 2016 but scores 0)
    assert score_chartqapro([pro_record("2017", "2016", year_flags=["YES"])])["value"] == 0.0
    # Year == []: `year_flags[idx]` raises IndexError officially; scored as if no item were a year (a number)
    result = score_chartqapro([pro_record("2017", "2016", year_flags=[]), pro_record("4", "4")])
    assert result["value"] == 100.0 and result["rows_official_code_crashes_on"] == 1
    assert chartqapro_relaxed_correctness("x", "x", None) == (1.0, True)


def test_chartqapro_overall_and_per_type_and_how_it_differs_from_the_paper_rule():
    records = [
        pro_record("Tru", "True", "Fact Checking"),  # official 0.75; paper rule (exact) 0
        pro_record("true", "True", "Fact Checking"),  # 1 and 1
        pro_record("12.3", "12", "Factoid"),  # 1 and 1
        pro_record("Apple", "Apples", "Factoid"),  # ANLS 1 - 1/6 both
    ]
    result = score_chartqapro(records)
    assert result["breakdown"] == pytest.approx({"Fact Checking": 87.5, "Factoid": 100 * (1 + 5 / 6) / 2})
    assert result["value"] == pytest.approx(100 * (0.75 + 1 + 1 + 5 / 6) / 4)
    project = [chartqapro_score(r["prediction"], r) for r in records]
    assert project == pytest.approx([0.0, 1.0, 1.0, 5 / 6])  # the project follows the paper: exact for Fact Checking


def test_chart_rvr_code_scores_chartqapro_with_a_100_percent_tolerance():
    # chartrl relaxed_accuracy(..., tol=True): |p - t| / |t| <= 1
    cases = [
        ("75", "40", True),  # 35/40 = 0.875
        ("81", "40", False),  # 41/40 = 1.025
        ("0", "40", True),  # exactly 1.0
        ("0.0", "0", False),  # a zero target is compared as text
        ("Yes", "yes.", True),
    ]  # the target loses its dot; text lowercased
    for prediction, answer, expected in cases:
        assert chartrl_relaxed_accuracy(answer, prediction, tolerance=True) is expected, (prediction, answer)
    records = [pro_record(prediction, answer) for prediction, answer, _ in cases]
    summary = summarize(BENCHMARKS["chartqapro"], records)
    assert summary["chart_rvr_code"]["tolerance"] == 1.0
    assert summary["chart_rvr_code"]["value"] == pytest.approx(60.0)  # 3 of 5
    # with ChartQA's 5% the same predictions score 1 of 5 (only the text answer)
    assert summarize(BENCHMARKS["chartqa"], records)["chart_rvr_code"]["value"] == pytest.approx(20.0)


# --------------------------------------------------------------------------------------------
# ChartQA (pix2struct relaxed_correctness) and EvoChart (the README's rule)
# --------------------------------------------------------------------------------------------


def chartqa_records(rows_and_predictions):
    bench = BENCHMARKS["chartqa"]
    examples = [field_example(bench, row, i) for i, (row, _) in enumerate(rows_and_predictions)]
    return records_for(examples, [p for _, p in rows_and_predictions])


def test_chartqa_official_takes_the_best_label_and_strips_every_trailing_percent():
    records = chartqa_records(
        [
            ({"query": "q", "label": ["3", "7"], "human_or_machine": 0, "image": None}, "7"),  # 2nd label: 1
            ({"query": "q", "label": ["0.45"], "human_or_machine": 0, "image": None}, "45%%"),  # rstrip: 0.45 -> 1
            ({"query": "q", "label": ["line"], "human_or_machine": 1, "image": None}, " line"),  # no strip: 0
            ({"query": "q", "label": ["0"], "human_or_machine": 1, "image": None}, "0.0"),  # target 0: text, 0
        ]
    )
    official = score_pix2struct(records)
    assert official["value"] == 50.0 and official["breakdown"] == {"augmented": 0.0, "human": 100.0}
    # the project metric takes the first label and one %: the first two score 0 there
    assert [record["score"] for record in records][:2] == [0.0, 0.0]


def test_evochart_scores_is_clear_answers_by_string_match_and_the_rest_with_5_percent():
    bench = BENCHMARKS["evochart"]
    rows = [
        {"imgname": "a.png", "query": "q", "label": "42", "is_clear": True},
        {"imgname": "b.png", "query": "q", "label": "42", "is_clear": False},
        {"imgname": "c.png", "query": "q", "label": "Food", "is_clear": True},
    ]
    examples = [field_example(bench, row, i) for i, row in enumerate(rows)]
    assert [example["meta"]["is_clear"] for example in examples] == [True, False, True]
    records = records_for(examples, ["41", "41", "food"])
    official = score_evochart(records)
    # 41 vs 42 is within 5% (2.4%) but an is_clear answer needs the same text: 0, 1, 1
    assert official["value"] == pytest.approx(200 / 3)
    assert official["breakdown"] == {"is_clear (string match)": 50.0, "not is_clear (5% tolerance)": 100.0}
    assert [record["score"] for record in records] == [1.0, 1.0, 1.0]  # the project ignores is_clear


# --------------------------------------------------------------------------------------------
# summary.json and the results table
# --------------------------------------------------------------------------------------------


def test_every_benchmark_summary_reports_official_and_chart_rvr_code():
    for name, bench in BENCHMARKS.items():
        example = {"id": "0", "question": "q", "answer": "Yes", "subset": None, "metric": bench.metric, "meta": {}}
        summary = summarize(bench, [prediction_record(0, example, {"prediction": "yes"})])
        assert summary["chart_rvr_code"]["value"] == 100.0, name
        assert {"value", "label", "breakdown", "n", "rows_official_code_crashes_on", "rule"} <= set(summary["official"])


def test_results_table_puts_the_paper_beside_chart_rvr_code_then_the_official_breakdown():
    records = [pro_record("Tru", "True", "Fact Checking"), pro_record("2016", "2016", year_flags=[])]
    summary = {
        "benchmark": "chartqapro",
        "model": "qwen2-5-3b",
        "adapter": "runs/x/adapter",
        **summarize(BENCHMARKS["chartqapro"], records),
    }
    table = results_table(summary)
    first = table.iloc[0]
    # chart_rvr_code: "Tru" vs "True" text: 0; 2016 vs 2016: 1 -> 50
    assert first["metric"] == "chart_rvr_code: relaxed accuracy" and first["ours"] == 50.0
    assert first["Chart-RVR-3B"] == 28.38 and first["vs paper"] == pytest.approx(50.0 - 28.38)
    metrics = table["metric"].tolist()
    assert metrics[1:5] == [
        "official: Overall",
        "official: Fact Checking",
        "official: Factoid",
        "official: rows its code crashes on (scored as if it had not)",
    ]
    assert table.iloc[1]["ours"] == pytest.approx(87.5)  # (0.75 + 1) / 2
    assert table.iloc[4]["n"] == 1
    assert "project metric: accuracy" in metrics


ANSWERISH = st.one_of(st.text(max_size=30), st.from_regex(r"\[?[-\d., %$a-zA-Z']{0,20}\]?", fullmatch=True))


@settings(max_examples=300, deadline=None)
@given(ANSWERISH, ANSWERISH, st.lists(st.sampled_from(["YES", "NO", "yes", ""]), max_size=3))
def test_official_rules_never_raise_and_stay_in_range(gold, reply, flags):
    score, crashed = chartqapro_relaxed_correctness(gold, reply, flags)
    assert 0.0 <= score <= 1.0 and crashed == (not flags)
    assert isinstance(chartbench_nqa_correct(reply, gold), bool)
    assert isinstance(pix2struct_relaxed_correctness(gold, reply), bool)
    assert isinstance(chartrl_relaxed_accuracy(gold, reply, tolerance=True), bool)


def test_a_declaration_naming_an_unknown_scorer_is_an_error():
    from chartrvr_nb.benchmarks import Benchmark

    with pytest.raises(ValueError, match="unknown official scorer 'leaderboard'"):
        Benchmark("demo", "Demo", "release", official="leaderboard")
    with pytest.raises(ValueError, match="unknown aggregations"):
        Benchmark("demo", "Demo", "release", aggregations=("subset_max",))


def test_the_accuracy_plot_draws_chart_rvr_code_beside_the_paper():
    from chartrvr_nb.plots import plot_benchmark_accuracy

    records = [pro_record("75", "40"), pro_record("81", "40")]  # chart_rvr_code (100% tolerance): 1 of 2
    summary = {
        "benchmark": "chartqapro",
        "model": "qwen2-5-3b",
        "adapter": None,
        **summarize(BENCHMARKS["chartqapro"], records),
    }
    ax = plot_benchmark_accuracy(results_table(summary)).axes[0]
    assert sorted(round(patch.get_height(), 2) for patch in ax.patches) == [25.7, 28.38, 50.0]
