"""The notebook suite: static checks of the five notebooks, their helpers, and a headless run of all five.

The end-to-end tests run ``run_notebooks("smoke")`` once (module fixture): the tiny model, synthetic
charts, 8 GRPO steps in 02, 4 more resumed in 03, 8 examples evaluated twice in 04, then 03 once
more on a "fresh runtime" that restores the run from the Drive stand-in and finishes it. Budget: about
3-4 minutes on 2 CPU cores (about 3 min here, on two cores shared with other busy processes), plus
the one-time build of the tiny model (2-5 min) when its cache is empty.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chartrvr_nb import data, inspection, notebooks, runfiles, samples, train_data, widgets
from chartrvr_nb.answers import relaxed_match
from chartrvr_nb.presets import PRESETS, TRACKERS, Preset, get_preset

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_FILES = [ROOT / "notebooks" / f"{name}.ipynb" for name in notebooks.NOTEBOOKS]
BADGE = "https://colab.research.google.com/github/<org>/chartrvr-nb/blob/main/notebooks/{}.ipynb"


def _read(path: Path):
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def _python(source: str) -> str:
    """A code cell as plain Python (IPython's ``!cmd`` and ``%magic`` lines turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


# --------------------------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_is_valid_nbformat_4(path):
    nb = _read(path)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_exactly_one_parameters_cell_that_is_a_colab_form_with_smoke(path):
    nb = _read(path)
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    cell = tagged[0]
    assert cell.cell_type == "code" and cell.source.startswith("#@title")
    assignments = [line for line in cell.source.splitlines() if line and not line.startswith("#")]
    assert assignments and all("#@param" in line for line in assignments)
    assert 'preset = "smoke"  #@param' in cell.source


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    for cell in _read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_cells_define_no_function_or_class_and_stay_short(path):
    for cell in _read(path).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(_python(cell.source))
        defined = [
            type(node).__name__
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
        ]
        assert defined == [], f"{path.name} cell {cell.id} defines {defined}"
        if "parameters" not in cell.metadata.get("tags", []):
            assert len(cell.source.splitlines()) <= 12, f"{path.name} cell {cell.id} is long"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_title_badge_intro_and_markdown_before_every_code_cell(path):
    cells = _read(path).cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]} · ")
    assert f"({BADGE.format(path.stem)})" in first.source
    intro = first.source.split("\n\n")[2]
    assert len(intro.split()) >= 50, "the intro paragraph explains what the notebook does"
    for previous, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown" and previous.source.strip(), f"{path.name} cell {cell.id}"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_install_cell_runs_only_in_colab_and_keeps_colabs_torch(path):
    install = _read(path).cells[2]
    assert install.cell_type == "code"
    assert 'if "google.colab" in sys.modules:' in install.source
    assert "-r requirements-colab.txt -c /tmp/keep-colab-torch.txt" in install.source
    assert "pip install --quiet --no-deps ." in install.source
    assert "https://github.com/<org>/chartrvr-nb" in install.source


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_figures_show_inline(path):
    sources = [cell.source for cell in _read(path).cells if cell.cell_type == "code"]
    assert any(source.startswith("%matplotlib inline") for source in sources)


def _parameters_cell(path: Path):
    return next(cell for cell in _read(path).cells if "parameters" in cell.metadata.get("tags", []))


def _param_choices(cell, name: str) -> list:
    """The dropdown of a Colab form line ``name = ...  #@param [...]``."""
    line = next(line for line in cell.source.splitlines() if line.startswith(f"{name} = "))
    return ast.literal_eval(line.split("#@param", 1)[1].strip())


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_preset_dropdown_offers_exactly_the_presets(path):
    assert _param_choices(_parameters_cell(path), "preset") == list(PRESETS)


