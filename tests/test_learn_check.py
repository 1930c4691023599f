"""The learn-check: the verdict and the bootstrap on fixed data, held-out charts that training never
sees, and a shortened check (a few GRPO steps, a few held-out charts) run end to end.

The full check (200 charts, 200 steps, a few minutes) is not a test: it is
``python -m chartrvr_nb learn-check``, which exits 1 when learning is not shown.
"""

import json
import random
import time

import pytest

from chartrvr_nb import cli, learncheck
from chartrvr_nb.benchmarks import BENCHMARKS
from chartrvr_nb.data import make_synthetic_rows, synthetic_chart_types
from chartrvr_nb.eval_rewards import reward_scores, reward_summary
from chartrvr_nb.learncheck import MIN_TOTAL_GAIN, compare_rewards, learned, run_learn_check
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
    assert not seen & {_key(row) for row in held_out}
    assert HELD_OUT.synthetic_seed not in (PRESET.seed, 1, 2, 3, tiny.TINY_SEED + 1)
    with pytest.raises(ValueError, match="seed of the held-out charts"):
        run_learn_check(seed=HELD_OUT.synthetic_seed)


def test_warm_start_training_and_held_out_charts_share_their_chart_types():
    from chartrvr_nb.warm_start import TINY_RECIPES

    recipe = TINY_RECIPES[PRESET.model]
    assert synthetic_chart_types(PRESET.train_data) == synthetic_chart_types(HELD_OUT.source) == recipe.chart_types


def test_tiny_learn_warm_start_leaves_the_type_and_the_newline_to_learn():
    from chartrvr_nb.synthetic import make_synthetic_example
    from chartrvr_nb.warm_start import TINY_RECIPES, synthetic_examples, warm_start_target

    recipe = TINY_RECIPES["tiny-learn"]
    rng, rows = random.Random(0), synthetic_examples(300, 5, recipe.chart_types)
    targets = [warm_start_target(row, recipe, rng) for row in rows]
    own_type = [f"<type>{row['chart_type']}</type>" in target for row, target in zip(rows, targets)]
    valid = [f"</think>\n<answer>{row['label']}</answer>" in target for row, target in zip(rows, targets)]
    # Both choices are a minority (about 40%), so greedy decoding starts on the wrong side.
    assert 0.3 < sum(own_type) / len(rows) < 0.5 and 0.3 < sum(valid) / len(rows) < 0.5
    types = recipe.chart_types
    for row, target, own in zip(rows, targets, own_type):
        swapped = types[(types.index(row["chart_type"]) + 1) % len(types)]
        assert own or f"<type>{swapped}</type>" in target
    ideal = make_synthetic_example("bar", "sum", random.Random(3))
    assert warm_start_target(ideal, TINY_RECIPES["tiny"], random.Random(0)).count("<step-") >= 1


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


@pytest.fixture(scope="module")
def short_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn-check")
    # 8 prompts x 4 generations / (batch 4 x grad_accum 2) = 4 steps, stopped after 2.
    report = run_learn_check(out, seed=7, held_out=4, max_steps=2, progress=False, subset_size=8)
    return report, out


def test_short_check_writes_the_report_and_figure(short_check):
    report, out = short_check
    written = json.loads((out / learncheck.REPORT_FILE).read_text())
    assert written == json.loads(json.dumps(report))
    assert written["held_out_examples"] == 4 and written["train_steps"] == 2 and written["seed"] == 7
    assert set(written["metrics"]) == {"total_reward", *REWARDS}
    for name, row in written["metrics"].items():
        low, high = row["ci95"]
        assert low <= row["after"] - row["before"] + 1e-9 and row["after"] - row["before"] <= high + 1e-9, name
    assert written["learned"] is learned(written["metrics"])
    assert (out / learncheck.FIGURE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Training went through train(): its run folder holds the adapter and the per-step reward log.
    assert (out / "run" / "adapter" / "adapter_config.json").is_file()
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) >= 2


def test_short_check_says_where_its_files_are_and_that_it_is_no_verdict(short_check):
    report, out = short_check
    assert report["files"] == {"report": str(out / learncheck.REPORT_FILE), "figure": str(out / learncheck.FIGURE_FILE)}
    lines = learncheck.format_report(report).splitlines()
    assert lines[-2] == f"Report: {out / learncheck.REPORT_FILE}; figure: {out / learncheck.FIGURE_FILE}"
    assert lines[-1].startswith("SHORTENED CHECK, not a verdict (a smoke check of the pipeline; the proof is 200")
    assert "NOT LEARNED" not in lines[-1] and "4 held-out charts, 2 GRPO steps" in lines[-1]


def test_the_same_check_asked_again_is_shown_not_rerun(short_check, monkeypatch, capsys):
    report, out = short_check

    def no_training(*args, **kwargs):
        raise AssertionError("the check trained again")

    monkeypatch.setattr("chartrvr_nb.train.train", no_training)
    started = time.monotonic()
    again = run_learn_check(out, seed=7, held_out=4, max_steps=2, progress=False, subset_size=8, reuse=True)
    assert again == json.loads(json.dumps(report)) and time.monotonic() - started < 5
    assert f"The learn-check with these settings is already in {out}: shown, not re-run" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="trained again"):  # other settings: a new check
        run_learn_check(out, seed=7, held_out=4, max_steps=1, progress=False, subset_size=8, reuse=True)


def test_evaluation_summaries_report_every_reward(short_check):
    _, out = short_check
    for phase in ("before", "after"):
        summary = json.loads((out / phase / "summary.json").read_text())
        assert summary["benchmark"] == "learn-check" and summary["reward_examples"] == 4
        assert set(summary["rewards"]) == set(REWARDS) and 0 <= summary["format_valid_rate"] <= 100
        predictions = [json.loads(line) for line in (out / phase / "predictions.jsonl").read_text().splitlines()]
        assert {p["meta"]["chart_type"] for p in predictions} <= set(synthetic_chart_types(HELD_OUT.source))


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


@pytest.mark.parametrize("learned_flag, code, verdict", [(True, 0, "LEARNED:"), (False, 1, "NOT LEARNED:")])
def test_cli_exit_code_and_last_line_follow_the_verdict(monkeypatch, capsys, tmp_path, learned_flag, code, verdict):
    calls = []

    def fake_check(output_dir, **kwargs):
        calls.append((output_dir, kwargs))
        return _report(learned_flag)

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
