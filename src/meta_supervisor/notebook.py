"""Decisions, history, explanations and backtests as DataFrames, for notebooks.

Every function returns a :class:`polars.DataFrame`; pass ``pandas=True`` for a
:class:`pandas.DataFrame` instead (needs the ``notebook`` extra: pandas and pyarrow). The
frames are read from the same files the command line reads (``root`` is the base of the
default layout, as ``--root``; ``state_dir`` wins over it), or built from objects already in
hand (a :class:`~meta_supervisor.allocate.decision.Decision`, a decision dict, a
:class:`~meta_supervisor.research.backtest.BacktestResult`). Nothing here decides: the numbers
are the recorded ones, so they match ``explain --json`` and ``history --json``.

============================ ==================================================================
function                     one row per
============================ ==================================================================
:func:`decisions`            decision in the history (seq, as_of, profile, gross, cash, ...)
:func:`weights`              decision and agent (seq, as_of, agent, weight, change)
:func:`explanations`         agent of one decision (weight, gate, summary, every step, every
                             factor as a column)
:func:`factors`              agent and factor of one or every decision (value, reason)
:func:`backtest_frames`      a dict of frames: ``equity`` (time × method), ``weights`` (time ×
                             method × agent), ``metrics`` (method), ``agent_pnl`` (time × agent)
============================ ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.decision import Decision, fingerprint, parse_iso
from meta_supervisor.config import Paths
from meta_supervisor.state.explanations import agent_weights
from meta_supervisor.state.files import HistoryEntry, read_history

if TYPE_CHECKING:
    from meta_supervisor.research.backtest import BacktestResult

__all__ = ["backtest_frames", "decisions", "explanations", "factors", "weights"]


def _out(frame: pl.DataFrame, pandas: bool) -> Any:
    return frame.to_pandas() if pandas else frame


def _paths(root: str | Path | None, state_dir: str | Path | None) -> Paths:
    base = Paths.under(Path(root)) if root is not None else Paths.from_env()
    return base if state_dir is None else replace(base, state_dir=Path(state_dir))


def _entries(root: str | Path | None, state_dir: str | Path | None) -> list[HistoryEntry]:
    paths = _paths(root, state_dir)
    entries = read_history(paths.history)
    if not entries:
        raise FileNotFoundError(f"{paths.history}: no decision in the history yet")
    return entries


def _time(text: str) -> Any:
    return parse_iso(text)


def decisions(
    root: str | Path | None = None, *, state_dir: str | Path | None = None, pandas: bool = False
) -> Any:
    """One row per decision in the hash-chained history.

    Columns: ``seq``, ``as_of`` (UTC datetime), ``hash`` (chain hash), ``digest`` (SHA-256 of
    the decision), ``profile``, ``gross``, ``cash``, ``turnover`` (null on the first),
    ``n_agents``, ``n_allocated``, ``n_gated``, ``binding_caps`` (list), ``reason``.
    """
    rows = []
    for e in _entries(root, state_dir):
        d, p = e.decision, e.decision["portfolio"]
        rows.append(
            {
                "seq": e.seq,
                "as_of": _time(d["as_of"]),
                "hash": e.hash,
                "digest": fingerprint(d),
                "profile": d["profile"],
                "gross": float(d["gross"]),
                "cash": float(d["cash"]),
                "turnover": p.get("turnover"),
                "n_agents": p["n_agents"],
                "n_allocated": p["n_allocated"],
                "n_gated": p["n_gated"],
                "binding_caps": list(p.get("binding_caps") or []),
                "reason": p.get("reason", ""),
            }
        )
    schema: dict[str, pl.DataType] = {
        "turnover": pl.Float64(),
        "binding_caps": pl.List(pl.String()),
    }
    return _out(pl.DataFrame(rows, schema_overrides=schema), pandas)


def weights(
    root: str | Path | None = None, *, state_dir: str | Path | None = None, pandas: bool = False
) -> Any:
    """Weights over time, long: one row per decision and agent (gated agents at 0).

    Columns: ``seq``, ``as_of``, ``agent``, ``weight``, ``change`` (since the previous
    decision; null on the first). Pivot for a wide table:
    ``weights(root).pivot("agent", index="as_of", values="weight")``.
    """
    rows = []
    before: Mapping[str, float] | None = None
    for e in _entries(root, state_dir):
        d = e.record  # as_of and weights; the agents' names without building explanations
        now = agent_weights(e.base or Path("."), e.record)
        for name, w in now.items():
            change = None if before is None else w - before.get(name, 0.0)
            rows.append(
                {
                    "seq": e.seq,
                    "as_of": _time(d["as_of"]),
                    "agent": name,
                    "weight": w,
                    "change": change,
                }
            )
        before = now
    return _out(pl.DataFrame(rows, schema_overrides={"change": pl.Float64}), pandas)


def _decision_dict(
    decision: Decision | Mapping[str, Any] | None,
    root: str | Path | None,
    state_dir: str | Path | None,
    seq: int | None,
) -> Mapping[str, Any]:
    if decision is not None:
        return decision.to_dict() if isinstance(decision, Decision) else decision
    entries = _entries(root, state_dir)
    if seq is None:
        return entries[-1].decision
    if not 1 <= seq <= len(entries):
        raise IndexError(f"no history entry {seq} (entries 1 to {len(entries)})")
    return entries[seq - 1].decision


def explanations(
    decision: Decision | Mapping[str, Any] | None = None,
    *,
    root: str | Path | None = None,
    state_dir: str | Path | None = None,
    seq: int | None = None,
    pandas: bool = False,
) -> Any:
    """One row per agent of one decision (``decision``, else history entry ``seq``, else the
    latest), highest weight first.

    Columns: ``as_of``, ``agent``, ``strategy``, ``weight``, ``previous_weight``, ``gated_by``
    (the first gate failed, null if none), ``summary``, one column per step (``quality``,
    ``share_before_risk``, ``after_cap``, ``after_risk``, ``after_gross_cap``,
    ``after_stability``, ``final``) and one per factor, named ``factor_<name>`` (the profile's:
    e.g. ``factor_evidence``), plus ``override`` (the operator override's action, or null).
    """
    d = _decision_dict(decision, root, state_dir, seq)
    rows = []
    for e in sorted(d["agents"].values(), key=lambda e: (-e["weight"], e["agent"])):
        failed = [g["gate"] for g in e["gates"] if not g["passed"]]
        row: dict[str, Any] = {
            "as_of": _time(d["as_of"]),
            "agent": e["agent"],
            "strategy": e["strategy"],
            "weight": float(e["weight"]),
            "previous_weight": e.get("previous_weight"),
            "gated_by": failed[0] if failed else None,
            "summary": e["summary"],
        }
        row |= {k: float(v) for k, v in e["steps"].items()}
        row |= {f"factor_{f['factor']}": f["value"] for f in e["factors"]}
        row["override"] = (e.get("override") or {}).get("action")
        rows.append(row)
    overrides = {"previous_weight": pl.Float64, "gated_by": pl.String, "override": pl.String}
    return _out(pl.DataFrame(rows, schema_overrides=overrides, infer_schema_length=None), pandas)


def factors(
    decision: Decision | Mapping[str, Any] | None = None,
    *,
    root: str | Path | None = None,
    state_dir: str | Path | None = None,
    seq: int | None = None,
    all_decisions: bool = False,
    pandas: bool = False,
) -> Any:
    """Every factor of every agent, long: ``seq`` (null for a decision given directly),
    ``as_of``, ``agent``, ``factor``, ``value``, ``reason``. One decision as
    :func:`explanations` picks it, or every decision in the history with
    ``all_decisions=True``."""
    if all_decisions:
        chosen: Sequence[tuple[int | None, Mapping[str, Any]]] = [
            (e.seq, e.decision) for e in _entries(root, state_dir)
        ]
    else:
        chosen = [(seq, _decision_dict(decision, root, state_dir, seq))]
    rows = [
        {
            "seq": number,
            "as_of": _time(d["as_of"]),
            "agent": name,
            "factor": f["factor"],
            "value": f["value"],
            "reason": f["reason"],
        }
        for number, d in chosen
        for name, e in sorted(d["agents"].items())
        for f in e["factors"]
    ]
    return _out(pl.DataFrame(rows, schema_overrides={"seq": pl.Int64}), pandas)


def backtest_frames(result: BacktestResult, *, pandas: bool = False) -> dict[str, Any]:
    """A backtest's results as frames (see :func:`meta_supervisor.research.backtest.
    run_backtest`; periods are ``[times[k], times[k] + every_hours)``, PnL in bps of capital).

    ``equity``: ``time``, ``method``, ``pnl_bps`` (the period's), ``equity_bps`` (cumulative),
    ``drawdown_bps`` (from the running peak of equity and 0, ≤ 0), ``gross``;
    ``weights``: ``time``, ``method``, ``agent``, ``weight``;
    ``metrics``: ``method``, ``default`` (bool) and one column per metric;
    ``agent_pnl``: ``time``, ``agent``, ``pnl_bps`` (the agent's mean realised PnL per record
    in the period).
    """
    times = list(result.times)
    n, agents = len(times), list(result.agents)
    # time of each (period, agent) cell, periods outer: the order of ``weights.reshape(-1)``
    cell_times = pl.Series("time", times, dtype=pl.Datetime("us", "UTC")).gather(
        np.repeat(np.arange(n), len(agents))
    )
    equity_parts, weight_parts = [], []
    for name, run in result.methods.items():
        pnl = np.asarray(run.period_pnl, dtype=np.float64)
        equity = np.cumsum(pnl)
        peak = np.maximum.accumulate(np.maximum(equity, 0.0))
        w = np.asarray(run.weights, dtype=np.float64)
        equity_parts.append(
            pl.DataFrame(
                {
                    "time": pl.Series(times, dtype=pl.Datetime("us", "UTC")),
                    "method": [name] * n,
                    "pnl_bps": pnl,
                    "equity_bps": equity,
                    "drawdown_bps": equity - peak,
                    "gross": w.sum(axis=1),
                }
            )
        )
        weight_parts.append(
            pl.DataFrame(
                {
                    "time": cell_times,
                    "method": [name] * (n * len(agents)),
                    "agent": agents * n,
                    "weight": w.reshape(-1),
                }
            )
        )
    metrics = pl.DataFrame(
        [
            {"method": m, "default": m == result.default_method} | dict(values)
            for m, values in result.metrics.items()
        ]
    )
    agent_pnl = pl.DataFrame(
        {
            "time": cell_times,
            "agent": agents * n,
            "pnl_bps": np.asarray(result.agent_pnl, dtype=np.float64).reshape(-1),
        }
    )
    frames = {
        "equity": pl.concat(equity_parts),
        "weights": pl.concat(weight_parts),
        "metrics": metrics,
        "agent_pnl": agent_pnl,
    }
    return {k: _out(v, pandas) for k, v in frames.items()}
