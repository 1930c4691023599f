"""Models: the registry of short names, loading through the Auto classes (bf16 / QLoRA / full weights) with
the dtypes a machine needs (:mod:`chartrvr_nb.dtypes`), the fork's LoRA configuration, the Qwen2.5-VL
architectures and parameter counts.

The offline ``tiny`` model is built by :mod:`chartrvr_nb.tiny`; here it is just another registry
name that resolves to a local folder. Top-level imports stay light: torch, transformers and peft
are imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import UserError
from .dtypes import DtypePlan, apply_dtype_plan, machine_dtype_plan, qlora_quantization_config

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from peft import LoraConfig
    from transformers import Qwen2_5_VLConfig

MODEL_REGISTRY: dict[str, str] = {
    "qwen2-5-3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "qwen2-5-7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "tiny": "chartrvr-nb/tiny-qwen2.5-vl (built offline by code)",
    "tiny-learn": "chartrvr-nb/tiny-qwen2.5-vl, learn-check warm start (built offline by code)",
}
TINY_MODEL = "tiny"
TINY_MODELS = (TINY_MODEL, "tiny-learn")  # built by chartrvr_nb.tiny, each from its own recipe
# The Qwen2.5-VL image processor's own pixel bounds, used where a caller sets only one side.
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 1280

# The LoRA adapter of the fork the seed guide describes (potate4/chartrl@4948fe6 main.py 626-633, added in
# its commit 6c9eee9; the guide calls it "Paper (Default)", but the Chart-RVR authors train every parameter).
# These names match the language model's attention and MLP projections and also the vision tower's
# MLPs (gate/up/down_proj), which is why the count includes 3,609,600 vision parameters.
FORK_LORA_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "up_proj",
    "down_proj",
    "gate_proj",
)


# --------------------------------------------------------------------------------------------
# Registry and loading
# --------------------------------------------------------------------------------------------


def resolve_model(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """What ``from_pretrained`` should load for a registry name.

    Args:
        name: a key of ``MODEL_REGISTRY``.
        cache_dir: where the tiny model is cached (see :func:`chartrvr_nb.tiny.tiny_model_dir`).

    Returns:
        The hub id, or for ``"tiny"`` / ``"tiny-learn"`` the local folder of that tiny model
        (built on first use).

    Example:
        >>> resolve_model("qwen2-5-3b")
        'Qwen/Qwen2.5-VL-3B-Instruct'
        >>> resolve_model("qwen-3b")
        Traceback (most recent call last):
        ...
        ValueError: Unknown model 'qwen-3b'. Choose one of: qwen2-5-3b, qwen2-5-7b, tiny, tiny-learn.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_REGISTRY)}.")
    if name in TINY_MODELS:
        from .tiny import build_tiny_model

        return str(build_tiny_model(cache_dir, name=name))
    return MODEL_REGISTRY[name]


class ModelUnavailableError(UserError, OSError):
    """A hub model that is not in the local cache while the hub cannot be reached; the message says what to do."""


