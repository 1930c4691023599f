"""Run health: each rule fires on a hand-made metrics file of its broken case and stays quiet on a healthy one;
a real smoke run warns of nothing, live or in ``doctor``; a hand-broken run makes ``doctor`` exit 1; a run
whose completions all hit the length limit warns once, live.

The healthy records are what the smoke preset's tiny model logs (measured: format 0.5-2.0, total reward
2.5-6.8, no group without spread, no clipped completion, mean length 90-121 tokens, 0.5-0.7 s per step).
"""

import json
import logging
import math
import shutil

import pytest

from chartrvr_nb.cli import main
from chartrvr_nb.doctor import doctor
from chartrvr_nb.health import (
    ALL_ZERO_LOGGED,
    FORMAT_PATIENCE_STEPS,
    HealthWatch,
    RunFacts,
    check_run,
)
from chartrvr_nb.presets import get_preset
from chartrvr_nb.train import train

FACTS = RunFacts(max_steps=16, max_completion_length=160, num_generations=2)


def healthy(steps: int, **overrides) -> list[dict]:
    """Records as the smoke run logs them, each key overridable by a value or a function of the step."""
    records = []
    for step in range(1, steps + 1):
        record = {
            "step": step,
            "loss": 0.01,
            "grad_norm": 0.25,
            "reward": 4.5,
            "rewards/format_reward/mean": 1.5,
            "frac_reward_zero_std": 0.0,
            "completions/clipped_ratio": 0.0,
            "completions/mean_length": 105.0,
            "step_time": 0.6,
            "epoch": step / 16,
        }
        for key, value in overrides.items():
            record[key] = value(step) if callable(value) else value
        records.append(record)
    return records


def statuses(records, facts=FACTS) -> dict[str, str]:
    return {verdict.check: verdict.status for verdict in check_run(records, facts)}


def warned(records, facts=FACTS) -> list[str]:
    return [check for check, status in statuses(records, facts).items() if status == "warn"]


def test_a_healthy_log_passes_every_check():
    assert set(statuses(healthy(16)).values()) == {"ok"}


@pytest.mark.parametrize(
    "records, check",
    [
        (healthy(FORMAT_PATIENCE_STEPS + 20, **{"rewards/format_reward/mean": 0.0}), "format"),
        # in format early on, then never again for the last FORMAT_PATIENCE_STEPS steps
        (healthy(250, **{"rewards/format_reward/mean": lambda s: 2.0 if s < 100 else 0.0}), "format"),
        (healthy(ALL_ZERO_LOGGED, reward=0.0), "rewards"),
        (healthy(30, reward=lambda s: 0.0 if s > 30 - ALL_ZERO_LOGGED else 3.0), "rewards"),
        (healthy(20, frac_reward_zero_std=0.75), "spread"),
        (healthy(20, **{"completions/clipped_ratio": 0.9}), "clipped"),
        (healthy(40, **{"completions/mean_length": lambda s: 120.0 if s <= 20 else 12.0}), "length"),
        (healthy(16, grad_norm=lambda s: math.nan if s == 9 else 0.3), "finite"),
        (healthy(16, reward=lambda s: None if s == 4 else 4.0), "finite"),
    ],
)
def test_each_broken_case_warns_its_own_check_and_only_it(records, check):
    assert warned(records) == [check]


def test_judgement_waits_for_enough_steps_and_tolerates_what_is_normal():
    assert statuses(healthy(FORMAT_PATIENCE_STEPS - 1, **{"rewards/format_reward/mean": 0.0}))["format"] == "wait"
    assert statuses(healthy(ALL_ZERO_LOGGED - 1, reward=0.0))["rewards"] == "wait"
    assert statuses(healthy(4, frac_reward_zero_std=1.0))["spread"] == "wait"
    assert statuses(healthy(20, frac_reward_zero_std=0.5))["spread"] == "ok"  # half is not most
    # Rambling cut-off completions that become concise ones are a healthy shrink, not a collapse.
    shrink = healthy(40, **{"completions/mean_length": lambda s: 768.0 if s <= 20 else 150.0})
    assert statuses(shrink)["length"] == "ok"


