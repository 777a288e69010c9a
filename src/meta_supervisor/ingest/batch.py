"""Ingest: files -> validated, de-duplicated rows -> one committed ledger batch.

``ingest(paths, ledger)`` reads every path (:mod:`meta_supervisor.ingest.sources`), validates it
(:mod:`meta_supervisor.ingest.records`), removes duplicates and commits what is new as one batch of
the store (:mod:`meta_supervisor.ledger.store`): all of it or, after a kill, none of it. A
batch with a file that cannot be read (missing, unreadable, e.g. a truncated Parquet file, or of
unknown kind) commits nothing: :attr:`IngestReport.failed` names the files.

Counting (each input row lands in exactly one bucket)::

    read = refused (quarantined: unreadable line, bad field, conflicting duplicate)
         + duplicates (already stored, or repeated in this batch with identical content)
         + accepted (new rows stored)

A *conflicting duplicate* is a record whose identity (``run_id`` + horizon) was seen before
with other content (time, agent, symbol, direction, horizon, realized or expected PnL): the
first one seen (the stored one, else the earliest in argument and line order) is kept and the
other is refused with a reason naming both, so a re-run that changed numbers is visible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from meta_supervisor.ingest.records import (
    QUARANTINE_SCHEMA,
    RECORD_SCHEMA,
    TELEMETRY_SCHEMA,
    content_key,
    empty_quarantine,
)
from meta_supervisor.ingest.sources import CHUNK_BYTES, detect_kind, file_format, iter_batches
from meta_supervisor.ledger.store import LedgerError, LedgerStore

__all__ = ["IngestReport", "SourceReport", "dedupe_batch", "ingest", "reason_counts"]

Progress = Callable[[str, int, int], None]


@dataclass
class SourceReport:
    """One input file: its kind and how many rows were valid or refused by validation."""

    path: str
    kind: str | None
    format: str
    read: int = 0
    valid: int = 0
    refused: int = 0
    error: str | None = None


@dataclass
class IngestReport:
    """The outcome of one ingest (or dry run)."""

    sources: list[SourceReport]
    accepted_records: int = 0
    accepted_telemetry: int = 0
    duplicates: int = 0
    quarantine: pl.DataFrame = field(default_factory=empty_quarantine)
    committed: bool = False
    dry_run: bool = False
    generation: int = 0

    @property
    def read(self) -> int:
        """Rows or lines read over all sources."""
        return sum(s.read for s in self.sources)

    @property
    def accepted(self) -> int:
        """New rows stored (or that would be, in a dry run)."""
        return self.accepted_records + self.accepted_telemetry

    @property
    def refused(self) -> int:
        """Rows refused (each in :attr:`quarantine`)."""
        return self.quarantine.height

    @property
    def failed(self) -> list[SourceReport]:
        """Sources that could not be read (missing, unreadable, kind unknown): when any did,
        nothing of the batch is committed."""
        return [source for source in self.sources if source.error is not None]

    @property
    def usable(self) -> bool:
        """Whether anything valid was read (new or already stored)."""
        return self.accepted + self.duplicates > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready summary."""
        return {
            "read": self.read,
            "accepted": self.accepted,
            "accepted_records": self.accepted_records,
            "accepted_telemetry": self.accepted_telemetry,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "refused_by_reason": reason_counts(self.quarantine),
            "committed": self.committed,
            "dry_run": self.dry_run,
            "generation": self.generation,
            "sources": [vars(s) for s in self.sources],
        }


def reason_counts(quarantine: pl.DataFrame) -> dict[str, int]:
    """Refused rows per ``field: reason`` with the quoted value cut off (most frequent first)."""
    if quarantine.height == 0:
        return {}
    label = pl.col("field") + pl.lit(": ") + pl.col("reason").str.split(": ").list.first()
    counts = (
        quarantine.group_by(label.alias("why")).len().sort(["len", "why"], descending=[True, False])
    )
    return dict(counts.iter_rows())


def dedupe_batch(records: pl.DataFrame) -> tuple[pl.DataFrame, int, pl.DataFrame]:
    """Unique records by ``record_id``: ``(kept, identical duplicates, conflicts quarantine)``.

    ``records`` may carry ``_source`` and ``_line`` (kept in the output) to point quarantine
    entries at the input. The first row of each ``record_id`` is kept.
    """
    if records.height == 0:
        return records, 0, empty_quarantine()
    indexed = records.with_row_index("_i")
    repeated = indexed.filter(pl.col("record_id").is_duplicated())
    if repeated.height == 0:
        return records, 0, empty_quarantine()
    source = pl.col("_source") if "_source" in records.columns else pl.lit("<frame>")
    line = pl.col("_line") if "_line" in records.columns else pl.lit(None, dtype=pl.Int64)
    keyed = repeated.with_columns(
        content_key().alias("_key"), source.alias("_src"), line.alias("_ln")
    )
    first = keyed.unique("record_id", keep="first", maintain_order=True).select(
        "record_id",
        pl.col("_i").alias("_first_i"),
        pl.col("_key").alias("_first_key"),
        (pl.col("_src") + pl.lit(":") + pl.col("_ln").cast(pl.String).fill_null("?")).alias("_at"),
    )
    later = keyed.join(first, on="record_id").filter(pl.col("_i") != pl.col("_first_i"))
    conflict = pl.col("_key") != pl.col("_first_key")
    refused = later.filter(conflict).select(
        pl.col("_src").alias("source"),
        pl.col("_ln").cast(pl.Int64).alias("line"),
        pl.lit("record_id").alias("field"),
        (
            pl.lit("conflicting duplicate: ")
            + pl.col("record_id")
            + pl.lit(" first seen at ")
            + pl.col("_at")
            + pl.lit(" with other content; kept the first")
        ).alias("reason"),
        pl.col("_key").str.slice(0, 500).alias("raw"),
    )
    kept = indexed.filter(~pl.col("_i").is_in(later["_i"].implode())).drop("_i")
    return kept, later.height - refused.height, refused.cast(pl.Schema(QUARANTINE_SCHEMA))


