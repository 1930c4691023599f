"""The project's GRPO trainer: TRL's ``GRPOTrainer`` with the run's guards, and the one function that builds it.

A heavy module: it imports torch, transformers and TRL at the top, so it is imported only inside
the functions that train (:func:`chartrvr_nb.train.train`, the benches, tests), never at a module's
top. Import it inside ``tracking.tracker_environment``: importing TRL's ``GRPOTrainer`` imports
Trackio, which reads ``TRACKIO_DIR`` once.

- :class:`ChartRVRTrainer`: TRL's ``GRPOTrainer`` keeping sample completions (``samples.jsonl``), stopping
  at the first NaN or inf in a loss, gradient norm, reward or saved weight (``health.NonFiniteError``), and
  checking that vLLM generates from the prompts the processor made (:func:`prompt_ids_mismatch`).
- :func:`build_trainer`: makes it with the seven rewards and, for ``finetune="lora"``, the fork's LoRA;
  a 4-bit base keeps its LoRA weights in fp32.

The callbacks a run puts on it are in :mod:`chartrvr_nb.callbacks`.
"""

from __future__ import annotations

import functools
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from .answers import completion_text
from .callbacks import ForwardLogs
from .checkpoints import newest_complete_checkpoint
from .health import NonFiniteError, nonfinite_message
from .models import fork_lora_config
from .presets import Preset
from .rewards import get_rewards
from .runfiles import append_jsonl, model_card

# With fp16 mixed precision (a GPU without bf16) the loss scaler skips an optimizer step whose gradients overflow
# and halves its scale: a few such steps at the start are how it finds its scale. This many in a row (the scale
# down by 2**20) means the gradients themselves are not finite.
FP16_SKIPPED_STEPS_LIMIT = 20


