"""The speed benches run end to end in their quick modes and print their ratio lines.

The benches are imported from the repository root (``python -m bench.<name>`` is how users run
them) and called in-process, so torch and transformers load once for all of them. Timings are
printed, never asserted: this machine is shared, only the behaviour is checked.
"""

import importlib.util
import re

import pytest

from bench import rewards as bench_rewards

RATIO = re.compile(
    r"^RATIO (?P<what>.+): (?P<new>.+?) (?P<new_rate>[\d.]+) vs (?P<old>.+?) (?P<old_rate>[\d.]+) = (?P<ratio>[\d.]+)x$"
)


@pytest.fixture
def one_thread(monkeypatch):
    """Quick benches on one torch thread (faster on a shared machine); the setting is restored after."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def ratio_lines(output: str) -> list[re.Match]:
    matches = [RATIO.match(line) for line in output.splitlines()]
    return [m for m in matches if m]


def test_rewards_bench_prints_first_step_and_steady_state_ratios(one_thread, capsys):
    assert bench_rewards.main(["--quick", "--threads", "1"]) == 0
    output = capsys.readouterr().out
    lines = ratio_lines(output)
    assert len(lines) == 2 and "first (step 1" in lines[0]["what"] and "steady state (step 2" in lines[1]["what"]
    assert all(float(m["new_rate"]) > 0 and float(m["old_rate"]) > 0 for m in lines)
    assert "agreement with one-at-a-time" in output  # batched scores were checked against the baseline
    rows = {line.split("  ")[0] for line in output.splitlines()}
    assert {"format", "table_style", "process", "full set"} <= rows  # one row per reward and the total


def test_reward_bench_batch_groups_share_one_reference():
    rows = [
        {
            "chart_type": "bar",
            "table": {"columns": ["x", "y"], "rows": [["a", "1"], ["b", "3"]]},
            "label": "3",
            "reasoning": f"<step-1>: Read b. <step-2>: It is 3 (row {i}).",
        }
        for i in range(3)
    ]
    completions, columns = bench_rewards.make_step_batch(rows, generations=4, step=0, seed=1)
    assert len(completions) == 12 and all(len(values) == 12 for values in columns.values())
    assert columns["reasoning"][:4] == [rows[0]["reasoning"]] * 4
    assert len(set(columns["reasoning"])) == 3
    assert bench_rewards.make_step_batch(rows, 4, step=0, seed=1)[0] == completions  # deterministic
    assert bench_rewards.make_step_batch(rows, 4, step=1, seed=1)[0] != completions  # new completions per step


def test_every_completion_variant_is_scored_without_error():
    import random

    row = {
        "chart_type": "pie",
        "table": {"columns": ["k", "v"], "rows": [["a", "2"]]},
        "label": "2",
        "reasoning": "<step-1>: Read a. <step-2>: It is 2.",
    }
    from chartrvr_nb.rewards import format_reward

    texts = {v: bench_rewards.make_completion(row, v, random.Random(0)) for v in bench_rewards.VARIANTS}
    assert format_reward([texts["exact"], texts["answer_only"], texts["cut_off"]]) == [2.0, 0.0, 0.0]
    assert "```json" in texts["fenced_table"] and len(texts["rambling"]) > 1000


def test_train_step_bench_dry_runs_real_grpo_steps(one_thread, capsys):
    from bench import train_step

    assert train_step.main(["--quick", "--threads", "1"]) == 0
    output = capsys.readouterr().out
    assert "HF generate, grad ckpt on" in output and "HF generate, grad ckpt off" in output
    rows = [line.split() for line in output.splitlines() if line.startswith("HF generate")]
    assert all(row[-1] == "8" for row in rows)  # completions forced to exactly 8 tokens
    (line,) = ratio_lines(output)
    assert line["what"] == "optimizer steps/hour (smoke)"


def test_eval_bench_quick_compares_batched_with_one_at_a_time(one_thread, capsys):
    from bench import eval as bench_eval

    assert bench_eval.main(["--quick", "--threads", "1"]) == 0
    output = capsys.readouterr().out
    (line,) = ratio_lines(output)
    assert line["what"] == "examples/s at batch 8"
    assert line["new"] == "batched" and line["old"] == "one-at-a-time"


def test_filling_the_pixel_budget_lands_on_the_patch_grid_within_budget():
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from chartrvr_nb.data import fit_to_pixel_budget

    budget = 320 * 28 * 28
    for size in [(320, 240), (1200, 300), (50, 60), (2000, 1500)]:
        width, height = fit_to_pixel_budget(Image.new("RGB", size), budget, upscale=True).size
        assert width % 28 == 0 and height % 28 == 0 and width * height <= budget
        # On the grid and within bounds: the trainer's processor and vLLM's see the same image.
        assert smart_resize(height, width, 28, 3136, budget) == (height, width)
        assert smart_resize(height, width, 28, 3136, 12_845_056) == (height, width)


def test_full_vocab_tokenizer_has_the_3b_special_token_ids():
    from bench.random_3b import full_vocab_tokenizer
    from chartrvr_nb.models import qwen2_5_vl_3b_config

    tokenizer = full_vocab_tokenizer()
    config = qwen2_5_vl_3b_config()
    assert len(tokenizer) == 151_665 <= config.text_config.vocab_size
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    assert tokenizer.eos_token_id == config.text_config.eos_token_id == 151645


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_use_vllm_without_vllm_names_the_install_and_the_default(tmp_path):
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.presets import get_preset

    with pytest.raises(ImportError, match=r"pip install 'vllm.*default"):
        grpo_config(get_preset("smoke", use_vllm=True), tmp_path)
