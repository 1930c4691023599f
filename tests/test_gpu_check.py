"""``python -m bench.gpu_check --dry``: the GPU check's code paths, run on CPU with the tiny model.

Only behaviour is checked (a row per check, each beside the seed's figure); timings are printed,
never asserted. The training rows without 4-bit go through the same ``train_row`` as the
colab-t4 row, which runs here.
"""

import pytest

from bench import gpu_check


def test_dry_run_prints_the_qlora_and_eval_rows_beside_the_seed_figures(monkeypatch, capsys, tiny_model_dir):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    try:
        only = ["qlora", "dtypes", "eval"]
        assert gpu_check.main(["--dry", "--only", *only, "--completion-length", "8", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    rows = {line.split("  ")[0]: line for line in lines[header + 1 : header + 4]}
    assert set(rows) == {"colab-t4 path (4-bit)", "T4 dtype plan", "eval"}
    # The T4's plan simulated on CPU: the 4-bit language model computes in fp16, the vision tower in fp32.
    assert "vision float32, language model float16 under fp16 autocast; logits finite" in rows["T4 dtype plan"]
    assert any(line.startswith("vLLM prompt ids: not run (--dry: vLLM needs a GPU)") for line in lines)
    assert "s/step (warm-up" in rows["colab-t4 path (4-bit)"] and "2 steps" in rows["colab-t4 path (4-bit)"]
    assert "examples/s" in rows["eval"] and "batch 16 vs 1" in rows["eval"]
    assert gpu_check.SEED_FIGURES["colab-t4 path (4-bit)"] in rows["colab-t4 path (4-bit)"]


def test_without_a_gpu_only_the_dry_run_is_offered(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main([]) == 2
    assert "--dry" in capsys.readouterr().err
