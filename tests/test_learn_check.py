"""The learn-check: the verdict and the bootstrap on fixed data, held-out charts that training never
sees, the starting point the tiny-learn warm start leaves (taught, measured, judged), and shortened
checks run end to end: one that learns, one whose chart-type reward ignores the chart and must not
pass, and one whose starting point leaves nothing to learn.

The full check (200 charts, 200 steps, a few minutes) is not a test: it is
``python -m chartrvr_nb learn-check``, which exits 1 when learning is not shown.
"""

import json
import random
import time

import pytest

from chartrvr_nb import cli, learncheck, rewards, starting_point
from chartrvr_nb.answers import completion_text
from chartrvr_nb.benchmarks import BENCHMARKS
from chartrvr_nb.data import make_synthetic_rows, synthetic_chart_types
from chartrvr_nb.eval_rewards import compare_rewards, reward_scores, reward_summary
from chartrvr_nb.learncheck import (
    MIN_TOTAL_GAIN,
    compare_by_chart_type,
    format_report,
    learned,
    run_learn_check,
)
from chartrvr_nb.presets import get_preset
from chartrvr_nb.rewards import REWARDS

PRESET = get_preset("learn-check")
HELD_OUT = BENCHMARKS[PRESET.eval_dataset]


# --------------------------------------------------------------------------------------------
# The bootstrap and the verdict, on fixed data
# --------------------------------------------------------------------------------------------


def fixed_scores(chart_type_hits, format_hits, n=100):
    """Reward scores of ``n`` examples: the first ``chart_type_hits`` name the type, the first
    ``format_hits`` have the format; every other reward is a constant 1.0."""
    return [
        {name: 1.0 for name in REWARDS} | {"chart_type": float(i < chart_type_hits), "format": 2.0 * (i < format_hits)}
        for i in range(n)
    ]


def test_compare_rewards_means_gains_and_paired_intervals():
    before, after = fixed_scores(30, 10), fixed_scores(70, 90)
    metrics = compare_rewards(before, after, seed=0)
    assert set(metrics) == {"total_reward", *REWARDS}
    chart_type = metrics["chart_type"]
    assert (chart_type["before"], chart_type["after"]) == (pytest.approx(0.3), pytest.approx(0.7))
    assert chart_type["gain"] == pytest.approx(0.4)
    # 40 of 100 examples gain 1: the resampled mean gain is binomial(100, 0.4) / 100, sd ~0.049.
    low, high = chart_type["ci95"]
    assert 0.29 < low < 0.35 and 0.45 < high < 0.51
    assert metrics["format"]["gain"] == pytest.approx(1.6)
    total = metrics["total_reward"]
    assert total["before"] == pytest.approx(5 + 0.3 + 0.2) and total["gain"] == pytest.approx(2.0)
    assert total["ci95"][0] < total["gain"] < total["ci95"][1]
    # A reward that did not move has a zero-width interval at 0; the same seed gives the same interval.
    assert metrics["process"]["ci95"] == [0.0, 0.0]
    assert compare_rewards(before, after, seed=0) == metrics


def test_compare_rewards_pairs_examples():
    # The same scores, shuffled: the means are equal, but paired per example half the charts
    # gain 1 and half lose 1, so the interval straddles 0.
    before = [{"chart_type": float(i % 2)} for i in range(100)]
    after = [{"chart_type": float((i + 1) % 2)} for i in range(100)]
    metrics = compare_rewards(before, after, seed=0)
    assert metrics["chart_type"]["gain"] == 0.0
    assert metrics["chart_type"]["ci95"][0] < -0.1 and metrics["chart_type"]["ci95"][1] > 0.1
    with pytest.raises(ValueError, match="same, non-empty"):
        compare_rewards(before, after[:-1])


def test_the_verdict_needs_the_total_gain_and_an_image_reward():
    metrics = compare_rewards(fixed_scores(30, 10), fixed_scores(70, 90), seed=0)
    assert learned(metrics)
    only_format = compare_rewards(fixed_scores(30, 10), fixed_scores(30, 90), seed=0)
    assert only_format["total_reward"]["gain"] >= MIN_TOTAL_GAIN and not learned(only_format)
    only_type = compare_rewards(fixed_scores(30, 10), fixed_scores(70, 10), seed=0)
    assert only_type["chart_type"]["ci95"][0] > 0 and not learned(only_type)  # total +0.4 < +1.0


