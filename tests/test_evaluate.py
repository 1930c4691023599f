"""Evaluation: benchmark loaders on fixtures in each benchmark's real schema, the official metrics'
edge cases, batched == one-at-a-time greedy generation on the tiny model, and end-to-end runs."""

import io
import json
import os
import shutil
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from chartrvr_nb import UserError
from chartrvr_nb.benchmark_data import load_examples, load_image
from chartrvr_nb.benchmarks import BENCHMARKS, CHART_RVR, QWEN_DIRECT
from chartrvr_nb.eval_config import EvalConfig
from chartrvr_nb.eval_inputs import resolve_adapter, resolve_full_model
from chartrvr_nb.eval_results import paired_bootstrap, read_predictions, results_table
from chartrvr_nb.evaluate import run_evaluation
from chartrvr_nb.generation import generate_answers, parse_reply
from chartrvr_nb.metrics import acc_plus, chartqapro_score, read_yes_no, relaxed_score, subset_mean, yes_no_score
from chartrvr_nb.official_scoring import anls
from chartrvr_nb.prompts import CHART_TYPES

PREDICTION_FIELDS = {"id", "subset", "question", "answer", "prediction", "reasoning", "correct", "score"}


# --------------------------------------------------------------------------------------------
# Fixtures: a few rows of each benchmark, written in its released / hub layout
# --------------------------------------------------------------------------------------------


def chart(size=(96, 64), bars=(3, 5, 2), color="steelblue") -> Image.Image:
    """A tiny bar chart image (distinct per call arguments)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    width = size[0] // (len(bars) + 1)
    for i, height in enumerate(bars):
        x = width * (i + 0.5)
        draw.rectangle([x, size[1] - 8 * height, x + width * 0.7, size[1] - 1], fill=color)
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_chartqa(folder: Path) -> Path:
    """HuggingFaceM4/ChartQA: data/test-*.parquet; image, query, label (list), human_or_machine (ClassLabel)."""
    from datasets import ClassLabel, Dataset, Features, List, Value
    from datasets import Image as ImageFeature

    features = Features(
        {
            "image": ImageFeature(),
            "query": Value("string"),
            "label": List(Value("string")),
            "human_or_machine": ClassLabel(names=["human", "machine"]),
        }
    )
    rows = [
        {"image": chart(bars=(1, 2, 3)), "query": "What is the highest value?", "label": ["3"], "human_or_machine": 0},
        {"image": chart(bars=(4, 1, 2)), "query": "Which bar is lowest?", "label": ["Second"], "human_or_machine": 0},
        {
            "image": chart(bars=(2, 2, 5)),
            "query": "What is the sum of all bars?",
            "label": ["9"],
            "human_or_machine": 1,
        },
        {
            "image": chart(bars=(5, 3, 1)),
            "query": "What percentage is the first bar?",
            "label": ["55.6%"],
            "human_or_machine": 1,
        },
    ]
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    return folder


def write_chartqapro(folder: Path) -> Path:
    """ahmed-masry/ChartQAPro: data/test-*.parquet; image (raw bytes), Question/Answer/Year (lists),
    Question Type, Paragraph."""
    from datasets import Dataset, Features, List, Value

    features = Features(
        {
            "image": Value("binary"),
            "Question": List(Value("string")),
            "Answer": List(Value("string")),
            "Question Type": Value("string"),
            "Year": List(Value("string")),
            "Paragraph": Value("string"),
        }
    )
    rows = [
        {
            "Question": ["In which year did sales peak?"],
            "Answer": ["2016"],
            "Question Type": "Factoid",
            "Year": ["YES"],
            "Paragraph": "",
        },
        {
            "Question": ["What is the largest share?", "And the smallest?"],
            "Answer": ["40", "12"],
            "Question Type": "Conversational",
            "Year": ["NO", "NO"],
            "Paragraph": "",
        },
        {
            "Question": ["Sales grew every year."],
            "Answer": ["False"],
            "Question Type": "Fact Checking",
            "Year": ["NO"],
            "Paragraph": "Sales fell in 2015 after a strike.",
        },
        {
            "Question": ["Which is larger? a) North b) South"],
            "Answer": ["b"],
            "Question Type": "Multi Choice",
            "Year": ["NO"],
            "Paragraph": "",
        },
    ]
    for i, row in enumerate(rows):
        row["image"] = png_bytes(chart(bars=(i + 1, 2, 3)))
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    return folder


def write_chartbench(folder: Path) -> Path:
    """SincereX/ChartBench: config chart_bench, split test_data; rows id, image (path into data/test.zip),
    type {chart, image, task, QA}, conversation [{query, label}]; the images zipped in data/test.zip."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: chart_bench\n  data_files:\n  - split: test_data\n    path: test.jsonl\n---\n"
    )
    rows = [
        {
            "id": 0,
            "image": "./data/test/bar/vertical_single/chart_0/image.png",
            "type": {"chart": "bar", "image": "vertical_single", "task": "VE", "QA": "Acc+"},
            "conversation": [
                {"query": "The value of A is 3.", "label": "Yes"},
                {"query": "The value of A is 7.", "label": "No"},
            ],
        },
        {
            "id": 1,
            "image": "./data/test/line/line_single/chart_1/image.png",
            "type": {"chart": "line", "image": "line_single", "task": "CR", "QA": "Acc+"},
            "conversation": [
                {"query": "The figure is a line chart.", "label": "Yes"},
                {"query": "The figure is a pie chart.", "label": "No"},
            ],
        },
        {
            "id": 2,
            "image": "./data/test/bar/vertical_single/chart_0/image.png",
            "type": {"chart": "bar", "image": "vertical_single", "task": "", "QA": "GPT-acc"},
            "conversation": [{"query": "What is the value of B?", "label": "5"}],
        },
    ]
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "data").mkdir()
    with zipfile.ZipFile(folder / "data" / "test.zip", "w") as zipped:
        zipped.writestr("test/bar/vertical_single/chart_0/image.png", png_bytes(chart(bars=(3, 5, 2))))
        zipped.writestr("test/line/line_single/chart_1/image.png", png_bytes(chart(bars=(1, 4, 6), color="red")))
    return folder