def test_training_form_offers_every_form_option_and_the_notebook_passes_them_all():
    """The form is generated from the Preset fields marked ``form``; 02_train declares each as a parameter
    and hands every one to the form."""
    import papermill

    from chartrvr_nb.settings import options

    offered = {option.dest for option in options(Preset) if option.form}
    assert set(widgets.PresetForm("smoke").values()) == {"preset"} | offered
    path = ROOT / "notebooks" / "02_train.ipynb"
    assert offered <= set(papermill.inspect_notebook(str(path))), "02_train declares every form option"
    trees = [ast.parse(_python(cell.source)) for cell in _read(path).cells if cell.cell_type == "code"]
    calls = [
        node
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "PresetForm"
    ]
    assert [{keyword.arg for keyword in call.keywords} for call in calls] == [offered]
    assert _param_choices(_parameters_cell(path), "report_to") == list(TRACKERS)


def test_suite_parameters_are_declared_by_the_notebooks():
    import papermill

    for name, values in notebooks.SMOKE_PARAMETERS.items():
        declared = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        assert set(values) <= set(declared)
    declared_everywhere = [set(papermill.inspect_notebook(str(path))) for path in NOTEBOOK_FILES]
    assert all("preset" in names for names in declared_everywhere)
    shared = set(notebooks.shared_parameters("smoke", "/x"))
    assert shared <= set().union(*declared_everywhere), "every shared parameter is used by some notebook"


# --------------------------------------------------------------------------------------------
# widgets
# --------------------------------------------------------------------------------------------


def _fake_ipython(monkeypatch, shell):
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.delenv(widgets.HEADLESS_ENV, raising=False)


def test_is_interactive_only_with_a_live_frontend(monkeypatch):
    _fake_ipython(monkeypatch, None)
    assert not widgets.is_interactive()  # plain Python

    _fake_ipython(monkeypatch, SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=True)))
    assert widgets.is_interactive()  # Jupyter: stdin allowed

    _fake_ipython(monkeypatch, SimpleNamespace(kernel=SimpleNamespace(_allow_stdin=False)))
    assert not widgets.is_interactive()  # papermill / nbclient never allow stdin

    _fake_ipython(monkeypatch, SimpleNamespace())
    assert not widgets.is_interactive()  # terminal IPython: no kernel, no frontend

    colab_shell = type("Shell", (), {"__module__": "google.colab._shell"})()
    _fake_ipython(monkeypatch, colab_shell)
    assert widgets.is_interactive()

    monkeypatch.setenv(widgets.HEADLESS_ENV, "1")
    assert not widgets.is_interactive()


def test_form_headless_returns_the_given_values_and_prints_them(capsys):
    form = widgets.Form("Run", preset=("smoke", ["smoke", "fast"]), benches=(["a"], ["a", "b"]), limit=8, on=True)
    assert form.values() == {"preset": "smoke", "benches": ["a"], "limit": 8, "on": True}
    form._ipython_display_()
    assert "Run (from the parameters cell): preset='smoke'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not among the choices"):
        widgets.Form("Run", preset=("tiny-3b", ["smoke"]))


def test_form_widgets_drive_the_values_when_shown():
    form = widgets.Form("Run", preset=("smoke", ["smoke", "fast"]), benches=(["a"], ["a", "b"]), limit=8, note="x")
    box = form._build()
    assert len(box.children) == 5  # heading + one widget per field
    form._widgets["preset"].value = "fast"
    form._widgets["benches"].value = ("a", "b")
    form._widgets["limit"].value = 100
    assert form.values() == {"preset": "fast", "benches": ["a", "b"], "limit": 100, "note": "x"}


def test_preset_form_applies_nonzero_overrides_like_cli_flags():
    assert widgets.PresetForm("smoke").preset() == get_preset("smoke")
    chosen = widgets.PresetForm("fast", num_generations=4, batch_size=0, disable_gradient_checkpointing=True).preset()
    assert chosen == get_preset("fast", num_generations=4, gradient_checkpointing=False)
    with pytest.raises(ValueError, match="Unknown override"):
        widgets.PresetForm("smoke", num_gens=4)
    with pytest.raises(ValueError, match="divisible by num_generations"):
        widgets.PresetForm("smoke", num_generations=3).preset()


@pytest.fixture(scope="module")
def synthetic_row():
    return train_data.training_examples("synthetic", n=2, max_pixels=112 * 112)[1]


