"""Units and float tolerances: one home for each, so no module writes its own ``3.6e9``.

PnL is in bps of notional throughout; instants are UTC microseconds (``UTC_US``); weights are
fractions of capital.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

__all__ = [
    "CAPITAL_EPS",
    "EARLIEST_INSTANT",
    "EPOCH",
    "LATEST_INSTANT",
    "MAX_HORIZON_HOURS",
    "MULTIPLIER_EPS",
    "STEP_EPS",
    "US_PER_HOUR",
    "UTC_US",
    "column_us",
    "epoch_us",
    "from_epoch_us",
    "instant",
]

#: The ledger's instant type: microseconds, UTC.
UTC_US = pl.Datetime("us", "UTC")

#: The instant ``UTC_US`` counts from.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Microseconds per hour (a float: hours are fractional, and 3.6e9 is exact in binary).
US_PER_HOUR = 3.6e9

#: A change of capital (a fraction) smaller than this is float noise, not an effect worth a
#: word in an explanation (a billionth of the book).
CAPITAL_EPS = 1e-9

#: Two weights of the same step closer than this are equal (sums of a few float products).
STEP_EPS = 1e-12

#: A multiplier within this of one of its bounds is at the bound (``floor + (ceiling − floor)·x``
#: can land a last bit outside ``[floor, ceiling]``).
MULTIPLIER_EPS = 1e-9

#: The instants an input may name: a record's ``ts``, a telemetry event's ``ts``, a cycle's
#: ``as_of``, in ``[EARLIEST_INSTANT, LATEST_INSTANT)``. Outside, windows and maturities
#: (``as_of − lookback``, ``ts + horizon``) would leave the range of a datetime and crash
#: every later cycle; no trading record is from before 1970 or after 2200.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)

#: The longest horizon a record may carry: ten years (a policy horizon is at most 30 days).
MAX_HORIZON_HOURS = 24 * 366 * 10


def epoch_us(moment: datetime) -> int:
    """``moment`` (timezone-aware) as µs since :data:`EPOCH`, exactly (a datetime holds µs)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_epoch_us(micros: int) -> datetime:
    """The instant ``micros`` µs after :data:`EPOCH` (UTC): the inverse of :func:`epoch_us`."""
    return EPOCH + timedelta(microseconds=micros)


def instant(moment: datetime) -> pl.Expr:
    """A polars literal of ``moment`` (timezone-aware) as a ``UTC_US`` instant: what
    ``pl.lit(moment)`` gives, for a filter such as ``pl.col("ts") <= instant(as_of)``. Built
    from its µs count: polars 2.1 converts a timezone-aware datetime through its zone at
    ~0.27 ms a literal, and a cycle built a dozen."""
    return pl.lit(epoch_us(moment)).cast(UTC_US)


def column_us(series: pl.Series) -> np.ndarray:
    """A datetime column as µs since :data:`EPOCH` (int64; a zero-copy view of a µs column
    without nulls)."""
    if isinstance(series.dtype, pl.Datetime) and series.dtype.time_unit == "us":
        return series.to_physical().to_numpy().astype(np.int64, copy=False)
    return series.dt.epoch("us").to_numpy().astype(np.int64, copy=False)