def _read_sources(
    paths: Sequence[Path], kind: str, progress: Progress | None, chunk_bytes: int
) -> tuple[list[SourceReport], pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    reports: list[SourceReport] = []
    records: list[pl.DataFrame] = []
    telemetry: list[pl.DataFrame] = []
    refused: list[pl.DataFrame] = []
    for path in paths:
        report = SourceReport(str(path), None, file_format(path))
        reports.append(report)
        if not path.exists():
            report.error = "no such file"
            continue
        total = path.stat().st_size
        try:
            report.kind = detect_kind(path) if kind == "auto" else kind
            if report.kind is None:
                if total:
                    report.error = "cannot tell records from telemetry; pass --kind"
                continue
            for batch, lines, done in iter_batches(path, report.kind, chunk_bytes=chunk_bytes):
                report.read += batch.read
                report.valid += batch.records.height
                report.refused += batch.quarantine.height
                refused.append(batch.quarantine)
                if report.kind == "records":
                    records.append(
                        batch.records.with_columns(
                            pl.lit(str(path)).alias("_source"), lines.alias("_line")
                        )
                    )
                else:
                    telemetry.append(batch.records)
                if progress is not None:
                    progress(str(path), done, total)
        except (OSError, ValueError, pl.exceptions.PolarsError) as err:
            # An unreadable file (e.g. not Parquet at all, or truncated) fails the whole batch
            # (see ingest): it is reported, nothing is committed.
            first = (str(err).splitlines() or [type(err).__name__])[0]
            report.error = f"unreadable: {first[:200]}"
    rec = pl.concat(records) if records else _empty_with_origin()
    tel = pl.concat(telemetry) if telemetry else pl.DataFrame(schema=TELEMETRY_SCHEMA)
    bad = pl.concat(refused) if refused else empty_quarantine()
    return reports, rec, tel, bad


def _empty_with_origin() -> pl.DataFrame:
    return pl.DataFrame(schema={**RECORD_SCHEMA, "_source": pl.String(), "_line": pl.Int64()})


def ingest(
    paths: Sequence[str | Path],
    ledger: str | Path,
    *,
    kind: str = "auto",
    dry_run: bool = False,
    progress: Progress | None = None,
    lock_timeout_s: float = 0.0,
    chunk_bytes: int = CHUNK_BYTES,
    strict: bool = False,
    info: dict[str, Any] | None = None,
) -> IngestReport:
    """Read ``paths`` and commit what is new to the ledger at ``ledger`` as one batch.

    ``kind`` is ``"records"``, ``"telemetry"`` or ``"auto"`` (from each file's columns).
    ``dry_run`` reads, validates and compares with the store but writes nothing.
    ``strict`` commits the batch only when no row is refused (validation, conflicting
    duplicates in the batch or against the store, checked under the writer lock); otherwise
    nothing is written, not even the quarantine, and the report lists the refused rows with
    ``committed = False`` (the HTTP upload: the client fixes the batch and sends it again).
    ``info`` is recorded with the batch in the manifest (e.g. an upload's idempotency key), so
    it is committed with the rows or not at all.
    Raises :class:`meta_supervisor.ledger.store.LedgerBusy` when another ingest holds the lock
    longer than ``lock_timeout_s``.
    """
    if kind not in {"auto", "records", "telemetry"}:
        raise ValueError(f"kind must be auto, records or telemetry, not {kind!r}")
    files = [Path(p) for p in paths]
    reports, records, telemetry, refused = _read_sources(files, kind, progress, chunk_bytes)
    records, rec_dups, conflicts = dedupe_batch(records)
    records = records.drop("_source", "_line")
    unique_tel = telemetry.unique(maintain_order=True)
    duplicates = rec_dups + telemetry.height - unique_tel.height
    quarantine = pl.concat([refused, conflicts]).sort(["source", "line"], nulls_last=True)
    report = IngestReport(reports, duplicates=duplicates, dry_run=dry_run)
    store = LedgerStore(ledger)
    info = {"sources": [str(p) for p in files], **(info or {})}
    # One batch, all or nothing: committing the readable files while one named on the same
    # command line could not be read would store half of what the operator meant, silently.
    if dry_run or report.failed:
        result = store.append(records, unique_tel, quarantine, info, dry_run=True)
        if report.failed and strict:
            result.records = result.telemetry = 0  # refused whole: nothing stored
    else:
        try:
            with store.writer(lock_timeout_s):
                result = store.append(records, unique_tel, quarantine, info, dry_run=strict)
                if strict and (quarantine.height or result.conflicts.height):
                    result.records = result.telemetry = 0  # refused whole: nothing stored
                elif strict:
                    result = store.append(records, unique_tel, quarantine, info)
        except OSError as err:
            # disk full, read-only: the manifest is the commit point, so nothing half-committed
            where = err.filename or store.root
            raise LedgerError(
                f"{where}: {err.strerror or err}; nothing was committed (the manifest is unchanged)"
            ) from None
    report.accepted_records = result.records
    report.accepted_telemetry = result.telemetry
    report.duplicates += result.duplicates
    report.quarantine = pl.concat([quarantine, result.conflicts])
    report.committed = result.committed
    report.generation = result.generation
    return report
