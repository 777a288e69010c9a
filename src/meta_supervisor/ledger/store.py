"""The embedded ledger: append-only Parquet segments plus an atomically replaced manifest.

Layout under the ledger directory (``META_SUPERVISOR_LEDGER``)::

    MANIFEST.json              the commit point: the segments that exist, and the batches
    .lock                      writers' exclusive flock (readers take no lock)
    records/<batch>-<YYYYMM>.parquet     records of one ingest batch matured in one month
    records/<batch>-<YYYYMM>.parquet.agents.json   its per-agent matured_at bounds
    telemetry/<batch>-<YYYYMM>.parquet   telemetry of one batch, by ``ts`` month
    quarantine/<batch>.parquet           rows refused by that batch (QUARANTINE_SCHEMA)

Why this shape (figures in ``docs/STORE.md``): polars reads and writes Parquet natively, the
columns the cycle needs come back at disk speed, and nothing runs as a server.

* **Commit**: a batch writes its segment files (fsync'd), then replaces ``MANIFEST.json``
  (temp file, fsync, rename). Files not named by the manifest do not exist for readers, so a
  kill at any instant leaves the previous snapshot or the new one, never half a batch.
  Leftover files of a killed ingest (one batch, numbered one past the manifest's generation)
  are moved to ``orphaned/`` by the next writer, never deleted: data the manifest does not
  name might be committed data (see :meth:`LedgerStore.check`).
* **A manifest that went backwards** (restored from a backup, edited): segment files of any
  other batch that it does not name are its evidence. Writers and cycles refuse such a store
  (:class:`LedgerError`, naming the files) and nothing is deleted.
* **Readers** read the manifest once and then only the files it names. Writers never delete or
  rewrite a named file, so a reader's snapshot stays valid while an ingest runs.
* **Writers** hold ``.lock`` (:class:`meta_supervisor.state.files.StateLock`), so two ingests never
  interleave; the kernel releases it if the holder dies.
* **Window reads**: each segment's manifest entry carries ``lo``/``hi``, the min/max of its
  time column (``matured_at`` for records, ``ts`` for telemetry; integer µs since the epoch,
  UTC). A read of ``(as_of − lookback, as_of]`` opens only the overlapping segments; rows are
  sorted by time inside a segment so polars' predicate pushdown also skips row groups.
* **Per-agent bounds** (records): the same min/max per agent, which a rebuild reads to find
  the agents with no record in its window (:meth:`LedgerStore.agents_after`,
  :meth:`LedgerStore.latest_before`). Format 2 keeps them beside the segment, in
  ``<segment>.agents.json`` (written and fsync'd with it, before the commit), not in the
  manifest: a cycle reads the manifest after every append, and format 1's inline bounds grew
  it by ~73 KB a batch at 1,000 agents (a live service appending hourly parsed 2 MB after a
  day, 50 MB after a month). Format 1 manifests are still read; the next batch committed
  moves their inline bounds beside their segments too. The manifest names each bounds file's
  SHA-256:
  a file that is missing, edited (not those bytes) or not a plain file is computed again from
  its segment's rows (the data decides, never an edited index).
* **Identity**: a record is its ``record_id`` (:mod:`meta_supervisor.ingest.records`), a telemetry
  run
  its ``(ts, agent, run_id, is_error)``, a quarantine entry its ``(source, line, field, reason)``.
  :meth:`LedgerStore.append` stores only what is new; a record whose ``record_id`` is already
  stored with other content (a re-run that changed its numbers) is refused into the quarantine,
  the stored one stays. A batch with nothing new writes nothing: the store stays byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import polars as pl

from meta_supervisor.errors import ProblemFound
from meta_supervisor.ingest.records import (
    QUARANTINE_SCHEMA,
    RECORD_SCHEMA,
    TELEMETRY_SCHEMA,
    content_key,
    empty_quarantine,
    empty_records,
)
from meta_supervisor.state.atomic import is_own_file, write_own_file
from meta_supervisor.state.files import LockBusy, StateLock, atomic_write_text, fsync_path
from meta_supervisor.units import epoch_us, instant

__all__ = [
    "MANIFEST",
    "AppendResult",
    "LedgerBusy",
    "LedgerError",
    "LedgerStore",
    "Manifest",
    "Segment",
]

MANIFEST = "MANIFEST.json"
FORMAT = 2
#: Manifest formats this version reads (1: every records segment's per-agent bounds inline).
READABLE = (1, 2)
#: The suffix of a records segment's per-agent bounds file (format 2).
BOUNDS_SUFFIX = ".agents.json"
KINDS = ("records", "telemetry", "quarantine")
_TIME_COLUMN = {"records": "matured_at", "telemetry": "ts"}
_SCHEMAS = {
    "records": RECORD_SCHEMA,
    "telemetry": TELEMETRY_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
}
ROW_GROUP = 65_536
_ORDER = ["matured_at", "ts", "record_id"]


class LedgerError(ProblemFound):
    """The ledger directory is unreadable (a manifest that is not one, a missing segment)."""


class LedgerBusy(LockBusy):
    """Another ingest holds the ledger's writer lock."""