def write_plotqa(folder: Path) -> Path:
    """PlotQA release: test/qa_pairs_V2.json {"qa_pairs": [...]} and test/png/<image_index>.png."""
    (folder / "test" / "png").mkdir(parents=True)
    qa_pairs = [
        {
            "image_index": 0,
            "question_string": "What is the value of Peru in 2010?",
            "answer": 12.5,
            "answer_bbox": {},
            "template": "data_retrieval",
            "type": "data_retrieval",
            "question_id": 100,
        },
        {
            "image_index": 0,
            "question_string": "Does Chile have the highest value?",
            "answer": "Yes",
            "answer_bbox": {},
            "template": "min_max",
            "type": "reasoning",
            "question_id": 101,
        },
        {
            "image_index": 1,
            "question_string": "How many bars are there?",
            "answer": 3,
            "answer_bbox": {},
            "template": "count",
            "type": "structural",
            "question_id": 102,
        },
    ]
    (folder / "test" / "qa_pairs_V2.json").write_text(json.dumps({"qa_pairs": qa_pairs}))
    chart(bars=(2, 4, 3)).save(folder / "test" / "png" / "0.png")
    chart(bars=(1, 1, 5)).save(folder / "test" / "png" / "1.png")
    return folder


def write_chartfc(folder: Path) -> Path:
    """ChartFC release: qa/test_barplot_seaborn_diverse_charts.json [{question, answer 1/0, image_filename}]
    and images/<image_filename>."""
    (folder / "qa").mkdir(parents=True)
    (folder / "images").mkdir()
    claims = [
        {"question": "Canada had more exports than Peru in 2019.", "answer": 1, "image_filename": "11_2_a.png"},
        {"question": "Peru had the most exports in 2019.", "answer": 0, "image_filename": "11_2_a.png"},
        {"question": "Japan's output fell below 20.", "answer": 0, "image_filename": "12_7_b.png"},
    ]
    (folder / "qa" / "test_barplot_seaborn_diverse_charts.json").write_text(json.dumps(claims))
    chart(bars=(5, 2, 1)).save(folder / "images" / "11_2_a.png")
    chart(bars=(3, 3, 4)).save(folder / "images" / "12_7_b.png")
    return folder


