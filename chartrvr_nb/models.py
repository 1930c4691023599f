"""Model registry, loading (bf16 / QLoRA), the paper's LoRA config, and the offline tiny Qwen2.5-VL.

``tiny`` is a real Qwen2.5-VL of about 0.2M parameters, built by code with no download: random
weights, a byte-level BPE tokenizer trained locally on synthetic chart text, the Qwen2.5-VL chat
template and an image processor bounded to 224x224 pixels. It is saved once to a cache folder and
then loaded through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like the 3B
model, so the smoke preset exercises the same code path as a real run. A short supervised warm
start, part of the build, teaches it the answer format so the format and count rewards are not
stuck at zero in a GRPO smoke run.

Top-level imports stay light: torch, transformers and peft are imported inside functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from peft import LoraConfig
    from transformers import Qwen2_5_VLConfig

MODEL_REGISTRY: dict[str, str] = {
    "qwen2-5-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2-5-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "tiny": "chartrvr-nb/tiny-qwen2.5-vl (built offline by code)",
}
TINY_MODEL = "tiny"
# The Qwen2.5-VL image processor's own pixel bounds, used where a caller sets only one side.
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280

# The paper's adapter: these names match the language model's attention and MLP projections and
# also the vision tower's MLPs (gate/up/down_proj), which is why the count includes 3,609,600
# vision parameters.
PAPER_LORA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj",
)

# Qwen2.5's added tokens, in the order (and so the relative ids) of the real tokenizer:
# (token, special). The first 14 are special; the tool-call and code tokens are not.
QWEN2_5_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The Qwen2.5-VL chat template, written for this project: system/user/assistant turns, string or
# list content, each image part becomes <|vision_start|><|image_pad|><|vision_end|> (the processor
# expands <|image_pad|> to one token per merged patch), and a default system turn like Qwen's.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] or [] %}"
    "{% if part['type'] in ('image', 'image_url') %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The tiny model. A saved build whose recipe (``_tiny_recipe``) differs is rebuilt; bump
# TINY_MODEL_VERSION, which names the cache folder, for changes the recipe does not capture.
TINY_MODEL_VERSION = "tiny-qwen2.5-vl-v1"
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224
TINY_BPE_SIZE = 1024  # at most this many byte-level BPE entries: embeddings dominate the parameters
TINY_SEED = 1234
WARM_START_ROWS = 192  # rendered synthetic charts; with far fewer the model memorises them instead
WARM_START_STEPS = 300
WARM_START_BATCH = 8
WARM_START_LR = 1e-2
_BUILD_INFO = "build_info.json"  # written last inside the temporary folder: marks a complete build


# --------------------------------------------------------------------------------------------
# Registry and loading
# --------------------------------------------------------------------------------------------


def tiny_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the tiny model lives: ``<cache>/tiny-qwen2.5-vl-v1``.

    The cache is ``cache_dir``, else ``$CHARTRVR_NB_CACHE``, else ``~/.cache/chartrvr_nb``.

    Example:
        >>> tiny_model_dir("/tmp/cache").as_posix()
        '/tmp/cache/tiny-qwen2.5-vl-v1'
    """
    root = cache_dir or os.environ.get("CHARTRVR_NB_CACHE") or Path.home() / ".cache" / "chartrvr_nb"
    return Path(root).expanduser() / TINY_MODEL_VERSION


