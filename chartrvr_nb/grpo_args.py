"""The preset mapped onto the installed TRL's ``GRPOConfig``: every field that decides the objective and the
rollouts set explicitly (the authors' TRL 0.20 behaviour), the processes' batches, precision, trackers, vLLM.

:func:`grpo_config` is what :func:`chartrvr_nb.train.train`, the fidelity table and the benches train with;
:func:`objective_fields` the part of it a preset decides. Top-level imports stay light: torch and TRL are
imported inside :func:`grpo_config`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import tracking
from .batches import process_batches
from .presets import Preset

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