def write_evochart(folder: Path) -> Path:
    """EvoChart-QA release, still zipped: EvoChart-QA.json [{imgname, query, label}] with png/<imgname>."""
    folder.mkdir(parents=True)
    questions = [
        {"imgname": "evo_0001.png", "query": "What is the value for 2021?", "label": "42"},
        {"imgname": "evo_0002.png", "query": "Which category is the largest?", "label": "Food"},
    ]
    with zipfile.ZipFile(folder / "EvoChart-QA.zip", "w") as zipped:
        zipped.writestr("EvoChart-QA/EvoChart-QA.json", json.dumps(questions))
        zipped.writestr("EvoChart-QA/png/evo_0001.png", png_bytes(chart(bars=(1, 3, 2))))
        zipped.writestr("EvoChart-QA/png/evo_0002.png", png_bytes(chart(bars=(4, 2, 2))))
    return folder


WRITERS = {
    "chartqa": write_chartqa,
    "chartqapro": write_chartqapro,
    "chartbench": write_chartbench,
    "plotqa": write_plotqa,
    "chartfc": write_chartfc,
    "evochart": write_evochart,
}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {name: write(root / name) for name, write in WRITERS.items()}


# --------------------------------------------------------------------------------------------
# Loaders: each benchmark's fields read from its real schema
# --------------------------------------------------------------------------------------------


def test_every_declared_benchmark_has_a_fixture_or_is_synthetic():
    assert set(BENCHMARKS) == set(WRITERS) | {"synthetic", "learn-check"}


def test_chartqa_reads_label_lists_and_names_the_human_and_augmented_splits(data_dirs):
    examples = load_examples("chartqa", data_dir=data_dirs["chartqa"])
    assert [e["answer"] for e in examples] == ["3", "Second", "9", "55.6%"]
    assert [e["subset"] for e in examples] == ["human", "human", "augmented", "augmented"]
    assert load_image(examples[0]["image"]).size == (96, 64)


def test_chartqapro_shows_earlier_turns_and_context_and_keeps_scoring_fields(data_dirs):
    examples = load_examples("chartqapro", data_dir=data_dirs["chartqapro"])
    factoid, conversation, fact_check, multi_choice = examples
    assert factoid["meta"] == {"question_type": "Factoid", "year_flags": ["YES"], "answers": ["2016"]}
    assert conversation["question"].splitlines() == [
        "Earlier question: What is the largest share?",
        "Earlier answer: 40",
        "Question: And the smallest?",
    ]
    assert conversation["answer"] == "12"  # only the last turn is scored
    assert conversation["meta"]["answers"] == ["40", "12"]  # every turn kept for the official and authors' scorers
    assert fact_check["question"].startswith("Context: Sales fell in 2015")
    assert [e["subset"] for e in examples] == ["Factoid", "Conversational", "Fact Checking", "Multi Choice"]
    assert load_image(multi_choice["image"]).size == (96, 64)  # raw bytes in the parquet


def test_chartbench_pairs_yes_no_assertions_and_unzips_the_images(data_dirs):
    examples = load_examples("chartbench", data_dir=data_dirs["chartbench"])
    assert [(e["answer"], e["metric"], e["meta"].get("pair")) for e in examples] == [
        ("Yes", "yes_no", "0"),
        ("No", "yes_no", "0"),
        ("Yes", "yes_no", "1"),
        ("No", "yes_no", "1"),
        ("5", "relaxed", None),
    ]
    assert all(Path(e["image"]).is_file() for e in examples)
    assert load_image(examples[2]["image"]).getpixel((20, 60)) == (255, 0, 0)  # chart_1 is the red one


def test_plotqa_finds_images_by_index_in_the_png_folder(data_dirs):
    examples = load_examples("plotqa", data_dir=data_dirs["plotqa"])
    assert [(e["id"], e["answer"], Path(e["image"]).name) for e in examples] == [
        ("100", "12.5", "0.png"),
        ("101", "Yes", "0.png"),
        ("102", "3", "1.png"),
    ]
    assert [e["subset"] for e in examples] == ["data_retrieval", "reasoning", "structural"]


def test_chartfc_turns_labels_into_yes_no_and_asks_about_the_claim(data_dirs):
    examples = load_examples("chartfc", data_dir=data_dirs["chartfc"])
    assert [e["answer"] for e in examples] == ["Yes", "No", "No"]
    assert examples[0]["question"].startswith("Claim: Canada had more exports")
    assert examples[0]["question"].endswith("Answer yes or no.")
    assert Path(examples[2]["image"]).name == "12_7_b.png"


def test_evochart_release_is_extracted_from_its_zip(data_dirs):
    examples = load_examples("evochart", data_dir=data_dirs["evochart"])
    assert [(e["question"], e["answer"]) for e in examples] == [
        ("What is the value for 2021?", "42"),
        ("Which category is the largest?", "Food"),
    ]
    assert Path(examples[1]["image"]).is_file()