def resolve_model(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """What ``from_pretrained`` should load for a registry name.

    Args:
        name: a key of ``MODEL_REGISTRY``.
        cache_dir: where the tiny model is cached (see :func:`tiny_model_dir`).

    Returns:
        The hub id, or for ``"tiny"`` the local folder of the tiny model (built on first use).

    Example:
        >>> resolve_model("qwen2-5-3b")
        'Qwen/Qwen2.5-VL-3B-Instruct'
        >>> resolve_model("qwen-3b")
        Traceback (most recent call last):
        ...
        ValueError: Unknown model 'qwen-3b'. Choose one of: qwen2-5-3b, qwen2-5-7b, tiny.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_REGISTRY)}.")
    if name == TINY_MODEL:
        return str(build_tiny_model(cache_dir))
    return MODEL_REGISTRY[name]


def default_dtype(load_in_4bit: bool = False):
    """The compute dtype for this machine: bf16 on a GPU that supports it, fp16 for 4-bit on an
    older GPU (bitsandbytes computes in half precision there), fp32 otherwise (CPU, or full
    weights on a GPU without bf16, where fp16 training is unstable)."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):  # a T4 only emulates bf16
            return torch.bfloat16
        if load_in_4bit:
            return torch.float16
    return torch.float32


def _offline_help(hub_id: str, error: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    state = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
    return (
        f"Could not load {hub_id!r}: it is not fully in the local Hugging Face cache and {state} "
        f"({type(error).__name__}: {error}). On a machine with internet, log in (`huggingface-cli login`) "
        f"and download it (`huggingface-cli download {hub_id}`), then copy the cache (HF_HOME) here; "
        "or use the offline tiny model (`--vlm-name tiny`, preset `smoke`)."
    )


def load_model_and_processor(
    name: str,
    *,
    load_in_4bit: bool = False,
    dtype: Any = None,
    device_map: Any = None,
    cache_dir: str | os.PathLike | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
):
    """Load a registry model and its processor through the Auto classes.

    Args:
        name: a key of ``MODEL_REGISTRY`` (``"tiny"`` is built offline on first use).
        load_in_4bit: QLoRA base weights: bitsandbytes NF4 with double quantisation (GPU only).
        dtype: weights/compute dtype; default bf16 on a bf16-capable GPU, fp16 compute for 4-bit
            on older GPUs, fp32 otherwise (see :func:`default_dtype`).
        device_map: passed to ``from_pretrained``; 4-bit loading defaults to the current GPU.
        cache_dir: the tiny model's cache folder.
        min_pixels / max_pixels: the image processor's pixel bounds (images are resized into
            them, never cropped); the processor's saved bounds when ``None``.

    Returns:
        ``(model, processor)``.

    Raises:
        RuntimeError: 4-bit requested without a GPU.
        OSError: a hub model that is not cached while the hub is unreachable, with what to do.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if load_in_4bit and not torch.cuda.is_available():
        raise RuntimeError(
            "load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels are CUDA-only). In Colab choose "
            "Runtime > Change runtime type > GPU, or use a preset without 4-bit (e.g. smoke on CPU)."
        )
    path = resolve_model(name, cache_dir)
    if name == TINY_MODEL and not torch.cuda.is_available():
        # Its matrices are so small that thread start-up dominates: on 2 busy cores, one thread
        # runs a GRPO step several times faster than two (measured: 4 ms vs 0.01 ms per linear).
        torch.set_num_threads(1)
    dtype = dtype or default_dtype(load_in_4bit)
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        device_map = device_map or {"": torch.cuda.current_device()}
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    processor_kwargs = {}
    if min_pixels is not None or max_pixels is not None:
        # transformers 5 bounds Qwen2-VL images through `size` (min/max_pixels kwargs are deprecated).
        processor_kwargs["size"] = {
            "shortest_edge": min_pixels or QWEN_MIN_PIXELS,
            "longest_edge": max_pixels or QWEN_MAX_PIXELS,
        }
    try:
        processor = AutoProcessor.from_pretrained(path, **processor_kwargs)
        model = AutoModelForImageTextToText.from_pretrained(path, **model_kwargs)
    except OSError as error:
        if name == TINY_MODEL:
            raise
        raise OSError(_offline_help(path, error)) from error
    return model, processor


# --------------------------------------------------------------------------------------------
# LoRA, architectures, parameter counts
# --------------------------------------------------------------------------------------------


def paper_lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.05) -> LoraConfig:
    """The paper's LoRA adapter (r=8, alpha=16, dropout 0.05) on every q/k/v/o/gate/up/down_proj.

    Example:
        >>> config = paper_lora_config()
        >>> config.r, config.lora_alpha, sorted(config.target_modules)[:3]
        (8, 16, ['down_proj', 'gate_proj', 'k_proj'])
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(PAPER_LORA_TARGET_MODULES),
        task_type="CAUSAL_LM",
        bias="none",
    )


def _qwen2_5_vl_config(text: dict[str, Any], vision: dict[str, Any], tie_word_embeddings: bool) -> Qwen2_5_VLConfig:
    from transformers import Qwen2_5_VLConfig

    shared_text = {
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 70,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "tie_word_embeddings": tie_word_embeddings,
    }
    shared_vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "hidden_act": "silu",
    }
    return Qwen2_5_VLConfig(
        text_config={**shared_text, **text},
        vision_config={**shared_vision, **vision},
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        tie_word_embeddings=tie_word_embeddings,
    )


