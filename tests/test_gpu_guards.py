"""What keeps a real GPU run from failing where others' have, checked on CPU.

- On a GPU without native bf16 (T4, V100) the vision tower computes in fp32 and a 4-bit language model in fp16:
  the tiny model loaded with that plan on CPU, run under fp16 autocast as the Trainer's fp16 mixed precision
  runs it. QLoRA adapters stay fp32 although TRL casts them to bf16.
- vLLM with a 4-bit base is refused before anything loads, whether vLLM is installed or not; vLLM's prompt
  ids are compared with the processor's (made-up ids here; ``bench.gpu_check`` runs it with vLLM).
- The colab-t4 memory figure on a T4 carries the fp32 vision tower.
"""

import importlib.util

import pytest
import torch

from chartrvr_nb import dtypes, models
from chartrvr_nb.dtypes import DtypePlan, dtype_plan, vision_tower
from chartrvr_nb.models import load_model_and_processor


@pytest.mark.parametrize(
    "machine, expected",
    [
        (dict(cuda=False, bf16=False), ("float32", "float32", "no")),
        (dict(cuda=False, bf16=False, load_in_4bit=True), ("float32", "float32", "no")),
        (dict(cuda=True, bf16=True), ("bfloat16", "bfloat16", "bf16")),
        (dict(cuda=True, bf16=True, load_in_4bit=True), ("bfloat16", "bfloat16", "bf16")),
        (dict(cuda=True, bf16=True, full_finetune=True), ("float32", "float32", "bf16")),
        (dict(cuda=True, bf16=False, load_in_4bit=True), ("float16", "float32", "fp16")),  # colab-t4 on a T4
        (dict(cuda=True, bf16=False), ("float32", "float32", "fp16")),
        (dict(cuda=True, bf16=False, full_finetune=True), ("float32", "float32", "fp16")),
    ],
)
def test_the_dtype_plan_follows_the_machine(machine, expected):
    plan = dtype_plan(**machine)
    assert (plan.weights, plan.vision, plan.mixed_precision) == expected
    assert plan.vision_outside_autocast is (expected[2] == "fp16")


def test_this_machines_plan_reads_the_gpus_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert dtypes.machine_dtype_plan(load_in_4bit=True) == DtypePlan("float16", "float32", "fp16")
    assert dtypes.default_dtype(load_in_4bit=True) is torch.float16


