"""Experiment tracking through TRL's ``report_to``: TensorBoard, Weights & Biases (offline too), Trackio.

A preset's ``report_to`` becomes the ``GRPOConfig`` fields (:func:`config_fields`), with the run
folder's name as the run name; the trackers' files go into the run folder (TensorBoard's events in
``<run>/tensorboard``, W&B's ``wandb/`` folder, Trackio's database in ``<run>/trackio``), and the
preset is recorded in each tracker's config beside the trainer's arguments. W&B without a login
runs offline and says how to upload the run later (``wandb sync``). A tracker whose package is
missing is an error naming the pip command, before any model is loaded. The callback that records
the preset in the tracker is ``callbacks.PresetToTrackers`` (``callbacks.attach_trackers``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# report_to value -> the package it needs (``pip install 'chartrvr-nb[tracking]'`` brings all three).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
PROJECT = "chartrvr-nb"  # the W&B / Trackio project runs are filed under
TENSORBOARD_DIR = "tensorboard"
TRACKIO_DIR = "trackio"


def require_tracker(report_to: str) -> None:
    """Fail early, with the install command, when the tracker's package is not installed.

    Example:
        >>> require_tracker("none")
    """
    package = TRACKER_PACKAGES.get(report_to)
    if package is not None and importlib.util.find_spec(package) is None:
        raise ImportError(
            f"--report-to {report_to} needs the {package} package, which is not installed. Install it with "
            f"pip install {package} (or all trackers: pip install 'chartrvr-nb[tracking]'), "
            "or train with --report-to none: metrics.jsonl in the run folder is written either way."
        )


def config_fields(report_to: str, output_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``GRPOConfig`` (``TrainingArguments``) fields for a tracker.

    Example:
        >>> config_fields("wandb", "runs/smoke")
        {'report_to': 'wandb', 'run_name': 'smoke', 'project': 'chartrvr-nb'}
    """
    return {"report_to": report_to, "run_name": Path(output_dir).name, "project": PROJECT}


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


@contextlib.contextmanager
def tracker_environment(report_to: str, output_dir: str | os.PathLike) -> Iterator[None]:
    """Point the tracker at the run folder for the duration of training (values the user set win).

    W&B writes its ``wandb/`` folder into the run folder, and runs offline (``WANDB_MODE=offline``)
    when no W&B login is found, instead of stopping to ask for an API key. Trackio keeps its
    database in ``<run>/trackio`` (Trackio reads ``TRACKIO_DIR`` when it is first imported).
    """
    output_dir = Path(output_dir).absolute()
    defaults: dict[str, str] = {}
    if report_to == "wandb":
        defaults = {"WANDB_DIR": str(output_dir), "WANDB_PROJECT": PROJECT}
        if not _wandb_logged_in():
            defaults["WANDB_MODE"] = "offline"
    elif report_to == "trackio":
        defaults = {"TRACKIO_DIR": str(output_dir / TRACKIO_DIR)}
    added = {name: value for name, value in defaults.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