def test_reward_inspector_headless_scores_every_starting_completion(monkeypatch, synthetic_row):
    monkeypatch.setattr(widgets, "is_interactive", lambda: False)
    table = widgets.reward_inspector(synthetic_row)
    assert list(table.index) == list(inspection.example_completions(synthetic_row))
    assert table.loc["correct", "format"] == 2.0 and table.loc["correct", "accuracy"] == 1.0
    assert table.loc["correct", "total"] == table["total"].max()


def test_reward_inspector_widget_loads_the_picked_completion(monkeypatch, synthetic_row):
    import ipywidgets

    monkeypatch.setattr(widgets, "is_interactive", lambda: True)
    completions = {"first": "<answer>1</answer>", "second": "<answer>2</answer>"}
    monkeypatch.setattr(
        "chartrvr_nb.inspection.explain_completion",
        lambda text, row: inspection.table_frame({"columns": ["text"], "rows": [[text]]}),
    )
    box = widgets.reward_inspector(synthetic_row, completions)
    assert isinstance(box, ipywidgets.VBox)
    start, _hint, editor, _explanation = box.children
    assert editor.value == "<answer>1</answer>"
    start.value = "second"
    assert editor.value == "<answer>2</answer>"


def _metrics_run(tmp_path: Path, steps: int = 3) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as out:
        for step in range(1, steps + 1):
            out.write(
                json.dumps(
                    {
                        "step": step,
                        "reward": step / 2,
                        "reward_std": 0.1,
                        "rewards/format_reward/mean": step / 4,
                        "rewards/format_reward/std": 0.0,
                    }
                )
                + "\n"
            )
    return run


def test_live_reward_curves_stay_quiet_headless(monkeypatch, tmp_path):
    from chartrvr_nb.callbacks import ForwardLogs  # how train() hands the plain object its log events

    calls = []
    monkeypatch.setattr(widgets, "is_interactive", lambda: False)
    monkeypatch.setattr("chartrvr_nb.plots.plot_reward_curves", lambda *a, **k: calls.append(a))
    callback = ForwardLogs(widgets.live_reward_curves(_metrics_run(tmp_path), every=1))
    state = SimpleNamespace(is_world_process_zero=True)
    for _ in range(3):
        callback.on_log(None, state, None, logs={"loss": 0.1})
    callback.on_train_end(None, state, None)
    assert calls == []


def test_live_reward_curves_redraw_in_place_every_n_logs(monkeypatch, tmp_path):
    from transformers import TrainerCallback

    from chartrvr_nb.callbacks import ForwardLogs  # how train() hands the plain object its log events

    shown = []

    class Handle:
        def update(self, figure):
            shown.append(("update", figure))

    def fake_display(figure, display_id=False):
        shown.append(("display", figure))
        return Handle()

    monkeypatch.setattr(widgets, "is_interactive", lambda: True)
    monkeypatch.setattr("IPython.display.display", fake_display)
    callback = ForwardLogs(widgets.live_reward_curves(_metrics_run(tmp_path), every=2))
    assert isinstance(callback, TrainerCallback)
    state = SimpleNamespace(is_world_process_zero=True)
    for _ in range(5):
        callback.on_log(None, state, None, logs={"loss": 0.1})
    callback.on_train_end(None, state, None)  # 5 logs, last redraw at 4: draw the final state too
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    assert shown[0][1].get_suptitle().startswith("GRPO training: run")
    with pytest.raises(ValueError, match="every must be at least 1"):
        widgets.live_reward_curves(tmp_path, every=0)


def test_live_reward_curves_find_a_relative_run_under_the_run_root(monkeypatch, tmp_path):
    """Notebook 03 passes "runs/<name>" while its kernel runs in notebooks/: the curves must read the
    metrics.jsonl that train() writes under the run root, not look beside the notebook."""
    from chartrvr_nb.env import RUN_ROOT_ENV

    shown = []
    monkeypatch.setattr(widgets, "is_interactive", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda figure, display_id=False: shown.append(figure))
    root = tmp_path / "root"
    root.mkdir()
    run = _metrics_run(root)
    monkeypatch.setenv(RUN_ROOT_ENV, str(root))
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    curves = widgets.live_reward_curves(run.name, every=1)
    curves.on_log({"loss": 0.1})
    assert curves.run_dir == run and len(shown) == 1


