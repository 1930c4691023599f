"""How close a preset is to what the Chart-RVR authors trained: one row per setting, with sources.

``python -m chartrvr_nb fidelity [--preset P] [--json]`` prints, for every setting that decides the
GRPO objective, the rollouts, the data and the model: the authors' value and where it is (file, line,
commit of sanchit97/chartrl at 83c4406, or the library default their code left it to: TRL 0.20.0,
transformers 4.53.1, torch 2.6.0, the versions their requirements.txt pins), the value of the fork that
the seed guide describes (potate4/chartrl at 4948fe6) where it states one, ours for P read from the
``GRPOConfig`` that ``grpo_args.grpo_config`` really builds (or from the preset, for what a GRPOConfig does not
hold), and whether ours differs and why. A difference with no reason given is flagged.

``python -m chartrvr_nb prompt`` is :func:`system_prompt_report`: the system prompt a run would use.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import TINY_MODELS
from .presets import Preset, as_preset
from .rewards import REWARDS
from .system_prompts import CHAIN_OF_THOUGHT_TEMPLATE, CHART_RVR_PROMPTS, resolve_system_prompt, sha256_text

AUTHORS = "sanchit97/chartrl@83c4406"
FORK = "potate4/chartrl@4948fe6"
TRL_020 = "huggingface/trl@v0.20.0 trl/trainer/grpo_config.py"
TRANSFORMERS_453 = "transformers 4.53.1 TrainingArguments default (pinned in requirements.txt)"
TRL_0262 = "TRL 0.26.2 default (the fork's requirements.txt pins it)"
NOT_STATED = None  # the seed guide's fork states no value of its own


@dataclass(frozen=True)
class Setting:
    """One row of the table: the authors' value and source, the fork's, and how to read ours.

    Attributes:
        name: the setting, as TRL or this project names it.
        authors: the authors' value.
        source: where it is (file:line at the commit, or the library default their code left it to).
        ours: reads our value from the built ``GRPOConfig`` and the preset: ``(args, preset) -> value``.
        guide: the fork's value (what the seed guide runs), or None when it states none.
        guide_source: where the fork's value is.
        reasons: why ours may differ: one reason for any value (a str), or a reason per value of ours.
        same: whether the authors' value and ours mean the same (default: equal).
    """

    name: str
    authors: Any
    source: str
    ours: Callable[[Any, Preset], Any]
    guide: Any = NOT_STATED
    guide_source: str = ""
    reasons: str | Mapping[Any, str] = ""
    same: Callable[[Any, Any], bool] = field(default=lambda authors, ours: authors == ours)


def _completions(args: Any, preset: Preset) -> str:
    return (
        f"{args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps} "
        f"({args.world_size} x {args.per_device_train_batch_size} x {args.gradient_accumulation_steps})"
    )


def _prompt_hash(args: Any, preset: Preset) -> str:
    if preset.system_prompt == "chart-rvr":  # the pinned hash: what a run checks the fetched text against
        return _TEMPLATE_4
    return f"project ({sha256_text(resolve_system_prompt('project').text)[:12]})"


def _trained(args: Any, preset: Preset) -> str:
    if preset.finetune == "full":
        return "all parameters"
    return f"LoRA r={preset.lora_r}, alpha {preset.lora_alpha}" + (", 4-bit base" if preset.load_in_4bit else "")


def _images(args: Any, preset: Preset) -> str:
    return f"{preset.max_pixels:,} px, " + ("up and down" if preset.image_resize == "chart-rvr" else "down only")


_TINY = "a setting of the offline tiny model's preset: it demonstrates the pipeline on CPU, it reproduces nothing"
_SHORTER_RUN = "a shorter preset of the seed guide's (its table of presets)"
_TEMPLATE_4 = f"template 4 ({CHART_RVR_PROMPTS.sha256[CHAIN_OF_THOUGHT_TEMPLATE][:12]})"
_SAMPLING_NONE = "transformers 5 fills a None sampling setting from the model's generation_config (top_k 1)"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "trained parameters",
        "all parameters",
        f"{AUTHORS} main.py:716-722 (GRPOTrainer without peft_config; LoRA removed in 67e5f13)",
        _trained,
        "LoRA r=8, alpha 16",
        f"{FORK} main.py:626-633 (added in 6c9eee9): dropout 0.05 on q/k/v/o/gate/up/down_proj",
        "the fork's LoRA recipe, which the seed guide calls 'Paper (Default)': an adapter fits one GPU "
        "(colab-t4: on a 4-bit base, for a 16 GB T4); preset full-ft trains every parameter",
    ),
    Setting(
        "learning_rate",
        1e-6,
        f"{TRL_020}:227 (default; main.py:694-713 leaves it)",
        lambda args, preset: args.learning_rate,
        1e-5,
        f"{FORK} main.py:671",
        {1e-5: "the fork's LoRA learning rate (an adapter needs larger steps)"},
    ),
    Setting(
        "num_train_epochs",
        4,
        f"{AUTHORS} main.py:705",
        lambda args, preset: int(args.num_train_epochs),
        4,
        f"{FORK} main.py:65 (--num-epochs)",
        {1: _SHORTER_RUN},
    ),
    Setting(
        "num_generations",
        4,
        f"{AUTHORS} main.py:711",
        lambda args, preset: args.num_generations,
        4,
        f"{FORK} main.py:66 (--num-generations)",
        {2: _SHORTER_RUN},
    ),
    Setting(
        "per_device_train_batch_size",
        2,
        f"{AUTHORS} main.py:704",
        lambda args, preset: args.per_device_train_batch_size,
        2,
        f"{FORK} main.py:67 (--batch-size)",
    ),
    Setting(
        "processes",
        2,
        f"{AUTHORS} deepspeed_zero3.yaml:16 (their README:59 recommends 4)",
        lambda args, preset: args.world_size,
        1,
        f"{FORK} deepspeed_zero3.yaml:16",
        "the launcher decides; the completions per step below stay the preset's",
    ),
    Setting(
        "gradient_accumulation_steps",
        1,
        TRANSFORMERS_453,
        lambda args, preset: args.gradient_accumulation_steps,
        2,
        f"{FORK} main.py:663",
        "derived from the processes so that the completions per step stay the same",
    ),
    Setting(
        "completions per optimizer step",
        "4 (2 x 2 x 1)",
        "processes x batch x accumulation above: 4 completions = 1 prompt (8 = 2 prompts on their README's 4 GPUs)",
        _completions,
        "4 (1 x 2 x 2)",
        f"{FORK} deepspeed_zero3.yaml:16, main.py:662-663",
        same=lambda authors, ours: authors.split()[0] == ours.split()[0],
    ),
    Setting(
        "loss_type",
        "bnpo",
        f"{TRL_020}:493 (default)",
        lambda args, preset: args.loss_type,
        "dapo",
        TRL_0262,
    ),
    Setting(
        "scale_rewards",
        "group",
        f"{TRL_020}:484 (default True)",
        lambda args, preset: args.scale_rewards,
        "group",
        TRL_0262,
    ),
    Setting(
        "reward aggregation",
        "sum, then group-normalised",
        "huggingface/trl@v0.20.0 trl/trainer/grpo_trainer.py:1679-1692",
        lambda args, preset: {"sum_then_normalize": "sum, then group-normalised"}.get(
            args.multi_objective_aggregation, args.multi_objective_aggregation
        ),
    ),
    Setting("beta", 0.0, f"{TRL_020}:437 (default)", lambda args, preset: args.beta, 0.0, f"{FORK} main.py:672"),
    Setting("epsilon", 0.2, f"{TRL_020}:448 (default)", lambda args, preset: args.epsilon),
    Setting("epsilon_high", None, f"{TRL_020}:460 (default: = epsilon)", lambda args, preset: args.epsilon_high),
    Setting("delta", None, f"{TRL_020}:452 (default)", lambda args, preset: args.delta),
    Setting("num_iterations", 1, f"{TRL_020}:444 (default)", lambda args, preset: args.num_iterations),
    Setting(
        "importance_sampling_level",
        "token",
        f"{TRL_020}:467 (default)",
        lambda args, preset: args.importance_sampling_level,
    ),
    Setting(
        "mask_truncated_completions",
        False,
        f"{TRL_020}:509 (default)",
        lambda args, preset: args.mask_truncated_completions,
    ),
    Setting(
        "entropy bonus, off-policy mask",
        "none (not in TRL 0.20)",
        "huggingface/trl@v0.20.0 (absent)",
        lambda args, preset: (
            "none (not in TRL 0.20)"
            if args.entropy_coef == 0 and not args.use_adaptive_entropy and args.off_policy_mask_threshold is None
            else f"entropy_coef {args.entropy_coef}, off-policy mask {args.off_policy_mask_threshold}"
        ),
    ),
    Setting("temperature", 1.0, f"{TRL_020}:316 (default)", lambda args, preset: args.temperature),
    Setting("top_p", 1.0, f"{TRL_020}:320 (default)", lambda args, preset: args.top_p),
    Setting(
        "top_k",
        None,
        f"{TRL_020}:327 (default: no top-k filter)",
        lambda args, preset: args.top_k,
        reasons={0: f"0 is TRL 1.16's 'no top-k filter'; None would not be: {_SAMPLING_NONE}"},
        same=lambda authors, ours: (authors or 0) == (ours or 0),
    ),
    Setting("min_p", None, f"{TRL_020}:334 (default)", lambda args, preset: args.min_p),
    Setting("repetition_penalty", 1.0, f"{TRL_020}:350 (default)", lambda args, preset: args.repetition_penalty),
    Setting(
        "rewards",
        "7, weight 1 each",
        f"{AUTHORS} main.py:719 (format, accuracy, length, count, chart type, table style, process: grpo_utils.py); "
        f"{TRL_020}:477 (reward_weights default)",
        lambda args, preset: (
            f"{len(REWARDS)}, weight 1 each"
            if set(args.reward_weights) == {1.0}
            else f"{len(REWARDS)}, weights {args.reward_weights}"
        ),
        reasons="the same seven rewards summed (their order only orders the log); defects of the original code "
        "fixed on purpose: a negative label made every number correct, label 0 never matched, an unparseable "
        "table scored the previous completion's table (README, 'The seven rewards')",
        same=lambda authors, ours: False,
    ),
    Setting("optim", "adamw_torch", f"{TRANSFORMERS_453}, torch 2.6 < 2.8", lambda args, preset: _plain(args.optim)),
    Setting("lr_scheduler_type", "linear", TRANSFORMERS_453, lambda args, preset: _plain(args.lr_scheduler_type)),
    Setting("warmup_steps", 0, f"{TRANSFORMERS_453} (warmup_ratio 0 too)", lambda args, preset: args.warmup_steps),
    Setting("weight_decay", 0.0, TRANSFORMERS_453, lambda args, preset: args.weight_decay),
    Setting("max_grad_norm", 1.0, TRANSFORMERS_453, lambda args, preset: args.max_grad_norm),
    Setting(
        "max_prompt_length",
        4096,
        f"{AUTHORS} main.py:707",
        lambda args, preset: f"{preset.max_prompt_length}, not truncated",
        4096,
        f"{FORK} main.py:666",
        "TRL 1.16 has no prompt truncation; prompts here (~320 image tokens + the system prompt) stay far below it",
        same=lambda authors, ours: False,
    ),
    Setting(
        "max_completion_length",
        768,
        f"{AUTHORS} main.py:710",
        lambda args, preset: args.max_completion_length,
        768,
        f"{FORK} main.py:669",
        {160: "the tiny model's short completions", 96: "the tiny model's short completions"},
    ),
    Setting(
        "system prompt",
        _TEMPLATE_4,
        f"{AUTHORS} main.py:490,509-510, prompts.py (SYSTEM_PROMPT_TEMPLATES)",
        _prompt_hash,
        _TEMPLATE_4,
        f"{FORK} main.py:518,538",
        "the tiny models answer this project's shorter prompt (--system-prompt chart-rvr for the authors')",
    ),
    Setting(
        "training images",
        "250,880 px, up and down",
        f"{AUTHORS} main.py:492-506 (_resize_up: bicubic to 320*28*28 px), then the processor's nearest 28-px grid",
        _images,
        "250,880 px, up and down",
        f"{FORK} main.py:520-534",
        "the tiny model's processor is bounded to 224x224 px",
    ),
    Setting(
        "training data",
        "11,398 rows, built locally",
        f"{AUTHORS} main.py:532-591 (ChartQA human train + 2,000 PlotQA + 2,000 ChartFC), published as "
        "sanchit97/chart-rvr-grpo-train: 34,194 rows = 3 x 11,398",
        lambda args, preset: (
            preset.train_data.split("/")[-1]
            + (f", {preset.subset_size:,} rows" if preset.subset_size else "")
            + (", distinct" if preset.dedupe else "")
        ),
        "chart-rvr-grpo-train",
        "the seed guide's --subset-size of the hub set",
        "the hub set the authors published; with --dedupe the first of each repeated row, which is their 11,398 "
        "rows if the set holds three copies (the data audit prints the count at load); without, each row "
        "three times as often per epoch",
        same=lambda authors, ours: False,
    ),
    Setting(
        "bf16",
        True,
        f"{AUTHORS} main.py:702, deepspeed_zero3.yaml:14",
        lambda args, preset: bool(args.bf16),
        True,
        f"{FORK} main.py:660",
        "bf16 only on a GPU that has it natively: fp32 on CPU, fp16 on a T4; a full fine-tune keeps fp32 "
        "weights under bf16 autocast, as DeepSpeed's bf16 keeps an fp32 master copy",
    ),
    Setting(
        "gradient_checkpointing",
        False,
        f"{TRANSFORMERS_453} (TRL 0.20 does not set it)",
        lambda args, preset: bool(args.gradient_checkpointing),
        True,
        f"{FORK} main.py:673",
        "saves memory; the gradients are the same",
    ),
    Setting(
        "seed",
        42,
        f"{TRANSFORMERS_453}; the data was shuffled with seed = 2026 ({AUTHORS} main.py:35)",
        lambda args, preset: args.seed,
        2025,
        f"{FORK} main.py:58 (--seed)",
        "a random draw, not a recipe: the seed guide's --seed 2025 by default",
    ),
    Setting(
        "evaluation during training",
        "EvoChart, 200 rows / 500 steps",
        f"{AUTHORS} main.py:645-648,708-709",
        lambda args, preset: "none" if _plain(args.eval_strategy) == "no" else _plain(args.eval_strategy),
        "none",
        f"{FORK} main.py:667",
        "evaluation never changes the weights; run `eval` on a checkpoint instead",
    ),
    Setting(
        "logging_steps",
        50,
        f"{AUTHORS} main.py:706",
        lambda args, preset: args.logging_steps,
        50,
        f"{FORK} main.py:665",
        "logging only: every step here, for the live curves",
    ),
    Setting("save_steps", 500, TRANSFORMERS_453, lambda args, preset: args.save_steps, reasons="checkpoints only"),
)


@dataclass(frozen=True)
class Row:
    """A setting of one preset beside the authors' value: what :func:`fidelity_table` returns."""

    setting: str
    authors: Any
    source: str
    guide: Any
    guide_source: str
    ours: Any
    differs: bool
    why: str

    @property
    def unexplained(self) -> bool:
        return self.differs and not self.why