def test_the_verdict_needs_the_chart_dependent_gain_on_every_chart_type():
    # A policy that names "bar" whatever the chart, after one that named every chart's swapped type:
    # it gains on the bar charts only (a third of them), which the pooled interval alone would accept.
    chart_types = ["bar", "line", "pie"] * 30
    before = [{"format": 0.0, "chart_type": 0.0} for _ in chart_types]
    constant = [{"format": 2.0, "chart_type": float(kind == "bar")} for kind in chart_types]
    pooled = compare_rewards(before, constant, seed=0)
    assert pooled["chart_type"]["gain"] == pytest.approx(1 / 3) and pooled["chart_type"]["ci95"][0] > 0
    by_type = compare_by_chart_type(before, constant, chart_types, seed=0)
    assert sorted(by_type) == ["bar", "line", "pie"]
    assert by_type["bar"]["chart_type"]["ci95"] == [1.0, 1.0] and by_type["line"]["chart_type"]["ci95"] == [0.0, 0.0]
    assert learned(pooled) and not learned(pooled, by_type)
    # Naming each chart's own type gains on every type: learned either way.
    right = [{"format": 2.0, "chart_type": 1.0} for _ in chart_types]
    assert learned(compare_rewards(before, right, seed=0), compare_by_chart_type(before, right, chart_types, seed=0))
    with pytest.raises(ValueError, match="one chart type per example"):
        compare_by_chart_type(before, right, chart_types[:-1])


# --------------------------------------------------------------------------------------------
# Held-out charts
# --------------------------------------------------------------------------------------------


def _key(row):
    return row["query"], json.dumps(row["table"], sort_keys=True)


def test_held_out_charts_are_never_trained_on():
    from chartrvr_nb import tiny
    from chartrvr_nb.warm_start import TINY_RECIPES, WARM_START_ROWS, synthetic_examples

    held_out = make_synthetic_rows(
        learncheck.HELD_OUT_EXAMPLES,
        seed=HELD_OUT.synthetic_seed,
        render=False,
        chart_types=synthetic_chart_types(HELD_OUT.source),
    )
    assert len({_key(row) for row in held_out}) == len(held_out)
    recipe = TINY_RECIPES[PRESET.model]
    warm_start = synthetic_examples(WARM_START_ROWS, tiny.TINY_SEED + 1, recipe.chart_types)
    seen = {_key(row) for row in warm_start}
    for seed in (PRESET.seed, 1, 2, 3):  # the default and the seeds the check is documented with
        seen |= {
            _key(row)
            for row in make_synthetic_rows(
                PRESET.subset_size, seed=seed, render=False, chart_types=synthetic_chart_types(PRESET.train_data)
            )
        }
    # The build's validation charts are charts it never trains on either, and never the held-out ones.
    validation = make_synthetic_rows(
        starting_point.VALIDATION_CHARTS,
        seed=starting_point.VALIDATION_SEED,
        render=False,
        chart_types=recipe.chart_types,
    )
    assert not {_key(row) for row in warm_start} & {_key(row) for row in validation}
    assert not seen & {_key(row) for row in held_out}
    assert not {_key(row) for row in validation} & {_key(row) for row in held_out}
    assert HELD_OUT.synthetic_seed not in (PRESET.seed, 1, 2, 3, tiny.TINY_SEED + 1, starting_point.VALIDATION_SEED)
    with pytest.raises(ValueError, match="seed of the held-out charts"):
        run_learn_check(seed=HELD_OUT.synthetic_seed)


def test_warm_start_training_and_held_out_charts_share_their_chart_types():
    from chartrvr_nb.warm_start import TINY_RECIPES

    recipe = TINY_RECIPES[PRESET.model]
    assert synthetic_chart_types(PRESET.train_data) == synthetic_chart_types(HELD_OUT.source) == recipe.chart_types


