"""Generation for evaluation: batched greedy answers, images sized as in training, and reading the replies.

:func:`generate_batches` answers examples batch by batch with greedy decoding (left padding, so a batch
answers exactly as the same examples one at a time), images fitted to the evaluation's pixel budget by
:func:`image_size_rule`; the protocol's answer reader (:data:`ANSWER_READERS`) reads the scored answer.
This project's reads ``<answer>...</answer>`` for the ``rvr`` and ``cot`` prompts (a reply without the
tag scores 0, as in the accuracy reward) and the whole reply for ``direct``; the authors' is
:func:`parse_reply_chart_rvr`. The runner around it (files, scoring, resuming) is :mod:`chartrvr_nb.evaluate`.

torch, transformers and tqdm are imported inside the functions that use them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .answers import chart_rvr_answer, extract_answer, extract_between
from .benchmark_data import load_image
from .eval_config import EvalConfig
from .prompts import build_messages

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from PIL.Image import Image


def parse_reply(reply: str, prompt: str) -> dict[str, Any]:
    """Split a model reply into the scored prediction and the reasoning.

    For ``rvr`` and ``cot`` the prediction is the text inside the last ``<answer>`` tag
    (``answers.extract_answer``; empty when there is none) and the reasoning the text inside
    ``<think>``; for ``direct`` the prediction is the whole reply, trailing dots removed.

    Example:
        >>> parse_reply("<think>\\n<type>bar</type> ...</think>\\n<answer>12.</answer>", "rvr")
        {'prediction': '12', 'reasoning': '<type>bar</type> ...', 'answer_found': True}
        >>> parse_reply(" Yes.\\n", "direct")
        {'prediction': 'Yes', 'reasoning': None, 'answer_found': True}
        >>> parse_reply("I think 12", "cot")["prediction"]
        ''
    """
    if prompt == "direct":
        return {"prediction": reply.strip().rstrip(".").strip(), "reasoning": None, "answer_found": True}
    answer = extract_answer(reply)
    thinking = extract_between(reply, "<think>", "</think>")
    return {
        "prediction": answer or "",
        "reasoning": thinking.strip() if thinking is not None else None,
        "answer_found": answer is not None,
    }


def parse_reply_chart_rvr(reply: str, prompt: str) -> dict[str, Any]:
    """Read a reply as the Chart-RVR authors' evaluation did (sanchit97/chartrl utils.py 165-168 at 83c4406).

    With chain of thought (``rvr``, ``cot``) the prediction is :func:`chartrvr_nb.answers.chart_rvr_answer`
    (the whole reply when it has no ``<answer>`` tag); for ``direct`` it is the reply as decoded, unstripped.
    The reasoning is read as :func:`parse_reply` reads it, for display only.

    Example:
        >>> parse_reply_chart_rvr("<think>\\n<type>bar</type> ...</think>\\n<answer>12.</answer>", "rvr")
        {'prediction': '12.', 'reasoning': '<type>bar</type> ...', 'answer_found': True}
        >>> parse_reply_chart_rvr("I think 12", "cot")["prediction"]
        'I think 12'
        >>> parse_reply_chart_rvr(" Yes.\\n", "direct")["prediction"]
        ' Yes.\\n'
    """
    if prompt == "direct":
        return {"prediction": reply, "reasoning": None, "answer_found": True}
    thinking = extract_between(reply, "<think>", "</think>")
    return {
        "prediction": chart_rvr_answer(reply),
        "reasoning": thinking.strip() if thinking is not None else None,
        "answer_found": "<answer>" in reply,
    }


# How each protocol reads the scored answer from a reply (``protocols.Protocol.answer`` names one).
ANSWER_READERS = {"project": parse_reply, "chart-rvr": parse_reply_chart_rvr}


def image_size_rule(processor: Any, config: EvalConfig) -> dict[str, Any]:
    """How images are sized for ``config`` (the keyword arguments of ``data.fit_to_pixel_budget``).

    The budget is the config's (:attr:`EvalConfig.pixel_budget`), lowered to what the processor's image
    processor accepts: an image fitted to a larger budget would be resized again inside it. The
    ``chart-rvr`` resize scales every image up or down to the budget, then rounds it onto the 28-pixel
    grid as qwen-vl-utils does for the authors' evaluation (within the processor's bound); otherwise
    only larger images are shrunk, and the grid's rounding stays within the budget.

    Args:
        processor: the model's processor (its image processor's ``size["longest_edge"]`` or ``max_pixels``
            bounds the budget; Qwen2.5-VL's is 16384 * 28 * 28 pixels, the default when it has none).
        config: the evaluation settings (their pixel budget and protocol).

    Returns:
        ``{"max_pixels", "upscale", "grid_max_pixels"}``.

    Example:
        >>> image_size_rule(None, EvalConfig(protocol="chart-rvr"))
        {'max_pixels': 376320, 'upscale': True, 'grid_max_pixels': 12845056}
        >>> image_size_rule(None, EvalConfig())
        {'max_pixels': 250880, 'upscale': False, 'grid_max_pixels': None}
    """
    from .data import PROCESSOR_MAX_PIXELS

    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)  # transformers 5: a SizeDict, which is no dict but has .get
    limits = [getattr(image_processor, "max_pixels", None), size.get("longest_edge") if hasattr(size, "get") else None]
    limits = [limit for limit in limits if isinstance(limit, int) and limit > 0]
    processor_limit = min(limits, default=PROCESSOR_MAX_PIXELS)
    upscale = config.protocol_rules.image_resize == "chart-rvr"
    return {
        "max_pixels": min(config.pixel_budget, processor_limit),
        "upscale": upscale,
        "grid_max_pixels": processor_limit if upscale else None,
    }


def _greedy_config(model: Any, max_new_tokens: int, pad_token_id: int | None) -> Any:
    """The model's generation config made greedy: sampling settings dropped, so none leak in.

    Other settings stay as the model ships them (Qwen2.5-VL's ``repetition_penalty`` of 1.05,
    its two end tokens), which keeps decoding deterministic and as the released model intends.
    """
    import copy

    config = copy.deepcopy(model.generation_config)
    config.do_sample = False
    config.num_beams = 1
    config.temperature = None
    config.top_p = None
    config.top_k = None
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if pad_token_id is not None:
        config.pad_token_id = pad_token_id
    return config


def generate_batches(
    model: Any,
    processor: Any,
    examples: Sequence[Mapping[str, Any]],
    config: EvalConfig | None = None,
    *,
    description: str = "Generating",
    system_prompt: str | None = None,
) -> Iterator[list[tuple[Mapping[str, Any], Image, dict[str, Any]]]]:
    """Answer examples batch by batch, yielding ``(example, image, generation)`` per example.

    Left padding keeps every prompt's last token at the end of the batch, where generation
    continues; the attention mask tells the model which positions are padding (Qwen2.5-VL also
    derives its multimodal rotary positions from it), so a batch answers exactly as the same
    examples would one at a time. Decoding is greedy.

    Args:
        model: a Qwen2.5-VL model (or a ``PeftModel`` around one).
        processor: its processor.
        examples: dicts with ``question`` and ``image`` (see :func:`load_examples`).
        config: the settings used here: ``batch_size`` examples per ``generate`` call (1 for the
            one-at-a-time baseline), the ``prompt`` style, ``tokens_per_answer``, the image budget
            ``pixel_budget`` (images are fitted to it and the 28-pixel grid, never cropped, by the
            protocol's rule: :func:`image_size_rule`), the protocol's answer reader
            (:data:`ANSWER_READERS`) and ``progress`` (a tqdm bar).
        description: the progress bar's label.
        system_prompt: the system message's text (:func:`evaluation_system_prompt`); default this
            project's wording for the prompt style.

    Yields:
        One list per batch; each generation is ``{"reply", "prediction", "reasoning", "answer_found"}``.
    """
    import torch
    from tqdm.auto import tqdm

    from .data import fit_to_pixel_budget

    config = config or EvalConfig()
    sizing = image_size_rule(processor, config)
    read_reply = ANSWER_READERS[config.protocol_rules.answer]
    greedy = _greedy_config(model, config.tokens_per_answer, processor.tokenizer.pad_token_id)
    model.eval()
    with tqdm(total=len(examples), desc=description, unit="example", disable=not config.progress) as bar:
        for start in range(0, len(examples), config.batch_size):
            batch = examples[start : start + config.batch_size]
            # Sized as training sizes them (onto the processor's grid), so the processor takes them as they are.
            images = [fit_to_pixel_budget(load_image(example["image"]), **sizing) for example in batch]
            texts = [
                processor.apply_chat_template(
                    build_messages(example["question"], config.prompt, system_prompt),
                    tokenize=False,
                    add_generation_prompt=True,
                )
                for example in batch
            ]
            inputs = processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")
            inputs = inputs.to(model.device)
            with torch.inference_mode():
                output = model.generate(**inputs, generation_config=greedy)
            replies = processor.batch_decode(
                output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            yield [
                (example, image, {"reply": reply, **read_reply(reply, config.prompt)})
                for example, image, reply in zip(batch, images, replies)
            ]
            bar.update(len(batch))


def generate_answers(
    model: Any,
    processor: Any,
    examples: Sequence[Mapping[str, Any]],
    config: EvalConfig | None = None,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """Answer every example with batched greedy generation; ``batch_size=1`` answers one at a time.

    Args: as :func:`generate_batches`.

    Returns:
        One ``{"reply", "prediction", "reasoning", "answer_found"}`` per example, in order.
    """
    batches = generate_batches(model, processor, examples, config, system_prompt=system_prompt)
    return [generation for batch in batches for _, _, generation in batch]
