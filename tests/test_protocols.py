"""The evaluation protocols: ``--protocol chart-rvr`` reproduces the Chart-RVR authors' evaluation at
sanchit97/chartrl@83c4406, element by element, and end to end on the tiny model.

Each expected value is worked out by hand from the authors' code (read for its facts, never copied) or,
for the 5,000-example samples, taken from ``datasets``' own ``shuffle(seed=2026).select(range(5000))``
over the rows their loader would have built. Their prompts are replaced by a stand-in ``prompts.py``
written here with our own placeholder text, as in ``test_system_prompts.py``.
"""

import io
import json
import os
import random
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
from PIL import Image
from prompt_stand_in import CHAIN, DIRECT, sha, stand_in_source, write_stand_in

from chartrvr_nb import system_prompts
from chartrvr_nb.answers import chart_rvr_answer
from chartrvr_nb.benchmark_data import QUESTION_FIELDS, load_examples, sample_indices
from chartrvr_nb.benchmarks import BENCHMARKS
from chartrvr_nb.cli import main
from chartrvr_nb.data import fit_to_pixel_budget
from chartrvr_nb.eval_config import EvalConfig
from chartrvr_nb.eval_inputs import evaluation_system_prompt
from chartrvr_nb.eval_results import results_table
from chartrvr_nb.generation import ANSWER_READERS, image_size_rule, parse_reply, parse_reply_chart_rvr
from chartrvr_nb.official_scoring import SCORER_COMMITS, chartrl_relaxed_accuracy
from chartrvr_nb.presets import IMAGE_RESIZE_MODES
from chartrvr_nb.protocols import PROTOCOLS, get_protocol
from chartrvr_nb.runfiles import write_run_config
from chartrvr_nb.system_prompts import SYSTEM_PROMPT_CHOICES


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The table as declared
# --------------------------------------------------------------------------------------------


def test_the_chart_rvr_protocol_is_the_authors_evaluation_setting():
    protocol = get_protocol("chart-rvr")
    assert protocol.system_prompt == "chart-rvr"  # main.py 171: template 4 with --cot, 1 without
    assert protocol.max_pixels == 376_320 == 480 * 28 * 28  # utils.resize_fit, utils.py 413
    assert protocol.image_resize == "chart-rvr"  # scaled up or down (utils.py 419-424)
    assert dict(protocol.max_new_tokens) == {"rvr": 768, "cot": 768, "direct": 100}  # utils.py 24
    assert (protocol.question, protocol.answer) == ("chart-rvr", "chart-rvr")
    assert dict(protocol.samples) == {"plotqa": 5000, "chartbench": 5000} and protocol.sample_seed == 2026
    assert protocol.source == "sanchit97/chartrl@83c4406 main.py --mode eval"


def test_the_project_protocol_decides_nothing_and_is_the_default():
    assert EvalConfig().protocol == "project" and PROTOCOLS["project"].fixes() == {}
    config = EvalConfig()
    assert (config.tokens_per_answer, config.pixel_budget, config.system_prompt_choice) == (768, 250_880, None)
    assert EvalConfig(prompt="direct").tokens_per_answer == 64


def test_every_rule_a_protocol_names_exists():
    for protocol in PROTOCOLS.values():
        assert protocol.answer in ANSWER_READERS
        assert protocol.question in QUESTION_FIELDS
        assert protocol.image_resize in IMAGE_RESIZE_MODES
        assert protocol.system_prompt in (None, *SYSTEM_PROMPT_CHOICES)
        assert set(protocol.samples) <= set(BENCHMARKS)
        assert set(protocol.max_new_tokens) <= {"rvr", "cot", "direct"}


def test_a_setting_the_protocol_decides_cannot_be_changed_silently():
    with pytest.raises(ValueError, match=r"--max-pixels 250880 \(it uses 376320\).*--protocol project"):
        EvalConfig(protocol="chart-rvr", max_pixels=250_880)
    with pytest.raises(ValueError, match=r"--max-new-tokens 64 \(it uses 100\)"):
        EvalConfig(protocol="chart-rvr", prompt="direct", max_new_tokens=64)
    with pytest.raises(ValueError, match=r"--system-prompt project \(it uses chart-rvr\)"):
        EvalConfig(protocol="chart-rvr", system_prompt="project")
    same = EvalConfig(protocol="chart-rvr", max_pixels=376_320, max_new_tokens=768, system_prompt="chart-rvr")
    assert same.pixel_budget == 376_320
    # The notebooks' settings for a preset keep what the protocol does not decide.
    from_preset = EvalConfig.for_preset("colab-t4", protocol="chart-rvr", prompt="direct")
    assert (from_preset.tokens_per_answer, from_preset.pixel_budget, from_preset.load_in_4bit) == (100, 376_320, True)


