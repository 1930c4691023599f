"""Loading a benchmark's examples: hub datasets, released question files with image folders, and
the synthetic charts, as declared in :mod:`chartrvr_nb.benchmarks`.

Every source ends as the same example dicts (``id``, ``question``, ``answer``, ``image``,
``subset``, ``metric``, ``meta``), images still encoded until generation decodes them. Nothing here
names a benchmark: where the files are and how a row becomes examples is the declaration's. An
evaluation protocol (:mod:`chartrvr_nb.protocols`) may ask another wording of each question and draw a
seeded sample of the examples, exactly as ``datasets.Dataset.shuffle(seed).select(range(size))`` would
(:func:`sample_indices`). datasets, huggingface_hub, numpy and PIL are imported inside functions.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .benchmarks import Benchmark, get_benchmark
from .protocols import get_protocol

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from PIL.Image import Image

logger = logging.getLogger(__name__)

# The example text each protocol's ``question`` asks (see benchmarks: ``question`` / ``chart_rvr_question``).
QUESTION_FIELDS = {"project": "question", "chart-rvr": "chart_rvr_question"}


def load_image(image: Any) -> Image:
    """Decode whatever a dataset row holds for an image into an RGB PIL image.

    Accepts a PIL image, encoded bytes, a ``{"bytes": ..., "path": ...}`` dict (``datasets``
    with ``decode=False``), or a file path.

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO(); Image.new("L", (4, 3)).save(buffer, format="PNG")
        >>> load_image({"bytes": buffer.getvalue(), "path": None}).mode
        'RGB'
    """
    from PIL import Image as PILImage

    if isinstance(image, PILImage.Image):
        return image.convert("RGB")
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray)):
        with PILImage.open(io.BytesIO(image)) as opened:
            return opened.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with PILImage.open(image) as opened:
            return opened.convert("RGB")
    raise ValueError(f"Cannot read an image from a {type(image).__name__}; expected a PIL image, bytes or a path.")


def _extract_archives(directory: Path) -> list[Path]:
    """Unzip every ``*.zip`` under ``directory`` next to itself, once (like ``unzip`` in place)."""
    extracted = []
    for archive in sorted(directory.rglob("*.zip")):
        marker = archive.with_name(f".{archive.name}.extracted")
        if not marker.exists():
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(archive.parent)
            marker.touch()
        extracted.append(archive)
    return extracted


def _hub_download(benchmark: Benchmark, filename: str | None = None) -> Path:
    """Download a benchmark's hub repo (or one file of it) into the cache; return the local folder."""
    from huggingface_hub import hf_hub_download, snapshot_download

    from .data import cache_root

    local_dir = cache_root() / "benchmarks" / benchmark.name  # kept and extracted beside the tiny models
    try:
        if filename is None:
            snapshot_download(benchmark.source, repo_type="dataset", local_dir=local_dir)
        else:
            hf_hub_download(benchmark.source, filename, repo_type="dataset", local_dir=local_dir)
    except Exception as error:  # the hub client raises many types (offline, gated, missing)
        raise RuntimeError(
            f"Could not download {benchmark.source!r} for {benchmark.name} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). Check your connection, or download it elsewhere and pass "
            "its folder as data_dir (--data-dir)."
        ) from error
    return local_dir


def _image_resolver(first_ref: Any, benchmark: Benchmark, roots: Sequence[Path]) -> Any:
    """A function turning a row's image reference into a file path, checked on the first row.

    The folder is found once: the first root/image-folder combination (references may start
    with ``./`` or ``./data/``, as ChartBench's do) in which the first example's image exists is
    used for all; checking every file up front would be slow on PlotQA's millions of questions.
    """
    first_name = benchmark.image_name.format(first_ref)
    folders = [root / sub for root in roots for sub in (*benchmark.image_dirs, ".")]
    for folder in folders:
        for prefix in ("", "./", "./data/"):
            if (folder / first_name.removeprefix(prefix)).is_file():

                def resolve(ref: Any, folder: Path = folder, prefix: str = prefix) -> str:
                    return str(folder / benchmark.image_name.format(ref).removeprefix(prefix))

                return resolve
    looked = ", ".join(str(folder / first_name) for folder in folders[:6])
    raise ValueError(
        f"{benchmark.title}: cannot find the image {first_name!r} (looked in {looked}). Pass data_dir (--data-dir) "
        "as the folder holding the released files with their image folder "
        f"({', '.join(benchmark.image_dirs) or 'images'})."
    )


