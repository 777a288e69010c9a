"""Readers: files on disk -> raw frames for :mod:`meta_supervisor.ingest.records` to validate.

JSONL (the original system's format), CSV and Parquet are read; the format is taken from the
suffix (``.jsonl``/``.ndjson``/``.json``, ``.csv``/``.tsv``, ``.parquet``/``.pq``). A missing
or empty file is "no evidence" (an empty batch), never a crash.

JSONL is read in chunks of whole lines (``chunk_bytes``, default 64 MiB) so memory stays
bounded on files of millions of lines:

1. *Fast path*: the whole chunk goes to polars' NDJSON reader with every field read as text
   (numbers keep their JSON spelling; :mod:`meta_supervisor.ingest.records` casts and validates
   them). A clean chunk never touches per-line Python.
2. *Fallback*, only for a chunk the fast path refuses: lines that cannot be plain JSON objects
   (not ``{...}``, or holding the non-standard ``NaN``/``Infinity``) are set aside cheaply; the
   rest go back to the NDJSON reader, bisected until the lines it still refuses are isolated.
   Only the set-aside and isolated lines are parsed one by one with :func:`json.loads`, which
   accepts ``NaN``/``Infinity`` (then refused as "not finite" by validation) and names the
   error of a corrupt line. A line that is not a JSON object becomes a quarantine entry with
   its line number; every other line is read.

CSV is read with every column as text, Parquet with its own types; both are validated by
polars expressions only (no per-row Python). Line numbers: JSONL = physical line (1-based),
CSV = physical line of a single-line row (the header is line 1), Parquet = row (1-based).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import compress
from pathlib import Path

import numpy as np
import polars as pl

from meta_supervisor.errors import BadInput
from meta_supervisor.ingest.records import (
    QUARANTINE_SCHEMA,
    Batch,
    empty_quarantine,
    normalize_records,
    normalize_telemetry,
)

__all__ = [
    "RECORD_FIELDS",
    "TELEMETRY_FIELDS",
    "RawChunk",
    "detect_kind",
    "file_format",
    "iter_batches",
    "iter_raw",
    "read_raw",
    "read_records",
    "read_telemetry",
]

#: Input fields the record normaliser reads (others, e.g. ``entry_price``, are ignored).
RECORD_FIELDS = (
    "ts",
    "agent",
    "run_id",
    "symbol",
    "direction",
    "horizon_hours",
    "realized_pnl_bps",
    "expected_pnl_bps",
    "expected_sigma_bps",
    "strategy_class",
    "strategy",
    "regime",
)
#: Input fields the telemetry normaliser reads (schema A ``error``, schema B ``errors``).
TELEMETRY_FIELDS = ("ts", "agent", "run_id", "error", "errors")

_RECORD_MARKERS = {"horizon_hours", "realized_pnl_bps", "expected_pnl_bps"}
_TELEMETRY_MARKERS = {"latency_ms", "error", "errors", "tokens_in", "tokens_out", "cost_usd"}
_JSONL = {".jsonl", ".ndjson", ".json"}
_CSV = {".csv", ".tsv"}
_PARQUET = {".parquet", ".pq"}
CHUNK_BYTES = 64 << 20


def file_format(path: str | Path) -> str:
    """``"jsonl"``, ``"csv"`` or ``"parquet"`` from the suffix (unknown suffixes read as JSONL)."""
    suffix = Path(path).suffix.lower()
    if suffix in _CSV:
        return "csv"
    if suffix in _PARQUET:
        return "parquet"
    return "jsonl"


def _columns_of(path: Path) -> set[str]:
    fmt = file_format(path)
    if fmt == "parquet":
        try:
            return set(pl.read_parquet_schema(path))
        except (OSError, pl.exceptions.PolarsError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise BadInput(f"{path}: not a readable Parquet file (truncated?): {first}") from None
    if fmt == "csv":
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return set(pl.read_csv(path, n_rows=0, separator=sep, infer_schema=False).columns)
    keys: set[str] = set()
    with path.open("rb") as handle:
        for seen, blob in enumerate(handle):
            if seen >= 200:
                break
            try:
                obj = json.loads(blob)
            except ValueError:
                continue
            if isinstance(obj, dict):
                keys.update(obj)
    return keys


def detect_kind(path: str | Path) -> str | None:
    """``"records"`` or ``"telemetry"`` from the columns of ``path``; ``None`` if unknown.

    Records carry ``horizon_hours``/``realized_pnl_bps``/``expected_pnl_bps``; telemetry
    carries ``latency_ms``, ``error``, ``errors``, tokens or cost (either schema).
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    columns = _columns_of(path)
    if columns & _RECORD_MARKERS:
        return "records"
    if columns & _TELEMETRY_MARKERS:
        return "telemetry"
    return None


