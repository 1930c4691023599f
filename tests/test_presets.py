"""Presets and evaluation settings: the seed's table, validation on creation, strict overrides, help text."""

import dataclasses
import re

import pytest

from chartrvr_nb.presets import (
    DEFAULT_MAX_NEW_TOKENS,
    PAPER_TRAIN_DATA,
    PAPER_TRAIN_ROWS,
    PRESETS,
    EvalConfig,
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


def test_paper_fixed_settings():
    paper = PRESETS["paper"]
    assert (paper.lora_r, paper.lora_alpha, paper.lora_dropout) == (8, 16, 0.05)
    assert (paper.learning_rate, paper.beta, paper.grad_accum) == (1e-5, 0.0, 2)
    assert (paper.max_prompt_length, paper.max_completion_length, paper.save_steps) == (4096, 768, 500)
    assert paper.max_pixels == 320 * 28 * 28 and paper.seed == 2025
    assert paper.output_dir() == "grpo-start-ckpts/qwen2-5-3b-prm-large-train-v2-2025"
    assert paper.num_samples == PAPER_TRAIN_ROWS


def test_presets_name_the_training_set_that_data_loads_by_default():
    from chartrvr_nb.data import TRAIN_DATASET

    assert PRESETS["paper"].train_data == PAPER_TRAIN_DATA == TRAIN_DATASET


def test_only_colab_t4_quantises_and_only_the_tiny_model_presets_run_without_gpu():
    assert [n for n, p in PRESETS.items() if p.load_in_4bit] == ["colab-t4"]
    assert [n for n, p in PRESETS.items() if not p.requires_gpu] == ["smoke", "learn-check"]
    assert PRESETS["smoke"].train_data == "synthetic"


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
