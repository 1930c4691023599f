"""data and synthetic: synthetic charts with verifiable answers, pixel budgets, loaders, GRPO preparation."""

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chartrvr_nb.answers import count_steps, relaxed_match
from chartrvr_nb.chart_kinds import CHART_KINDS
from chartrvr_nb.data import (
    REQUIRED_COLUMNS,
    _scale_into_budget,
    check_columns,
    fit_to_pixel_budget,
    make_synthetic_dataset,
    make_synthetic_rows,
    prepare_grpo_dataset,
)
from chartrvr_nb.prompts import CHART_TYPES, build_messages
from chartrvr_nb.synthetic import QUESTION_KINDS, answer_question, make_synthetic_example
from chartrvr_nb.train_data import load_train_dataset


def _oracle(table, spec):
    """The answer recomputed independently, with floats, from the table alone."""
    index = table["columns"].index(spec.column)
    values = {row[0]: float(row[index]) for row in table["rows"]}
    if spec.kind == "value":
        return table["rows"][[r[0] for r in table["rows"]].index(spec.first)][index]
    if spec.kind == "max":
        return max(values, key=values.get)
    if spec.kind == "min":
        return min(values, key=values.get)
    if spec.kind == "difference":
        return f"{abs(values[spec.first] - values[spec.second]):.6g}"
    if spec.kind == "sum":
        return f"{sum(values.values()):.6g}"
    if spec.kind == "count":
        return str(sum(v > float(spec.threshold) for v in values.values()))
    return "Yes" if values[spec.first] > values[spec.second] else "No"


@pytest.mark.parametrize("chart_type", CHART_TYPES)
@pytest.mark.parametrize("kind", QUESTION_KINDS)
def test_every_chart_type_and_question_kind_has_the_answer_its_table_gives(chart_type, kind):
    for seed in range(5):
        row = make_synthetic_example(chart_type, kind, random.Random(seed))
        table, spec = row["table"], row["spec"]
        assert row["chart_type"] == chart_type and row["question_kind"] == kind
        assert all(isinstance(cell, str) for r in table["rows"] for cell in r)
        assert answer_question(table, spec) == (row["label"], row["steps"])
        expected = _oracle(table, spec)
        if kind in ("difference", "sum"):  # numbers: equal up to float noise in the oracle
            assert relaxed_match(row["label"], expected, max_relative_change=1e-9)
        else:
            assert row["label"] == expected
        assert count_steps(row["reasoning"]) == len(row["steps"]) >= 1
        assert row["reasoning"].startswith("<step-1>: ")
        assert row["label"] in row["steps"][-1]  # the last step states the answer it derives


def test_the_chart_kinds_table_declares_exactly_the_output_formats_chart_types():
    assert tuple(CHART_KINDS) == CHART_TYPES  # same names, same order (rows cycle through them)


def test_pie_shares_are_percentages_adding_up_to_100():
    rng = random.Random(1)
    for _ in range(50):
        table = make_synthetic_example("pie", "sum", rng)["table"]
        assert sum(int(row[1]) for row in table["rows"]) == 100


def test_numeric_columns_have_distinct_values_so_questions_are_unambiguous():
    rng = random.Random(0)
    for chart_type in CHART_TYPES * 20:
        row = make_synthetic_example(chart_type, "max", rng)
        for index in range(1, len(row["table"]["columns"])):
            column = [Decimal(r[index]) for r in row["table"]["rows"]]
            assert len(set(column)) == len(column)


def test_synthetic_rows_are_deterministic_by_seed():
    first, again, other = make_synthetic_rows(4, seed=3), make_synthetic_rows(4, seed=3), make_synthetic_rows(4, seed=4)
    for a, b in zip(first, again):
        assert a["image"].tobytes() == b["image"].tobytes()
        assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}
    assert [r["query"] for r in first] != [r["query"] for r in other]
    assert [r["table"] for r in make_synthetic_rows(2, seed=3, render=False)] == [r["table"] for r in first[:2]]


