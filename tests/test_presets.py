"""Presets and evaluation settings: the seed's table, validation on creation, strict overrides, help text."""

import dataclasses
import re

import pytest

from chartrvr_nb.eval_config import DEFAULT_MAX_NEW_TOKENS, EvalConfig
from chartrvr_nb.presets import (
    AUTHORS_TRAIN_DATA,
    AUTHORS_TRAIN_ROWS,
    PRESETS,
    Preset,
    as_preset,
    get_preset,
)
from chartrvr_nb.settings import options

SEED_TABLE = {  # preset: (samples, epochs, generations, batch, gradient checkpointing, model)
    "paper": (34_194, 4, 4, 2, True, "qwen2-5-3b"),
    "safe": (34_194, 1, 4, 2, True, "qwen2-5-3b"),
    "moderate": (34_194, 1, 2, 2, True, "qwen2-5-3b"),
    "fast": (10_000, 1, 2, 2, True, "qwen2-5-3b"),
    "fast-nockpt": (10_000, 1, 2, 2, False, "qwen2-5-3b"),
    "ultra-fast": (1_000, 1, 2, 2, True, "qwen2-5-3b"),
    "colab-t4": (1_000, 1, 2, 2, True, "qwen2-5-3b"),
    "smoke": (32, 1, 2, 2, True, "tiny"),
}
SEED_FLAGS = {  # the seed guide's flags (README "Command line", main.py) -> the field each sets
    "--vlm-name": "model",
    "--dataset-name": "eval_dataset",
    "--seed": "seed",
    "--subset-size": "subset_size",
    "--num-epochs": "num_epochs",
    "--num-generations": "num_generations",
    "--batch-size": "batch_size",
    "--disable-gradient-checkpointing": "gradient_checkpointing",
}


@pytest.mark.parametrize("name", list(SEED_TABLE))
def test_presets_match_the_spec_table(name):
    preset = PRESETS[name]
    assert preset.name == name
    assert (
        preset.num_samples,
        preset.num_epochs,
        preset.num_generations,
        preset.batch_size,
        preset.gradient_checkpointing,
        preset.model,
    ) == SEED_TABLE[name]


def test_full_ft_is_the_authors_recipe():
    """sanchit97/chartrl@83c4406 main.py 694-722: every parameter, TRL 0.20's lr 1e-6, 4 epochs, 4 generations,
    batch 2, bnpo, beta 0; 4 completions per optimizer step (their 2 GPUs x 2 x 1; one GPU: 2 x 2)."""
    full = PRESETS["full-ft"]
    assert (full.finetune, full.learning_rate, full.num_epochs, full.num_generations) == ("full", 1e-6, 4, 4)
    assert (full.batch_size, full.completions_per_step, full.loss_type, full.beta) == (2, 4, "bnpo", 0.0)
    assert (full.system_prompt, full.image_resize, full.max_pixels, full.dedupe) == (
        "chart-rvr",
        "chart-rvr",
        250_880,
        True,
    )
    assert full.num_samples == 11_398 and full.requires_gpu
    assert get_preset("full-ft", model="tiny").requires_gpu is False  # the tiny model trains on CPU in any preset


def test_paper_fixed_settings():
    paper = PRESETS["paper"]
    assert (paper.lora_r, paper.lora_alpha, paper.lora_dropout) == (8, 16, 0.05)
    assert (paper.learning_rate, paper.beta, paper.grad_accum) == (1e-5, 0.0, 2)
    assert (paper.max_prompt_length, paper.max_completion_length, paper.save_steps) == (4096, 768, 500)
    assert paper.max_pixels == 320 * 28 * 28 and paper.seed == 2025
    assert (paper.finetune, paper.loss_type, paper.system_prompt, paper.image_resize) == (
        "lora",
        "bnpo",
        "chart-rvr",
        "chart-rvr",
    )
    assert paper.output_dir() == "grpo-start-ckpts/qwen2-5-3b-prm-large-train-v2-2025"
    assert paper.num_samples == AUTHORS_TRAIN_ROWS


