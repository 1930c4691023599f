"""Command line: ``python -m chartrvr_nb COMMAND``, one of grpo, eval, estimate, fidelity, prompt, rewards,
curves, doctor, params, notebooks and learn-check.

The seed guide's flags keep their names and meanings; ``--preset`` picks a starting point and
every flag given on top of it overrides that field (unknown flags are errors, as argparse does).
The flags of ``grpo``/``estimate`` and of ``eval`` are generated from the fields of
``presets.Preset`` and ``eval_config.EvalConfig`` (:func:`chartrvr_nb.settings.options`), help text included.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import UserError
from .benchmarks import BENCHMARKS
from .eval_config import EvalConfig
from .models import MODEL_REGISTRY
from .presets import PRESETS, SYSTEM_PROMPTS, Preset, get_preset
from .rewards import REWARDS
from .runlock import STALE_AFTER_MINUTES
from .settings import option_overrides, options
from .step_figures import MEMORY_BANDWIDTH_GBPS

GPUS = tuple(MEMORY_BANDWIDTH_GBPS)  # the GPUs the estimator has figures for
COMPLETION_KINDS = {"completion": ((str, list), "text or a list of chat messages")}  # what the rewards score


def _add_setting_flags(group, settings_class: type, default_label: str) -> None:
    """One flag per option of ``settings_class`` (:func:`chartrvr_nb.settings.options`), with its help text.

    Every flag defaults to None (a switch to off), so that what was not given keeps the preset's or
    the settings' own default; the help names that default as ``(<default_label>: value)``.
    """
    for option in options(settings_class):
        text = option.help.replace("%", "%%")  # argparse formats help with %
        renamed = option.dest != option.field
        if option.type is bool:
            sets = f" (sets {option.field} to {not option.default})" if renamed else ""
            group.add_argument(option.flag, action="store_true", help=text + sets)
            continue
        default = "" if option.default is None else f" ({default_label}: {option.default})"
        sets = f" (sets {option.field})" if renamed else ""
        group.add_argument(option.flag, type=option.type, choices=option.choices, help=text + default + sets)


def _add_preset_flags(parser: argparse.ArgumentParser, default_preset: str) -> None:
    group = parser.add_argument_group("preset and the seed guide's flags (each overrides the preset)")
    group.add_argument(
        "--preset",
        default=default_preset,
        choices=list(PRESETS),
        help=f"starting configuration (default: {default_preset})",
    )
    _add_setting_flags(group, Preset, default_label="paper")


def preset_from_args(args: argparse.Namespace) -> Preset:
    """The preset named by ``--preset`` with every given flag applied on top (validated)."""
    return get_preset(args.preset, **option_overrides(Preset, vars(args)))


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The evaluation settings the ``eval`` flags give (validated); flags not given keep EvalConfig's defaults."""
    return EvalConfig(**option_overrides(EvalConfig, vars(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chartrvr_nb",
        description="Chart-RVR: GRPO with verifiable chart rewards on Qwen2.5-VL, from Colab, Jupyter or a shell.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    grpo = commands.add_parser("grpo", help="train with GRPO and the seven rewards (resumes automatically)")
    _add_preset_flags(grpo, default_preset="paper")
    grpo.add_argument(
        "--output-dir",
        help="run directory (default: grpo-start-ckpts/<model>-prm-large-train-v2-<seed>); "
        "a relative one is under the run root: the repository root, /content/chartrvr-nb in Colab, "
        "or $CHARTRVR_NB_RUN_ROOT",
    )
    grpo.add_argument(
        "--drive-dir", help="mirror checkpoints here (a Google Drive folder in Colab, any folder elsewhere)"
    )
    grpo.add_argument("--keep-last", type=int, default=3, help="checkpoints kept on --drive-dir (default: 3)")
    grpo.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (for quick tries)")
    grpo.add_argument(
        "--force-unlock",
        action="store_true",
        help="take over the run folder's lock from another run; only when that run is certainly gone",
    )
    grpo.add_argument(
        "--lock-timeout",
        type=float,
        default=STALE_AFTER_MINUTES,
        metavar="MINUTES",
        help="minutes without a heartbeat after which another run's lock is stale and taken over "
        f"(default: {STALE_AFTER_MINUTES:g})",
    )
    grpo.add_argument(
        "--verbose", action="store_true", help="print TRL's full metrics dict every step instead of one compact line"
    )

    evaluate = commands.add_parser("eval", help="evaluate a model or adapter on a chart benchmark")
    evaluate.add_argument(
        "--vlm-name",
        choices=list(MODEL_REGISTRY),
        help="model (default: the one the evaluated run trained, else qwen2-5-3b); a run's weights load only on its "
        "own model",
    )
    evaluate.add_argument("--dataset-name", required=True, choices=list(BENCHMARKS), help="benchmark to evaluate on")
    evaluate.add_argument("--adapter", help="LoRA adapter: a run directory, a checkpoint directory or a hub id")
    evaluate.add_argument(
        "--model",
        help="full trained weights instead of --vlm-name's (a full fine-tune's run, checkpoint or model/ folder, "
        "or a hub id such as the authors' sanchit97/chart-rvr-3b); --vlm-name names its architecture",
    )
    evaluate.add_argument(
        "--output-dir",
        help="where predictions.jsonl and summary.json go; an interrupted evaluation run again into the same "
        "folder with the same settings goes on from the answers it wrote",
    )
    _add_setting_flags(evaluate.add_argument_group("evaluation settings"), EvalConfig, default_label="default")

    estimate = commands.add_parser("estimate", help="steps, time and memory a preset will really take")
    _add_preset_flags(estimate, default_preset="paper")
    estimate.add_argument("--gpu", default="a100-40gb", choices=GPUS, help="GPU to estimate for (default: a100-40gb)")
    estimate.add_argument(
        "--num-processes",
        type=int,
        help="training processes (GPUs; CPU processes under torchrun), default $WORLD_SIZE or 1; they share "
        "each optimizer step's completions, so the step count stays the same",
    )

    fidelity = commands.add_parser(
        "fidelity", help="every setting that decides training beside the Chart-RVR authors' value and its source"
    )
    _add_preset_flags(fidelity, default_preset="paper")
    fidelity.add_argument("--json", action="store_true", help="print the rows as JSON")

    prompt = commands.add_parser(
        "prompt", help="the system prompt a run would train with: its source, SHA-256 and text"
    )
    prompt.add_argument("--preset", default="paper", choices=list(PRESETS), help="preset (default: paper)")
    prompt.add_argument("--system-prompt", choices=SYSTEM_PROMPTS, help="override the preset's choice")
    prompt.add_argument(
        "--system-prompt-file", help="a local copy of the authors' prompts.py (commit 83c4406), checked by SHA-256"
    )

    rewards = commands.add_parser(
        "rewards", help="score a JSONL file of completions with the seven rewards, or browse a run's samples"
    )
    rewards.add_argument(
        "file",
        type=Path,
        help="JSONL: one object per line with completion, label, chart_type, table, reasoning; "
        "or a training run folder / its samples.jsonl",
    )
    rewards.add_argument("--step", type=int, help="with a run's samples: the step to show (default: the last)")
    rewards.add_argument(
        "--rewards", default=",".join(REWARDS), help=f"comma-separated reward names (default: {','.join(REWARDS)})"
    )

    curves = commands.add_parser(
        "curves", help="a run's reward curves saved into its folder, how each reward moved, and what to run next"
    )
    curves.add_argument("run", help="training run folder (a relative one is under the run root, as grpo's)")

    doctor = commands.add_parser(
        "doctor", help="a training run's health from its metrics and samples: a verdict per check, exit 1 if any warns"
    )
    doctor.add_argument("run_dir", type=Path, help="the run folder (a GRPO run's --output-dir), finished or running")
    doctor.add_argument("--drive-dir", help="the Drive folder the run mirrors its checkpoints to, if it does")

    params = commands.add_parser("params", help="trainable LoRA parameters of a model, counted on the meta device")
    params.add_argument("--vlm-name", default="qwen2-5-3b", choices=list(MODEL_REGISTRY))

    notebooks = commands.add_parser("notebooks", help="run the numbered notebooks with papermill")
    notebooks.add_argument("action", choices=["run"])
    notebooks.add_argument("--preset", default="smoke", choices=list(PRESETS))
    notebooks.add_argument(
        "--out",
        default="runs/notebooks",
        help="folder for the executed notebooks (relative: under the run root, as run folders are)",
    )

    learn = commands.add_parser(
        "learn-check",
        help="prove GRPO learns: tiny model, held-out charts before/after; exit 1 if not learned, 3 if the "
        "starting point leaves nothing to learn",
    )
    learn.add_argument(
        "--output-dir",
        help="where the report, figure and run go (default: runs/learn-check/seed-<seed>; a relative one is "
        "under the run root)",
    )
    learn.add_argument("--seed", type=int, default=2025, help="training seed; the held-out charts stay the same")
    learn.add_argument(
        "--held-out", type=int, default=200, help="held-out charts evaluated before and after (default: 200)"
    )
    learn.add_argument(
        "--max-steps", type=int, help="stop training early (a shortened check: a smoke check, not a verdict; exit 0)"
    )
    return parser


def _run_rewards(args: argparse.Namespace) -> None:
    import pandas as pd

    from .env import run_path
    from .rewards import get_rewards
    from .runfiles import SAMPLES_FILE, load_samples, read_jsonl

    names = [n.strip() for n in args.rewards.split(",") if n.strip()]
    get_rewards(names)  # an unknown name is an error, whatever the file
    # As given, else under the run root (where grpo put runs/...), whatever the working directory.
    path = run_path(args.file) if not args.file.exists() and run_path(args.file).exists() else args.file
    if path.is_dir() or path.name == SAMPLES_FILE:  # a run's own samples, grouped by prompt
        from .samples import format_samples

        print(format_samples(load_samples(path), step=args.step, rewards=names))
        return

    from .inspection import BATCH_LABELS, score_records

    records = read_jsonl(path, strict=True, required=("completion",), kinds=COMPLETION_KINDS)
    if not records:
        raise UserError(f"{path} holds no completions: write one JSON object per line, each with a completion.")
    table = score_records(records, rewards=names)
    with pd.option_context("display.max_rows", 200, "display.width", 160, "display.precision", 3):
        print(table.to_string())
        print()
        print(
            "mean  "
            + "  ".join(f"{name}={table[name].mean():.3f}" for name in table.columns if name not in BATCH_LABELS)
        )


def _run_fidelity(preset: Preset, as_json: bool) -> None:
    import dataclasses
    import json

    from .fidelity import fidelity_table, format_table

    rows = fidelity_table(preset)
    if as_json:
        print(json.dumps([{**dataclasses.asdict(row), "unexplained": row.unexplained} for row in rows], indent=2))
    else:
        print(format_table(rows, preset.name))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "grpo":
            preset = preset_from_args(args)
            from .train import train

            result = train(
                preset,
                output_dir=args.output_dir,
                drive_dir=args.drive_dir,
                keep_last=args.keep_last,
                max_steps=args.max_steps,
                verbose=args.verbose,
                force_unlock=args.force_unlock,
                lock_timeout=args.lock_timeout,
            )
            from .run_report import finish_report
            from .runlock import launched_as_rank_zero

            if launched_as_rank_zero():  # one report from a run of several processes
                print(finish_report(result.output_dir))
        elif args.command == "eval":
            from .evaluate import run_evaluation

            run_evaluation(
                args.vlm_name,  # None: the evaluated run's model
                args.dataset_name,
                eval_config_from_args(args),
                adapter=args.adapter,
                full_model=args.model,
                output_dir=args.output_dir,
            )
        elif args.command == "estimate":
            preset = preset_from_args(args)
            from .gpu_fit import estimate_report

            print(estimate_report(preset, gpu=args.gpu, processes=args.num_processes))
        elif args.command == "fidelity":
            _run_fidelity(preset_from_args(args), args.json)
        elif args.command == "prompt":
            from .fidelity import system_prompt_report

            print(system_prompt_report(preset_from_args(args)))
        elif args.command == "rewards":
            _run_rewards(args)
        elif args.command == "curves":
            from .run_report import curves_report

            print(curves_report(args.run))
        elif args.command == "doctor":
            from .doctor import doctor

            report, passed = doctor(args.run_dir, args.drive_dir)
            print(report)
            if not passed:
                return 1
        elif args.command == "params":
            from .models import meta_lora_parameter_counts, trainable_params_line

            print(trainable_params_line(*meta_lora_parameter_counts(args.vlm_name)))
        elif args.command == "notebooks":
            from .notebooks import run_notebooks

            run_notebooks(preset=args.preset, out_dir=args.out)
        elif args.command == "learn-check":
            from .learncheck import format_report, run_learn_check, shortened

            report = run_learn_check(args.output_dir, seed=args.seed, held_out=args.held_out, max_steps=args.max_steps)
            print(format_report(report))
            if report.get("starting_point_problems"):
                return 3  # nothing to learn, nothing trained
            if not report["learned"] and not shortened(report):  # a shortened check is a smoke test, no verdict
                return 1
    except UserError as error:  # says what went wrong and what to do: the message alone
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C; a training run says where it stopped and resumes
        print(str(interrupt) or "Stopped (Ctrl-C).", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, FileNotFoundError, ImportError) as error:
        # Our errors name the fix (bad preset, missing GPU or vLLM, hub unreachable, out of memory);
        # a traceback would bury it. The cause, if any, is shown on one line.
        print(f"error: {error}", file=sys.stderr)
        if error.__cause__ is not None:
            print(f"  caused by {type(error.__cause__).__name__}: {error.__cause__}", file=sys.stderr)
        return 2
    return 0