def test_synthetic_dataset_has_the_training_schema_all_chart_types_and_fits_the_budget():
    budget = 160 * 120
    dataset = make_synthetic_dataset(10, seed=0, max_pixels=budget)
    assert set(REQUIRED_COLUMNS) <= set(dataset.column_names)
    assert sorted(dataset["chart_type"]) == sorted(CHART_TYPES)
    for row in dataset:
        assert row["image"].mode == "RGB" and row["image"].width * row["image"].height <= budget
        assert set(row["table"]) == {"columns", "rows"}
        assert row["question_kind"] in QUESTION_KINDS


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 1500),
    height=st.integers(1, 1500),
    max_pixels=st.integers(28 * 28, 400_000),
)
def test_scaling_into_the_budget_shrinks_within_budget_keeping_aspect(width, height, max_pixels):
    """Step 1 of fit_to_pixel_budget (without upscale), as the budget resize always behaved."""
    from PIL import Image

    image = Image.new("RGB", (width, height))
    resized = _scale_into_budget(image, max_pixels)
    new_width, new_height = resized.size
    assert new_width <= width and new_height <= height  # never upscaled, never cropped larger
    if width * height <= max_pixels:
        assert resized is image
        return
    at_floor = new_width == min(28, width) or new_height == min(28, height)
    assert new_width * new_height <= max_pixels or at_floor
    assert new_width >= min(28, width) and new_height >= min(28, height)
    if not at_floor:  # each side is within 2 px of the exact scaled size
        assert abs(new_width / new_height - width / height) <= (width / height) * (2 / new_width + 2 / new_height)
        assert new_width * new_height >= max_pixels - 2 * (new_width + new_height) - 4  # no smaller than needed


def test_resize_rejects_a_non_positive_budget():
    from PIL import Image

    with pytest.raises(ValueError, match="positive"):
        fit_to_pixel_budget(Image.new("RGB", (10, 10)), 0)


def test_check_columns_names_what_is_missing_and_the_fix():
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['label', 'reasoning'\]") as error:
        check_columns(["image", "query", "chart_type", "table"], name="my-data")
    assert "rename_column" in str(error.value) and "synthetic" in str(error.value)


def test_one_cache_root_for_the_tiny_models_the_benchmark_downloads_and_the_bench(monkeypatch, tmp_path):
    import huggingface_hub

    from bench.random_3b import model_folder
    from chartrvr_nb import benchmark_data, tiny
    from chartrvr_nb.benchmarks import BENCHMARKS
    from chartrvr_nb.data import cache_root

    monkeypatch.setenv("CHARTRVR_NB_CACHE", str(tmp_path / "cache"))
    assert cache_root() == tmp_path / "cache"
    assert tiny.tiny_model_dir().parent == model_folder().parent == tmp_path / "cache"
    downloads = []
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, **kwargs: downloads.append(kwargs["local_dir"])
    )
    benchmark_data._hub_download(BENCHMARKS["chartqa"])
    assert downloads == [tmp_path / "cache" / "benchmarks" / "chartqa"]
    monkeypatch.delenv("CHARTRVR_NB_CACHE")
    assert cache_root() == Path.home() / ".cache" / "chartrvr_nb"


@pytest.fixture(scope="module")
def hub_schema_rows():
    """Six rows in the hub dataset's schema (no extra columns)."""
    from datasets import Dataset

    rows = make_synthetic_rows(6, seed=5)
    return Dataset.from_list([{k: r[k] for k in REQUIRED_COLUMNS} for r in rows])


def test_loads_a_saved_dataset_folder_shuffles_and_subsets(hub_schema_rows, tmp_path):
    folder = tmp_path / "saved"
    hub_schema_rows.save_to_disk(str(folder))
    dataset = load_train_dataset(str(folder), subset_size=4, seed=2025)
    assert len(dataset) == 4 and set(REQUIRED_COLUMNS) <= set(dataset.column_names)
    assert set(dataset["query"]) < set(hub_schema_rows["query"])
    assert dataset["query"] == load_train_dataset(str(folder), subset_size=4, seed=2025)["query"]
    assert len(load_train_dataset(str(folder))) == 6


def test_loads_parquet_with_images_and_resizes(hub_schema_rows, tmp_path):
    path = tmp_path / "train.parquet"
    hub_schema_rows.to_parquet(str(path))
    dataset = load_train_dataset(str(path), max_pixels=100 * 80)
    image = dataset[0]["image"]
    assert image.width * image.height <= 100 * 80
    assert dataset[0]["table"]["columns"] == hub_schema_rows[0]["table"]["columns"]


def test_subset_larger_than_the_dataset_is_a_clear_error(hub_schema_rows, tmp_path):
    hub_schema_rows.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="subset_size=7 is larger than .* 6 rows"):
        load_train_dataset(str(tmp_path / "saved"), subset_size=7)


def test_a_dataset_without_a_needed_column_names_it(hub_schema_rows, tmp_path):
    hub_schema_rows.remove_columns("reasoning").save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"\['reasoning'\]"):
        load_train_dataset(str(tmp_path / "saved"))