def test_synthetic_uses_held_out_seeds_with_chart_type_subsets():
    examples = load_examples("synthetic", limit=3)
    assert [e["subset"] for e in examples] == ["line", "bar", "stacked bar"]
    assert all(e["answer"] and e["question"].endswith("?") for e in examples)
    assert BENCHMARKS["synthetic"].synthetic_seed >= 10_000


def test_limit_keeps_the_first_examples(data_dirs):
    examples = load_examples("chartbench", data_dir=data_dirs["chartbench"], limit=3)
    assert [e["id"] for e in examples] == ["0-0", "0-1", "1-0"]


def test_release_benchmarks_without_data_dir_say_how_to_fix_it():
    with pytest.raises(ValueError, match="--data-dir"):
        load_examples("plotqa")
    with pytest.raises(ValueError, match="Unknown benchmark"):
        load_examples("chart-qa")


def test_unreachable_hub_dataset_names_the_local_alternative(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("huggingface.co unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"HuggingFaceM4/ChartQA.*--data-dir"):
        load_examples("chartqa")


def test_missing_images_are_reported_with_where_we_looked(tmp_path):
    write_plotqa(tmp_path / "plotqa")
    (tmp_path / "plotqa" / "test" / "png" / "0.png").unlink()
    with pytest.raises(ValueError, match="cannot find the image '0.png'"):
        load_examples("plotqa", data_dir=tmp_path / "plotqa")


# --------------------------------------------------------------------------------------------
# Metrics: the official edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("45%", "0.45", 1.0),  # a percent reads as a fraction
        ("45", "45%", 0.0),  # ... so 45 is not 45%
        ("105", "100", 1.0),  # 5% relative tolerance, inclusive
        ("105.1", "100", 0.0),
        ("-10", "-11", 0.0),  # a negative label is not a free pass
        ("0", "0", 1.0),  # zero is matched as text
        ("0.0", "0", 0.0),
        (" Line ", "line", 1.0),  # text: case-insensitive, stripped
        ("lines", "line", 0.0),
    ],
)
def test_relaxed_accuracy_edge_cases(prediction, gold, expected):
    assert relaxed_score(prediction, {"answer": gold}) == expected


def pro(answer, question_type="Factoid", year_flags=("NO",)):
    return {"answer": answer, "meta": {"question_type": question_type, "year_flags": list(year_flags)}}


@pytest.mark.parametrize(
    ("prediction", "example", "expected"),
    [
        ("2017", pro("2016", year_flags=["YES"]), 0.0),  # years: exact, although within 5%
        ("2016", pro("2016", year_flags=["YES"]), 1.0),
        ("2017", pro("2016"), 1.0),  # not flagged as a year: a number within 5%
        ("30", pro("30%"), 1.0),  # ChartQAPro strips % instead of dividing
        ("0.0", pro("0"), 1.0),  # zero gold: numeric equality
        ("0.01", pro("0"), 0.0),
        ("true", pro("True", "Fact Checking"), 1.0),  # exact match, case-insensitive
        ("Tru", pro("True", "Fact Checking"), 0.0),  # ANLS would give 0.75
        ("c", pro("b", "Multi Choice"), 0.0),
        ("United States.", pro("united states"), 1.0),  # trailing dot stripped, text by ANLS
        ("[3, 9]", pro("[3, 10]"), 0.5),  # list answers: item by item
        ("['a', 'b', 'c']", pro("[a, b]"), 2 / 3),  # an extra item scores 0
    ],
)
def test_chartqapro_scoring_follows_the_authors(prediction, example, expected):
    assert chartqapro_score(prediction, example) == pytest.approx(expected)


def test_chartqapro_text_answers_use_anls_with_its_threshold():
    assert chartqapro_score("Apple", pro("Apples")) == pytest.approx(1 - 1 / 6)  # a near miss keeps credit
    assert anls("ab", "ac") == 0.0  # NL exactly 0.5 is not below the threshold
    assert anls("abc", "abd") == pytest.approx(2 / 3)
    assert chartqapro_score("Germany", pro("France")) == 0.0


def test_yes_no_reads_the_first_word_only():
    assert yes_no_score("Yes, it does.", {"answer": "Yes"}) == 1.0
    assert yes_no_score("No", {"answer": "yes"}) == 0.0
    assert yes_no_score("Nope", {"answer": "No"}) == 0.0  # neither yes nor no
    assert yes_no_score("", {"answer": "No"}) == 0.0