@dataclass
class RawChunk:
    """Raw rows of one chunk (text columns + ``_line``) and the lines that were not JSON objects.

    ``line_text`` returns the original text of given line numbers (JSONL only) so quarantine
    entries can quote the input; ``bytes_done`` is the file offset reached (for progress).
    """

    frame: pl.DataFrame
    unreadable: pl.DataFrame
    bytes_done: int
    line_text: Callable[[list[int]], list[str]] | None = None


def _bad_row(source: str, line: int, reason: str, text: str) -> tuple:
    return (source, line, "(line)", reason, text[:500])


def _json_value_text(value: object) -> str | None:
    """One JSON value as text, spelled as polars' NDJSON reader spells it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _parse_lines(
    lines: list[bytes], numbers: list[int], fields: tuple[str, ...], source: str
) -> tuple[pl.DataFrame, list[tuple]]:
    """The slow path: ``json.loads`` line by line (only for lines the fast path refused)."""
    rows: dict[str, list] = {name: [] for name in fields}
    kept: list[int] = []
    bad: list[tuple] = []
    for blob, number in zip(lines, numbers, strict=True):
        text = blob.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
        except ValueError as err:
            bad.append(_bad_row(source, number, f"not valid JSON: {err}", text))
            continue
        if not isinstance(obj, dict):
            bad.append(_bad_row(source, number, f"not a JSON object ({type(obj).__name__})", text))
            continue
        for name in fields:
            rows[name].append(_json_value_text(obj.get(name)))
        kept.append(number)
    frame = pl.DataFrame(
        {name: pl.Series(name, rows[name], dtype=pl.String) for name in fields}
        | {"_line": pl.Series("_line", kept, dtype=pl.Int64)}
    )
    return frame, bad


def _ndjson(blob: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """Polars' NDJSON reader on ``blob``; ``None`` when it refuses any line."""
    try:
        return pl.read_ndjson(io.BytesIO(blob), schema=schema)
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError):
        return None


def _bisect(
    lines: list[bytes],
    numbers: list[int],
    schema: dict[str, pl.DataType],
    fields: tuple[str, ...],
    source: str,
) -> tuple[list[pl.DataFrame], list[tuple]]:
    """Read ``lines`` with the fast reader, halving blocks it refuses down to single lines."""
    frames: list[pl.DataFrame] = []
    bad: list[tuple] = []
    stack = [(0, len(lines))]
    while stack:
        lo, hi = stack.pop()
        if hi - lo <= 4:
            frame, refused = _parse_lines(lines[lo:hi], numbers[lo:hi], fields, source)
            frames.append(frame)
            bad.extend(refused)
            continue
        parsed = _ndjson(b"\n".join(lines[lo:hi]), schema)
        if parsed is not None and parsed.height == hi - lo:
            frames.append(parsed.with_columns(pl.Series("_line", numbers[lo:hi], dtype=pl.Int64)))
            continue
        mid = (lo + hi) // 2
        stack.extend([(mid, hi), (lo, mid)])
    return frames, bad


def _suspicious_offsets(buf: bytes) -> list[int]:
    """Byte offsets of ``NaN``/``Infinity`` tokens (valid for json.loads, not for NDJSON)."""
    offsets = []
    for token in (b"NaN", b"Infinity"):
        start = buf.find(token)
        while start >= 0:
            offsets.append(start)
            start = buf.find(token, start + 1)
    return offsets


