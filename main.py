"""The seed guide's entry point, kept so its commands work unchanged.

``python main.py --mode grpo --vlm-name qwen2-5-3b --dataset-name evochart --seed 2025 ...`` is
``python -m chartrvr_nb grpo --vlm-name qwen2-5-3b --dataset-name evochart --seed 2025 ...``,
also under ``accelerate launch --config_file=deepspeed_zero3.yaml main.py ...``.
"""

import argparse
import sys

from chartrvr_nb.cli import main

if __name__ == "__main__":
    mode_parser = argparse.ArgumentParser(add_help=False)
    mode_parser.add_argument("--mode", required=True, choices=["grpo", "eval"])
    known, rest = mode_parser.parse_known_args()
    sys.exit(main([known.mode, *rest]))