def test_tiny_learn_choices_are_single_tokens_with_the_recipes_odds():
    from chartrvr_nb.synthetic import make_synthetic_example
    from chartrvr_nb.tiny import build_tiny_tokenizer
    from chartrvr_nb.warm_start import TINY_RECIPES, TinyRecipe, choice_variants, target_tokens, warm_start_target

    tokenizer, recipe = build_tiny_tokenizer(), TINY_RECIPES["tiny-learn"]
    swapped_to = {"bar": "line", "line": "pie", "pie": "bar"}
    for index, chart_type in enumerate(recipe.chart_types):
        row = make_synthetic_example(chart_type, "max", random.Random(index))
        ideal = warm_start_target(row, recipe)
        assert ideal.startswith(f"<think>\n<type>{chart_type}</type>\n") and "</think>\n<answer>" in ideal
        target, choices = target_tokens(row, recipe, tokenizer)
        assert tokenizer.decode(target) == ideal
        type_choice, format_choice = choices
        assert (type_choice.reward, format_choice.reward) == ("chart_type", "format")
        assert type_choice.wrong_share == format_choice.wrong_share == 0.7
        assert type_choice.position < format_choice.position
        # The type's token names the chart's own type, its rival the next one in the swap.
        assert tokenizer.decode([type_choice.right]).endswith(chart_type)
        assert tokenizer.decode([type_choice.wrong]).endswith(swapped_to[chart_type])
        # The newline is in the right token and missing from the wrong one.
        assert "\n" in tokenizer.decode([format_choice.right]) and "\n" not in tokenizer.decode([format_choice.wrong])
        for choice, (_, variant, _) in zip(choices, choice_variants(row, recipe)):
            wrong = target[: choice.position] + [choice.wrong] + target[choice.position + 1 :]
            assert tokenizer.decode(wrong) == variant
        assert f"<type>{swapped_to[chart_type]}</type>" in choice_variants(row, recipe)[0][1]
        assert "</think><answer>" in choice_variants(row, recipe)[1][1]
    # A swap to a type the tokenizer spells in several tokens cannot be one token's choice.
    multi = TinyRecipe(swapped_type_share=0.7, chart_types=("bar", "stacked area"), short_targets=True)
    with pytest.raises(ValueError, match="not one token"):
        target_tokens(make_synthetic_example("bar", "max", random.Random(0)), multi, tokenizer)
    ideal_row = make_synthetic_example("bar", "sum", random.Random(3))
    assert warm_start_target(ideal_row, TINY_RECIPES["tiny"]).count("<step-") >= 1
    assert target_tokens(ideal_row, TINY_RECIPES["tiny"], tokenizer)[1] == []


def _measured(right_by_type, greedy_right=False):
    """Hand-made measurements: two charts per type, each choice's right option at the given probability."""
    return [
        {"reward": reward, "chart_type": kind, "right": right, "wrong": 1 - right, "greedy_right": greedy_right}
        for reward in ("chart_type", "format")
        for kind, right in right_by_type.items()
        for _ in range(2)
    ]


def test_starting_point_problems_name_what_leaves_nothing_to_learn():
    good = starting_point.summarize_choices(_measured({"bar": 0.3, "line": 0.3, "pie": 0.3}))
    assert good["chart_type"]["all"] == {"charts": 6, "greedy_right": 0.0, "sampled_right": 0.3, "sampled_wrong": 0.7}
    assert starting_point.starting_point_problems(good) == []
    # The first tiny-learn build on matplotlib 3.11.2: line and pie charts greedily named right.
    measured = [
        {"reward": "chart_type", "chart_type": kind, "right": right, "wrong": 0.3, "greedy_right": right > 0.4}
        for kind, right in (("bar", 0.21), ("line", 0.41), ("pie", 0.58))
    ]
    problems = starting_point.starting_point_problems(starting_point.summarize_choices(measured))
    assert problems == [
        "chart_type on line charts: greedy decoding is already right on 100% of 1 charts (at most 10%): no room to learn.",
        "chart_type on pie charts: greedy decoding is already right on 100% of 1 charts (at most 10%): no room to learn.",
    ]
    silent = starting_point.summarize_choices(_measured({"bar": 0.3, "line": 0.05, "pie": 0.3}))
    assert [p.split(":")[0] for p in starting_point.starting_point_problems(silent)] == [
        "chart_type on line charts",
        "format on line charts",
    ]


