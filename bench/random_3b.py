"""Qwen2.5-VL-3B with random weights and a processor built here: the real architecture, no download.

Step time and memory depend on the architecture, the vocabulary size, the image-token count and
the sequence lengths, not on the weights' values, so a random-initialised model measures what
the real one would. Neither the weights nor the real tokenizer can be downloaded here, so:

- the model comes from ``chartrvr_nb.models.qwen2_5_vl_3b_config()`` (the hub config.json);
- the tokenizer is the tiny model's locally trained byte-level BPE, padded with filler entries to
  Qwen2.5's 151,643 regular tokens, followed by Qwen2.5's 22 added tokens, so every special token
  has its real id (``<|image_pad|>`` = 151655, ``<|im_end|>`` = 151645) and the model's config
  needs no change; texts tokenise into more pieces than with the real vocabulary, which only
  matters for prompt text (completion lengths are fixed by the benches);
- the image processor has the 3B's settings (14 px patches, 2x2 merge, min_pixels 3136) with
  the preset's pixel budget, as ``load_model_and_processor(..., max_pixels=...)`` sets it.

The model and processor are saved once to ``<cache>/bench-qwen2.5-vl-3b-random-v1`` (about
7.5 GB in bf16) because vLLM loads a model from a folder, then loaded from there like any
checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

QWEN2_5_REGULAR_TOKENS = 151_643  # ids below <|endoftext|>, the first added token of Qwen2.5
QWEN2_5_VL_3B_MIN_PIXELS = 3136  # preprocessor_config.json of Qwen2.5-VL-3B-Instruct
QWEN2_5_VL_3B_MAX_PIXELS = 12_845_056
FOLDER_VERSION = "bench-qwen2.5-vl-3b-random-v1"
_COMPLETE = "bench_build.json"


def full_vocab_tokenizer():
    """A ``Qwen2Tokenizer`` with Qwen2.5's vocabulary size and special-token ids (see module doc)."""
    from chartrvr_nb.qwen_tokenizer import QWEN2_5_ADDED_TOKENS, qwen2_5_tokenizer
    from chartrvr_nb.tiny import build_tiny_tokenizer

    added = [token for token, _ in QWEN2_5_ADDED_TOKENS]
    bpe = json.loads(build_tiny_tokenizer().backend_tokenizer.to_str())["model"]
    vocab = {token: index for token, index in bpe["vocab"].items() if token not in added}
    filler = 0
    while len(vocab) < QWEN2_5_REGULAR_TOKENS:
        token = f"filler{filler}"
        filler += 1
        vocab.setdefault(token, len(vocab))
    for offset, token in enumerate(added):
        vocab[token] = QWEN2_5_REGULAR_TOKENS + offset
    merges = [tuple(pair.split(" ")) if isinstance(pair, str) else tuple(pair) for pair in bpe["merges"]]
    return qwen2_5_tokenizer(vocab, merges)


def processor_3b(tokenizer=None):
    """A ``Qwen2_5_VLProcessor`` with the 3B's image settings and :func:`full_vocab_tokenizer`."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from chartrvr_nb.qwen_tokenizer import QWEN2_5_VL_CHAT_TEMPLATE

    bounds = {"min_pixels": QWEN2_5_VL_3B_MIN_PIXELS, "max_pixels": QWEN2_5_VL_3B_MAX_PIXELS}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**bounds),
        tokenizer=tokenizer or full_vocab_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(**bounds),
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )


def config_3b(layers: int | None = None):
    """The 3B config; ``layers`` cuts text layers and vision depth (only to check the code on a small machine)."""
    from chartrvr_nb.models import qwen2_5_vl_3b_config

    config = qwen2_5_vl_3b_config()
    if layers is not None:
        config.text_config.num_hidden_layers = layers
        config.text_config.layer_types = config.text_config.layer_types[:layers]
        config.vision_config.depth = layers
        config.vision_config.fullatt_block_indexes = [layers - 1]
    return config


def model_folder(layers: int | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the random model is saved: ``<cache>/bench-qwen2.5-vl-3b-random-v1[-<layers>layers]``."""
    from chartrvr_nb.data import cache_root

    suffix = f"-{layers}layers" if layers is not None else ""
    return Path(cache_dir or cache_root()).expanduser() / f"{FOLDER_VERSION}{suffix}"


def build_random_3b(layers: int | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Save the random-weight 3B and its processor once; return the folder (reused afterwards).

    Written to a temporary folder and renamed when complete, so an interrupted build is never
    loaded. Weights are bf16 on a bf16 GPU, fp32 elsewhere (as ``dtypes.default_dtype``).
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from chartrvr_nb.dtypes import default_dtype

    target = model_folder(layers, cache_dir)
    if (target / _COMPLETE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
    try:
        torch.manual_seed(0)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config_3b(layers), dtype=default_dtype())
        model.generation_config = GenerationConfig(  # Qwen2.5-VL-Instruct's special ids
            bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643
        )
        model.save_pretrained(staging)
        processor_3b().save_pretrained(staging)
        parameters = sum(p.numel() for p in model.parameters())
        (staging / _COMPLETE).write_text(json.dumps({"parameters": parameters, "layers": layers}) + "\n")
        del model
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / _COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_random_3b(max_pixels: int, layers: int | None = None):
    """``(model, processor)`` of the random 3B, loaded like ``models.load_model_and_processor`` loads the real one."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from chartrvr_nb.dtypes import default_dtype

    folder = build_random_3b(layers)
    processor = AutoProcessor.from_pretrained(folder, max_pixels=max_pixels)
    device_map = {"": torch.cuda.current_device()} if torch.cuda.is_available() else None
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=default_dtype(), device_map=device_map)
    return model, processor
