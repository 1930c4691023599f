"""Notebook widgets that never block: shown to a person in Jupyter or Colab, skipped headless.

Under papermill, ``nbconvert --execute`` or a plain script, every function here falls back to the
values it was given (the notebook's ``parameters`` cell) and prints or returns plain results, so a
notebook runs top to bottom unattended. In a live notebook a :class:`Form` starts from those same
values and the next cell reads whatever the user picked; nothing waits for input.

ipywidgets, IPython and matplotlib are imported inside functions, so importing this module stays light.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Set to 1 to force headless behaviour (``run_notebooks`` does, for its papermill kernels).
HEADLESS_ENV = "CHARTRVR_NB_HEADLESS"


def is_interactive() -> bool:
    """Whether a person is at a live notebook page that can show widgets.

    False in plain Python and terminal IPython (no frontend), under papermill / nbclient /
    ``nbconvert --execute`` (they run cells with stdin disabled, while the live frontends, Jupyter,
    Colab and VS Code, allow it), when ``CHARTRVR_NB_HEADLESS=1``, and when ipywidgets is missing.
    """
    if os.environ.get(HEADLESS_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or importlib.util.find_spec("ipywidgets") is None:
        return False
    if type(shell).__module__.startswith("google.colab"):
        return True  # Colab's own shell only runs behind the Colab page
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and bool(getattr(kernel, "_allow_stdin", False))


class Form:
    """Values from a notebook's parameters cell, editable as widgets when a person is there.

    Each field is a value, or ``(value, choices)`` for a pick from a list; a list value with
    choices becomes a multiple choice. Show the form as a cell's last expression; in the next cell
    :meth:`values` returns what the user picked (headless: the values given).

    Args:
        title: a heading shown above the widgets.
        **fields: name -> value or (value, choices).

    Example:
        >>> form = Form("Run", preset=("smoke", ["smoke", "fast"]), max_steps=8)
        >>> form.values()
        {'preset': 'smoke', 'max_steps': 8}
    """

    def __init__(self, title: str, **fields: Any):
        self.title = title
        self._defaults: dict[str, Any] = {}
        self._choices: dict[str, list] = {}
        for name, spec in fields.items():
            if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], (list, tuple)):
                value, choices = spec
                choices = list(choices)
                missing = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
                if missing:
                    raise ValueError(f"{name}: {missing} not among the choices {choices}.")
                self._choices[name] = choices
                spec = value
            self._defaults[name] = spec
        self._widgets: dict[str, Any] | None = None

    def _build(self):
        import ipywidgets

        style = {"description_width": "160px"}
        self._widgets = {}
        for name, value in self._defaults.items():
            label = name.replace("_", " ")
            if name in self._choices and isinstance(value, list):
                # One row per choice, so every choice shows whole (the default shows 5 and cuts the 6th).
                widget = ipywidgets.SelectMultiple(
                    options=self._choices[name],
                    value=tuple(value),
                    description=label,
                    rows=len(self._choices[name]),
                    style=style,
                )
            elif name in self._choices:
                widget = ipywidgets.Dropdown(options=self._choices[name], value=value, description=label, style=style)
            elif isinstance(value, bool):
                # The label sits right of the box: give it the room it needs instead of the default width.
                widget = ipywidgets.Checkbox(
                    value=value, description=label, style=style, layout=ipywidgets.Layout(width="auto")
                )
            elif isinstance(value, int):
                widget = ipywidgets.IntText(value=value, description=label, style=style)
            elif isinstance(value, float):
                widget = ipywidgets.FloatText(value=value, description=label, style=style)
            else:
                widget = ipywidgets.Text(
                    value="" if value is None else str(value),
                    description=label,
                    style=style,
                    layout=ipywidgets.Layout(width="70%"),
                )
            self._widgets[name] = widget
        heading = ipywidgets.HTML(f"<b>{self.title}</b> (change values here, then run the next cell)")
        return ipywidgets.VBox([heading, *self._widgets.values()])

    def values(self) -> dict[str, Any]:
        """The current values: the widgets' when they were shown, else the ones given."""
        if self._widgets is None:
            return dict(self._defaults)
        picked = {name: widget.value for name, widget in self._widgets.items()}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in picked.items()}

    def _ipython_display_(self) -> None:
        if is_interactive():
            from IPython.display import display

            display(self._build())
        else:
            print(repr(self))

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in self.values().items())
        return f"{self.title} (from the parameters cell): {values}"