def _cache_only(hub_id: str) -> bool:
    """Whether ``hub_id`` must be loaded from the local cache alone: offline mode is on, or one quick look
    (no retries) finds the hub unreachable. Otherwise transformers retries every file for minutes (about
    2.5 min for the 3B) before failing, or before falling back to the cache."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return True
    from huggingface_hub import model_info
    from huggingface_hub.errors import HfHubHTTPError

    try:
        model_info(hub_id, timeout=10)
    except HfHubHTTPError:  # the hub answered (gated, private, missing): from_pretrained says what it means
        return False
    except Exception:  # no answer: no network, no DNS, a timeout
        return True
    return False


def _offline_help(hub_id: str, error: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    state = "offline mode is on (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
    return (
        f"Could not load {hub_id!r}: it is not fully in the local Hugging Face cache and {state} "
        f"({type(error).__name__}: {error}). On a machine with internet, log in (`huggingface-cli login`) "
        f"and download it (`huggingface-cli download {hub_id}`), then copy the cache (HF_HOME) here; "
        "or use the offline tiny model (`--vlm-name tiny`, preset `smoke`)."
    )


@contextlib.contextmanager
def model_threads(name: str) -> Iterator[None]:
    """Torch's CPU threads for working with model ``name`` (training, generating), for the block only.

    A tiny model on CPU gets one thread: its matrices are so small that thread start-up dominates,
    and on 2 busy cores one thread runs a GRPO step several times faster than two (measured: 4 ms
    vs 0.01 ms per linear). Any other model, or a GPU, leaves the setting alone. On exit the
    process's own setting is back, whatever happened inside.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with model_threads("tiny"):
        ...     torch.get_num_threads() == (before if torch.cuda.is_available() else 1)
        True
        >>> torch.get_num_threads() == before
        True
    """
    import torch

    from .tiny import single_torch_thread

    if name not in TINY_MODELS or torch.cuda.is_available():
        yield
        return
    with single_torch_thread():
        yield


def load_model_and_processor(
    name: str,
    *,
    load_in_4bit: bool = False,
    plan: DtypePlan | None = None,
    device_map: Any = None,
    cache_dir: str | os.PathLike | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    weights: str | os.PathLike | None = None,
    full_finetune: bool = False,
):
    """Load a registry model and its processor through the Auto classes.

    Args:
        name: a key of ``MODEL_REGISTRY`` (``"tiny"`` is built offline on first use).
        load_in_4bit: QLoRA base weights: bitsandbytes NF4 with double quantisation of the
            language model (see ``dtypes.QLORA_UNQUANTISED_MODULES``); on a GPU, or on CPU with
            bitsandbytes' CPU kernels (fp32 compute), which is how CI runs this path.
        plan: the dtypes (``dtypes.dtype_plan``); default this machine's (``dtypes.machine_dtype_plan``): bf16 on a
            bf16-capable GPU; on a GPU without it fp16 compute for 4-bit and fp32 otherwise, the vision tower in
            fp32 outside autocast; fp32 on CPU.
        device_map: passed to ``from_pretrained``; 4-bit loading defaults to the current GPU, or
            the CPU without one.
        cache_dir: the tiny model's cache folder.
        min_pixels / max_pixels: the image processor's pixel bounds (images are resized into
            them, never cropped); the processor's saved bounds when ``None``.
        weights: full model weights to load instead of the registry model's: a local folder (a full
            fine-tune's checkpoint) or a hub id (e.g. the authors' ``sanchit97/chart-rvr-3b``), with its
            own processor when it has one, else ``name``'s.
        full_finetune: the weights will all be trained: fp32 (see ``dtypes.dtype_plan``).

    Returns:
        ``(model, processor)``.

    Raises:
        ImportError: 4-bit requested without bitsandbytes installed.
        ModelUnavailableError: a hub model that is not cached while the hub is unreachable, with what to
            do; said at once (one quick look at the hub, no retries).
    """
    import importlib.util

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
        raise ImportError(
            "load_in_4bit (--load-in-4bit, preset colab-t4) needs bitsandbytes, which is not installed: "
            "pip install 'bitsandbytes>=0.50' (requirements-colab.txt has it), or train without 4-bit."
        )
    path = resolve_model(name, cache_dir)
    plan = plan or machine_dtype_plan(load_in_4bit, full_finetune)
    dtype = getattr(torch, plan.weights)
    model_kwargs: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        model_kwargs["quantization_config"] = qlora_quantization_config(dtype)
        device_map = device_map or ({"": torch.cuda.current_device()} if torch.cuda.is_available() else "cpu")
    if device_map is not None:
        model_kwargs["device_map"] = device_map
    processor_kwargs = {}
    if min_pixels is not None or max_pixels is not None:
        # transformers 5 bounds Qwen2-VL images through `size` (min/max_pixels kwargs are deprecated).
        processor_kwargs["size"] = {
            "shortest_edge": min_pixels or QWEN_MIN_PIXELS,
            "longest_edge": max_pixels or QWEN_MAX_PIXELS,
        }
    weights_path = str(weights) if weights is not None else path
    on_hub = sorted(source for source in {path, weights_path} if not os.path.isdir(source))
    cache_only = bool(on_hub) and _cache_only(on_hub[0])
    if cache_only:
        model_kwargs["local_files_only"] = processor_kwargs["local_files_only"] = True
    try:
        processor = AutoProcessor.from_pretrained(_processor_source(weights_path, path, cache_only), **processor_kwargs)
        model = AutoModelForImageTextToText.from_pretrained(weights_path, **model_kwargs)
    except OSError as error:
        if name in TINY_MODELS and weights is None:
            raise
        raise ModelUnavailableError(_offline_help(weights_path, error)) from error
    apply_dtype_plan(model, plan)
    return model, processor


def _processor_source(weights_path: str, base_path: str, cache_only: bool = False) -> str:
    """Where a model's processor is: its own folder or hub repository when it has one, else the base model's
    (always, for a hub repository while the hub is out of reach: ``cache_only``).

    A full fine-tune's checkpoint carries the processor (the Trainer saves it); a released model may not.
    """
    if weights_path == base_path:
        return base_path
    if os.path.isdir(weights_path):
        has_processor = any(
            os.path.isfile(os.path.join(weights_path, name))
            for name in ("preprocessor_config.json", "processor_config.json")
        )
        return weights_path if has_processor else base_path
    if cache_only:
        return base_path
    from huggingface_hub import file_exists

    try:
        return weights_path if file_exists(weights_path, "preprocessor_config.json") else base_path
    except Exception:  # offline or unreachable: the base model's processor (its cache) is the one to use
        return base_path


# --------------------------------------------------------------------------------------------
# LoRA, architectures, parameter counts
# --------------------------------------------------------------------------------------------


def fork_lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.05) -> LoraConfig:
    """The fork's LoRA adapter (r=8, alpha=16, dropout 0.05) on every q/k/v/o/gate/up/down_proj.

    The recipe of potate4/chartrl (main.py 626-633 at 4948fe6), which the seed guide describes as
    "Paper (Default)"; the Chart-RVR authors themselves fine-tune every parameter (preset ``full-ft``).

    Example:
        >>> config = fork_lora_config()
        >>> config.r, config.lora_alpha, sorted(config.target_modules)[:3]
        (8, 16, ['down_proj', 'gate_proj', 'k_proj'])
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(FORK_LORA_TARGET_MODULES),
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
    """``(trainable, total)`` of a registry model with the fork's LoRA, with no weights loaded.

    The architecture is built on PyTorch's meta device (shapes only, no memory), the adapter is
    applied with peft, and parameters are counted. For ``qwen2-5-3b`` this gives the seed guide's
    18,576,384 trainable of 3,773,199,360 (0.4923%). A tiny model's architecture is read from its
    folder's ``config.json`` (its vocabulary comes from the tokenizer built with it; built on first use).
    """
    if name not in _ARCHITECTURES and name not in TINY_MODELS:
        raise ValueError(f"Unknown model {name!r}. Choose one of: {', '.join(MODEL_REGISTRY)}.")
    import torch
    from peft import get_peft_model
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(resolve_model(name)) if name in TINY_MODELS else _ARCHITECTURES[name]()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return count_parameters(get_peft_model(model, fork_lora_config()))
