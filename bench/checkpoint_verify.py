"""Bench: verifying a checkpoint of the 3B run's size against its manifest, vs loading it.

    python -m bench.checkpoint_verify            # a checkpoint the size of a qwen2-5-3b LoRA run's
    python -m bench.checkpoint_verify --quick    # a 1/100 scale checkpoint, a smoke run

The 3B run trains 18,576,384 LoRA parameters (language model 14,966,784 + vision 3,609,600). PEFT
keeps them in float32 on a bf16 base, so ``adapter_model.safetensors`` holds 74.3 MB, and AdamW's
two moments (``exp_avg``, ``exp_avg_sq``) put 148.6 MB in ``optimizer.pt``; the processor files of
Qwen2.5-VL (tokenizer.json and friends) add about 11 MB. This bench writes such a checkpoint with
random values, writes its manifest (what the Trainer's on_save costs), then times
``checkpoints.checkpoint_problem`` (sizes, sha256 of every file, safetensors and torch file
structure) against what resuming does anyway: ``torch.load`` of the optimizer state and
``safetensors`` loading of the adapter. Files are in the page cache (just written), as on a resume
right after a save; a cold read from disk or Drive adds the read time to both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import machine_line, ratio_line, set_threads

LORA_PARAMETERS_3B = 18_576_384
PROCESSOR_BYTES = 11 * 2**20


def write_checkpoint(folder: Path, parameters: int, processor_bytes: int) -> Path:
    """A ``checkpoint-500`` with the 3B run's files at the given scale (random values)."""
    import os

    import torch
    from safetensors.torch import save_file

    checkpoint = folder / "checkpoint-500"
    checkpoint.mkdir(parents=True)
    # 16 tensors stand in for the ~1,000 LoRA matrices: the bytes, not the count, set the cost.
    shapes = [parameters // 16] * 15 + [parameters - 15 * (parameters // 16)]
    adapter = {f"lora_{i}.weight": torch.randn(n) for i, n in enumerate(shapes)}
    save_file(adapter, str(checkpoint / "adapter_model.safetensors"))
    state = {
        i: {"step": torch.tensor(500.0), "exp_avg": torch.randn(n), "exp_avg_sq": torch.rand(n)}
        for i, n in enumerate(shapes)
    }
    torch.save({"state": state, "param_groups": [{"lr": 1e-5, "params": list(state)}]}, checkpoint / "optimizer.pt")
    torch.save({"last_epoch": 500}, checkpoint / "scheduler.pt")
    torch.save({"python": 0, "cpu": torch.get_rng_state()}, checkpoint / "rng_state.pth")
    (checkpoint / "tokenizer.json").write_bytes(os.urandom(processor_bytes))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 500}))
    return checkpoint


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_verify", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 1/100 scale checkpoint")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each side (the median is printed)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (for loading)")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    import torch
    from safetensors.torch import load_file

    from chartrvr_nb.checkpoints import checkpoint_problem, write_manifest

    scale = 100 if args.quick else 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_checkpoint(Path(folder), LORA_PARAMETERS_3B // scale, PROCESSOR_BYTES // scale)
        total = sum(path.stat().st_size for path in checkpoint.iterdir())
        sizes = ", ".join(f"{path.name} {path.stat().st_size / 1e6:.1f} MB" for path in sorted(checkpoint.iterdir()))
        print(f"checkpoint: {total / 1e6:.1f} MB ({sizes})")
        manifest_s = median_seconds(lambda: write_manifest(checkpoint), args.repeats)
        problem = checkpoint_problem(checkpoint)
        assert problem is None, problem
        verify_s = median_seconds(lambda: checkpoint_problem(checkpoint), args.repeats)

        def load() -> None:
            torch.load(checkpoint / "optimizer.pt", weights_only=True)
            load_file(str(checkpoint / "adapter_model.safetensors"))

        load_s = median_seconds(load, args.repeats)
    print(
        f"write manifest: {manifest_s:.3f} s; verify: {verify_s:.3f} s ({total / 1e6 / verify_s:.0f} MB/s); "
        f"load adapter + optimizer: {load_s:.3f} s (median of {args.repeats})"
    )
    print(ratio_line("checkpoints/s", "verify", 1 / verify_s, "load", 1 / load_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
