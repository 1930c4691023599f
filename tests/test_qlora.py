"""QLoRA on CPU: the colab-t4 path (4-bit NF4 base + LoRA) loads, trains, resumes and evaluates.

bitsandbytes 0.50 has CPU 4-bit kernels, so the same code a T4 runs (``BitsAndBytesConfig``,
``Linear4bit`` projections, LoRA over them, gradient checkpointing) executes here for real, with
fp32 compute. The end-to-end test is the CLI a user types, killed with SIGKILL after its first
checkpoint and re-run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chartrvr_nb.checkpoints import newest_complete_checkpoint
from chartrvr_nb.models import load_model_and_processor

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
# 8 prompts x 2 generations / (batch 2 x grad accum 2) = 4 optimizer steps, a checkpoint every 2.
TRAIN = [
    sys.executable,
    "-m",
    "chartrvr_nb",
    "grpo",
    "--preset",
    "smoke",
    "--load-in-4bit",
    "--subset-size",
    "8",
    "--save-steps",
    "2",
    "--max-completion-length",
    "48",
]


def test_4bit_quantises_the_language_model_and_keeps_the_vision_tower_and_lm_head(tiny_model_dir):
    import bitsandbytes as bnb
    import torch

    from chartrvr_nb.data import make_synthetic_rows
    from chartrvr_nb.prompts import build_messages

    model, processor = load_model_and_processor("tiny", load_in_4bit=True)
    assert model.is_loaded_in_4bit
    language = {n: m for n, m in model.named_modules() if ".language_model." in n and n.endswith("_proj")}
    assert len(language) == 14 and all(isinstance(m, bnb.nn.Linear4bit) for m in language.values())
    assert {m.weight.quant_type for m in language.values()} == {"nf4"}
    assert {m.compute_dtype for m in language.values()} == {torch.float32}
    vision = {n: m for n, m in model.named_modules() if ".visual." in n and isinstance(m, torch.nn.Linear)}
    assert vision and not any(isinstance(m, bnb.nn.Linear4bit) for m in vision.values())
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)

    row = make_synthetic_rows(1, seed=3, max_pixels=224 * 224)[0]
    text = processor.apply_chat_template(build_messages(row["query"]), add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        logits = model(**processor(text=[text], images=[row["image"]], return_tensors="pt")).logits
    assert torch.isfinite(logits).all()


def test_qlora_run_logs_4bit_resumes_after_kill_and_its_adapter_evaluates(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    command = [*TRAIN, "--output-dir", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while newest_complete_checkpoint(out) is None and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert newest_complete_checkpoint(out) is not None, "the first run never wrote a checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait()

    finished = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "in 4-bit NF4" in finished.stdout and "LoRA adapters train in float32" in finished.stdout
    assert re.search(r"Resuming from \S*checkpoint-[24]", finished.stdout)
    assert "Finished 4 optimizer steps." in finished.stdout
    assert newest_complete_checkpoint(out).name == "checkpoint-4"
    assert json.loads((out / "run_config.json").read_text())["load_in_4bit"] is True

    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    # TRL casts a quantised model's LoRA weights to bf16, where the paper's lr 1e-5 cannot move them.
    assert {str(t.dtype) for t in adapter.values()} == {"torch.float32"}
    # LoRA B starts at zero: non-zero B in both towers means gradients flowed through the 4-bit
    # layers under gradient checkpointing (the smoke preset has it on).
    learned = [k for k, t in adapter.items() if "lora_B" in k and t.abs().sum() > 0]
    assert any(".language_model." in k for k in learned) and any(".visual." in k for k in learned)

    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "chartrvr_nb",
            "eval",
            "--vlm-name",
            "tiny",
            "--dataset-name",
            "synthetic",
            "--adapter",
            str(out),
            "--load-in-4bit",
            "--limit",
            "4",
            "--max-new-tokens",
            "32",
            "--output-dir",
            str(tmp_path / "eval"),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["load_in_4bit"] is True and summary["adapter"] == str(out / "adapter")
    assert len((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()) == 4


def test_the_4bit_flag_is_on_the_cli_and_the_training_form():
    from chartrvr_nb.cli import build_parser, preset_from_args
    from chartrvr_nb.widgets import PresetForm

    assert preset_from_args(build_parser().parse_args(["grpo", "--preset", "smoke", "--load-in-4bit"])).load_in_4bit
    assert not preset_from_args(build_parser().parse_args(["grpo", "--preset", "smoke"])).load_in_4bit
    assert PresetForm("smoke", load_in_4bit=True).preset().load_in_4bit
    assert PresetForm("colab-t4").preset().load_in_4bit  # the preset's own 4-bit stays
    assert build_parser().parse_args(["eval", "--dataset-name", "chartqa", "--load-in-4bit"]).load_in_4bit


def test_the_estimator_knows_a_4bit_cpu_run():
    from chartrvr_nb.estimate import estimate
    from chartrvr_nb.presets import get_preset

    four_bit, full = estimate(get_preset("smoke", load_in_4bit=True)), estimate("smoke")
    assert four_bit.steps == full.steps == 16
    assert four_bit.seconds_per_step > full.seconds_per_step and "4-bit" in four_bit.figures_source


def test_4bit_without_bitsandbytes_says_what_to_install(monkeypatch, tiny_model_dir):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'bitsandbytes>=0.50'"):
        load_model_and_processor("tiny", load_in_4bit=True)