def _fake_build(monkeypatch, measurements):
    """teach_choices with its training and measuring replaced: ``measurements`` are handed out in turn."""
    from chartrvr_nb import warm_start

    trained = []

    def fake_warm_start(model, examples, pad_id, seed, steps, with_choices=False):
        trained.append((steps, with_choices, seed))
        return {"steps": steps, "first_loss": 1.0, "last_loss": 0.1, "seconds": 0.0}

    handed = iter(measurements)
    monkeypatch.setattr(warm_start, "warm_start", fake_warm_start)
    monkeypatch.setattr(starting_point, "measure_choices", lambda *args: next(handed))
    processor = type("Processor", (), {"tokenizer": type("Tokenizer", (), {"pad_token_id": 0})()})()
    return trained, lambda: starting_point.teach_choices(None, processor, [], [], None, seed=5)


def test_the_build_trains_further_until_its_starting_point_holds(monkeypatch):
    from chartrvr_nb.warm_start import WARM_START_STEPS

    learnt, unsure = (
        _measured({"bar": 1.0, "line": 1.0, "pie": 1.0}, True),
        _measured({"bar": 0.8, "line": 1.0, "pie": 1.0}),
    )
    too_even = _measured({"bar": 0.6, "line": 0.3, "pie": 0.3}, True)
    odds = _measured({"bar": 0.3, "line": 0.3, "pie": 0.3})
    trained, teach = _fake_build(monkeypatch, [unsure, learnt, too_even, odds])
    report = teach()
    # One more round of the ideal answers (bar charts at 0.8), then the odds twice (bar greedily right).
    assert trained == [(WARM_START_STEPS // 2, False, 6), (starting_point.CHOICE_STEPS, True, 7)] + [
        (starting_point.CHOICE_STEPS, True, 8)
    ]
    assert [r["phase"] for r in report["rounds"]] == ["ideal", "odds", "odds"]
    assert report["learnt"]["chart_type"]["bar"]["sampled_right"] == 1.0
    assert report["starting_point"]["chart_type"]["all"]["sampled_right"] == 0.3


def test_the_build_fails_loudly_with_what_it_measured(monkeypatch):
    learnt = _measured({"bar": 1.0, "line": 1.0, "pie": 1.0}, True)
    right_already = _measured({"bar": 0.6, "line": 0.6, "pie": 0.6}, True)
    trained, teach = _fake_build(monkeypatch, [learnt] + [right_already] * (starting_point.EXTRA_ROUNDS + 1))
    with pytest.raises(RuntimeError) as error:
        teach()
    message = str(error.value)
    assert message.startswith("The tiny-learn warm start left GRPO nothing to learn after 3 training round(s)")
    assert "chart_type on bar charts: greedy decoding is already right on 100% of 2 charts" in message
    assert "greedy right 100% (bar 100%, line 100%, pie 100%), sampled right 0.60" in message
    assert "matplotlib " in message and "\n" not in message
    never_learnt = [_measured({"bar": 0.5, "line": 1.0, "pie": 1.0})] * (starting_point.EXTRA_ROUNDS + 1)
    trained, teach = _fake_build(monkeypatch, never_learnt)
    with pytest.raises(RuntimeError, match="did not learn the ideal answers .* probability 0.50"):
        teach()
    assert len(trained) == starting_point.EXTRA_ROUNDS and not any(with_choices for _, with_choices, _ in trained)


def test_the_tiny_learn_build_checked_its_starting_point(tiny_learn_dir):
    info = json.loads((tiny_learn_dir / "build_info.json").read_text())
    choices = info["warm_start"]["choices"]
    assert choices["validation_charts"] == starting_point.VALIDATION_CHARTS
    assert set(info["libraries"]) == {"torch", "transformers", "matplotlib"}
    for reward in ("chart_type", "format"):
        for kind in ("bar", "line", "pie"):
            learnt, start = choices["learnt"][reward][kind], choices["starting_point"][reward][kind]
            assert learnt["sampled_right"] >= starting_point.MIN_LEARNT_RIGHT
            # The odds taught are 0.3 for the right option: greedy decoding starts on the wrong side.
            assert start["greedy_right"] <= starting_point.MAX_GREEDY_RIGHT
            assert 0.2 <= start["sampled_right"] <= 0.4 and start["sampled_wrong"] >= 0.55, (reward, kind, start)


# --------------------------------------------------------------------------------------------
# Every reward in evaluation
# --------------------------------------------------------------------------------------------


def test_reward_summary_scores_rows_with_ground_truth_only():
    table = {"columns": ["Year", "Sales"], "rows": [["2020", "3"]]}
    good = (
        '<think>\n<type>bar</type>\n<table>{"columns": ["Year", "Sales"], "rows": [["2020", "3"]]}</table>\n'
        "<step-1>: Read 2020.\n</think>\n<answer>3</answer>"
    )
    records = [
        {"reply": good, "answer": "3", "meta": {"chart_type": "bar", "table": table, "reasoning": ""}},
        {
            "reply": good.replace("</think>\n", "</think> "),
            "answer": "4",
            "meta": {"chart_type": "pie", "table": table, "reasoning": ""},
        },
        {"reply": good, "answer": "3", "meta": {}},  # a hub benchmark's row: no ground truth
    ]
    scores = reward_scores(records)
    assert scores[2] == {} and set(scores[0]) == set(REWARDS)
    assert (scores[0]["format"], scores[0]["chart_type"], scores[0]["accuracy"]) == (2.0, 1.0, 1.0)
    assert (scores[1]["format"], scores[1]["chart_type"], scores[1]["accuracy"]) == (0.0, 0.0, 0.0)
    assert scores[0]["table_style"] > scores[1]["table_style"] - 1e-9 and scores[0]["table_style"] >= 1.75
    summary = reward_summary(records)
    assert summary["reward_examples"] == 2 and summary["format_valid_rate"] == 50.0
    assert summary["rewards"]["chart_type"] == 0.5
    assert summary["total_reward"] == pytest.approx((sum(scores[0].values()) + sum(scores[1].values())) / 2)
    assert reward_summary(records[2:]) == {}


# --------------------------------------------------------------------------------------------
# The shortened check, end to end, and the command line
# --------------------------------------------------------------------------------------------


SHORT_CHARTS = 30  # 10 held-out charts per chart type
SHORT_ROWS = 120  # 120 prompts x 4 completions / (batch 4 x grad_accum 2) = 60 GRPO steps, one epoch


@pytest.fixture(scope="module")
def tiny_learn_dir():
    from chartrvr_nb.tiny import build_tiny_model

    return build_tiny_model(name="tiny-learn")


@pytest.fixture(scope="module")
def short_check(tmp_path_factory, tiny_learn_dir):
    out = tmp_path_factory.mktemp("learn-check")
    report = run_learn_check(out, seed=7, held_out=SHORT_CHARTS, progress=False, subset_size=SHORT_ROWS)
    return report, out


def test_short_check_learns_and_writes_the_report_and_figure(short_check):
    report, out = short_check
    written = json.loads((out / learncheck.REPORT_FILE).read_text())
    assert written == json.loads(json.dumps(report))
    assert written["held_out_examples"] == SHORT_CHARTS and written["train_steps"] == 60 and written["seed"] == 7
    assert set(written["metrics"]) == {"total_reward", *REWARDS}
    for name, row in written["metrics"].items():
        low, high = row["ci95"]
        assert low <= row["after"] - row["before"] + 1e-9 and row["after"] - row["before"] <= high + 1e-9, name
    # The starting point was measured on the held-out charts and leaves both choices to learn.
    assert written["starting_point_problems"] == []
    for reward in ("chart_type", "format"):
        assert written["starting_point"][reward]["all"]["charts"] == SHORT_CHARTS
        assert written["starting_point"][reward]["all"]["greedy_right"] <= starting_point.MAX_GREEDY_RIGHT
    # GRPO raised both, the chart type on every chart type: 60 steps are enough here.
    assert written["metrics"]["format"]["ci95"][0] > 1.0
    for kind in ("bar", "line", "pie"):
        assert written["metrics_by_chart_type"][kind]["chart_type"]["ci95"][0] > 0, kind
    assert written["learned"] is True and written["verdict"] == "LEARNED"
    # 30 held-out charts, not 200: the printed line calls it a smoke check, the full check would say LEARNED.
    assert format_report(written).splitlines()[-1].startswith("SHORTENED CHECK, not a verdict")
    assert format_report({**written, "held_out_examples": 200}).splitlines()[-1].startswith("LEARNED: ")
    assert (out / learncheck.FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Training went through train(): its run folder holds the adapter and the per-step reward log.
    assert (out / "run" / "adapter" / "adapter_config.json").is_file()
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) >= 60


def test_short_check_says_where_its_files_are_and_that_it_is_no_verdict(short_check):
    report, out = short_check
    assert report["files"] == {"report": str(out / learncheck.REPORT_FILE), "figure": str(out / learncheck.FIGURE_FILE)}
    lines = learncheck.format_report(report).splitlines()
    assert lines[-2] == f"Report: {out / learncheck.REPORT_FILE}; figure: {out / learncheck.FIGURE_FILE}"
    assert lines[-1].startswith("SHORTENED CHECK, not a verdict (a smoke check of the pipeline; the proof is 200")
    assert "NOT LEARNED" not in lines[-1] and f"{SHORT_CHARTS} held-out charts, 60 GRPO steps" in lines[-1]


def test_the_same_check_asked_again_is_shown_not_rerun(short_check, monkeypatch, capsys):
    report, out = short_check

    def no_training(*args, **kwargs):
        raise AssertionError("the check trained again")

    monkeypatch.setattr("chartrvr_nb.train.train", no_training)
    started = time.monotonic()
    again = run_learn_check(out, seed=7, held_out=SHORT_CHARTS, progress=False, subset_size=SHORT_ROWS, reuse=True)
    assert again == json.loads(json.dumps(report)) and time.monotonic() - started < 5
    assert f"The learn-check with these settings is already in {out}: shown, not re-run" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="trained again"):  # other settings: a new check
        run_learn_check(out, seed=7, held_out=SHORT_CHARTS, max_steps=1, progress=False, subset_size=8, reuse=True)