def test_a_run_longer_than_a_colab_session_warns_only_in_colab_without_drive():
    records = healthy(10, step_time=60.0)  # 9,990 steps left at 60 s: about 6.9 days
    colab = RunFacts(max_steps=10_000, in_colab=True)
    assert warned(records, colab) == ["session"]
    verdict = next(v for v in check_run(records, colab) if v.check == "session")
    assert "about 6.9 days of training left (60 s/step)" in verdict.message and "--drive-dir" in verdict.message
    assert warned(records, RunFacts(max_steps=10_000, in_colab=True, drive=True)) == []
    assert warned(records, RunFacts(max_steps=10_000, in_colab=False)) == []
    assert warned(records, RunFacts(max_steps=20, in_colab=True)) == []  # 10 minutes left


def test_the_live_watch_warns_once_per_condition():
    watch = HealthWatch(FACTS)
    seen = [watch.update(record) for record in healthy(30, frac_reward_zero_std=lambda s: 1.0 if s > 8 else 0.0)]
    first = [(index + 1, [v.check for v in verdicts]) for index, verdicts in enumerate(seen) if verdicts]
    assert first == [(17, ["spread"])]  # from step 9 on no spread: 8 of 16 steps is half, 9 of 17 is most
    assert watch.update({"step": 31, "train_runtime": 9.0}) == []  # the end-of-training summary is no step


# --------------------------------------------------------------------------------------------
# Real runs of the tiny model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_model_dir):
    """The smoke preset as a user runs it (16 steps), with the live checks' warnings recorded."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("chartrvr_nb.callbacks")
    logger.addHandler(handler)
    try:
        result = train(get_preset("smoke"), output_dir=tmp_path_factory.mktemp("smoke") / "run")
    finally:
        logger.removeHandler(handler)
    return result, [r.getMessage() for r in records if r.levelno >= logging.WARNING]


def test_a_clean_smoke_run_warns_of_nothing_live_or_in_doctor(smoke_run, capsys):
    result, live_warnings = smoke_run
    assert result.global_step == 16
    assert live_warnings == []
    report, passed = doctor(result.output_dir)
    assert passed, report
    assert main(["doctor", str(result.output_dir)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert out.splitlines()[0] == f"Run health of {result.output_dir} (preset smoke, step 16 of 16)"
    assert [line.split()[:2] for line in out.splitlines()[1:-1]] == [
        ["ok", check] for check in ("finite", "format", "rewards", "spread", "clipped", "length", "session", "samples")
    ]
    assert out.splitlines()[-1] == "Every check passes."


def test_doctor_exits_1_on_a_hand_broken_run(smoke_run, tmp_path, capsys):
    result, _ = smoke_run
    broken = tmp_path / "broken"
    shutil.copytree(result.output_dir, broken)
    # Every group without spread and most completions cut off, in the metrics; no sampled completion scored.
    metrics = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        if "reward" in record:
            record.update({"frac_reward_zero_std": 1.0, "completions/clipped_ratio": 0.9})
    (broken / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    samples = [json.loads(line) for line in (broken / "samples.jsonl").read_text().splitlines()]
    for sample in samples:
        sample["rewards"] = dict.fromkeys(sample["rewards"], 0.0)
    (broken / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))

    assert main(["doctor", str(broken)]) == 1
    out = capsys.readouterr().out
    print(out)
    warns = [line.split()[1] for line in out.splitlines() if line.startswith("  WARN")]
    assert warns == ["spread", "clipped", "samples"]
    assert "100% of prompt groups gave every completion the same reward" in out
    assert "90% of completions stopped at the length limit (160 tokens)" in out
    assert out.splitlines()[-1] == "3 checks warn: see above."


def test_doctor_on_a_folder_that_is_not_a_run_says_so(tmp_path, capsys):
    assert main(["doctor", str(tmp_path)]) == 2
    assert "No metrics.jsonl" in capsys.readouterr().err


def test_completions_at_the_length_limit_warn_once_during_training(tmp_path, tiny_model_dir, caplog):
    # 12 prompts x 2 / 4 = 6 steps; 8 tokens cut every completion.
    preset = get_preset("smoke", subset_size=12, max_completion_length=8, save_steps=100)
    with caplog.at_level(logging.WARNING, logger="chartrvr_nb.callbacks"):
        train(preset, output_dir=tmp_path / "run")
    health = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Run health")]
    clipped = [message for message in health if "(clipped)" in message]
    assert len(clipped) == 1 and clipped[0].startswith("Run health, step 5 (clipped): 100% of completions stopped")
    assert len(health) == len({message.split(":")[0].split("(")[1] for message in health})  # once per condition