class PresetForm(Form):
    """A preset dropdown plus the preset options whose field says ``form=True`` (``presets.Preset``);
    :meth:`preset` builds the validated Preset.

    The fields are the command line's flags under their Python names (``disable_gradient_checkpointing``).
    Numbers left at 0, text left empty and boxes left unticked keep the preset's value, as flags left
    out do on the command line; a pick from a list (``report_to``) always applies.

    Example:
        >>> PresetForm("smoke", num_generations=4).preset().num_generations
        4
    """

    def __init__(self, preset: str = "smoke", **values: Any):
        from .presets import PRESETS, Preset
        from .settings import options

        offered = [option for option in options(Preset) if option.form]
        unknown = sorted(set(values) - {option.dest for option in offered})
        if unknown:
            raise ValueError(f"Unknown override(s) {unknown}; the form offers {', '.join(o.dest for o in offered)}.")
        fields: dict[str, Any] = {}
        for option in offered:
            value = values.get(option.dest)
            if option.choices:
                fields[option.dest] = (value or option.default, list(option.choices))
            else:  # the type's empty value (0, "", unticked) keeps the preset's
                fields[option.dest] = option.type(value or option.type())
        super().__init__(
            "Training preset (numbers at 0 keep the preset's value)", preset=(preset, list(PRESETS)), **fields
        )

    def preset(self):
        """The chosen preset with the form's values applied (``presets.get_preset``)."""
        from .presets import Preset, get_preset
        from .settings import option_overrides

        values = self.values()
        given = {name: value for name, value in values.items() if value}  # empty values keep the preset's
        return get_preset(values["preset"], **option_overrides(Preset, given))


def reward_inspector(row: dict, completions: dict[str, str] | None = None):
    """Edit a completion and watch the seven rewards, and what each one read, update.

    Args:
        row: a training example (``label``, ``chart_type``, ``table``, ``reasoning``).
        completions: starting texts by name (default :func:`chartrvr_nb.inspection.example_completions`).

    Returns:
        Interactive: the widget (a dropdown of starting texts, a text area, the explanation).
        Headless: a DataFrame scoring every starting text with the seven rewards.
    """
    from .inspection import example_completions, explain_completion, score_examples

    completions = completions or example_completions(row)
    if not is_interactive():
        return score_examples(completions, row)

    import ipywidgets
    from IPython.display import display

    start = ipywidgets.Dropdown(options=list(completions), description="start from")
    editor = ipywidgets.Textarea(
        value=next(iter(completions.values())),
        continuous_update=False,
        layout=ipywidgets.Layout(width="100%", height="240px"),
    )
    explanation = ipywidgets.Output()

    def show_scores(_change=None):
        with explanation:
            explanation.clear_output(wait=True)
            display(text_table(explain_completion(editor.value, row), "what it read"))

    def load_start(change):
        editor.value = completions[change["new"]]

    start.observe(load_start, names="value")
    editor.observe(show_scores, names="value")
    show_scores()
    hint = ipywidgets.HTML("Edit the completion; the rewards update when the text area loses focus.")
    return ipywidgets.VBox([start, hint, editor, explanation])


class LiveRewardCurves:
    """Redraws ``plots.plot_reward_curves`` in place every ``every`` logging events of a training run.

    A plain object: training hands it each log event of the main process (``on_log``) and the end
    of training (``on_train_end``), through ``callbacks.ForwardLogs``. It reads the run's
    ``metrics.jsonl``, which the trainer's own callback has just appended to. Headless (papermill,
    scripts) it does nothing, so logs stay quiet.

    Args:
        run_dir: the training run folder (absolute; :func:`live_reward_curves` resolves a relative one).
        every: redraw after this many logging events.
        rewards: reward names to plot (all when None).
    """

    def __init__(self, run_dir: str | os.PathLike, every: int = 5, rewards: Sequence[str] | None = None):
        if every < 1:
            raise ValueError(f"every must be at least 1 logging event, got {every}.")
        self.run_dir = Path(run_dir)
        self.every = every
        self.rewards = list(rewards) if rewards is not None else None
        self.enabled = is_interactive()
        self.logs_seen = 0
        self._handle = None

    def _redraw(self) -> None:
        from .plots import plot_reward_curves
        from .runfiles import load_metrics

        try:
            figure = plot_reward_curves(load_metrics(self.run_dir), rewards=self.rewards, run_name=self.run_dir.name)
        except (FileNotFoundError, ValueError):
            return  # nothing logged yet: the next event tries again
        if self._handle is None:
            from IPython.display import display

            self._handle = display(figure, display_id=True)
        else:
            self._handle.update(figure)

    def on_log(self, logs: dict) -> None:
        if not self.enabled:
            return
        self.logs_seen += 1
        if self.logs_seen % self.every == 0:
            self._redraw()

    def on_train_end(self) -> None:
        if self.enabled and self.logs_seen % self.every:
            self._redraw()