def _find_release_file(benchmark: Benchmark, directory: Path) -> Path | None:
    for name in benchmark.release_files:
        found = sorted(directory.rglob(name))
        if found:
            return found[0]
    return None


def _release_rows(benchmark: Benchmark, data_dir: Path | None) -> tuple[list[dict], Path]:
    """Rows of a benchmark distributed as a question file plus an image folder."""
    if data_dir is None:
        if benchmark.source in ("release", "synthetic"):
            raise ValueError(
                f"{benchmark.title} is read from its released files: pass data_dir (--data-dir) as the folder "
                f"holding {' or '.join(benchmark.release_files)} and its image folder "
                f"({', '.join(benchmark.image_dirs)})."
            )
        data_dir = _hub_download(benchmark)
    if not data_dir.is_dir():
        raise ValueError(
            f"data_dir {str(data_dir)!r} is not a folder; pass the folder with the released {benchmark.title} files."
        )
    question_file = _find_release_file(benchmark, data_dir)
    if question_file is None and _extract_archives(data_dir):
        question_file = _find_release_file(benchmark, data_dir)
    if question_file is None:
        raise ValueError(
            f"No {' or '.join(benchmark.release_files)} under {str(data_dir)!r}. Pass data_dir (--data-dir) as the "
            f"folder of the released {benchmark.title} files (zips are extracted automatically)."
        )
    if question_file.suffix == ".jsonl":
        from .runfiles import read_jsonl

        rows: Any = read_jsonl(question_file, strict=True)
    else:
        rows = json.loads(question_file.read_text(encoding="utf-8"))
    if benchmark.records_key is not None:
        rows = rows[benchmark.records_key]
    if not isinstance(rows, list):
        raise ValueError(
            f"{question_file} does not hold a list of questions; is it the released {benchmark.title} file?"
        )
    return rows, question_file