# --------------------------------------------------------------------------------------------
# notebooks helpers
# --------------------------------------------------------------------------------------------

CHEAP_REWARDS = ["format", "count", "accuracy", "length", "chart_type", "table_style"]


def test_each_broken_completion_fails_the_reward_it_targets(synthetic_row):
    from chartrvr_nb.inspection import score_completions

    completions = inspection.example_completions(synthetic_row)
    columns = {name: [synthetic_row[name]] * len(completions) for name in ("label", "chart_type", "table")}
    scores = score_completions(list(completions.values()), rewards=CHEAP_REWARDS, **columns)
    scores.index = list(completions)
    correct = scores.loc["correct"]
    assert (correct[["format", "count", "accuracy", "chart_type"]] == [2.0, 2.0, 1.0, 1.0]).all()
    assert scores.loc["wrong answer", "accuracy"] == 0.0
    assert scores.loc["wrong chart type", "chart_type"] == 0.0
    assert scores.loc["broken table JSON", "table_style"] == 0.0
    assert scores.loc["steps without markers", "length"] < correct["length"]
    assert scores.loc["answer outside the tags", ["format", "count", "accuracy"]].tolist() == [0.0, 0.0, 0.0]
    assert scores.loc["text after the answer", ["format", "count"]].tolist() == [0.0, 2.0]
    for name in completions:
        if name != "correct":
            assert (scores.loc[name] < correct).any(), name


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_wrong_answer_never_matches_a_numeric_label(value):
    label = repr(value)
    assert not relaxed_match(inspection._wrong_answer(label), label)


def test_explain_completion_says_what_each_reward_read(synthetic_row):
    completions = inspection.example_completions(synthetic_row)
    table = inspection.explain_completion(completions["broken table JSON"], synthetic_row)
    assert table["reward"].tolist() == [
        "format",
        "count",
        "accuracy",
        "length",
        "chart_type",
        "table_style",
        "process",
        "total",
    ]
    read = dict(zip(table["reward"], table["what it read"]))
    assert read["table_style"] == "no <table> block that parses as JSON"
    assert read["accuracy"].endswith(": match")
    assert table["score"].iloc[-1] == pytest.approx(table["score"].iloc[:-1].sum(), abs=0.01)
    assert "pre-wrap" in widgets.text_table(table, "what it read").to_html()


def test_demo_batch_round_trips_through_score_records(tmp_path):
    path = data.write_demo_batch(tmp_path / "batch.jsonl", n=2)
    records = runfiles.read_jsonl(path, strict=True, required=("completion",))
    assert len(records) == 2 * 7 and {"completion", "label", "chart_type", "table", "reasoning"} <= set(records[0])
    scores = inspection.score_records(records)
    assert list(scores.columns[:2]) == ["example", "variant"] and "total" in scores.columns
    means = inspection.mean_rewards(scores)
    assert means.loc["correct", "format"] == 2.0 and means.loc["answer outside the tags", "format"] == 0.0


def test_an_empty_batch_scores_to_an_empty_table():
    scores = inspection.score_records([])
    assert len(scores) == 0 and list(scores.columns) == [*inspection.REWARDS, "total"]