def live_reward_curves(run_dir: str | os.PathLike, every: int = 5, rewards: Sequence[str] | None = None):
    """Reward curves that stay live while ``train(..., callbacks=[...])`` runs.

    Args:
        run_dir: the training run folder (where ``metrics.jsonl`` grows); a relative one is under
            the run root (``env.run_path``), as ``train``'s ``output_dir`` is, whatever the
            kernel's working directory.
        every: redraw after this many logging events (one per optimizer step by default).
        rewards: reward names to plot (all when None).

    Returns:
        A :class:`LiveRewardCurves` for ``train``'s ``callbacks``; a no-op when nobody is watching
        (see :func:`is_interactive`).
    """
    from .env import run_path

    return LiveRewardCurves(run_path(run_dir), every=every, rewards=rewards)


def text_table(frame, *text_columns: str, decimals: int = 3):
    """``frame`` styled for reading: the given text columns left-aligned with their line breaks,
    numbers rounded, no index (a pandas Styler; display it as a cell's last expression).

    The table fits the output area of a notebook about 900 pixels wide (JupyterLab beside its file browser,
    Colab): the text columns wrap anywhere, down to 14em, and column names wrap at their underscores,
    so no column ends up beyond the right edge.
    """
    wrapped = {
        "text-align": "left",
        "white-space": "pre-wrap",
        "overflow-wrap": "anywhere",  # a long token (a table's JSON) wraps instead of widening the table
        "font-family": "monospace",
        "min-width": "14em",
    }
    # <tags> shown as text; a missing number (no paper figure, no advantage logged) as a dash, not NaN.
    styler = frame.style.format(precision=decimals, escape="html", na_rep="–").hide(axis="index")
    styler = styler.format_index(lambda name: str(name).replace("_", "_\u200b"), axis=1)  # may break after "_"
    return styler.set_properties(subset=list(text_columns), **wrapped) if text_columns else styler


def samples_browser(runs, step: int | None = None):
    """A training run's own sample completions by step and prompt group, each openable in the reward inspector.

    For every prompt of the step, its group of completions side by side: the seven rewards, the
    total and the group-relative advantage GRPO computed from them, with groups whose completions
    all scored the same (no learning signal) and completions with full format but a wrong answer
    flagged. "Inspect" opens a completion in :func:`reward_inspector` to edit it.

    Args:
        runs: a run folder (or its ``samples.jsonl``), or several run folders to pick from.
        step: the step shown first (default: the last one that kept samples).

    Returns:
        Interactive: the widget. Headless: None, after printing the same tables as text
        (:func:`chartrvr_nb.samples.format_samples`). None, after saying so, when no folder
        holds samples yet.
    """
    from .runfiles import SAMPLES_FILE, load_samples
    from .samples import format_samples

    given = [runs] if isinstance(runs, (str, os.PathLike)) else list(runs)
    folders = [Path(run) for run in given if Path(run).is_file() or (Path(run) / SAMPLES_FILE).is_file()]
    if not folders:
        print(
            f"No {SAMPLES_FILE} in {', '.join(map(str, given)) or 'the given folders'} yet: train a run first "
            "(02_train, or python -m chartrvr_nb grpo --preset smoke --output-dir runs/smoke), then run this again."
        )
        return None
    if not is_interactive():
        print(format_samples(load_samples(folders[0]), step=step))
        return None

    import ipywidgets

    names = {(folder.parent.name if folder.name.endswith(".jsonl") else folder.name): folder for folder in folders}
    run_picker = ipywidgets.Dropdown(options=list(names), description="run")
    step_picker = ipywidgets.Dropdown(description="step")
    groups = ipywidgets.VBox()
    inspector = ipywidgets.VBox()
    records: list[dict] = []

    def load_run(_change=None):
        from .samples import sample_steps

        records[:] = load_samples(names[run_picker.value])
        steps = sample_steps(records)
        step_picker.options = steps
        step_picker.value = step if step in steps and _change is None else steps[-1]

    def show_step(_change=None):
        if step_picker.value is not None:
            groups.children = _sample_groups(records, step_picker.value, open_in_inspector)

    def open_in_inspector(index: int):
        from .inspection import example_completions
        from .samples import sample_example

        record = records[index]
        example = sample_example(record)
        title = f"sample {index} (step {record['step']}, group {record.get('group', 0)})"
        starts = {title: record.get("completion", "")}
        if isinstance(example.get("table"), dict) and example.get("label") is not None:
            starts.update(example_completions(example))  # the correct completion, to compare
        heading = ipywidgets.HTML(f"<h4>Reward inspector: {title}</h4>")
        inspector.children = [heading, reward_inspector(example, starts)]

    run_picker.observe(load_run, names="value")
    step_picker.observe(show_step, names="value")
    load_run()
    show_step()
    pickers = ipywidgets.HBox([run_picker, step_picker]) if len(names) > 1 else step_picker
    return ipywidgets.VBox([pickers, groups, inspector])


