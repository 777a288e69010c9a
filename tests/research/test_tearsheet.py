"""The tearsheet's analytics against brute force and the metrics they must agree with."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.research.metrics import sharpe, turnover
from meta_supervisor.research.tearsheet import (
    contributions,
    drawdown_periods,
    monthly_returns,
    net_pnl,
    period_turnover,
    rolling_sharpe,
)
from meta_supervisor.signals.measures import max_drawdown

pnl_st = st.lists(st.floats(-50, 50, allow_subnormal=False), min_size=1, max_size=60)


def _weights(n: int, agents: int, seed: int) -> np.ndarray:
    w = np.random.default_rng(seed).random((n, agents))
    return w / w.sum(axis=1, keepdims=True) * 0.9


@given(st.integers(1, 30), st.integers(1, 6), st.integers(0, 99), st.floats(0, 20))
def test_turnover_and_costs(n: int, agents: int, seed: int, cost: float) -> None:
    w = _weights(n, agents, seed)
    traded = period_turnover(w)
    assert traded[0] == pytest.approx(w[0].sum())  # entering from cash
    for k in range(1, n):
        assert traded[k] == pytest.approx(sum(abs(w[k, i] - w[k - 1, i]) for i in range(agents)))
    if n > 1:
        assert traded[1:].mean() == pytest.approx(turnover(w))  # the metrics' definition
    r = np.arange(n, dtype=float)
    np.testing.assert_allclose(net_pnl(r, w, cost), r - cost * traded)
    with pytest.raises(ValueError):
        net_pnl(r, w, -1.0)


@given(pnl_st)
def test_monthly_returns_add_up(pnl: list[float]) -> None:
    start = datetime(2026, 1, 20, tzinfo=UTC)
    times = [start + timedelta(days=3 * k) for k in range(len(pnl))]
    months = monthly_returns(times, pnl)
    assert math.fsum(months.values()) == pytest.approx(math.fsum(pnl), abs=1e-9)
    for (year, month), value in months.items():
        inside = [r for t, r in zip(times, pnl, strict=True) if (t.year, t.month) == (year, month)]
        assert value == pytest.approx(math.fsum(inside), abs=1e-9)


@given(pnl_st, st.integers(2, 10))
def test_rolling_sharpe_is_sharpe_of_each_window(pnl: list[float], window: int) -> None:
    out = rolling_sharpe(pnl, 6.0, window)
    assert np.isnan(out[: window - 1]).all()
    for k in range(window - 1, len(pnl)):
        assert out[k] == pytest.approx(sharpe(pnl[k - window + 1 : k + 1], 6.0))
    with pytest.raises(ValueError):
        rolling_sharpe(pnl, 6.0, 1)


@settings(max_examples=200)
@given(pnl_st)
def test_drawdown_periods_against_the_path(pnl: list[float]) -> None:
    episodes = drawdown_periods(pnl, top=100)
    equity = np.concatenate([[0.0], np.cumsum(pnl)])  # equity[k + 1] after period k
    if max_drawdown(pnl) == 0:
        assert episodes == []
        return
    assert episodes[0]["depth_bps"] == pytest.approx(max_drawdown(pnl), abs=1e-9)
    spans = []
    for e in episodes:
        peak = equity[e["peak"] + 1]
        assert e["depth_bps"] == pytest.approx(equity[e["trough"] + 1] - peak, abs=1e-9)
        end = len(pnl) if e["recovery"] is None else e["recovery"]
        inside = equity[e["peak"] + 2 : end + 1]  # strictly under water until recovery
        assert (inside < peak).all()
        assert min(inside) == pytest.approx(equity[e["trough"] + 1], abs=1e-9)
        if e["recovery"] is not None:
            assert equity[e["recovery"] + 1] >= peak
        spans.append((e["peak"], end))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # no overlap
    depths = [e["depth_bps"] for e in episodes]
    assert depths == sorted(depths)


def test_drawdown_periods_worked_example() -> None:
    #         equity: 10, 4, 12, 7, 9, 15, 11
    pnl = [10, -6, 8, -5, 2, 6, -4]
    assert drawdown_periods(pnl) == [
        {"peak": 0, "trough": 1, "recovery": 2, "depth_bps": -6.0, "periods": 2},
        {"peak": 2, "trough": 3, "recovery": 5, "depth_bps": -5.0, "periods": 3},
        {"peak": 5, "trough": 6, "recovery": None, "depth_bps": -4.0, "periods": 1},
    ]


@given(st.integers(1, 30), st.integers(1, 6), st.integers(0, 99))
def test_contributions_add_up_to_the_portfolio_pnl(n: int, agents: int, seed: int) -> None:
    w = _weights(n, agents, seed)
    p = np.random.default_rng(seed + 1).normal(0, 10, (n, agents))
    r = (w * p).sum(axis=1)
    c = contributions(w, p)
    assert c.sum() == pytest.approx(r.sum())
    for i in range(agents):
        assert c[i] == pytest.approx(sum(w[k, i] * p[k, i] for k in range(n)))
