"""End-to-end GRPO on the tiny model: weights move, checkpoints are written, runs resume.

One short run (4 optimizer steps, a checkpoint every 2) is shared by the tests that only read
its files; the resume tests train for real again.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import OFFLINE, ROOT, run_smoke_grpo, smoke_grpo_command

from chartrvr_nb.checkpoints import complete_checkpoints, newest_complete_checkpoint, saved_weights_problem
from chartrvr_nb.estimate import trainer_steps
from chartrvr_nb.presets import get_preset
from chartrvr_nb.train import train

# 8 prompts x 2 generations / (batch 2 x grad_accum 2) = 4 optimizer steps.
QUICK = dict(subset_size=8, save_steps=2, sample_every=2, max_completion_length=48)


def lora_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("run")
    result = train(get_preset("smoke", **QUICK), output_dir=root / "out", drive_dir=root / "drive")
    return result, root


def test_training_moves_the_lora_weights(run):
    result, _ = run
    assert result.global_step == 4
    trained = lora_tensors(result.weights_dir)
    lora_b = {k: v for k, v in trained.items() if "lora_B" in k}
    assert lora_b, "the adapter has no LoRA B matrices"
    # LoRA B starts at exactly zero, so any non-zero entry was learned.
    assert sum(int(v.abs().sum() > 0) for v in lora_b.values()) > len(lora_b) // 2
    assert any(".visual." in k for k in lora_b), "vision MLPs should carry LoRA too"


def test_checkpoints_metrics_and_samples_are_written(run):
    result, root = run
    steps = [int(p.name.split("-")[1]) for p in complete_checkpoints(result.output_dir)]
    assert steps == [2, 4]
    records = [json.loads(line) for line in result.metrics_file.read_text().splitlines()]
    logged = [r for r in records if "rewards/format_reward/mean" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    for name in ("format", "count", "accuracy", "length", "chart_type", "table_style", "process"):
        assert f"rewards/{name}_reward/mean" in logged[0] and f"rewards/{name}_reward/std" in logged[0]
    assert "frac_reward_zero_std" in logged[0]
    samples = [json.loads(line) for line in result.samples_file.read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 2}
    assert set(samples[0]["rewards"]) == {
        "format_reward",
        "count_reward",
        "accuracy_reward",
        "length_reward",
        "chart_type_reward",
        "table_style_reward",
        "process_reward",
    }
    assert json.loads((result.output_dir / "run_config.json").read_text())["subset_size"] == 8


def test_drive_holds_complete_checkpoints_and_the_adapter(run):
    result, root = run
    drive = root / "drive"
    assert [p.name for p in complete_checkpoints(drive)] == ["checkpoint-2", "checkpoint-4"]
    assert (drive / "adapter" / "adapter_model.safetensors").is_file()
    assert (drive / "metrics.jsonl").read_text() == result.metrics_file.read_text()
    # The final adapter has a manifest, as checkpoints do, here and on Drive, and both verify against it.
    assert (drive / "adapter" / "manifest.json").read_bytes() == (result.weights_dir / "manifest.json").read_bytes()
    assert saved_weights_problem(drive / "adapter") is None and saved_weights_problem(result.weights_dir) is None


def test_reward_curves_render_from_the_real_log(run, tmp_path):
    from chartrvr_nb.plots import plot_reward_curves
    from chartrvr_nb.runfiles import load_metrics

    result, _ = run
    figure = plot_reward_curves(load_metrics(result.output_dir))
    figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert len(figure.axes) >= 8  # total + seven rewards


def test_resume_from_drive_after_the_local_run_is_lost(run, tmp_path):
    import shutil

    result, root = run
    local = tmp_path / "local"
    preset = get_preset("smoke", **QUICK)
    # A fresh runtime: nothing local, the Drive copy of the first run stopped at step 2.
    drive = tmp_path / "drive"
    shutil.copytree(root / "drive", drive)
    shutil.rmtree(drive / "checkpoint-4")
    resumed = train(preset, output_dir=local, drive_dir=drive)
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "checkpoint-2"
    assert resumed.global_step == 4
    assert newest_complete_checkpoint(local).name == "checkpoint-4"
    logged = [json.loads(line)["step"] for line in resumed.metrics_file.read_text().splitlines()]
    assert sorted({s for s in logged if s}) == [1, 2, 3, 4]  # one continuous curve


def test_a_run_directory_refuses_a_different_configuration(run):
    result, _ = run
    with pytest.raises(ValueError, match=r"num_generations: 2 -> 4.*new --output-dir"):
        train(get_preset("smoke", **{**QUICK, "num_generations": 4}), output_dir=result.output_dir)


def test_the_run_records_its_system_prompt_and_resumes_only_with_the_same_text(run, tmp_path):
    import hashlib
    import shutil

    from chartrvr_nb.prompts import SYSTEM_PROMPT

    result, _ = run
    config = json.loads((result.output_dir / "run_config.json").read_text())
    assert config["system_prompt"] == "project" and config["finetune"] == "lora" and config["loss_type"] == "bnpo"
    assert config["system_prompt_sha256"] == hashlib.sha256(SYSTEM_PROMPT.encode("utf-8")).hexdigest()
    copy = tmp_path / "copy"
    shutil.copytree(result.output_dir, copy)
    (copy / "run_config.json").write_text(json.dumps({**config, "system_prompt_sha256": "0" * 64}))
    with pytest.raises(ValueError, match=r"system_prompt_sha256: '0000.*new --output-dir"):
        train(get_preset("smoke", **QUICK), output_dir=copy)


def test_a_run_started_before_the_objective_was_recorded_resumes_only_with_its_own(run, tmp_path):
    """Such a run trained with TRL 1.16's dapo loss and fused AdamW: today's bnpo would change it silently."""
    import shutil

    result, _ = run
    old = tmp_path / "old"
    shutil.copytree(result.output_dir, old)
    config = json.loads((old / "run_config.json").read_text())
    recorded_since = ("system_prompt_sha256", "loss_type", "optim", "system_prompt", "image_resize", "finetune")
    (old / "run_config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in recorded_since}))
    with pytest.raises(ValueError, match=r"loss_type: 'dapo' -> 'bnpo', optim: 'adamw_torch_fused' -> 'adamw_torch'"):
        train(get_preset("smoke", **QUICK), output_dir=old)
    resumed = train(get_preset("smoke", **QUICK, loss_type="dapo", optim="adamw_torch_fused"), output_dir=old)
    assert resumed.resumed_from == old / "checkpoint-4"


def test_a_dataset_without_reward_columns_is_rejected(tmp_path, tiny_model_dir):
    from chartrvr_nb.data import make_synthetic_dataset

    path = tmp_path / "data"
    make_synthetic_dataset(4, seed=1).remove_columns(["table"]).save_to_disk(str(path))
    with pytest.raises(ValueError, match="table"):
        train(get_preset("smoke", train_data=str(path), subset_size=4), output_dir=tmp_path / "out")


def test_the_tiny_models_single_torch_thread_lasts_only_while_it_trains(tmp_path, tiny_model_dir):
    """Loading the tiny model leaves torch's thread count alone; train() runs it on one thread on
    CPU (faster there) and gives the process back its own count."""
    import torch
    from transformers import TrainerCallback

    from chartrvr_nb.models import load_model_and_processor

    class RecordThreads(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(torch.get_num_threads())

    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # the user's own count: neither torch's default nor the tiny model's 1
    try:
        load_model_and_processor("tiny")
        assert torch.get_num_threads() == 3
        preset = get_preset("smoke", subset_size=4, max_completion_length=16, save_steps=10)
        train(preset, output_dir=tmp_path / "out", max_steps=1, callbacks=[RecordThreads()])
        assert torch.get_num_threads() == 3
        assert seen == [3 if torch.cuda.is_available() else 1]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    "preset_name, overrides",
    [
        ("paper", {}),  # 4 generations, 4 epochs
        ("moderate", {}),
        ("fast", {"batch_size": 4}),
        ("smoke", {"num_generations": 4, "generation_batch_size": 8}),
    ],
)
def test_estimator_matches_the_trainers_max_steps(preset_name, overrides, tmp_path, tiny_model_dir):
    from transformers import TrainerCallback

    class Stop(Exception):
        pass

    class RecordAndStop(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen["max_steps"] = state.max_steps
            raise Stop  # the count is known before the first step: no need to train

    base = get_preset(preset_name, **overrides)
    preset = get_preset(
        "smoke",
        subset_size=12,
        num_epochs=base.num_epochs,
        num_generations=base.num_generations,
        batch_size=base.batch_size,
        generation_batch_size=base.generation_batch_size,
    )
    seen = {}
    with pytest.raises(Stop):
        train(preset, output_dir=tmp_path / "out", callbacks=[RecordAndStop()])
    expected = trainer_steps(
        preset.num_samples,
        preset.num_generations,
        preset.batch_size,
        preset.grad_accum,
        preset.num_epochs,
        generation_batch_size=preset.generation_batch_size,
    )
    assert seen["max_steps"] == expected > 0


def test_killed_run_resumes_to_the_same_step_count(tmp_path, tiny_model_dir):
    """kill -9 after the first checkpoint, re-run the same command: it ends at the same step."""
    out = tmp_path / "out"
    flags = ["--output-dir", out, "--subset-size", 8, "--save-steps", 2, "--max-completion-length", 48]
    process = subprocess.Popen(
        smoke_grpo_command(*flags), cwd=ROOT, env=OFFLINE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while newest_complete_checkpoint(out) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert newest_complete_checkpoint(out) is not None, "the first run never wrote a checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait()

    finished = run_smoke_grpo(*flags)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert re.search(r"Resuming from \S*checkpoint-[24]", finished.stdout + finished.stderr)
    assert "Finished 4 optimizer steps." in finished.stdout
    assert newest_complete_checkpoint(out).name == "checkpoint-4"


def test_a_start_that_fails_before_training_leaves_no_trace_and_the_corrected_command_runs(tmp_path):
    """The commands of issue #24: a start that fails (too few rows, then an empty training file) used to
    write run_config.json, and the corrected command was refused as "a different configuration"."""
    out = tmp_path / "runs" / "bad"
    quick = ["--output-dir", out, "--save-steps", "2", "--max-completion-length", "48"]
    too_few = run_smoke_grpo("--subset-size", "1", *quick)
    assert too_few.returncode == 2 and "Traceback" not in too_few.stderr
    assert too_few.stderr.startswith("error: 1 training row does not fill one generation batch of 2 prompts")
    assert not out.exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    no_rows = run_smoke_grpo("--train-data", empty, "--subset-size", "4", *quick)  # fails after the lock and resume
    assert no_rows.returncode == 2 and "Traceback" not in no_rows.stderr
    assert no_rows.stderr.splitlines()[-1].startswith(f"error: {empty} holds no training rows.")
    assert not out.exists()
    corrected = run_smoke_grpo("--subset-size", "8", "--max-steps", "2", *quick)
    assert corrected.returncode == 0, corrected.stderr[-2000:]
    assert "Finished 2 optimizer steps." in corrected.stdout
    assert json.loads((out / "run_config.json").read_text())["subset_size"] == 8


def test_ctrl_c_says_where_the_run_stopped_and_where_the_next_resumes(tmp_path):
    out = tmp_path / "out"
    command = smoke_grpo_command(
        "--output-dir", out, "--subset-size", 16, "--save-steps", 2, "--max-completion-length", 48
    )
    process = subprocess.Popen(
        command, cwd=ROOT, env=OFFLINE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 600
    while newest_complete_checkpoint(out) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    stopped = re.fullmatch(
        r"Stopped at step (\d+); the next run with the same settings resumes from checkpoint-(\d+) in (.+)\.", last
    )
    assert stopped, last
    assert int(stopped[2]) == checkpoint_step_of(newest_complete_checkpoint(out)) <= int(stopped[1])
    assert Path(stopped[3]) == out and not (out / "run.lock").exists()


def checkpoint_step_of(path):
    return int(Path(path).name.split("-")[1])


def test_a_resumed_run_logs_each_step_once_and_a_run_at_its_end_trains_nothing(tmp_path, tiny_model_dir, capsys):
    from collections import Counter

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from chartrvr_nb.runfiles import load_samples

    out = tmp_path / "out"
    preset = get_preset("smoke", **QUICK, report_to="tensorboard")
    train(preset, output_dir=out, max_steps=3)  # checkpoints 2 and 3; samples of steps 0 and 2
    shutil.rmtree(out / "checkpoint-3")  # as if it had been stopped after logging step 3, before saving it
    resumed = train(preset, output_dir=out, max_steps=4)
    assert resumed.resumed_from.name == "checkpoint-2" and resumed.global_step == 4
    # Both processes logged step 2's samples; only the resumed one's block counts: 2 groups of 2.
    again = [row for row in load_samples(out) if row["step"] == 2]
    assert len(again) == 4 and Counter(row["group"] for row in again) == {0: 2, 1: 2}
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/reward")] == [1, 2, 3, 4]  # step 3 once
    card = (out / "README.md").read_text()
    assert "[None]" not in card and "offline tiny Qwen2.5-VL" in card and f"--adapter {out}" in card

    files = sorted(path.name for path in out.iterdir())
    metrics = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    past = train(preset, output_dir=out, max_steps=3)  # re-running a notebook with a smaller max_steps
    assert past.global_step == 4 and past.weights_dir == out / "adapter"
    assert "The run is at step 4 (checkpoint-4), --max-steps 3: nothing to train." in capsys.readouterr().out
    finished = train(preset, output_dir=out)  # the preset's 4 steps are done
    assert finished.global_step == 4
    assert "The run has finished: step 4 of 4 (checkpoint-4); nothing to train." in capsys.readouterr().out
    assert sorted(path.name for path in out.iterdir()) == files and (out / "metrics.jsonl").read_text() == metrics


def test_loading_a_trained_adapter_shows_no_library_deprecation_warning(run):
    result, _ = run
    code = (
        "import chartrvr_nb, sys\n"
        "from peft import PeftModel\n"
        "from chartrvr_nb.models import load_model_and_processor\n"
        "model, _ = load_model_and_processor('tiny')\n"
        "PeftModel.from_pretrained(model, sys.argv[1])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-W", "always::FutureWarning", "-c", code, str(result.weights_dir)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is_gradient_checkpointing" not in done.stderr and "kernels-community" not in done.stderr + done.stdout


def test_the_console_says_which_steps_this_start_trained_and_how_long_they_took(tmp_path):
    """Issue #24: a finished run said "done: 16 steps in 0:00, mean loss 0" (GRPO's loss is about 0 by
    construction, and a resumed start trained fewer steps than the run has)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from chartrvr_nb.callbacks import CalmProgress

    written = []
    callback, args = CalmProgress(), TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state = TrainerState(max_steps=16, num_train_epochs=1, global_step=8)  # resumed from checkpoint-8
    callback.on_train_begin(args, state, TrainerControl())
    callback.training_bar.write = written.append
    state.global_step = 16
    callback.on_log(args, state, TrainerControl(), logs={"train_runtime": 75.2, "train_loss": 0.0})
    callback.on_train_end(args, state, TrainerControl())
    assert written == ["done: steps 9-16 of 16 in 1:15"]