def _sample_groups(records: list[dict], step: int, on_inspect) -> list:
    """One box per prompt group of ``step``: a heading and the group's completions side by side."""
    import html

    import ipywidgets

    from .rewards import REWARDS
    from .samples import group_summary, samples_table

    table = samples_table(records, step)
    summary = group_summary(table).set_index("group")
    boxes = [ipywidgets.HTML(text_table(group_summary(table)).to_html())]
    for group, members in table.groupby("group", sort=True):
        first = records[int(members["sample"].iloc[0])]
        signal = summary.loc[group, "learning signal"]
        heading = (
            f"<b>group {group}</b>: {html.escape(str(first.get('query')))} &nbsp; label "
            f"<code>{html.escape(str(first.get('label')))}</code>"
            + ("" if signal == "yes" else " &nbsp; <b style='color:#b00'>no learning signal: all totals equal</b>")
        )
        cards = []
        for _, sample in members.iterrows():
            scores = "".join(
                f"<tr><td>{name}</td><td style='text-align:right'>{sample[name]:.2f}</td></tr>"
                for name in (*[c for c in table.columns if c in REWARDS], "total", "advantage")
                if name in sample and sample[name] == sample[name]  # NaN (an old run without advantages) skipped
            )
            flag = f"<div style='color:#b00'>{html.escape(sample['flag'])}</div>" if sample["flag"] else ""
            body = ipywidgets.HTML(
                f"<div><b>sample {int(sample['sample'])}</b>{flag}<table>{scores}</table>"
                f"<pre style='white-space:pre-wrap;font-size:12px;max-height:16em;overflow:auto'>"
                f"{html.escape(sample['completion'])}</pre></div>"
            )
            button = ipywidgets.Button(description="Inspect", tooltip="open this completion in the reward inspector")
            button.on_click(lambda _button, index=int(sample["sample"]): on_inspect(index))
            cards.append(ipywidgets.VBox([body, button], layout=ipywidgets.Layout(width="360px", margin="0 12px 0 0")))
        boxes += [ipywidgets.HTML(heading), ipywidgets.HBox(cards, layout=ipywidgets.Layout(overflow="auto"))]
    return boxes


def tensorboard(run_dir: str | os.PathLike, report_to: str):
    """TensorBoard on a run's event files, inside the notebook (Colab and Jupyter), when the run logs there.

    Headless, or when the run reports elsewhere, it prints where the curves are instead.
    """
    from .tracking import TENSORBOARD_DIR

    logdir = Path(run_dir) / TENSORBOARD_DIR
    if report_to != "tensorboard":
        print(
            f"This run reports to {report_to!r}; pick report_to 'tensorboard' in the form above to see TensorBoard "
            "here. The same curves are in the run's metrics.jsonl (section 5)."
        )
        return
    if not is_interactive():
        print(f"TensorBoard events: {logdir}\nview them with: tensorboard --logdir {logdir}")
        return
    from tensorboard import notebook

    notebook.start(f"--logdir {logdir}")  # what the %tensorboard magic runs, in Colab and Jupyter alike
