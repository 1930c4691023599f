"""Step counts against TRL's real GRPOTrainer, the seed's formula, the time/memory figures, and whether a
preset fits this machine (the setup and training notebooks' checks)."""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chartrvr_nb.estimate import (
    estimate,
    format_duration,
    format_estimate,
    seed_formula_steps,
    trainer_steps,
)
from chartrvr_nb.gpu_fit import GPU_MEMORY_GB, check_preset, estimate_table, fits_gpu, local_estimate
from chartrvr_nb.presets import PRESETS, get_preset
from chartrvr_nb.step_figures import STEP_FIGURES

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize(
    "name, steps, seed_steps",
    [
        ("paper", 136_776, 34_194),
        ("safe", 34_194, 8_549),
        ("moderate", 17_097, 8_549),
        ("fast", 5_000, 2_500),
        ("fast-nockpt", 5_000, 2_500),
        ("ultra-fast", 500, 250),
        ("colab-t4", 500, 250),
        ("smoke", 16, 8),
    ],
)
def test_preset_step_counts(name, steps, seed_steps):
    est = estimate(name)
    assert (est.steps, est.seed_steps) == (steps, seed_steps)
    assert f"{seed_steps:,} steps" in est.note and f"runs {steps:,} steps" in est.note
    assert "\n" not in est.note


@pytest.mark.parametrize("gpu", ["a100-40gb", "l4", "t4", "h100"])
def test_every_preset_has_an_estimate_on_every_gpu(gpu):
    for name in PRESETS:
        est = estimate(name, gpu=gpu)
        assert est.steps > 0 and est.total_seconds > 0 and est.figures_source
        assert format_estimate(est).startswith(f"Preset {name!r}")


def test_seed_figures_are_reproduced_for_the_reference_gpu():
    paper, moderate, nockpt = estimate("paper"), estimate("moderate"), estimate("fast-nockpt")
    assert (paper.seconds_per_step, moderate.seconds_per_step, nockpt.seconds_per_step) == (60, 30, 21)
    assert paper.peak_memory_gb == (12, 13) and nockpt.peak_memory_gb == (15, 18)
    assert paper.figures_source == "seed guide (A100 40GB)"
    # The seed's own arithmetic (its step formula x its step time) gives its "~24 days".
    assert seed_formula_steps(34_194, 2, 4) * 60 / 86400 == pytest.approx(23.7, abs=0.05)
    assert paper.total_seconds == 136_776 * 60 and paper.duration == "95.0 days"


def test_other_gpus_are_scaled_and_labelled_as_such():
    a100, l4, h100 = (estimate("fast", gpu=g) for g in ("a100-40gb", "l4", "h100"))
    assert l4.seconds_per_step > a100.seconds_per_step > h100.seconds_per_step
    for est in (l4, h100, estimate("colab-t4", gpu="t4")):
        assert est.figures_source.startswith("scaled from A100 figures, not measured")
    assert l4.steps == h100.steps == a100.steps
    assert l4.peak_memory_gb == a100.peak_memory_gb
    sources = {figure.source for key, figure in STEP_FIGURES.items() if key[0] != "a100-40gb" and key[0] != "cpu"}
    assert all("not measured" in source for source in sources)


def test_four_bit_needs_less_memory_and_cpu_presets_ignore_the_gpu():
    assert estimate("colab-t4").peak_memory_gb[1] < estimate("ultra-fast").peak_memory_gb[0]
    smoke = estimate("smoke", gpu="t4")
    assert smoke.gpu == "cpu" and smoke.total_seconds < 60
    with pytest.raises(ValueError, match="Unknown GPU 'v100'"):
        estimate("fast", gpu="v100")


def test_batch_size_changes_steps_time_per_step_and_memory():
    base, big = estimate("fast"), estimate(get_preset("fast", batch_size=4))
    assert big.steps == base.steps // 2
    assert big.seconds_per_step == 2 * base.seconds_per_step
    assert big.peak_memory_gb == (15, 20)  # the seed's batch-4 figure
    assert "scaled to batch 4" in big.figures_source


