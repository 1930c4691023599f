"""GRPO training with TRL's ``GRPOTrainer``, LoRA, the seven rewards, and automatic resume.

``train(preset)`` is the whole run: lock the run folder (one writer, :mod:`chartrvr_nb.runlock`),
load data and model, map the preset onto the installed ``GRPOConfig``, resume from the newest
verified checkpoint (local or Drive), train, save the adapter. Re-running the same call after a
crash or a Colab disconnect continues the run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import console, runlock, tracking
from .presets import Preset
from .runfiles import ADAPTER_DIR, METRICS_FILE, SAMPLES_FILE, append_jsonl, read_run_config, write_run_config

# Fields that may change between the first run and a resumed one without changing what is trained.
_RESUMABLE_CHANGES = {"save_steps", "save_total_limit", "logging_steps", "sample_every", "use_vllm", "torch_compile", "eval_dataset", "report_to"}


@dataclass
class TrainResult:
    """Where a finished run left its files."""

    output_dir: Path
    adapter_dir: Path
    metrics_file: Path
    samples_file: Path
    global_step: int
    resumed_from: Path | None


def grpo_config(preset: Preset, output_dir: str | Path, max_steps: int | None = None, **extra: Any):
    """The preset mapped onto the installed TRL ``GRPOConfig``.

    ``batch_size`` is TRL's ``per_device_train_batch_size``: it counts completions, so a batch of 2
    with 2 generations holds one prompt, as in the original training script.
    """
    import torch
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)  # a T4 only emulates bf16
    options: dict[str, Any] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=preset.batch_size,
        gradient_accumulation_steps=preset.grad_accum,
        num_generations=preset.num_generations,
        num_train_epochs=preset.num_epochs,
        max_steps=max_steps if max_steps is not None else -1,
        learning_rate=preset.learning_rate,
        beta=preset.beta,
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
    return GRPOConfig(**options)


def _check_run_config(output_dir: Path, preset: Preset) -> None:
    """Refuse to resume a run directory that was started with a different configuration."""
    previous = read_run_config(output_dir)
    if previous is None:
        return
    current = preset.to_dict()
    changed = sorted(
        k for k in current
        if k in previous and k not in _RESUMABLE_CHANGES and k != "name" and previous[k] != current[k]
    )
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(
            f"{output_dir} holds a run started with a different configuration ({details}). "
            "Re-run with the original flags to resume it, or pass a new --output-dir to start another run."
        )


def _make_callbacks(output_dir: Path):
    from transformers import TrainerCallback

    class MetricsFileCallback(TrainerCallback):
        """Appends every log event (per-reward mean/std, loss, lengths...) to ``metrics.jsonl``."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                append_jsonl(output_dir / METRICS_FILE, [{"step": state.global_step, **logs}])

    return [MetricsFileCallback()]


def _adapters_in_fp32(model) -> None:
    """Keep a 4-bit base's LoRA weights in fp32, as they are on a bf16 base.

    TRL 1.16 casts them to bf16 for a quantised model (the QLoRA paper's choice, at lr 2e-4). At
    the paper's lr 1e-5 an Adam step (~1e-5) is below half of bf16's spacing around LoRA A's
    initial values (~1.2e-4 at 0.02), so A would never move; and a T4 only emulates bf16.
    """
    import torch

    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()


def _trainer_class():
    from trl import GRPOTrainer

    from .answers import completion_text

    class ChartRVRTrainer(GRPOTrainer):
        """GRPOTrainer that keeps sample completions every ``sample_every`` steps (``samples.jsonl``).

        Each row holds what the rewards compared (label, chart type, table, reference reasoning),
        the training row's id (``row_id``, not the image), its seven rewards, the prompt group it
        belongs to (``group``: its ``num_generations`` completions answer the same prompt) and the
        group-relative advantage GRPO computed from the group's total rewards.
        """

        def __init__(self, *args, samples_path: Path, sample_every: int, **kwargs):
            super().__init__(*args, **kwargs)
            self._samples_path = samples_path
            self._sample_every = sample_every
            self._last_sampled_step = -1
            self._pending_samples: list[dict] = []

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

    return ChartRVRTrainer


