"""GRPO training with TRL's ``GRPOTrainer``, LoRA, the seven rewards, and automatic resume.

``train(preset)`` is the whole run: check that the preset can train (the check ``estimate`` makes),
lock the run folder (one writer, :mod:`chartrvr_nb.runlock`), load data and model, map the preset onto
the installed ``GRPOConfig`` (:mod:`chartrvr_nb.grpo_args`), resume from the newest verified checkpoint
(local or Drive), train, save the adapter. Re-running the same call after a crash or a Colab disconnect
continues the run; re-running it on a run that has reached its last step (or ``max_steps``) trains
nothing and says so. A start that fails before training begins leaves the run folder as it was:
``run_config.json`` is written once training has begun. Ctrl-C stops the run with one line saying
where the next run resumes. The trainer is in :mod:`chartrvr_nb.trainer`, its callbacks in
:mod:`chartrvr_nb.callbacks` (both heavy: imported here only once training starts).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import console, runlock, tracking
from .batches import ProcessBatches
from .grpo_args import grpo_config, launched_processes
from .presets import InvalidSettingsError, Preset
from .runfiles import ADAPTER_DIR, METRICS_FILE, MODEL_DIR, SAMPLES_FILE, SYSTEM_PROMPT_SHA256

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from .system_prompts import SystemPrompt

logger = logging.getLogger(__name__)


class TrainingStopped(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, a notebook's interrupt); the message says at which step and where
    the next run resumes. Still a ``KeyboardInterrupt``, so nothing that catches ``Exception`` swallows
    it; shown as its message alone, as a :class:`chartrvr_nb.UserError` is."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


@dataclass
class TrainResult:
    """Where a finished run left its files: ``weights_dir`` is its LoRA adapter (``adapter/``) or, for a
    full fine-tune, its full model (``model/``)."""

    output_dir: Path
    weights_dir: Path
    metrics_file: Path
    samples_file: Path
    global_step: int
    resumed_from: Path | None


@contextlib.contextmanager
def _removed_if_left_empty(folders: Sequence[Path | None]) -> Iterator[None]:
    """On a failure inside, remove those of ``folders`` that did not exist before and are still empty: a
    start that fails before training begins leaves no trace."""
    new = [folder for folder in folders if folder is not None and not folder.exists()]
    try:
        yield
    except BaseException:
        for folder in new:
            with contextlib.suppress(OSError):  # not empty (training had begun), or already gone
                folder.rmdir()
        raise


@contextlib.contextmanager
def _quiet_and_tracked(preset: Preset, output_dir: Path) -> Iterator[None]:
    """While the trainer is built and trains: known transformers warnings hidden, tracker aimed at the run."""
    with console.quiet_known_warnings(), tracking.tracker_environment(preset.report_to, output_dir):
        yield


def train(
    preset: Preset,
    output_dir: str | Path | None = None,
    drive_dir: str | Path | None = None,
    keep_last: int = 3,
    max_steps: int | None = None,
    callbacks: Sequence[Any] = (),
    verbose: bool = False,
    force_unlock: bool = False,
    lock_timeout: float = runlock.STALE_AFTER_MINUTES,
) -> TrainResult:
    """Train (or resume) a GRPO run for ``preset``.

    Args:
        preset: the run's configuration (see ``chartrvr_nb.presets``).
        output_dir: run directory; defaults to the seed's ``grpo-start-ckpts/...-<seed>``. A relative
            path is under the run root (``env.run_root()``: the repository root, ``/content/chartrvr-nb``
            in Colab), whatever the working directory.
        drive_dir: mirror each finished checkpoint here (Google Drive in Colab); resume from it too.
        keep_last: checkpoints kept on ``drive_dir``.
        max_steps: stop after this many optimizer steps (the step count otherwise follows the preset).
        callbacks: extra ``transformers.TrainerCallback`` objects, or plain objects with
            ``on_log(logs)`` and ``on_train_end()`` that watch the run (e.g. a notebook's live
            reward curves, ``widgets.live_reward_curves``).
        verbose: print TRL's full metrics dict at every logging step instead of one compact line.
        force_unlock: take over the run folder's lock even from a run that looks alive
            (``--force-unlock``; only when that run is certainly gone).
        lock_timeout: minutes without a heartbeat after which another run's lock counts as stale
            and is taken over (``--lock-timeout``).

    Returns:
        A :class:`TrainResult` with the adapter (or full model), metrics and samples paths.

    Raises:
        presets.InvalidSettingsError: the preset cannot train (e.g. too few rows for one generation batch,
            ``--subset-size 1``), as ``estimate`` says; raised before anything is written or loaded.
        system_prompts.PromptUnavailableError: the authors' prompt (``system_prompt="chart-rvr"``) could
            not be fetched, read or verified; raised before any model is loaded.
        env.FolderError: ``output_dir`` or ``drive_dir`` cannot be made or written.
        runlock.RunLockedError: another run holds ``output_dir`` or ``drive_dir``; raised before
            any model is loaded.
        resume.RunConfigChangedError: the folder holds a checkpoint of a run with another configuration.
        disk_full.DiskFullError: the disk of ``output_dir`` filled up; the earlier checkpoints
            are intact and the next run resumes from the newest.
        TrainingStopped: interrupted (Ctrl-C); says at which step and where the next run resumes.
    """
    from . import env
    from .estimate import run_steps
    from .models import model_threads
    from .system_prompts import resolve_system_prompt

    if max_steps is not None and max_steps < 1:
        raise InvalidSettingsError(f"max_steps (--max-steps) must be at least 1, got {max_steps}.")
    env.require_gpu(preset)
    tracking.require_tracker(preset.report_to)
    run_steps(preset, launched_processes())  # what cannot train is refused now, in `estimate`'s words
    system_prompt = resolve_system_prompt(preset.system_prompt, "rvr", preset.system_prompt_file)
    output_dir = env.run_path(output_dir or preset.output_dir())
    drive_path = env.run_path(drive_dir) if drive_dir else None
    # One writer per folder: rank 0 holds the run folder and its Drive folder from before torch is
    # even imported (a refused start returns in a second) until the run ends, however it ends. The
    # tiny model on CPU trains on one torch thread; the process's setting is restored after.
    with _removed_if_left_empty([output_dir, drive_path]):
        env.make_folder(output_dir, "--output-dir")
        drive = env.resolve_drive_dir(drive_path) if drive_path else None
        with (
            runlock.holding(
                [output_dir, drive],
                main_process=runlock.launched_as_rank_zero(),
                force=force_unlock,
                stale_after_minutes=lock_timeout,
            ) as lock,
            model_threads(preset.model),
        ):
            return _train_in_locked_folder(
                preset, system_prompt, output_dir, drive, lock, keep_last, max_steps, callbacks, verbose
            )


def _train_in_locked_folder(
    preset: Preset,
    system_prompt: SystemPrompt,
    output_dir: Path,
    drive: Path | None,
    lock: runlock.RunLock | None,
    keep_last: int,
    max_steps: int | None,
    callbacks: Sequence[Any],
    verbose: bool,
) -> TrainResult:
    """The run itself, its folders held (``lock`` is None off rank 0): resume, load, train, save."""
    from . import checkpoints, disk_full, env, resume
    from .data import PROCESSOR_MAX_PIXELS, prepare_grpo_dataset
    from .drive import copy_atomic
    from .dtypes import vision_tower
    from .estimate import run_steps
    from .health import preset_facts
    from .models import load_model_and_processor
    from .train_data import load_train_dataset

    # Building the arguments sets up the processes (torchrun / accelerate launch; gloo on CPU): a
    # PartialState made before them would see one process, and every rank would act as rank 0.
    with _quiet_and_tracked(preset, output_dir):
        args = grpo_config(preset, output_dir, max_steps=max_steps)
    is_main = args.process_index == 0
    record = {**preset.to_dict(), SYSTEM_PROMPT_SHA256: system_prompt.sha256}
    if is_main:
        logger.info(
            f"System prompt: {system_prompt.choice}, {system_prompt.origin} (sha256 {system_prompt.sha256[:12]}...)."
        )
        batches = ProcessBatches(
            args.world_size, args.per_device_train_batch_size, args.gradient_accumulation_steps, preset.num_generations
        )
        logger.info(batches.describe() + ".")
    # Rank 0 alone cleans, restores from Drive (refusing a checkpoint of another configuration) and
    # says so; the other ranks then only read which checkpoint it chose. run_config.json is written
    # once training has begun (callbacks.RunStartCallback): a start that fails before leaves no trace.
    with args.main_process_first(local=False, desc="resume"):
        if is_main:
            resume_from = resume.prepare_resume(output_dir, drive, run_config=record)
        else:
            resume_from = checkpoints.newest_complete_checkpoint(output_dir)

    dataset = load_train_dataset(
        preset.train_data, subset_size=preset.subset_size, seed=preset.seed, dedupe=preset.dedupe, quiet=not is_main
    )
    last_step = max_steps or run_steps(preset, args.world_size, rows=len(dataset))
    if resume_from is not None and checkpoints.checkpoint_step(resume_from) >= last_step:
        return _nothing_to_train(preset, output_dir, resume_from, last_step, max_steps is not None, is_main)
    dataset = prepare_grpo_dataset(  # resizes each image once
        dataset, max_pixels=preset.max_pixels, system_prompt=system_prompt.text, image_resize=preset.image_resize
    )
    # A full fine-tune resumes from its checkpoint's weights, loaded here (the Trainer's own reload misses
    # them: see trainer.ChartRVRTrainer._load_from_checkpoint); an adapter is reloaded by the Trainer.
    weights_from_checkpoint = preset.finetune == "full" and resume_from is not None
    model, processor = load_model_and_processor(
        preset.model,
        weights=resume_from if weights_from_checkpoint else None,
        load_in_4bit=preset.load_in_4bit,
        # As the authors', the processor rounds to its grid up to its own bound; else within the budget.
        max_pixels=PROCESSOR_MAX_PIXELS if preset.image_resize == "chart-rvr" else preset.max_pixels,
        full_finetune=preset.finetune == "full",
    )
    with _quiet_and_tracked(preset, output_dir):  # importing TRL imports Trackio, which reads TRACKIO_DIR once
        from .callbacks import (
            DriveMirrorCallback,
            HealthCallback,
            LockWatchCallback,
            ManifestCallback,
            MetricsFileCallback,
            RunStartCallback,
            attach_trackers,
            close_progress_bars,
            use_calm_console,
        )
        from .trainer import build_trainer

        trainer_callbacks = [RunStartCallback(output_dir, record, fresh=resume_from is None)]
        trainer_callbacks += [MetricsFileCallback(output_dir), *callbacks]
        trainer_callbacks.append(ManifestCallback())  # before the Drive mirror copies the checkpoint
        if lock is not None:
            trainer_callbacks.append(LockWatchCallback(lock))
        if drive is not None:
            trainer_callbacks.append(DriveMirrorCallback(drive, keep_last=keep_last))
        trainer_callbacks.append(HealthCallback(preset_facts(preset, drive=drive is not None)))
        trainer = build_trainer(
            preset,
            model,
            processor,
            dataset,
            args,
            trainer_callbacks,
            output_dir / SAMPLES_FILE,
            weights_from_checkpoint=weights_from_checkpoint,
            run_config=record,
        )
    if not verbose:
        use_calm_console(trainer)
    resumed_step = checkpoints.checkpoint_step(resume_from) if resume_from else None
    tracker = attach_trackers(trainer, preset.report_to, preset.to_dict(), output_dir, resumed_step)
    if preset.load_in_4bit:
        if is_main:
            logger.info(
                f"Base model {preset.model} in 4-bit NF4 (bitsandbytes; compute {str(model.dtype)[6:]}, lm_head "
                f"unquantised, vision tower unquantised in {str(next(vision_tower(model).parameters()).dtype)[6:]}); "
                "LoRA adapters train in float32."
            )
    try:
        with env.explain_oom(preset), disk_full.explain_disk_full(output_dir), _quiet_and_tracked(preset, output_dir):
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except KeyboardInterrupt:
        close_progress_bars(trainer)
        raise TrainingStopped(_stopped_here(output_dir, trainer.state.global_step)) from None

    weights_name = ADAPTER_DIR if preset.finetune == "lora" else MODEL_DIR
    weights_dir = output_dir / weights_name
    trainer.save_model(str(weights_dir))
    if preset.finetune == "full" and trainer.accelerator.is_main_process:
        processor.save_pretrained(str(weights_dir))  # a full model folder evaluates on its own
    if trainer.accelerator.is_main_process:
        checkpoints.write_manifest(weights_dir)  # last, as for checkpoints: evaluation verifies what it loads
    if drive is not None and trainer.accelerator.is_main_process:
        copy_atomic(weights_dir, drive / weights_name)
    result = TrainResult(
        output_dir=output_dir,
        weights_dir=weights_dir,
        metrics_file=output_dir / METRICS_FILE,
        samples_file=output_dir / SAMPLES_FILE,
        global_step=trainer.state.global_step,
        resumed_from=resume_from,
    )
    if is_main:
        logger.info(f"Finished {trainer.state.global_step} optimizer steps.")
        logger.info(f"{'LoRA adapter' if preset.finetune == 'lora' else 'Full model'}: {weights_dir}")
        logger.info(f"Reward log:   {result.metrics_file}")
        logger.info(f"Samples:      {result.samples_file}")
        for line in tracker.where if tracker else ():
            logger.info(line)
    return result


def _stopped_here(output_dir: Path, step: int) -> str:
    """What an interrupted run says: where it stopped and where the next run with the same settings resumes."""
    from .checkpoints import newest_complete_checkpoint

    newest = newest_complete_checkpoint(output_dir)
    then = f"resumes from {newest.name}" if newest else "starts from step 0 (no checkpoint was saved yet)"
    return f"Stopped at step {step}; the next run with the same settings {then} in {output_dir}."


def _nothing_to_train(
    preset: Preset, output_dir: Path, checkpoint: Path, last_step: int, max_steps_given: bool, is_main: bool
) -> TrainResult:
    """The result of a run already at its last step (or past ``--max-steps``): nothing is trained or written
    (the Trainer would train one step more, past the end, and rotate a checkpoint away)."""
    from .checkpoints import checkpoint_step

    step = checkpoint_step(checkpoint)
    final = output_dir / (ADAPTER_DIR if preset.finetune == "lora" else MODEL_DIR)
    weights_dir = final if final.is_dir() else checkpoint
    if is_main:
        if max_steps_given:
            logger.info(f"The run is at step {step} ({checkpoint.name}), --max-steps {last_step}: nothing to train.")
        else:
            logger.info(f"The run has finished: step {step} of {last_step} ({checkpoint.name}); nothing to train.")
        logger.info(f"{'LoRA adapter' if preset.finetune == 'lora' else 'Full model'}: {weights_dir}")
    return TrainResult(
        output_dir=output_dir,
        weights_dir=weights_dir,
        metrics_file=output_dir / METRICS_FILE,
        samples_file=output_dir / SAMPLES_FILE,
        global_step=step,
        resumed_from=checkpoint,
    )
