"""A real-price fleet: agents running plain trading rules on real daily stock prices.

The prices are skfolio's bundled S&P 500 sample (20 stocks, daily closes 1990-2022), shipped
inside its wheel, so nothing is fetched at run time. skfolio is heavy (it brings scipy,
scikit-learn, cvxpy, pandas; ~45 s and ~540 MB in a fresh venv), so it is the optional extra
``meta-supervisor[research]``; :func:`rule_fleet` itself takes any price frame, and the tests
build a small one.

Each agent is one rule on one stock, emitting one signal per trading day at the close, horizon
24 h (the next close):

* ``buy_and_hold``: always LONG;
* ``momentum``: LONG when the last 20-day return is positive, else SHORT;
* ``mean_reversion``: SHORT when the last 5-day return is positive, else LONG;
* ``ma_cross``: LONG when the 10-day moving average is above the 50-day one, else SHORT.

``realized_pnl_bps = direction · (P[k+1]/P[k] − 1) · 10⁴``. The simulator's forecast uses only
the past: ``expected_pnl_bps`` is the mean of the agent's own realised PnL over the previous
``fit_days`` records (all matured before the signal: record ``k−1`` matures exactly at signal
``k``), ``expected_sigma_bps`` their standard deviation; with fewer than 10 past records the
forecast is 0 with no stated sigma. The rules' parameters are fixed in advance, never fitted.

Trading days are laid on a calendar of consecutive days from ``start`` (day *k* = the *k*-th
trading day), so every record matures exactly when the next signal is emitted; the calendar
dates of the prices are kept in the ``regime`` column (``YYYY-MM-DD``) for reference.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from meta_supervisor.cycle.run import Ledger
from meta_supervisor.ingest.records import dedupe_records, normalize_records, normalize_telemetry
from meta_supervisor.research.calendar import session_closes
from meta_supervisor.research.simulate import START, FleetSpec, Scenario, SimulatedFleet

__all__ = [
    "PERIODS",
    "RULES",
    "SCENARIOS",
    "load_sp500_prices",
    "rule_directions",
    "rule_fleet",
    "sp500_calendar_fleet",
]

RULES = ("buy_and_hold", "momentum", "mean_reversion", "ma_cross")
DEFAULT_SYMBOLS = ("AAPL", "BAC", "CVX", "GE", "JNJ", "JPM", "KO", "MSFT")
_WARMUP = 50


def load_sp500_prices() -> pl.DataFrame:
    """skfolio's bundled S&P 500 closes as a frame ``date`` + one column per ticker.

    Raises
    ------
    ImportError
        When skfolio is not installed, naming the extra that brings it.
    """
    try:
        from skfolio.datasets import load_sp500_dataset
    except ImportError as err:
        raise ImportError(
            "the real-price scenario needs skfolio's bundled prices: "
            "pip install 'meta-supervisor[research]'"
        ) from err
    prices = load_sp500_dataset()
    frame = pl.from_pandas(prices.reset_index())
    return frame.rename({frame.columns[0]: "date"}).with_columns(pl.col("date").cast(pl.Date))


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows ending at each row (NaN before ``window`` rows)."""
    out = np.full_like(x, np.nan, dtype=np.float64)
    c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), x]), axis=0)
    out[window - 1 :] = (c[window:] - c[:-window]) / window
    return out


