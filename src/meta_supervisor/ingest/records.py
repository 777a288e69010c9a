"""The ledger's schema and the vectorised validation that turns raw rows into it.

Reconciled records (one row = one signal outcome at one horizon), after normalisation:

============== ================ =====================================================
column         type             meaning
============== ================ =====================================================
record_id      str              identity: ``run:<run_id>:<horizon>`` when run_id is set,
                                otherwise ``c:<ts>|<agent>|<symbol>|<direction>|<horizon>|
                                <realized>|<expected>`` (a content key)
ts             datetime UTC µs  signal time
matured_at     datetime UTC µs  ``ts + horizon_hours``: when the outcome became known
agent          str              signal producer
strategy       str              the record's ``strategy_class`` ("unclassified" if absent)
horizon_hours  i64              1, 4, 24, ...
realized_pnl_bps f64            realised PnL (bps)
expected_pnl_bps f64            simulator's expected PnL (bps)
expected_sigma_bps f64 | null   simulator's stated sigma (bps)
gap_bps        f64              ``realized − expected`` (negative = under-delivered)
============== ================ =====================================================

Telemetry (both schemas of the original system): ``ts, agent, run_id, is_error``. The encodings
of an error, and nothing else, are accepted (anything else is refused into the quarantine, so
that a healthy run is never counted as an error, nor an error as a healthy run):

============ =========================================== ======================================
field        no error                                    error
============ =========================================== ======================================
``error``    absent, ``null``, ``""``, ``false``, ``0``  ``true``, ``1``, any other text (the
             (also the text ``"null"``, ``"none"``,      error message); a list, an object or
             ``"false"``, ``"0"``, any case)             another number is refused
``errors``   absent, ``null``, ``0``                     a whole number ``> 0``; a negative,
                                                         fractional or non-numeric count is
                                                         refused
============ =========================================== ======================================

A run has an error when either field says so.

Timestamps must carry a zone ("Z", "+00:00", any offset; converted to UTC). A timestamp with
no zone is refused: guessing UTC for a local clock would shift every window. So is one outside
1970-01-01 to 2200-01-01, and a horizon beyond ten years
(:data:`meta_supervisor.units.LATEST_INSTANT`, :data:`~meta_supervisor.units.MAX_HORIZON_HOURS`):
a record dated year 9999 would otherwise overflow every later cycle's arithmetic.

Agent and strategy names must match :data:`NAME_PATTERN` (names are data, never markup: a
name that could open a rich tag, an HTML element or a Markdown cell, or look like another, is
refused).

Every refused row becomes a quarantine entry ``(source, line, field, reason, raw)``; nothing is
dropped silently. Validation is vectorised (polars expressions), no per-row Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from meta_supervisor.units import EARLIEST_INSTANT, LATEST_INSTANT, MAX_HORIZON_HOURS, UTC_US

__all__ = [
    "NAME_PATTERN",
    "QUARANTINE_SCHEMA",
    "RECORD_SCHEMA",
    "TELEMETRY_SCHEMA",
    "Batch",
    "content_key",
    "dedupe_records",
    "empty_quarantine",
    "empty_records",
    "empty_telemetry",
    "normalize_records",
    "normalize_telemetry",
    "parse_utc",
]


RECORD_SCHEMA: dict[str, pl.DataType] = {
    "record_id": pl.String(),
    "ts": UTC_US,
    "matured_at": UTC_US,
    "agent": pl.String(),
    "strategy": pl.String(),
    "horizon_hours": pl.Int64(),
    "realized_pnl_bps": pl.Float64(),
    "expected_pnl_bps": pl.Float64(),
    "expected_sigma_bps": pl.Float64(),
    "gap_bps": pl.Float64(),
    "run_id": pl.String(),
    "symbol": pl.String(),
    "direction": pl.String(),
    "regime": pl.String(),
}

TELEMETRY_SCHEMA: dict[str, pl.DataType] = {
    "ts": UTC_US,
    "agent": pl.String(),
    "run_id": pl.String(),
    "is_error": pl.Boolean(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "line": pl.Int64(),
    "field": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}

#: Agent and strategy names: 1 to 64 characters, ASCII letters and digits first, then also
#: ``_ - . : @ + /``. Names are data, never markup: no brackets (rich markup), no ``<``/``>``
#: (HTML), no ``|`` (Markdown tables, identity keys), no spaces, controls or look-alike
#: Unicode (two names that look the same). A row with another name is refused.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,63}$"

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"
_ZONELESS = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"


def empty_records() -> pl.DataFrame:
    """An empty frame with the record schema."""
    return pl.DataFrame(schema=RECORD_SCHEMA)


def empty_telemetry() -> pl.DataFrame:
    """An empty frame with the telemetry schema."""
    return pl.DataFrame(schema=TELEMETRY_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    """An empty quarantine frame."""
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


@dataclass
class Batch:
    """The result of validating one source: accepted rows, refused rows, and counts."""

    records: pl.DataFrame
    quarantine: pl.DataFrame = field(default_factory=empty_quarantine)
    read: int = 0
    duplicates: int = 0


def parse_utc(col: pl.Expr) -> pl.Expr:
    """Parse ISO-8601 strings with a zone ("Z", "+00:00", "+02:00") to UTC µs; else null."""
    text = col.cast(pl.String).str.strip_chars().str.replace(r"Z$", "+00:00").str.replace(" ", "T")
    return text.str.to_datetime(format=_TS_FORMAT, strict=False, time_zone="UTC", time_unit="us")


def _as_float(name: str, raw: pl.DataFrame) -> pl.Expr:
    if name not in raw.columns:
        return pl.lit(None, dtype=pl.Float64)
    return pl.col(name).cast(pl.Float64, strict=False)


def _as_text(name: str, raw: pl.DataFrame) -> pl.Expr:
    if name not in raw.columns:
        return pl.lit(None, dtype=pl.String)
    return pl.col(name).cast(pl.String, strict=False)


def _present(name: str, raw: pl.DataFrame) -> pl.Expr:
    if name not in raw.columns:
        return pl.lit(False)
    return pl.col(name).is_not_null()


def _raw_text(raw: pl.DataFrame) -> pl.Expr:
    if "_raw" in raw.columns:
        return pl.col("_raw").cast(pl.String).str.slice(0, 500)
    cols = [c for c in raw.columns if not c.startswith("_")]
    if not cols:
        return pl.lit("")
    return pl.concat_str(
        [pl.lit(c + "=") + pl.col(c).cast(pl.String).fill_null("null") for c in cols],
        separator=", ",
    ).str.slice(0, 500)


def _first_failure(checks: list[tuple[str, pl.Expr, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
    """Fold ``(field, failed, reason)`` checks into the first failing field and its reason."""
    field_expr: pl.Expr = pl.lit(None, dtype=pl.String)
    reason_expr: pl.Expr = pl.lit(None, dtype=pl.String)
    for name, failed, reason in reversed(checks):
        field_expr = pl.when(failed).then(pl.lit(name)).otherwise(field_expr)
        reason_expr = pl.when(failed).then(reason).otherwise(reason_expr)
    return field_expr, reason_expr


def _number_checks(name: str, raw: pl.DataFrame, *, required: bool) -> list:
    value = _as_float(name, raw)
    present = _present(name, raw)
    checks = []
    if required:
        checks.append((name, ~present, pl.lit(f"missing required field '{name}'")))
    text = _as_text(name, raw)
    checks.append(
        (
            name,
            present & value.is_null(),
            pl.lit(f"'{name}' is not a number: ") + text.str.slice(0, 40),
        )
    )
    checks.append(
        (
            name,
            present & value.is_not_null() & ~value.is_finite(),
            pl.lit(f"'{name}' is not finite: ") + text,
        )
    )
    return checks


def _timestamp_checks(name: str, raw: pl.DataFrame) -> list:
    present = _present(name, raw)
    text = _as_text(name, raw)
    parsed = parse_utc(pl.col(name)) if name in raw.columns else pl.lit(None, dtype=UTC_US)
    zoneless = text.str.strip_chars().str.contains(_ZONELESS)
    return [
        (name, ~present, pl.lit(f"missing required field '{name}'")),
        (
            name,
            present & parsed.is_null() & zoneless,
            pl.lit(f"'{name}' has no time zone (expected 'Z' or '+00:00'): ") + text,
        ),
        (
            name,
            present & parsed.is_null(),
            pl.lit(f"'{name}' is not an ISO-8601 timestamp: ") + text.str.slice(0, 40),
        ),
        (
            name,
            (parsed < EARLIEST_INSTANT) | (parsed >= LATEST_INSTANT),
            pl.lit(
                f"'{name}' is outside {EARLIEST_INSTANT.year}-01-01 to "
                f"{LATEST_INSTANT.year}-01-01 (UTC): "
            )
            + text.str.slice(0, 40),
        ),
    ]


def _strategy_text(raw: pl.DataFrame) -> pl.Expr:
    """The record's strategy: ``strategy_class``, else ``strategy`` (readers may hand both
    columns, null when absent; the original field wins)."""
    return pl.coalesce(
        _as_text("strategy_class", raw).str.strip_chars().replace("", None),
        _as_text("strategy", raw).str.strip_chars(),
    )


def _name_checks(name: str, text: pl.Expr) -> list:
    """A name (agent, strategy) that is present must match :data:`NAME_PATTERN`."""
    bad = (text.fill_null("") != "") & ~text.fill_null("").str.contains(NAME_PATTERN)
    reason = pl.lit(
        f"'{name}' is not a valid name (1 to 64 ASCII letters, digits and _-.:@+/, "
        "starting with a letter or digit): "
    ) + text.str.slice(0, 40).map_elements(ascii, return_dtype=pl.String)
    return [(name, bad, reason)]


def _quarantine(
    raw: pl.DataFrame, bad: pl.Expr, field_expr: pl.Expr, reason: pl.Expr, source: str
) -> pl.DataFrame:
    line = pl.col("_line") if "_line" in raw.columns else pl.int_range(1, pl.len() + 1)
    # Filter first: reasons are strings, built only for the refused rows (a large cost
    # on millions of rows otherwise).
    return (
        raw.lazy()
        .with_columns(line.cast(pl.Int64).alias("_line"))
        .filter(bad)
        .select(
            pl.lit(source).alias("source"),
            pl.col("_line").alias("line"),
            field_expr.alias("field"),
            reason.alias("reason"),
            _raw_text(raw).alias("raw"),
        )
        .collect()
    )


def normalize_records(raw: pl.DataFrame, source: str = "<frame>") -> Batch:
    """Validate and normalise raw reconciled records (any column types) into the schema.

    Rows missing or mangling a required field (``ts, agent, horizon_hours,
    realized_pnl_bps, expected_pnl_bps``) are refused with a reason naming the field.
    ``expected_sigma_bps`` that is not a finite non-negative number is treated as absent.
    Duplicates are *not* removed here (see :func:`dedupe_records`).

    ``raw`` may carry ``_line`` (1-based line or row number in ``source``) and ``_raw`` (the
    original text) to make quarantine entries point at the input.
    """
    n = raw.height
    if n == 0:
        return Batch(empty_records(), empty_quarantine(), read=0)
    agent = _as_text("agent", raw).str.strip_chars()
    horizon = _as_float("horizon_hours", raw)
    checks = [
        *_timestamp_checks("ts", raw),
        ("agent", ~_present("agent", raw), pl.lit("missing required field 'agent'")),
        ("agent", agent.fill_null("") == "", pl.lit("'agent' is empty")),
        *_name_checks("agent", agent),
        *_name_checks("strategy_class", _strategy_text(raw)),
        *_number_checks("horizon_hours", raw, required=True),
        (
            "horizon_hours",
            horizon.is_finite()
            & ((horizon <= 0) | (horizon != horizon.round(0)) | (horizon > MAX_HORIZON_HOURS)),
            pl.lit(
                f"'horizon_hours' must be a whole number of hours from 1 to {MAX_HORIZON_HOURS}: "
            )
            + _as_text("horizon_hours", raw).str.slice(0, 40),
        ),
        *_number_checks("realized_pnl_bps", raw, required=True),
        *_number_checks("expected_pnl_bps", raw, required=True),
    ]
    field_expr, reason = _first_failure(checks)
    bad = field_expr.is_not_null()
    # Lazy so polars evaluates shared sub-expressions (timestamp parsing) once.
    raw = raw.lazy().with_columns(bad.alias("_bad")).collect()
    bad = pl.col("_bad")
    quarantine = _quarantine(raw, bad, field_expr, reason, source)

    sigma = _as_float("expected_sigma_bps", raw)
    strategy = _strategy_text(raw)
    run_id = _as_text("run_id", raw).str.strip_chars()
    good = (
        raw.lazy()
        .filter(~bad)
        .select(
            parse_utc(pl.col("ts")).alias("ts"),
            agent.alias("agent"),
            pl.when(strategy.fill_null("") == "")
            .then(pl.lit("unclassified"))
            .otherwise(strategy)
            .alias("strategy"),
            horizon.cast(pl.Int64).alias("horizon_hours"),
            _as_float("realized_pnl_bps", raw).alias("realized_pnl_bps"),
            _as_float("expected_pnl_bps", raw).alias("expected_pnl_bps"),
            pl.when(sigma.is_finite() & (sigma >= 0)).then(sigma).alias("expected_sigma_bps"),
            pl.when(run_id == "").then(None).otherwise(run_id).alias("run_id"),
            _as_text("symbol", raw).alias("symbol"),
            _as_text("direction", raw).str.to_uppercase().alias("direction"),
            _as_text("regime", raw).alias("regime"),
        )
    )
    good = good.with_columns(
        (pl.col("ts") + pl.duration(hours=pl.col("horizon_hours"))).alias("matured_at"),
        (pl.col("realized_pnl_bps") - pl.col("expected_pnl_bps")).alias("gap_bps"),
        _record_id().alias("record_id"),
    ).select(list(RECORD_SCHEMA))
    return Batch(good.cast(pl.Schema(RECORD_SCHEMA)).collect(), quarantine, read=n)


def _escaped(column: str) -> pl.Expr:
    """Free text made safe to join with ``|``: ``\\`` -> ``\\\\``, ``|`` -> ``\\|``, so no
    value can contain the separator and splitting a key gives back each field (injective)."""
    return (
        pl.col(column)
        .fill_null("")
        .str.replace_all("\\", "\\\\", literal=True)
        .str.replace_all("|", "\\|", literal=True)
    )


def content_key() -> pl.Expr:
    """The content key ``c:<ts>|<agent>|<symbol>|<direction>|<horizon>|<realized>|<expected>``.

    A record's identity when it has no ``run_id``; for a run-keyed record, two rows with the
    same ``record_id`` but different content keys are a conflicting duplicate.

    Injective: the free-text fields (agent, symbol, direction) are escaped (``\\`` and ``|``
    get a backslash), the others cannot hold ``|`` (a fixed timestamp format, an integer, two
    floats), so two records with different fields never share a key. An absent symbol or
    direction is the empty text. A key of text without ``|`` or ``\\`` is as before the
    escaping, so stores ingested earlier keep their identities.
    """
    return pl.concat_str(
        [
            pl.lit("c:"),
            pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"),
            _escaped("agent"),
            _escaped("symbol"),
            _escaped("direction"),
            pl.col("horizon_hours").cast(pl.String),
            pl.col("realized_pnl_bps").cast(pl.String),
            pl.col("expected_pnl_bps").cast(pl.String),
        ],
        separator="|",
    )


def _record_id() -> pl.Expr:
    content = content_key()
    by_run = pl.concat_str(
        [pl.lit("run:"), pl.col("run_id"), pl.lit(":"), pl.col("horizon_hours").cast(pl.String)]
    )
    return pl.when(pl.col("run_id").is_not_null()).then(by_run).otherwise(content)


def dedupe_records(records: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Keep the first row of each ``record_id``; return ``(unique rows, duplicates dropped)``."""
    unique = records.unique(subset="record_id", keep="first", maintain_order=True)
    return unique, records.height - unique.height