def forward_dtypes(model, processor) -> tuple[dict, torch.Tensor]:
    """One forward pass with a chart under fp16 autocast: the dtype each tower's last MLP projection computes in
    (its output's), and the logits."""
    from chartrvr_nb.data import make_synthetic_rows
    from chartrvr_nb.prompts import build_messages

    seen = {}
    vision = vision_tower(model).blocks[-1].mlp.down_proj
    vision_hook = vision.register_forward_hook(lambda m, i, o: seen.update(vision=o.dtype))
    language = model.model.language_model.layers[-1].mlp.down_proj
    language_hook = language.register_forward_hook(lambda m, i, o: seen.update(language=o.dtype))
    row = make_synthetic_rows(1, seed=3, max_pixels=224 * 224)[0]
    text = processor.apply_chat_template(build_messages(row["query"]), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[row["image"]], return_tensors="pt")
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):  # as Trainer(fp16=True) runs a forward
            logits = model(**inputs).logits
    finally:
        vision_hook.remove()
        language_hook.remove()
    return seen, logits


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="4-bit needs bitsandbytes")
def test_without_bf16_a_4bit_language_model_computes_in_fp16_and_the_vision_tower_in_fp32(tiny_model_dir):
    import bitsandbytes as bnb

    plan = dtype_plan(cuda=True, bf16=False, load_in_4bit=True)  # a T4 running colab-t4, simulated on CPU
    model, processor = load_model_and_processor("tiny", load_in_4bit=True, plan=plan)
    assert {p.dtype for p in vision_tower(model).parameters()} == {torch.float32}
    quantised = [m for m in model.model.language_model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantised and {m.compute_dtype for m in quantised} == {torch.float16}
    assert model.model.language_model.embed_tokens.weight.dtype == torch.float16
    seen, logits = forward_dtypes(model, processor)
    assert seen == {"vision": torch.float32, "language": torch.float16}
    assert logits.dtype == torch.float16 and torch.isfinite(logits).all()


def test_without_bf16_full_weights_stay_fp32_and_autocast_leaves_the_vision_tower_alone(tiny_model_dir):
    model, processor = load_model_and_processor("tiny", plan=dtype_plan(cuda=True, bf16=False))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    seen, logits = forward_dtypes(model, processor)
    assert seen == {"vision": torch.float32, "language": torch.float16}
    assert torch.isfinite(logits).all()
    # Without the plan's guard fp16 autocast runs the same fp32 tower in fp16: the guard is what keeps it fp32.
    plain, _ = load_model_and_processor("tiny", plan=dtype_plan(cuda=False, bf16=False))
    assert forward_dtypes(plain, processor)[0] == {"vision": torch.float16, "language": torch.float16}


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="4-bit needs bitsandbytes")
def test_qlora_adapters_train_in_fp32_although_trl_casts_them_to_bf16(tmp_path, tiny_model_dir, monkeypatch):
    from chartrvr_nb import trainer as trainer_module
    from chartrvr_nb.console import quiet_known_warnings
    from chartrvr_nb.data import make_synthetic_dataset, prepare_grpo_dataset
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.presets import get_preset

    preset = get_preset("smoke", load_in_4bit=True, subset_size=4)
    dataset = prepare_grpo_dataset(make_synthetic_dataset(4, seed=0), max_pixels=preset.max_pixels)

    def trainable_dtypes():
        model, processor = load_model_and_processor("tiny", load_in_4bit=True, max_pixels=preset.max_pixels)
        with quiet_known_warnings():
            args = grpo_config(preset, tmp_path, max_steps=1, save_strategy="no", disable_tqdm=True)
            built = trainer_module.build_trainer(preset, model, processor, dataset, args, [], tmp_path / "s.jsonl")
        return {p.dtype for p in built.model.parameters() if p.requires_grad}

    assert trainable_dtypes() == {torch.float32}
    monkeypatch.setattr(trainer_module, "_adapters_in_fp32", lambda model: None)
    assert trainable_dtypes() == {torch.bfloat16}  # what TRL 1.16 leaves: the fp32 cast is what fixes it


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="4-bit needs bitsandbytes")
def test_grpo_steps_on_the_t4_plan_keep_the_vision_tower_fp32_and_train_both_towers(tmp_path, tiny_model_dir):
    """4 GRPO steps with the T4's plan under fp16 autocast (the Trainer's fp16 mixed precision, simulated on
    CPU; gradient checkpointing on, so the vision blocks are recomputed in the backward pass too)."""
    from chartrvr_nb.console import quiet_known_warnings
    from chartrvr_nb.data import make_synthetic_dataset, prepare_grpo_dataset
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.models import model_threads
    from chartrvr_nb.presets import get_preset
    from chartrvr_nb.trainer import build_trainer

    preset = get_preset("smoke", load_in_4bit=True, subset_size=8, max_completion_length=120)
    dataset = prepare_grpo_dataset(make_synthetic_dataset(8, seed=0), max_pixels=preset.max_pixels)
    plan = dtype_plan(cuda=True, bf16=False, load_in_4bit=True)
    model, processor = load_model_and_processor("tiny", load_in_4bit=True, max_pixels=preset.max_pixels, plan=plan)
    seen = {"vision": set(), "language": set()}
    vision_tower(model).blocks[-1].mlp.down_proj.register_forward_hook(lambda m, i, o: seen["vision"].add(o.dtype))
    language = model.model.language_model.layers[-1].mlp.down_proj
    language.register_forward_hook(lambda m, i, o: seen["language"].add(o.dtype))
    with quiet_known_warnings():
        args = grpo_config(preset, tmp_path, max_steps=4, save_strategy="no", disable_tqdm=True)
        trainer = build_trainer(preset, model, processor, dataset, args, [], tmp_path / "samples.jsonl")
        with model_threads("tiny"), torch.autocast("cpu", dtype=torch.float16):
            trainer.train()
    assert seen == {"vision": {torch.float32}, "language": {torch.float16}}
    lora_b = {name: p for name, p in trainer.model.named_parameters() if "lora_B" in name}
    for tower in (".visual.", ".language_model."):  # LoRA B starts at 0: non-zero means it learned
        assert any(p.abs().sum() > 0 for name, p in lora_b.items() if tower in name), tower
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}


