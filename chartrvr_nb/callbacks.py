"""Every ``TrainerCallback`` of a run, as plain top-level classes, and the helpers that put them on a trainer.

A heavy module: it imports transformers (and so torch) at the top, so it is imported only inside the
functions that train (:func:`chartrvr_nb.train.train`, tests), never at a module's top. The trainer
itself is in :mod:`chartrvr_nb.trainer`.

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
import json
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback, TrackioCallback, WandbCallback
from transformers.trainer_callback import ProgressCallback
from transformers.utils.notebook import NotebookProgressCallback

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
from .health import HealthWatch, RunFacts
from .runfiles import METRICS_FILE, RUN_FILES, SAMPLES_FILE, append_jsonl, write_run_config
from .runlock import RunLock
from .tracking import TENSORBOARD_DIR

logger = logging.getLogger(__name__)


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
            # No mean loss: GRPO's loss sits near 0 by construction (each group's advantages sum to 0), so
            # "mean loss 0" would say nothing; the rewards, first vs last, follow when train() returns.
            first, last = self._start_step + 1, state.global_step
            steps = f"step {last}" if first == last else f"steps {first}-{last}"
            self.training_bar.write(
                f"done: {steps} of {state.max_steps} in {format_duration(logs['train_runtime'], 'clock')}"
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
