"""Batched multimodal log-probabilities equal per-sequence ones (pins TRL / transformers versions).

The GRPO loss is built from the per-token log-probabilities of each completion, computed for a
padded micro-batch: prompts left-padded to the longest, completions right-padded, images of
different sizes concatenated into one ``pixel_values``, ``mm_token_type_ids`` marking image
tokens. A padding bug there (it has happened in TRL: left- vs right-padded multimodal token-type
ids) silently corrupts every gradient. Here the micro-batch the trainer really trained on is
captured, and the trainer's own log-probability method is run on it and on each sequence alone.
"""

import pytest

from chartrvr_nb.models import fork_lora_config, load_model_and_processor, model_threads
from chartrvr_nb.presets import get_preset
from chartrvr_nb.prompts import build_messages

# Image sides on the 28-pixel grid, inside the tiny processor's 56..224 px bounds, and questions of
# different lengths: every sequence of the micro-batch is padded differently.
SIZES = [(224, 168), (112, 84), (168, 140)]
QUESTIONS = [
    "What is the largest value?",
    "Looking at every series in this chart, which category has the smallest value, and by how much?",
    "Sum the values.",
]


@pytest.fixture(scope="module")
def captured(tiny_model_dir, tmp_path_factory):
    """A trainer after one GRPO step, and the micro-batch its loss was computed on."""
    from datasets import Dataset

    from chartrvr_nb.data import make_synthetic_rows
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.rewards import get_rewards
    from chartrvr_nb.trainer import ChartRVRTrainer

    rows = make_synthetic_rows(len(SIZES), seed=5)
    dataset = Dataset.from_list(
        [
            {**row, "prompt": build_messages(question), "image": row["image"].resize(size)}
            for row, question, size in zip(rows, QUESTIONS, SIZES)
        ]
    )
    # One micro-batch of all 3 prompts x 2 generations; completions of up to 24 tokens.
    preset = get_preset("smoke", batch_size=6, grad_accum=1, subset_size=3, max_completion_length=24)
    model, processor = load_model_and_processor("tiny", max_pixels=preset.max_pixels)
    out = tmp_path_factory.mktemp("logprobs")
    trainer = ChartRVRTrainer(
        model=model,
        reward_funcs=get_rewards(),
        args=grpo_config(preset, out, max_steps=1, save_strategy="no", disable_tqdm=True),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=fork_lora_config(),
        samples_path=out / "samples.jsonl",
        sample_every=preset.sample_every,
    )
    batches = []
    compute_loss = trainer._compute_loss

    def recording(model, inputs):
        batches.append(inputs)
        return compute_loss(model, inputs)

    trainer._compute_loss = recording
    with model_threads("tiny"):  # as train() runs it: one torch thread on CPU
        trainer.train()
    assert len(batches) == 1
    return trainer, batches[0]


def _sequence_inputs(batch: dict, index: int) -> dict:
    """Sequence ``index`` of a padded micro-batch, alone and without padding."""
    import torch

    prompt = batch["prompt_mask"][index].bool()
    length = int(batch["completion_mask"][index].sum())
    rows = batch["image_grid_thw"].prod(dim=-1)
    start = int(rows[:index].sum())
    token_types = batch["mm_token_type_ids"][index]
    prompt_width = batch["prompt_ids"].size(1)
    return {
        "input_ids": torch.cat([batch["prompt_ids"][index][prompt], batch["completion_ids"][index][:length]])[None],
        "attention_mask": torch.ones(1, int(prompt.sum()) + length, dtype=batch["prompt_mask"].dtype),
        "logits_to_keep": length,
        "pixel_values": batch["pixel_values"][start : start + int(rows[index])],
        "image_grid_thw": batch["image_grid_thw"][index : index + 1],
        "num_images": [1],
        "mm_token_type_ids": torch.cat(
            [token_types[:prompt_width][prompt], token_types[prompt_width : prompt_width + length]]
        )[None],
    }


def test_batched_completion_logprobs_equal_each_sequence_alone(captured):
    import torch

    trainer, batch = captured
    model = trainer.model.eval()  # no LoRA dropout: both passes must see the same function
    prompt_lengths = batch["prompt_mask"].sum(dim=1).tolist()
    assert len(set(prompt_lengths)) == len(SIZES), "each prompt should be padded differently"
    assert len({tuple(t) for t in batch["image_grid_thw"].tolist()}) == len(SIZES)
    assert batch["mm_token_type_ids"].size(1) == batch["prompt_ids"].size(1) + batch["completion_ids"].size(1)

    with torch.no_grad():
        batched, _, _ = trainer._get_per_token_logps_and_entropies(
            model,
            torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1),
            torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1),
            batch["completion_ids"].size(1),
            pixel_values=batch["pixel_values"],
            image_grid_thw=batch["image_grid_thw"],
            num_images=batch["num_images"],
            mm_token_type_ids=batch["mm_token_type_ids"],
        )
        for index in range(batch["prompt_ids"].size(0)):
            single = _sequence_inputs(batch, index)
            alone, _, _ = trainer._get_per_token_logps_and_entropies(
                model, single.pop("input_ids"), single.pop("attention_mask"), single.pop("logits_to_keep"), **single
            )
            length = alone.size(1)
            assert alone.dtype == torch.float32
            torch.testing.assert_close(batched[index, :length], alone[0], atol=1e-4, rtol=0)