# --------------------------------------------------------------------------------------------
# System prompt: template 4 with chain of thought, 1 for direct, whatever the run trained with
# --------------------------------------------------------------------------------------------


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """The stand-in ``prompts.py`` in place of the authors' pinned one, cached under tmp_path."""
    served = write_stand_in(tmp_path / "prompts.py")
    source = stand_in_source((tmp_path / "nowhere.py").as_uri())  # nothing to download: pass the file
    monkeypatch.setattr(system_prompts, "CHART_RVR_PROMPTS", source)
    cache = tmp_path / "cache" / "prompts.py"
    monkeypatch.setattr(system_prompts, "cached_prompts_file", lambda source, cache_dir=None: cache)
    return served


def test_the_protocol_asks_with_the_authors_template_for_the_prompt_style(stand_in, tmp_path):
    config = EvalConfig(protocol="chart-rvr", system_prompt_file=str(stand_in))
    assert evaluation_system_prompt("tiny", config).text == CHAIN  # the tiny model's own default is ours
    direct = EvalConfig(protocol="chart-rvr", prompt="direct", system_prompt_file=str(stand_in))
    assert evaluation_system_prompt("tiny", direct).text == DIRECT
    assert evaluation_system_prompt("tiny", EvalConfig(prompt="cot", protocol="chart-rvr")).text == CHAIN  # cached
    run = tmp_path / "run"  # a run trained with this project's prompt is still asked as the authors asked
    run.mkdir()
    write_run_config(run, {"name": "smoke", "system_prompt": "project", "system_prompt_sha256": sha("ours")})
    assert evaluation_system_prompt("tiny", EvalConfig(protocol="chart-rvr"), str(run)).text == CHAIN


# --------------------------------------------------------------------------------------------
# Image size: up or down to 376,320 pixels, then onto the 28-pixel grid
# --------------------------------------------------------------------------------------------


class QwenProcessor:
    """Stands in for Qwen2.5-VL-3B's processor: only its image bound matters (16384 * 28 * 28 pixels)."""

    class image_processor:  # noqa: N801 - the attribute name a processor has
        max_pixels = None
        size = {"longest_edge": 16384 * 28 * 28, "shortest_edge": 56 * 56}


@pytest.mark.parametrize(
    ("size", "chart_rvr", "project"),
    [
        # 1120 x 1344 = 4 x 376,320: halved to 560 x 672 (20 x 24 cells of 28 px). Ours shrinks it to
        # 250,880 pixels: scale 1/sqrt(6) gives 457 x 548, rounded to 448 x 560.
        ((1120, 1344), (560, 672), (448, 560)),
        # 320 x 240: scaled up by sqrt(4.9) = 2.2136 to int(708.35) x int(531.26) = 708 x 531, rounded to the
        # nearest multiples of 28: 700 x 532. Ours leaves it at its size, rounded onto the grid: 308 x 252.
        ((320, 240), (700, 532), (308, 252)),
        # 280 x 336 = 376,320 / 4: doubled to 560 x 672.
        ((280, 336), (560, 672), (280, 336)),
    ],
)
def test_images_are_scaled_up_or_down_to_the_authors_budget(size, chart_rvr, project):
    image = Image.new("RGB", size, "white")
    authors = image_size_rule(QwenProcessor(), EvalConfig(protocol="chart-rvr"))
    assert authors == {"max_pixels": 376_320, "upscale": True, "grid_max_pixels": 12_845_056}
    assert fit_to_pixel_budget(image, **authors).size == chart_rvr
    assert fit_to_pixel_budget(image, **image_size_rule(QwenProcessor(), EvalConfig())).size == project


