"""Qwen2.5's tokenizer pieces, written here so that no download is needed: its added tokens, the
Qwen2.5-VL chat template and a ``Qwen2Tokenizer`` constructor over any byte-level BPE.

The offline tiny model (:mod:`chartrvr_nb.tiny`) trains its small BPE and wraps it with these; the
random-weight 3B of the bench pads that BPE to Qwen2.5's full vocabulary and uses them too, so
both see Qwen's special tokens, end-of-turn and padding conventions and chat format.
tokenizers and transformers are imported inside :func:`qwen2_5_tokenizer`.
"""

from __future__ import annotations

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


def qwen2_5_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    """A ``Qwen2Tokenizer`` over a byte-level BPE that already holds Qwen2.5's added tokens.

    ``<|im_end|>`` ends a turn (eos) and ``<|endoftext|>`` pads, as in Qwen2.5-VL-Instruct; the
    chat template is :data:`QWEN2_5_VL_CHAT_TEMPLATE`.

    Example:
        >>> vocab = {"a": 0, "b": 1, "ab": 2}
        >>> vocab.update({token: len(vocab) + i for i, (token, _) in enumerate(QWEN2_5_ADDED_TOKENS)})
        >>> tokenizer = qwen2_5_tokenizer(vocab, [("a", "b")])
        >>> tokenizer.eos_token, tokenizer.pad_token, tokenizer.convert_tokens_to_ids("<|image_pad|>")
        ('<|im_end|>', '<|endoftext|>', 15)
        >>> print(tokenizer.apply_chat_template([{"role": "user", "content": "ab"}], tokenize=False))
        <|im_start|>system
        You are a helpful assistant.<|im_end|>
        <|im_start|>user
        ab<|im_end|>
        <BLANKLINE>
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
