"""Reward debugging on a run's own samples (tables, the widget, the CLI), and the form and table fixes.

The samples here are real completions of a synthetic example scored by the real rewards, written
the way training writes ``samples.jsonl`` (group, advantage, what the rewards compared). The end-to-end
check that training writes these fields is in test_tracking.py; the browser test clicks through them.
"""

from __future__ import annotations

import json
import math

import pytest

from chartrvr_nb import cli, inspection, samples, tracking, train_data, widgets
from chartrvr_nb.presets import get_preset
from chartrvr_nb.rewards import REWARDS


@pytest.fixture(scope="module")
def example():
    return train_data.training_examples("synthetic", n=1, seed=3, max_pixels=112 * 112)[0]


@pytest.fixture
def run(tmp_path, example):
    """A run folder whose samples.jsonl holds one step of two prompt groups: one with a learning
    signal (correct vs wrong answer), one without (two identical correct completions)."""
    texts = inspection.example_completions(example)
    groups = [[texts["correct"], texts["wrong answer"]], [texts["correct"], texts["correct"]]]
    columns = {name: example[name] for name in inspection.REWARD_COLUMNS}
    records = []
    for group, completions in enumerate(groups):
        scores = inspection.score_completions(completions, **inspection.reward_columns([columns] * 2))
        mean, std = scores["total"].mean(), scores["total"].std()
        for index, completion in enumerate(completions):
            advantage = (scores["total"][index] - mean) / ((0.0 if math.isnan(std) else std) + 1e-4)
            records.append(
                {
                    "step": 4,
                    "group": group,
                    "row_id": group,
                    "query": example["query"],
                    **columns,
                    "completion": completion,
                    "advantage": float(advantage),
                    "rewards": {f"{name}_reward": float(scores[name][index]) for name in REWARDS},
                }
            )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "samples.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return folder


def test_samples_table_flags_groups_without_signal_and_right_format_wrong_answer(run):
    from chartrvr_nb.runfiles import load_samples

    table = samples.samples_table(load_samples(run))
    assert table["group"].tolist() == [0, 0, 1, 1] and table["sample"].tolist() == [0, 1, 2, 3]
    assert table["flag"].tolist() == ["", "format ok, answer wrong", "no signal", "no signal"]
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[1, "accuracy"] == 0.0
    assert table.loc[0, "advantage"] > 0 > table.loc[1, "advantage"]
    summary = samples.group_summary(table)
    assert summary["learning signal"].tolist() == ["yes", "no: all equal"]
    assert summary["format ok, answer wrong"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"steps \[4\]"):
        samples.samples_table(load_samples(run), step=3)


def test_headless_browser_and_the_rewards_command_print_the_same_tables(run, monkeypatch, capsys):
    monkeypatch.setattr(widgets, "is_interactive", lambda: False)
    assert widgets.samples_browser(run) is None
    printed = capsys.readouterr().out
    assert printed.startswith(
        "step 4: 4 completions in 2 prompt group(s); 1 without learning signal, 1 with full format but a wrong answer"
    )
    assert "group 0:" in printed and "group 1:" in printed and "no signal" in printed
    assert cli.main(["rewards", str(run / "samples.jsonl")]) == 0
    assert capsys.readouterr().out.strip() == printed.strip()
    assert cli.main(["rewards", str(run), "--step", "3"]) == 2
    assert "kept samples at steps [4]" in capsys.readouterr().err


def test_browser_widget_opens_a_sample_in_the_reward_inspector(run, monkeypatch):
    import ipywidgets

    monkeypatch.setattr(widgets, "is_interactive", lambda: True)
    box = widgets.samples_browser(run)
    step_picker, groups, inspector = box.children
    assert list(step_picker.options) == [4]
    cards = [child for child in groups.children if isinstance(child, ipywidgets.HBox)]
    assert [len(row.children) for row in cards] == [2, 2]  # each group's completions side by side
    assert "no learning signal" in groups.children[3].value  # group 1's heading
    wrong_card = cards[0].children[1]
    assert "format ok, answer wrong" in wrong_card.children[0].value
    wrong_card.children[1].click()  # "Inspect"
    heading, editor_box = inspector.children
    start, _hint, editor, _explanation = editor_box.children
    assert "sample 1 (step 4, group 0)" in heading.value
    assert start.options[0] == "sample 1 (step 4, group 0)" and "correct" in start.options
    from chartrvr_nb.runfiles import load_samples

    assert editor.value == load_samples(run)[1]["completion"]


def test_browser_says_what_to_do_before_the_first_samples(tmp_path, capsys):
    assert widgets.samples_browser(tmp_path / "not-trained-yet") is None
    assert "No samples.jsonl" in capsys.readouterr().out


def test_forms_show_every_choice_and_the_whole_checkbox_label():
    form = widgets.Form("Evaluation", benchmarks=(["synthetic"], ["a", "b", "c", "d", "e", "f", "synthetic"]), on=False)
    form._build()
    assert form._widgets["benchmarks"].rows == 7
    assert form._widgets["on"].layout.width == "auto"


def test_preset_form_picks_the_tracker():
    assert widgets.PresetForm("smoke", report_to="tensorboard").preset() == get_preset("smoke", report_to="tensorboard")
    with pytest.raises(ValueError, match="report_to must be one of none, tensorboard, wandb, trackio"):
        get_preset("smoke", report_to="mlflow")


def test_missing_tracker_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install wandb .*chartrvr-nb\[tracking\]"):
        tracking.require_tracker("wandb")


def test_tables_show_a_dash_where_a_number_is_missing():
    import pandas as pd

    html = widgets.text_table(pd.DataFrame({"metric": ["accuracy"], "paper": [float("nan")]})).to_html()
    assert "nan" not in html.lower() and "–" in html


def test_figures_are_drawn_to_be_read_unscaled():
    from chartrvr_nb.data import make_synthetic_rows
    from chartrvr_nb.eval_plots import plot_mistakes
    from chartrvr_nb.plots import plot_example

    row = make_synthetic_rows(1, seed=0, max_pixels=224 * 224)[0]
    figure = plot_example(row)
    image = figure.axes[0].images[0]
    width = row["image"].size[0]
    # The chart is copied pixel for pixel at a whole multiple of its training size, not resampled.
    assert image.get_interpolation() == "nearest"
    shown = figure.axes[0].get_position().width * figure.get_figwidth() * figure.dpi  # pixels the chart spans
    assert shown == pytest.approx(round(shown / width) * width) and shown >= 2 * width
    wrong = [
        {"question": f"Q{i}?", "answer": "3", "prediction": "4", "reasoning": "<step-1>: read 4", "correct": False}
        for i in range(8)
    ]
    gallery = plot_mistakes(wrong, n=8)
    assert gallery.get_figwidth() <= 10  # about a notebook's output width: shown unscaled
    assert all(ax.xaxis.label.get_fontsize() >= 10 for ax in gallery.axes if ax.get_visible())