def test_in_a_notebook_the_progress_bar_carries_the_step_line_and_no_table_grows(tmp_path):
    """transformers' notebook progress adds a row of training loss per logged step (a 200-row table for the
    learn-check); the calm one keeps the bar and the last compact step line beside it."""
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.utils.notebook import NotebookProgressCallback

    from chartrvr_nb.callbacks import CalmNotebookProgress

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    tables = {}
    for callback in (NotebookProgressCallback(), CalmNotebookProgress()):
        state, control = TrainerState(max_steps=200, num_train_epochs=1), TrainerControl()
        callback.on_train_begin(args, state, control)
        for step in range(1, 201):
            state.global_step, state.epoch = step, step / 200
            callback.on_step_end(args, state, control)
            callback.on_log(args, state, control, logs={"loss": 0.0, "reward": 1.5, "rewards/format_reward/mean": 2.0})
        tables[type(callback).__name__] = tracker = callback.training_tracker
        callback.on_train_end(args, state, control)
        assert tracker.comment == (
            "Epoch 1/1" if type(callback) is NotebookProgressCallback else "step 200/200 | reward 1.50 | format 2.00"
        )
    assert len(tables["NotebookProgressCallback"].inner_table) == 201  # what users saw: a header and 200 rows
    calm = tables["CalmNotebookProgress"]
    assert calm.inner_table is None and calm.comment == "step 200/200 | reward 1.50 | format 2.00"
    assert "<table" not in calm.html_code