#: ``error`` values (stripped, lower case) that say "no error"; see the module docstring.
_NO_ERROR = ("", "null", "none", "false", "0")
_ERROR_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _error_text(raw: pl.DataFrame) -> pl.Expr:
    """``error`` as stripped lower-case text, ``""`` when absent or null."""
    return _as_text("error", raw).str.strip_chars().str.to_lowercase().fill_null("")


def _error_refused(text: pl.Expr) -> pl.Expr:
    """An ``error`` value that is no encoding: a list, an object, a number other than 0 or 1."""
    number = text.cast(pl.Float64, strict=False)
    structured = text.str.starts_with("[") | text.str.starts_with("{")
    other_number = text.str.contains(_ERROR_NUMBER) & ~number.is_in([0.0, 1.0])
    return structured | other_number


def normalize_telemetry(raw: pl.DataFrame, source: str = "<frame>") -> Batch:
    """Validate telemetry rows of either schema into ``ts, agent, run_id, is_error``.

    Schema A carries ``error`` (str | null), schema B ``errors`` (int); the encodings accepted
    are in the module docstring, anything else is refused naming the field. Nulls elsewhere
    (cost, tokens) are fine. Rows without a valid zoned ``ts`` or an ``agent`` are refused.
    """
    if raw.height == 0:
        return Batch(empty_telemetry(), empty_quarantine(), read=0)
    agent = _as_text("agent", raw).str.strip_chars()
    checks = [
        *_timestamp_checks("ts", raw),
        ("agent", agent.fill_null("") == "", pl.lit("missing or empty 'agent'")),
        *_name_checks("agent", agent),
    ]
    errors_num = _as_float("errors", raw)
    if "errors" in raw.columns:
        checks.append(
            (
                "errors",
                _present("errors", raw)
                & (
                    errors_num.is_null()
                    | ~errors_num.is_finite()
                    | (errors_num < 0)
                    | (errors_num != errors_num.round(0))
                ),
                pl.lit("'errors' is not a count (a whole number >= 0): ")
                + _as_text("errors", raw).str.slice(0, 40),
            )
        )
    error_text = _error_text(raw)
    if "error" in raw.columns:
        checks.append(
            (
                "error",
                _error_refused(error_text),
                pl.lit(
                    "'error' is not an error encoding (null, \"\", false or 0: none; true, 1 or "
                    "a message: error): "
                )
                + _as_text("error", raw).str.slice(0, 40),
            )
        )
    field_expr, reason = _first_failure(checks)
    bad = field_expr.is_not_null()
    # Lazy so polars evaluates shared sub-expressions (timestamp parsing) once.
    raw = raw.lazy().with_columns(bad.alias("_bad")).collect()
    bad = pl.col("_bad")
    quarantine = _quarantine(raw, bad, field_expr, reason, source)
    no_error = error_text.is_in(list(_NO_ERROR))
    good = (
        raw.lazy()
        .filter(~bad)
        .select(
            parse_utc(pl.col("ts")).alias("ts"),
            agent.alias("agent"),
            _as_text("run_id", raw).alias("run_id"),
            (~no_error | (errors_num.fill_null(0) > 0)).alias("is_error"),
        )
    )
    return Batch(good.cast(pl.Schema(TELEMETRY_SCHEMA)).collect(), quarantine, read=raw.height)