def rule_directions(close: np.ndarray, rule: str) -> np.ndarray:
    """+1 (LONG) / −1 (SHORT) per day and stock for ``rule``, using closes up to that day only.

    Parameters
    ----------
    close : ndarray, shape (days, stocks)
        Positive closing prices.
    """
    if rule == "buy_and_hold":
        return np.ones_like(close)
    if rule == "momentum":
        past = np.vstack([np.full((20, close.shape[1]), np.nan), close[:-20]])
        return np.where(close / past - 1.0 > 0, 1.0, -1.0)
    if rule == "mean_reversion":
        past = np.vstack([np.full((5, close.shape[1]), np.nan), close[:-5]])
        return np.where(close / past - 1.0 > 0, -1.0, 1.0)
    if rule == "ma_cross":
        return np.where(_rolling_mean(close, 10) > _rolling_mean(close, 50), 1.0, -1.0)
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def _past_fit(realized: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of rows ``k−window .. k−1`` (the past only) at each row ``k``."""
    days, n = realized.shape
    mean = np.full((days, n), np.nan)
    std = np.full((days, n), np.nan)
    for k in range(10, days):
        past = realized[max(0, k - window) : k]
        mean[k] = past.mean(axis=0)
        std[k] = past.std(axis=0, ddof=1)
    return mean, std


def rule_fleet(
    prices: pl.DataFrame,
    symbols: tuple[str, ...] | None = None,
    rules: tuple[str, ...] = RULES,
    fit_days: int = 60,
    calendar: bool = False,
) -> SimulatedFleet:
    """Records and telemetry of every ``rule`` × ``symbol`` agent on ``prices``.

    Parameters
    ----------
    prices : DataFrame
        A ``date`` column and one column of positive closes per symbol, one row per trading day.
    symbols : tuple of str, optional
        Columns to trade (default: all but ``date``).
    fit_days : int
        Records in the forecast's trailing fit (past only).
    calendar : bool
        Lay the records on the prices' own dates (the exchange calendar: weekends, holidays,
        unscheduled closures; closes at 21:00 UTC, 18:00 on early-close days,
        :mod:`meta_supervisor.research.calendar`): the record of the signal at close ``k``
        matures at close ``k + 1`` (``ts = close[k+1] − 24 h``, so ``matured_at`` is exactly
        when the PnL is known, over a weekend too), and the backtest decides at the closes.
        Without it (the default, the original scenario) day ``k`` is the ``k``-th calendar
        day from ``START``.
    """
    symbols = symbols or tuple(c for c in prices.columns if c != "date")
    missing = [s for s in symbols if s not in prices.columns]
    if missing:
        raise KeyError(f"price frame has no column for {missing}")
    close = prices.select(symbols).to_numpy().astype(np.float64)
    if close.shape[0] <= _WARMUP + 2:
        raise ValueError(f"need more than {_WARMUP + 2} trading days (got {close.shape[0]})")
    if not np.all(np.isfinite(close) & (close > 0)):
        bad = np.argwhere(~(np.isfinite(close) & (close > 0)))[0]
        raise ValueError(f"price of {symbols[bad[1]]} on row {bad[0]} is not a positive number")
    dates = prices["date"].cast(pl.String).to_list()
    closes = session_closes(prices["date"].to_list()) if calendar else []
    ret_bps = (close[1:] / close[:-1] - 1.0) * 1e4  # return from close k to close k+1
    frames, tel = [], []
    agents = []
    for rule in rules:
        direction = rule_directions(close, rule)[:-1]
        realized = direction * ret_bps
        mean, std = _past_fit(realized, fit_days)
        days = np.arange(_WARMUP, realized.shape[0])
        for j, sym in enumerate(symbols):
            name = f"{rule}:{sym}"
            agents.append({"agent": name, "strategy": rule, "symbol": sym})
            if calendar:
                ts = [
                    (closes[d + 1] - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for d in days
                ]
            else:
                ts = [
                    (START + timedelta(days=int(d - _WARMUP))).strftime("%Y-%m-%dT%H:%M:%SZ")
                    for d in days
                ]
            frames.append(
                pl.DataFrame(
                    {
                        "ts": ts,
                        "agent": name,
                        "run_id": [f"{name}-{d}" for d in days],
                        "symbol": sym,
                        "direction": np.where(direction[days, j] > 0, "LONG", "SHORT"),
                        "horizon_hours": 24,
                        "realized_pnl_bps": realized[days, j],
                        "expected_pnl_bps": np.nan_to_num(mean[days, j]),
                        "expected_sigma_bps": std[days, j],
                        "strategy_class": rule,
                        "regime": [dates[d] for d in days],
                    },
                    schema_overrides={"expected_sigma_bps": pl.Float64},
                ).with_columns(pl.col("expected_sigma_bps").fill_nan(None))
            )
            tel.append(pl.DataFrame({"ts": ts, "agent": name, "errors": 0}))
    batch = normalize_records(pl.concat(frames), source="real prices")
    if batch.quarantine.height:
        raise ValueError(f"real-price records refused: {batch.quarantine.head(3)}")
    records, _ = dedupe_records(batch.records)
    telemetry = normalize_telemetry(pl.concat(tel), source="real prices").records
    n_days = close.shape[0] - 1 - _WARMUP
    spec = FleetSpec(n_agents=len(agents), days=n_days, horizons=(24,))
    if calendar:
        # The shipped default policy (168 h window), as a desk would run it on daily closes.
        start, end = closes[_WARMUP], closes[-1]
        overrides: dict[str, float] = {}
    else:
        start, end = START, START + timedelta(days=n_days)
        overrides = {"lookback_hours": 24.0 * 60}
    return SimulatedFleet(
        ledger=Ledger(records=records, telemetry=telemetry, read=records.height),
        agents=pl.DataFrame(agents),
        spec=spec,
        seed=0,
        start=start,
        end=end,
        policy_overrides=overrides,
        every_hours=24.0,
        calendar=calendar,
    )


def _sp500_year(seed: int, years: int = 1) -> SimulatedFleet:
    """One ``years``-long window of the S&P 500 sample; the seed picks the start year."""
    prices = load_sp500_prices()
    first = 1991 + seed % (2022 - 1991 - years + 1)
    # Keep the warm-up before the window so the first signal has its rules' history.
    start = prices.filter(pl.col("date").dt.year() == first)["date"].min()
    end = prices.filter(pl.col("date").dt.year() == first + years - 1)["date"].max()
    idx = prices.with_row_index().filter(pl.col("date") == start)["index"][0]
    window = prices.slice(max(0, int(idx) - _WARMUP), None).filter(pl.col("date") <= end)
    fleet = rule_fleet(window, DEFAULT_SYMBOLS)
    fleet.seed = seed
    return fleet


#: The sub-periods the issue's held-out evaluation reports (calendar years, inclusive).
PERIODS: dict[str, tuple[int, int]] = {
    "1995-2006": (1995, 2006),
    "2007-2009": (2007, 2009),
    "2010-2019": (2010, 2019),
    "2020-2022": (2020, 2022),
}


#: Sessions of records before a calendar fleet's first decision: the agents' own cadence
#: (``cadence_history_hours``, 4 weeks) is known from the first decision on.
_HISTORY_SESSIONS = 40


def sp500_calendar_fleet(first_year: int, last_year: int) -> SimulatedFleet:
    """4 rules x all 20 stocks of the sample on the exchange calendar, ``first_year`` to
    ``last_year``, default policy, decisions at the closes. The records start
    ``_HISTORY_SESSIONS`` sessions before the first year (the rules' own warm-up before that),
    and ``start`` is set 7 days before the year's first close, so the backtest's default 7-day
    warm-up puts the first decision at the first close of ``first_year``, with a known cadence
    for every agent."""
    prices = load_sp500_prices()
    start = prices.filter(pl.col("date").dt.year() == first_year)["date"].min()
    end = prices.filter(pl.col("date").dt.year() == last_year)["date"].max()
    idx = int(prices.with_row_index().filter(pl.col("date") == start)["index"][0])
    begin = max(0, idx - _WARMUP - _HISTORY_SESSIONS)
    window = prices.slice(begin, None).filter(pl.col("date") <= end)
    fleet = rule_fleet(window, calendar=True)
    first_close = session_closes(window["date"].to_list())[idx - begin]
    fleet.start = max(fleet.start, first_close - timedelta(hours=168))
    return fleet


def _sp500_calendar_year(seed: int) -> SimulatedFleet:
    """One year of :func:`sp500_calendar_fleet`; the seed picks it (1995 + seed mod 28)."""
    year = 1995 + seed % 28
    fleet = sp500_calendar_fleet(year, year)
    fleet.seed = seed
    return fleet


def _sp500_period(seed: int) -> SimulatedFleet:
    """One of :data:`PERIODS` (seed mod 4, in order) of :func:`sp500_calendar_fleet`."""
    first, last = list(PERIODS.values())[seed % len(PERIODS)]
    fleet = sp500_calendar_fleet(first, last)
    fleet.seed = seed
    return fleet


SCENARIOS: dict[str, Scenario] = {
    "real_prices_period": Scenario(
        "real_prices_calendar over a whole sub-period: seed 0-3 = 1995-2006, 2007-2009, "
        "2010-2019, 2020-2022 (the issue's held-out periods)",
        _sp500_period,
    ),
    "real_prices_calendar": Scenario(
        "4 rules x 20 S&P 500 stocks on the exchange calendar (real dates, holidays, early "
        "closes), default policy, decisions at each close; seed picks the year (1995 + seed)",
        _sp500_calendar_year,
    ),
    "real_prices": Scenario(
        "4 plain rules x 8 S&P 500 stocks, real daily closes (skfolio sample); seed picks the year",
        _sp500_year,
    ),
}
