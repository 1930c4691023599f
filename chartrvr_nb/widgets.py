"""Notebook widgets that never block: shown to a person in Jupyter or Colab, skipped headless.

Under papermill, ``nbconvert --execute`` or a plain script, every function here falls back to the
values it was given (the notebook's ``parameters`` cell) and prints or returns plain results, so a
notebook runs top to bottom unattended. In a live notebook a :class:`Form` starts from those same
values and the next cell reads whatever the user picked; nothing waits for input.

ipywidgets, IPython, transformers and matplotlib are imported inside functions, so importing this
module stays light.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Sequence

# Set to 1 to force headless behaviour (``run_notebooks`` does, for its papermill kernels).
HEADLESS_ENV = "CHARTRVR_NB_HEADLESS"

# The flags the training form offers on top of a preset (the seed's, plus those the out-of-memory
# advice and Colab's session limits call for); 0 keeps the preset's value.
PRESET_OVERRIDES = (
    "subset_size", "num_epochs", "num_generations", "batch_size", "grad_accum", "max_completion_length",
    "save_steps", "seed",
)


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
                widget = ipywidgets.SelectMultiple(options=self._choices[name], value=tuple(value),
                                                   description=label, style=style)
            elif name in self._choices:
                widget = ipywidgets.Dropdown(options=self._choices[name], value=value, description=label, style=style)
            elif isinstance(value, bool):
                widget = ipywidgets.Checkbox(value=value, description=label, style=style)
            elif isinstance(value, int):
                widget = ipywidgets.IntText(value=value, description=label, style=style)
            elif isinstance(value, float):
                widget = ipywidgets.FloatText(value=value, description=label, style=style)
            else:
                widget = ipywidgets.Text(value="" if value is None else str(value), description=label,
                                         style=style, layout=ipywidgets.Layout(width="70%"))
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
    """A preset dropdown plus the seed guide's flags; :meth:`preset` builds the validated Preset.

    Numbers left at 0 keep the preset's value, as flags left out do on the command line.

    Example:
        >>> PresetForm("smoke", num_generations=4).preset().num_generations
        4
    """

    def __init__(self, preset: str = "smoke", disable_gradient_checkpointing: bool = False, **overrides: int):
        from .presets import PRESETS

        unknown = sorted(set(overrides) - set(PRESET_OVERRIDES))
        if unknown:
            raise ValueError(f"Unknown override(s) {unknown}; the form offers {', '.join(PRESET_OVERRIDES)}.")
        fields = {name: int(overrides.get(name) or 0) for name in PRESET_OVERRIDES}
        super().__init__(
            "Training preset (numbers at 0 keep the preset's value)",
            preset=(preset, list(PRESETS)),
            **fields,
            disable_gradient_checkpointing=disable_gradient_checkpointing,
        )

    def preset(self):
        """The chosen preset with the non-zero overrides applied (``presets.get_preset``)."""
        from .presets import get_preset

        values = self.values()
        overrides = {name: values[name] for name in PRESET_OVERRIDES if values[name]}
        if values["disable_gradient_checkpointing"]:
            overrides["gradient_checkpointing"] = False
        return get_preset(values["preset"], **overrides)


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
    editor = ipywidgets.Textarea(value=next(iter(completions.values())), continuous_update=False,
                                 layout=ipywidgets.Layout(width="100%", height="240px"))
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


@functools.cache
def _live_curves_class() -> type:
    from transformers import TrainerCallback

    class LiveRewardCurves(TrainerCallback):
        """Redraws ``plots.plot_reward_curves`` in place every ``every`` logging events.

        It reads the run's ``metrics.jsonl``, which the trainer's own callback has just
        appended to. Headless (papermill, scripts) it does nothing, so logs stay quiet.
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

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not self.enabled or not state.is_world_process_zero:
                return
            self.logs_seen += 1
            if self.logs_seen % self.every == 0:
                self._redraw()

        def on_train_end(self, args, state, control, **kwargs):
            if self.enabled and state.is_world_process_zero and self.logs_seen % self.every:
                self._redraw()

    LiveRewardCurves.__module__ = __name__
    return LiveRewardCurves


def live_reward_curves(run_dir: str | os.PathLike, every: int = 5, rewards: Sequence[str] | None = None):
    """A ``TrainerCallback`` for ``train(..., callbacks=[...])`` that keeps the reward curves live.

    Args:
        run_dir: the training run directory (where ``metrics.jsonl`` grows).
        every: redraw after this many logging events (one per optimizer step by default).
        rewards: reward names to plot (all when None).

    Returns:
        The callback; a no-op when nobody is watching (see :func:`is_interactive`).
    """
    return _live_curves_class()(run_dir, every=every, rewards=rewards)


def __getattr__(name: str):
    # PEP 562: build the TrainerCallback subclass (and import transformers) only when asked for.
    if name == "LiveRewardCurves":
        return _live_curves_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def text_table(frame, *text_columns: str, decimals: int = 3):
    """``frame`` styled for reading: the given text columns left-aligned with their line breaks,
    numbers rounded, no index (a pandas Styler; display it as a cell's last expression).
    """
    wrapped = {"text-align": "left", "white-space": "pre-wrap", "font-family": "monospace", "min-width": "24em"}
    styler = frame.style.format(precision=decimals, escape="html").hide(axis="index")  # show <tags> as text
    return styler.set_properties(subset=list(text_columns), **wrapped) if text_columns else styler