def test_evaluation_summaries_report_every_reward(short_check):
    _, out = short_check
    for phase in ("before", "after"):
        summary = json.loads((out / phase / "summary.json").read_text())
        assert summary["benchmark"] == "learn-check" and summary["reward_examples"] == SHORT_CHARTS
        assert set(summary["rewards"]) == set(REWARDS) and 0 <= summary["format_valid_rate"] <= 100
        predictions = [json.loads(line) for line in (out / phase / "predictions.jsonl").read_text().splitlines()]
        assert {p["meta"]["chart_type"] for p in predictions} <= set(synthetic_chart_types(HELD_OUT.source))


def test_a_chart_type_reward_that_ignores_the_chart_is_not_learned(monkeypatch, tmp_path, tiny_learn_dir):
    # Broken on purpose: training's chart-type reward pays "bar" whatever the chart (evaluation still
    # scores with the real one). Everything else is the short check above, which learns.
    from chartrvr_nb import trainer

    def chart_type_reward(completions, chart_type=None, log_extra=None, **kwargs):
        return [float(rewards.read_type(completion_text(completion)) == "bar") for completion in completions]

    def training_rewards(names=None):
        return [chart_type_reward if f is rewards.chart_type_reward else f for f in rewards.get_rewards(names)]

    monkeypatch.setattr(trainer, "get_rewards", training_rewards)
    report = run_learn_check(tmp_path, seed=7, held_out=SHORT_CHARTS, progress=False, subset_size=SHORT_ROWS)
    assert report["starting_point_problems"] == [] and report["train_steps"] == 60
    assert report["verdict"] == "NOT LEARNED" and not report["learned"]
    # It still learnt what it was paid for: the format, and "bar", right on the bar charts only.
    assert report["metrics"]["total_reward"]["gain"] >= MIN_TOTAL_GAIN
    assert report["metrics"]["format"]["ci95"][0] > 1.0
    by_type = report["metrics_by_chart_type"]
    assert by_type["bar"]["chart_type"]["ci95"][0] > 0
    assert by_type["line"]["chart_type"]["ci95"][0] <= 0 and by_type["pie"]["chart_type"]["ci95"][0] <= 0
    assert format_report({**report, "held_out_examples": 200}).splitlines()[-1].startswith("NOT LEARNED: ")


