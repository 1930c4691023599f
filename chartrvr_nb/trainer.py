"""The project's GRPO trainer and every ``TrainerCallback`` of a run, as plain top-level classes.

A heavy module: it imports torch, transformers and TRL at the top, so it is imported only inside
the functions that train (:func:`chartrvr_nb.train.train`, the benches, tests), never at a module's
top. Import it inside ``tracking.tracker_environment``: importing TRL's ``GRPOTrainer`` imports
Trackio, which reads ``TRACKIO_DIR`` once.

- :class:`ChartRVRTrainer`: TRL's ``GRPOTrainer`` keeping sample completions (``samples.jsonl``);
  :func:`build_trainer` makes it with the seven rewards and, for ``finetune="lora"``, the fork's LoRA.
- :class:`MetricsFileCallback`: every log event into ``metrics.jsonl``.
- :class:`ManifestCallback` then :class:`DriveMirrorCallback`: each saved checkpoint gets its
  manifest, then goes to Drive atomically (keeping the newest few there), with the run's log files.
- :class:`LockWatchCallback`: stops the run once another run took its lock over.
- :class:`CalmProgress`: one compact line per logging step instead of TRL's dict; in a notebook
  :class:`CalmNotebookProgress`, the same line beside the bar instead of a growing table (:func:`use_calm_console`).
- :class:`PresetToTrackers`: the preset in TensorBoard / W&B / Trackio (:func:`attach_trackers`).
- :class:`ForwardLogs`: log events handed to a plain object that lives above training, such as
  the notebook's live reward curves (``widgets.LiveRewardCurves``).
"""

from __future__ import annotations

import json
import logging
import time
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
    prune_checkpoints,
    write_manifest,
)
from .console import step_line
from .drive import copy_atomic
from .estimate import format_duration
from .models import fork_lora_config
from .presets import Preset
from .rewards import get_rewards
from .runfiles import METRICS_FILE, RUN_FILES, append_jsonl
from .runlock import RunLock
from .tracking import TENSORBOARD_DIR

logger = logging.getLogger(__name__)


class ChartRVRTrainer(GRPOTrainer):
    """GRPOTrainer that keeps sample completions every ``sample_every`` steps (``samples.jsonl``).

    Each row holds what the rewards compared (label, chart type, table, reference reasoning),
    the training row's id (``row_id``, not the image), its seven rewards, the prompt group it
    belongs to (``group``: its ``num_generations`` completions answer the same prompt) and the
    group-relative advantage GRPO computed from the group's total rewards.
    """

    def __init__(self, *args, samples_path: Path, sample_every: int, weights_from_checkpoint: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._weights_from_checkpoint = weights_from_checkpoint
        self._samples_path = samples_path
        self._sample_every = sample_every
        self._last_sampled_step = -1
        self._pending_samples: list[dict] = []

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
                }
                for index, (example, completion, row) in enumerate(zip(inputs, completions, values))
            ]
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self._pending_samples:  # this process's slice of the advantages, in the order of its inputs
            advantages = output["advantages"].detach().float().cpu().tolist()
            for record, advantage in zip(self._pending_samples, advantages):
                record["advantage"] = advantage
            append_jsonl(self._samples_path, self._pending_samples)
            self._pending_samples = []
        return output


def _adapters_in_fp32(model) -> None:
    """Keep a 4-bit base's LoRA weights in fp32, as they are on a bf16 base.

    TRL 1.16 casts them to bf16 for a quantised model (the QLoRA paper's choice, at lr 2e-4). At
    the fork's lr 1e-5 an Adam step (~1e-5) is below half of bf16's spacing around LoRA A's
    initial values (~1.2e-4 at 0.02), so A would never move; and a T4 only emulates bf16.
    """
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()


def build_trainer(
    preset: Preset,
    model,
    processor,
    dataset,
    args,
    callbacks: Sequence[Any],
    samples_path: str | Path,
    weights_from_checkpoint: bool = False,
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
    )
    if preset.load_in_4bit:
        _adapters_in_fp32(trainer.model)
    return trainer


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

    Checked at the end of each step, which the Trainer runs before it logs or saves that step.
    """

    def __init__(self, lock: RunLock):
        self.lock = lock

    def on_step_end(self, args, state, control, **kwargs):
        self.lock.check()


class CalmProgress(ProgressCallback):
    """TRL's progress bar, with ``console.step_line`` written above it instead of the raw dict."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._started, self._start_step = time.perf_counter(), state.global_step  # a resume starts later

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "train_runtime" in logs:  # the end-of-training summary
            self.training_bar.write(
                f"done: {state.global_step} steps in {format_duration(logs['train_runtime'], 'clock')}"
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
    trainer, report_to: str, preset: Mapping[str, Any], output_dir: str | Path
) -> PresetToTrackers | None:
    """Aim the trainer's tracker at the run folder and record the preset in it.

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
