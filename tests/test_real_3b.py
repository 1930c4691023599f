"""The real Qwen2.5-VL-3B architecture through the project's trainer: one GRPO step, save, reload.

Full width (hidden 2048, intermediate 11008, 16/2 heads, vision 1280 wide), the full
151,936-entry vocabulary with Qwen2.5's special-token ids, the 3B's image processor at the paper's
320*28*28 pixel budget (320 image tokens a chart), the paper's LoRA targets; cut to one text layer
and one vision block so that a 2-core CI runs it. Random weights (the hub is unreachable): step
code, shapes and dtypes are what is checked, not what the model says.
"""

import pytest

from chartrvr_nb.models import count_parameters, fork_lora_config
from chartrvr_nb.presets import AUTHORS_TRAIN_PIXELS, get_preset

# The paper's 18,576,384 trainable LoRA parameters are 36 text layers x 415,744 (q,k,v,o,gate,up,
# down at r=8) plus 32 vision blocks x 112,800 (gate/up/down_proj of the vision MLPs).
LORA_PER_TEXT_LAYER = 415_744
LORA_PER_VISION_BLOCK = 112_800


@pytest.fixture(scope="module")
def model_and_processor():
    import torch
    from transformers import AutoModelForImageTextToText

    from bench.random_3b import QWEN2_5_VL_3B_MIN_PIXELS, config_3b, processor_3b

    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config_3b(layers=1), dtype=torch.float32)
    processor = processor_3b()
    # As load_model_and_processor(..., max_pixels=AUTHORS_TRAIN_PIXELS) bounds the real processor.
    processor.image_processor.size = {"shortest_edge": QWEN2_5_VL_3B_MIN_PIXELS, "longest_edge": AUTHORS_TRAIN_PIXELS}
    return model, processor


def rank_in_group(completions, **kwargs):
    """0, 1, 0, 1, ...: random weights earn the seven rewards equally, and equal rewards in a group
    have zero advantage, hence zero gradient; this makes the step's update non-zero."""
    return [float(index % 2) for index in range(len(completions))]


def test_one_grpo_step_on_the_3b_architecture_saves_and_reloads_the_adapter(model_and_processor, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    from bench.train_step import bench_dataset
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.rewards import get_rewards
    from chartrvr_nb.trainer import ChartRVRTrainer

    model, processor = model_and_processor
    text = model.config.text_config
    assert (text.vocab_size, text.hidden_size, text.intermediate_size) == (151_936, 2048, 11_008)
    assert (model.config.vision_config.hidden_size, model.config.vision_config.out_hidden_size) == (1280, 2048)
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|image_pad|>"]) == [151643, 151645, 151655]
    assert model.config.image_token_id == 151655

    # One optimizer step: 1 prompt x 2 generations = batch 2 x grad accum 1; 8-token completions.
    preset = get_preset("paper", num_generations=2, grad_accum=1, max_completion_length=8, save_steps=1)
    dataset = bench_dataset(2, AUTHORS_TRAIN_PIXELS, seed=0)
    prompt = processor.apply_chat_template(dataset[0]["prompt"], add_generation_prompt=True, tokenize=False)
    encoded = processor(text=[prompt], images=[dataset[0]["image"]], return_tensors="pt")
    image_tokens = int((encoded["input_ids"] == 151655).sum())
    assert 0.9 * 320 <= image_tokens <= AUTHORS_TRAIN_PIXELS // (28 * 28) == 320  # the chart fills the budget

    out = tmp_path / "run"
    trainer = ChartRVRTrainer(
        model=model,
        reward_funcs=[*get_rewards(), rank_in_group],
        args=grpo_config(  # one weight for each of the seven rewards and the rank probe
            preset,
            out,
            max_steps=1,
            generation_kwargs={"min_new_tokens": 8},
            disable_tqdm=True,
            reward_weights=[1.0] * 8,
        ),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=fork_lora_config(),
        samples_path=out / "samples.jsonl",
        sample_every=preset.sample_every,
    )
    trainable, _ = count_parameters(trainer.model)
    assert trainable == LORA_PER_TEXT_LAYER + LORA_PER_VISION_BLOCK
    assert 36 * LORA_PER_TEXT_LAYER + 32 * LORA_PER_VISION_BLOCK == 18_576_384
    trainer.train()
    assert trainer.state.global_step == 1

    checkpoint = out / "checkpoint-1"
    saved = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert sum(t.numel() for t in saved.values()) == trainable
    learned = [k for k, t in saved.items() if "lora_B" in k and t.abs().sum() > 0]  # B starts at zero
    assert any(".language_model." in k for k in learned) and any(".visual." in k for k in learned)

    reloaded = PeftModel.from_pretrained(trainer.model.unload(), checkpoint)
    state = {k.replace(".default", ""): v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert set(state) == {f"base_model.model.{k}" if not k.startswith("base_model.") else k for k in saved}
    for name, tensor in saved.items():
        key = name if name.startswith("base_model.") else f"base_model.model.{name}"
        assert torch.equal(state[key], tensor), name