def test_an_empty_training_file_says_it_holds_no_rows(tmp_path):
    from chartrvr_nb import UserError

    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n \n"), ("empty.csv", "")):
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=f"{name} holds no training rows"):
            load_train_dataset(str(tmp_path / name))


def test_image_paths_in_a_jsonl_are_read_relative_to_the_file(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "charts").mkdir(parents=True)
    rows = make_synthetic_rows(3, seed=5)
    with open(data / "train.jsonl", "w") as lines:
        for index, row in enumerate(rows):
            row["image"].save(data / "charts" / f"{index}.png")
            lines.write(json.dumps({**{k: row[k] for k in REQUIRED_COLUMNS}, "image": f"charts/{index}.png"}) + "\n")
    monkeypatch.chdir(tmp_path)  # not the file's folder: the paths must not depend on where Python runs
    dataset = load_train_dataset(str(data / "train.jsonl"), max_pixels=112 * 112)
    assert [image.size for image in dataset["image"]] == [
        fit_to_pixel_budget(row["image"], 112 * 112).size for row in rows
    ]
    (data / "charts" / "2.png").unlink()
    with pytest.raises(
        ValueError, match=r"train.jsonl, row 3: image 'charts/2.png' not found \(looked for .*data/charts"
    ):
        load_train_dataset(str(data / "train.jsonl"))


def test_synthetic_source_generates_subset_size_rows():
    dataset = load_train_dataset("synthetic", subset_size=3, seed=1, max_pixels=112 * 112)
    assert len(dataset) == 3 and dataset[0]["query"] == make_synthetic_rows(1, seed=1, render=False)[0]["query"]


def test_training_examples_draw_only_the_chart_types_a_synthetic_source_names():
    from chartrvr_nb.train_data import training_examples

    rows = training_examples("synthetic:pie,bar", n=3, max_pixels=112 * 112)
    assert [row["chart_type"] for row in rows] == ["pie", "bar", "pie"]
    assert rows[0]["image"].width * rows[0]["image"].height <= 112 * 112


def test_unreachable_hub_dataset_says_what_to_do():
    with pytest.raises(RuntimeError, match="synthetic"):
        load_train_dataset("nobody/no-such-chart-dataset")


def test_prepare_grpo_dataset_gives_trl_conversational_prompts_with_the_image(tiny_model_dir):
    from transformers import AutoProcessor
    from trl.data_utils import prepare_multimodal_messages

    budget = 112 * 112
    prepared = prepare_grpo_dataset(make_synthetic_dataset(3, seed=2), max_pixels=budget)
    row = prepared[0]
    assert {"prompt", "image", "label", "chart_type", "table", "reasoning"} <= set(prepared.column_names)
    assert row["image"].width * row["image"].height <= budget
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][1]["content"][1]["text"] == row["query"]
    assert [p["type"] for p in row["prompt"][1]["content"]] == [p["type"] for p in build_messages("q")[1]["content"]]

    # What GRPOTrainer does with a row: fill the placeholder with the image, apply the template.
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    inputs = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_token).sum()) == int(inputs["image_grid_thw"].prod()) // 4 > 0


def test_prepare_rejects_an_unknown_prompt_style():
    with pytest.raises(ValueError, match="Unknown prompt style"):
        prepare_grpo_dataset(make_synthetic_dataset(1), max_pixels=50_000, style="fancy")


@settings(max_examples=40, deadline=None)
@given(width=st.integers(28, 900), height=st.integers(28, 900))
def test_prepared_images_sit_on_the_processor_grid(width, height):
    """The HF processor and vLLM must agree on image-token counts: sides are multiples of 28."""
    from PIL import Image

    budget = 320 * 28 * 28
    image = fit_to_pixel_budget(Image.new("RGB", (width, height)), budget)
    assert image.size[0] % 28 == 0 and image.size[1] % 28 == 0
    assert image.size[0] * image.size[1] <= budget
    assert fit_to_pixel_budget(image, budget) is image  # already on the grid: untouched


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(28, 1500),
    height=st.integers(28, 1500),
    max_pixels=st.integers(224 * 224, 400_000),
    upscale=st.booleans(),
)
def test_fitted_images_are_what_the_processor_would_keep_and_upscale_fills_the_budget(
    width, height, max_pixels, upscale
):
    """One rule for training, evaluation and the benches: on the grid, within budget, left alone by
    Qwen2.5-VL's processor at that budget; with upscale, a small chart grows to fill the budget."""
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    image = fit_to_pixel_budget(Image.new("RGB", (width, height)), max_pixels, upscale=upscale)
    new_width, new_height = image.size
    assert new_width % 28 == 0 and new_height % 28 == 0 and new_width * new_height <= max_pixels
    assert smart_resize(new_height, new_width, 28, 56 * 56, max_pixels) == (new_height, new_width)
    aspect = max(width, height) / min(width, height)
    if aspect <= 4:  # the grid can move each side by up to 28 px: the aspect ratio stays close
        assert abs(new_width / new_height - width / height) <= (width / height) * (56 / new_width + 56 / new_height)
    if upscale and aspect <= 4:
        assert new_width * new_height >= max_pixels / 2
    elif not upscale and 2 * 56 * 56 <= width * height <= max_pixels:  # within budget: only rounded onto the grid
        assert abs(new_width - width) <= 28 and abs(new_height - height) <= 28


