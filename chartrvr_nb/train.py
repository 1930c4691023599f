"""GRPO training with TRL's ``GRPOTrainer``, LoRA, the seven rewards, and automatic resume.

``train(preset)`` is the whole run: lock the run folder (one writer, :mod:`chartrvr_nb.runlock`),
load data and model, map the preset onto the installed ``GRPOConfig``, resume from the newest
verified checkpoint (local or Drive), train, save the adapter. Re-running the same call after a
crash or a Colab disconnect continues the run. The trainer and its callbacks are in
:mod:`chartrvr_nb.trainer` (heavy: imported here only once training starts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import console, runlock, tracking
from .batches import ProcessBatches, process_batches
from .presets import Preset
from .runfiles import (
    ADAPTER_DIR,
    METRICS_FILE,
    MODEL_DIR,
    SAMPLES_FILE,
    SYSTEM_PROMPT_SHA256,
    read_run_config,
    write_run_config,
)

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from .system_prompts import SystemPrompt

logger = logging.getLogger(__name__)

# Fields that may change between the first run and a resumed one without changing what is trained.
_RESUMABLE_CHANGES = {
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "sample_every",
    "use_vllm",
    "torch_compile",
    "eval_dataset",
    "report_to",
    "system_prompt_file",  # where the authors' file was read; its text is checked by the hash below
}
# What a run started before run_config.json recorded the objective (it has no system_prompt_sha256) trained
# with, where today's presets differ: TRL 1.16's default loss and the Trainer's fused AdamW, this project's
# prompt, images only shrunk. Resuming such a run with today's values would change its objective silently.
_BEFORE_THE_OBJECTIVE_WAS_RECORDED = {
    "loss_type": "dapo",
    "optim": "adamw_torch_fused",
    "system_prompt": "project",
    "image_resize": "project",
}


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

    batches = process_batches(preset, launched_processes())
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)  # a T4 only emulates bf16
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
        bf16=bf16,
        fp16=cuda and not bf16,
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


def _check_run_config(output_dir: Path, record: dict[str, Any]) -> None:
    """Refuse to resume a run directory that was started with a different configuration or system prompt."""
    previous = read_run_config(output_dir)
    if previous is None:
        return
    if SYSTEM_PROMPT_SHA256 not in previous:
        previous = {**_BEFORE_THE_OBJECTIVE_WAS_RECORDED, **previous}
    current = json.loads(json.dumps(record))  # as it was read back: tuples are lists
    changed = sorted(
        k
        for k in current
        if k in previous and k not in _RESUMABLE_CHANGES and k != "name" and previous[k] != current[k]
    )
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(
            f"{output_dir} holds a run started with a different configuration ({details}). "
            "Re-run with the original flags to resume it, or pass a new --output-dir to start another run."
        )


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
        system_prompts.PromptUnavailableError: the authors' prompt (``system_prompt="chart-rvr"``) could
            not be fetched, read or verified; raised before any model is loaded.
        runlock.RunLockedError: another run holds ``output_dir`` or ``drive_dir``; raised before
            any model is loaded.
        disk_full.DiskFullError: the disk of ``output_dir`` filled up; the earlier checkpoints
            are intact and the next run resumes from the newest.
    """
    from . import env
    from .models import model_threads
    from .system_prompts import resolve_system_prompt

    env.require_gpu(preset)
    tracking.require_tracker(preset.report_to)
    system_prompt = resolve_system_prompt(preset.system_prompt, "rvr", preset.system_prompt_file)
    output_dir = env.run_path(output_dir or preset.output_dir())
    drive = env.resolve_drive_dir(drive_dir) if drive_dir else None
    output_dir.mkdir(parents=True, exist_ok=True)
    # One writer per folder: rank 0 holds the run folder and its Drive folder from before torch is
    # even imported (a refused start returns in a second) until the run ends, however it ends. The
    # tiny model on CPU trains on one torch thread; the process's setting is restored after.
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
    from .data import PROCESSOR_MAX_PIXELS, load_train_dataset, prepare_grpo_dataset
    from .drive import copy_atomic
    from .models import load_model_and_processor

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
    # Rank 0 alone cleans, restores from Drive, writes the run's files and says so; the other
    # ranks then only read which checkpoint it chose.
    with args.main_process_first(local=False, desc="resume"):
        if is_main:
            resume_from = resume.prepare_resume(output_dir, drive)
            _check_run_config(output_dir, record)
            if resume_from is None:
                for stale in (METRICS_FILE, SAMPLES_FILE):  # a fresh run starts fresh logs
                    (output_dir / stale).unlink(missing_ok=True)
            write_run_config(output_dir, record)
        else:
            resume_from = checkpoints.newest_complete_checkpoint(output_dir)

    dataset = load_train_dataset(
        preset.train_data, subset_size=preset.subset_size, seed=preset.seed, dedupe=preset.dedupe, quiet=not is_main
    )
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
        from .trainer import (
            DriveMirrorCallback,
            LockWatchCallback,
            ManifestCallback,
            MetricsFileCallback,
            attach_trackers,
            build_trainer,
            use_calm_console,
        )

        trainer_callbacks = [MetricsFileCallback(output_dir), *callbacks]
        trainer_callbacks.append(ManifestCallback())  # before the Drive mirror copies the checkpoint
        if lock is not None:
            trainer_callbacks.append(LockWatchCallback(lock))
        if drive is not None:
            trainer_callbacks.append(DriveMirrorCallback(drive, keep_last=keep_last))
        trainer = build_trainer(
            preset,
            model,
            processor,
            dataset,
            args,
            trainer_callbacks,
            output_dir / SAMPLES_FILE,
            weights_from_checkpoint=weights_from_checkpoint,
        )
    if not verbose:
        use_calm_console(trainer)
    tracker = attach_trackers(trainer, preset.report_to, preset.to_dict(), output_dir)
    if preset.load_in_4bit:
        if is_main:
            logger.info(
                f"Base model {preset.model} in 4-bit NF4 (bitsandbytes; compute {str(model.dtype)[6:]}, vision tower "
                "and lm_head unquantised); LoRA adapters train in float32."
            )
    with env.explain_oom(preset), disk_full.explain_disk_full(output_dir), _quiet_and_tracked(preset, output_dir):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

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