def test_a_processor_with_a_smaller_bound_lowers_the_budget(tiny):
    """The tiny model's processor accepts 224 * 224 pixels at most; an image fitted to more would be resized
    again inside it. A 96 x 64 chart is scaled up by sqrt(50176 / 6144) = 2.858 to 274 x 182, rounded to
    280 x 168 (182 / 28 = 6.5 rounds to even); this project's rule only puts it on the grid: 84 x 56."""
    _, processor = tiny
    rule = image_size_rule(processor, EvalConfig(protocol="chart-rvr"))
    assert rule == {"max_pixels": 50_176, "upscale": True, "grid_max_pixels": 50_176}
    chart = Image.new("RGB", (96, 64), "white")
    assert fit_to_pixel_budget(chart, **rule).size == (280, 168)
    assert fit_to_pixel_budget(chart, **image_size_rule(processor, EvalConfig())).size == (84, 56)


# --------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("<think>\n<type>bar</type>\n</think>\n<answer> 42. </answer>", "42."),  # dots stay for the scorer
        ("  The answer is 12.\n", "The answer is 12."),  # no tag: the whole reply, stripped
        ("<answer>7</answer>\n<answer>8</answer>", "8"),  # the last tag
        ("<think>x</think><answer> 9", "9"),  # cut short before the closing tag
        ("12</answer> and more", "12"),  # no opening tag, but the closing one still cuts
        ("<answer>\n 3 \n</answer></answer>", "3"),
        ("<answer></answer>", ""),
        ("", ""),
    ],
)
def test_the_authors_answer_reading(reply, answer):
    assert chart_rvr_answer(reply) == answer
    assert parse_reply_chart_rvr(reply, "rvr")["prediction"] == answer
    assert parse_reply_chart_rvr(reply, "cot")["prediction"] == answer


def test_a_reply_without_a_tag_is_scored_whole_not_as_empty():
    reply = "12.5"
    assert parse_reply(reply, "rvr")["prediction"] == ""  # ours: no tag, no answer
    assert parse_reply_chart_rvr(reply, "rvr") == {"prediction": "12.5", "reasoning": None, "answer_found": False}
    assert chartrl_relaxed_accuracy("12.5", parse_reply_chart_rvr(reply, "rvr")["prediction"])
    # Direct prompting scores the reply as decoded: their scorer drops one final dot, then strips, so a
    # trailing newline keeps the dot in (utils.py 159-161; metrics.py 50-51).
    assert parse_reply_chart_rvr("Yes.\n", "direct")["prediction"] == "Yes.\n"
    assert chartrl_relaxed_accuracy("Yes", "Yes.") and not chartrl_relaxed_accuracy("Yes", "Yes.\n")


# --------------------------------------------------------------------------------------------
# The 5,000-example samples: datasets' own shuffle(seed=2026).select(range(5000))
# --------------------------------------------------------------------------------------------


def test_sample_indices_are_datasets_shuffle_and_select():
    from datasets import Dataset

    for count, size in ((7_321, 5_000), (5_000, 5_000), (12, 5)):
        rows = Dataset.from_dict({"position": list(range(count))})
        expected = rows.shuffle(seed=2026).select(range(size))["position"]
        assert sample_indices(count, size, 2026) == list(expected)
    few = Dataset.from_dict({"position": [0, 1, 2]}).shuffle(seed=2026)["position"]
    assert sample_indices(3, 5000, 2026) == list(few)  # fewer rows than the sample: all of them, shuffled


def write_plotqa(folder: Path, count: int) -> list[dict]:
    """A PlotQA release of ``count`` questions on two images, in its real layout."""
    (folder / "test" / "png").mkdir(parents=True)
    qa_pairs = [
        {
            "image_index": i % 2,
            "question_string": f"What is the value of bar {i}? ",  # the trailing space is kept by their loader
            "answer": i * 1.5 if i % 3 else "Yes",
            "answer_bbox": {},
            "template": "data_retrieval",
            "type": ("data_retrieval", "structural", "reasoning")[i % 3],
            "question_id": 1000 + i,
        }
        for i in range(count)
    ]
    (folder / "test" / "qa_pairs_V2.json").write_text(json.dumps({"qa_pairs": qa_pairs}))
    for index in (0, 1):
        Image.new("RGB", (96, 64), ("white", "gray")[index]).save(folder / "test" / "png" / f"{index}.png")
    return qa_pairs