@dataclass(frozen=True)
class Segment:
    """One immutable Parquet file named by the manifest. ``agents``: its per-agent
    ``[lo, hi]`` bounds held inline (format 1, and empty for telemetry and quarantine), or
    ``None`` when they are in its bounds file (:meth:`LedgerStore.agent_bounds`), whose bytes'
    SHA-256 is ``agents_sha256``."""

    path: str
    kind: str
    rows: int
    batch: str
    lo: int | None = None
    hi: int | None = None
    agents: dict[str, list[int]] | None = field(default_factory=dict)
    #: SHA-256 (hex) of the bounds file's bytes, when ``agents`` is ``None``
    agents_sha256: str | None = None

    def overlaps(self, start_us: int | None, end_us: int | None) -> bool:
        """Whether the segment may hold times in ``(start, end]``."""
        if self.lo is None or self.hi is None:
            return True
        if end_us is not None and self.lo > end_us:
            return False
        return start_us is None or self.hi > start_us


@dataclass(frozen=True)
class Manifest:
    """A consistent snapshot of the store: generation, segments and ingest batches."""

    generation: int = 0
    segments: tuple[Segment, ...] = ()
    batches: tuple[dict[str, Any], ...] = ()

    def of(self, kind: str) -> list[Segment]:
        """Segments of one kind, in commit order."""
        return [s for s in self.segments if s.kind == kind]

    def files(self) -> set[str]:
        """The files the manifest names (paths relative to the store): its segments and the
        bounds files of those whose per-agent bounds are not inline."""
        return {s.path for s in self.segments} | {
            s.path + BOUNDS_SUFFIX for s in self.segments if s.agents is None
        }

    def rows(self, kind: str) -> int:
        """Rows stored of one kind."""
        return sum(s.rows for s in self.of(kind))

    def to_json(self) -> str:
        """The manifest file's text (sorted keys: equal snapshots give equal bytes)."""
        body = {
            "format": FORMAT,
            "generation": self.generation,
            "segments": [asdict(s) for s in self.segments],
            "batches": list(self.batches),
        }
        # the standard library's encoder: a batch's source names may hold lone surrogates (a
        # file name that is not UTF-8), which it escapes and orjson refuses
        return json.dumps(body, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> Manifest:
        """Parse a manifest; raises :class:`LedgerError` naming ``where`` when it is not one."""
        try:
            try:  # orjson is several times faster; it refuses the escaped lone surrogates
                body = orjson.loads(text)  # that json.dumps writes (see to_json)
            except orjson.JSONDecodeError:
                body = json.loads(text)
            if not isinstance(body, dict) or body.get("format") not in READABLE:
                found = body.get("format") if isinstance(body, dict) else None
                raise ValueError(f"unknown format {found!r}")
            segments = tuple(Segment(**s) for s in body["segments"])
            for segment in segments:
                if segment.agents is None and (
                    body["format"] == 1
                    or segment.kind != "records"
                    or not isinstance(segment.agents_sha256, str)
                ):
                    raise ValueError(f"{segment.path}: no per-agent bounds")
            return cls(int(body["generation"]), segments, tuple(body["batches"]))
        except (ValueError, KeyError, TypeError) as err:
            raise LedgerError(f"{where}: not a ledger manifest: {err}") from None


@dataclass
class AppendResult:
    """What one :meth:`LedgerStore.append` stored and skipped."""

    records: int = 0
    telemetry: int = 0
    quarantined: int = 0
    duplicates: int = 0
    conflicts: pl.DataFrame = field(default_factory=empty_quarantine)
    committed: bool = False
    generation: int = 0


#: The last manifest parsed per store (file path -> its text and the parse).
_PARSED: dict[Path, tuple[str, Manifest]] = {}


class LedgerStore:
    """The ledger directory: snapshot reads for anyone, appends under the writer lock."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        """The commit point."""
        return self.root / MANIFEST

    @property
    def lock_path(self) -> Path:
        """Writers' exclusive lock."""
        return self.root / ".lock"

    def exists(self) -> bool:
        """Whether a manifest has been committed here."""
        return self.manifest_path.is_file()

    def manifest(self) -> Manifest:
        """The current snapshot (empty if nothing was ever committed).

        The file is read every time; its parse is kept while the text is the same (a
        process that runs cycles, the service, re-reads an unchanged index of thousands of
        segments each hour; a :class:`Manifest` is immutable)."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Manifest()
        key = self.manifest_path.resolve()
        kept = _PARSED.get(key)
        if kept is not None and kept[0] == text:
            return kept[1]
        manifest = Manifest.from_json(text, self.manifest_path)
        _PARSED[key] = (text, manifest)
        return manifest

    # ---- reading -------------------------------------------------------------------------

    def scan(
        self,
        kind: str,
        start: datetime | None = None,
        end: datetime | None = None,
        manifest: Manifest | None = None,
    ) -> pl.LazyFrame:
        """Lazy rows of ``kind`` from the segments that may hold times in ``(start, end]``.

        Only segment pruning is done here; callers filter rows (polars pushes the filter into
        the Parquet reader, which skips row groups by their statistics).
        """
        manifest = manifest or self.manifest()
        start_us = None if start is None else epoch_us(start)
        end_us = None if end is None else epoch_us(end)
        segments = [s for s in manifest.of(kind) if s.overlaps(start_us, end_us)]
        return self._scan_segments(kind, segments)

    def _scan_segments(self, kind: str, segments: list[Segment]) -> pl.LazyFrame:
        schema = _SCHEMAS[kind]
        if not segments:
            return pl.LazyFrame(schema=schema)
        files = [self.root / s.path for s in segments]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise LedgerError(
                f"{self.root}: segment named by the manifest is missing: {missing[0]}"
            )
        return pl.scan_parquet(files, schema=schema, hive_partitioning=False)

    def records(
        self,
        as_of: datetime | None = None,
        lookback_hours: float | None = None,
        manifest: Manifest | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Records matured in ``(as_of − lookback, as_of]`` (all history when not given); only
        ``columns`` when given (they must include ``agent``; the cadence index reads six).

        With a lookback, each agent that has visible records but none in the window also gets
        its latest visible record (matured before the window), so a stale agent still
        appears in the cycle's universe (and is gated for having no recent records) exactly as
        when the whole history is read.
        """
        manifest = manifest or self.manifest()

        def pick(frame: pl.LazyFrame) -> pl.LazyFrame:
            return frame if columns is None else frame.select(columns)

        if as_of is None:
            return pick(self.scan("records", manifest=manifest)).collect()
        if lookback_hours is None:
            lazy = self.scan("records", None, as_of, manifest)
            return pick(lazy.filter(pl.col("matured_at") <= instant(as_of))).collect()
        start = as_of - timedelta(hours=lookback_hours)
        window = pick(
            self.scan("records", start, as_of, manifest).filter(
                (pl.col("matured_at") > instant(start)) & (pl.col("matured_at") <= instant(as_of))
            )
        ).collect()
        stale = self.latest_before(start, set(window["agent"].unique()), manifest)
        if columns is not None:
            stale = stale.select(columns)
        return pl.concat([window, stale]) if stale.height else window

    def agents_after(self, start: datetime, as_of: datetime, manifest: Manifest) -> set[str]:
        """Agents with a record matured in ``(start, as_of]``.

        From the manifest's per-agent bounds for the segments that hold nothing matured after
        ``as_of`` (the live case: every segment; an agent's ``hi`` is then a record inside the
        interval or not); the others that may hold a time in the interval (a cycle at an
        earlier ``as_of`` than the store's last append) are scanned, those segments alone.
        """
        start_us, as_of_us = epoch_us(start), epoch_us(as_of)
        seen: set[str] = set()
        unsure: list[Segment] = []
        for segment in manifest.of("records"):
            if not segment.overlaps(start_us, as_of_us):
                continue
            if segment.hi is None or segment.hi > as_of_us:
                unsure.append(segment)
                continue
            seen.update(a for a, (_, hi) in self.agent_bounds(segment).items() if hi > start_us)
        if unsure:
            inside = (pl.col("matured_at") > instant(start)) & (
                pl.col("matured_at") <= instant(as_of)
            )
            names = self._scan_segments("records", unsure).filter(inside).select("agent")
            seen.update(names.unique().collect()["agent"].to_list())
        return seen

    def latest_before(
        self, start: datetime, seen: set[str], manifest: Manifest | None = None
    ) -> pl.DataFrame:
        """The latest record matured at or before ``start`` of each agent not in ``seen``.

        These keep an agent whose records all left the window in the cycle's universe (it is
        gated for having no recent records, not silently dropped).
        """
        manifest = manifest or self.manifest()
        start_us = epoch_us(start)
        best: dict[str, tuple[int, Segment]] = {}
        straddling: dict[str, Segment] = {}
        bounds = {s.path: self.agent_bounds(s) for s in manifest.of("records")}
        for segment in manifest.of("records"):
            for agent, (lo, hi) in bounds[segment.path].items():
                if agent in seen or lo > start_us:
                    continue
                if hi > start_us:
                    straddling[segment.path] = segment
                elif agent not in best or hi > best[agent][0]:
                    best[agent] = (hi, segment)
        stale = set(best) | {a for path in straddling for a in bounds[path] if a not in seen}
        if not stale:
            return empty_records()
        segments = {s.path: s for _, s in best.values()} | straddling
        return (
            self._scan_segments("records", list(segments.values()))
            .filter(pl.col("agent").is_in(sorted(stale)) & (pl.col("matured_at") <= instant(start)))
            .sort(_ORDER)
            .group_by("agent", maintain_order=True)
            .last()
            .select(list(RECORD_SCHEMA))
            .collect()
        )

    def agent_bounds(self, segment: Segment) -> dict[str, list[int]]:
        """A records segment's ``{agent: [lo, hi]}`` (µs of ``matured_at``): inline (format
        1), else from its bounds file when its bytes are those the manifest's SHA-256 names,
        else (a file missing, edited, not a plain file, or not bounds) computed from the
        segment's rows: the data decides, never an edited index."""
        if segment.agents is not None:
            return segment.agents
        bounds = _read_bounds(self.root / (segment.path + BOUNDS_SUFFIX), segment)
        if bounds is not None:
            return bounds
        return _agent_bounds(self._scan_segments("records", [segment]).collect())

    def telemetry(
        self,
        as_of: datetime | None = None,
        lookback_hours: float | None = None,
        manifest: Manifest | None = None,
        columns: list[str] | None = None,
    ) -> pl.DataFrame:
        """Telemetry runs with ``ts`` in ``(as_of − lookback, as_of]`` (all when not given);
        only ``columns`` when given (a cycle reads ``ts``, ``agent`` and ``is_error``)."""
        manifest = manifest or self.manifest()
        if as_of is None:
            lazy = self.scan("telemetry", manifest=manifest)
        else:
            start = None if lookback_hours is None else as_of - timedelta(hours=lookback_hours)
            cond = pl.col("ts") <= instant(as_of)
            if start is not None:
                cond = cond & (pl.col("ts") > instant(start))
            lazy = self.scan("telemetry", start, as_of, manifest).filter(cond)
        return (lazy if columns is None else lazy.select(columns)).collect()

    def quarantine(self, manifest: Manifest | None = None) -> pl.DataFrame:
        """Every refused row ever ingested, in commit order."""
        return self.scan("quarantine", manifest=manifest or self.manifest()).collect()

    # ---- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer(self, timeout_s: float = 0.0) -> Iterator[LedgerStore]:
        """Hold the writer lock; clean what killed writers left behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            lock = StateLock(self.lock_path, timeout_s).__enter__()
        except LockBusy as err:
            holder = str(err).split("(pid ")[-1].split(")")[0]
            raise LedgerBusy(
                f"{self.root}: another ingest is writing (pid {holder}); retry or use --wait"
            ) from None
        try:
            self.clean_orphans()
            yield self
        finally:
            lock.__exit__(None, None, None)

    def _bounds_beside(self, segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
        """``segments`` with the inline bounds of format 1's records segments moved to bounds
        files (written and fsync'd here, before the commit that names them): the first batch
        committed after an upgrade shrinks the manifest to format 2's size. A kill before the
        commit leaves bounds files of segments the manifest still holds inline: harmless (not
        read, not taken for a backwards manifest while each is a plain file of its own) and
        written again by the next commit. A path that cannot be written as a file of its own
        (:func:`_write_bounds`) keeps that segment's bounds inline."""
        out = []
        for segment in segments:
            digest = None
            if segment.kind == "records" and segment.agents is not None:
                digest = _write_bounds(self.root / (segment.path + BOUNDS_SUFFIX), segment.agents)
            if digest is not None:
                out.append(replace(segment, agents=None, agents_sha256=digest))
            else:  # not a records segment, beside already, or its file cannot be written
                out.append(segment)
        return tuple(out)

    def _unnamed(self, manifest: Manifest) -> list[Path]:
        """Segment files the manifest does not name (the bounds file of a records segment it
        holds inline is not one: a commit moving them beside their segments was killed)."""
        named = {self.root / path for path in manifest.files()} | {
            path
            for s in manifest.of("records")
            if s.agents is not None and is_own_file(path := self.root / (s.path + BOUNDS_SUFFIX))
        }
        found: list[Path] = []
        for kind in KINDS:
            folder = self.root / kind
            if folder.is_dir():
                found.extend(p for p in sorted(folder.iterdir()) if p not in named)
        return found

    def check(self, manifest: Manifest | None = None) -> list[Path]:
        """Refuse a manifest that went backwards; return the leftovers of a killed ingest.

        A killed ingest leaves files of one batch, numbered ``generation + 1`` (batch names
        start with the generation they commit). Unnamed files of any other batch were written by
        a batch that committed: the manifest was restored from a backup or edited, and the
        store would silently lose them. Raises :class:`LedgerError` naming them.
        """
        manifest = manifest or self.manifest()
        unnamed = self._unnamed(manifest)
        killed = f"{manifest.generation + 1:08d}-"
        batches = {p.name.split(".")[0][:17] for p in unnamed}
        if unnamed and (len(batches) > 1 or not next(iter(batches)).startswith(killed)):
            shown = ", ".join(str(p.relative_to(self.root)) for p in unnamed[:3])
            more = f" and {len(unnamed) - 3} more" if len(unnamed) > 3 else ""
            raise LedgerError(
                f"{self.manifest_path}: generation {manifest.generation}, but segment files of "
                f"batches it does not name exist ({shown}{more}): the manifest went backwards "
                "(restored from a backup?) or was edited. Nothing was read or deleted; restore "
                "the manifest that names them"
            )
        return unnamed

    def clean_orphans(self) -> list[Path]:
        """Move a killed ingest's segment files to ``orphaned/`` and delete temp manifests
        (call under the lock). Refuses a manifest that went backwards (:meth:`check`)."""
        moved = []
        for path in self.check():
            target = self.root / "orphaned" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(path)
        for path in self.root.glob(f".{MANIFEST}.*.tmp"):
            path.unlink(missing_ok=True)
            moved.append(path)
        return moved

    def append(
        self,
        records: pl.DataFrame,
        telemetry: pl.DataFrame,
        quarantine: pl.DataFrame,
        info: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> AppendResult:
        """Store what is new in one batch and commit it; call inside :meth:`writer`.

        With ``dry_run`` the counts are those a commit would store, and nothing is written.

        ``records`` must already be unique by ``record_id`` (see
        :func:`meta_supervisor.ingest.batch.dedupe`). Returns counts; ``conflicts`` lists records
        refused because their ``record_id`` is stored with other content (they are also
        written to the quarantine).
        """
        manifest = self.manifest()
        result = AppendResult(generation=manifest.generation)
        records, duplicates, conflicts = self._new_records(records, manifest)
        telemetry, tel_duplicates = self._new_telemetry(telemetry, manifest)
        quarantine = self._new_quarantine(pl.concat([quarantine, conflicts]), manifest)
        result.duplicates = duplicates + tel_duplicates
        result.conflicts = conflicts
        if dry_run:
            result.records, result.telemetry = records.height, telemetry.height
            result.quarantined = quarantine.height
            return result
        if records.height + telemetry.height + quarantine.height == 0:
            return result
        batch = f"{manifest.generation + 1:08d}-{uuid.uuid4().hex[:8]}"
        segments = [
            *self._write_partitions("records", records, batch),
            *self._write_partitions("telemetry", telemetry, batch),
        ]
        if quarantine.height:
            segments.append(
                self._write_segment("quarantine", quarantine, f"{batch}.parquet", batch)
            )
        # earlier segments' inline bounds moved beside them (before the directories' fsync)
        earlier = self._bounds_beside(manifest.segments)
        for kind in KINDS:
            if (self.root / kind).is_dir():
                with contextlib.suppress(OSError):  # best effort: not every FS allows it
                    fsync_path(self.root / kind)
        entry = {
            "batch": batch,
            "records": records.height,
            "telemetry": telemetry.height,
            "quarantined": quarantine.height,
            "duplicates": result.duplicates,
            **(info or {}),
        }
        new = Manifest(
            manifest.generation + 1,
            earlier + tuple(segments),
            (*manifest.batches, entry),
        )
        atomic_write_text(self.manifest_path, new.to_json())
        result.records, result.telemetry = records.height, telemetry.height
        result.quarantined, result.committed = quarantine.height, True
        result.generation = new.generation
        return result

    def _new_records(
        self, records: pl.DataFrame, manifest: Manifest
    ) -> tuple[pl.DataFrame, int, pl.DataFrame]:
        if records.height == 0 or not manifest.of("records"):
            return records, 0, empty_quarantine()
        # A run-keyed record may collide with one of any date, so every segment's ids are
        # checked; only the id column is read and the filter keeps just the matches.
        ids = records["record_id"]
        stored = (
            self.scan("records", manifest=manifest)
            .filter(pl.col("record_id").is_in(ids.implode()))
            .select("record_id", content_key().alias("_stored_key"))
            .unique("record_id")
            .collect()
        )
        if stored.height == 0:
            return records, 0, empty_quarantine()
        marked = records.with_columns(content_key().alias("_key")).join(
            stored, on="record_id", how="left"
        )
        known = pl.col("_stored_key").is_not_null()
        conflict = known & (pl.col("_stored_key") != pl.col("_key"))
        duplicates = marked.filter(known & ~conflict).height
        refused = marked.filter(conflict).select(
            pl.lit("<ledger>").alias("source"),
            pl.lit(None, dtype=pl.Int64).alias("line"),
            pl.lit("record_id").alias("field"),
            (
                pl.lit("conflicting duplicate: ")
                + pl.col("record_id")
                + pl.lit(" is already in the ledger with other content; kept the stored one")
            ).alias("reason"),
            pl.col("_key").str.slice(0, 500).alias("raw"),
        )
        return marked.filter(~known).select(list(RECORD_SCHEMA)), duplicates, refused

    def _new_telemetry(
        self, telemetry: pl.DataFrame, manifest: Manifest
    ) -> tuple[pl.DataFrame, int]:
        if telemetry.height == 0 or not manifest.of("telemetry"):
            return telemetry, 0
        lo = cast(datetime, telemetry["ts"].min())
        hi = cast(datetime, telemetry["ts"].max())
        stored = (
            self.scan("telemetry", lo - timedelta(microseconds=1), hi, manifest)
            .filter(pl.col("ts").is_between(lo, hi))
            .collect()
        )
        fresh = telemetry.join(
            stored, on=list(TELEMETRY_SCHEMA), how="anti", nulls_equal=True, maintain_order="left"
        )
        return fresh, telemetry.height - fresh.height

    def _new_quarantine(self, quarantine: pl.DataFrame, manifest: Manifest) -> pl.DataFrame:
        key = ["source", "line", "field", "reason"]
        quarantine = quarantine.unique(key, keep="first", maintain_order=True)
        if quarantine.height == 0 or not manifest.of("quarantine"):
            return quarantine
        stored = self.quarantine(manifest).select(key)
        return quarantine.join(stored, on=key, how="anti", nulls_equal=True, maintain_order="left")

    def _write_partitions(self, kind: str, frame: pl.DataFrame, batch: str) -> list[Segment]:
        if frame.height == 0:
            return []
        time_col = _TIME_COLUMN[kind]
        order = _ORDER if kind == "records" else ["ts", "agent", "run_id"]
        keyed = frame.sort(order).with_columns(pl.col(time_col).dt.strftime("%Y%m").alias("_part"))
        segments = []
        for (part,), piece in keyed.partition_by(
            "_part", as_dict=True, maintain_order=True
        ).items():
            segments.append(
                self._write_segment(kind, piece.drop("_part"), f"{batch}-{part}.parquet", batch)
            )
        return segments

    def _write_segment(self, kind: str, frame: pl.DataFrame, name: str, batch: str) -> Segment:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        frame.write_parquet(path, row_group_size=ROW_GROUP, statistics=True)
        fsync_path(path)
        segment = Segment(path=f"{kind}/{name}", kind=kind, rows=frame.height, batch=batch)
        if kind == "quarantine":
            return segment
        time_col = _TIME_COLUMN[kind]
        micros = pl.col(time_col).dt.epoch("us")
        bounds = frame.select(micros.min().alias("lo"), micros.max().alias("hi")).row(0)
        agents: dict[str, list[int]] | None = {}
        digest = None
        if kind == "records":  # beside the segment, not in the manifest (module docstring)
            agents = _agent_bounds(frame)
            digest = _write_bounds(path.with_name(path.name + BOUNDS_SUFFIX), agents)
            if digest is not None:  # else inline, as format 1
                agents = None
        return Segment(
            path=segment.path,
            kind=kind,
            rows=frame.height,
            batch=batch,
            lo=bounds[0],
            hi=bounds[1],
            agents=agents,
            agents_sha256=digest,
        )


def _write_bounds(path: Path, bounds: dict[str, list[int]]) -> str | None:
    """Write ``bounds`` to ``path`` (fsync'd, :func:`~meta_supervisor.state.atomic.write_own_file`:
    never through a link into another segment's file or one outside the store); return the
    SHA-256 of the bytes written, or ``None`` when it cannot be written so (the caller keeps
    the bounds inline)."""
    data = orjson.dumps(bounds)
    try:
        write_own_file(path, data, sync=True)
    except OSError:  # NotOwnFile included
        return None
    return hashlib.sha256(data).hexdigest()


def _agent_bounds(records: pl.DataFrame) -> dict[str, list[int]]:
    """``{agent: [lo, hi]}``: the min and max ``matured_at`` (µs) of each agent's rows."""
    micros = pl.col("matured_at").dt.epoch("us")
    per_agent = records.group_by("agent").agg(micros.min().alias("lo"), micros.max().alias("hi"))
    return {a: [lo, hi] for a, lo, hi in per_agent.sort("agent").iter_rows()}


#: A bounds file's largest plausible size per row of its segment (an agent name is at most
#: 64 characters, its two bounds 17 digits each), plus room for an empty map.
_BOUNDS_BYTES_PER_ROW = 128


def _read_bounds(path: Path, segment: Segment) -> dict[str, list[int]] | None:
    """The bounds file at ``path`` when it is a plain file of plausible size whose bytes have
    the SHA-256 the manifest names and which holds bounds of ``segment`` (:func:`_bounds_like`);
    ``None`` otherwise (the caller computes them from the segment). Not followed: a symbolic
    link; not opened: a FIFO or a device (it could block or never end)."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > 1024 + _BOUNDS_BYTES_PER_ROW * segment.rows:
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != segment.agents_sha256:
            return None
        bounds = orjson.loads(data)
    except (OSError, orjson.JSONDecodeError):
        return None
    return cast(dict[str, list[int]], bounds) if _bounds_like(bounds, segment) else None


def _bounds_like(value: Any, segment: Segment) -> bool:
    """Whether ``value`` is a ``{agent: [lo, hi]}`` map of integers with ``lo <= hi`` whose
    least ``lo`` and greatest ``hi`` are the segment's own (its manifest entry's)."""
    if not isinstance(value, dict) or len(value) == 0:
        return False
    pairs = list(value.values())
    if not all(
        isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)
        for pair in pairs
    ):
        return False
    return all(lo <= hi for lo, hi in pairs) and (
        min(lo for lo, _ in pairs) == segment.lo and max(hi for _, hi in pairs) == segment.hi
    )
