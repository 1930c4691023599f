"""Checkpoint completeness, the atomic Drive mirror and resume, on checkpoints a real Trainer wrote."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from chartrvr_nb.checkpoints import (
    checkpoint_step,
    complete_checkpoints,
    is_complete_checkpoint,
    newest_complete_checkpoint,
)
from chartrvr_nb.drive import clean_stale_temporaries, copy_atomic
from chartrvr_nb.presets import get_preset
from chartrvr_nb.resume import RunConfigChangedError, prepare_resume
from chartrvr_nb.runfiles import find_runs, preset_from_run, read_run_config, write_run_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _train_tiny(output_dir: Path, max_steps: int, callbacks=(), resume_from_checkpoint=None):
    """Train a 1-layer GPT-2 (built in code, a few hundred weights) with the real HF Trainer on CPU."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    class MetricsLogger(TrainerCallback):
        """Stands in for train.py's logger: one JSON line per logging event in metrics.jsonl."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            with open(Path(args.output_dir) / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=16, n_positions=8))
    rows = [{"input_ids": torch.arange(8) % 16, "labels": torch.arange(8) % 16} for _ in range(64)]
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "run_config.json").write_text(json.dumps({"name": "tiny-test"}))
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[MetricsLogger(), *callbacks])
    trainer.train(resume_from_checkpoint=str(resume_from_checkpoint) if resume_from_checkpoint else None)
    return trainer


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run dir with checkpoint-2/4/6 from a real Trainer, mirrored by the callback (keep_last=2)."""
    from chartrvr_nb.callbacks import DriveMirrorCallback

    root = tmp_path_factory.mktemp("trained")
    local, drive = root / "run", root / "drive" / "run"
    _train_tiny(local, max_steps=6, callbacks=[DriveMirrorCallback(drive, keep_last=2)])
    return local, drive


@pytest.fixture
def run_copy(trained_run, tmp_path):
    local, drive = trained_run
    shutil.copytree(local, tmp_path / "run")
    shutil.copytree(drive, tmp_path / "drive")
    return tmp_path / "run", tmp_path / "drive"


def test_real_trainer_checkpoints_are_complete(trained_run):
    local, _ = trained_run
    assert [p.name for p in complete_checkpoints(local)] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert newest_complete_checkpoint(local) == local / "checkpoint-6"
    assert json.loads((local / "checkpoint-6" / "trainer_state.json").read_text())["global_step"] == 6


