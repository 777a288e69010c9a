"""Readers: files on disk -> raw frames for :mod:`meta_supervisor.records` to validate.

JSONL (the original system's format), CSV and Parquet are read. A missing file is "no
evidence" (an empty batch), never a crash. A line that is not a JSON object becomes a
quarantine entry with its line number; the other lines are read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import polars as pl

from meta_supervisor.records import (
    QUARANTINE_SCHEMA,
    Batch,
    empty_quarantine,
    normalize_records,
    normalize_telemetry,
)

__all__ = ["read_raw", "read_records", "read_telemetry"]


def _column(values: list) -> pl.Series:
    """One raw column: floats when every value is a number, else text (validated later)."""
    numeric = all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    )
    if numeric:
        return pl.Series(
            [None if v is None else float(v) for v in values], dtype=pl.Float64, strict=False
        )
    return pl.Series(
        [
            None
            if v is None
            else v
            if isinstance(v, str)
            else repr(v)
            if isinstance(v, float) and not math.isfinite(v)
            else json.dumps(v)
            for v in values
        ],
        dtype=pl.String,
    )


def _read_jsonl(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows: list[dict] = []
    lines: list[int] = []
    texts: list[str] = []
    bad: list[tuple[str, int, str, str, str]] = []
    with path.open("rb") as handle:
        for number, blob in enumerate(handle, start=1):
            text = blob.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except ValueError as err:
                bad.append((str(path), number, "(line)", f"not valid JSON: {err}", text[:500]))
                continue
            if not isinstance(obj, dict):
                kind = type(obj).__name__
                bad.append((str(path), number, "(line)", f"not a JSON object ({kind})", text[:500]))
                continue
            rows.append(obj)
            lines.append(number)
            texts.append(text)
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    data = {key: _column([row.get(key) for row in rows]) for key in keys}
    frame = pl.DataFrame(data) if rows else pl.DataFrame()
    frame = frame.with_columns(
        pl.Series("_line", lines, dtype=pl.Int64), pl.Series("_raw", texts, dtype=pl.String)
    )
    return frame, pl.DataFrame(bad, schema=QUARANTINE_SCHEMA, orient="row")


def read_raw(path: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read one file into ``(raw rows with _line, quarantine of unreadable lines)``.

    The format is taken from the suffix: ``.jsonl``/``.json``/``.ndjson``, ``.csv``,
    ``.parquet``/``.pq``. A missing or empty file yields an empty frame.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pl.DataFrame(), empty_quarantine()
    suffix = path.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        frame = pl.read_csv(
            path, infer_schema=False, separator="\t" if suffix == ".tsv" else ",", null_values=[""]
        )
        return frame.with_row_index("_line", offset=2).cast({"_line": pl.Int64}), (
            empty_quarantine()
        )
    if suffix in {".parquet", ".pq"}:
        frame = pl.read_parquet(path)
        return frame.with_row_index("_line", offset=1).cast({"_line": pl.Int64}), (
            empty_quarantine()
        )
    return _read_jsonl(path)


def _read(path: str | Path, normalize: Callable[[pl.DataFrame, str], Batch]) -> Batch:
    raw, unreadable = read_raw(path)
    batch = normalize(raw, str(path))
    batch.quarantine = pl.concat([unreadable, batch.quarantine]).sort("line")
    batch.read += unreadable.height
    return batch


def read_records(path: str | Path) -> Batch:
    """Read and validate reconciled records from ``path`` (duplicates not yet removed)."""
    return _read(path, normalize_records)


def read_telemetry(path: str | Path) -> Batch:
    """Read and validate telemetry events (both schemas) from ``path``."""
    return _read(path, normalize_telemetry)