def test_acc_plus_counts_a_chart_only_when_both_assertions_are_right():
    records = [
        {"meta": {"pair": "a"}, "score": 1.0},
        {"meta": {"pair": "a"}, "score": 1.0},  # both right
        {"meta": {"pair": "b"}, "score": 1.0},
        {"meta": {"pair": "b"}, "score": 0.0},  # one wrong
        {"meta": {"pair": "c"}, "score": 0.0},
        {"meta": {"pair": "c"}, "score": 0.0},
        {"meta": {"pair": "d"}, "score": 1.0},  # incomplete pair (cut by --limit): left out
        {"meta": {}, "score": 1.0},  # a numeric question: not part of Acc+
    ]
    assert acc_plus(records) == pytest.approx(100 / 3)
    assert acc_plus([{"meta": {}, "score": 1.0}]) is None


def test_chartqa_headline_averages_human_and_augmented():
    records = [{"subset": "human", "score": s} for s in (1, 0, 0, 0)] + [{"subset": "augmented", "score": 1}]
    assert subset_mean(records) == pytest.approx((25 + 100) / 2)


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=60),
    st.text(max_size=30),
    st.sampled_from(["Factoid", "Multi Choice", "Conversational"]),
    st.lists(st.sampled_from(["YES", "NO", "yes", ""]), max_size=3),
)
def test_chartqapro_score_is_total_and_bounded(prediction, gold, question_type, flags):
    score = chartqapro_score(prediction, pro(gold, question_type, flags))
    assert 0.0 <= score <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.sampled_from(["rvr", "cot", "direct"]))
def test_parse_reply_never_raises_and_reads_the_answer_tag(reply, prompt):
    parsed = parse_reply(reply, prompt)
    assert isinstance(parsed["prediction"], str)
    assert read_yes_no(reply) in ("yes", "no", None)
    if prompt != "direct" and "<answer>" not in reply:
        assert parsed["prediction"] == "" and parsed["answer_found"] is False


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    adapter = [1, 1, 0, 1, 1, 0, 1, 1] * 10
    base = [1, 0, 0, 1, 0, 0, 1, 0] * 10
    first = paired_bootstrap(adapter, base, n_resamples=500, seed=7)
    assert first == paired_bootstrap(adapter, base, n_resamples=500, seed=7)
    assert first["difference"] == pytest.approx(37.5)
    assert 0 < first["ci_low"] < first["difference"] < first["ci_high"]
    assert paired_bootstrap(base, base, n_resamples=50)["ci_high"] == 0.0
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1, 0], [1])


def test_results_table_puts_our_number_beside_the_papers():
    summary = {
        "benchmark": "chartqa",
        "model": "qwen2-5-3b",
        "adapter": "runs/x/adapter",
        "n": 10,
        "accuracy": 80.0,
        "subsets": {"augmented": 90.0, "human": 70.0},
        "subset_mean": 80.0,
        "subset_sizes": {"augmented": 6, "human": 4},
        "headline": "subset_mean",
        "headline_value": 80.0,
    }
    table = results_table(summary)
    headline = table.iloc[0]
    assert headline["ours"] == 80.0 and headline[QWEN_DIRECT] == 82.0 and headline[CHART_RVR] == 84.56
    assert headline["vs paper"] == pytest.approx(80.0 - 84.56, abs=0.01)  # an adapter compares with Chart-RVR
    assert list(table["metric"]) == [
        "accuracy (mean of subsets)",
        "accuracy (all examples)",
        "subset: augmented",
        "subset: human",
    ]
    assert list(table["n"]) == [10, 10, 6, 4]


# --------------------------------------------------------------------------------------------
# Adapters
# --------------------------------------------------------------------------------------------


