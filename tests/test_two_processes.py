"""Two training processes (torchrun, gloo on CPU): train, checkpoint, kill -9, resume, one writer.

``accelerate launch --cpu`` starts a single process, so the multi-process path is run the way
torchrun starts it on a multi-GPU box: ``python -m torch.distributed.run --standalone
--nproc_per_node 2 main.py --mode grpo ...``. The two ranks share each optimizer step's completions
(batch 2 x accumulation 1 each instead of one process's batch 2 x accumulation 2), so the run takes
the preset's steps whatever the number of processes, and the estimator counts the same.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from chartrvr_nb.checkpoints import newest_complete_checkpoint
from chartrvr_nb.estimate import estimate
from chartrvr_nb.presets import get_preset
from chartrvr_nb.runfiles import load_metrics, load_samples, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
# 8 prompts x 2 generations / (2 processes x batch 2 x accumulation 1) = 4 optimizer steps of 2 prompts.
OVERRIDES = dict(subset_size=8, save_steps=2, max_completion_length=48)


def test_two_processes_train_resume_after_kill_and_write_once(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "main.py",
        "--mode",
        "grpo",
        "--preset",
        "smoke",
        "--output-dir",
        str(out),
        "--subset-size",
        "16",
        "--save-steps",
        "2",
        "--max-completion-length",
        "48",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 600
    while newest_complete_checkpoint(out) is None and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert newest_complete_checkpoint(out) is not None, "the first run never wrote a checkpoint"
    # The launcher and both ranks, as a lost machine would end them. torchrun starts each rank in a session
    # of its own, so killing the launcher's process group would leave the ranks training on.
    ranks = psutil.Process(first.pid).children(recursive=True)
    for process in [*ranks, psutil.Process(first.pid)]:
        process.kill()
    first.wait()
    psutil.wait_procs(ranks, timeout=30)
    # What the killed run logged, each step once (rank 0 alone writes); on a loaded machine it may have gone
    # past its first checkpoint before the kill landed, so the resumed run's share is read, not assumed.
    killed = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "reward" in r]
    assert killed == list(range(1, len(killed) + 1))
    assert len(killed) < 8, "the first run finished before it was killed: nothing left to resume"

    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # Rank 0 alone says how a step is made, what it resumed from and what it finished.
    made = "2 processes x batch 2 x accumulation 1 = 4 completions = 2 prompts per optimizer step."
    assert finished.stdout.count(made) == 1, finished.stdout
    assert finished.stdout.count("Training data synthetic: 16 rows, all distinct") == 1, finished.stdout
    resumed = re.findall(r"Resuming from .*checkpoint-(\d+)\.", finished.stdout)
    assert len(resumed) == 1 and 2 <= int(resumed[0]) <= len(killed), finished.stdout
    assert finished.stdout.count("Finished 8 optimizer steps.") == 1, finished.stdout
    assert newest_complete_checkpoint(out).name == "checkpoint-8"
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    expected = estimate(get_preset("smoke", **{**OVERRIDES, "subset_size": 16}), world_size=2).steps
    assert state["max_steps"] == expected == 8

    # Each step was logged once per run, by rank 0: the killed run's steps, then the resumed run's from
    # its checkpoint on; read back, one record per step.
    per_step = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "reward" in r]
    assert per_step == killed + list(range(int(resumed[0]) + 1, 9))
    assert [r["step"] for r in load_metrics(out)] == list(range(1, 9))
    # Samples (every 4 steps: steps 0 and 4 here) come from rank 0's generation batch alone: 2 completions.
    assert [s["step"] for s in load_samples(out)] == [0, 0, 4, 4]


def test_the_estimator_reads_the_launchers_world_size(monkeypatch):
    preset = get_preset("smoke", **OVERRIDES)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun and accelerate launch set it
    assert estimate(preset).steps == 4 and estimate(preset).processes == 2
    assert (
        estimate(preset).batches
        == "2 processes x batch 2 x accumulation 1 = 4 completions = 2 prompts per optimizer step"
    )
    assert estimate(preset, world_size=1).steps == 4