def test_read_jsonl_strict_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"completion": "x"}\n{"label": "1"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 has no 'completion'"):
        runfiles.read_jsonl(path, strict=True, required=("completion",))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runfiles.read_jsonl(tmp_path / "missing.jsonl", strict=True)


def test_default_run_prefers_the_preset_then_the_newest():
    import pandas as pd

    runs = pd.DataFrame({"run": ["fast-run", "older-smoke"], "preset": ["fast", "smoke"]})  # newest first
    assert notebooks.default_run(runs, "smoke") == "older-smoke"
    assert notebooks.default_run(runs, "paper") == "fast-run"
    with pytest.raises(ValueError, match="No training runs found"):
        notebooks.default_run(runs.iloc[:0], "smoke")


def test_recent_samples_keeps_the_last_sampled_steps(tmp_path):
    with open(tmp_path / "samples.jsonl", "w") as out:
        for step in (0, 4, 8):
            out.write(
                json.dumps(
                    {
                        "step": step,
                        "label": "3",
                        "completion": f"c{step}",
                        "rewards": {"format_reward": 2.0, "accuracy_reward": 1.0},
                    }
                )
                + "\n"
            )
    frame = samples.recent_samples(runfiles.load_samples(tmp_path), steps=2)
    assert frame["step"].tolist() == [4, 8]
    assert frame.columns.tolist() == ["step", "label", "completion", "total", "format", "accuracy"]
    assert frame["total"].tolist() == [3.0, 3.0]


def test_drive_root_dir_outside_colab(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARTRVR_NB_RUN_ROOT", str(tmp_path))
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert notebooks.drive_root_dir("", use_drive=False) is None
    assert notebooks.drive_root_dir("") == tmp_path / notebooks.LOCAL_DRIVE_STANDIN  # under the run root
    assert notebooks.drive_root_dir(tmp_path / "mine") == tmp_path / "mine"
    assert (tmp_path / "mine").is_dir()


def test_run_notebooks_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="Unknown notebook"):
        notebooks.run_notebooks(notebooks=["05_deploy"], out_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# The whole suite, headless, as CI runs it
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        timings = notebooks.run_notebooks("smoke", out_dir=out)
    return out, timings


def _outputs(out: Path, name: str) -> list:
    return [
        output
        for cell in nbformat.read(out / f"{name}.ipynb", as_version=4).cells
        for output in cell.get("outputs", [])
    ]


def _text(outputs) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_suite_runs_every_notebook_without_errors(suite):
    out, timings = suite
    assert list(timings) == list(notebooks.NOTEBOOKS)
    for name in notebooks.NOTEBOOKS:
        outputs = _outputs(out, name)
        assert outputs and not [o for o in outputs if o.output_type == "error"], name


def test_suite_shows_no_library_future_warnings(suite):
    """The notebooks install no process-wide warning filter; the known renames are hidden where they arise."""
    for name in notebooks.NOTEBOOKS:
        stderr = "".join(o.get("text", "") for o in _outputs(suite[0], name) if o.get("name") == "stderr")
        assert "FutureWarning" not in stderr, name
        sources = [cell.source for cell in _read(ROOT / "notebooks" / f"{name}.ipynb").cells]
        assert not any("filterwarnings" in source for source in sources), name


def test_setup_notebook_reports_the_machine_and_the_estimate(suite):
    text = _text(_outputs(suite[0], "00_setup"))
    assert "transformers" in text and "disk" in text
    assert "OK: preset 'smoke'" in text and "optimizer steps  16" in text


def test_reward_notebook_scores_a_batch_and_draws_histograms(suite):
    out = suite[0]
    assert len(runfiles.read_jsonl(out / "reward_inspection" / "demo_batch.jsonl", strict=True)) == 8 * 7
    outputs = _outputs(out, "01_reward_inspection")
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # the chart and the histograms


def test_train_notebook_checkpoints_mirrors_and_draws_curves(suite):
    out = suite[0]
    text = _text(_outputs(out, "02_train"))
    assert "Finished 8 optimizer steps." in text and "newest checkpoint: " + str(out / "run" / "checkpoint-8") in text
    assert f"Run health of {out / 'run'} (preset smoke, step 8 of 8)" in text and "Every check passes." in text
    for run in (out / "run", out / "drive" / "run"):
        state = json.loads((run / "checkpoint-8" / "trainer_state.json").read_text())
        assert state["global_step"] == 8
    assert (out / "run" / "reward_curves.png").stat().st_size > 10_000
    assert any("image/png" in o.get("data", {}) for o in _outputs(out, "02_train"))
    assert "Rewards, step 1 -> step 8 (8 logged steps):" in text  # how each reward moved, above the curves


def test_train_notebooks_learn_check_is_a_smoke_check_without_a_table_per_step(suite):
    """Under papermill (4 charts, 2 steps) the learn-check says it is no verdict; training in a notebook shows
    one progress bar with the step line beside it, never transformers' table of a loss row per step."""
    out = suite[0]
    outputs = _outputs(out, "02_train")
    text = _text(outputs)
    assert "SHORTENED CHECK, not a verdict" in text and "NOT LEARNED" not in text
    assert f"Report: {out / 'learn-check' / 'learn_check.json'}; figure: " in text
    html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "<progress" in html and "Training Loss" not in html and "reward " in html


def test_resume_notebook_continues_the_run_from_drive(suite):
    out = suite[0]
    text = _text(_outputs(out, "03_resume_from_drive"))
    assert f"Resumed from {out / 'run' / 'checkpoint-8'}; the run is now at step 12." in text
    assert f"Run health of {out / 'run'} (preset smoke, step 12 of 12)" in text and "Every check passes." in text
    assert json.loads((out / "drive" / "run" / "checkpoint-12" / "trainer_state.json").read_text())["global_step"] == 12
    steps = [json.loads(line)["step"] for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, 13)), "one continuous run across both sessions"


def test_resume_notebook_after_a_disconnect_restores_from_drive(suite):
    """A fresh runtime has no local run folder: 03 copies the newest checkpoint back from Drive."""
    out = suite[0]
    fresh = out / "fresh-runtime"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        notebooks.run_notebooks(
            "smoke",
            out_dir=fresh,
            notebooks=["03_resume_from_drive"],
            parameters={
                "03_resume_from_drive": {
                    "drive_root": str(out / "drive"),
                    "run_dir": str(fresh / "run"),
                    "max_steps": 0,
                },
            },
        )
    text = _text(_outputs(fresh, "03_resume_from_drive"))
    assert "Resuming from checkpoint-12, restored from Drive" in text
    assert f"Resumed from {fresh / 'run' / 'checkpoint-12'}; the run is now at step 16." in text
    assert json.loads((out / "drive" / "run" / "checkpoint-16" / "trainer_state.json").read_text())["global_step"] == 16
    steps = [json.loads(line)["step"] for line in (fresh / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == list(range(1, 17)), "the logs came back from Drive and continue"


def test_evaluate_notebook_writes_a_results_table_beside_the_paper(suite):
    import pandas as pd

    out = suite[0]
    table = pd.read_csv(out / "eval" / "results.csv")
    assert table.columns.tolist() == [
        "benchmark",
        "protocol",
        "metric",
        "n",
        "ours",
        "base",
        "ours - base",
        "95% CI",
        "Qwen2.5-VL-3B (direct)",
        "Chart-RVR-3B",
        "vs paper",
    ]
    assert table.loc[0, "benchmark"] == "synthetic" and table.loc[0, "n"] == 8
    assert set(table["protocol"]) == {"project"}  # the notebook's default protocol
    rows = table.set_index("metric")
    summary = json.loads((out / "eval" / "synthetic" / "summary.json").read_text())
    for name, maximum in (("format", 2), ("length", 2.5)):  # what the smoke run moves; each against the base
        row = rows.loc[f"reward: {name} (max {maximum:g})"]
        assert row["ours"] == round(summary["rewards"][name], 2) and row["base"] == round(
            summary["base"]["rewards"][name], 2
        )
        assert row["95% CI"].startswith("[")
    assert rows.loc["project metric: accuracy", "95% CI"].startswith("[")
    html = [o["data"]["text/html"] for o in _outputs(out, "04_evaluate") if "text/html" in o.get("data", {})]
    assert any("Chart-RVR-3B" in fragment for fragment in html)
    shown = next(fragment for fragment in html if "Chart-RVR-3B" in fragment)
    assert "reward: format" in shown and "subset: " not in shown  # the breakdowns are in results.csv only
    assert sum("image/png" in o.get("data", {}) for o in _outputs(out, "04_evaluate")) == 3  # bars, rewards, mistakes
    # The run's own settings, as the CLI would: 02's form left the smoke preset as it is, so they agree here.
    assert (summary["model"], summary["max_new_tokens"], summary["adapter"]) == (
        "tiny",
        160,
        str(out / "run" / "adapter"),
    )