def test_unknown_generation_count_scales_from_two():
    est = estimate(get_preset("fast", num_generations=4, batch_size=4, grad_accum=1))
    assert est.steps == trainer_steps(10_000, 4, 4, 1, 1)
    three = estimate(get_preset("fast", num_generations=3, batch_size=3, grad_accum=2))
    assert "scaled to 3 generations" in three.figures_source


def test_format_estimate_block():
    text = format_estimate(estimate("fast"))
    lines = text.splitlines()
    assert lines[0] == "Preset 'fast' on A100 40GB"
    assert "5,000 (the seed's formula says 2,500)" in lines[1]
    assert any(line.split()[:2] == ["total", "time"] and "41.7 h" in line for line in lines)
    assert lines[-1].lstrip().startswith("note")


@pytest.mark.parametrize(
    "name, memory, fits",
    [("paper", 40.0, True), ("fast-nockpt", 15.0, False), ("colab-t4", 15.0, True), ("smoke", 0.0, True)],
)
def test_fits_gpu(name, memory, fits):
    ok, message = fits_gpu(name, memory)
    assert ok is fits
    assert name in message
    if not fits:
        assert "re-enable gradient checkpointing" in message


@given(
    prompts_per_round=st.integers(1, 8),
    num_generations=st.sampled_from([2, 4, 8]),
    rounds=st.integers(1, 500),
    epochs=st.integers(1, 4),
)
def test_divisible_sizes_follow_the_closed_form(prompts_per_round, num_generations, rounds, epochs):
    # batch 1 x grad_accum (prompts * gens): a generation batch is exactly one optimizer step.
    grad_accum = prompts_per_round * num_generations
    samples = rounds * prompts_per_round
    expected = samples * num_generations // (1 * grad_accum) * epochs
    assert trainer_steps(samples, num_generations, 1, grad_accum, epochs) == expected


def test_impossible_configurations_explain_themselves():
    with pytest.raises(ValueError, match="divisible by num_generations"):
        trainer_steps(100, 4, 1, 2, 1)
    with pytest.raises(ValueError, match="not fill one generation batch"):
        trainer_steps(1, 2, 2, 2, 1)


@pytest.mark.parametrize("name", ["paper", "fast-nockpt", "colab-t4"])
def test_the_fit_table_and_the_fit_check_agree(name):
    table = estimate_table(name, gpus=("t4", "l4", "a100-40gb", "h100"))
    for gpu, fits in zip(("t4", "l4", "a100-40gb", "h100"), table["fits"]):
        assert fits_gpu(name, GPU_MEMORY_GB[gpu])[0] is (fits == "yes"), (name, gpu)


# --------------------------------------------------------------------------------------------
# This machine: the setup and training notebooks' checks
# --------------------------------------------------------------------------------------------


def test_check_preset_says_what_to_change(monkeypatch):
    from chartrvr_nb import env

    assert check_preset("smoke").startswith("OK")
    monkeypatch.setattr(env, "gpu_info", lambda: None)
    assert "needs a CUDA GPU" in check_preset("colab-t4")
    t4 = env.GPUInfo("Tesla T4", 15.0, False, (7, 5))
    monkeypatch.setattr(env, "gpu_info", lambda: t4)
    assert check_preset("colab-t4").startswith("OK")
    assert "PROBLEM" in check_preset("fast-nockpt") and "NOTE" in check_preset("fast")


def test_estimate_table_per_colab_gpu():
    table = estimate_table("colab-t4")
    assert table["GPU"].tolist() == ["T4 16GB", "L4 24GB", "A100 40GB"]
    assert set(table["optimizer steps"]) == {500} and set(table["fits"]) == {"yes"}
    assert estimate_table("smoke")["GPU"].tolist() == ["CPU"]