def test_a_start_with_nothing_to_learn_is_vacuous_and_not_trained(tmp_path, tiny_model_dir):
    # The default tiny model was taught the ideal answers only: it names each chart's type and writes
    # the newline already, so GRPO could not show it learns either.
    report = run_learn_check(tmp_path, seed=7, held_out=6, progress=False, model="tiny")
    assert report["verdict"] == "VACUOUS START" and report["learned"] is False
    assert report["starting_point"]["format"]["all"]["greedy_right"] == 1.0
    assert any(
        problem.startswith("format on bar charts: greedy decoding is already right on 100%")
        for problem in report["starting_point_problems"]
    )
    assert report["metrics"] is None and report["train_steps"] == 0
    assert not (tmp_path / "run").exists() and not (tmp_path / "after").exists()
    assert not (tmp_path / learncheck.FIGURE_FILE).exists()
    assert json.loads((tmp_path / learncheck.REPORT_FILE).read_text())["verdict"] == "VACUOUS START"
    lines = format_report(report).splitlines()
    assert lines[0] == "starting point on the held-out charts (before training):"
    assert lines[-1].startswith("VACUOUS START: ") and "so it was not trained" in lines[-1]
    assert "format on bar charts: greedy decoding is already right on 100% of 2 charts" in lines[-1]


