"""The project's GRPO trainer and every ``TrainerCallback`` of a run, as plain top-level classes.

A heavy module: it imports torch, transformers and TRL at the top, so it is imported only inside
the functions that train (:func:`chartrvr_nb.train.train`, the benches, tests), never at a module's
top. Import it inside ``tracking.tracker_environment``: importing TRL's ``GRPOTrainer`` imports
Trackio, which reads ``TRACKIO_DIR`` once.

- :class:`ChartRVRTrainer`: TRL's ``GRPOTrainer`` keeping sample completions (``samples.jsonl``), stopping
  at the first NaN or inf in a loss, gradient norm, reward or saved weight (``health.NonFiniteError``), and
  checking that vLLM generates from the prompts the processor made (:func:`prompt_ids_mismatch`);
  :func:`build_trainer` makes it with the seven rewards and, for ``finetune="lora"``, the fork's LoRA.
- :class:`RunStartCallback`: the run recorded in its folder (``run_config.json``) once training has begun.
- :class:`MetricsFileCallback`: every log event into ``metrics.jsonl``.
- :class:`ManifestCallback` then :class:`DriveMirrorCallback`: each saved checkpoint gets its
  manifest, then goes to Drive atomically (keeping the newest few there), with the run's log files.
- :class:`LockWatchCallback`: stops the run once another run took its lock over.
- :class:`HealthCallback`: the run-health checks (:mod:`chartrvr_nb.health`) live, each warning once.
- :class:`CalmProgress`: one compact line per logging step instead of TRL's dict; in a notebook
  :class:`CalmNotebookProgress`, the same line beside the bar instead of a growing table (:func:`use_calm_console`).
- :class:`PresetToTrackers`: the preset in TensorBoard / W&B / Trackio (:func:`attach_trackers`).
- :class:`ForwardLogs`: log events handed to a plain object that lives above training, such as
  the notebook's live reward curves (``widgets.LiveRewardCurves``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback, TrackioCallback, WandbCallback
from transformers.trainer_callback import ProgressCallback
from transformers.utils.notebook import NotebookProgressCallback
from trl import GRPOTrainer

from .answers import completion_text
from .checkpoints import (
    TRAINER_STATE_NAME,
    checkpoint_problem,
    is_complete_checkpoint,
    newest_complete_checkpoint,
    prune_checkpoints,
    write_manifest,
)
from .console import step_line
from .drive import copy_atomic
from .estimate import format_duration
from .health import HealthWatch, NonFiniteError, RunFacts, nonfinite_message
from .models import fork_lora_config
from .presets import Preset
from .rewards import get_rewards
from .runfiles import METRICS_FILE, RUN_FILES, SAMPLES_FILE, append_jsonl, model_card, write_run_config
from .runlock import RunLock
from .tracking import TENSORBOARD_DIR

logger = logging.getLogger(__name__)

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
        args: the ``GRPOConfig`` (``train.grpo_config``).
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


class RunStartCallback(TrainerCallback):
    """Records the run in its folder once training has begun: ``run_config.json`` written, and a fresh run's
    stale logs (an earlier start that left no checkpoint) removed.

    A start that fails before this point (a bad training file, a model that does not load, arguments the
    trainer refuses) leaves the folder as it was, so the corrected command starts cleanly. Put it first
    in the callback list, before anything writes the logs.

    Args:
        output_dir: the run folder.
        run_config: what ``run_config.json`` records (the preset's fields and the system prompt's hash).
        fresh: the run starts from step 0 (no checkpoint to resume).
    """

    def __init__(self, output_dir: str | Path, run_config: Mapping[str, Any], fresh: bool):
        self.output_dir = Path(output_dir)
        self.run_config = dict(run_config)
        self.fresh = fresh

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.fresh:
            for stale in (METRICS_FILE, SAMPLES_FILE):
                (self.output_dir / stale).unlink(missing_ok=True)
        write_run_config(self.output_dir, self.run_config)


class MetricsFileCallback(TrainerCallback):
    """Appends every log event (per-reward mean/std, loss, lengths...) to the run's ``metrics.jsonl``."""

    def __init__(self, output_dir: str | Path):
        self.metrics_path = Path(output_dir) / METRICS_FILE

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_jsonl(self.metrics_path, [{"step": state.global_step, **logs}])


