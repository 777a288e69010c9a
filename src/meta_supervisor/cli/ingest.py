"""``meta-supervisor ingest`` and ``meta-supervisor quarantine``: files into the ledger, and back.

Exit codes (as the rest of the CLI): 0 something usable was read (new or already stored rows,
even if other rows were refused, up to ``--max-refused``); 1 nothing usable was read (every
row refused, files empty), more rows refused than ``--max-refused`` allows (the usable rows
are committed all the same: the threshold is an alarm for cron, not a filter), or
``quarantine`` found no ledger store; 2 bad usage or a named input file that does not exist;
3 another ingest holds the ledger's writer lock.
"""

from __future__ import annotations

import re
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from meta_supervisor.cli.common import (
    INGEST_SCHEMA,
    QUARANTINE_SCHEMA,
    console,
    emit_json,
    err_console,
    fail,
)
from meta_supervisor.config import Paths
from meta_supervisor.errors import BadInput
from meta_supervisor.ingest.batch import IngestReport, reason_counts
from meta_supervisor.ingest.batch import ingest as run_ingest
from meta_supervisor.ledger.store import LedgerStore

__all__ = ["ingest", "quarantine"]

#: Inputs at least this large get a progress bar (on stderr).
PROGRESS_BYTES = 32 << 20


class Kind(StrEnum):
    """What a file holds."""

    auto = "auto"
    records = "records"
    telemetry = "telemetry"


LedgerDir = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        help="Ledger directory (default: META_SUPERVISOR_LEDGER or meta_supervisor/ledger).",
    ),
]
Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Base of the default layout: the ledger is ROOT/meta_supervisor/ledger "
        "(default: META_SUPERVISOR_ROOT, else the working directory).",
    ),
]
JsonOut = Annotated[
    bool, typer.Option("--json", metavar="", help="Print a JSON summary on stdout.")
]
MaxRefused = Annotated[
    str | None,
    typer.Option(
        "--max-refused",
        metavar="N|P%",
        help="Exit 1 when more rows than this are refused: a count (0: any refusal) or a share "
        "of the rows read (e.g. 5%). The usable rows are committed all the same.",
    ),
]


def refused_limit(text: str | None, read: int) -> int | None:
    """The largest number of refused rows ``--max-refused`` allows (None: no limit).

    ``N`` is a count; ``P%`` a share of the ``read`` rows (rounded down)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if match is None or (not match[2] and "." in match[1]):
        raise fail(f"--max-refused: {text!r} is neither a count (e.g. 0) nor a share (e.g. 5%)")
    value = float(match[1])
    if match[2]:
        if value > 100:
            raise fail(f"--max-refused: {text!r} is above 100%")
        return int(read * value / 100)
    return int(value)


def _ledger(path: Path | None, root: Path | None = None) -> Path:
    if path is not None:
        return path
    found = Paths.under(root).ledger if root is not None else Paths.from_env().ledger
    if found is None:
        raise BadInput("no ledger directory configured: pass --ledger DIR")
    return found


def _quarantine_command(ledger: Path | None, root: Path | None) -> str:
    """The ``quarantine`` command that lists this ingest's refused rows (same store)."""
    where = (
        f" --ledger {shlex.quote(str(ledger))}"
        if ledger is not None
        else f" --root {shlex.quote(str(root))}"
        if root is not None
        else ""
    )
    return escape(f"meta-supervisor quarantine{where}")


def _summary(report: IngestReport) -> Table:
    verb = "would store" if report.dry_run or report.failed else "stored"
    if report.failed:
        state = "failed: nothing written"
    elif report.dry_run:
        state = "dry run: nothing written"
    elif report.accepted:
        state = "committed"
    else:
        state = "nothing new"
    table = Table(title=f"ingest ({state})")
    for name in ("source", "kind", "read", "valid", "refused", "note"):
        table.add_column(name, justify="right" if name in {"read", "valid", "refused"} else "left")
    for s in report.sources:
        table.add_row(
            escape(s.path),
            s.kind or "?",
            str(s.read),
            str(s.valid),
            str(s.refused),
            escape(s.error or ""),
        )
    table.caption = (
        f"read {report.read} · {verb} {report.accepted} new "
        f"({report.accepted_records} records, {report.accepted_telemetry} telemetry) · "
        f"{report.duplicates} duplicates · {report.refused} refused"
    )
    return table