def test_presets_name_the_training_set_that_data_loads_by_default():
    from chartrvr_nb.data import TRAIN_DATASET

    assert PRESETS["paper"].train_data == AUTHORS_TRAIN_DATA == TRAIN_DATASET


def test_only_colab_t4_quantises_and_only_the_tiny_model_presets_run_without_gpu():
    assert [n for n, p in PRESETS.items() if p.load_in_4bit] == ["colab-t4"]
    assert [n for n, p in PRESETS.items() if not p.requires_gpu] == ["smoke", "learn-check"]
    assert PRESETS["smoke"].train_data == "synthetic"
    # The tiny ones answer this project's prompt and keep their charts within 224 x 224 px.
    tiny = {n: (p.system_prompt, p.image_resize) for n, p in PRESETS.items() if not p.requires_gpu}
    assert tiny == {"smoke": ("project", "project"), "learn-check": ("project", "project")}


def test_the_choices_written_out_here_are_those_of_the_modules_that_own_them():
    from chartrvr_nb.data import IMAGE_RESIZE_MODES as data_modes
    from chartrvr_nb.presets import IMAGE_RESIZE_MODES, REWARD_COUNT, SYSTEM_PROMPTS
    from chartrvr_nb.rewards import REWARDS
    from chartrvr_nb.system_prompts import SYSTEM_PROMPT_CHOICES

    assert (SYSTEM_PROMPTS, IMAGE_RESIZE_MODES, REWARD_COUNT) == (SYSTEM_PROMPT_CHOICES, data_modes, len(REWARDS))


@pytest.mark.parametrize(
    "preset, processes, split",
    [
        ("full-ft", 1, (2, 2)),  # batch 2 x accumulation 2 = 4
        ("full-ft", 2, (2, 1)),  # the authors' 2 GPUs: accumulation goes first
        ("full-ft", 4, (1, 1)),  # then the batch
        ("learn-check", 2, (4, 1)),  # 8 completions: 2 x 4 x 1
        ("learn-check", 4, (2, 1)),
        ("learn-check", 8, (1, 1)),
    ],
)
def test_more_processes_keep_the_completions_per_step(preset, processes, split):
    from chartrvr_nb.batches import process_batches

    batches = process_batches(PRESETS[preset], processes)
    assert (batches.batch_size, batches.grad_accum) == split
    assert batches.completions == PRESETS[preset].completions_per_step


def test_completions_that_processes_cannot_share_name_the_flag_for_a_larger_batch():
    from chartrvr_nb.batches import process_batches

    with pytest.raises(ValueError) as caught:
        process_batches(PRESETS["full-ft"], 3)
    assert str(caught.value) == (
        "Preset 'full-ft' makes 4 completions per optimizer step (batch_size 2 x grad_accum 2), which 3 processes "
        "cannot share evenly (each needs a whole micro-batch). Pass a larger global batch with --grad-accum, e.g. "
        "--grad-accum 6 for 12 completions per step, or run on fewer processes."
    )
    with pytest.raises(ValueError, match="--grad-accum 4 for 8 completions"):
        process_batches(PRESETS["full-ft"], 8)


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["paper"].num_epochs = 1