def _report(learned_flag):
    row = {"before": 1.0, "after": 2.0, "gain": 1.0, "ci95": [0.5, 1.5]}
    return {
        "metrics": {"total_reward": row, **{name: row for name in REWARDS}},
        "learned": learned_flag,
        "seed": 3,
        "held_out_examples": 200,
        "train_steps": 200,
        "seconds": {"total": 100.0},
    }


@pytest.mark.parametrize(
    "learned_flag, problems, code, verdict",
    [
        (True, [], 0, "LEARNED:"),
        (False, [], 1, "NOT LEARNED:"),
        (False, ["format on bar charts: ..."], 3, "VACUOUS START:"),
    ],
)
def test_cli_exit_code_and_last_line_follow_the_verdict(
    monkeypatch, capsys, tmp_path, learned_flag, problems, code, verdict
):
    calls = []

    def fake_check(output_dir, **kwargs):
        calls.append((output_dir, kwargs))
        return _report(learned_flag) | {"starting_point_problems": problems, "model": "tiny-learn"}

    monkeypatch.setattr(learncheck, "run_learn_check", fake_check)
    assert cli.main(["learn-check", "--output-dir", str(tmp_path), "--seed", "3"]) == code
    assert calls == [(str(tmp_path), {"seed": 3, "held_out": 200, "max_steps": None})]
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(verdict)


def test_cli_does_not_fail_a_shortened_check(monkeypatch, capsys):
    report = {**_report(False), "held_out_examples": 4, "settings": {"max_steps": 2}}
    monkeypatch.setattr(learncheck, "run_learn_check", lambda output_dir, **kwargs: report)
    assert cli.main(["learn-check", "--held-out", "4", "--max-steps", "2"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("SHORTENED CHECK, not a verdict")


def test_cli_refuses_no_held_out_charts_in_its_own_words(capsys):
    assert cli.main(["learn-check", "--held-out", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --held-out must be at least 1 (the held-out charts evaluated before and after), got 0."
    )


def test_cli_refuses_the_held_out_seed(capsys):
    assert cli.main(["learn-check", "--seed", str(HELD_OUT.synthetic_seed)]) == 2
    assert "seed of the held-out charts" in capsys.readouterr().err
