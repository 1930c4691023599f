"""Evaluating a training run as a user does, end to end with the real commands: ``grpo`` trains a tiny run
and ends with its reward summary, curves and the next command; ``eval --adapter RUN`` asks as the run
trained (its model, completion length, pixel budget and prompt, with no hub lookups) and agrees with
04_evaluate; the final adapter is verified against its manifest; ``--compare-base`` reports every reward
of both models with intervals; an evaluation killed halfway resumes from the answers it wrote."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from chartrvr_nb import cli, notebooks
from chartrvr_nb.eval_config import EvalConfig
from chartrvr_nb.eval_inputs import resolve_adapter
from chartrvr_nb.eval_results import read_predictions, results_table
from chartrvr_nb.evaluate import run_evaluation
from chartrvr_nb.presets import get_preset
from chartrvr_nb.rewards import REWARD_MAXIMA, REWARDS, format_reward, length_reward
from chartrvr_nb.runfiles import SYSTEM_PROMPT_SHA256, load_metrics, read_jsonl, read_run_config

ROOT = Path(__file__).resolve().parents[1]
RUN_TOKENS, RUN_PIXELS = 24, 112 * 112  # neither the smoke preset's (160, 50,176) nor eval's defaults (768, 250,880)


def command(*args: str, root: Path, **popen) -> subprocess.Popen:
    """``python -m chartrvr_nb ARGS`` as a user runs it, in a shell whose run root is ``root``. The hub is not
    declared offline: a lookup would show as retries and time, not as a quick failure."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    environment.update(CHARTRVR_NB_RUN_ROOT=str(root), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "chartrvr_nb", *args],
        env=environment,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A two-step tiny run trained by ``grpo`` (in process), with what the command printed."""
    root = tmp_path_factory.mktemp("root")
    run = root / "runs" / "tiny-run"
    flags = ["--preset", "smoke", "--subset-size", "4", "--max-completion-length", str(RUN_TOKENS)]
    flags += ["--max-pixels", str(RUN_PIXELS), "--save-steps", "1", "--max-steps", "2", "--output-dir", str(run)]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("CHARTRVR_NB_RUN_ROOT", str(root))  # as a shell with that run root
        assert cli.main(["grpo", *flags]) == 0
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def cli_eval(trained):
    """``eval --adapter runs/tiny-run`` with the default --vlm-name, from a shell, timed."""
    run, _ = trained
    root = run.parent.parent
    started = time.monotonic()
    flags = ["--dataset-name", "synthetic", "--limit", "3", "--batch-size", "3", "--output-dir", "runs/eval/cli"]
    code, out, err = finished(command("eval", "--adapter", "runs/tiny-run", *flags, root=root))
    return code, out, err, time.monotonic() - started, root / "runs" / "eval" / "cli"


# --------------------------------------------------------------------------------------------
# grpo ends with what the run did and what to run next; curves gives the same for any run
# --------------------------------------------------------------------------------------------


def test_grpo_ends_with_first_and_last_rewards_the_curves_and_the_next_command(trained):
    run, printed = trained
    metrics = load_metrics(run)
    assert [record["step"] for record in metrics] == [1, 2]
    first, last = metrics[0]["reward"], metrics[-1]["reward"]
    lines = printed.splitlines()
    start = lines.index("Rewards, step 1 -> step 2 (2 logged steps):")
    assert lines[start + 1].split() == ["total", f"{first:.3f}", "->", f"{last:.3f}", f"({last - first:+.3f})"]
    assert [line.split()[0] for line in lines[start + 1 : start + 9]] == ["total", *REWARDS]
    assert f"Reward curves: {run / 'reward_curves.png'}" in lines
    assert (run / "reward_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        lines[-1]
        == "next: python -m chartrvr_nb eval --adapter runs/tiny-run --dataset-name synthetic --compare-base --limit 100"
    )  # noqa: E501


def test_curves_command_reports_any_run(trained, capsys, monkeypatch):
    run, printed = trained
    monkeypatch.setenv("CHARTRVR_NB_RUN_ROOT", str(run.parent.parent))
    (run / "reward_curves.png").unlink()
    assert cli.main(["curves", "runs/tiny-run"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == printed[printed.index("Rewards, ") :].strip()
    assert (run / "reward_curves.png").is_file()


# --------------------------------------------------------------------------------------------
# eval --adapter RUN asks as the run trained
# --------------------------------------------------------------------------------------------


def test_eval_of_a_run_uses_its_model_and_settings_without_the_hub(trained, cli_eval):
    run, _ = trained
    code, out, err, seconds, out_dir = cli_eval
    assert code == 0, err[-3000:]
    assert "huggingface.co" not in out + err and "Retrying" not in out + err
    assert seconds < 150  # the model loads from the run, not after minutes of hub retries
    summary = json.loads((out_dir / "summary.json").read_text())
    assert (summary["model"], summary["load_in_4bit"]) == ("tiny", False)
    assert (summary["max_new_tokens"], summary["max_pixels"]) == (RUN_TOKENS, RUN_PIXELS)
    assert summary["adapter"] == str(run / "adapter")
    assert summary["system_prompt_sha256"] == read_run_config(run)[SYSTEM_PROMPT_SHA256]
    said = (
        f"Evaluating as {run} trained (run_config.json): model tiny, tokens per answer 24, image pixel budget "
        "12,544, 4-bit base off, system prompt project."
    )
    assert said in out.splitlines() and "Differs from training" not in out
    header = next(line for line in out.splitlines() if line.startswith("benchmark"))
    assert "base" not in header.split("Qwen2.5-VL-3B")[0]  # no base model evaluated: no base columns
    assert not {"None", "nan", "NaN"} & set(out.split())  # a number that does not exist is "-"


def test_a_setting_other_than_the_run_is_said_in_one_line(trained, tmp_path, capsys):
    run, _ = trained
    flags = ["--dataset-name", "synthetic", "--limit", "1", "--output-dir", str(tmp_path)]
    assert cli.main(["eval", "--adapter", str(run), "--max-new-tokens", "8", *flags]) == 0
    differs = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Differs from training")]
    assert differs == ["Differs from training: tokens per answer 8 (trained with 24; --max-new-tokens given)."]
    assert json.loads((tmp_path / "summary.json").read_text())["max_new_tokens"] == 8


def test_a_model_other_than_the_runs_is_refused_before_loading(trained, tmp_path, capsys):
    run, _ = trained
    flags = ["--dataset-name", "synthetic", "--output-dir", str(tmp_path / "refused")]
    assert cli.main(["eval", "--adapter", str(run), "--vlm-name", "qwen2-5-3b", *flags]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {run} trained tiny, so its weights do not load on --vlm-name qwen2-5-3b. Leave --vlm-name out "
        "(the run's model is used) or pass --vlm-name tiny."
    )
    assert not (tmp_path / "refused").exists()


def test_a_missing_run_folder_is_not_tried_as_a_hub_id(tmp_path):
    started = time.monotonic()
    code, out, err = finished(command("eval", "--adapter", "runs/nope", "--dataset-name", "synthetic", root=tmp_path))
    assert code == 2 and time.monotonic() - started < 60
    assert f"error: Adapter 'runs/nope' not found: there is no folder {tmp_path / 'runs' / 'nope'}." in err
    assert "huggingface.co" not in out + err


def test_04_evaluates_a_run_as_the_cli_does(trained, cli_eval, tmp_path):
    """04_evaluate's preset (smoke: 160 tokens, 50,176 pixels) is not how the run trained; the run decides."""
    run, _ = trained
    adapter = resolve_adapter(run)
    vlm_name, settings = notebooks.evaluation_settings(get_preset("smoke"), adapter, limit=3, batch_size=3)
    notebook = run_evaluation(vlm_name, "synthetic", settings, adapter=adapter, output_dir=tmp_path, verbose=False)
    from_cli = json.loads((cli_eval[-1] / "summary.json").read_text())
    decided = ("model", "max_new_tokens", "max_pixels", "system_prompt_sha256", "load_in_4bit", "adapter")
    assert {key: notebook.summary[key] for key in decided} == {key: from_cli[key] for key in decided}
    cli_replies = [record["reply"] for record in read_predictions(cli_eval[-1] / "predictions.jsonl")]
    assert [record["reply"] for record in notebook.predictions] == cli_replies