def test_overrides_are_validated_again():
    assert get_preset("fast", num_generations=4, seed=7).num_generations == 4
    with pytest.raises(ValueError, match="divisible by num_generations"):
        get_preset("fast", num_generations=3)
    assert get_preset("fast", num_generations=3, generation_batch_size=6).generation_batch_size == 6


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_epochs": 0}, "num_epochs must be a positive integer"),
        ({"batch_size": -2}, "batch_size must be a positive integer"),
        ({"num_generations": 1, "batch_size": 1}, "at least 2"),
        ({"subset_size": 0}, "subset_size"),
        ({"model": "qwen-9000"}, "qwen2-5-3b"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"num_epochs": True}, "num_epochs"),
        ({"loss_type": "sapo"}, "loss_type must be one of bnpo, dapo, grpo, dr_grpo"),
        ({"system_prompt": "authors"}, "system_prompt must be one of chart-rvr, project"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"top_p": 1.5}, "top_p must be at most 1"),
        ({"reward_weights": (1.0, 2.0)}, "reward_weights needs one weight per reward"),
        ({"finetune": "full", "load_in_4bit": True}, "4-bit base weights cannot be"),
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number, got inf"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number, got nan"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm must be a finite number"),
    ],
)
def test_invalid_values_fail_on_creation(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_preset("paper", **overrides)


def test_4bit_is_valid_on_a_cpu_preset():
    # bitsandbytes' CPU kernels run NF4, so the colab-t4 path is tested on the CPU smoke preset.
    assert get_preset("smoke", load_in_4bit=True).load_in_4bit is True


def test_unknown_names_and_keys_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown preset 'turbo'.*paper, safe"):
        get_preset("turbo")
    with pytest.raises(ValueError, match=r"Unknown preset option\(s\) \['num_gens'\].*num_generations"):
        get_preset("paper", num_gens=2)
    with pytest.raises(TypeError):
        Preset(num_gens=2)


@pytest.mark.parametrize("settings_class", [Preset, EvalConfig])
def test_every_field_carries_its_help_text(settings_class):
    for field in dataclasses.fields(settings_class):
        assert len(field.metadata.get("help", "").split()) >= 2, f"{settings_class.__name__}.{field.name} needs help"


def test_the_seed_guides_flags_set_their_fields():
    flags = {option.flag: option.field for option in options(Preset)}
    assert {flag: flags[flag] for flag in SEED_FLAGS} == SEED_FLAGS
    assert {option.dest for option in options(Preset) if option.form} == {
        "subset_size",
        "num_epochs",
        "num_generations",
        "batch_size",
        "grad_accum",
        "max_completion_length",
        "save_steps",
        "seed",
        "disable_gradient_checkpointing",
        "load_in_4bit",
        "report_to",
    }


def test_the_generation_batch_rule_reads_the_same_for_presets_and_step_counts():
    from chartrvr_nb.estimate import trainer_steps

    rule = "must be divisible by num_generations (3); change batch_size or num_generations"
    with pytest.raises(ValueError, match=re.escape(f"(4 completions = batch_size * grad_accum) {rule}")):
        get_preset("fast", num_generations=3)
    with pytest.raises(ValueError, match=re.escape(f"(8 completions = batch_size * grad_accum * 2 processes) {rule}")):
        trainer_steps(100, 3, 2, 2, 1, world_size=2)


def test_eval_prompts_are_the_prompt_styles():
    from chartrvr_nb.prompts import PROMPT_STYLES

    assert list(DEFAULT_MAX_NEW_TOKENS) == list(PROMPT_STYLES)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"prompt": "chat"}, "prompt must be one of rvr, cot, direct"),
        ({"limit": -1}, "limit must be a positive integer or None"),
        ({"max_new_tokens": 1.5}, "max_new_tokens must be a positive integer or None"),
        ({"seed": "7"}, "seed must be an integer"),
    ],
)
def test_invalid_evaluation_settings_fail_on_creation(settings, message):
    with pytest.raises(ValueError, match=f"Invalid evaluation settings: {message}"):
        EvalConfig(**settings)


def test_evaluation_settings_follow_the_preset_they_evaluate():
    config = EvalConfig.for_preset("colab-t4", limit=8)
    t4 = PRESETS["colab-t4"]
    assert (config.max_new_tokens, config.max_pixels, config.load_in_4bit, config.limit) == (
        t4.max_completion_length,
        t4.max_pixels,
        True,
        8,
    )
    assert EvalConfig.for_preset("smoke", max_new_tokens=8).max_new_tokens == 8
    assert (
        EvalConfig().tokens_per_answer == 768 and EvalConfig(prompt="direct", max_new_tokens=9).tokens_per_answer == 9
    )
    assert as_preset("smoke") == PRESETS["smoke"] and as_preset(t4) is t4