def test_the_plotqa_sample_is_the_rows_the_authors_loader_gave(tmp_path):
    from datasets import Dataset

    qa_pairs = write_plotqa(tmp_path / "plotqa", 5_321)
    # Their loader: every qa pair in file order, question and answer as str (dataset_process.py 705-715),
    # then main.py 133-134.
    theirs = Dataset.from_list(
        [
            {"question_id": r["question_id"], "query": str(r["question_string"]), "label": str(r["answer"])}
            for r in qa_pairs
        ]
    )
    theirs = theirs.shuffle(seed=2026).select(range(5000))
    ours = load_examples("plotqa", data_dir=tmp_path / "plotqa", protocol="chart-rvr")
    assert [e["id"] for e in ours] == [str(i) for i in theirs["question_id"]]
    assert [e["question"] for e in ours] == list(theirs["query"])
    assert [e["answer"] for e in ours] == list(theirs["label"])
    assert load_examples("plotqa", data_dir=tmp_path / "plotqa", protocol="chart-rvr", limit=7) == ours[:7]
    project = load_examples("plotqa", data_dir=tmp_path / "plotqa", limit=3)
    assert [e["id"] for e in project] == ["1000", "1001", "1002"]  # ours: every question, in file order
    assert project[0]["question"] == "What is the value of bar 0?"


