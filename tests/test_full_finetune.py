"""The authors' recipe, ``full-ft``, end to end on the tiny model: every weight trains, checkpoints hold the
full model, a resumed run starts from the checkpoint's weights, and ``eval --model`` evaluates it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerCallback

from chartrvr_nb.cli import main
from chartrvr_nb.presets import get_preset
from chartrvr_nb.train import train

ROOT = Path(__file__).resolve().parents[1]
# 8 prompts x 4 generations / 4 completions per step = 8 steps an epoch; stopped after 2 (a checkpoint), then 4.
FLAGS = ["--vlm-name", "tiny", "--system-prompt", "project", "--train-data", "synthetic", "--subset-size", "8"]
QUICK = ["--max-completion-length", "48", "--save-steps", "2"]


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


class FirstStepWeights(TrainerCallback):
    """Keeps the model's weights as the first optimizer step of a (resumed) run begins."""

    def __init__(self):
        self.weights = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if self.weights is None:
            self.weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("full") / "run"
    command = [sys.executable, "-m", "chartrvr_nb", "grpo", "--preset", "full-ft", *FLAGS, *QUICK, "--max-steps", "2"]
    result = subprocess.run(
        [*command, "--output-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_the_run_says_how_a_step_is_made_and_trains_every_parameter(run, tiny_model_dir):
    out, stdout = run
    assert "1 process x batch 2 x accumulation 2 = 4 completions = 1 prompt per optimizer step." in stdout
    assert f"Full model: {out / 'model'}" in stdout and "Finished 2 optimizer steps." in stdout
    before, after = weights(tiny_model_dir), weights(out / "model")
    assert sorted(after) == sorted(before)
    unchanged = [name for name in before if (after[name] == before[name]).all()]
    assert unchanged == [], f"never trained: {unchanged}"
    config = json.loads((out / "run_config.json").read_text())
    assert (config["finetune"], config["learning_rate"], config["loss_type"]) == ("full", 1e-6, "bnpo")


def test_a_checkpoint_holds_the_full_weights_in_fp32(run, tiny_model_dir):
    out, _ = run
    checkpoint = out / "checkpoint-2"
    assert not (checkpoint / "adapter_config.json").exists()
    saved = weights(checkpoint)
    assert sorted(saved) == sorted(weights(tiny_model_dir))
    assert {str(tensor.dtype) for tensor in saved.values()} == {"torch.float32"}  # Adam's steps of 1e-6 survive
    assert (checkpoint / "optimizer.pt").is_file() and (out / "model" / "processor_config.json").is_file()


def test_a_resumed_run_starts_from_the_checkpoints_weights(run):
    from transformers import AutoModelForImageTextToText

    out, _ = run
    probe = FirstStepWeights()
    preset = get_preset(
        "full-ft",
        model="tiny",
        system_prompt="project",
        train_data="synthetic",
        subset_size=8,
        max_completion_length=48,
        save_steps=2,
    )
    result = train(preset, output_dir=out, max_steps=4, callbacks=[probe])
    assert result.resumed_from == out / "checkpoint-2" and result.global_step == 4
    saved = AutoModelForImageTextToText.from_pretrained(out / "checkpoint-2").state_dict()
    assert probe.weights.keys() == saved.keys()
    assert all((probe.weights[name] == saved[name]).all() for name in saved)


def test_eval_evaluates_the_full_model_with_the_prompt_it_trained_with(run, tmp_path, capsys):
    out, _ = run
    flags = ["--dataset-name", "synthetic", "--limit", "4", "--max-new-tokens", "16", "--no-progress"]
    assert main(["eval", "--vlm-name", "tiny", *flags, "--model", str(out), "--output-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["full_model"] == str(out / "model") and summary["adapter"] is None
    assert summary["system_prompt"] == "project"
    assert summary["system_prompt_sha256"] == json.loads((out / "run_config.json").read_text())["system_prompt_sha256"]
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 4
    assert main(["eval", "--vlm-name", "tiny", *flags, "--model", str(tmp_path)]) == 2
    assert "holds no full model" in capsys.readouterr().err