def test_estimate_on_a_machine_without_gpu_says_whose_figures_it_shows(monkeypatch):
    from chartrvr_nb import env

    monkeypatch.setattr(env, "gpu_info", lambda: None)
    text = local_estimate("colab-t4")
    assert text.startswith("NOTE: no GPU was found on this machine") and "A100 40GB" in text.splitlines()[1]
    assert not local_estimate("smoke").startswith("NOTE")


def test_format_duration_units():
    assert [format_duration(s) for s in (5, 3600, 3 * 86400)] == ["5 s", "60 min", "3.0 days"]


def _grpo_max_steps(num_samples, num_generations, batch_size, grad_accum, num_epochs, **config):
    """``trainer.state.max_steps`` of a real TRL GRPOTrainer (tiny text Qwen2 built in code).

    Training is stopped in ``on_train_begin``, after the Trainer has fixed max_steps and
    before any generation, so this costs well under a second per call once TRL is imported.
    """
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    vocab = {"<pad>": 0, "<eos>": 1, **{word: i + 2 for i, word in enumerate("a b c d".split())}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=8,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=32,
        )
    )

    class Stop(Exception):
        pass

    class RecordMaxSteps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.max_steps = state.max_steps
            raise Stop

    recorder = RecordMaxSteps()
    args = GRPOConfig(
        output_dir="unused",
        num_generations=num_generations,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        num_train_epochs=num_epochs,
        max_completion_length=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        **config,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["a b c"] * num_samples}),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    with pytest.raises(Stop):
        trainer.train()
    return recorder.max_steps


