"""The training data's audit: how many rows, how many distinct (image, question, label) rows, which repeat.

A hub set can hold the same row several times (``sanchit97/chart-rvr-grpo-train`` has 34,194 rows,
exactly three times the 11,398 that the authors' code builds). :func:`audit_rows` counts the distinct
rows by the image's bytes, the question and the label, and keeps the index of the first row of each,
so ``train_data.load_train_dataset(..., dedupe=True)`` (``--dedupe``) can keep only those. Images are
compared by their stored bytes, never decoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_COLUMNS = ("image", "query", "label")


@dataclass(frozen=True)
class RowAudit:
    """Rows, distinct (image, question, label) rows, and the first row of each.

    Attributes:
        rows: rows in the data.
        distinct: distinct (image, question, label) rows.
        first_of_each: the index of the first row of each distinct one, in order.
    """

    rows: int
    distinct: int
    first_of_each: tuple[int, ...]

    @property
    def repeated(self) -> int:
        """Rows that repeat an earlier row."""
        return self.rows - self.distinct

    def describe(self, name: str, deduped: bool = False) -> str:
        """One line for the run's log.

        Example:
            >>> print(RowAudit(6, 2, (0, 1)).describe("train.parquet"))
            Training data train.parquet: 6 rows, 2 distinct (image, question, label), 4 repeating an earlier row;
            --dedupe keeps the first of each.
            >>> print(RowAudit(6, 2, (0, 1)).describe("train.parquet", deduped=True))
            Training data train.parquet: 6 rows, 2 distinct (image, question, label), 4 repeating an earlier row;
            kept the first of each (--dedupe): 2 rows.
            >>> print(RowAudit(3, 3, (0, 1, 2)).describe("synthetic"))
            Training data synthetic: 3 rows, all distinct (image, question, label).
        """
        head = f"Training data {name}: {self.rows:,} rows"
        if not self.repeated:
            return f"{head}, all distinct (image, question, label)."
        what = (
            f"kept the first of each (--dedupe): {self.distinct:,} rows"
            if deduped
            else "--dedupe keeps the first of each"
        )
        repeats = f"{self.repeated:,} repeating an earlier row"
        return f"{head}, {self.distinct:,} distinct (image, question, label), {repeats};\n{what}."


def image_fingerprint(value: Any) -> str:
    """A digest of an image as a dataset stores it: encoded bytes, a file path, or a PIL image.

    Example:
        >>> stored = image_fingerprint({"bytes": b"png...", "path": None})
        >>> stored == image_fingerprint({"bytes": b"png...", "path": "a.png"}) == image_fingerprint(b"png...")
        True
    """
    if isinstance(value, dict):  # datasets' Image feature, undecoded
        if value.get("bytes") is not None:
            return hashlib.sha256(value["bytes"]).hexdigest()
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, str) and Path(value).is_file():
        return hashlib.sha256(Path(value).read_bytes()).hexdigest()
    if hasattr(value, "tobytes"):  # a PIL image
        return hashlib.sha256(f"{value.mode}{value.size}".encode() + value.tobytes()).hexdigest()
    return repr(value)


def audit_rows(dataset) -> RowAudit:
    """Count the distinct (image, question, label) rows of a ``datasets.Dataset`` and find the first of each.

    Args:
        dataset: rows with ``image``, ``query`` and ``label`` columns.

    Returns:
        A :class:`RowAudit`.
    """
    import datasets

    keys = dataset.select_columns(list(KEY_COLUMNS))
    if isinstance(keys.features["image"], datasets.Image):
        keys = keys.cast_column("image", datasets.Image(decode=False))  # the stored bytes: nothing decoded
    first: dict[tuple, int] = {}
    for index, row in enumerate(keys):
        first.setdefault((image_fingerprint(row["image"]), row["query"], row["label"]), index)
    return RowAudit(len(dataset), len(first), tuple(first.values()))