def _jsonl_chunk(
    buf: bytes, first_line: int, fields: tuple[str, ...], source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse one chunk of whole lines starting at line ``first_line``."""
    schema: dict[str, pl.DataType] = {name: pl.String() for name in fields}
    n_lines = buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
    frame = _ndjson(buf, schema)
    if frame is not None and frame.height == n_lines:
        # No blank line and every line an object: row i is line first_line + i.
        lines_col = pl.int_range(first_line, first_line + n_lines, dtype=pl.Int64, eager=True)
        return frame.with_columns(lines_col.alias("_line")), empty_quarantine()
    lines = buf.split(b"\n")
    if buf.endswith(b"\n"):
        lines.pop()
    numbers = list(range(first_line, first_line + len(lines)))
    plain = [blob[:1] == b"{" and blob[-1:] == b"}" for blob in lines]
    offsets = _suspicious_offsets(buf)
    if offsets:
        ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1)
        for index in np.searchsorted(ends, np.asarray(offsets), side="right"):
            plain[int(index)] = False
    odd = [not flag for flag in plain]
    frames, bad = _bisect(
        list(compress(lines, plain)), list(compress(numbers, plain)), schema, fields, source
    )
    slow, refused = _parse_lines(
        list(compress(lines, odd)), list(compress(numbers, odd)), fields, source
    )
    frames.append(slow)
    bad.extend(refused)
    frame = pl.concat(frames, how="vertical").sort("_line")
    return frame, pl.DataFrame(bad, schema=QUARANTINE_SCHEMA, orient="row")


def _line_texts(buf: bytes, first_line: int) -> Callable[[list[int]], list[str]]:
    def lookup(numbers: list[int]) -> list[str]:
        lines = buf.split(b"\n")
        return [
            lines[n - first_line].decode("utf-8", errors="replace").strip()[:500]
            if 0 <= n - first_line < len(lines)
            else ""
            for n in numbers
        ]

    return lookup


def _iter_jsonl(
    path: Path, fields: tuple[str, ...], chunk_bytes: int, source: str
) -> Iterator[RawChunk]:
    first_line = 1
    done = 0
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(chunk_bytes)
            if done == 0 and not carry and block.startswith(b"\xef\xbb\xbf"):
                block = block[3:]  # a UTF-8 BOM (Windows editors) is not part of line 1
            buf = carry + block
            if not block:
                carry = b""
            else:
                cut = buf.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a chunk: keep reading
                    carry = buf
                    continue
                buf, carry = buf[:cut], buf[cut:]
            if not buf:
                break
            done += len(buf)
            frame, unreadable = _jsonl_chunk(buf, first_line, fields, source)
            yield RawChunk(frame, unreadable, done, _line_texts(buf, first_line))
            first_line += buf.count(b"\n")
            if not block:
                break


def iter_raw(
    path: str | Path,
    fields: tuple[str, ...] | None = None,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[RawChunk]:
    """Raw chunks of ``path`` (one chunk for CSV/Parquet); nothing for a missing/empty file.

    ``fields`` are the JSONL keys to read (default: record and telemetry fields); CSV and
    Parquet keep all their columns.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return
    fields = fields or tuple(dict.fromkeys(RECORD_FIELDS + TELEMETRY_FIELDS))
    fmt = file_format(path)
    size = path.stat().st_size
    if fmt == "csv":
        separator = "\t" if path.suffix.lower() == ".tsv" else ","
        try:
            frame = pl.read_csv(
                path,
                infer_schema=False,
                separator=separator,
                null_values=[""],
                encoding="utf8-lossy",
            )
            frame = frame.with_row_index("_line", offset=2).cast({"_line": pl.Int64})
            # A blank line (or one of bare separators) carries no data: skipped, as in JSONL.
            data_columns = [c for c in frame.columns if c != "_line"]
            if data_columns:
                frame = frame.filter(~pl.all_horizontal(pl.col(data_columns).is_null()))
            unreadable = empty_quarantine()
        except pl.exceptions.PolarsError:
            frame, unreadable = _read_csv_strictly(path, separator)
        yield RawChunk(frame, unreadable, size)
        return
    if fmt == "parquet":
        try:
            frame = pl.read_parquet(path).with_row_index("_line", offset=1)
        except (OSError, pl.exceptions.PolarsError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0][:200]
            raise BadInput(f"{path}: not a readable Parquet file (truncated?): {first}") from None
        yield RawChunk(frame.cast({"_line": pl.Int64}), empty_quarantine(), size)
        return
    yield from _iter_jsonl(path, fields, chunk_bytes, str(path))


def _read_csv_strictly(path: Path, separator: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Row-by-row CSV reading, for a file polars' fast reader refused (bad quoting, ragged rows).

    Only malformed files take this path. A row whose field count differs from the header's is
    refused with its line number (the line its record starts on); the others are kept as text.
    Blank rows are skipped, as by the fast reader.
    """
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=False)
    header: list[str] | None = None
    rows: list[list[str | None]] = []
    lines: list[int] = []
    refused: list[tuple[str, int, str, str, str]] = []
    start = 1
    for row in reader:
        if header is None:
            header = row
        elif not any(row):
            pass
        elif len(row) != len(header):
            raw = separator.join(row)[:500]
            reason = f"expected {len(header)} fields (the header's), got {len(row)}"
            refused.append((str(path), start, "(line)", reason, raw))
        else:
            rows.append([value if value != "" else None for value in row])
            lines.append(start)
        start = reader.line_num + 1
    columns = [
        name if name not in (header or [])[:i] else f"{name}_duplicated_{i}"
        for i, name in enumerate(header or [])
    ]
    frame = pl.DataFrame(
        {name: [row[i] for row in rows] for i, name in enumerate(columns)},
        schema=dict.fromkeys(columns, pl.String),
    ).with_columns(pl.Series("_line", lines, dtype=pl.Int64))
    return frame, pl.DataFrame(refused, schema=QUARANTINE_SCHEMA, orient="row")


def read_raw(path: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read one whole file into ``(raw rows with _line, quarantine of unreadable lines)``."""
    chunks = list(iter_raw(path))
    if not chunks:
        return pl.DataFrame(), empty_quarantine()
    frame = pl.concat([c.frame for c in chunks], how="diagonal_relaxed")
    return frame, pl.concat([c.unreadable for c in chunks])


_NORMALIZE = {"records": normalize_records, "telemetry": normalize_telemetry}
_FIELDS = {"records": RECORD_FIELDS, "telemetry": TELEMETRY_FIELDS}


def iter_batches(
    path: str | Path, kind: str, *, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[Batch, pl.Series, int]]:
    """Validated chunks of ``path`` as ``(batch, line of each accepted row, bytes done)``.

    Duplicates are not yet removed. Each batch's quarantine lists the unreadable lines and
    the refused rows, quoting the original line for JSONL.
    """
    normalize = _NORMALIZE[kind]
    for chunk in iter_raw(path, _FIELDS[kind], chunk_bytes=chunk_bytes):
        batch = normalize(chunk.frame, str(path))
        refused = batch.quarantine
        # Validation keeps row order, so the accepted rows are the lines not refused.
        lines = (
            chunk.frame.get_column("_line") if chunk.frame.height else pl.Series([], dtype=pl.Int64)
        )
        lines = lines.filter(~lines.is_in(refused["line"].implode())).alias("_line")
        if chunk.line_text is not None and refused.height:
            texts = chunk.line_text(refused["line"].to_list())
            refused = refused.with_columns(pl.Series("raw", texts, dtype=pl.String))
        batch.quarantine = pl.concat([chunk.unreadable, refused]).sort("line")
        batch.read += chunk.unreadable.height
        yield batch, lines, chunk.bytes_done


def _read(path: str | Path, kind: str) -> Batch:
    batches = [batch for batch, _, _ in iter_batches(path, kind)]
    if not batches:
        return _NORMALIZE[kind](pl.DataFrame(), str(path))
    return Batch(
        records=pl.concat([b.records for b in batches]),
        quarantine=pl.concat([b.quarantine for b in batches]),
        read=sum(b.read for b in batches),
    )


def read_records(path: str | Path) -> Batch:
    """Read and validate reconciled records from ``path`` (duplicates not yet removed)."""
    return _read(path, "records")


def read_telemetry(path: str | Path) -> Batch:
    """Read and validate telemetry events (both schemas) from ``path``."""
    return _read(path, "telemetry")