# --------------------------------------------------------------------------------------------
# The final adapter is verified like a checkpoint
# --------------------------------------------------------------------------------------------


def test_eval_refuses_a_final_adapter_whose_bytes_changed(trained, tmp_path, capsys):
    run, _ = trained
    manifest = json.loads((run / "adapter" / "manifest.json").read_text())
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(manifest["files"])
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    weights = copy / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"!" * 64  # tensor bytes, same size: the file still loads, as the user's did
    weights.write_bytes(bytes(data))

    flags = ["--dataset-name", "synthetic", "--limit", "1", "--output-dir", str(tmp_path / "eval")]
    assert cli.main(["eval", "--adapter", str(copy), *flags]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {copy / 'adapter'} cannot be evaluated: adapter_model.safetensors does not match its sha256 in the "
        f"manifest (its bytes changed after the save). Evaluate a checkpoint of the run instead (the newest that "
        f"verifies is {copy / 'checkpoint-2'}), or re-run the training command: it saves the final folder again "
        "from the newest checkpoint."
    )
    assert not (tmp_path / "eval").exists()
    shutil.copy(weights, copy / "checkpoint-2" / "adapter_model.safetensors")  # a checkpoint named directly too
    assert cli.main(["eval", "--adapter", str(copy / "checkpoint-2"), *flags]) == 2
    assert "checkpoint-2 cannot be evaluated: adapter_model.safetensors" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# --compare-base: every reward of both models, with intervals, in the table and results
# --------------------------------------------------------------------------------------------