def fake_checkpoint(run_dir: Path, step: int) -> Path:
    import numpy as np
    from safetensors.numpy import save as safetensors_bytes

    checkpoint = run_dir / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}")
    # A real (tiny) safetensors file: evaluation verifies the weights before it picks a checkpoint.
    (checkpoint / "adapter_model.safetensors").write_bytes(safetensors_bytes({"lora_A": np.zeros((2, 2), np.float32)}))
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_resolve_adapter_accepts_run_checkpoint_adapter_folders_and_hub_ids(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run, 500)
    newest = fake_checkpoint(run, 1000)
    (run / "checkpoint-1500").mkdir()  # being written when the run was killed: ignored
    assert resolve_adapter(run) == str(newest)
    assert resolve_adapter(run / "checkpoint-500") == str(run / "checkpoint-500")
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="adapter cannot be evaluated: it holds no weights"):
        resolve_adapter(run)  # a final folder whose save was cut short
    shutil.copy(newest / "adapter_model.safetensors", run / "adapter")
    assert resolve_adapter(run) == str(run / "adapter")  # the final adapter of a finished run
    assert resolve_adapter("sanchit97/chart-rvr-3b") == "sanchit97/chart-rvr-3b"
    with pytest.raises(UserError, match="holds no LoRA adapter"):
        resolve_adapter(tmp_path)
    with pytest.raises(UserError, match="not found"):
        resolve_adapter(tmp_path / "missing" / "run")


def test_a_path_under_runs_or_an_existing_folder_is_never_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARTRVR_NB_RUN_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    for missing in ("runs/nope", "grpo-start-ckpts/nope", "mine/nope", "./nope/x"):
        with pytest.raises(UserError, match=f"'{missing}' not found: there is no folder"):
            resolve_adapter(missing)
        with pytest.raises(UserError, match=f"Model '{missing}' not found"):
            resolve_full_model(missing)
    assert resolve_adapter("someone/chart-rvr-lora") == "someone/chart-rvr-lora"
    assert resolve_full_model("sanchit97/chart-rvr-3b") == "sanchit97/chart-rvr-3b"


# --------------------------------------------------------------------------------------------
# Generation and end-to-end runs on the tiny model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from chartrvr_nb.models import load_model_and_processor

    return load_model_and_processor("tiny")


def test_batched_generation_matches_one_at_a_time(tiny):
    """Left padding + the attention mask (from which Qwen2.5-VL derives its rope positions) make a
    batch answer exactly like single examples; right padding or no mask would not."""
    model, processor = tiny
    sizes = [(320, 240), (100, 300), (224, 60), (60, 60), (400, 100), (150, 150)]
    examples = [
        {**e, "image": load_image(e["image"]).resize(size)}
        for e, size in zip(load_examples("synthetic", limit=6), sizes)
    ]
    examples[2]["question"] = examples[2]["question"] + " Explain which bars you compared before answering."
    grids = processor.image_processor(images=[e["image"] for e in examples], return_tensors="pt")["image_grid_thw"]
    assert len({int(grid.prod()) for grid in grids}) > 3  # different image token counts: the batch really is padded

    one_at_a_time = generate_answers(
        model, processor, examples, EvalConfig(batch_size=1, max_new_tokens=16, progress=False)
    )
    batched = generate_answers(model, processor, examples, EvalConfig(batch_size=6, max_new_tokens=16, progress=False))
    assert [g["reply"] for g in batched] == [g["reply"] for g in one_at_a_time]
    assert all(g["reply"] for g in batched)


