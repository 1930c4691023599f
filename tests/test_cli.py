"""CLI: the seed's flags, preset overrides, clear errors, the rewards command and the main.py shim."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chartrvr_nb.cli import build_parser, main, preset_from_args
from chartrvr_nb.prompts import format_completion

ROOT = Path(__file__).resolve().parents[1]
TABLE = {"columns": ["x", "y"], "rows": [["a", "4"], ["b", "9"]]}


def test_seed_flags_override_the_preset():
    args = build_parser().parse_args([
        "grpo", "--vlm-name", "qwen2-5-3b", "--dataset-name", "evochart", "--seed", "7",
        "--subset-size", "10000", "--num-epochs", "1", "--num-generations", "2", "--batch-size", "4",
        "--disable-gradient-checkpointing",
    ])
    preset = preset_from_args(args)
    assert preset.name == "paper"  # the seed's default configuration
    assert (preset.seed, preset.subset_size, preset.num_epochs, preset.num_generations, preset.batch_size) == (7, 10000, 1, 2, 4)
    assert preset.gradient_checkpointing is False and preset.eval_dataset == "evochart"


def test_flags_not_given_keep_preset_values():
    preset = preset_from_args(build_parser().parse_args(["grpo", "--preset", "smoke"]))
    assert preset == __import__("chartrvr_nb.presets").presets.PRESETS["smoke"]


def test_unknown_preset_and_flag_are_rejected(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["grpo", "--preset", "turbo"])
    assert excinfo.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grpo", "--num-gens", "2"])
    assert "unrecognized arguments: --num-gens" in capsys.readouterr().err


def test_invalid_combination_is_a_clear_error(capsys):
    assert main(["estimate", "--preset", "fast", "--num-generations", "3"]) == 2
    assert "divisible by num_generations" in capsys.readouterr().err


def test_rewards_command_prints_a_table(tmp_path, capsys):
    good = format_completion("bar", TABLE, ["b is 9, a is 4.", "9 is larger."], "b")
    rows = [
        {"completion": good, "label": "b", "chart_type": "bar", "table": TABLE, "reasoning": ""},
        {"completion": "I think it is b", "label": "b", "chart_type": "bar", "table": TABLE, "reasoning": ""},
    ]
    path = tmp_path / "completions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["rewards", str(path), "--rewards", "format,accuracy,chart_type"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["format", "accuracy", "chart_type", "total"]
    assert lines[1].split() == ["0", "2.0", "1.0", "1.0", "4.0"]
    assert lines[2].split() == ["1", "0.0", "0.0", "0.0", "0.0"]
    assert "format=1.000" in out and "total=2.000" in out


def test_rewards_command_points_at_bad_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"completion": "x"}\n{oops\n')
    with pytest.raises(SystemExit, match="bad.jsonl:2 is not valid JSON"):
        main(["rewards", str(path)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["rewards", str(tmp_path / "missing.jsonl")])


def test_rewards_command_reads_a_completion_holding_a_unicode_line_separator(tmp_path, capsys):
    # JSON allows U+2028 unescaped inside a string (json.dumps(..., ensure_ascii=False) writes it so):
    # it must not split the line as str.splitlines() does.
    good = format_completion("bar", TABLE, ["b is 9,\u2028a is 4."], "b")
    path = tmp_path / "completions.jsonl"
    path.write_text(json.dumps({"completion": good, "label": "b"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")
    assert main(["rewards", str(path), "--rewards", "format,accuracy"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["0", "2.0", "1.0", "3.0"]


def test_main_py_shim_forwards_the_seed_commands():
    result = subprocess.run(
        [sys.executable, "main.py", "--mode", "grpo", "--vlm-name", "qwen2-5-3b", "--num-generations", "3"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "divisible by num_generations" in result.stderr
    result = subprocess.run([sys.executable, "main.py", "--mode", "train"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr
