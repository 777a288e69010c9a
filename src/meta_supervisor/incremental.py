r"""Incremental cycle state: running sums so that a cycle costs what changed, not history.

:class:`IncrementalStats` produces the same three frames as :func:`~meta_supervisor.stats.
agent_stats`, :func:`~meta_supervisor.confidence.confidence_multipliers` and
:func:`~meta_supervisor.tails.strategy_tails` (equal up to float reassociation, ~1e-12
relative), from state carried between cycles:

* per agent, over the stats window ``(as_of − lookback, as_of]`` at the policy horizon: count,
  Σ pnl, Σ pnl², hits, Σ |gap|; the drawdown as a *path summary* ``(total, max prefix ≥ 0,
  min prefix ≤ 0, max drawdown ≤ 0)``. Summaries combine associatively (A then B):
  ``t = t_A + t_B``, ``hi = max(hi_A, t_A + hi_B)``, ``lo = min(lo_A, t_A + lo_B)``,
  ``dd = min(dd_A, dd_B, t_A − hi_A + lo_B)``, so records appended *after* an agent's last one
  extend it exactly;
* per agent, confidence evidence ``Σ w``, ``Σ w·z`` held at the last ``as_of``; moving to a later
  ``as_of`` rescales both by :math:`2^{-Δt/h}` (every weight decays by the same factor);
* per strategy, over the CVaR window: ``n``, ``Σ gap`` and a *tail buffer*: every gap at or
  below a threshold, sorted (at least the ``m = ⌈0.05 n⌉`` smallest). Gaps above it are only
  counted. When removals or growth leave fewer than ``m`` in the buffer it is refilled from the
  ledger for that strategy alone.

Sliding windows: records whose ``matured_at`` leaves a window are read back from the ledger by
time range and subtracted. A drawdown cannot lose its first records by subtraction, so agents
that lost records from the stats window, or received a record out of order (a late arrival,
or a tie before their last record), are recomputed from the ledger, for those agents only. With
an hourly cycle and a window shorter than the history, that is every active agent each cycle:
the cost is then one read of those agents' window, no longer proportional to the change.

Telemetry (error rate) is recomputed every cycle: it is a small frame.

State persists as one JSON file (:meth:`save`, :func:`meta_supervisor.state.atomic_write_text`);
tail buffers are stored as base64 float64.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.confidence import CONFIDENCE_COLUMNS, prior_ratio
from meta_supervisor.measures import tail_count
from meta_supervisor.policy import Policy
from meta_supervisor.records import UTC_US
from meta_supervisor.state import atomic_write_text
from meta_supervisor.stats import ORDER, STATS_COLUMNS
from meta_supervisor.tails import TAIL_COLUMNS

__all__ = ["IncrementalStats"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATE_VERSION = 2  # 2: tails carry abs_gap_sum (mean |gap| per strategy)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass
class _Agent:
    n: int = 0
    pnl: float = 0.0
    pnl_sq: float = 0.0
    hits: int = 0
    abs_gap: float = 0.0
    # drawdown path summary over the window, in order
    total: float = 0.0
    hi: float = 0.0
    lo: float = 0.0
    dd: float = 0.0
    # last record counted at the horizon (order key) and its strategy; latest at any horizon
    last_key: tuple[int, int, str] | None = None
    last_strategy: str | None = None
    any_key: tuple[int, int, str] | None = None
    any_strategy: str | None = None
    conf_n: int = 0
    conf_w: float = 0.0
    conf_wz: float = 0.0


@dataclass
class _Tail:
    n: int = 0
    gap_sum: float = 0.0
    threshold: float = math.inf
    buffer: np.ndarray = field(default_factory=lambda: np.empty(0))
    abs_gap_sum: float = 0.0


def _combine(a: tuple[float, float, float, float], b: tuple[float, float, float, float]):
    """Path summary of ``a`` followed by ``b`` (see the module docstring)."""
    t_a, hi_a, lo_a, dd_a = a
    t_b, hi_b, lo_b, dd_b = b
    return (
        t_a + t_b,
        max(hi_a, t_a + hi_b),
        min(lo_a, t_a + lo_b),
        min(dd_a, dd_b, t_a - hi_a + lo_b),
    )


def _path_summaries(frame: pl.DataFrame) -> pl.DataFrame:
    """Per agent ``(t, hi, lo, dd)`` of the realised path of ``frame`` (already in order)."""
    path = pl.col("realized_pnl_bps").cum_sum().over("agent")
    return (
        frame.lazy()
        .with_columns(path.alias("_c"))
        .with_columns(
            (
                pl.col("_c") - pl.max_horizontal(pl.col("_c").cum_max().over("agent"), pl.lit(0.0))
            ).alias("_d")
        )
        .group_by("agent")
        .agg(
            pl.col("realized_pnl_bps").sum().alias("t"),
            pl.max_horizontal(pl.col("_c").max(), pl.lit(0.0)).alias("hi"),
            pl.min_horizontal(pl.col("_c").min(), pl.lit(0.0)).alias("lo"),
            pl.min_horizontal(pl.col("_d").min(), pl.lit(0.0)).alias("dd"),
        )
        .collect()
    )


class IncrementalStats:
    """Cycle inputs maintained across cycles for one policy (see the module docstring).

    Usage: ``inc.advance(ledger, as_of, late=new_records_matured_before_last_cycle)`` then
    ``inc.frames(telemetry)``. ``ledger`` is every record the store holds (a frame or a lazy
    scan; only time ranges and the dirty agents' rows are read from it); ``late`` holds the
    records appended since the previous cycle whose ``matured_at`` is at or before it (they
    cannot be found by time range). ``as_of`` must not go backwards.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.as_of_us: int | None = None
        self.agents: dict[str, _Agent] = {}
        self.tails: dict[str, _Tail] = {}
        self.recomputed_agents = 0
        self.refilled_strategies = 0

    # ------------------------------------------------------------------ windows

    def _lookbacks(self) -> tuple[int, int, int]:
        p = self.policy
        return tuple(
            timedelta(hours=h) // timedelta(microseconds=1)
            for h in (p.lookback_hours, p.confidence_lookback_hours, p.cvar_lookback_hours)
        )  # type: ignore[return-value]

    def _horizon(self, lazy: pl.LazyFrame) -> pl.LazyFrame:
        return lazy.filter(pl.col("horizon_hours") == self.policy.horizon_hours)

    @staticmethod
    def _range(ledger: pl.LazyFrame, low_us: int, high_us: int) -> pl.LazyFrame:
        """Records with ``low < matured_at ≤ high`` (µs since the epoch)."""
        low = pl.lit(low_us).cast(UTC_US)
        high = pl.lit(high_us).cast(UTC_US)
        return ledger.filter((pl.col("matured_at") > low) & (pl.col("matured_at") <= high))

    # ------------------------------------------------------------------ the cycle

    def advance(
        self,
        ledger: pl.DataFrame | pl.LazyFrame,
        as_of: datetime,
        late: pl.DataFrame | None = None,
    ) -> None:
        """Bring the state from the previous ``as_of`` to ``as_of``."""
        now = _us(as_of)
        prev = self.as_of_us
        if prev is not None and now < prev:
            raise ValueError(f"as_of went backwards: {as_of} is before the state's last cycle")
        lazy = ledger.lazy()
        stats_l, conf_l, cvar_l = self._lookbacks()
        if prev is None:
            entering = self._range(lazy, now - max(stats_l, conf_l, cvar_l), now).collect()
            late_ids: pl.Series | None = None
        else:
            entering = self._range(lazy, prev, now).collect()
            if late is not None and late.height:
                late = late.filter(pl.col("matured_at") <= pl.lit(prev).cast(UTC_US))
                entering = pl.concat([entering, late.select(entering.columns)])
                late_ids = late["record_id"]
            else:
                late_ids = None
        leaving: list[pl.DataFrame] = []
        for lookback in (stats_l, conf_l, cvar_l):
            if prev is None or now - lookback <= prev - lookback:
                leaving.append(entering.clear())
                continue
            # counted before: matured in (prev − L, prev]; out now: ≤ now − L
            out = self._horizon(self._range(lazy, prev - lookback, min(prev, now - lookback)))
            frame = out.collect()
            if late_ids is not None:
                frame = frame.filter(~pl.col("record_id").is_in(late_ids.implode()))
            leaving.append(frame)
        self._rescale_confidence(prev, now)
        # the universe is every agent with a visible record, however old
        visible = self._range(lazy, -(2**62), now).collect() if prev is None else entering
        self._latest_any(visible)
        at_h = entering.filter(pl.col("horizon_hours") == self.policy.horizon_hours)
        in_stats = at_h.filter(pl.col("matured_at") > pl.lit(now - stats_l).cast(UTC_US))
        in_conf = at_h.filter(pl.col("matured_at") > pl.lit(now - conf_l).cast(UTC_US))
        in_cvar = at_h.filter(pl.col("matured_at") > pl.lit(now - cvar_l).cast(UTC_US))
        dirty = self._update_stats(in_stats, leaving[0])
        self._update_confidence(in_conf, leaving[1], now)
        self._update_tails(in_cvar, leaving[2])
        self.as_of_us = now
        if dirty:
            self._recompute_drawdowns(lazy, dirty, now - stats_l, now)
        self._refill_tails(lazy, now - cvar_l, now)

    def _rescale_confidence(self, prev: int | None, now: int) -> None:
        if prev is None or now == prev:
            return
        factor = 2.0 ** (-(now - prev) / 3.6e9 / self.policy.confidence_half_life_hours)
        for state in self.agents.values():
            state.conf_w *= factor
            state.conf_wz *= factor

    def _agent(self, name: str) -> _Agent:
        state = self.agents.get(name)
        if state is None:
            state = self.agents[name] = _Agent()
        return state

    def _latest_any(self, entering: pl.DataFrame) -> None:
        if not entering.height:
            return
        latest = (
            entering.sort(ORDER)
            .group_by("agent")
            .agg(pl.col("matured_at", "ts", "record_id", "strategy").last())
        )
        for agent, matured, ts, rid, strategy in latest.select(
            "agent",
            pl.col("matured_at").dt.epoch("us"),
            pl.col("ts").dt.epoch("us"),
            "record_id",
            "strategy",
        ).iter_rows():
            state = self._agent(agent)
            key = (matured, ts, rid)
            if state.any_key is None or key > state.any_key:
                state.any_key, state.any_strategy = key, strategy

    @staticmethod
    def _sums(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.group_by("agent").agg(
            pl.len().alias("n"),
            pl.col("realized_pnl_bps").sum().alias("pnl"),
            (pl.col("realized_pnl_bps") ** 2).sum().alias("pnl_sq"),
            (pl.col("realized_pnl_bps") > 0).sum().alias("hits"),
            pl.col("gap_bps").abs().sum().alias("abs_gap"),
        )

    def _update_stats(self, entering: pl.DataFrame, leaving: pl.DataFrame) -> set[str]:
        """Add ``entering``, subtract ``leaving``; return agents whose drawdown must be redone."""
        dirty: set[str] = set()
        for agent, n, pnl, pnl_sq, hits, abs_gap in self._sums(leaving).iter_rows():
            state = self._agent(agent)
            state.n -= n
            state.pnl -= pnl
            state.pnl_sq -= pnl_sq
            state.hits -= hits
            state.abs_gap -= abs_gap
            dirty.add(agent)
        if not entering.height:
            return dirty
        ordered = entering.sort(ORDER)
        firsts = ordered.group_by("agent").agg(
            pl.col("matured_at").first().dt.epoch("us").alias("m0"),
            pl.col("ts").first().dt.epoch("us").alias("t0"),
            pl.col("record_id").first().alias("r0"),
            pl.col("matured_at").last().dt.epoch("us").alias("m1"),
            pl.col("ts").last().dt.epoch("us").alias("t1"),
            pl.col("record_id").last().alias("r1"),
            pl.col("strategy").last().alias("strategy"),
        )
        summaries = {row[0]: row[1:] for row in _path_summaries(ordered).iter_rows()}
        sums = {row[0]: row[1:] for row in self._sums(ordered).iter_rows()}
        for agent, m0, t0, r0, m1, t1, r1, strategy in firsts.iter_rows():
            state = self._agent(agent)
            n, pnl, pnl_sq, hits, abs_gap = sums[agent]
            state.n += n
            state.pnl += pnl
            state.pnl_sq += pnl_sq
            state.hits += hits
            state.abs_gap += abs_gap
            in_order = state.last_key is None or (m0, t0, r0) > state.last_key
            if in_order and agent not in dirty:
                state.total, state.hi, state.lo, state.dd = _combine(
                    (state.total, state.hi, state.lo, state.dd), summaries[agent]
                )
            else:
                dirty.add(agent)
            if state.last_key is None or (m1, t1, r1) > state.last_key:
                state.last_key, state.last_strategy = (m1, t1, r1), strategy
        return dirty

    def _recompute_drawdowns(
        self, ledger: pl.LazyFrame, agents: set[str], low: int, high: int
    ) -> None:
        window = (
            self._horizon(self._range(ledger, low, high))
            .filter(pl.col("agent").is_in(pl.Series(sorted(agents)).implode()))
            .select("agent", "realized_pnl_bps", *ORDER)
            .sort(ORDER)
            .collect()
        )
        self.recomputed_agents += len(agents)
        summaries = {row[0]: row[1:] for row in _path_summaries(window).iter_rows()}
        for agent in agents:
            state = self._agent(agent)
            state.total, state.hi, state.lo, state.dd = summaries.get(agent, (0.0, 0.0, 0.0, 0.0))

    def _update_confidence(self, entering: pl.DataFrame, leaving: pl.DataFrame, now: int) -> None:
        p = self.policy
        age_h = (pl.lit(now).cast(UTC_US) - pl.col("matured_at")).dt.total_microseconds() / 3.6e9
        weight = pl.lit(2.0).pow(-age_h.clip(lower_bound=0.0) / p.confidence_half_life_hours)
        scale = (
            pl.when(pl.col("expected_sigma_bps") > 0)
            .then(pl.col("expected_sigma_bps"))
            .otherwise(pl.lit(p.sim_error_scale_bps))
        )

        def sums(frame: pl.DataFrame) -> pl.DataFrame:
            return (
                frame.lazy()
                .with_columns(weight.alias("_w"), (pl.col("gap_bps").abs() / scale).alias("_z"))
                .group_by("agent")
                .agg(pl.len(), pl.col("_w").sum(), (pl.col("_w") * pl.col("_z")).sum().alias("_wz"))
                .collect()
            )

        for sign, frame in ((-1, leaving), (1, entering)):
            if not frame.height:
                continue
            for agent, n, w, wz in sums(frame).iter_rows():
                state = self._agent(agent)
                state.conf_n += sign * n
                state.conf_w += sign * w
                state.conf_wz += sign * wz

    def _update_tails(self, entering: pl.DataFrame, leaving: pl.DataFrame) -> None:
        for sign, frame in ((-1, leaving), (1, entering)):
            if not frame.height:
                continue
            grouped = frame.group_by("strategy").agg(pl.col("gap_bps").sort())
            for strategy, gaps in grouped.iter_rows():
                tail = self.tails.setdefault(strategy, _Tail())
                values = np.asarray(gaps, dtype=np.float64)
                tail.n += sign * values.size
                tail.gap_sum += sign * float(values.sum())
                tail.abs_gap_sum += sign * float(np.abs(values).sum())
                below = values[values <= tail.threshold]
                if sign > 0:
                    tail.buffer = np.insert(tail.buffer, np.searchsorted(tail.buffer, below), below)
                else:
                    tail.buffer = _remove_sorted(tail.buffer, below)

    def _refill_tails(self, ledger: pl.LazyFrame, low: int, high: int) -> None:
        short = []
        for strategy, tail in self.tails.items():
            if tail.n <= 0:
                tail.n, tail.gap_sum, tail.threshold, tail.buffer = 0, 0.0, math.inf, np.empty(0)
                tail.abs_gap_sum = 0.0
                continue
            _, m = tail_count(tail.n)
            if tail.buffer.size < max(m, 1):
                short.append(strategy)
            elif tail.buffer.size > 4 * m + 4096:
                keep = 2 * m + 1024
                tail.threshold = float(tail.buffer[keep - 1])
                tail.buffer = tail.buffer[tail.buffer <= tail.threshold]
        if not short:
            return
        frame = (
            self._horizon(self._range(ledger, low, high))
            .filter(pl.col("strategy").is_in(pl.Series(short).implode()))
            .group_by("strategy")
            .agg(pl.col("gap_bps").sort())
            .collect()
        )
        for strategy, gaps in frame.iter_rows():
            tail = self.tails[strategy]
            values = np.asarray(gaps, dtype=np.float64)
            _, m = tail_count(values.size)
            keep = min(values.size, 2 * m + 1024)
            tail.threshold = float(values[keep - 1]) if keep < values.size else math.inf
            tail.buffer = values[values <= tail.threshold]
            self.refilled_strategies += 1

    # ------------------------------------------------------------------ outputs

    def frames(
        self, telemetry: pl.DataFrame | pl.LazyFrame | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """``(agent_stats, confidence, tails)`` frames as of the last :meth:`advance`."""
        if self.as_of_us is None:
            raise ValueError("advance() the state to an as_of first")
        return self._stats_frame(telemetry), self._confidence_frame(), self._tails_frame()

    def _stats_frame(self, telemetry: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
        now = pl.lit(self.as_of_us).cast(UTC_US)
        start = pl.lit(self.as_of_us - self._lookbacks()[0]).cast(UTC_US)
        if telemetry is None:
            runs = pl.DataFrame(
                schema={"agent": pl.String, "n_runs": pl.Int64, "error_rate": pl.Float64}
            )
        else:
            runs = (
                telemetry.lazy()
                .filter((pl.col("ts") <= now) & (pl.col("ts") > start))
                .group_by("agent")
                .agg(
                    pl.len().cast(pl.Int64).alias("n_runs"),
                    pl.col("is_error").cast(pl.Float64).mean().alias("error_rate"),
                )
                .collect()
            )
        names = sorted(set(self.agents) | set(runs["agent"].to_list()))
        rows = []
        for name in names:
            s = self.agents.get(name, _Agent())
            n = s.n
            mean = s.pnl / n if n else None
            std = None
            if n > 1:
                std = math.sqrt(max(s.pnl_sq - s.pnl * s.pnl / n, 0.0) / (n - 1))
            strategy = (s.last_strategy if n else None) or s.any_strategy or "unclassified"
            rows.append(
                (
                    name,
                    strategy,
                    n,
                    s.pnl if n else 0.0,
                    mean,
                    std,
                    s.hits / n if n else None,
                    s.abs_gap / n if n else None,
                    min(s.dd, 0.0) if n else 0.0,
                    s.last_key[0] if n and s.last_key else None,
                )
            )
        schema = {
            "agent": pl.String,
            "strategy": pl.String,
            "n_records": pl.Int64,
            "pnl_sum_bps": pl.Float64,
            "pnl_mean_bps": pl.Float64,
            "pnl_std_bps": pl.Float64,
            "hit_rate": pl.Float64,
            "avg_abs_error_bps": pl.Float64,
            "max_drawdown_bps": pl.Float64,
            "last_matured_at": pl.Int64,
        }
        frame = pl.DataFrame(rows, schema=schema, orient="row").with_columns(
            pl.col("last_matured_at").cast(UTC_US)
        )
        return (
            frame.join(runs, on="agent", how="left")
            .with_columns(pl.col("n_runs").fill_null(0))
            .select(STATS_COLUMNS)
            .sort("agent")
        )

    def _confidence_frame(self) -> pl.DataFrame:
        p = self.policy
        floor, ceiling, tol = p.confidence_floor, p.confidence_ceiling, p.confidence_tolerance
        w0, z0 = p.confidence_prior_weight, prior_ratio(p)
        rows = []
        for name in sorted(self.agents):
            s = self.agents[name]
            if s.conf_n <= 0:
                continue
            total = w0 + s.conf_w
            ratio = (w0 * z0 + s.conf_wz) / total if total > 0 else z0
            conf = ceiling if ratio <= tol else floor + (ceiling - floor) * tol / ratio
            rows.append((name, min(max(conf, floor), ceiling), s.conf_n, s.conf_w, ratio))
        schema = dict(
            zip(
                CONFIDENCE_COLUMNS,
                [pl.String, pl.Float64, pl.Int64, pl.Float64, pl.Float64],
                strict=True,
            )
        )
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _tails_frame(self, alpha: float = 0.05) -> pl.DataFrame:
        n_min, prior = self.policy.cvar_min_samples, self.policy.cvar_prior_bps
        rows = []
        for strategy in sorted(self.tails):
            t = self.tails[strategy]
            if t.n <= 0:
                continue
            k, m = tail_count(t.n, alpha)
            g = t.buffer
            raw = (
                float(g[0])
                if k < 1
                else (float(g[: m - 1].sum()) + (k - m + 1) * float(g[m - 1])) / k
            )
            shrunk = t.n < n_min
            used = raw * (t.n / n_min) + prior * (1.0 - t.n / n_min) if shrunk else raw
            rows.append(
                (
                    strategy,
                    t.n,
                    raw,
                    used,
                    shrunk,
                    float(g[0]),
                    t.gap_sum / t.n,
                    max(t.abs_gap_sum, 0.0) / t.n,
                )
            )
        schema = dict(
            zip(
                TAIL_COLUMNS,
                [pl.String, pl.Int64, pl.Float64, pl.Float64, pl.Boolean, *[pl.Float64] * 3],
                strict=True,
            )
        )
        return pl.DataFrame(rows, schema=schema, orient="row")

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> str:
        """The whole state as JSON (tail buffers as base64 float64)."""
        blob: dict[str, Any] = {
            "version": STATE_VERSION,
            "policy_fingerprint": self.policy.fingerprint(),
            "as_of_us": self.as_of_us,
            "agents": {k: vars(v) for k, v in sorted(self.agents.items())},
            "tails": {
                k: {
                    "n": t.n,
                    "gap_sum": t.gap_sum,
                    "abs_gap_sum": t.abs_gap_sum,
                    "threshold": None if math.isinf(t.threshold) else t.threshold,
                    "buffer": base64.b64encode(t.buffer.astype("<f8").tobytes()).decode(),
                }
                for k, t in sorted(self.tails.items())
            },
        }
        return json.dumps(blob, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, policy: Policy) -> IncrementalStats:
        """Restore a state written by :meth:`to_json` for the same policy."""
        blob = json.loads(text)
        if blob.get("version") != STATE_VERSION:
            raise ValueError(
                f"incremental state version {blob.get('version')}, expected {STATE_VERSION}"
            )
        if blob["policy_fingerprint"] != policy.fingerprint():
            raise ValueError("incremental state was built for another policy: rebuild it")
        inc = cls(policy)
        inc.as_of_us = blob["as_of_us"]
        for name, values in blob["agents"].items():
            for key in ("last_key", "any_key"):
                if values[key] is not None:
                    values[key] = tuple(values[key])
            inc.agents[name] = _Agent(**values)
        for name, t in blob["tails"].items():
            buffer = np.frombuffer(base64.b64decode(t["buffer"]), dtype="<f8").copy()
            threshold = math.inf if t["threshold"] is None else float(t["threshold"])
            inc.tails[name] = _Tail(
                int(t["n"]), float(t["gap_sum"]), threshold, buffer, float(t["abs_gap_sum"])
            )
        return inc

    def save(self, path: Path) -> None:
        """Write the state atomically to ``path`` (in the state directory)."""
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: Path, policy: Policy) -> IncrementalStats:
        """Read a state written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"), policy)


def _remove_sorted(buffer: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``buffer`` (sorted) without one occurrence of each of ``values`` (sorted)."""
    if not values.size:
        return buffer
    left = np.searchsorted(buffer, values, side="left")
    # the j-th repeat of a value removes the j-th equal element
    first = np.searchsorted(values, values, side="left")
    positions = left + (np.arange(values.size) - first)
    inside = positions < buffer.size
    positions, values = positions[inside], values[inside]
    return np.delete(buffer, positions[buffer[positions] == values])