def test_compare_base_reports_each_reward_of_both_models_with_intervals(trained, tmp_path, capsys):
    run, _ = trained
    flags = ["--dataset-name", "synthetic", "--limit", "4", "--compare-base", "--output-dir", str(tmp_path)]
    assert cli.main(["eval", "--adapter", str(run), *flags]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    ours = [record["reply"] for record in read_predictions(tmp_path / "predictions.jsonl")]
    base = [record["reply"] for record in read_predictions(tmp_path / "base_predictions.jsonl")]
    for name, reward in (("format", format_reward), ("length", length_reward)):
        assert summary["rewards"][name] == pytest.approx(sum(reward(ours)) / 4)
        assert summary["base"]["rewards"][name] == pytest.approx(sum(reward(base)) / 4)
        compared = summary["reward_comparison"][name]
        assert compared["gain"] == pytest.approx(compared["after"] - compared["before"])
        assert compared["ci95"][0] <= compared["gain"] <= compared["ci95"][1]
    assert set(summary["base"]["rewards"]) == set(REWARDS)

    table = results_table(summary).set_index("metric")
    row = table.loc["reward: format (max 2)"]
    assert (row["ours"], row["base"]) == (
        round(summary["rewards"]["format"], 2),
        round(summary["base"]["rewards"]["format"], 2),
    )
    assert row["ours - base"] == round(summary["rewards"]["format"] - summary["base"]["rewards"]["format"], 2)
    low, high = summary["reward_comparison"]["format"]["ci95"]
    assert row["95% CI"] == f"[{low:+.2f}, {high:+.2f}]"
    low, high = summary["comparison"]["ci_low"], summary["comparison"]["ci_high"]
    assert table.loc["project metric: accuracy", "95% CI"] == f"[{low:+.2f}, {high:+.2f}]"
    assert [metric for metric in table.index if metric.startswith("reward: ")] == [
        *(f"reward: {name}" + (f" (max {m:g})" if m else "") for name, m in REWARD_MAXIMA.items()),
        "reward: total",
    ]
    shown = [line for line in printed.splitlines() if "reward: format (max 2)" in line]
    assert len(shown) == 1 and f"[{summary['reward_comparison']['format']['ci95'][0]:+.2f}," in shown[0]
    assert "NaN" not in printed and "nan" not in printed


# --------------------------------------------------------------------------------------------
# An interrupted evaluation resumes
# --------------------------------------------------------------------------------------------


def test_an_evaluation_killed_halfway_resumes_from_the_answers_it_wrote(tmp_path, tiny_model_dir):
    out = tmp_path / "eval"
    flags = ["--vlm-name", "tiny", "--dataset-name", "synthetic", "--limit", "24", "--batch-size", "1"]
    flags += ["--max-new-tokens", "48", "--no-progress", "--output-dir", str(out)]
    process = command("eval", *flags, root=tmp_path, start_new_session=True)
    predictions = out / "predictions.jsonl"
    deadline = time.monotonic() + 240
    while not (predictions.is_file() and len(predictions.read_text().splitlines()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line the kill cut short is skipped, with a warning
        written = len(read_jsonl(predictions))
    assert 3 <= written < 24

    code, printed, err = finished(command("eval", *flags, root=tmp_path))
    assert code == 0, err[-3000:]
    assert (
        f"Resuming {predictions}: {written} of 24 answers were already written with these settings; answering the "
        f"other {24 - written}."
    ) in printed.splitlines()
    resumed = read_predictions(predictions)
    assert [record["index"] for record in resumed] == list(range(24))
    assert json.loads((out / "summary.json").read_text())["resumed_answers"] == written

    config = EvalConfig(limit=24, batch_size=1, max_new_tokens=48, progress=False)
    whole = run_evaluation("tiny", "synthetic", config, output_dir=tmp_path / "whole", verbose=False)
    assert [record["reply"] for record in resumed] == [record["reply"] for record in whole.predictions]


def test_a_larger_limit_extends_an_evaluation_and_other_settings_start_over(tmp_path, capsys):
    config = EvalConfig(limit=3, batch_size=3, max_new_tokens=8, progress=False)
    run_evaluation("tiny", "synthetic", config, output_dir=tmp_path, verbose=False)
    first = read_predictions(tmp_path / "predictions.jsonl")
    longer = EvalConfig(limit=5, batch_size=2, max_new_tokens=8, progress=False)
    result = run_evaluation("tiny", "synthetic", longer, output_dir=tmp_path, verbose=False)
    assert result.summary["resumed_answers"] == 3 and len(result.predictions) == 5
    assert read_predictions(tmp_path / "predictions.jsonl")[:3] == first

    other = EvalConfig(limit=2, batch_size=2, max_new_tokens=4, progress=False)
    assert f"Resuming {tmp_path / 'predictions.jsonl'}: 3 of 5 answers" in capsys.readouterr().out
    result = run_evaluation("tiny", "synthetic", other, output_dir=tmp_path, verbose=False)
    assert result.summary["resumed_answers"] == 0
    assert (
        f"{tmp_path} held predictions made with other settings (max_new_tokens 8 -> 4): moved them to "
        f"{tmp_path / 'previous'}; evaluating from the start."
    ) in capsys.readouterr().out.splitlines()
    assert len(read_predictions(tmp_path / "previous" / "predictions.jsonl")) == 5