# --------------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vllm_installed", [False, True])
def test_vllm_with_a_4bit_base_is_refused_before_anything_loads(vllm_installed, monkeypatch, capsys):
    from chartrvr_nb.cli import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (object() if vllm_installed else None) if name == "vllm" else find_spec(name, *a),
    )
    monkeypatch.setattr(models, "load_model_and_processor", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["grpo", "--preset", "colab-t4", "--use-vllm"]) == 2
    assert main(["grpo", "--preset", "ultra-fast", "--use-vllm", "--load-in-4bit"]) == 2
    colab, ultra = capsys.readouterr().err.splitlines()
    assert colab.startswith("error: Invalid preset 'colab-t4': use_vllm (--use-vllm) cannot generate for a 4-bit")
    for reason in ("huggingface/trl#4973, #3466, #3125", "drop --use-vllm", "drop --load-in-4bit"):
        assert reason in colab
    assert ultra.replace("'ultra-fast'", "'colab-t4'") == colab  # the same words, installed or not


def test_vllm_prompt_ids_are_compared_with_the_processors():
    from chartrvr_nb.trainer import prompt_ids_mismatch

    image = 151655
    sent = [[1, 2, image, image, image, 3], [1, image, image, 4]]
    assert prompt_ids_mismatch(sent, [list(ids) for ids in sent], image) is None
    assert prompt_ids_mismatch(sent, [tuple(ids) for ids in sent], image) is None  # vLLM may return tuples
    twice = [[1, 2, image, image, image, image, image, image, 3], sent[1]]  # the image expanded a second time
    problem = prompt_ids_mismatch(sent, twice, image)
    assert problem.startswith(
        "vLLM generated from other prompt token ids than the processor made: prompt 0 has 6 tokens (3 image tokens) "
        "from the processor and 9 (6 image tokens) in vLLM, first differing at position 5."
    )
    assert "huggingface/trl#6294, #6401" in problem and "drop --use-vllm" in problem
    assert "prompt 1 has 4 tokens" in prompt_ids_mismatch(sent, [sent[0], [1, image, 4]], image)
    assert prompt_ids_mismatch(sent, sent[:1], image) == "vLLM returned 1 prompts for the 2 it was given."


def test_a_vllm_generation_round_with_other_prompt_ids_stops_the_run():
    import functools

    from chartrvr_nb.trainer import _checked_vllm_generate

    def generate(prompts, images, num_generations, profiler=None):  # TRL's VLLMGeneration.generate, made up
        used = [[*ids, 7] if 7 in ids else ids for ids in prompts]  # "expands" image token 7 once more
        return used, [[5, 6]] * len(prompts), None, None

    checked = functools.partial(_checked_vllm_generate, generate, 7)
    output = checked(prompts=[[1, 2, 3]], images=None, num_generations=2)
    assert output[1] == [[5, 6]]
    with pytest.raises(RuntimeError, match="prompt 0 has 3 tokens \\(1 image tokens\\) from the processor and 4"):
        checked(prompts=[[1, 7, 3]], images=None, num_generations=2)


def test_the_colab_t4_memory_figure_on_a_t4_carries_the_fp32_vision_tower():
    from transformers import AutoModelForImageTextToText

    from chartrvr_nb.estimate import estimate
    from chartrvr_nb.step_figures import FP32_VISION_GB, VISION_TOWER_PARAMETERS

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(models.qwen2_5_vl_3b_config())
    assert VISION_TOWER_PARAMETERS == sum(p.numel() for p in vision_tower(model).parameters()) == 668_684_288
    # 2 more bytes per parameter: 1.337 GB; activations 2 images x 32 blocks x 1,280 x 1,280 x 2 bytes: 0.210 GB.
    assert FP32_VISION_GB == pytest.approx((1.337, 1.547), abs=1e-3)
    on_t4, on_l4 = estimate("colab-t4", gpu="t4"), estimate("colab-t4", gpu="l4")
    assert on_l4.peak_memory_gb == (7.0, 8.0)  # the seed's 12-13 GB less 5 GB for 4-bit weights
    assert on_t4.peak_memory_gb == pytest.approx((8.337, 9.547), abs=1e-3)
    assert "vision tower in fp32" in on_t4.figures_source
    assert estimate("ultra-fast", gpu="t4").peak_memory_gb == estimate("ultra-fast", gpu="l4").peak_memory_gb
