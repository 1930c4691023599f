"""The notebook suite: run the five notebooks headless, and the helpers their cells call.

The notebooks hold no functions of their own; each cell is a few calls into ``chartrvr_nb``. What
they need that has no other home lives here: where Drive and the run folders are, which run to
resume, and :func:`run_notebooks`, which executes all five with papermill in order, sharing one
training run so that ``03_resume_from_drive`` continues what ``02_train`` started. Whether a preset
fits this machine is :mod:`chartrvr_nb.estimate`; training rows to look at are
:func:`chartrvr_nb.train_data.training_examples`; reward inspection (what each reward read, the starting
completions, scoring a batch) is :mod:`chartrvr_nb.inspection`, a run's samples :mod:`chartrvr_nb.samples`.

Heavy libraries (papermill, pandas, matplotlib, datasets, torch) are imported inside functions.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .widgets import HEADLESS_ENV

NOTEBOOKS: tuple[str, ...] = (
    "00_setup",
    "01_reward_inspection",
    "02_train",
    "03_resume_from_drive",
    "04_evaluate",
)
# Outside Colab, "Drive" is this local folder, so the Drive mirror and resume work the same way.
LOCAL_DRIVE_STANDIN = "runs/drive"
# Extra papermill parameters for the smoke preset: 02 stops halfway through the 16-step run so that
# 03 has a run to resume, 03 stops at step 12 so that the run can be resumed once more (as after a
# second disconnect), and 04 evaluates a handful of examples. 02's learn-check is shortened to a
# smoke test of its own (4 held-out charts, 2 GRPO steps).
SMOKE_PARAMETERS: dict[str, dict[str, Any]] = {
    "02_train": {"max_steps": 8, "learn_check_charts": 4, "learn_check_steps": 2},
    "03_resume_from_drive": {"max_steps": 12},
    "04_evaluate": {"limit": 8},
}


# --------------------------------------------------------------------------------------------
# Running the suite
# --------------------------------------------------------------------------------------------


def notebook_dir() -> Path:
    """The ``notebooks/`` folder of a checkout: next to the package, else in the current directory.

    Raises:
        FileNotFoundError: neither holds the five notebooks (e.g. the package was pip-installed).
    """
    for candidate in (Path(__file__).resolve().parent.parent / "notebooks", Path.cwd() / "notebooks"):
        if all((candidate / f"{name}.ipynb").is_file() for name in NOTEBOOKS):
            return candidate
    raise FileNotFoundError(
        "No notebooks/ folder with the five notebooks next to the chartrvr_nb package or in the current "
        "directory. Run this from a clone of the repository (git clone https://github.com/<org>/chartrvr-nb)."
    )


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernels papermill starts), then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def shared_parameters(preset: str, out_dir: str | os.PathLike) -> dict[str, Any]:
    """The parameters every notebook of one suite run gets (each takes those it declares).

    Example:
        >>> params = shared_parameters("smoke", "/tmp/suite")
        >>> params["run_dir"], params["drive_root"]
        ('/tmp/suite/run', '/tmp/suite/drive')
    """
    out = Path(out_dir)
    return {
        "preset": preset,
        "run_dir": str(out / "run"),  # 02 trains here, 03 resumes here, 04 evaluates its adapter
        "use_drive": True,
        "drive_root": str(out / "drive"),  # the Drive stand-in: 02 mirrors to it, 03 finds runs in it
        "work_dir": str(out / "reward_inspection"),
        "eval_dir": str(out / "eval"),
    }


def run_notebooks(
    preset: str = "smoke",
    out_dir: str | os.PathLike = "runs/notebooks",
    notebooks: list[str] | None = None,
    parameters: Mapping[str, Mapping[str, Any]] | None = None,
    kernel_name: str | None = None,
) -> dict[str, float]:
    """Execute the numbered notebooks in order with papermill, as CI and ``notebooks run`` do.

    All notebooks share one folder: ``run/`` (02 trains there, 03 resumes it, 04 evaluates its
    adapter), ``drive/`` (a stand-in for Google Drive: 02 mirrors checkpoints to it and 03 finds
    runs in it), ``reward_inspection/`` and ``eval/``; the executed notebooks are written beside
    them. Widgets stay hidden (the kernels run with ``CHARTRVR_NB_HEADLESS=1``); for the smoke preset
    the kernels use one CPU thread (``OMP_NUM_THREADS=1``) unless you set it.

    Args:
        preset: the ``preset`` parameter of every notebook.
        out_dir: where the executed notebooks and the shared folders go (a relative path is under
            the run root, ``env.run_root()``, as the CLI's and the notebooks' run folders are).
        notebooks: names to run, in the given order (default: all five).
        parameters: extra parameters by notebook name, e.g. ``{"02_train": {"max_steps": 4}}``.
        kernel_name: the Jupyter kernel (default: the one the notebooks name, ``python3``).

    Returns:
        Seconds each notebook took, by name.

    Raises:
        ValueError: an unknown notebook name.
        RuntimeError: a cell failed; the message names the executed notebook holding the traceback.
    """
    import papermill

    names = list(notebooks or NOTEBOOKS)
    unknown = [name for name in names if name not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"Unknown notebook(s) {unknown}; choose from {', '.join(NOTEBOOKS)}.")
    from . import env

    source_dir = notebook_dir()
    out = env.run_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shared = shared_parameters(preset, out)
    environment = {HEADLESS_ENV: "1"}
    if preset == "smoke" and "OMP_NUM_THREADS" not in os.environ:
        # The tiny model's matrices are too small for threads to pay off, and on a busy CPU the
        # threads mostly wait for each other: 2 s per GRPO step with 1 thread, 17 s with 2,
        # measured on 2 shared cores.
        environment["OMP_NUM_THREADS"] = "1"
    timings: dict[str, float] = {}
    with _environment(**environment):
        for name in names:
            source = source_dir / f"{name}.ipynb"
            executed = out / f"{name}.ipynb"
            declared = papermill.inspect_notebook(str(source))
            values = {key: value for key, value in shared.items() if key in declared}
            if preset == "smoke":
                values.update(SMOKE_PARAMETERS.get(name, {}))
            values.update((parameters or {}).get(name, {}))
            print(f"Running {name} with {values}", flush=True)
            started = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(source),
                    str(executed),
                    parameters=values,
                    cwd=str(out),
                    kernel_name=kernel_name,
                    progress_bar=False,
                )
            except papermill.PapermillExecutionError as error:
                raise RuntimeError(
                    f"{name} failed in cell {error.exec_count} ({error.ename}: {error.evalue}). "
                    f"Open {executed} to see the traceback in place."
                ) from error
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"{name}: {timings[name]:.0f} s -> {executed}", flush=True)
    print(f"All {len(names)} notebooks ran in {sum(timings.values()):.0f} s; outputs in {out}")
    return timings


# --------------------------------------------------------------------------------------------
# Setup: Drive, GPU fit and estimates
# --------------------------------------------------------------------------------------------


def drive_root_dir(drive_root: str | os.PathLike = "", use_drive: bool = True) -> Path | None:
    """The folder runs are mirrored to and resumed from.

    Args:
        drive_root: a folder to use; empty for the default: in Colab ``MyDrive/chartrvr-nb``
            (Drive is mounted, which asks for permission once), elsewhere ``runs/drive`` under the
            run root (``env.run_root()``), a local stand-in that behaves the same.
        use_drive: False keeps checkpoints only in the run folder.

    Returns:
        The folder (created), or None when Drive is off.
    """
    from . import env

    if not use_drive:
        print("Drive is off: checkpoints stay in the run folder only (a recycled Colab runtime loses them).")
        return None
    mounted = env.mount_drive() if env.in_colab() else None
    if drive_root:
        folder = env.resolve_drive_dir(drive_root)
    else:
        folder = mounted or env.resolve_drive_dir(LOCAL_DRIVE_STANDIN)
    where = (
        "on Google Drive"
        if env.in_colab() and folder.is_relative_to(env.DRIVE_MOUNT_POINT)
        else "(local stand-in for Drive)"
    )
    print(f"Runs are mirrored to {folder} {where}.")
    return folder


def run_dirs(
    preset, run_dir: str | os.PathLike = "", drive_root: str | os.PathLike | None = None
) -> tuple[Path, Path | None]:
    """The local run folder and its mirror on Drive.

    Args:
        preset: a Preset or preset name; the run folder defaults to ``runs/<preset name>``.
        run_dir: the local run folder, if given. Relative folders are under the run root
            (``env.run_root()``: the repository root, ``/content/chartrvr-nb`` in Colab), where the
            CLI's ``--output-dir`` goes too, whatever the notebook's working directory.
        drive_root: the Drive folder (:func:`drive_root_dir`), or None without Drive.

    Returns:
        ``(run_dir, drive_dir)``; ``drive_dir`` is ``drive_root/<run folder name>`` or None.

    Example:
        >>> from chartrvr_nb.env import run_root
        >>> local, drive = run_dirs("smoke", drive_root="/drive")
        >>> local == run_root() / "runs" / "smoke", drive
        (True, PosixPath('/drive/smoke'))
    """
    from . import env

    name = preset if isinstance(preset, str) else preset.name
    local = env.run_path(run_dir or f"runs/{name}")
    return local, (Path(drive_root) / local.name if drive_root else None)


# --------------------------------------------------------------------------------------------
# Runs: picking the run to resume
# --------------------------------------------------------------------------------------------


def default_run(runs, preset: str | None = None) -> str:
    """The run to resume by default: the newest run of ``preset``, else the newest run.

    Args:
        runs: the table from :func:`chartrvr_nb.runfiles.find_runs`.
        preset: a preset name to prefer.

    Raises:
        ValueError: there is no run at all.
    """
    if len(runs) == 0:
        raise ValueError(
            "No training runs found. Train one with 02_train.ipynb (with use_drive on) first, or set "
            "drive_root to the folder that holds your runs."
        )
    same = runs[runs["preset"] == preset]
    return str((same if len(same) else runs)["run"].iloc[0])


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def benchmark_data_dir(data_root: str | os.PathLike, benchmark: str) -> str | None:
    """``data_root/<benchmark>`` when that folder exists (a local copy of the benchmark), else None.

    Example:
        >>> benchmark_data_dir("", "plotqa") is None
        True
    """
    if not data_root:
        return None
    folder = Path(data_root).expanduser() / benchmark
    return str(folder) if folder.is_dir() else None


def evaluation_settings(preset, trained: str | None, **asked: Any):
    """The model and settings 04_evaluate evaluates with, given the preset picked and what it evaluates.

    A local training run (its folder, a checkpoint, its final folder): only what was asked, so that
    ``evaluate.run_evaluation`` takes the run's model and the rest of its settings from its ``run_config.json``,
    as ``python -m chartrvr_nb eval`` does for the same run. The base model alone, or a hub id: the preset's
    model and the settings it trains with (``EvalConfig.for_preset``).

    Args:
        preset: the preset picked in the notebook (a ``presets.Preset``).
        trained: the resolved adapter or full-model path, or None for the base model alone.
        asked: ``EvalConfig`` fields set in the notebook (protocol, limit, batch size, ...).

    Returns:
        ``(model name or None, EvalConfig)``, the first two arguments of ``run_evaluation``.

    Example:
        >>> from chartrvr_nb.presets import get_preset
        >>> model, settings = evaluation_settings(get_preset("smoke"), None, limit=8)
        >>> model, settings.max_new_tokens, settings.limit
        ('tiny', 160, 8)
    """
    from .eval_config import EvalConfig
    from .runfiles import find_run_config

    if trained and Path(trained).is_dir() and find_run_config(trained) is not None:
        return None, EvalConfig(**asked)
    return preset.model, EvalConfig.for_preset(preset, **asked)