def build_trainer(preset: Preset, model, processor, dataset, args, callbacks: Sequence[Any], samples_path: str | Path):
    """The project's GRPO trainer for ``preset``: the seven rewards, the paper's LoRA, sample logging.

    One place for what :func:`train` and the benchmarks (``bench.train_step``, ``bench.gpu_check``)
    train with; a 4-bit base gets its LoRA weights back in fp32 (see :func:`_adapters_in_fp32`).
    """
    from .models import paper_lora_config
    from .rewards import get_rewards

    trainer = _trainer_class()(
        model=model,
        reward_funcs=get_rewards(),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=paper_lora_config(r=preset.lora_r, alpha=preset.lora_alpha, dropout=preset.lora_dropout),
        callbacks=list(callbacks),
        samples_path=Path(samples_path),
        sample_every=preset.sample_every,
    )
    if preset.load_in_4bit:
        _adapters_in_fp32(trainer.model)
    return trainer


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
        callbacks: extra ``transformers.TrainerCallback`` objects (e.g. live plots in a notebook).
        verbose: print TRL's full metrics dict at every logging step instead of one compact line.
        force_unlock: take over the run folder's lock even from a run that looks alive
            (``--force-unlock``; only when that run is certainly gone).
        lock_timeout: minutes without a heartbeat after which another run's lock counts as stale
            and is taken over (``--lock-timeout``).

    Returns:
        A :class:`TrainResult` with the adapter, metrics and samples paths.

    Raises:
        runlock.RunLockedError: another run holds ``output_dir`` or ``drive_dir``; raised before
            any model is loaded.
        checkpoints.DiskFullError: the disk of ``output_dir`` filled up; the earlier checkpoints
            are intact and the next run resumes from the newest.
    """
    from . import env

    env.require_gpu(preset)
    tracking.require_tracker(preset.report_to)
    output_dir = env.run_path(output_dir or preset.output_dir())
    drive = env.resolve_drive_dir(drive_dir) if drive_dir else None
    output_dir.mkdir(parents=True, exist_ok=True)
    # One writer per folder: rank 0 holds the run folder and its Drive folder from before torch is
    # even imported (a refused start returns in a second) until the run ends, however it ends.
    with runlock.holding([output_dir, drive], main_process=runlock.launched_as_rank_zero(), force=force_unlock,
                         stale_after_minutes=lock_timeout) as lock:
        return _train_in_locked_folder(preset, output_dir, drive, lock, keep_last, max_steps, callbacks, verbose)


def _train_in_locked_folder(preset: Preset, output_dir: Path, drive: Path | None, lock: runlock.RunLock | None,
                            keep_last: int, max_steps: int | None, callbacks: Sequence[Any], verbose: bool) -> TrainResult:
    """The run itself, its folders held (``lock`` is None off rank 0): resume, load, train, save."""
    from . import checkpoints, env
    from .data import load_train_dataset, prepare_grpo_dataset
    from .models import load_model_and_processor

    # Building the arguments sets up the processes (torchrun / accelerate launch; gloo on CPU): a
    # PartialState made before them would see one process, and every rank would act as rank 0.
    with _quiet_and_tracked(preset, output_dir):
        args = grpo_config(preset, output_dir, max_steps=max_steps)
    is_main = args.process_index == 0
    # Rank 0 alone cleans, restores from Drive, writes the run's files and says so; the other
    # ranks then only read which checkpoint it chose.
    with args.main_process_first(local=False, desc="resume"):
        if is_main:
            resume_from = checkpoints.prepare_resume(output_dir, drive)
            _check_run_config(output_dir, preset)
            if resume_from is None:
                for stale in (METRICS_FILE, SAMPLES_FILE):  # a fresh run starts fresh logs
                    (output_dir / stale).unlink(missing_ok=True)
            write_run_config(output_dir, preset.to_dict())
        else:
            resume_from = checkpoints.newest_complete_checkpoint(output_dir)

    dataset = load_train_dataset(preset.train_data, subset_size=preset.subset_size, seed=preset.seed)
    dataset = prepare_grpo_dataset(dataset, max_pixels=preset.max_pixels)  # resizes each image once
    model, processor = load_model_and_processor(
        preset.model, load_in_4bit=preset.load_in_4bit, max_pixels=preset.max_pixels
    )
    trainer_callbacks = _make_callbacks(output_dir) + list(callbacks)
    trainer_callbacks.append(checkpoints.manifest_callback())  # before the Drive mirror copies the checkpoint
    if lock is not None:
        trainer_callbacks.append(runlock.lock_watch_callback(lock))
    if drive is not None:
        trainer_callbacks.append(checkpoints.drive_mirror_callback(drive, keep_last=keep_last))
    with _quiet_and_tracked(preset, output_dir):  # importing TRL imports Trackio, which reads TRACKIO_DIR once
        trainer = build_trainer(preset, model, processor, dataset, args, trainer_callbacks, output_dir / SAMPLES_FILE)
    if not verbose:
        console.use_calm_console(trainer)
    tracker = tracking.attach(trainer, preset.report_to, preset.to_dict(), output_dir)
    if preset.load_in_4bit:
        if is_main:
            print(f"Base model {preset.model} in 4-bit NF4 (bitsandbytes; compute {str(model.dtype)[6:]}, vision tower "
                  "and lm_head unquantised); LoRA adapters train in float32.", flush=True)
    with env.explain_oom(preset), checkpoints.explain_disk_full(output_dir), _quiet_and_tracked(preset, output_dir):
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    adapter_dir = output_dir / ADAPTER_DIR
    trainer.save_model(str(adapter_dir))
    if drive is not None and trainer.accelerator.is_main_process:
        checkpoints.copy_atomic(adapter_dir, drive / ADAPTER_DIR)
    result = TrainResult(
        output_dir=output_dir,
        adapter_dir=adapter_dir,
        metrics_file=output_dir / METRICS_FILE,
        samples_file=output_dir / SAMPLES_FILE,
        global_step=trainer.state.global_step,
        resumed_from=resume_from,
    )
    if is_main:
        print(f"Finished {trainer.state.global_step} optimizer steps.")
        print(f"LoRA adapter: {adapter_dir}")
        print(f"Reward log:   {result.metrics_file}")
        print(f"Samples:      {result.samples_file}")
        for line in tracker.where if tracker else ():
            print(line)
    return result

