"""The seed guide's entry point, kept so its commands work unchanged.

``python main.py --mode grpo --vlm-name qwen2-5-3b --dataset-name evochart --seed 2025 ...`` is
``python -m chartrvr_nb grpo --vlm-name qwen2-5-3b --dataset-name evochart --seed 2025 ...``,
also under ``accelerate launch --config_file=deepspeed_zero3.yaml main.py ...``.
"""

import argparse
import sys

from chartrvr_nb.cli import main

if __name__ == "__main__":
    mode_parser = argparse.ArgumentParser(
        prog="main.py",
        usage="python main.py --mode {grpo,eval} [flags]",
        description="The seed guide's entry point: python main.py --mode M [flags] runs python -m chartrvr_nb M "
        "[flags].",
        epilog="The flags of each mode: python main.py --mode grpo --help, python main.py --mode eval --help.",
        add_help=False,  # --help goes on to the mode's own help when a mode is given
    )
    mode_parser.add_argument("--mode", choices=["grpo", "eval"], help="what to run: train with GRPO, or evaluate")
    known, rest = mode_parser.parse_known_args()
    if known.mode is None:
        if {"-h", "--help"} & set(rest):
            mode_parser.print_help()
            sys.exit(0)
        mode_parser.error("--mode is required: --mode grpo (train) or --mode eval (evaluate)")
    sys.exit(main([known.mode, *rest]))
