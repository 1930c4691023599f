"""The system prompt: the authors' templates fetched, parsed (never run), verified by SHA-256 and cached.

Offline, with a stand-in ``prompts.py`` that each test writes in the same structure as the authors' file
(a module-level dict literal of numbered triple-quoted strings) but with our own placeholder text; the
expected hashes are computed here from that text. The authors' real hashes are checked as the pinned
constants. Their text never appears in this repository.
"""

import json

import pytest
from prompt_stand_in import CHAIN, DIRECT, sha, stand_in_source, write_stand_in

from chartrvr_nb import system_prompts
from chartrvr_nb.cli import main
from chartrvr_nb.prompts import DIRECT_PROMPT, SYSTEM_PROMPT, build_messages
from chartrvr_nb.system_prompts import (
    CHART_RVR_PROMPTS,
    PromptUnavailableError,
    authors_template,
    extract_templates,
    resolve_system_prompt,
)


@pytest.fixture
def stand_in(tmp_path):
    """A stand-in source served from a file:// URL, with hashes of our placeholder text."""
    (tmp_path / "served").mkdir()
    served = write_stand_in(tmp_path / "served" / "prompts.py")
    source = stand_in_source(served.as_uri())
    return source, served, tmp_path / "cache"


def test_the_pinned_source_is_the_authors_commit_and_hashes():
    assert CHART_RVR_PROMPTS.commit == "83c44068a920b7101b7c3c7d6edcb96fdf9a321d"
    assert CHART_RVR_PROMPTS.sha256 == {
        4: "f25a391ec4e13d1f3db1160c562fbf7747bf2b1939f13dd4545df335a48a49a1",
        1: "9907cacd5f7f7b6c28195065c2e0bb825d700bb21ce563e020b2d6266fc481f4",
    }
    assert CHART_RVR_PROMPTS.download_url == (
        "https://raw.githubusercontent.com/sanchit97/chartrl/83c44068a920b7101b7c3c7d6edcb96fdf9a321d/prompts.py"
    )


def test_the_file_is_parsed_never_executed(tmp_path):
    sentinel = tmp_path / "executed.txt"
    path = write_stand_in(tmp_path / "prompts.py", sentinel=sentinel)
    assert extract_templates(path.read_text(), "SYSTEM_PROMPT_TEMPLATES") == {1: DIRECT, 2: "other", 4: CHAIN}
    assert not sentinel.exists()
    with pytest.raises(ValueError, match="assigns no TEMPLATES"):
        extract_templates(path.read_text(), "TEMPLATES")
    with pytest.raises(ValueError, match="not a plain literal"):
        extract_templates("SYSTEM_PROMPT_TEMPLATES = {4: open('x').read()}", "SYSTEM_PROMPT_TEMPLATES")


def test_first_use_downloads_verifies_and_caches_then_works_offline(stand_in):
    source, served, cache = stand_in
    fetched = authors_template(4, source=source, cache_dir=cache)
    assert fetched.text == CHAIN and fetched.sha256 == sha(CHAIN) and fetched.choice == "chart-rvr"
    assert (
        fetched.origin
        == f"example/chartrl@0000000 prompts.py SYSTEM_PROMPT_TEMPLATES[4], downloaded from {served.as_uri()}"
    )
    cached = cache / "chart-rvr-prompts" / ("0" * 40) / "prompts.py"
    assert cached.read_text() == served.read_text()
    served.unlink()  # the network is gone: the cache answers
    again = authors_template(1, source=source, cache_dir=cache)
    assert again.text == DIRECT and again.origin.endswith(f"cached at {cached}")


def test_a_damaged_cache_is_fetched_again(stand_in):
    source, served, cache = stand_in
    authors_template(4, source=source, cache_dir=cache)
    cached = cache / "chart-rvr-prompts" / ("0" * 40) / "prompts.py"
    write_stand_in(cached, chain=CHAIN + "edited")
    assert authors_template(4, source=source, cache_dir=cache).origin.endswith(f"downloaded from {served.as_uri()}")
    assert cached.read_text() == served.read_text()


def test_a_local_copy_is_checked_like_a_download(stand_in, tmp_path):
    source, served, cache = stand_in
    served.unlink()
    copy = write_stand_in(tmp_path / "copy.py")
    assert authors_template(4, copy, source=source, cache_dir=cache).origin.endswith(f"read from {copy}")
    copy.unlink()  # verified once, the copy is cached: later runs and evaluations need neither it nor the network
    assert authors_template(1, source=source, cache_dir=cache).origin.endswith(
        "cached at " + str(cache / "chart-rvr-prompts" / ("0" * 40) / "prompts.py")
    )
    tampered = write_stand_in(tmp_path / "tampered.py", chain=CHAIN.replace("Answer", "Reply"))
    with pytest.raises(PromptUnavailableError) as caught:
        authors_template(4, tampered, source=source, cache_dir=cache)
    message = str(caught.value)
    assert f"its SHA-256 is {sha(CHAIN.replace('Answer', 'Reply'))}, expected {sha(CHAIN)}" in message
    assert "--system-prompt-file PATH" in message and "--system-prompt project" in message