def test_every_state_a_kill_mid_save_can_leave_is_incomplete(trained_run, tmp_path):
    """Replay the Trainer's own write order (file mtimes): stopping after any file, or halfway
    through one, never yields a complete checkpoint; only the full set does."""
    real = trained_run[0] / "checkpoint-6"
    written = sorted(real.iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert written[-1].name == "trainer_state.json", "the Trainer no longer writes its state last"
    for count in range(len(written)):
        for cut_last_file in (False, True):
            partial = tmp_path / f"{count}-{cut_last_file}" / "checkpoint-6"
            partial.mkdir(parents=True)
            for path in written[:count]:
                shutil.copy2(path, partial / path.name)
            if cut_last_file:
                data = written[count].read_bytes()
                (partial / written[count].name).write_bytes(data[: len(data) // 2])
            assert not is_complete_checkpoint(partial), (count, cut_last_file)
    assert is_complete_checkpoint(real)


def test_callback_mirrors_each_save_and_prunes_drive(trained_run):
    local, drive = trained_run
    assert sorted(p.name for p in drive.iterdir()) == [
        "checkpoint-4",
        "checkpoint-6",
        "metrics.jsonl",
        "run_config.json",
    ]
    for name in ("checkpoint-4", "checkpoint-6"):
        assert is_complete_checkpoint(drive / name)
        local_files = sorted(p.relative_to(local / name) for p in (local / name).rglob("*"))
        assert sorted(p.relative_to(drive / name) for p in (drive / name).rglob("*")) == local_files
    # on_train_end copies the log written after the last save, so Drive has every logged step.
    assert (drive / "metrics.jsonl").read_text() == (local / "metrics.jsonl").read_text()


@pytest.mark.parametrize("damage", ["missing state", "truncated state", "missing weights", "wrong step"])
def test_incomplete_local_checkpoint_is_skipped_for_an_older_complete_one(run_copy, damage, capsys):
    local, _ = run_copy
    newest = local / "checkpoint-6"
    state = newest / "trainer_state.json"
    if damage == "missing state":
        state.unlink()
    elif damage == "truncated state":
        state.write_text(state.read_text()[: len(state.read_text()) // 2])
    elif damage == "missing weights":
        (newest / "model.safetensors").unlink()
    else:
        state.write_text(json.dumps({**json.loads(state.read_text()), "global_step": 4}))
    assert not is_complete_checkpoint(newest)
    assert newest_complete_checkpoint(local) == local / "checkpoint-4"

    assert prepare_resume(local) == local / "checkpoint-4"
    assert not newest.exists(), "an unfinished checkpoint must not linger where the next save writes"
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "checkpoint-4" in out and "removed unfinished checkpoint-6" in out


def test_resume_restores_from_drive_after_local_dir_is_deleted(run_copy, capsys):
    local, drive = run_copy
    shutil.rmtree(local)

    chosen = prepare_resume(local, drive)

    assert chosen == local / "checkpoint-6" and is_complete_checkpoint(chosen)
    assert "restored from Drive" in capsys.readouterr().out
    assert (local / "metrics.jsonl").read_text() == (drive / "metrics.jsonl").read_text()
    assert (local / "run_config.json").is_file()
    # The restored checkpoint really resumes: the Trainer continues at step 6, not 0.
    trainer = _train_tiny(local, max_steps=8, resume_from_checkpoint=chosen)
    assert trainer.state.global_step == 8
    logged_steps = [json.loads(line)["step"] for line in (local / "metrics.jsonl").read_text().splitlines()]
    assert logged_steps[-3:] == [7, 8, 8]  # steps 7 and 8, then the end-of-training summary


def test_newer_checkpoint_wins_whichever_side_it_is_on(run_copy, capsys):
    local, drive = run_copy
    assert prepare_resume(local, drive) == local / "checkpoint-6"  # equal steps: keep local
    shutil.rmtree(local / "checkpoint-6")
    assert prepare_resume(local, drive) == local / "checkpoint-6"  # Drive is ahead: restored
    assert "newer than local checkpoint-4" in capsys.readouterr().out
    shutil.rmtree(drive / "checkpoint-6")
    shutil.rmtree(drive / "checkpoint-4")
    assert prepare_resume(local, drive) == local / "checkpoint-6"


def test_no_checkpoint_anywhere_starts_from_scratch(tmp_path, capsys):
    assert prepare_resume(tmp_path / "run", tmp_path / "drive") is None
    assert "starting from step 0" in capsys.readouterr().out


def test_a_changed_configuration_is_refused_before_resuming_is_announced_or_drive_restored(run_copy, capsys):
    local, drive = run_copy
    for folder in (local, drive):
        write_run_config(folder, {"name": "smoke", "subset_size": 1, "save_steps": 2})
    changed = {"name": "smoke", "subset_size": 32, "save_steps": 8}  # save_steps may change on a resume
    with pytest.raises(RunConfigChangedError, match=r"\(subset_size: 1 -> 32\), with checkpoint-6 to resume"):
        prepare_resume(local, drive, run_config=changed)
    assert "Resuming" not in capsys.readouterr().out
    shutil.rmtree(local / "checkpoint-6")
    shutil.rmtree(local / "checkpoint-4")  # Drive is ahead now: refused before anything is copied back
    with pytest.raises(RunConfigChangedError, match=f"{drive} holds a run"):
        prepare_resume(local, drive, run_config=changed)
    assert not (local / "checkpoint-6").exists() and "Resuming" not in capsys.readouterr().out
    assert prepare_resume(local, drive, run_config={**changed, "subset_size": 1}) == local / "checkpoint-6"


def test_a_folder_without_a_checkpoint_starts_afresh_with_any_configuration(tmp_path, capsys):
    """Nothing to resume, nothing to protect: e.g. a run that ran out of memory before its first checkpoint,
    restarted with the smaller batch the message suggests."""
    write_run_config(tmp_path, {"name": "smoke", "batch_size": 2, "grad_accum": 2})
    assert prepare_resume(tmp_path, run_config={"name": "smoke", "batch_size": 1, "grad_accum": 4}) is None
    assert "starting from step 0" in capsys.readouterr().out


_SLOW_COPY = textwrap.dedent(
    """
    import functools, shutil, sys, time
    from chartrvr_nb.drive import copy_atomic

    def slow_copy(src, dst, **kwargs):
        shutil.copy2(src, dst, **kwargs)
        time.sleep(0.5)

    shutil.copytree = functools.partial(shutil.copytree, copy_function=slow_copy)
    copy_atomic(sys.argv[1], sys.argv[2])
    """
)


def test_copy_killed_midway_is_ignored_and_cleaned(run_copy, capsys):
    local, drive = run_copy
    shutil.rmtree(drive / "checkpoint-6")
    target = drive / "checkpoint-6"
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_COPY, str(local / "checkpoint-6"), str(target)], cwd=REPO_ROOT
    )
    temporary = drive / f".tmp-checkpoint-6-{process.pid}"
    deadline = time.monotonic() + 60
    while not (temporary.is_dir() and any(temporary.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, "the copy never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert temporary.is_dir() and not target.exists()
    assert newest_complete_checkpoint(drive) == drive / "checkpoint-4"
    shutil.rmtree(local)
    assert prepare_resume(local, drive) == local / "checkpoint-4"
    assert not temporary.exists()
    assert "checkpoint-4" in capsys.readouterr().out


def test_temporaries_are_never_complete_and_get_cleaned(run_copy):
    local, _ = run_copy
    temporary = local / ".tmp-checkpoint-8-12345"
    shutil.copytree(local / "checkpoint-6", temporary)
    (local / ".tmp-metrics.jsonl-12345").write_text("{}\n")
    (local / "notes.tmp").write_text("not ours")
    assert not is_complete_checkpoint(temporary)
    assert newest_complete_checkpoint(local) == local / "checkpoint-6"
    removed = clean_stale_temporaries(local)
    assert sorted(p.name for p in removed) == [".tmp-checkpoint-8-12345", ".tmp-metrics.jsonl-12345"]
    assert (local / "notes.tmp").exists()


def test_sharded_weights_need_every_shard(tmp_path):
    checkpoint = tmp_path / "checkpoint-10"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    (checkpoint / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert not is_complete_checkpoint(checkpoint)
    (checkpoint / "model-00002-of-00002.safetensors").write_bytes(b"x")
    assert is_complete_checkpoint(checkpoint)


def test_peft_adapter_checkpoint_counts_as_complete(tmp_path):
    checkpoint = tmp_path / "checkpoint-500"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 500}))
    assert not is_complete_checkpoint(checkpoint)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"x")
    assert is_complete_checkpoint(checkpoint)
    assert checkpoint_step(checkpoint) == 500


def test_copy_atomic_replaces_an_existing_destination(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "new.txt").write_text("new")
    destination = tmp_path / "out" / "dst"
    destination.mkdir(parents=True)
    (destination / "old.txt").write_text("old")
    copy_atomic(source, destination)
    assert [p.name for p in destination.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in destination.parent.iterdir()) == ["dst"]


_WRITE_ON_A_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from chartrvr_nb.runfiles import write_run_config

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # no file may grow past 64 bytes: a full disk
    try:
        write_run_config(sys.argv[1], {"name": "smoke", "notes": "x" * 1000})
    except OSError as error:
        print("failed:", error)
    """
)


def test_a_run_config_write_cut_short_leaves_the_previous_one_whole(tmp_path):
    write_run_config(tmp_path, {"name": "smoke", "seed": 42})
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _WRITE_ON_A_FULL_DISK, str(tmp_path)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("failed:"), done.stdout + done.stderr
    assert read_run_config(tmp_path) == {"name": "smoke", "seed": 42}  # resume compares against it
    assert [p.name for p in tmp_path.iterdir()] == ["run_config.json"]  # and no temporary is left


def test_mirror_refuses_an_incomplete_checkpoint(tmp_path):
    from chartrvr_nb.callbacks import DriveMirrorCallback

    half = tmp_path / "checkpoint-3"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        DriveMirrorCallback(tmp_path / "drive").mirror_checkpoint(half)
    assert not (tmp_path / "drive" / "checkpoint-3").exists()


def test_callback_warns_and_lets_training_continue_when_drive_fails(trained_run, tmp_path):
    from transformers import TrainerCallback

    from chartrvr_nb.callbacks import DriveMirrorCallback

    local, _ = trained_run
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the Drive folder should be")
    callback = DriveMirrorCallback(blocked / "run")
    assert isinstance(callback, TrainerCallback)
    args = types.SimpleNamespace(output_dir=str(local))
    state = types.SimpleNamespace(global_step=6, is_world_process_zero=True)
    with pytest.warns(UserWarning, match="Could not mirror checkpoint-6 to Drive"):
        callback.on_save(args, state, control=None)


def _fake_run(root: Path, name: str, preset: str, checkpoints_done=(4,), unfinished=(8,), logged=6) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps(get_preset(preset).to_dict()))
    for step in checkpoints_done:
        checkpoint = run / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "adapter_model.safetensors").write_bytes(b"0")
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for step in unfinished:
        (run / f"checkpoint-{step}").mkdir()  # a save cut short: no trainer_state.json
    with open(run / "metrics.jsonl", "w") as out:
        for step in range(1, logged + 1):
            out.write(json.dumps({"step": step, "reward": float(step)}) + "\n")
    return run


def test_find_runs_lists_complete_checkpoints_newest_first(tmp_path):
    smoke = _fake_run(tmp_path, "older-smoke", "smoke")
    fast = _fake_run(tmp_path, "fast-run", "fast", checkpoints_done=(500, 1000), unfinished=(), logged=1200)
    (tmp_path / "not-a-run").mkdir()
    for age, run in ((100, smoke), (10, fast)):  # seconds since the last write
        for path in [run, *run.iterdir()]:
            os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age))
    runs = find_runs(tmp_path)
    assert runs["run"].tolist() == ["fast-run", "older-smoke"]
    row = runs.set_index("run").loc["older-smoke"]
    assert row["newest checkpoint"] == "checkpoint-4" and row["checkpoint step"] == 4
    assert row["logged steps"] == 6 and row["last reward"] == 6.0
    assert row["preset"] == "smoke" and runs.set_index("run").loc["fast-run", "checkpoint step"] == 1000
    empty = find_runs(tmp_path / "not-a-run")
    assert empty.empty and list(empty.columns) == list(runs.columns)


def test_preset_from_run_rebuilds_the_exact_preset(tmp_path):
    run = _fake_run(tmp_path, "r", "colab-t4")
    assert preset_from_run(run) == get_preset("colab-t4")
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        preset_from_run(tmp_path)
