"""GRPO training with TRL's ``GRPOTrainer``, LoRA, the seven rewards, and automatic resume.

``train(preset)`` is the whole run: check that the preset can train (the check ``estimate`` makes),
lock the run folder (one writer, :mod:`chartrvr_nb.runlock`), load data and model, map the preset onto
the installed ``GRPOConfig``, resume from the newest verified checkpoint (local or Drive), train, save
the adapter. Re-running the same call after a crash or a Colab disconnect continues the run; re-running
it on a run that has reached its last step (or ``max_steps``) trains nothing and says so. A start that
fails before training begins leaves the run folder as it was: ``run_config.json`` is written once
training has begun. Ctrl-C stops the run with one line saying where the next run resumes. The trainer
is in :mod:`chartrvr_nb.trainer`, its callbacks in :mod:`chartrvr_nb.callbacks` (both heavy: imported here only
once training starts).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import console, runlock, tracking
from .batches import ProcessBatches, process_batches
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


# GRPOConfig fields that TRL added or whose meaning TRL changed after the authors' TRL 0.20, set to what
# 0.20 did, so that neither today's TRL defaults nor a later release decide them (each changes the
# objective when moved): the weighted rewards summed, then normalised within each group; no entropy
# bonus and every token in the loss; no off-policy masking; a two-sided PPO clip without the extra
# bound ``delta``; a KL term not weighted by the probability ratio (no effect at beta 0); dropout as the
# model has it (Qwen2.5-VL's is 0); the lm_head in the model's dtype; the rows reshuffled each epoch.
# Adam's betas and epsilon are the Trainer's defaults in transformers 4.53 and 5.25 alike.
# vLLM's importance-sampling correction applies only with use_vllm and is left to TRL.
TRL_0_20_BEHAVIOUR: dict[str, Any] = {
    "multi_objective_aggregation": "sum_then_normalize",
    "entropy_coef": 0.0,
    "use_adaptive_entropy": False,
    "top_entropy_quantile": 1.0,
    "off_policy_mask_threshold": None,
    "delta": None,
    "use_bias_correction_kl": False,
    "disable_dropout": False,
    "cast_lm_head_to_fp32": False,
    "shuffle_dataset": True,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
}


def objective_fields(preset: Preset) -> dict[str, Any]:
    """The GRPOConfig fields that decide the GRPO objective and the rollouts, from ``preset``.

    Every one is set explicitly (:data:`TRL_0_20_BEHAVIOUR` for the fields presets do not expose), so a
    TRL upgrade that moves a default cannot change what a preset trains.

    Example:
        >>> from chartrvr_nb.presets import get_preset
        >>> fields = objective_fields(get_preset("full-ft"))
        >>> fields["loss_type"], fields["learning_rate"], fields["top_k"], fields["reward_weights"]
        ('bnpo', 1e-06, 0, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    return {
        "learning_rate": preset.learning_rate,
        "beta": preset.beta,
        "loss_type": preset.loss_type,
        "scale_rewards": preset.scale_rewards,
        "epsilon": preset.epsilon,
        "epsilon_high": preset.epsilon_high,
        "num_iterations": preset.num_iterations,
        "importance_sampling_level": preset.importance_sampling_level,
        "mask_truncated_completions": preset.mask_truncated_completions,
        "temperature": preset.temperature,
        "top_p": preset.top_p,
        # 0, not None: transformers 5 fills a None sampling setting from the model's generation_config
        # (Qwen2.5-VL's top_k is 1, i.e. greedy), where TRL 0.20's None meant no top-k filter.
        "top_k": preset.top_k,
        "min_p": preset.min_p,
        "repetition_penalty": preset.repetition_penalty,
        "reward_weights": list(preset.reward_weights),
        "optim": preset.optim,
        "lr_scheduler_type": preset.lr_scheduler_type,
        "warmup_steps": preset.warmup_steps,
        "weight_decay": preset.weight_decay,
        "max_grad_norm": preset.max_grad_norm,
        **TRL_0_20_BEHAVIOUR,
    }


def launched_processes() -> int:
    """Training processes the launcher started (``WORLD_SIZE``, set by torchrun and accelerate launch), else 1."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def grpo_config(preset: Preset, output_dir: str | Path, max_steps: int | None = None, **extra: Any):
    """The preset mapped onto the installed TRL ``GRPOConfig``.

    ``batch_size`` is TRL's ``per_device_train_batch_size``: it counts completions, so a batch of 2
    with 2 generations holds one prompt, as in the original training script. The preset's
    completions per optimizer step are kept whatever the number of processes
    (:func:`chartrvr_nb.batches.process_batches`), and every field that decides the objective and
    the rollouts is set from the preset (:func:`objective_fields`).

    Raises:
        ValueError: the processes cannot share the preset's completions per step evenly.
    """
    import torch
    from trl import GRPOConfig

    from .dtypes import machine_dtype_plan

    batches = process_batches(preset, launched_processes())
    cuda = torch.cuda.is_available()
    precision = machine_dtype_plan(preset.load_in_4bit, preset.finetune == "full").mixed_precision
    options: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=batches.batch_size,
        gradient_accumulation_steps=batches.grad_accum,
        num_generations=preset.num_generations,
        num_train_epochs=preset.num_epochs,
        max_steps=max_steps if max_steps is not None else -1,
        max_completion_length=preset.max_completion_length,
        gradient_checkpointing=preset.gradient_checkpointing,
        torch_compile=preset.torch_compile,
        bf16=precision == "bf16",
        fp16=precision == "fp16",  # a GPU without native bf16 (T4, V100): see dtypes.dtype_plan
        use_cpu=not cuda,
        save_strategy="steps",
        save_steps=preset.save_steps,
        save_total_limit=preset.save_total_limit,
        logging_steps=preset.logging_steps,
        seed=preset.seed,
        data_seed=preset.seed,
        **tracking.config_fields(preset.report_to, output_dir),
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **objective_fields(preset),
    )
    if preset.generation_batch_size is not None:
        options["generation_batch_size"] = preset.generation_batch_size
    if preset.use_vllm:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ImportError(
                "use_vllm (--use-vllm) needs vLLM, which is not installed. Install a version TRL 1.16 "
                "supports: pip install 'vllm>=0.22,<=0.31' (it brings its own torch build). Or drop "
                "--use-vllm: generation with Hugging Face transformers is the default and needs nothing extra."
            )
        if not cuda:
            raise RuntimeError(
                "use_vllm (--use-vllm) needs a CUDA GPU and none is visible. Drop --use-vllm to generate "
                "with Hugging Face transformers (the default), or switch to a GPU runtime."
            )
        total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        # vLLM keeps its own copy of the weights plus a KV cache in this fraction of the GPU: the 3B
        # needs ~7 GiB of bf16 weights and a few GiB of cache, the 7B about twice that. Below 40 GB
        # vLLM sleeps during the optimizer step, handing that memory back to training.
        vllm_gib = 24 if preset.model == "qwen2-5-7b" else 12
        options.update(
            use_vllm=True,
            vllm_mode="colocate",  # in the training process, on the training GPU: no server to start
            # TRL merges the LoRA adapter into the weights it pushes to vLLM before each generation.
            vllm_gpu_memory_utilization=round(min(0.9, max(0.3, vllm_gib / total_gib)), 2),
            vllm_enable_sleep_mode=total_gib < 40,
            # Size the KV cache for our prompts and completions, not Qwen2.5-VL's 128k context.
            vllm_max_model_length=preset.max_prompt_length + preset.max_completion_length,
        )
    options.update(extra)
    args = GRPOConfig(**options)
    if args.world_size != batches.processes:  # WORLD_SIZE unset by a launcher that started several processes
        raise RuntimeError(
            f"{args.world_size} training processes are running but WORLD_SIZE says {batches.processes}; launch "
            "with torchrun or accelerate launch, which set it, so the completions per step can be kept."
        )
    return args


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
