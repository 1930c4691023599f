"""Training rows from where a preset names them: a hub dataset, a local file or folder, or the synthetic generator.

:func:`load_train_dataset` loads them for training, checks their columns (``data.REQUIRED_COLUMNS``),
audits them (:mod:`chartrvr_nb.data_audit`; ``dedupe`` keeps the first of each repeated row), draws
the subset and fits the images to the pixel budget (``data.fit_to_pixel_budget``);
:func:`training_examples` gives a few rows to look at, streaming a hub set rather than downloading it.
A local file that cannot be used (no rows, an image path that leads nowhere) is a
:class:`~chartrvr_nb.data.TrainDataError` naming the file, the row and the fix.

Top-level imports stay light: datasets is imported inside functions.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .data import (
    REQUIRED_COLUMNS,
    TRAIN_DATASET,
    TrainDataError,
    check_columns,
    fit_to_pixel_budget,
    make_synthetic_dataset,
    make_synthetic_rows,
    synthetic_chart_types,
)
from .data_audit import audit_rows

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from datasets import Dataset

logger = logging.getLogger(__name__)

SYNTHETIC_DEFAULT_ROWS = 256  # rows generated for train_data="synthetic" when no subset size is given

_DATA_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


def _load_local(path: str) -> Dataset:
    """Rows from a local file or folder; an ``image`` column of file paths is read relative to the data
    file's folder (:func:`_images_from_paths`)."""
    import datasets

    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(os.path.join(path, "state.json")):
            loaded = datasets.load_from_disk(path)  # written by Dataset(Dict).save_to_disk
            dataset = loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            dataset = datasets.load_dataset(path, split="train")  # a folder of parquet/json files
        return _images_from_paths(_some_rows(dataset, path), Path(path), path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".arrow":
        return _images_from_paths(_some_rows(datasets.Dataset.from_file(path), path), Path(path).parent, path)
    if extension not in _DATA_FILE_BUILDERS:
        raise TrainDataError(
            f"Don't know how to read {path!r}; give a .parquet, .json, .jsonl, .csv or .arrow file, "
            "a folder written by Dataset.save_to_disk, or a folder of data files."
        )
    if extension != ".parquet" and _is_blank(path):  # the json builder fails on one with StopIteration
        raise _no_rows(path)
    dataset = datasets.load_dataset(_DATA_FILE_BUILDERS[extension], data_files=path, split="train")
    return _images_from_paths(_some_rows(dataset, path), Path(path).parent, path)


def _is_blank(path: str) -> bool:
    """Whether a text file holds nothing but whitespace (read in chunks: a data file can be large)."""
    with open(path, "rb") as data:
        return not any(chunk.strip() for chunk in iter(lambda: data.read(1 << 16), b""))


def _no_rows(source: str) -> TrainDataError:
    return TrainDataError(
        f"{source} holds no training rows. Give a file with one row per line (JSONL: one JSON object per "
        f"line with the columns {list(REQUIRED_COLUMNS)}), or use --train-data synthetic."
    )


def _some_rows(dataset: Dataset, source: str) -> Dataset:
    """``dataset`` itself, or a :class:`TrainDataError` when it holds no rows."""
    if len(dataset) == 0:
        raise _no_rows(source)
    return dataset


def _images_from_paths(dataset: Dataset, folder: Path, source: str) -> Dataset:
    """``dataset`` with an ``image`` column of file paths (a JSONL, CSV or parquet file's) made images.

    A relative path is read from ``folder``, the data file's folder (not the working directory). A row
    whose image is missing is an error naming the row and the file looked for.
    """
    from datasets import Image, Value

    if dataset.features.get("image") != Value("string"):
        return dataset  # already images (or no image column: check_columns says so)
    paths = []
    for number, name in enumerate(dataset["image"], start=1):
        path = (folder / Path(name).expanduser()) if name else None
        if path is None or not path.is_file():
            looked = f" (looked for {path})" if path is not None else ""
            raise TrainDataError(
                f"{source}, row {number}: image {name!r} not found{looked}. An image path is read relative to "
                "the data file's folder; fix the path or put the image there."
            )
        paths.append(str(path))
    with_paths = dataset.map(lambda _row, index: {"image": paths[index]}, with_indices=True, desc="Finding images")
    return with_paths.cast_column("image", Image())


def _load_hub(dataset_id: str) -> Dataset:
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split="train")
    except Exception as error:  # the hub client raises many types (offline, gated, missing)
        raise RuntimeError(
            f"Could not load the dataset {dataset_id!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{error}). Check the id and your internet connection; for a gated or private dataset run "
            "`huggingface-cli login`; offline, download it on a machine with internet and pass its local "
            "folder, or use train_data='synthetic' (--train-data synthetic)."
        ) from error