def _reasons(report: IngestReport) -> Table:
    table = Table(title="refused by reason")
    table.add_column("field: reason")
    table.add_column("rows", justify="right")
    for why, count in reason_counts(report.quarantine).items():
        table.add_row(escape(why), str(count))
    return table


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Files to read: .jsonl/.ndjson, .csv, .parquet.")
    ],
    kind: Annotated[
        Kind, typer.Option("--kind", help="records, telemetry, or auto (from the columns).")
    ] = Kind.auto,
    ledger: LedgerDir = None,
    root: Root = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Read, validate and count; write nothing.")
    ] = False,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for another ingest's lock.")
    ] = 0.0,
    max_refused: MaxRefused = None,
    json_out: JsonOut = False,
) -> None:
    """Read records or telemetry into the ledger: validated, de-duplicated, one atomic batch.

    Refused rows go to the quarantine with their file, line, field and reason
    ('meta-supervisor quarantine' lists them). Ingesting the same file twice changes nothing.

    Examples:

      meta-supervisor ingest alpha/reconciled.jsonl telemetry/events.jsonl

      meta-supervisor ingest history.parquet --dry-run

      meta-supervisor ingest alpha/reconciled.jsonl --max-refused 1% --json   # for cron
    """
    refused_limit(max_refused, 0)  # a bad threshold is bad usage, before anything is read
    missing = [p for p in paths if not p.is_file()]
    if missing:
        # Bad input (exit 2), before anything is read: a typo must not ingest half the batch.
        lines = [
            f"{p}: {'is a directory, not a file' if p.is_dir() else 'no such file'}"
            for p in missing
        ]
        raise fail("\n".join(lines))
    total = sum(p.stat().st_size for p in paths)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err_console, disable=total < PROGRESS_BYTES) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(path: str, done: int, size: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(escape(Path(path).name), total=size)
            bar.update(tasks[path], completed=done)

        report = run_ingest(
            paths,
            _ledger(ledger, root),
            kind=kind.value,
            dry_run=dry_run,
            progress=advance,
            lock_timeout_s=wait,
        )
    limit = refused_limit(max_refused, report.read)
    over = limit is not None and report.refused > limit
    if json_out:
        body = report.to_dict() | {"max_refused": limit, "over_max_refused": over}
        emit_json({"schema": INGEST_SCHEMA} | body)
    else:
        console.print(_summary(report))
        if report.refused:
            console.print(_reasons(report))
            console.print(f"List them with: {_quarantine_command(ledger, root)}")
    if report.failed:
        # bad input (exit 2): the batch is all or nothing, and these files could not be read
        raise fail(
            "\n".join(f"{s.path}: {s.error}" for s in report.failed)
            + "\nnothing was committed (the batch is all or nothing); fix or leave out these files"
        )
    if not report.usable:
        raise fail("nothing usable was read", 1)
    if over:
        raise fail(
            f"{report.refused} of {report.read} rows refused, more than --max-refused "
            f"{max_refused} allows ({limit}); the usable rows were committed; list the refused "
            "ones with 'meta-supervisor quarantine'",
            1,
        )


def quarantine(
    ledger: LedgerDir = None,
    root: Root = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only rows from files containing this text.")
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only rows whose field or reason contains this text."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many (0: all).")] = 50,
    json_out: JsonOut = False,
) -> None:
    """List the rows ingest refused: file, line, field, reason and the raw input.

    Examples:

      meta-supervisor quarantine --reason ts --limit 20

      meta-supervisor quarantine --source reconciled.jsonl --json
    """
    store = LedgerStore(_ledger(ledger, root))
    if not store.exists():
        raise fail(
            f"no ledger store at {store.root}: nothing was ingested there (run "
            "'meta-supervisor ingest FILE...', or pass --root/--ledger)",
            1,
        )
    rows = store.quarantine()
    if source:
        rows = rows.filter(pl.col("source").str.contains(source, literal=True))
    if reason:
        text = pl.col("field") + pl.lit(" ") + pl.col("reason")
        rows = rows.filter(text.str.to_lowercase().str.contains(reason.lower(), literal=True))
    total = rows.height
    shown = rows if limit <= 0 else rows.head(limit)
    if json_out:
        emit_json({"schema": QUARANTINE_SCHEMA, "total": total, "rows": shown.to_dicts()})
        return
    table = Table(title=f"quarantine: {total} refused rows in {store.root}")
    for name in ("source", "line", "field", "reason", "raw"):
        table.add_column(name, overflow="fold")
    for row in shown.iter_rows(named=True):
        table.add_row(
            escape(row["source"] or ""),
            "" if row["line"] is None else str(row["line"]),
            escape(row["field"] or ""),
            escape(row["reason"] or ""),
            escape((row["raw"] or "")[:120]),
        )
    console.print(table)
    if total > shown.height:
        console.print(f"... {total - shown.height} more (use --limit 0 or --json)")