class ChartRVRTrainer(GRPOTrainer):
    """GRPOTrainer that keeps sample completions every ``sample_every`` steps (``samples.jsonl``).

    Each row holds what the rewards compared (label, chart type, table, reference reasoning),
    the training row's id (``row_id``, not the image), its seven rewards, the prompt group it
    belongs to (``group``: its ``num_generations`` completions answer the same prompt) and the
    group-relative advantage GRPO computed from the group's total rewards, and ``run``, an id of this
    training process: a resumed run logs the step of its checkpoint again, and ``runfiles.load_samples``
    keeps only the newest process's block of it.
    """

    def __init__(
        self,
        *args,
        samples_path: Path,
        sample_every: int,
        weights_from_checkpoint: bool = False,
        run_config: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self._weights_from_checkpoint = weights_from_checkpoint
        self._samples_path = samples_path
        self._sample_every = sample_every
        self._run_config = dict(run_config or {})
        self._run_id = uuid.uuid4().hex[:12]
        self._last_sampled_step = -1
        self._pending_samples: list[dict] = []
        self._nonfinite_loss: float | None = None  # the first NaN/inf loss of the optimizer step under way
        self._checked_step = -1
        self._skipped_in_a_row = 0
        if self.use_vllm:  # the first and every later generation round checks vLLM's prompts against ours
            image_token_id = getattr(self.processing_class, "image_token_id", None)
            self.vllm_generation.generate = functools.partial(
                _checked_vllm_generate, self.vllm_generation.generate, image_token_id
            )

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """The run folder's README.md (:func:`chartrvr_nb.runfiles.model_card`) in place of TRL's, which names
        no base model that is not on the hub ("a fine-tuned version of [None]") and shows a text pipeline."""
        if self.is_world_process_zero() and self._run_config:
            card = model_card(self._run_config, Path(self.args.output_dir))
            (Path(self.args.output_dir) / "README.md").write_text(card, encoding="utf-8")

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Skip the Trainer's reload of full weights the model was already loaded from.

        transformers 5.25 saves a Qwen2.5-VL in its original key layout (``visual.*``, ``model.layers.*``)
        and reloads it here with the in-memory names (``model.visual.*``, ``model.language_model.*``):
        nothing matches and the weights silently stay as they were. A resumed full fine-tune is
        therefore loaded with ``from_pretrained`` from its checkpoint, which renames the keys, and this
        step is skipped; the optimizer, scheduler and RNG states are restored as usual.
        """
        if not self._weights_from_checkpoint:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # Gathered from every process, so every process stops here together. TRL turns a None into NaN and
        # sums rewards ignoring NaN: without this a broken reward would count as 0 without a word.
        bad = (~torch.isfinite(rewards_per_func)).sum(dim=0).tolist()
        if any(bad):
            found = [
                f"{name} for {count} of {len(rewards_per_func)}"
                for name, count in zip(self.reward_func_names, bad)
                if count
            ]
            self._stop(
                "reward", "NaN, inf or None from " + ", ".join(found) + " completions", self.state.global_step + 1
            )
        step = self.state.global_step
        if (
            self.accelerator.is_main_process
            and self.model.training
            and step % self._sample_every == 0
            and step != self._last_sampled_step
        ):
            self._last_sampled_step = step
            # Rewards are gathered from every process, the main one's rows first: they pair with its inputs.
            values = rewards_per_func.detach().float().cpu().tolist()
            self._pending_samples = [
                {
                    "step": step,
                    "group": index // self.num_generations,
                    "row_id": example.get("row_id"),
                    "query": example.get("query"),
                    "label": example.get("label"),
                    "chart_type": example.get("chart_type"),
                    "table": example.get("table"),
                    "reasoning": example.get("reasoning"),
                    "completion": completion_text(completion),
                    "rewards": dict(zip(self.reward_func_names, row)),
                    "run": self._run_id,
                }
                for index, (example, completion, row) in enumerate(zip(inputs, completions, values))
            ]
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        try:
            output = super()._generate_and_score_completions(inputs)
        except RuntimeError as error:  # torch's sampler refuses NaN/inf probabilities with this message
            if "probability tensor contains" not in str(error):
                raise
            self._stop("generation", "torch's sampler refused them", self.state.global_step + 1)
        if self._pending_samples:  # this process's slice of the advantages, in the order of its inputs
            advantages = output["advantages"].detach().float().cpu().tolist()
            for record, advantage in zip(self._pending_samples, advantages):
                record["advantage"] = advantage
            append_jsonl(self._samples_path, self._pending_samples)
            self._pending_samples = []
        return output

    # The non-finite guard: every micro-batch's loss, every optimizer step's gradient norm (whatever
    # logging_steps is), every reward, and the trained weights before anything is saved.

    def training_step(self, model, inputs, num_items_in_batch):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self._nonfinite_loss is None and not torch.isfinite(loss).all():
            self._nonfinite_loss = loss.float().mean().item()
        return loss

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        """Check the optimizer step just taken before it is logged or saved (the Trainer calls this every step)."""
        if self.state.global_step != self._checked_step:
            self._checked_step = self.state.global_step
            self._check_step(None if grad_norm is None else float(grad_norm))
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)

    def _check_step(self, grad_norm: float | None) -> None:
        loss, self._nonfinite_loss = self._nonfinite_loss, None
        grad_bad = grad_norm is not None and not math.isfinite(grad_norm)
        # fp16 loss scaling skips a step whose gradients overflowed: the weights did not change.
        skipped = grad_bad and self.accelerator.optimizer_step_was_skipped
        self._skipped_in_a_row = self._skipped_in_a_row + 1 if skipped else 0
        loss_bad, grad_bad = self._on_any_process(loss is not None, grad_bad and not skipped)
        step = self.state.global_step
        if loss_bad:
            self._stop("loss", "nan or inf" if loss is None else str(loss), step)
        if grad_bad:
            self._stop("gradient norm", str(grad_norm), step)
        if self._skipped_in_a_row > FP16_SKIPPED_STEPS_LIMIT:
            detail = f"inf in {self._skipped_in_a_row} optimizer steps in a row, each skipped by fp16 loss scaling"
            self._stop("gradient norm", detail, step)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Save only finite weights: a checkpoint (the Trainer calls this first) or the final adapter or model."""
        trainable = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad and p.numel()]
        if trainable:
            bad = torch.stack([~torch.isfinite(p.detach()).all() for _, p in trainable])
            if self._on_any_process(bool(bad.any()))[0]:
                names = [name for (name, _), flag in zip(trainable, bad.tolist()) if flag] or ["on another process"]
                self._stop("weights", f"{names[0]} holds NaN or inf", self.state.global_step)
        super().save_model(output_dir, _internal_call)

    def _on_any_process(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any process (one small all-reduce, only with several)."""
        if self.accelerator.num_processes == 1:
            return list(flags)
        tensor = torch.tensor([float(flag) for flag in flags], device=self.accelerator.device)
        return [value > 0 for value in self.accelerator.reduce(tensor, reduction="sum").tolist()]

    def _stop(self, quantity: str, detail: str, step: int):
        precision = "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "no"
        newest = newest_complete_checkpoint(self.args.output_dir)
        message = nonfinite_message(
            step, quantity, detail, self.args.learning_rate, precision, newest.name if newest else None
        )
        raise NonFiniteError(message)


def _adapters_in_fp32(model) -> None:
    """Keep a 4-bit base's LoRA weights in fp32, as they are on a bf16 base.

    TRL 1.16 casts them to bf16 for a quantised model (the QLoRA paper's choice, at lr 2e-4). At
    the fork's lr 1e-5 an Adam step (~1e-5) is below half of bf16's spacing around LoRA A's
    initial values (~1.2e-4 at 0.02), so A would never move; and a T4 only emulates bf16.
    """
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()


def prompt_ids_mismatch(sent: Sequence[Sequence[int]], used: Sequence[Sequence[int]], image_token_id: int | None):
    """Why vLLM's prompt token ids differ from those the processor made, or None when they are the same.

    TRL 1.16 hands vLLM the processor's prompt ids, image placeholders already expanded, with the raw image;
    vLLM processes the image again, and where its count of image tokens differs it expands them a second
    time, so it generates for a prompt the trainer never made (huggingface/trl#6294, #6401).

    Example:
        >>> prompt_ids_mismatch([[1, 9, 9, 2]], [[1, 9, 9, 2]], image_token_id=9) is None
        True
        >>> print(prompt_ids_mismatch([[1, 9, 9, 2]], [[1, 9, 9, 9, 9, 2]], image_token_id=9))  # doctest: +ELLIPSIS
        vLLM generated from other prompt token ids than the processor made: prompt 0 has 4 tokens (2 image tokens) ...
    """
    if len(sent) != len(used):
        return f"vLLM returned {len(used)} prompts for the {len(sent)} it was given."
    for index, (ours, theirs) in enumerate(zip(sent, used)):
        ours, theirs = list(ours), list(theirs)
        if ours != theirs:
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            return (
                f"vLLM generated from other prompt token ids than the processor made: prompt {index} has "
                f"{len(ours)} tokens ({ours.count(image_token_id)} image tokens) from the processor and {len(theirs)} "
                f"({theirs.count(image_token_id)} image tokens) in vLLM, first differing at position {first}. vLLM "
                "re-processed the image and counted its tokens differently, so its completions answer a prompt the "
                "trainer never made (huggingface/trl#6294, #6401). Keep images on the 28-pixel grid within the pixel "
                "budget (--image-resize chart-rvr, the default), or drop --use-vllm to generate with transformers."
            )
    return None


def _checked_vllm_generate(generate, image_token_id: int | None, *args, **kwargs):
    """TRL's ``VLLMGeneration.generate``, stopping the run when vLLM's prompt ids are not the ones it was given."""
    sent = kwargs["prompts"] if "prompts" in kwargs else args[0]
    output = generate(*args, **kwargs)
    problem = prompt_ids_mismatch(sent, output[0], image_token_id)
    if problem:
        raise RuntimeError(problem)
    return output


def build_trainer(
    preset: Preset,
    model,
    processor,
    dataset,
    args,
    callbacks: Sequence[Any],
    samples_path: str | Path,
    weights_from_checkpoint: bool = False,
    run_config: Mapping[str, Any] | None = None,
):
    """The project's GRPO trainer for ``preset``: the seven rewards, the fork's LoRA (``finetune="lora"``)
    or every parameter (``"full"``, no adapter), sample logging.

    One place for what :func:`chartrvr_nb.train.train` and the benchmarks (``bench.train_step``,
    ``bench.gpu_check``) train with; a 4-bit base gets its LoRA weights back in fp32 (see
    :func:`_adapters_in_fp32`).

    Args:
        preset: the run's configuration.
        model, processor: from ``models.load_model_and_processor``.
        dataset: training rows prepared by ``data.prepare_grpo_dataset``.
        args: the ``GRPOConfig`` (``grpo_args.grpo_config``).
        callbacks: ``TrainerCallback`` objects, or plain objects with ``on_log(logs)`` and
            ``on_train_end()``, which get the main process's log events (:class:`ForwardLogs`).
        samples_path: where sample completions are appended.
        weights_from_checkpoint: ``model`` was loaded from the checkpoint the run resumes from (a full
            fine-tune): the Trainer does not load its weights again (see ``ChartRVRTrainer._load_from_checkpoint``).
        run_config: what ``run_config.json`` records, for the run folder's model card; None: no card.

    Returns:
        A :class:`ChartRVRTrainer`.
    """
    trainer = ChartRVRTrainer(
        model=model,
        reward_funcs=get_rewards(),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=(
            fork_lora_config(r=preset.lora_r, alpha=preset.lora_alpha, dropout=preset.lora_dropout)
            if preset.finetune == "lora"
            else None
        ),
        callbacks=[c if isinstance(c, TrainerCallback) else ForwardLogs(c) for c in callbacks],
        samples_path=Path(samples_path),
        sample_every=preset.sample_every,
        weights_from_checkpoint=weights_from_checkpoint,
        run_config=run_config,
    )
    if preset.load_in_4bit:
        _adapters_in_fp32(trainer.model)
    return trainer