@pytest.mark.parametrize(
    "size, resized",
    [
        # 200 x 150 = 30,000 px; scale sqrt(250,880 / 30,000) = 2.8919: int() gives 578 x 433, and the nearest
        # multiples of 28 are 588 (21 x 28) and 420 (15 x 28): 246,960 px, 315 cells of 28 x 28.
        ((200, 150), (588, 420)),
        # 1652 x 1923: scale 0.28102 gives 464 x 540, nearest multiples 476 (17) and 532 (19): 253,232 px, 323
        # cells, over the budget as the authors' processor leaves it (within it, the grid would give 448 x 532).
        ((1652, 1923), (476, 532)),
    ],
)
def test_training_images_are_scaled_up_or_down_to_the_budget_as_the_authors_did(size, resized):
    """main.py 492-506 at sanchit97/chartrl@83c4406: RGB, bicubic to 320*28*28 px, then the processor's grid."""
    from PIL import Image

    dataset = make_synthetic_dataset(1, seed=3).map(lambda row: {"image": Image.new("RGBA", size)})
    authors = prepare_grpo_dataset(dataset, max_pixels=320 * 28 * 28, image_resize="chart-rvr")[0]["image"]
    assert authors.size == resized and authors.mode == "RGB"
    ours = prepare_grpo_dataset(dataset, max_pixels=320 * 28 * 28, image_resize="project")[0]["image"]
    assert ours.size == {(200, 150): (196, 140), (1652, 1923): (448, 532)}[size]  # only shrunk, within budget
    with pytest.raises(ValueError, match="Unknown image_resize 'authors'"):
        prepare_grpo_dataset(dataset, max_pixels=320 * 28 * 28, image_resize="authors")


def test_the_system_prompt_given_is_the_system_message():
    prepared = prepare_grpo_dataset(make_synthetic_dataset(2, seed=2), max_pixels=112 * 112, system_prompt="Be brief.")
    assert prepared[1]["prompt"][0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}


@pytest.fixture(scope="module")
def repeated_rows(tmp_path_factory):
    """Hub-schema rows with repeats, as the hub set holds them: rows 0-2, row 0 again, row 1 again, row 2 with
    another label, row 1 again. Distinct (image, question, label): 4, first seen at 0, 1, 2, 5."""
    from datasets import Dataset

    rows = [{k: r[k] for k in REQUIRED_COLUMNS} for r in make_synthetic_rows(3, seed=5)]
    repeated = [rows[0], rows[1], rows[2], rows[0], rows[1], {**rows[2], "label": "other"}, rows[1]]
    path = tmp_path_factory.mktemp("repeated") / "train.parquet"
    Dataset.from_list(repeated).to_parquet(str(path))
    return path


def test_the_audit_counts_distinct_rows_and_dedupe_keeps_the_first_of_each(repeated_rows, caplog):
    from chartrvr_nb.data_audit import audit_rows

    with caplog.at_level("INFO", logger="chartrvr_nb.train_data"):
        everything = load_train_dataset(str(repeated_rows))
    assert len(everything) == 7
    audit = audit_rows(everything)
    assert (audit.rows, audit.distinct, audit.repeated, audit.first_of_each) == (7, 4, 3, (0, 1, 2, 5))
    assert caplog.messages == [
        f"Training data {repeated_rows}: 7 rows, 4 distinct (image, question, label), 3 repeating an earlier row;\n"
        "--dedupe keeps the first of each."
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="chartrvr_nb.train_data"):
        distinct = load_train_dataset(str(repeated_rows), dedupe=True)
    assert distinct["query"] == [everything["query"][i] for i in (0, 1, 2, 5)]
    assert distinct["label"][3] == "other"
    assert caplog.messages[0].endswith("kept the first of each (--dedupe): 4 rows.")
    assert len(load_train_dataset(str(repeated_rows), dedupe=True, subset_size=2, seed=1)) == 2
