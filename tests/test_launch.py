"""Multi-GPU entry points: the DeepSpeed ZeRO-3 accelerate config and `accelerate launch main.py`."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_deepspeed_yaml_is_a_zero3_accelerate_config():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(ROOT / "deepspeed_zero3.yaml"))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == 3
    assert config.num_machines == 1 and config.mixed_precision == "bf16"
    assert config.num_processes == 2  # the authors' file; any count keeps a preset's completions per step
    readme = (ROOT / "README.md").read_text()
    assert "`deepspeed_zero3.yaml` starts 2 processes, as the authors' file does" in readme


def test_accelerate_launch_runs_the_seed_command_on_cpu(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "main.py",
        "--mode",
        "grpo",
        "--preset",
        "smoke",
        "--vlm-name",
        "tiny",
        "--dataset-name",
        "synthetic",
        "--seed",
        "2025",
        "--subset-size",
        "4",
        "--num-epochs",
        "1",
        "--num-generations",
        "2",
        "--max-completion-length",
        "32",
        "--output-dir",
        str(out),
    ]
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished 2 optimizer steps." in result.stdout
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