def test_generation_hands_the_processor_images_already_on_its_grid(tiny):
    """Evaluation sizes images by training's rule (data.fit_to_pixel_budget), so the processor keeps
    them as they are, instead of rounding off-grid ones to its grid with its own resize."""
    from chartrvr_nb.generation import generate_batches

    model, processor = tiny
    examples = load_examples("synthetic", limit=2)  # charts drawn at 320x240, off the 28-pixel grid
    config = EvalConfig(batch_size=2, max_new_tokens=2, max_pixels=224 * 224, progress=False)
    (batch,) = generate_batches(model, processor, examples, config)
    assert [image.size for _, image, _ in batch] == [(252, 196), (252, 196)]
    grids = processor.image_processor(images=[image for _, image, _ in batch], return_tensors="pt")["image_grid_thw"]
    assert [tuple(int(n) for n in grid) for grid in grids] == [(1, 196 // 14, 252 // 14)] * 2


def test_run_evaluation_on_synthetic_writes_predictions_and_summary(tmp_path):
    result = run_evaluation(
        "tiny",
        "synthetic",
        EvalConfig(limit=16, batch_size=8, max_new_tokens=8, progress=False),
        output_dir=tmp_path,
        verbose=False,
    )
    lines = read_predictions(tmp_path / "predictions.jsonl")
    assert len(lines) == 16 and all(PREDICTION_FIELDS <= set(line) for line in lines)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"] == 16 and summary["benchmark"] == "synthetic" and summary["model"] == "tiny"
    assert summary["accuracy"] == pytest.approx(100 * sum(line["score"] for line in lines) / 16)
    assert set(summary["subsets"]) <= set(CHART_TYPES)
    assert result.table.iloc[0]["ours"] == pytest.approx(summary["accuracy"], abs=0.01)
    assert summary["examples_per_second"] > 0


@pytest.mark.parametrize(
    ("name", "prompt", "extra_keys"),
    [
        ("chartqa", "rvr", {"subsets", "subset_mean"}),
        ("chartqapro", "direct", {"subsets"}),
        ("chartbench", "direct", {"acc_plus", "subsets"}),
        ("plotqa", "cot", {"subsets"}),
        ("chartfc", "direct", set()),
        ("evochart", "rvr", set()),
    ],
)
def test_run_evaluation_on_each_benchmark_fixture(name, prompt, extra_keys, data_dirs, tmp_path):
    settings = EvalConfig(
        data_dir=data_dirs[name], limit=4, batch_size=4, prompt=prompt, max_new_tokens=8, progress=False
    )
    result = run_evaluation("tiny", name, settings, output_dir=tmp_path, verbose=False)
    expected = len(load_examples(name, data_dir=data_dirs[name], limit=4))
    assert len(read_predictions(tmp_path / "predictions.jsonl")) == expected == result.summary["n"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert extra_keys <= set(summary) and summary["prompt"] == prompt and summary["benchmark"] == name
    assert summary["paper"] == dict(BENCHMARKS[name].paper)
    assert summary["official"]["n"] == summary["chart_rvr_code"]["n"] == expected  # tests/test_official_scoring.py
    assert result.table.iloc[0]["metric"].startswith("chart_rvr_code")


def test_compare_base_evaluates_the_same_examples_without_the_adapter(tiny, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from chartrvr_nb.models import load_model_and_processor

    base_model, processor = load_model_and_processor("tiny")
    torch.manual_seed(0)
    lora = get_peft_model(base_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    run = tmp_path / "run"
    lora.save_pretrained(run / "checkpoint-2")
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))

    settings = EvalConfig(compare_base=True, limit=4, batch_size=4, max_new_tokens=8, progress=False)
    result = run_evaluation("tiny", "synthetic", settings, adapter=run, output_dir=tmp_path / "eval", verbose=False)
    summary = result.summary
    assert summary["adapter"] == str(run / "checkpoint-2")
    comparison = summary["comparison"]
    assert comparison["ci_low"] <= comparison["difference"] <= comparison["ci_high"]
    assert comparison["difference"] == pytest.approx(summary["accuracy"] - summary["base"]["accuracy"])
    base_lines = read_predictions(tmp_path / "eval" / "base_predictions.jsonl")
    assert [line["id"] for line in base_lines] == [line["id"] for line in result.predictions]

    model, processor = tiny  # the base pass really ran without the adapter
    plain = generate_answers(
        model, processor, load_examples("synthetic", limit=4), EvalConfig(max_new_tokens=8, progress=False)
    )
    assert [line["reply"] for line in base_lines] == [g["reply"] for g in plain]


def test_compare_base_needs_an_adapter():
    with pytest.raises(ValueError, match="compare_base needs an adapter"):
        run_evaluation("tiny", "synthetic", EvalConfig(compare_base=True))


def test_evaluating_an_adapter_hides_the_known_warning_and_logs_where_files_went(tmp_path, capsys):
    """peft asks transformers for gradient checkpointing under its old name while it loads an adapter;
    that FutureWarning is hidden where it arises (no process-wide filter in the notebooks any more)."""
    import warnings

    from peft import LoraConfig, get_peft_model

    from chartrvr_nb.models import load_model_and_processor

    model, _ = load_model_and_processor("tiny")
    with warnings.catch_warnings():  # building the adapter warns too: only evaluation's own loading is checked
        warnings.simplefilter("ignore")
        get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_evaluation(
            "tiny",
            "synthetic",
            EvalConfig(limit=1, max_new_tokens=2, progress=False),
            adapter=tmp_path / "adapter",
            output_dir=tmp_path / "eval",
        )
    assert [str(warning.message) for warning in seen if issubclass(warning.category, FutureWarning)] == []
    assert f"Wrote {tmp_path / 'eval' / 'predictions.jsonl'}" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def test_plot_benchmark_accuracy_draws_ours_beside_the_paper():
    from chartrvr_nb.eval_plots import plot_benchmark_accuracy

    summaries = [
        {
            "benchmark": "chartqa",
            "model": "qwen2-5-3b",
            "adapter": None,
            "n": 8,
            "accuracy": 70.0,
            "subset_mean": 71.0,
            "headline": "subset_mean",
            "headline_value": 71.0,
        },
        {
            "benchmark": "chartbench",
            "model": "qwen2-5-3b",
            "adapter": "a",
            "n": 8,
            "accuracy": 60.0,
            "acc_plus": 40.0,
            "headline": "accuracy",
            "headline_value": 60.0,
        },
    ]
    figure = plot_benchmark_accuracy(results_table(summaries))
    ax = figure.axes[0]
    assert ax.get_ylabel() == "accuracy (%)" and ax.get_xlabel() == "benchmark" and ax.get_title()
    heights = sorted(round(patch.get_height(), 2) for patch in ax.patches)
    assert heights == [0.0, 60.0, 68.32, 71.0, 82.0, 84.56]  # ChartBench has no base-model number
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["ours", f"paper: {QWEN_DIRECT}", f"paper: {CHART_RVR}"]


def test_plot_mistakes_shows_only_wrong_answers(tmp_path):
    from chartrvr_nb.eval_plots import plot_mistakes

    records = [
        {"question": "Q1?", "answer": "3", "prediction": "3", "reasoning": None, "correct": True},
        {
            "question": "Q2?",
            "answer": "4",
            "prediction": "5",
            "reasoning": "<step-1>: read 5",
            "correct": False,
            "image": chart(),
        },
        {"question": "Q3?", "answer": "Yes", "prediction": "", "reasoning": None, "correct": False},
    ]
    figure = plot_mistakes(records, n=8)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["Q2?", "Q3?"]
    assert "gold: 4" in visible[0].get_xlabel() and "predicted: 5" in visible[0].get_xlabel()
    assert len(visible[0].images) == 1 and len(visible[1].images) == 0

    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "image"}) + "\n" for r in records[:1]))
    assert "No wrong answers" in plot_mistakes(read_predictions(path)).axes[0].texts[0].get_text()