def load_train_dataset(
    source: str = TRAIN_DATASET,
    subset_size: int | None = None,
    seed: int = 2025,
    max_pixels: int | None = None,
    dedupe: bool = False,
    quiet: bool = False,
) -> Dataset:
    """Load training rows from the hub, a local path, or the synthetic generator, and audit them.

    The audit (:func:`chartrvr_nb.data_audit.audit_rows`) logs the rows and the distinct (image,
    question, label) rows; with ``dedupe`` only the first of each is kept, before the subset is drawn.

    Args:
        source: ``"synthetic"`` (or ``"synthetic:bar,pie"``, only those chart types); a local
            ``save_to_disk`` folder, folder of data files, or a ``.parquet``/``.json``/``.jsonl``/
            ``.csv``/``.arrow`` file; otherwise a hub dataset id (its ``train`` split).
        subset_size: keep this many rows after shuffling with ``seed`` (all rows when ``None``;
            for ``"synthetic"``, the number of rows generated, default 256).
        seed: shuffle seed (and the synthetic generator's seed).
        max_pixels: fit images to this pixel budget and the 28-pixel grid (:func:`fit_to_pixel_budget`).
        dedupe: keep only the first of each repeated (image, question, label) row.
        quiet: do not log the audit (the other processes of a multi-process run; rank 0 logs it).

    Returns:
        A ``datasets.Dataset`` with at least ``REQUIRED_COLUMNS``.

    Raises:
        TrainDataError: no rows, missing columns, image paths that lead nowhere, or ``subset_size`` larger
            than the dataset.
        RuntimeError: a hub dataset that cannot be downloaded.
    """
    chart_types = synthetic_chart_types(source)
    if chart_types is not None:
        dataset = make_synthetic_dataset(
            subset_size or SYNTHETIC_DEFAULT_ROWS, seed=seed, max_pixels=max_pixels, chart_types=chart_types
        )
        if not quiet:
            logger.info(audit_rows(dataset).describe(source))
        return dataset
    if os.path.exists(source):
        dataset = _load_local(source)
    else:
        dataset = _load_hub(source)
    check_columns(dataset, name=source)
    audit = audit_rows(dataset)
    if not quiet:
        logger.info(audit.describe(source, deduped=dedupe))
    if dedupe and audit.repeated:
        dataset = dataset.select(audit.first_of_each)
    if subset_size is not None:
        if subset_size > len(dataset):
            raise TrainDataError(
                f"subset_size={subset_size} is larger than {source!r}, which has {len(dataset)} rows; "
                f"pass a subset size of at most {len(dataset)} (--subset-size), or none to use every row."
            )
        dataset = dataset.shuffle(seed=seed).select(range(subset_size))
    if max_pixels is not None:
        dataset = dataset.map(
            lambda row: {"image": fit_to_pixel_budget(row["image"], max_pixels)},
            desc=f"Fitting images to {max_pixels} pixels",
        )
    return dataset


def training_examples(
    source: str = "synthetic", n: int = 32, seed: int = 0, max_pixels: int | None = None
) -> list[dict]:
    """A few training rows to look at, with their images.

    Args:
        source: ``"synthetic"`` (or ``"synthetic:bar,pie"``), a local dataset path, or a hub id such as
            ``sanchit97/chart-rvr-grpo-train`` (streamed: only ``n`` rows are downloaded).
        n: number of rows.
        seed: the synthetic generator's seed (and the local subset's shuffle).
        max_pixels: fit images to this budget and the 28-pixel grid, as training does.

    Returns:
        Dicts in the training schema.
    """
    chart_types = synthetic_chart_types(source)
    if chart_types is not None:
        return make_synthetic_rows(n, seed=seed, max_pixels=max_pixels, chart_types=chart_types)
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
    check_columns(list(rows[0]) if rows else REQUIRED_COLUMNS, name=source)
    if max_pixels is not None:
        rows = [{**row, "image": fit_to_pixel_budget(row["image"], max_pixels)} for row in rows]
    return rows