def qwen2_5_vl_3b_config() -> Qwen2_5_VLConfig:
    """The architecture of Qwen/Qwen2.5-VL-3B-Instruct (its config.json), without downloading it.

    Example:
        >>> config = qwen2_5_vl_3b_config()
        >>> config.text_config.num_hidden_layers, config.vision_config.out_hidden_size
        (36, 2048)
    """
    text = {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
    }
    return _qwen2_5_vl_config(text, {"out_hidden_size": 2048}, tie_word_embeddings=True)


def qwen2_5_vl_7b_config() -> Qwen2_5_VLConfig:
    """The architecture of Qwen/Qwen2.5-VL-7B-Instruct (its config.json), without downloading it.

    Example:
        >>> qwen2_5_vl_7b_config().text_config.hidden_size
        3584
    """
    text = {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_window_layers": 28,
    }
    return _qwen2_5_vl_config(text, {"out_hidden_size": 3584}, tie_word_embeddings=False)


_ARCHITECTURES = {"qwen2-5-3b": qwen2_5_vl_3b_config, "qwen2-5-7b": qwen2_5_vl_7b_config}


def count_parameters(model) -> tuple[int, int]:
    """``(trainable, total)`` parameters, counted the way peft's ``print_trainable_parameters`` does.

    Tied weights count once; a bitsandbytes 4-bit parameter counts for the weights it packs.
    """
    trainable = total = 0
    for _, parameter in model.named_parameters():
        count = parameter.numel()
        if count == 0 and hasattr(parameter, "ds_numel"):  # DeepSpeed ZeRO-3 partitions
            count = parameter.ds_numel
        if parameter.__class__.__name__ == "Params4bit":
            count *= 2 * getattr(getattr(parameter, "quant_storage", None), "itemsize", 1)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def trainable_params_line(trainable: int, total: int) -> str:
    """The line peft prints for a model with an adapter.

    Example:
        >>> trainable_params_line(18_576_384, 3_773_199_360)
        'trainable params: 18,576,384 || all params: 3,773,199,360 || trainable%: 0.4923'
    """
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def meta_lora_parameter_counts(name: str = "qwen2-5-3b") -> tuple[int, int]:
    """``(trainable, total)`` of a registry model with the paper's LoRA, with no weights loaded.

    The architecture is built on PyTorch's meta device (shapes only, no memory), the adapter is
    applied with peft, and parameters are counted. For ``qwen2-5-3b`` this gives the paper's
    18,576,384 trainable of 3,773,199,360 (0.4923%).
    """
    if name not in _ARCHITECTURES:
        raise ValueError(f"No built-in architecture for {name!r}; choose one of: {', '.join(_ARCHITECTURES)}.")
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(_ARCHITECTURES[name]())
    return count_parameters(get_peft_model(model, paper_lora_config()))


# --------------------------------------------------------------------------------------------
# The tiny model
# --------------------------------------------------------------------------------------------


def _synthetic_examples(count: int, seed: int) -> list[dict]:
    """Text-only synthetic rows (with their reasoning steps), chart types in rotation."""
    import random

    from .data import QUESTION_KINDS, make_synthetic_example
    from .prompts import CHART_TYPES

    rng = random.Random(seed)
    return [
        make_synthetic_example(CHART_TYPES[index % len(CHART_TYPES)], rng.choice(QUESTION_KINDS), rng)
        for index in range(count)
    ]