@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")  # GRPOConfig's own default
@pytest.mark.parametrize(
    "samples, generations, batch, accum, epochs, config",
    [
        (10, 2, 2, 2, 1, {}),  # the fast preset's shape
        (7, 4, 2, 2, 2, {}),  # the paper preset's shape: one prompt per step
        (7, 2, 2, 2, 1.5, {}),  # the last half-filled generation batch is dropped; fractional epochs round up
        (10, 2, 2, 3, 1, {}),
        (10, 2, 2, 2, 1, {"generation_batch_size": 8}),
        (10, 2, 2, 2, 1, {"generation_batch_size": 6}),  # 3 micro-batches per round, grad accum 2
        (10, 2, 2, 2, 1, {"num_iterations": 2}),
    ],
)
def test_trainer_steps_matches_a_real_grpo_trainer(
    samples, generations, batch, accum, epochs, config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    expected = _grpo_max_steps(samples, generations, batch, accum, epochs, **config)
    assert trainer_steps(samples, generations, batch, accum, epochs, **config) == expected


def test_a_full_fine_tune_needs_its_model_states_in_memory():
    """16 bytes per parameter (bf16 weights and gradients, fp32 master weights, momentum and variance: ZeRO,
    arXiv:1910.02054, section 3.1) x 3,754,622,976 = 60.07 GB, plus activations: the seed's LoRA 12-13 GB less
    its 2 x 3,754,622,976 = 7.51 GB of bf16 weights. ZeRO-3 shares the states, and each GPU gathers the 7.51 GB
    bf16 model to generate."""
    one = estimate("full-ft", gpu="a100-40gb")
    assert [round(gb, 2) for gb in one.peak_memory_gb] == [64.56, 65.56]
    assert "16 bytes x 3,754,622,976 parameters = 60.1 GB" in one.figures_source
    two = estimate("full-ft", gpu="h100", world_size=2)
    assert [round(gb, 2) for gb in two.peak_memory_gb] == [42.04, 43.04]  # 30.04 + 7.51 + 4.49..5.49
    assert fits_gpu("full-ft", GPU_MEMORY_GB["a100-40gb"])[0] is False
    assert fits_gpu("full-ft", GPU_MEMORY_GB["h100"])[0] is True
    assert fits_gpu("full-ft", GPU_MEMORY_GB["a100-40gb"], processes=4)[0] is True  # 15.02 + 7.51 + 5.49 + 1


def test_the_estimate_says_when_the_authors_recipe_cannot_fit_and_what_to_do(capsys):
    from chartrvr_nb.cli import main

    assert main(["estimate", "--preset", "full-ft", "--gpu", "a100-40gb"]) == 0
    out = capsys.readouterr().out
    assert "  optimizer steps  45,592 (the seed's formula says 11,398)" in out  # 11,398 x 4 / 4 per step x 4 epochs
    assert "  GPU memory       64.6-65.6 GB peak" in out
    assert out.splitlines()[-1] == (
        "  fits             no: 64.6-65.6 GB + ~1 GB of CUDA overhead exceed the 40 GB of the A100 40GB. Under "
        "DeepSpeed ZeRO-3 its model states are shared by the GPUs: 4 such GPUs fit (accelerate launch --config_file "
        "deepspeed_zero3.yaml --num_processes 4 main.py --mode grpo --preset full-ft); or train a LoRA adapter "
        "(preset paper)."
    )
    assert main(["estimate", "--preset", "full-ft", "--gpu", "h100"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("  fits             yes: 64.6-65.6 GB")


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_more_processes_run_the_same_steps_each_a_share_of_the_time(processes):
    one, many = estimate("full-ft", gpu="h100"), estimate("full-ft", gpu="h100", world_size=processes)
    assert many.steps == one.steps == 45_592
    assert many.seconds_per_step == pytest.approx(one.seconds_per_step / processes)
    assert many.batches.startswith(f"{processes} process")


def test_dedupe_counts_the_distinct_rows_and_says_so():
    est = estimate(get_preset("paper", dedupe=True))
    assert est.steps == 11_398 * 4 // 4 * 4  # distinct rows x generations / completions per step x epochs
    assert "With --dedupe this counts 11,398 distinct rows" in est.note
    assert estimate(get_preset("paper", dedupe=True, subset_size=1000)).steps == 4_000


def test_the_7b_costs_its_weights_activations_and_time_over_the_3b():
    three, seven = estimate("paper"), estimate(get_preset("paper", model="qwen2-5-7b"))
    # Time: x 8,292,166,656 / 3,754,622,976 parameters read per generated token.
    assert seven.seconds_per_step == pytest.approx(60 * 2.2085, abs=0.01)
    # Memory: the 3B's 12-13 GB less its 7.51 GB of bf16 weights, x (28 x 3584) / (36 x 2048) = 1.3611 for
    # the activations, plus the 7B's 16.58 GB of weights.
    assert seven.peak_memory_gb == pytest.approx((22.70, 24.06), abs=0.01)
    assert "for qwen2-5-7b" in seven.figures_source and "not measured" in seven.figures_source
    assert three.seconds_per_step == 60 and three.peak_memory_gb == (12, 13)


def test_the_completion_length_scales_the_step_time():
    assert estimate(get_preset("paper", max_completion_length=384)).seconds_per_step == 30
    assert estimate(get_preset("paper", max_completion_length=1536)).seconds_per_step == 120
    assert estimate(get_preset("smoke", max_completion_length=320)).seconds_per_step == pytest.approx(2.6)
    assert "384-token completions" in estimate(get_preset("paper", max_completion_length=384)).figures_source


def test_one_check_refuses_what_cannot_train_for_estimate_and_training_alike():
    from chartrvr_nb import UserError
    from chartrvr_nb.estimate import run_steps

    with pytest.raises(UserError, match=r"1 training row does not fill .*\(--subset-size 2\)"):
        estimate(get_preset("smoke", subset_size=1))
    with pytest.raises(UserError, match=r"1 training row does not fill .*\(--subset-size 2\)"):
        run_steps(get_preset("smoke"), rows=1)  # train() asks the same once its rows are loaded
    with pytest.raises(UserError, match=r"--num-processes\) must be a positive integer, got 0"):
        estimate("smoke", world_size=0)
    assert run_steps(get_preset("smoke", train_data="my.jsonl", subset_size=None)) is None  # unknown yet
    assert run_steps(get_preset("smoke", train_data="my.jsonl", subset_size=None), rows=32) == 16