def write_chartbench(folder: Path, pairs: int, numeric: int) -> list[dict]:
    """SincereX/ChartBench's layout (test.jsonl, images in data/test.zip): ``pairs`` Acc+ rows of two yes/no
    turns interleaved with ``numeric`` one-turn rows."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: chart_bench\n  data_files:\n  - split: test_data\n    path: test.jsonl\n---\n"
    )
    kinds = ["pair"] * pairs + ["numeric"] * numeric
    random.Random(0).shuffle(kinds)
    rows = []
    for i, kind in enumerate(kinds):
        image = f"./data/test/bar/vertical_single/chart_{i % 2}/image.png"
        if kind == "numeric":
            rows.append(
                {
                    "id": i,
                    "image": image,
                    "type": {"chart": "bar", "image": "vertical_single", "task": "", "QA": "GPT-acc"},
                    "conversation": [{"query": f" What is the value of {i}? ", "label": f" {i} "}],
                }
            )
        else:
            rows.append(
                {
                    "id": i,
                    "image": image,
                    "type": {"chart": "line", "image": "line_single", "task": "VE", "QA": "Acc+"},
                    "conversation": [
                        {"query": f"The value of {i} is {i}.", "label": "Yes"},
                        {"query": f"The value of {i} is {i + 1}.", "label": "No"},
                    ],
                }
            )
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "data").mkdir()
    with zipfile.ZipFile(folder / "data" / "test.zip", "w") as zipped:
        for index in (0, 1):
            image = png_bytes(Image.new("RGB", (96, 64), ("white", "gray")[index]))
            zipped.writestr(f"test/bar/vertical_single/chart_{index}/image.png", image)
    return rows


def test_the_chartbench_sample_is_the_turns_the_authors_loader_gave(tmp_path):
    from datasets import Dataset

    rows = write_chartbench(tmp_path / "chartbench-sample", pairs=2_300, numeric=600)
    # Their loader (dataset_process.py 246-270): both turns of a two-turn conversation, else the first;
    # each query stripped with the instruction appended, each label stripped; then main.py 163.
    turns = [
        {"query": turn["query"].strip() + " For binary questions, answer in yes/no.", "label": turn["label"].strip()}
        for row in rows
        for turn in (row["conversation"] if len(row["conversation"]) == 2 else row["conversation"][:1])
    ]
    assert len(turns) == 5_200
    theirs = Dataset.from_list(turns).shuffle(seed=2026).select(range(5000))
    ours = load_examples("chartbench", data_dir=tmp_path / "chartbench-sample", protocol="chart-rvr")
    assert [e["question"] for e in ours] == list(theirs["query"])
    assert [e["answer"] for e in ours] == list(theirs["label"])
    pairs = [e for e in ours if e["metric"] == "yes_no"]  # the official scorer still finds its pairs
    assert pairs and all(e["meta"]["pair"] == e["id"].split("-")[0] for e in pairs)


def test_the_authors_wording_of_each_benchmark(tmp_path):
    """Their loaders' user text (get_prompt_temp adds nothing): ChartFC appends an instruction
    (dataset_process.py 391), ChartQAPro asks its list of turns as Python writes a list (438)."""
    from chartrvr_nb.benchmarks import chartqapro_examples, field_example

    claim = field_example(
        BENCHMARKS["chartfc"], {"question": "Peru led in 2019", "answer": 1, "image_filename": "a"}, 0
    )
    assert claim["chart_rvr_question"] == "Peru led in 2019. Answer yes/no."
    row = {"Question": ["Which year?", "By how much?"], "Answer": ["2019", "4"], "Question Type": "Conversational"}
    (example,) = chartqapro_examples(BENCHMARKS["chartqapro"], {**row, "image": b""}, 0)
    assert example["chart_rvr_question"] == "['Which year?', 'By how much?']"
    query = field_example(BENCHMARKS["chartqa"], {"query": " How many? ", "label": ["3"], "image": "a"}, 0)
    assert (query["question"], query["chart_rvr_question"]) == ("How many?", " How many? ")


# --------------------------------------------------------------------------------------------
# End to end: `eval --protocol chart-rvr` on the tiny model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from chartrvr_nb.models import load_model_and_processor

    return load_model_and_processor("tiny")


def test_eval_with_the_chart_rvr_protocol_end_to_end(stand_in, tmp_path, capsys):
    qa_pairs = write_plotqa(tmp_path / "plotqa", 40)
    out = tmp_path / "eval"
    common = ["eval", "--vlm-name", "tiny", "--dataset-name", "plotqa", "--data-dir", str(tmp_path / "plotqa")]
    common += ["--protocol", "chart-rvr", "--prompt", "direct", "--limit", "6", "--no-progress"]
    assert main([*common, "--system-prompt-file", str(stand_in), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]

    drawn = [qa_pairs[i] for i in sample_indices(40, 5000, 2026)[:6]]  # the first 6 of the authors' sample
    assert [line["id"] for line in lines] == [str(r["question_id"]) for r in drawn]
    assert [line["question"] for line in lines] == [r["question_string"] for r in drawn]
    assert all(line["prediction"] == line["reply"] for line in lines)  # direct: the reply as decoded
    assert summary["protocol"] == "chart-rvr" and summary["protocol_source"].startswith("sanchit97/chartrl@83c4406")
    assert summary["scorer_commits"] == SCORER_COMMITS
    assert summary["scorer_commits"]["sanchit97/chartrl"] == "83c44068a920b7101b7c3c7d6edcb96fdf9a321d"
    assert summary["n"] == 6 == summary["chart_rvr_code"]["n"]
    assert summary["sample"] == {"size": 5000, "seed": 2026}
    assert (summary["system_prompt"], summary["system_prompt_sha256"]) == ("chart-rvr", sha(DIRECT))
    assert (summary["max_new_tokens"], summary["max_pixels"], summary["image_resize"]) == (100, 50_176, "chart-rvr")
    assert (summary["question_text"], summary["answer_reading"]) == ("chart-rvr", "chart-rvr")
    table = results_table(summary)
    assert set(table["protocol"]) == {"chart-rvr"} and table.iloc[0]["metric"].startswith("chart_rvr_code")
    assert "chart-rvr" in printed

    # A setting the protocol decides, set otherwise, stops the command before anything loads.
    assert main([*common, "--max-pixels", "250880", "--output-dir", str(tmp_path / "refused")]) == 2
    assert "The chart-rvr protocol decides these settings itself: --max-pixels 250880" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_the_default_protocol_is_recorded_too(tmp_path):
    from chartrvr_nb.evaluate import run_evaluation

    config = EvalConfig(limit=2, batch_size=2, max_new_tokens=4, progress=False)
    summary = run_evaluation("tiny", "synthetic", config, output_dir=tmp_path, verbose=False).summary
    assert (summary["protocol"], summary["sample"], summary["n"]) == ("project", None, 2)
    assert (summary["question_text"], summary["answer_reading"], summary["image_resize"]) == ("project",) * 3
    assert summary["scorer_commits"] == SCORER_COMMITS and summary["max_pixels"] == 50_176  # the tiny bound


def test_chain_of_thought_under_the_protocol_reads_answers_as_the_authors_did(stand_in, tiny, tmp_path):
    from chartrvr_nb.generation import generate_answers

    model, processor = tiny
    write_plotqa(tmp_path / "plotqa", 4)
    examples = load_examples("plotqa", data_dir=tmp_path / "plotqa", protocol="chart-rvr", limit=2)
    config = EvalConfig(protocol="chart-rvr", batch_size=2, progress=False)
    assert config.tokens_per_answer == 768
    generations = generate_answers(model, processor, examples, config, system_prompt=CHAIN)
    assert [g["prediction"] for g in generations] == [chart_rvr_answer(g["reply"]) for g in generations]