def _tokenizer_corpus(count: int = 1500) -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts, and what a smoke run shows or asks of it."""
    from .data import synthetic_completion
    from .prompts import PROMPT_STYLES

    corpus = [*PROMPT_STYLES.values(), "You are a helpful assistant."] * 20
    for example in _synthetic_examples(count, TINY_SEED):
        corpus += [example["query"], example["reasoning"], synthetic_completion(example)]
    return corpus


def build_tiny_tokenizer():
    """A ``Qwen2Tokenizer`` with a byte-level BPE trained here on synthetic chart text.

    The BPE vocabulary comes first, then Qwen2.5's added tokens in their usual order; the end of
    turn ``<|im_end|>`` is the eos token and ``<|endoftext|>`` pads, as in Qwen2.5-VL-Instruct.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    # Train with exactly the normaliser and pre-tokeniser Qwen2Tokenizer will use.
    reference = Qwen2Tokenizer().backend_tokenizer
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = reference.normalizer
    bpe.pre_tokenizer = reference.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer)
    vocab = bpe.get_vocab()
    merges = [tuple(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    for token, _ in QWEN2_5_ADDED_TOKENS:
        vocab[token] = len(vocab)
    return qwen2_5_tokenizer(vocab, merges)


def qwen2_5_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A ``Qwen2Tokenizer`` over a byte-level BPE that already holds Qwen2.5's added tokens.

    ``<|im_end|>`` ends a turn (eos) and ``<|endoftext|>`` pads, as in Qwen2.5-VL-Instruct; the
    chat template is :data:`QWEN2_5_VL_CHAT_TEMPLATE`.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    extra = [token for token, special in QWEN2_5_ADDED_TOKENS[1:] if special]  # <|im_start|> ... <|video_pad|>
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extra,
        errors="replace",
        split_special_tokens=False,
        model_max_length=32768,
    )
    tokenizer.add_tokens(
        [AddedToken(token, special=special, normalized=False) for token, special in QWEN2_5_ADDED_TOKENS]
    )
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


def _tiny_config(tokenizer):
    from transformers import Qwen2_5_VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN2_5_ADDED_TOKENS}
    vocab_size = -(-len(tokenizer) // 64) * 64  # padded like Qwen's, to a multiple of 64
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            # mrope sections (temporal, height, width) must sum to head_dim / 2 = 64 / 4 / 2.
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "in_channels": 3,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _tiny_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )


def _warm_start_examples(model, processor, rows: list[dict]) -> list[dict]:
    """Tokenise each row once (chat prompt with image, then target completion and <|im_end|>) and
    encode its image once with the frozen vision tower."""
    import torch

    from .data import synthetic_completion
    from .prompts import build_messages

    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    examples = []
    for row in rows:
        prompt = processor.apply_chat_template(build_messages(row["query"]), add_generation_prompt=True, tokenize=False)
        encoded = processor(text=[prompt], images=[row["image"]], return_tensors="pt")
        completion_ids = tokenizer(synthetic_completion(row), add_special_tokens=False)["input_ids"]
        target = torch.tensor(completion_ids + [end_of_turn])
        prompt_ids = encoded["input_ids"][0]
        with torch.no_grad():
            image_features = model.get_image_features(encoded["pixel_values"], encoded["image_grid_thw"]).pooler_output
        examples.append(
            {
                "input_ids": torch.cat([prompt_ids, target]),
                "labels": torch.cat([torch.full_like(prompt_ids, -100), target]),
                # Marks image tokens; without it the model falls back to 1-D positions, unlike
                # generation (and TRL), which use the 3-D multimodal rotary positions.
                "mm_token_type_ids": torch.cat([encoded["mm_token_type_ids"][0], torch.zeros_like(target)]),
                "image_grid_thw": encoded["image_grid_thw"],
                "image_features": image_features[0],
            }
        )
    return examples