def _is_saved_dataset(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _hub_rows(benchmark: Benchmark, data_dir: Path | None) -> Any:
    """Rows of a hub benchmark as a ``datasets.Dataset``, with images left encoded (decoded lazily)."""
    import datasets

    location = str(data_dir) if data_dir is not None else benchmark.source
    try:
        if data_dir is not None and _is_saved_dataset(data_dir):
            rows = datasets.load_from_disk(location)
            if isinstance(rows, datasets.DatasetDict):
                rows = rows[benchmark.split]
        else:
            rows = datasets.load_dataset(location, benchmark.config, split=benchmark.split)
    except Exception as error:  # offline, missing split/config, unreadable files: say what to do
        raise RuntimeError(
            f"Could not load {benchmark.title} from {location!r} (split {benchmark.split!r}"
            f"{', config ' + repr(benchmark.config) if benchmark.config else ''}): {type(error).__name__}: {error}. "
            "Check your connection, or pass data_dir (--data-dir) as a local copy of the dataset "
            "(a folder with its data files, or one written by save_to_disk)."
        ) from error
    for name, feature in rows.features.items():
        if isinstance(feature, datasets.Image):
            rows = rows.cast_column(name, datasets.Image(decode=False))
    return rows


def sample_indices(count: int, size: int, seed: int) -> list[int]:
    """The positions ``datasets.Dataset.shuffle(seed=seed).select(range(size))`` takes from ``count`` rows,
    in its order.

    ``Dataset.shuffle`` draws ``numpy.random.default_rng(seed).permutation(count)`` and selects the rows
    in that order (datasets 3.6, the authors' version, and 5.x alike); ``select(range(size))`` keeps the
    first ``size``. Where ``select`` would raise for a ``size`` above ``count``, every row is kept, shuffled.

    Example:
        >>> sample_indices(10, 4, seed=2026)
        [1, 9, 0, 6]
    """
    import numpy as np

    return [int(index) for index in np.random.default_rng(seed).permutation(count)[:size]]


def load_examples(
    dataset_name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    protocol: str = "project",
) -> list[dict]:
    """The examples of a benchmark as a protocol evaluates them, images still encoded (decoded when generating).

    Args:
        dataset_name: a key of :data:`chartrvr_nb.benchmarks.BENCHMARKS`.
        data_dir: a local copy of the data (required for PlotQA and ChartFC, optional otherwise):
            for hub benchmarks, a folder with the dataset's data files (or a ``save_to_disk``
            folder); for released files, the folder holding them (zips are extracted).
        limit: keep only the first ``limit`` examples (of the protocol's sample, when it draws one).
        protocol: a key of ``protocols.PROTOCOLS``: which wording of the question is asked (``question``
            holds it), and whether a seeded sample of the benchmark's examples is drawn, in the sample's
            order (``chart-rvr``: 5,000 of PlotQA's and of ChartBench's, seed 2026); else every example
            in the benchmark's order.

    Returns:
        Dicts with ``id``, ``question``, ``chart_rvr_question``, ``answer``, ``image``, ``subset``,
        ``metric``, ``meta``.

    Raises:
        ValueError: an unknown benchmark or protocol, missing files, or ``limit < 1``.
        RuntimeError: a hub dataset that cannot be loaded.
    """
    benchmark = get_benchmark(dataset_name)
    rules = get_protocol(protocol)
    sample_size = rules.samples.get(benchmark.name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}; leave it out to evaluate every example.")
    local = Path(data_dir).expanduser() if data_dir is not None else None
    image_roots: list[Path] = []
    from .data import synthetic_chart_types

    chart_types = synthetic_chart_types(benchmark.source)
    if chart_types is not None:
        import datasets

        from .data import make_synthetic_dataset

        rows: Any = make_synthetic_dataset(
            limit or benchmark.synthetic_rows, seed=benchmark.synthetic_seed, chart_types=chart_types
        )
        rows = rows.cast_column("image", datasets.Image(decode=False))
    elif benchmark.release_files:
        rows, question_file = _release_rows(benchmark, local)
        image_roots = [question_file.parent, *([local] if local else [])]
    else:
        rows = _hub_rows(benchmark, local)
        if benchmark.image_archive is not None:
            image_roots = [local if local is not None else _hub_download(benchmark, benchmark.image_archive)]
    if limit is not None and sample_size is None:  # a sample is drawn from every example, the limit after it
        rows = rows.select(range(min(limit, len(rows)))) if hasattr(rows, "select") else rows[:limit]

    examples: list[dict] = []
    for index, row in enumerate(rows):
        examples.extend(benchmark.examples(row, index))
    if sample_size is not None:
        drawn = sample_indices(len(examples), sample_size, rules.sample_seed)
        logger.info(
            "%s: %d of %d examples, drawn as Dataset.shuffle(seed=%d).select(range(%d)) (the %s protocol)",
            benchmark.title,
            len(drawn),
            len(examples),
            rules.sample_seed,
            sample_size,
            rules.name,
        )
        examples = [examples[index] for index in drawn]
    examples = examples[:limit] if limit is not None else examples
    asked = QUESTION_FIELDS[rules.question]
    examples = [{**example, "question": example[asked]} for example in examples]
    if image_roots and examples:
        examples = _resolve_image_paths(benchmark, examples, image_roots)
    return examples


def _resolve_image_paths(benchmark: Benchmark, examples: list[dict], roots: list[Path]) -> list[dict]:
    try:
        resolve = _image_resolver(examples[0]["image"], benchmark, roots)
    except ValueError:
        # The images may still be zipped (ChartBench ships data/test.zip): extract, then look again.
        if not any(_extract_archives(root) for root in roots if root.is_dir()):
            raise
        resolve = _image_resolver(examples[0]["image"], benchmark, roots)
    return [{**example, "image": resolve(example["image"])} for example in examples]
