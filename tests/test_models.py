"""models: registry, the offline tiny Qwen2.5-VL (built, saved, reloaded like the 3B), LoRA counts."""

import json

import pytest

from chartrvr_nb import dtypes, models
from chartrvr_nb import tiny as tiny_module
from chartrvr_nb.models import (
    count_parameters,
    fork_lora_config,
    load_model_and_processor,
    meta_lora_parameter_counts,
    qwen2_5_vl_3b_config,
    resolve_model,
    trainable_params_line,
)
from chartrvr_nb.prompts import SYSTEM_PROMPT, build_messages
from chartrvr_nb.qwen_tokenizer import QWEN2_5_ADDED_TOKENS
from chartrvr_nb.tiny import build_tiny_model, tiny_model_dir


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    """The tiny model and processor, loaded through the Auto classes exactly as the 3B is."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    return model, processor


@pytest.fixture
def one_thread():
    """Generation with a 0.2M model is all thread overhead; one thread is fastest on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chart_rows():
    from chartrvr_nb.data import make_synthetic_rows

    return make_synthetic_rows(8, seed=11, max_pixels=tiny_module.TINY_MAX_PIXELS)


def test_registry_names_resolve_to_hub_ids_and_unknown_names_list_the_valid_ones():
    assert resolve_model("qwen2-5-3b") == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert resolve_model("qwen2-5-7b") == "Qwen/Qwen2.5-VL-7B-Instruct"
    with pytest.raises(ValueError, match="qwen2-5-3b, qwen2-5-7b, tiny"):
        resolve_model("qwen2.5-3b")


def test_tiny_model_dir_follows_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARTRVR_NB_CACHE", str(tmp_path / "env"))
    assert tiny_model_dir() == tmp_path / "env" / tiny_module.TINY_MODEL_VERSION
    assert tiny_model_dir(tmp_path / "arg") == tmp_path / "arg" / tiny_module.TINY_MODEL_VERSION
    monkeypatch.delenv("CHARTRVR_NB_CACHE")
    assert tiny_model_dir().parts[-3:] == (".cache", "chartrvr_nb", tiny_module.TINY_MODEL_VERSION)


def test_tiny_model_is_a_quarter_million_parameter_qwen2_5_vl(tiny, tiny_model_dir):
    model, _ = tiny
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    trainable, total = count_parameters(model)
    assert 150_000 < total < 300_000
    assert trainable == total
    text = model.config.text_config
    shape = (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads)
    assert shape == (64, 2, 4, 2)
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    info = json.loads((tiny_model_dir / "build_info.json").read_text())
    assert info["parameters"] == total


