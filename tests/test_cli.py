"""CLI: the seed's flags, flags generated from the settings' fields, clear errors, the rewards and params
commands and the main.py shim."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from commands import run_smoke_grpo

from chartrvr_nb.cli import build_parser, eval_config_from_args, main, preset_from_args
from chartrvr_nb.eval_config import EvalConfig
from chartrvr_nb.presets import Preset
from chartrvr_nb.prompts import format_completion
from chartrvr_nb.settings import option_overrides, options

ROOT = Path(__file__).resolve().parents[1]
TABLE = {"columns": ["x", "y"], "rows": [["a", "4"], ["b", "9"]]}


def test_seed_flags_override_the_preset():
    args = build_parser().parse_args(
        [
            "grpo",
            "--vlm-name",
            "qwen2-5-3b",
            "--dataset-name",
            "evochart",
            "--seed",
            "7",
            "--subset-size",
            "10000",
            "--num-epochs",
            "1",
            "--num-generations",
            "2",
            "--batch-size",
            "4",
            "--disable-gradient-checkpointing",
        ]
    )
    preset = preset_from_args(args)
    assert preset.name == "paper"  # the seed's default configuration
    assert (preset.seed, preset.subset_size, preset.num_epochs, preset.num_generations, preset.batch_size) == (
        7,
        10000,
        1,
        2,
        4,
    )
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


def test_rewards_command_points_at_bad_lines(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"completion": "x"}\n{oops\n')
    assert main(["rewards", str(path)]) == 2
    assert f"error: {path}:2 is not valid JSON" in capsys.readouterr().err
    assert main(["rewards", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no completions: write one JSON object per line, each with a completion."),
        (b"\n\n", "holds no completions"),
        (b'{"completion": "x"}\n{"completion": null}\n', ":2 has null as its 'completion'; it must be text or a list"),
        (b'{"completion": 7}\n', ":1 has a number as its 'completion'; it must be text or a list of chat messages"),
        (
            b'{"completion": "x"}\n{"completion": "caf\xe9"}\n',
            ":2 is not UTF-8 text (byte 0xe9); save the file as UTF-8.",
        ),
    ],
)
def test_rewards_command_refuses_what_it_cannot_score_naming_file_and_line(tmp_path, capsys, content, message):
    path = tmp_path / "batch.jsonl"
    path.write_bytes(content)
    assert main(["rewards", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err


def test_rewards_command_reads_a_file_starting_with_a_byte_order_mark(tmp_path, capsys):
    good = format_completion("bar", TABLE, ["b is 9."], "b")
    path = tmp_path / "notepad.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"completion": good, "label": "b"}).encode() + b"\n")
    assert main(["rewards", str(path), "--rewards", "format,accuracy"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["0", "2.0", "1.0", "3.0"]


def test_rewards_command_finds_a_run_under_the_run_root_and_checks_reward_names(tmp_path, monkeypatch, capsys):
    run = tmp_path / "root" / "runs" / "smoke"
    run.mkdir(parents=True)
    good = format_completion("bar", TABLE, ["b is 9."], "b")
    samples = [{"step": 4, "group": 0, "completion": good, "label": "b", "rewards": {"format_reward": 2.0}}]
    (run / "samples.jsonl").write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    monkeypatch.setenv("CHARTRVR_NB_RUN_ROOT", str(tmp_path / "root"))
    monkeypatch.chdir(tmp_path)  # not the run root: runs/smoke is found there all the same, as grpo and eval do
    assert main(["rewards", "runs/smoke", "--rewards", "format"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("step 4: 1 completions in 1 prompt group(s)") and "format" in out and "accuracy" not in out
    assert main(["rewards", "runs/smoke", "--rewards", "bogus"]) == 2
    assert "Unknown reward(s) ['bogus']. Choose from: format, count" in capsys.readouterr().err


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
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "divisible by num_generations" in result.stderr
    result = subprocess.run([sys.executable, "main.py", "--mode", "train"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: python main.py --mode {grpo,eval} [flags]")
    assert "python main.py --mode eval --help" in result.stdout.replace("\n", " ")
    result = subprocess.run(
        [sys.executable, "main.py", "--mode", "eval", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and "--dataset-name" in result.stdout


def _subparser(command: str):
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices[command]


def _example_argv(option) -> list[str]:
    if option.type is bool:
        return [option.flag]
    value = option.choices[-1] if option.choices else {int: "3", float: "0.5", str: "x"}[option.type]
    return [option.flag, str(value)]


@pytest.mark.parametrize("settings_class, command", [(Preset, "grpo"), (Preset, "estimate"), (EvalConfig, "eval")])
def test_every_setting_is_a_flag_with_its_help_that_sets_its_field(settings_class, command):
    """The flags are generated from the fields: each option's flag exists, shows the field's help text
    and sets that field (a switch sets the opposite of the default)."""
    actions = {action.dest: action for action in _subparser(command)._actions}
    required = ["--dataset-name", "synthetic"] if command == "eval" else []
    for option in options(settings_class):
        action = actions[option.dest]
        assert option.flag in action.option_strings and action.help.startswith(option.help.replace("%", "%%"))
        args = build_parser().parse_args([command, *required, *_example_argv(option)])
        value = (not option.default) if option.type is bool else option.type(_example_argv(option)[1])
        assert option_overrides(settings_class, vars(args)) == {option.field: value}, option.flag


def test_eval_flags_build_the_evaluation_settings(capsys):
    args = build_parser().parse_args(
        [
            "eval",
            "--vlm-name",
            "tiny",
            "--dataset-name",
            "chartqa",
            "--limit",
            "4",
            "--batch-size",
            "2",
            "--prompt",
            "direct",
            "--compare-base",
            "--seed",
            "3",
            "--no-progress",
        ]
    )
    assert eval_config_from_args(args) == EvalConfig(
        limit=4, batch_size=2, prompt="direct", compare_base=True, seed=3, progress=False
    )
    assert eval_config_from_args(build_parser().parse_args(["eval", "--dataset-name", "chartqa"])) == EvalConfig()
    assert main(["eval", "--dataset-name", "synthetic", "--batch-size", "0"]) == 2  # before any model loads
    assert "batch_size must be a positive integer" in capsys.readouterr().err
    assert main(["eval", "--dataset-name", "synthetic", "--max-new-tokens", "0"]) == 2  # not silently 768
    assert "max_new_tokens must be a positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["tiny", "tiny-learn"])
def test_params_counts_the_tiny_models_as_they_train(name, capsys, tiny_model_dir):
    from peft import get_peft_model

    from chartrvr_nb.models import count_parameters, fork_lora_config, load_model_and_processor, trainable_params_line

    assert main(["params", "--vlm-name", name]) == 0
    printed = capsys.readouterr().out.strip().splitlines()  # a first use builds the model and says so first
    model, _ = load_model_and_processor(name)
    expected = trainable_params_line(*count_parameters(get_peft_model(model, fork_lora_config())))
    assert printed[-1] == expected
    assert all(line.startswith("Buil") for line in printed[:-1]), printed


def test_eval_takes_an_adapter_or_full_weights_not_both(tmp_path, capsys):
    flags = ["eval", "--vlm-name", "tiny", "--dataset-name", "synthetic", "--limit", "1"]
    assert main([*flags, "--adapter", "someone/lora", "--model", "someone/full"]) == 2
    assert "either an adapter (--adapter) or full model weights (--model), not both" in capsys.readouterr().err


def test_a_user_error_is_its_message_alone_with_status_2(monkeypatch, capsys):
    from chartrvr_nb import UserError, gpu_fit

    def refuse(*args, **kwargs):
        raise UserError("The run folder is a file. Pass a folder.") from OSError(20, "Not a directory")

    monkeypatch.setattr(gpu_fit, "estimate_report", refuse)
    assert main(["estimate", "--preset", "smoke"]) == 2
    assert capsys.readouterr().err == "error: The run folder is a file. Pass a folder.\n"


def test_folders_that_cannot_be_used_are_one_line_each_and_leave_nothing_behind(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    cases = {
        ("--drive-dir", notes): f"error: --drive-dir {notes} cannot be used: it is a file, not a folder.",
        ("--drive-dir", notes / "sub"): f"error: --drive-dir {notes / 'sub'} cannot be used: {notes} is a file.",
        ("--output-dir", notes): f"error: --output-dir {notes} cannot be used: it is a file, not a folder.",
    }
    for flags, first_line in cases.items():
        out = tmp_path / "run"
        done = run_smoke_grpo(*(flags if flags[0] == "--output-dir" else (*flags, "--output-dir", out)))
        assert done.returncode == 2 and done.stderr.startswith(first_line), done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert not out.exists(), "a start that failed left its run folder behind"


def test_numbers_that_cannot_train_are_refused_by_estimate_and_grpo_alike(tmp_path, capsys):
    assert main(["estimate", "--preset", "smoke", "--num-processes", "0"]) == 2
    assert "(--num-processes) must be a positive integer, got 0" in capsys.readouterr().err
    for command in ("estimate", "grpo"):
        assert (
            main(
                [command, "--preset", "smoke", "--learning-rate", "inf", "--output-dir", str(tmp_path / "r")]
                if command == "grpo"
                else [command, "--preset", "smoke", "--learning-rate", "inf"]
            )
            == 2
        )
        assert "learning_rate must be a finite number, got inf" in capsys.readouterr().err
    assert main(["grpo", "--preset", "smoke", "--max-steps", "0", "--output-dir", str(tmp_path / "r")]) == 2
    assert "--max-steps) must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(
    subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs a user namespace (unshare -rm) to mount a read-only folder",
)
def test_a_read_only_output_folder_is_one_line(tmp_path):
    import shlex

    folder = tmp_path / "ro"
    folder.mkdir()
    grpo = shlex.join([sys.executable, "-m", "chartrvr_nb", "grpo", "--preset", "smoke", "--output-dir", str(folder)])
    script = f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(folder))} && HF_HUB_OFFLINE=1 {grpo}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: --output-dir {folder} cannot be used: it is on a read-only disk. "
        "Pass a folder you can write to as --output-dir.\n"
    )


def test_learn_check_into_a_folder_it_cannot_use_is_one_line(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("a file")
    assert main(["learn-check", "--output-dir", str(notes)]) == 2
    assert capsys.readouterr().err == (
        f"error: --output-dir {notes} cannot be used: it is a file, not a folder. "
        "Pass a folder you can write to as --output-dir.\n"
    )