def test_no_copy_and_no_network_says_where_the_text_comes_from_and_how_to_provide_it(stand_in, tmp_path):
    source, served, cache = stand_in
    served.unlink()
    with pytest.raises(PromptUnavailableError) as caught:
        authors_template(4, source=source, cache_dir=cache)
    message = str(caught.value)
    assert message.startswith(f"Could not download {served.as_uri()}")
    for needed in (
        "SYSTEM_PROMPT_TEMPLATES of prompts.py in example/chartrl",
        "no license",
        "git show",
        "--system-prompt-file",
    ):
        assert needed in message
    with pytest.raises(PromptUnavailableError, match="does not exist"):
        authors_template(4, tmp_path / "missing.py", source=source, cache_dir=cache)


def test_each_prompt_style_gets_its_template(stand_in):
    source, _, cache = stand_in
    assert resolve_system_prompt("chart-rvr", "rvr", source=source, cache_dir=cache).text == CHAIN
    assert resolve_system_prompt("chart-rvr", "cot", source=source, cache_dir=cache).text == CHAIN
    assert resolve_system_prompt("chart-rvr", "direct", source=source, cache_dir=cache).text == DIRECT
    assert resolve_system_prompt("project", "rvr").text == SYSTEM_PROMPT
    assert resolve_system_prompt("project", "direct").text == DIRECT_PROMPT


def test_the_prompt_is_the_system_message_and_renders_as_the_authors_string_content(tiny_model_dir):
    from transformers import AutoProcessor

    messages = build_messages("Which bar is tallest?", system_prompt=CHAIN)
    assert messages[0] == {"role": "system", "content": [{"type": "text", "text": CHAIN}]}
    processor = AutoProcessor.from_pretrained(tiny_model_dir)  # the Qwen2.5-VL chat template
    as_string = [{"role": "system", "content": CHAIN}, messages[1]]  # how the authors pass it (main.py 512)
    render = lambda m: processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)  # noqa: E731
    assert render(messages) == render(as_string)
    assert render(messages).startswith(f"<|im_start|>system\n{CHAIN}<|im_end|>")


@pytest.fixture
def pinned_stand_in(stand_in, monkeypatch):
    """The stand-in in place of the authors' pinned source, as the command line and train() resolve it."""
    source, served, cache = stand_in
    monkeypatch.setattr(system_prompts, "CHART_RVR_PROMPTS", source)
    monkeypatch.setenv("CHARTRVR_NB_CACHE", str(cache))
    return source, served, cache


def test_the_prompt_command_prints_the_prompt_its_source_and_hash(pinned_stand_in, tmp_path, capsys):
    _, served, _ = pinned_stand_in
    assert main(["prompt", "--system-prompt-file", str(served)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:4] == [
        "system prompt  chart-rvr",
        f"source         example/chartrl@0000000 prompts.py SYSTEM_PROMPT_TEMPLATES[4], read from {served}",
        f"sha256         {sha(CHAIN)}",
        f"characters     {len(CHAIN)}",
    ]
    assert out.endswith(f"characters     {len(CHAIN)}\n\n{CHAIN}\n")  # the text exactly, after a blank line
    assert main(["prompt", "--preset", "smoke"]) == 0
    assert f"sha256         {sha(SYSTEM_PROMPT)}" in capsys.readouterr().out
    tampered = write_stand_in(tmp_path / "tampered.py", chain="something else")
    assert main(["prompt", "--system-prompt-file", str(tampered)]) == 2
    assert "does not hold the authors' text" in capsys.readouterr().err


def test_training_stops_before_any_model_loads_without_the_prompt(pinned_stand_in, tmp_path, monkeypatch):
    from chartrvr_nb import models
    from chartrvr_nb.presets import get_preset
    from chartrvr_nb.train import train

    _, served, _ = pinned_stand_in
    served.unlink()
    monkeypatch.setattr(models, "load_model_and_processor", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(PromptUnavailableError, match="--system-prompt-file"):
        train(get_preset("smoke", system_prompt="chart-rvr"), output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_evaluation_uses_the_prompt_its_run_trained_with(pinned_stand_in, tmp_path):
    from chartrvr_nb.eval_config import EvalConfig
    from chartrvr_nb.eval_inputs import evaluation_system_prompt
    from chartrvr_nb.runfiles import write_run_config

    run = tmp_path / "run"
    run.mkdir()
    write_run_config(run, {"name": "smoke", "system_prompt": "chart-rvr", "system_prompt_sha256": sha(CHAIN)})
    (run / "checkpoint-4").mkdir()
    assert evaluation_system_prompt("tiny", EvalConfig(), str(run / "checkpoint-4")).text == CHAIN
    assert evaluation_system_prompt("tiny", EvalConfig(prompt="direct"), str(run)).text == DIRECT
    assert evaluation_system_prompt("tiny", EvalConfig(system_prompt="project"), str(run)).text == SYSTEM_PROMPT
    assert evaluation_system_prompt("tiny", EvalConfig()).text == SYSTEM_PROMPT  # no run: the tiny model's
    assert evaluation_system_prompt("qwen2-5-3b", EvalConfig()).text == CHAIN  # no run: the authors'
    write_run_config(run, {"name": "smoke", "system_prompt": "project", "system_prompt_sha256": sha("older wording")})
    with pytest.raises(ValueError, match="trained with a 'project' system prompt whose SHA-256 is"):
        evaluation_system_prompt("tiny", EvalConfig(), str(run))
    assert json.loads((run / "run_config.json").read_text())["system_prompt"] == "project"