def test_evaluation_settings_come_from_the_run_unless_given(tmp_path, capsys):
    from chartrvr_nb.eval_inputs import settings_from_run
    from chartrvr_nb.runfiles import write_run_config

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "checkpoint-4").mkdir()
    trained_as = {"model": "tiny", "load_in_4bit": True, "max_completion_length": 48, "max_pixels": 12544}
    write_run_config(run, {"name": "colab-t4", **trained_as, "system_prompt": "project", "system_prompt_file": None})

    model, settings, config = settings_from_run(None, EvalConfig(), str(run / "adapter"))
    assert (model, settings.load_in_4bit, settings.tokens_per_answer, settings.pixel_budget) == (
        "tiny",
        True,
        48,
        12544,
    )
    assert (settings.system_prompt_choice, config["name"]) == ("project", "colab-t4")
    assert "Differs from training" not in capsys.readouterr().out

    given = EvalConfig(max_pixels=50176, prompt="direct", protocol="project")
    _, settings, _ = settings_from_run("tiny", given, str(run / "checkpoint-4"))
    assert (settings.pixel_budget, settings.tokens_per_answer, settings.load_in_4bit) == (50176, 48, True)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Differs from training: image pixel budget 50,176 (trained with 12,544; --max-pixels given)."
    )

    _, settings, _ = settings_from_run(None, EvalConfig(protocol="chart-rvr", prompt="direct"), str(run))
    assert (settings.pixel_budget, settings.tokens_per_answer, settings.system_prompt_choice) == (
        376320,
        100,
        "chart-rvr",
    )
    assert capsys.readouterr().out.splitlines()[-1] == (
        "Differs from training: tokens per answer 100 (trained with 48; the chart-rvr protocol's); image pixel budget "
        "376,320 (trained with 12,544; the chart-rvr protocol's); system prompt chart-rvr (trained with project; the "
        "chart-rvr protocol's)."
    )

    with pytest.raises(UserError, match="trained tiny, so its weights do not load on --vlm-name qwen2-5-7b"):
        settings_from_run("qwen2-5-7b", EvalConfig(), str(run))
    model, settings, config = settings_from_run(None, EvalConfig(), "someone/adapter")  # no run: the defaults
    assert (model, settings.load_in_4bit, settings.tokens_per_answer, config) == ("qwen2-5-3b", False, 768, None)
