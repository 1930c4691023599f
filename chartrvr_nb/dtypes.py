"""The dtypes a model is stored and computed in on one kind of machine: the dtype plan, its application to a loaded
model (the vision tower's dtype, kept out of fp16 autocast), and the QLoRA base's 4-bit quantisation.

A function of the machine's capabilities only (:func:`dtype_plan`), so any machine can be simulated;
:func:`machine_dtype_plan` reads this machine's. Top-level imports stay light: torch and transformers
are imported inside functions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# Left unquantised in 4-bit (QLoRA) loading: the vision tower (0.67B of the 3B's 3.75B weights: 1.3 GB in
# 16 bits, 2.7 GB in fp32 on a GPU without bf16, see dtype_plan) keeps image features at full precision, and
# the output projection stays in the compute dtype, as transformers keeps it by default (a skip list replaces
# those defaults, so it is named again). Names are matched from the start of a module's path
# (transformers 5: ``model.visual.blocks.0.mlp.up_proj``; older versions match substrings). The
# tiny model needs the vision skip too: its 32-wide vision layers are narrower than bitsandbytes'
# 64-weight quantisation block.
QLORA_UNQUANTISED_MODULES: tuple[str, ...] = ("model.visual", "lm_head")


@dataclass(frozen=True)
class DtypePlan:
    """How a model's weights are stored and computed on one kind of machine (see :func:`dtype_plan`).

    ``weights`` and ``vision`` are torch dtype names (the language model's weights, or a 4-bit base's compute
    dtype; the vision tower's weights), ``mixed_precision`` the Trainer's autocast (``bf16``, ``fp16`` or
    ``no``).
    """

    weights: str
    vision: str
    mixed_precision: str

    @property
    def vision_outside_autocast(self) -> bool:
        """The vision tower runs in float32 with autocast off: wherever 16-bit math means fp16, whose range
        Qwen2.5-VL's vision encoder overflows (vLLM PR #13968: Qwen2.5-VL-3B's ViT overflows in float16)."""
        return self.mixed_precision == "fp16"


def dtype_plan(*, cuda: bool, bf16: bool, load_in_4bit: bool = False, full_finetune: bool = False) -> DtypePlan:
    """The dtypes for a machine: a function of its capabilities only, so any machine can be simulated.

    - No GPU: float32 everywhere (bitsandbytes' CPU kernels compute 4-bit in fp32 too).
    - A GPU with native bf16 (Ampere or newer): bf16 weights and bf16 mixed precision; a full fine-tune keeps
      fp32 weights (an Adam step at lr 1e-6 is far below bf16's spacing, about 1e-4 around a weight of
      0.02, so bf16 weights would not move) and computes in bf16 under autocast, as the authors' DeepSpeed bf16
      run did with its fp32 master weights.
    - A GPU without native bf16 (T4, V100; a T4 only emulates bf16, slowly): fp16 mixed precision; a 4-bit
      base computes in fp16 (bitsandbytes computes in half precision there), other weights stay fp32 (fp16
      weights would not train stably). The vision tower keeps fp32 weights and runs outside autocast,
      because Qwen2.5-VL's vision encoder overflows fp16 (vLLM PR #13968; transformers has no guard).

    Example:
        >>> dtype_plan(cuda=True, bf16=False, load_in_4bit=True)  # a T4 running colab-t4
        DtypePlan(weights='float16', vision='float32', mixed_precision='fp16')
        >>> dtype_plan(cuda=True, bf16=True)
        DtypePlan(weights='bfloat16', vision='bfloat16', mixed_precision='bf16')
        >>> dtype_plan(cuda=False, bf16=False, load_in_4bit=True)
        DtypePlan(weights='float32', vision='float32', mixed_precision='no')
    """
    if not cuda:
        return DtypePlan("float32", "float32", "no")
    if bf16:
        weights = "float32" if full_finetune else "bfloat16"
        return DtypePlan(weights, weights, "bf16")
    return DtypePlan("float16" if load_in_4bit else "float32", "float32", "fp16")


def machine_dtype_plan(load_in_4bit: bool = False, full_finetune: bool = False) -> DtypePlan:
    """:func:`dtype_plan` for this machine's first GPU (or its CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)  # a T4 only emulates bf16
    return dtype_plan(cuda=cuda, bf16=bf16, load_in_4bit=load_in_4bit, full_finetune=full_finetune)


def default_dtype(load_in_4bit: bool = False, full_finetune: bool = False):
    """The torch dtype of the weights on this machine (:func:`machine_dtype_plan`)."""
    import torch

    return getattr(torch, machine_dtype_plan(load_in_4bit, full_finetune).weights)


def vision_tower(model):
    """A loaded Qwen2.5-VL's vision tower (``model.visual`` in transformers 5), or None for a model without one."""
    inner = getattr(model, "model", None)
    return getattr(inner, "visual", None) or getattr(model, "visual", None)


def _forward_without_autocast(forward, pixel_values, *args, **kwargs):
    """``forward`` in float32 with autocast off, whatever autocast the caller runs under."""
    import torch

    with torch.autocast(device_type=pixel_values.device.type, enabled=False):
        return forward(pixel_values.float(), *args, **kwargs)


def apply_dtype_plan(model, plan: DtypePlan) -> None:
    """Give a loaded model's vision tower the plan's dtype and, where the plan says so, keep it out of autocast.

    The Trainer's fp16 autocast would otherwise run the vision tower's matmuls in fp16 even with fp32
    weights. Gradient checkpointing records the autocast state of each forward, so its recomputation
    stays in fp32 too. Its output is cast to the language model's dtype where the image features are placed.
    """
    import torch

    tower = vision_tower(model)
    if tower is None:
        return
    tower.to(getattr(torch, plan.vision))
    if plan.vision_outside_autocast and getattr(tower.forward, "func", None) is not _forward_without_autocast:
        tower.forward = functools.partial(_forward_without_autocast, tower.forward)


def qlora_quantization_config(compute_dtype):
    """The QLoRA base: bitsandbytes NF4 with double quantisation, computing in ``compute_dtype``,
    the modules of :data:`QLORA_UNQUANTISED_MODULES` left as they are."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=list(QLORA_UNQUANTISED_MODULES),
    )