class ManifestCallback(TrainerCallback):
    """Writes ``manifest.json`` into each checkpoint the Trainer saves (main process only).

    Put it before :class:`DriveMirrorCallback` in the callback list, so that the Drive copy
    carries the manifest too.
    """

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_manifest(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class DriveMirrorCallback(TrainerCallback):
    """Copies each checkpoint the Trainer saves to a Drive folder, atomically, keeping the last K.

    Runs on the main process only, after the Trainer has finished writing the checkpoint; the
    run's log files follow it, and once more when training ends. A Drive error (e.g. Drive
    disconnected) is reported as a warning and training continues: the local checkpoint is
    intact and the next save tries again.

    Args:
        drive_dir: the Drive folder for this run; checkpoints land directly in it.
        keep_last: complete checkpoints kept on Drive (older ones are deleted).
    """

    def __init__(self, drive_dir: str | Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.drive_dir = Path(drive_dir)
        self.keep_last = keep_last

    def mirror_checkpoint(self, checkpoint_dir: str | Path) -> Path:
        """Copy one finished checkpoint to Drive, then prune Drive to ``keep_last``.

        Raises:
            ValueError: the checkpoint is incomplete or fails verification (it would never be
                resumed from).
        """
        checkpoint_dir = Path(checkpoint_dir)
        if not is_complete_checkpoint(checkpoint_dir):
            raise ValueError(
                f"{checkpoint_dir} is not a complete checkpoint (no valid {TRAINER_STATE_NAME} "
                "or missing weights), so it was not copied to Drive."
            )
        problem = checkpoint_problem(checkpoint_dir)
        if problem:
            raise ValueError(f"{checkpoint_dir} is damaged ({problem}), so it was not copied to Drive.")
        copied = copy_atomic(checkpoint_dir, self.drive_dir / checkpoint_dir.name)
        prune_checkpoints(self.drive_dir, self.keep_last)
        return copied

    def mirror_run_files(self, run_dir: str | Path) -> list[Path]:
        """Copy metrics.jsonl, samples.jsonl and run_config.json (those that exist) to Drive."""
        run_dir = Path(run_dir)
        return [copy_atomic(run_dir / name, self.drive_dir / name) for name in RUN_FILES if (run_dir / name).is_file()]

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        try:
            self.mirror_checkpoint(checkpoint)
            self.mirror_run_files(args.output_dir)
        except (OSError, ValueError) as error:
            warnings.warn(
                f"Could not mirror {checkpoint.name} to Drive ({error}). Training continues and the "
                "local checkpoint is intact; if Drive was unmounted, mount it again "
                "(chartrvr_nb.env.mount_drive()) and the next save is mirrored.",
                stacklevel=2,
            )
        else:
            logger.info(f"Mirrored {checkpoint.name} to {self.drive_dir}")

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        try:
            self.mirror_run_files(args.output_dir)
        except OSError as error:
            warnings.warn(f"Could not copy the run logs to Drive ({error}).", stacklevel=2)


class LockWatchCallback(TrainerCallback):
    """Stops training with ``runlock.RunLockLostError`` once another run took the lock over.

    The lock files are read at the start of each step (before its completions are generated and
    sampled) and at its end (before the Trainer logs or saves it), so a run forced off its folder
    stops within a step, not at its next heartbeat.
    """

    def __init__(self, lock: RunLock):
        self.lock = lock

    def on_step_begin(self, args, state, control, **kwargs):
        self.lock.check()

    def on_step_end(self, args, state, control, **kwargs):
        self.lock.check()


class HealthCallback(TrainerCallback):
    """The run-health checks during training (:class:`chartrvr_nb.health.HealthWatch`): each condition warns
    once, with its numbers and what to do. The remaining time is measured on this session's steps.

    Args:
        facts: what is known of the run before it starts (the completion limit, Drive, Colab); the step
            count comes from the Trainer.
    """

    def __init__(self, facts: RunFacts):
        self.watch = HealthWatch(facts)
        self._started, self._start_step = time.perf_counter(), 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._started, self._start_step = time.perf_counter(), state.global_step
        self.watch.facts = dataclasses.replace(self.watch.facts, max_steps=state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        done = state.global_step - self._start_step
        per_step = (time.perf_counter() - self._started) / done if done > 0 else None
        for verdict in self.watch.update({"step": state.global_step, **logs}, seconds_per_step=per_step):
            logger.warning(f"Run health, step {state.global_step} ({verdict.check}): {verdict.message}")


class CalmProgress(ProgressCallback):
    """TRL's progress bar, with ``console.step_line`` written above it instead of the raw dict."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._started, self._start_step = time.perf_counter(), state.global_step  # a resume starts later

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "train_runtime" in logs:  # the end-of-training summary, of the steps this start trained
            first, last = self._start_step + 1, state.global_step
            steps = f"step {last}" if first == last else f"steps {first}-{last}"
            self.training_bar.write(
                f"done: {steps} of {state.max_steps} in {format_duration(logs['train_runtime'], 'clock')}"
                + (f", mean loss {logs['train_loss']:.4g}" if isinstance(logs.get("train_loss"), float) else "")
            )
            return
        done = state.global_step - self._start_step
        per_step = (time.perf_counter() - self._started) / done if done > 0 else None
        self.training_bar.write(step_line(logs, state.global_step, state.max_steps, per_step))


class CalmNotebookProgress(NotebookProgressCallback):
    """The notebook's progress bar with ``console.step_line`` beside it, instead of a table that grows by a row
    of training loss at every logged step (a 200-row table for the learn-check, thousands on a real run)."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.training_tracker.inner_table = None  # no table, not even its header row
        self.line = None  # the last step line, kept beside the bar until the next

    def on_step_end(self, args, state, control, **kwargs):
        self.training_tracker.update(state.global_step + 1, comment=self.line, force_update=self._force_next_update)
        self._force_next_update = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_tracker is not None and logs and "reward" in logs:
            self.line = step_line(logs, state.global_step, state.max_steps, None)
            # At the bar's own value: a value below it (the step, where the bar counts step + 1) breaks its timing.
            self.training_tracker.update(self.training_tracker.value, comment=self.line, force_update=True)

    def on_train_end(self, args, state, control, **kwargs):
        self.training_tracker.update(state.global_step, comment=self.line, force_update=True)  # the last line stays
        self.training_tracker = None


def use_calm_console(trainer) -> None:
    """Swap the trainer's progress callback for its calm one: :class:`CalmProgress` on a console,
    :class:`CalmNotebookProgress` in a notebook."""
    for plain, calm in ((ProgressCallback, CalmProgress), (NotebookProgressCallback, CalmNotebookProgress)):
        if any(type(callback) is plain for callback in trainer.callback_handler.callbacks):
            trainer.remove_callback(plain)
            trainer.add_callback(calm())


def close_progress_bars(trainer) -> None:
    """Close the console progress bar that a stopped run leaves open (ProgressCallback's ``training_bar``),
    so that what is printed next is the last line, not a bar redrawn when the process exits."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
            callback.training_bar.close()
            callback.training_bar = None


class PresetToTrackers(TrainerCallback):
    """Records the preset in the tracker's config, and remembers where the tracker's files went.

    Added after the trainer's own tracker callbacks, so their ``on_train_begin`` (which opens
    the writer or the run) has already run when this one's does.
    """

    def __init__(self, trackers: list, preset: Mapping[str, Any], output_dir: Path):
        self.trackers = trackers
        self.preset = dict(preset)
        self.output_dir = output_dir
        self.where: list[str] = []

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        for tracker in self.trackers:
            if isinstance(tracker, TensorBoardCallback) and tracker.tb_writer is not None:
                tracker.tb_writer.add_text("preset", json.dumps(self.preset, indent=2))
                self.where = [
                    f"TensorBoard events: {tracker.logging_dir}",
                    f"  view them with: tensorboard --logdir {tracker.logging_dir}",
                ]
            elif isinstance(tracker, WandbCallback) and tracker._wandb.run is not None:
                run = tracker._wandb.run
                run.config.update({"preset": self.preset}, allow_val_change=True)
                run_folder = Path(run.dir).parent  # run.dir is <run folder>/files
                if run.settings.mode == "offline":
                    self.where = [
                        f"W&B offline run: {run_folder}",
                        f"  upload it with: wandb sync {run_folder}",
                    ]
                else:
                    self.where = [f"W&B run: {run.url}"]
            elif isinstance(tracker, TrackioCallback) and tracker._initialized:
                import trackio  # an optional package, there when report_to is "trackio"
                from trackio.utils import TRACKIO_DIR as trackio_dir

                trackio.config.update({"preset": self.preset}, allow_val_change=True)
                self.where = [
                    f"Trackio database: {trackio_dir}",
                    f"  view it with: TRACKIO_DIR={trackio_dir} trackio show --project {args.project}",
                ]


def attach_trackers(
    trainer, report_to: str, preset: Mapping[str, Any], output_dir: str | Path, resumed_step: int | None = None
) -> PresetToTrackers | None:
    """Aim the trainer's tracker at the run folder and record the preset in it.

    A run resumed from the checkpoint of step ``resumed_step`` logs the steps after it again; TensorBoard
    is told to hide what the interrupted run logged from there on (SummaryWriter's ``purge_step``), so
    each step shows once.

    Returns:
        The callback added to ``trainer`` (its ``where`` lists the tracker's files after training
        starts), or None for ``report_to="none"``.
    """
    if report_to == "none":
        return None
    output_dir = Path(output_dir)
    trackers = list(trainer.callback_handler.callbacks)
    for tracker in trackers:
        if isinstance(tracker, TensorBoardCallback) and tracker.tb_writer is None:
            tracker.logging_dir = str(output_dir / TENSORBOARD_DIR)  # one place, not runs/<date>_<host>
            if resumed_step is not None and trainer.accelerator.is_main_process:
                from torch.utils.tensorboard import SummaryWriter

                tracker.tb_writer = SummaryWriter(tracker.logging_dir, purge_step=resumed_step + 1)
    callback = PresetToTrackers(trackers, preset, output_dir)
    trainer.add_callback(callback)
    return callback


class ForwardLogs(TrainerCallback):
    """Hands the main process's log events, and the end of training, to a plain object.

    For watchers that live above training and must not import transformers themselves, such as
    the notebook's live reward curves (``widgets.LiveRewardCurves``); :func:`build_trainer` wraps
    every callback that is not a ``TrainerCallback`` in one.

    Args:
        watcher: an object with ``on_log(logs: dict)`` and ``on_train_end()``.

    Example:
        >>> from types import SimpleNamespace
        >>> class Count:
        ...     seen = 0
        ...     def on_log(self, logs): self.seen += 1
        ...     def on_train_end(self): print("done after", self.seen)
        >>> forward = ForwardLogs(Count())
        >>> main, other = SimpleNamespace(is_world_process_zero=True), SimpleNamespace(is_world_process_zero=False)
        >>> for state in (main, other, main):
        ...     forward.on_log(None, state, None, logs={"loss": 0.1})
        >>> forward.on_train_end(None, main, None)
        done after 2
    """

    def __init__(self, watcher: Any):
        self.watcher = watcher

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            self.watcher.on_log(logs or {})

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.watcher.on_train_end()