def _collate(examples: list[dict], pad_id: int) -> dict:
    """Right-padded batch; the cached image features go in as the model's encoder outputs."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    length = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    mm_token_type_ids = torch.zeros((len(examples), length), dtype=examples[0]["mm_token_type_ids"].dtype)
    for i, example in enumerate(examples):
        n = len(example["input_ids"])
        input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = example["input_ids"], example["labels"], 1
        mm_token_type_ids[i, :n] = example["mm_token_type_ids"]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": attention_mask,
        "mm_token_type_ids": mm_token_type_ids,
        "image_grid_thw": torch.cat([e["image_grid_thw"] for e in examples]),
        "mm_encoder_outputs": {
            "image": BaseModelOutputWithPooling(pooler_output=[e["image_features"] for e in examples])
        },
    }


def _completion_loss(model, batch: dict):
    """Causal-LM loss on the completion tokens only. Projecting just those positions through
    ``lm_head`` (instead of the whole prompt, as ``model(labels=...)`` would) halves a step."""
    import torch

    labels = batch.pop("labels")[:, 1:]
    hidden = model.model(**batch).last_hidden_state[:, :-1]
    scored = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[scored]), labels[scored])


def warm_start(model, processor, rows: list[dict], steps: int = WARM_START_STEPS, seed: int = TINY_SEED) -> dict:
    """Teach a fresh model the answer format with plain causal-LM training on synthetic rows.

    The loss covers only the completion (prompt and image tokens are masked), so the model learns
    to answer ``<think>\\n<type>...</type>\\n<table>...</table>\\n<step-1>: ...</think>\\n
    <answer>...</answer>`` and then end its turn. The vision tower stays frozen at its random
    initialisation, so each image is encoded once and only the language model trains: that keeps
    the whole first build to about a minute on two CPU cores.

    Args:
        model / processor: a fresh tiny Qwen2.5-VL and its processor.
        rows: examples from :func:`chartrvr_nb.data.make_synthetic_example`, each with an ``image``.
        steps: optimizer steps (batches of ``WARM_START_BATCH`` rows drawn at random).
        seed: the batch-sampling seed.

    Returns:
        ``{"steps", "first_loss", "last_loss", "seconds"}``.
    """
    import torch

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    model.model.visual.requires_grad_(False)
    examples = _warm_start_examples(model, processor, rows)
    pad_id = processor.tokenizer.pad_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=WARM_START_LR, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=WARM_START_LR, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for _ in range(steps):
        picks = torch.randint(len(examples), (WARM_START_BATCH,), generator=generator).tolist()
        loss = _completion_loss(model, _collate([examples[i] for i in picks], pad_id))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    model.model.visual.requires_grad_(True)
    tail = losses[-10:]
    return {
        "steps": steps,
        "first_loss": round(losses[0], 4),
        "last_loss": round(sum(tail) / len(tail), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _tiny_recipe() -> dict[str, Any]:
    """What decides the tiny model's weights; a saved build with a different recipe is rebuilt."""
    return {
        "version": TINY_MODEL_VERSION,
        "bpe_size": TINY_BPE_SIZE,
        "seed": TINY_SEED,
        "max_pixels": TINY_MAX_PIXELS,
        "warm_start_rows": WARM_START_ROWS,
        "warm_start_steps": WARM_START_STEPS,
        "warm_start_batch": WARM_START_BATCH,
        "warm_start_lr": WARM_START_LR,
    }


def _is_current_build(folder: Path) -> bool:
    try:
        return json.loads((folder / _BUILD_INFO).read_text()).get("recipe") == _tiny_recipe()
    except (OSError, ValueError):
        return False


def build_tiny_model(cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Build the tiny Qwen2.5-VL once (tokenizer, random weights, warm start) and save it.

    The build happens in a temporary folder next to the target and is renamed into place only
    when complete, so an interrupted build never leaves a half-written model that a later run
    would load. Concurrent builders are safe: the first rename wins and the others reuse it. A
    folder saved by a different recipe (see ``build_info.json``) is rebuilt.

    Args:
        cache_dir: the cache root (see :func:`tiny_model_dir`).
        force: rebuild even when a current build exists.

    Returns:
        The model folder, loadable with ``AutoProcessor`` / ``AutoModelForImageTextToText``.
    """
    target = tiny_model_dir(cache_dir)
    if _is_current_build(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-building-", dir=target.parent))
    try:
        _build_tiny_model_into(staging)
        if target.exists() and (force or not _is_current_build(target)):
            # Move the old build aside in one rename (a reader never sees it half-deleted).
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, retired / target.name)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not _is_current_build(target):
                raise  # not a lost race with another builder: something else is in the way
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _single_torch_thread():
    """Tensors this small gain nothing from threads, and on a busy shared CPU a second thread
    spin-waits: one thread builds the tiny model several times faster there."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _build_tiny_model_into(folder: Path) -> None:
    with _single_torch_thread():
        _build_tiny_model_steps(folder)


def _build_tiny_model_steps(folder: Path) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from .data import render_chart

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    torch.manual_seed(TINY_SEED)
    tokenizer = build_tiny_tokenizer()
    processor = _tiny_processor(tokenizer)
    config = _tiny_config(tokenizer)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    lap("tokenizer_and_model")
    rows = _synthetic_examples(WARM_START_ROWS, TINY_SEED + 1)
    for row in rows:
        row["image"] = render_chart(row["chart_type"], row["table"], TINY_MAX_PIXELS)
    lap("render_charts")
    warm = warm_start(model, processor, rows)
    lap("warm_start")

    text = config.text_config
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id,
        eos_token_id=[text.eos_token_id, text.pad_token_id],  # end of turn, or end of text
        pad_token_id=text.pad_token_id,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    lap("save")
    info = {
        "recipe": _tiny_recipe(),
        "parameters": count_parameters(model)[1],
        "tokenizer_size": len(tokenizer),
        "warm_start": warm,
        "seconds": seconds,
    }
    (folder / _BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
