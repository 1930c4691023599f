"""The notebook suite: run the five notebooks headless, and the helpers their cells call.

The notebooks hold no functions of their own; each cell is a few calls into ``chartrvr_nb``. What
they need that has no other home lives here: where Drive and the run folders are, training rows and
JSONL batches to look at, which run to resume, and
:func:`run_notebooks`, which executes all five with papermill in order, sharing one training run so
that ``03_resume_from_drive`` continues what ``02_train`` started. Reward inspection itself (what
each reward read, the starting completions) is :mod:`chartrvr_nb.inspection`.

Heavy libraries (papermill, pandas, matplotlib, datasets, torch) are imported inside functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

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
                    str(source), str(executed), parameters=values, cwd=str(out),
                    kernel_name=kernel_name, progress_bar=False,
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
    where = "on Google Drive" if env.in_colab() and folder.is_relative_to(env.DRIVE_MOUNT_POINT) else "(local stand-in for Drive)"
    print(f"Runs are mirrored to {folder} {where}.")
    return folder


def run_dirs(preset, run_dir: str | os.PathLike = "", drive_root: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
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
# Reward inspection
# --------------------------------------------------------------------------------------------


def training_examples(source: str = "synthetic", n: int = 32, seed: int = 0, max_pixels: int | None = None) -> list[dict]:
    """A few training rows to look at, with their images.

    Args:
        source: ``"synthetic"``, a local dataset path, or a hub id such as
            ``sanchit97/chart-rvr-grpo-train`` (streamed: only ``n`` rows are downloaded).
        n: number of rows.
        seed: the synthetic generator's seed (and the local subset's shuffle).
        max_pixels: resize images to this budget, as training does.

    Returns:
        Dicts in the training schema.
    """
    from .data import REQUIRED_COLUMNS, load_train_dataset, make_synthetic_rows, resize_to_pixel_budget

    if source == "synthetic":
        return make_synthetic_rows(n, seed=seed, max_pixels=max_pixels)
    if os.path.exists(source):
        return list(load_train_dataset(source, subset_size=n, seed=seed, max_pixels=max_pixels))
    import datasets

    try:
        rows = list(datasets.load_dataset(source, split="train", streaming=True).take(n))
    except Exception as error:  # the hub client raises many types (offline, gated, missing)
        raise RuntimeError(
            f"Could not stream {source!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "Check the id and the connection, or use source='synthetic'."
        ) from error
    missing = [column for column in REQUIRED_COLUMNS if rows and column not in rows[0]]
    if missing:
        raise ValueError(f"{source!r} lacks the training columns {missing}; it needs {list(REQUIRED_COLUMNS)}.")
    if max_pixels is not None:
        rows = [{**row, "image": resize_to_pixel_budget(row["image"], max_pixels)} for row in rows]
    return rows


def example_summary(row: Mapping[str, Any]) -> str:
    """Question, label, chart type and the reference reasoning, one step per line.

    Example:
        >>> print(example_summary({"query": "Max?", "label": "5", "chart_type": "bar",
        ...                        "reasoning": "<step-1>: Read. <step-2>: Pick 5."}))
        question    Max?
        label       5
        chart type  bar
        reference reasoning:
          <step-1>: Read.
          <step-2>: Pick 5.
    """
    steps = re.split(r"\s+(?=<step-\d+>)", str(row.get("reasoning") or "").strip())
    return "\n".join([
        f"question    {row['query']}",
        f"label       {row['label']}",
        f"chart type  {row['chart_type']}",
        "reference reasoning:",
        *(f"  {step}" for step in steps if step),
    ])


def table_frame(table: Mapping[str, Any]):
    """A ``{"columns": [...], "rows": [[...]]}`` table as a DataFrame (short rows padded)."""
    import pandas as pd

    columns = [str(c) for c in table.get("columns", [])]
    rows = [list(row)[: len(columns)] + [""] * (len(columns) - len(row)) for row in table.get("rows", [])]
    return pd.DataFrame(rows, columns=columns)


def write_demo_batch(path: str | os.PathLike, n: int = 8, seed: int = 0) -> Path:
    """Write a JSONL batch to score: every :func:`example_completions` variant of ``n`` synthetic rows.

    Each line has ``completion``, ``label``, ``chart_type``, ``table``, ``reasoning`` (the
    columns ``python -m chartrvr_nb rewards`` reads), plus ``example`` and ``variant``.

    Returns:
        The file written.
    """
    from . import env, inspection
    from .data import make_synthetic_rows

    path = env.run_path(path)  # under the run root, with the runs, not in the notebook's folder
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for index, row in enumerate(make_synthetic_rows(n, seed=seed, render=False)):
            for variant, completion in inspection.example_completions(row).items():
                record = {"example": index, "variant": variant, "completion": completion,
                          **{name: row[name] for name in ("label", "chart_type", "table", "reasoning")}}
                out.write(json.dumps(record) + "\n")
    return path


def read_completions(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL file of completions (each needs a ``completion`` field).

    Raises:
        FileNotFoundError / ValueError: a missing file, or a line that is not a JSON object with a completion.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give a JSONL file with one completion per line.")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}:{number} is not valid JSON ({error}); fix or remove that line.") from error
        if not isinstance(record, dict) or "completion" not in record:
            raise ValueError(f"{path}:{number} has no 'completion' field; each line needs one.")
        records.append(record)
    return records


def score_jsonl(path: str | os.PathLike):
    """Score every completion of a JSONL file with the seven rewards.

    Returns:
        A DataFrame: ``example``/``variant`` when the file has them, one column per reward, ``total``.
    """
    from .inspection import reward_columns, score_completions

    records = read_completions(path)
    table = score_completions([record["completion"] for record in records], **reward_columns(records))
    for position, name in enumerate(name for name in ("example", "variant") if name in records[0]):
        table.insert(position, name, [record.get(name) for record in records])
    return table


def mean_rewards(scores):
    """Mean of each reward, per kind of completion when the batch says (``variant``), else overall.

    Example:
        >>> import pandas as pd
        >>> mean_rewards(pd.DataFrame({"variant": ["a", "a", "b"], "format": [2.0, 0.0, 2.0]}))
                 format
        variant
        a           1.0
        b           2.0
    """
    numeric = scores.drop(columns=[name for name in ("example", "variant") if name in scores.columns])
    if "variant" in scores.columns:
        return numeric.groupby(scores["variant"], sort=False).mean().round(3)
    return numeric.mean().round(3).to_frame("mean").T


# --------------------------------------------------------------------------------------------
# Runs: samples, picking the run to resume
# --------------------------------------------------------------------------------------------


def samples_frame(run_dir_or_file: str | os.PathLike, steps: int = 2):
    """The sample completions of the last ``steps`` sampled steps, with their rewards (a DataFrame)."""
    import pandas as pd

    from .runfiles import load_samples

    records = load_samples(run_dir_or_file)
    kept = sorted({record["step"] for record in records})[-steps:]
    rows = []
    for record in (r for r in records if r["step"] in kept):
        rewards = {name.removesuffix("_reward"): round(float(value), 2) for name, value in (record.get("rewards") or {}).items()}
        rows.append({"step": record["step"], "label": record.get("label"), "completion": record.get("completion"),
                     "total": round(sum(rewards.values()), 2), **rewards})
    return pd.DataFrame(rows)


def default_run(runs, preset: str | None = None) -> str:
    """The run to resume by default: the newest run of ``preset``, else the newest run.

    Args:
        runs: the table from :func:`chartrvr_nb.checkpoints.find_runs`.
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