def test_tiny_tokenizer_has_qwen_special_tokens_in_order(tiny):
    model, processor = tiny
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN2_5_ADDED_TOKENS]
    assert ids == list(range(ids[0], ids[0] + len(QWEN2_5_ADDED_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.text_config.vocab_size >= len(tokenizer)
    assert model.generation_config.eos_token_id[0] == tokenizer.eos_token_id
    text = "<think>\n<type>bar</type> 42.5"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_chat_template_renders_the_qwen_layout(tiny):
    _, processor = tiny
    messages = build_messages("Which bar is tallest?")
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Which bar is tallest?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert processor.apply_chat_template(plain, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    )


def test_prompt_with_image_expands_to_one_pad_token_per_merged_patch_and_generates(tiny, chart_rows, one_thread):
    import torch

    model, processor = tiny
    row = chart_rows[0]
    messages = build_messages(row["query"])
    messages[1]["content"][0] = {"type": "image", "text": None, "image": row["image"]}  # as TRL fills it
    inputs = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert image_tokens == int(inputs["image_grid_thw"].prod()) // 4
    assert image_tokens * 4 * 14 * 14 <= tiny_module.TINY_MAX_PIXELS
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_warm_start_makes_sampled_completions_earn_the_format_reward(tiny, chart_rows, one_thread):
    import torch

    from chartrvr_nb.rewards import format_reward

    model, processor = tiny
    prompts = [
        processor.apply_chat_template(build_messages(r["query"]), add_generation_prompt=True, tokenize=False)
        for r in chart_rows
    ]
    inputs = processor(
        text=prompts, images=[r["image"] for r in chart_rows], return_tensors="pt", padding=True, padding_side="left"
    )
    torch.manual_seed(0)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=160)
    completions = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    rewards = format_reward(completions)
    assert sum(r == 2.0 for r in rewards) / len(rewards) > 0, completions


def test_load_model_and_processor_loads_tiny_in_fp32_on_cpu_with_the_pixel_budget(tiny_model_dir):
    import torch

    model, processor = load_model_and_processor("tiny", max_pixels=112 * 112)
    assert model.dtype == (dtypes.default_dtype() if torch.cuda.is_available() else torch.float32)
    assert processor.image_processor.size["longest_edge"] == 112 * 112
    _, default_processor = load_model_and_processor("tiny")
    assert default_processor.image_processor.size["longest_edge"] == tiny_module.TINY_MAX_PIXELS


def test_uncached_hub_model_offline_says_how_to_get_it():
    with pytest.raises(OSError, match="--vlm-name tiny") as error:
        load_model_and_processor("qwen2-5-3b")
    assert "huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct" in str(error.value)


def test_an_unreachable_hub_is_said_at_once_not_after_minutes_of_retries(tmp_path):
    """Not offline by setting, the hub simply out of reach (no network): transformers alone retries each
    file for about 2.5 minutes before it fails; one quick look says it now, in one line."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://hub.invalid"}
    code = "from chartrvr_nb.models import load_model_and_processor; load_model_and_processor('qwen2-5-3b')"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert time.monotonic() - started < 60, "the hub was retried before the error"
    assert "ModelUnavailableError: Could not load 'Qwen/Qwen2.5-VL-3B-Instruct'" in done.stderr
    assert "the hub could not be reached" in done.stderr and "Retrying" not in done.stderr


def test_the_hub_is_looked_at_once_and_an_answer_counts_as_reachable(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    answers = []

    def unreachable(repo_id, timeout=None):
        answers.append(timeout)
        raise OSError("[Errno -2] Name or service not known")

    def gated(repo_id, timeout=None):
        import httpx2

        answer = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/api/models/x"))
        raise HfHubHTTPError("401 Client Error: gated repository", response=answer)

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    assert models._cache_only("Qwen/Qwen2.5-VL-3B-Instruct") is True and answers == [10]
    monkeypatch.setattr(huggingface_hub, "model_info", gated)
    assert models._cache_only("Qwen/Qwen2.5-VL-3B-Instruct") is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models._cache_only("Qwen/Qwen2.5-VL-3B-Instruct") is True


def test_the_first_build_says_it_is_building(monkeypatch, tmp_path, capsys):
    def complete(folder, name="tiny"):
        (folder / "build_info.json").write_text(json.dumps({"recipe": tiny_module._tiny_recipe()}))

    monkeypatch.setattr(tiny_module, "_build_tiny_model_into", complete)
    build_tiny_model(tmp_path)
    out = capsys.readouterr().out
    assert out.startswith(f"Building the offline 'tiny' model into {tiny_model_dir(tmp_path)} (first use only")
    assert "Built the 'tiny' model in" in out
    build_tiny_model(tmp_path)
    assert capsys.readouterr().out == ""  # built once: nothing to say


def test_build_is_atomic_and_reused(monkeypatch, tmp_path):
    calls = []

    def broken(folder, name="tiny"):
        (folder / "model.safetensors").write_text("half")
        raise KeyboardInterrupt  # the user stops the build half-way

    def complete(folder, name="tiny"):
        calls.append(folder)
        (folder / "model.safetensors").write_text("weights")
        (folder / "build_info.json").write_text(json.dumps({"recipe": tiny_module._tiny_recipe()}))

    monkeypatch.setattr(tiny_module, "_build_tiny_model_into", broken)
    with pytest.raises(KeyboardInterrupt):
        build_tiny_model(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half model, no leftover staging folder

    monkeypatch.setattr(tiny_module, "_build_tiny_model_into", complete)
    target = build_tiny_model(tmp_path)
    assert target == tiny_model_dir(tmp_path) and (target / "model.safetensors").read_text() == "weights"
    assert build_tiny_model(tmp_path) == target and len(calls) == 1
    build_tiny_model(tmp_path, force=True)
    assert len(calls) == 2 and [p.name for p in tmp_path.iterdir()] == [target.name]
    monkeypatch.setattr(tiny_module, "WARM_START_STEPS", tiny_module.WARM_START_STEPS + 1)  # a changed recipe
    build_tiny_model(tmp_path)
    assert len(calls) == 3


def test_fork_lora_config():
    config = fork_lora_config()
    assert (config.r, config.lora_alpha, config.lora_dropout, config.bias) == (8, 16, 0.05, "none")
    assert config.task_type == "CAUSAL_LM"
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"}


def test_3b_config_matches_the_hub_config():
    config = qwen2_5_vl_3b_config()
    text, vision = config.text_config, config.vision_config
    shape = (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads)
    assert shape == (2048, 36, 16, 2)
    assert (text.intermediate_size, text.vocab_size, config.tie_word_embeddings) == (11008, 151936, True)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (vision.depth, vision.hidden_size, vision.intermediate_size) == (32, 1280, 3420)
    assert vision.out_hidden_size == 2048
    assert (list(vision.fullatt_block_indexes), vision.window_size) == ([7, 15, 23, 31], 112)


def test_paper_lora_on_the_3b_has_the_paper_parameter_counts():
    trainable, total = meta_lora_parameter_counts("qwen2-5-3b")
    assert (trainable, total) == (18_576_384, 3_773_199_360)
    assert trainable_params_line(trainable, total) == (
        "trainable params: 18,576,384 || all params: 3,773,199,360 || trainable%: 0.4923"
    )


def test_count_parameters_agrees_with_peft(tiny_model_dir):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), fork_lora_config())
    assert count_parameters(model) == model.get_nb_trainable_parameters()