def _reason(setting: Setting, ours: Any, preset: Preset) -> str:
    if isinstance(setting.reasons, str):
        return setting.reasons
    found = next((reason for value, reason in setting.reasons.items() if value == ours), "")
    return found or (_TINY if preset.model in TINY_MODELS else "")


def fidelity_table(preset: Preset | str) -> list[Row]:
    """Every setting of :data:`SETTINGS` for ``preset``, ours read from the GRPOConfig it builds.

    Args:
        preset: a preset or its name.

    Returns:
        One :class:`Row` per setting, in :data:`SETTINGS` order.
    """
    from .console import quiet_known_warnings
    from .grpo_args import grpo_config

    preset = as_preset(preset)
    with tempfile.TemporaryDirectory() as scratch, quiet_known_warnings():
        args = grpo_config(preset, scratch)
    rows = []
    for setting in SETTINGS:
        ours = setting.ours(args, preset)
        differs = not setting.same(setting.authors, ours)
        why = _reason(setting, ours, preset) if differs else ""
        rows.append(
            Row(setting.name, setting.authors, setting.source, setting.guide, setting.guide_source, ours, differs, why)
        )
    return rows


def _plain(value: Any) -> Any:
    """An enum's value (transformers' ``OptimizerNames.ADAMW_TORCH`` -> ``"adamw_torch"``), anything else as is."""
    return getattr(value, "value", value)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def format_table(rows: list[Row], preset_name: str) -> str:
    """The table as text: one line per setting, then its sources and the reason for a difference."""
    widths = (31, 31, 27, 31)
    names = ("setting", "authors (83c4406)", "seed guide (fork)", f"ours ({preset_name})")
    header = "".join(f"{name:<{width}}" for name, width in zip(names, widths)) + "differs"
    lines = [header, "-" * len(header)]
    for row in rows:
        verdict = "NOT EXPLAINED" if row.unexplained else "yes" if row.differs else "same"
        cells = (row.setting, _text(row.authors), _text(row.guide), _text(row.ours))
        lines.append("".join(f"{cell[: width - 1]:<{width}}" for cell, width in zip(cells, widths)) + verdict)
        lines.append(f"{'':<4}authors: {row.source}")
        if row.guide_source:
            lines.append(f"{'':<4}seed guide: {row.guide_source}")
        if row.why:
            lines.append(f"{'':<4}why: {row.why}")
    differing = [row for row in rows if row.differs]
    unexplained = [row.setting for row in rows if row.unexplained]
    lines.append(
        f"{len(rows)} settings: {len(rows) - len(differing)} as the authors', {len(differing)} different"
        + (f", NOT EXPLAINED: {', '.join(unexplained)}" if unexplained else ", each for the reason given")
        + "."
    )
    return "\n".join(lines)


def system_prompt_report(preset: Preset | str) -> str:
    """The system prompt a run of ``preset`` would train with: its choice, source, SHA-256 and text.

    Raises:
        system_prompts.PromptUnavailableError: the authors' text could not be fetched, read or verified.
    """
    preset = as_preset(preset)
    prompt = resolve_system_prompt(preset.system_prompt, "rvr", preset.system_prompt_file)
    return "\n".join(
        [
            f"system prompt  {prompt.choice}",
            f"source         {prompt.origin}",
            f"sha256         {prompt.sha256}",
            f"characters     {len(prompt.text):,}",
            "",
            prompt.text,
        ]
    )
