"""Tracking, the calm console and the run root, on real tiny GRPO runs through the command line.

Each test trains the tiny model for one or two optimizer steps in a fresh process started from
another folder than the run root, so it also checks that relative run paths land under
``$CHARTRVR_NB_RUN_ROOT`` and not in the working directory.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from chartrvr_nb.rewards import REWARDS
from chartrvr_nb.runfiles import load_metrics, load_samples

# 2 prompts per step (batch 2 x grad_accum 2 / 2 generations); short completions keep it quick.
TINY = ["--preset", "smoke", "--max-completion-length", "32", "--output-dir", "runs/t"]


def grpo(root: Path, *flags: str) -> str:
    """Run ``python -m chartrvr_nb grpo`` with ``root`` as the run root; its stdout + stderr."""
    elsewhere = root / "elsewhere"
    elsewhere.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "CHARTRVR_NB_RUN_ROOT": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    environment.pop("WANDB_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "chartrvr_nb", "grpo", *TINY, *flags],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert not any(elsewhere.iterdir()), "a relative run path landed in the working directory"
    return output


def test_tensorboard_holds_a_curve_per_reward_and_the_console_stays_calm(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = grpo(tmp_path, "--subset-size", "4", "--report-to", "tensorboard")
    run = tmp_path / "runs" / "t"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for name in REWARDS:
        curve = events.Scalars(f"train/rewards/{name}_reward/mean")
        assert [point.step for point in curve] == [1, 2]
    assert "preset" in " ".join(events.Tags()["tensors"])  # the preset, as text beside the arguments
    # One compact line per step; TRL's dict and the gradient-checkpointing FutureWarnings are gone.
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip().startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 1/2", "step 2/2"]
    assert all(f"{name} " in lines[0] for name in REWARDS) and "s/step | ETA" in lines[0]
    assert "{'loss'" not in output and "gradient_checkpointing" not in output
    assert "kernels-community" not in output  # bitsandbytes' note about an optional package
    assert len(load_metrics(run)[0]) > 30  # the full dict still goes to metrics.jsonl
    assert f"tensorboard --logdir {run / 'tensorboard'}" in output


def test_wandb_offline_writes_its_run_and_says_how_to_sync_it(tmp_path, tiny_model_dir):
    output = grpo(tmp_path, "--subset-size", "2", "--report-to", "wandb", "--verbose")
    offline = list((tmp_path / "runs" / "t" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("run-*.wandb")), "no offline W&B run in the run folder"
    assert f"wandb sync {offline[0]}" in output
    # W&B's binary log holds the preset (as JSON in its config) and the per-reward curves.
    logged = next(offline[0].glob("run-*.wandb")).read_bytes()
    assert b'"sample_every"' in logged and b"rewards/accuracy_reward/mean" in logged
    assert "'rewards/format_reward/mean'" in output  # --verbose: TRL's raw dict


def test_trackio_keeps_its_database_in_the_run_folder(tmp_path, tiny_model_dir):
    grpo(tmp_path, "--subset-size", "2", "--report-to", "trackio")
    database = tmp_path / "runs" / "t" / "trackio" / "chartrvr-nb.db"
    with sqlite3.connect(database) as connection:
        logged = " ".join(
            row[0].decode() if isinstance(row[0], bytes) else row[0]
            for row in connection.execute("select metrics from metrics")
        )
        config = json.loads(connection.execute("select config from configs").fetchone()[0])
    assert "rewards/accuracy_reward/mean" in logged
    assert config["preset"]["name"] == "smoke"


def test_samples_keep_group_advantage_and_what_the_rewards_compared(tmp_path, tiny_model_dir):
    grpo(tmp_path, "--subset-size", "4", "--sample-every", "1")
    samples = load_samples(tmp_path / "runs" / "t")
    assert sorted({s["step"] for s in samples}) == [0, 1]
    for step in (0, 1):
        rows = [s for s in samples if s["step"] == step]
        assert [s["group"] for s in rows] == [0, 0, 1, 1]  # 2 prompts x 2 generations
        for group in (0, 1):
            members = [s for s in rows if s["group"] == group]
            assert len({s["row_id"] for s in members}) == 1 and len({s["query"] for s in members}) == 1
            totals = [sum(s["rewards"].values()) for s in members]
            # GRPO's advantage: the total minus the group mean, over the group std (0 when all equal).
            assert sum(s["advantage"] for s in members) == pytest.approx(0, abs=1e-3)
            assert (members[0]["advantage"] > members[1]["advantage"]) == (totals[0] > totals[1])
        assert all(set(s["table"]) == {"columns", "rows"} and s["reasoning"].startswith("<step-1>") for s in rows)
